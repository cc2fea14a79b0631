"""The routing model (model/pmem) in lockstep with pmemfile's router (`pmem-router`) and with the kernel routing
into a FUSE-mounted pool (`pmem-fuse`)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import replayable

from vfslab.check.engine.generated import Budget
from vfslab.check.pmem.program import RouteProgram
from vfslab.check.pmem.stateful import POOL_NODES, check_route_stateful, run_route_program
from vfslab.check.results import Results
from vfslab.cli import main
from vfslab.suite import load

pytestmark = pytest.mark.mounts


@pytest.mark.parametrize("name, profile", [("pmem-router", "pmemfile"), ("pmem-fuse", "kernel")])
def test_generated_programs_agree_with_the_routing_model(scratch, need, name, profile):
    """The CI check: 100 generated programs per subject, each held to its profile (seed 20261121)."""
    tally = check_route_stateful(need(name), profile, seed=20261121, budget=Budget(100, 25, 600),
                                 scratch_root=scratch / "check")
    assert tally.failure is None, replayable(tally.failure, scratch)
    assert not tally.error, tally.error
    assert tally.examples >= 100 and not tally.deviations
    for rule in ("pmem.route.enter", "pmem.route.dotdot", "pmem.symlink.absolute", "pmem.xdev", "pmem.fd.dup",
                 "pmem.cwd.virtual", "pmem.route.mount-point"):
        assert tally.coverage[rule] > 0, f"{rule} never decided an outcome"


def test_an_empty_path_tells_the_router_from_the_kernel(scratch, need, tmp_path):
    program = RouteProgram(POOL_NODES, [["chdir", "P/d"], ["open", "b", os.O_RDONLY], ["stat", ""],
                                        ["read", "#0", 100]])
    router = run_route_program(program, need("pmem-router"), "kernel", scratch / "r")
    assert router.failure is None and router.deviation == "pmemfile" and router.coverage["pmem.cwd.virtual"] == 1
    fuse = run_route_program(program, need("pmem-fuse"), "kernel", scratch / "f")
    assert fuse.failure is None and fuse.deviation is None
    program.subject, program.profile = "pmem-router", "pmemfile"
    saved = tmp_path / "p.json"
    program.write(saved)
    assert RouteProgram.from_json(json.loads(saved.read_text())).ops == program.ops
    assert main(["replay", str(saved)]) == 0
    regression = tmp_path / "regression.toml"
    regression.write_text(program.to_scenario("empty-path"))
    assert load(regression).family == "pmem"
    assert main(["run", str(regression), "--out", str(tmp_path / "out")]) == 0
    record, = Results.read(tmp_path / "out" / "results.json").records
    assert (record.subject, record.verdict, record.examples) == ("pmem-router", "pass", 1)
    assert record.coverage["pmem.path.empty"] == 1


def test_a_bad_routing_program_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"family": "pmem", "layers": [[]], "ops": [["frobnicate", "P"]]}))
    assert main(["replay", str(bad), "--subject", "pmem-router"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a routing call" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("name, profile, scenario", [("pmem-router", "pmemfile", "pmem-routing"),
                                                     ("pmem-fuse", "kernel", "pmem-routing-kernel")])
def test_a_quick_run_fires_every_routing_rule_and_reaches_every_edge(scratch, need, name, profile, scenario):
    """What a quick default run draws (QUICK's budget, the scenario's seed) fires every routing rule of the held
    profile, `pmem.fd.dir-offset` included (an lseek on a directory's fd), and reaches every edge of NAME_MAX,
    PATH_MAX and MAXSYMLINKS: through the router, and through the kernel into a FUSE-mounted pool."""
    from vfslab.check.engine.generated import QUICK
    from vfslab.model.limits import edges_of
    from vfslab.model.pmem import LIMITS, PROFILES, RULES
    from vfslab.runner import scenario_seed

    tally = check_route_stateful(need(name), profile, seed=scenario_seed(0, scenario), budget=QUICK,
                                 scratch_root=scratch / "check")
    assert tally.failure is None, replayable(tally.failure, scratch)
    other = {p.empty_rule for p in PROFILES.values()} - {PROFILES[profile].empty_rule}
    rules = [r for r in RULES if not r.startswith("pmem.pool.") and r not in other]
    assert [r for r in rules if not tally.coverage[r]] == []
    routing = tuple(limit for limit in LIMITS if limit.rule in rules)
    assert len(routing) == 3 and [e for e in edges_of(routing) if not tally.coverage[e]] == []


def test_the_edges_scenario_replays_every_edge_on_both_subjects(tmp_path):
    """scenarios/pmem/edges.toml: names, paths and symlink chains at each edge of NAME_MAX, PATH_MAX and
    MAXSYMLINKS, in lockstep with the model on the router and on pmem-fuse, and the router beside the kernel."""
    from pathlib import Path

    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "pmem" / "edges.toml"
    assert main(["run", str(scenario), "--out", str(tmp_path / "out")]) == 0
    records = Results.read(tmp_path / "out" / "results.json").records
    assert {r.subject for r in records} == {"pmem-router", "pmem-fuse"}
    for record in records:
        routing = {e: n for e, n in record.edges.items() if not e.startswith("pmem.pool.")}
        assert len(routing) == 9 and all(routing.values()), (record.subject, routing)
