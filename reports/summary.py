"""What every renderer shows, computed once: the matrix, the problems, the rules that never fired."""

from __future__ import annotations

from dataclasses import dataclass

from vfslab.check.results import PASS, UNAVAILABLE, Record, Results


@dataclass
class Summary:
    scenarios: list[str]
    subjects: list[str]
    cells: dict[tuple[str, str], Record]
    problems: list[Record]
    never_fired: list[str]

    @classmethod
    def of(cls, results: Results) -> Summary:
        scenarios = list(dict.fromkeys(r.scenario for r in results.records))
        subjects = list(dict.fromkeys(r.label for r in results.records))
        cells = {(r.scenario, r.label): r for r in results.records}
        problems = [r for r in results.records if r.verdict not in (PASS, UNAVAILABLE)]
        ran = [r for r in results.records if r.coverage]
        rules = {rule for r in ran for rule in r.coverage}
        never = sorted(rule for rule in rules if not any(r.coverage.get(rule) for r in ran))
        return cls(scenarios, subjects, cells, problems, never)


def cell_text(record: Record | None) -> str:
    if record is None:
        return "-"
    mark = "" if record.as_expected else " (expected " + record.expected + ")"
    return record.verdict + mark
