"""What every renderer shows, computed once: the matrix, the problems, how often each rule fired, and what the run
left blind (vfslab/check/reach.py)."""

from __future__ import annotations

from dataclasses import dataclass

from vfslab.check.reach import BY_CHANCE, DESIGN_ONLY, UNREACHED, Blind, blind
from vfslab.check.results import PASS, UNAVAILABLE, Record, Results


@dataclass
class Summary:
    scenarios: list[str]
    subjects: list[str]
    cells: dict[tuple[str, str], Record]
    problems: list[Record]
    never_fired: list[str]
    #: per family, each rule (and each edge of its limits) with how often it fired over all records
    fired: dict[str, dict[str, int]]
    edges: dict[str, dict[str, int]]
    #: what no subject reached, beyond the listed exceptions
    blind: Blind

    @classmethod
    def of(cls, results: Results) -> Summary:
        scenarios = list(dict.fromkeys(r.scenario for r in results.records))
        subjects = list(dict.fromkeys(r.label for r in results.records))
        cells = {(r.scenario, r.label): r for r in results.records}
        problems = [r for r in results.records if r.verdict not in (PASS, UNAVAILABLE)]
        ran = [r for r in results.records if r.coverage]
        rules = {rule for r in ran for rule in r.coverage}
        never = sorted(rule for rule in rules if not any(r.coverage.get(rule) for r in ran))
        return cls(scenarios, subjects, cells, problems, never, _totals(results.records, "coverage"),
                   _totals(results.records, "edges"), blind(results.records))


def _totals(records: list[Record], counted: str) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for r in records:
        family = totals.setdefault(r.family, {})
        for key, n in getattr(r, counted).items():
            family[key] = family.get(key, 0) + n
    return totals


def exception(rule: str) -> str:
    """Why `rule` may go unfired on the subjects (reach.py), or empty."""
    if rule in DESIGN_ONLY:
        return f"design only (fires on the model): {DESIGN_ONLY[rule]}"
    if rule in BY_CHANCE:
        return f"by chance: {BY_CHANCE[rule]}"
    return f"unreached: {UNREACHED[rule]}" if rule in UNREACHED else ""


def blind_lines(blind: Blind) -> list[str]:
    """What a run left unreached, a line per kind (none when it reached everything)."""
    said = [("rules no subject fired", blind.rules), ("edges no subject reached", blind.edges),
            ("design-only rules the model did not fire", blind.design),
            ("listed as unreached, but fired (reach.py is stale)", blind.stale)]
    return [f"{what}: {', '.join(keys)}" for what, keys in said if keys]


def cell_text(record: Record | None) -> str:
    if record is None:
        return "-"
    mark = "" if record.as_expected else " (expected " + record.expected + ")"
    return record.verdict + mark
