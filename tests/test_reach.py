"""No blind rules: the default run fires every rule of every family on a real subject and meets every edge of every
limit, but for the exceptions vfslab/check/reach.py lists with their reasons; and the checks that once lived only
in pytest are records of it."""

from __future__ import annotations

import pytest

from vfslab.check import reach
from vfslab.check.families import FAMILIES
from vfslab.check.results import Record, Results
from vfslab.cli import main
from vfslab.model.limits import edges_of
from vfslab.subjects import SUBJECTS


def test_every_exception_names_a_rule_and_says_why():
    rules = {rule for family in FAMILIES.values() for rule in family.rules}
    listings = (reach.DESIGN_ONLY, reach.UNREACHED, reach.BY_CHANCE)
    for listed in listings:
        assert listed.keys() <= rules, f"exceptions for rules no family has: {sorted(listed.keys() - rules)}"
        assert all(len(why.split()) >= 4 for why in listed.values()), "each exception says why"
    assert sum(len(listed) for listed in listings) == len(set().union(*listings)), "a rule is one kind of exception"


def _record(family: str, subject: str, coverage: dict[str, int], edges: dict[str, int] | None = None) -> Record:
    return Record("s", "x", "stateful", subject, "", "pass", "pass", coverage=coverage, edges=edges or {},
                  family=family)


def test_blind_tells_a_rule_fired_only_on_the_model_and_a_stale_exception():
    design = next(iter(reach.DESIGN_ONLY))
    ran = [_record("union", "model", {"union.path.enoent": 1, design: 1}),
           _record("union", "kernel-overlay", {"union.path.enoent": 0, design: 0}, {"union.path.eloop@MAXSYMLINKS": 0})]
    blind = reach.blind(ran)
    assert blind.rules == ("union.path.enoent",), "a rule that fired on the model alone is blind"
    assert blind.edges == ("union.path.eloop@MAXSYMLINKS",) and not blind.design and not blind.stale
    assert reach.blind([_record("union", "kernel-overlay", {design: 0})]).design == (design,)
    assert not reach.blind([_record("union", "kernel-overlay", {"union.path.enoent": 2},
                                    {"union.path.eloop@MAXSYMLINKS": 1})])
    chance = next(iter(reach.BY_CHANCE))
    for fired in (0, 1):
        assert not reach.blind([_record("union", "union-fuse", {chance: fired})]), "by chance: either way"


@pytest.mark.mounts
def test_the_default_run_reaches_every_rule_and_edge(need, scratch):
    for name in SUBJECTS:
        if name not in ("sim", "model"):
            need(name)  # a default run missing a subject would be blind where that subject is the only one
    out = scratch / "out"
    assert main(["run", "--out", str(out), "--jobs", "2"]) == 0, (out / "report.md").read_text()
    results = Results.read(out / "results.json")
    blind = reach.blind(results.records)
    assert not blind, "\n".join(f"{what}: {', '.join(keys)}" for what, keys in (
        ("rules no subject fired", blind.rules), ("edges no subject reached", blind.edges),
        ("design-only rules the model did not fire", blind.design), ("unreached but fired", blind.stale)) if keys)
    counted = {e for r in results.records for e in r.edges}
    assert counted == {e for f in FAMILIES.values() for e in edges_of(f.limits)}, "every family's edges counted"
    # the checks that lived in pytest alone are records of the default run, each as expected
    kinds = {(r.family, r.kind) for r in results.records if r.as_expected and r.verdict != "unavailable"}
    wanted = {("pmem", "crash"), ("pmem", "orphans"), ("pmem", "transparency"), ("pmem", "damage"),
              ("storage", "crash"), ("vmblock", "stateful"), ("union", "edges"), ("posix", "edges")}
    assert wanted <= kinds, f"missing from the default run: {sorted(wanted - kinds)}"
    assert any(r.family == "vmblock" and r.coverage.get("vmblock.perm.root") for r in results.records)
