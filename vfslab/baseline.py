"""Baselines: a user's expected verdicts, per scenario and subject, with the reason each is expected.

A baseline is a TOML file that `vfslab baseline` writes from a run's results and the user keeps beside their
code, as xfstests-bld keeps exclude files per file system and kernel version. Each `[[expect]]` entry names a
scenario, a subject (and a placement when not `same`), the verdict expected, why, optionally the subject and
kernel versions it holds for (`scope`), and whether it is `strict` (an expected failure that now passes must be
written down: update the baseline). Each `[[coverage]]` entry lists the rules that fired for that scenario and
subject in the baseline run, so that `vfslab gate` can tell when a check went blind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vfslab.check.results import UNAVAILABLE, Record, Results, label
from vfslab.tomlfile import read_toml

FORMAT_VERSION = 1
ENTRY_KEYS = {"scenario", "subject", "placement", "verdict", "reason", "strict", "scope"}
SCOPE_KEYS = {"subject_version", "kernel"}
COVERAGE_KEYS = {"scenario", "subject", "placement", "fired"}
VERDICT = re.compile(r"pass|fail|hang|deadlock|potential-deadlock|error|deviation:[\w.-]+")
COMPARISON = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(\d+(?:\.\d+)*)\s*")
NUMBER = re.compile(r"\d+(?:\.\d+)*")
#: a record's identity: which scenario, on which subject, with its layers where
Key = tuple[str, str, str]


class BaselineError(ValueError):
    """A malformed baseline: one line naming the file, the entry and the problem."""


@dataclass(frozen=True)
class Scope:
    """The versions an entry holds for: comma-separated comparisons (`>=1.9, <1.14`), empty for any."""

    subject_version: str = ""
    kernel: str = ""

    def holds(self, subject_version: str, kernel: str) -> bool:
        return within(subject_version, self.subject_version) and within(kernel, self.kernel)

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in (("subject version", self.subject_version),
                                                 ("kernel", self.kernel)) if v)


@dataclass(frozen=True)
class Entry:
    scenario: str
    subject: str
    verdict: str
    reason: str = ""
    placement: str = "same"
    strict: bool = True
    scope: Scope = Scope()

    @property
    def key(self) -> Key:
        return self.scenario, self.subject, self.placement

    @property
    def label(self) -> str:
        return f"{self.scenario} on {label(self.subject, self.placement)}"


@dataclass
class Baseline:
    entries: dict[Key, Entry] = field(default_factory=dict)
    #: the rules that fired in the baseline run, per scenario and subject
    fired: dict[Key, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, results: Results) -> Baseline:
        """Today's verdicts as expectations (reasons left to fill in), and the rules that fired."""
        ran = [r for r in results.records if r.verdict != UNAVAILABLE]
        return cls({key(r): Entry(r.scenario, r.subject, r.verdict, placement=r.placement) for r in ran},
                   {key(r): frozenset(rule for rule, n in r.coverage.items() if n) for r in ran if r.coverage})

    def updated(self, now: Baseline) -> Baseline:
        """`now` (a newer run's baseline) keeping what the user wrote: an entry whose verdict is unchanged keeps its
        reason, scope and strictness; an entry the newer run did not cover stays."""
        entries = dict(self.entries)
        for k, e in now.entries.items():
            old = self.entries.get(k)
            entries[k] = old if old and old.verdict == e.verdict else e
        return Baseline(entries, self.fired | now.fired)

    def to_toml(self) -> str:
        out = ["# vfslab baseline: the verdicts expected of each scenario on each subject. Fill in each entry's",
               "# reason; narrow it with scope = { subject_version = \">=1.9, <1.14\", kernel = \">=6.1\" }; set",
               "# strict = false where a fix may come unannounced. `vfslab gate RESULTS --baseline THIS` checks a run.",
               f"version = {FORMAT_VERSION}", ""]
        for e in self.entries.values():
            out += ["[[expect]]", f"scenario = {_q(e.scenario)}", f"subject = {_q(e.subject)}"]
            out += [f"placement = {_q(e.placement)}"] if e.placement != "same" else []
            out += [f"verdict = {_q(e.verdict)}", f"reason = {_q(e.reason)}"]
            out += [] if e.strict else ["strict = false"]
            scope = {k: v for k, v in (("subject_version", e.scope.subject_version), ("kernel", e.scope.kernel)) if v}
            out += [f"scope = {{ {', '.join(f'{k} = {_q(v)}' for k, v in scope.items())} }}"] if scope else []
            out.append("")
        for (scenario, subject, placement), rules in self.fired.items():
            out += ["[[coverage]]", f"scenario = {_q(scenario)}", f"subject = {_q(subject)}"]
            out += [f"placement = {_q(placement)}"] if placement != "same" else []
            out += ["fired = [", *(f"  {_q(rule)}," for rule in sorted(rules)), "]", ""]
        return "\n".join(out)


def key(record: Record) -> Key:
    return record.scenario, record.subject, record.placement


def within(version: str, spec: str) -> bool:
    """Whether `version` (its leading dotted number: `6.1.0-28-amd64` is 6.1.0) meets every comparison in `spec`.
    An unknown version meets no comparison."""
    if not spec:
        return True
    found = NUMBER.search(version)
    if not found:
        return False
    have = _numbers(found.group())
    return all(_compare(have, op, _numbers(number)) for op, number in _comparisons(spec))


def check_spec(spec: str) -> None:
    _comparisons(spec)


def load(path: Path) -> Baseline:
    data = read_toml(path, "baseline", BaselineError)
    if data.get("version") != FORMAT_VERSION:
        raise BaselineError(f"{path}: baseline version {data.get('version')!r}, this vfslab reads {FORMAT_VERSION}")
    unknown = set(data) - {"version", "expect", "coverage"}
    if unknown:
        raise BaselineError(f"{path}: unknown key {', '.join(sorted(unknown))}")
    baseline = Baseline()
    for i, raw in enumerate(_tables(path, data, "expect"), 1):
        entry = _entry(path, i, raw)
        if entry.key in baseline.entries:
            raise BaselineError(f"{path}: entry {i} ({entry.label}): a second entry for the same scenario and subject")
        baseline.entries[entry.key] = entry
    for i, raw in enumerate(_tables(path, data, "coverage"), 1):
        where = f"{path}: coverage {i}"
        _keys(where, raw, COVERAGE_KEYS, required=("scenario", "subject", "fired"))
        fired = raw["fired"]
        if not isinstance(fired, list) or not all(isinstance(rule, str) for rule in fired):
            raise BaselineError(f"{where}: fired must be a list of rule ids")
        baseline.fired[(_string(where, raw, "scenario"), _string(where, raw, "subject"),
                        _string(where, raw, "placement", "same"))] = frozenset(fired)
    return baseline


def _entry(path: Path, i: int, raw: dict) -> Entry:
    where = f"{path}: entry {i}"
    if isinstance(raw.get("scenario"), str) and isinstance(raw.get("subject"), str):
        where += f" ({raw['scenario']} on {raw['subject']})"
    _keys(where, raw, ENTRY_KEYS, required=("scenario", "subject", "verdict"))
    verdict = _string(where, raw, "verdict")
    if not VERDICT.fullmatch(verdict):
        raise BaselineError(f"{where}: verdict {verdict!r} is not one of pass, deviation:PROFILE, fail, hang, "
                            "deadlock, potential-deadlock, error")
    strict = raw.get("strict", True)
    if not isinstance(strict, bool):
        raise BaselineError(f"{where}: strict must be true or false")
    scope = raw.get("scope", {})
    if not isinstance(scope, dict):
        raise BaselineError(f"{where}: scope must be a table, e.g. {{ kernel = \">=6.1\" }}")
    _keys(f"{where}: scope", scope, SCOPE_KEYS)
    for name in scope:
        try:
            check_spec(_string(f"{where}: scope", scope, name))
        except ValueError as e:
            raise BaselineError(f"{where}: scope {name}: {e}") from None
    return Entry(_string(where, raw, "scenario"), _string(where, raw, "subject"), verdict,
                 _string(where, raw, "reason", ""), _string(where, raw, "placement", "same"), strict,
                 Scope(scope.get("subject_version", ""), scope.get("kernel", "")))


def _tables(path: Path, data: dict, name: str) -> list[dict]:
    tables = data.get(name, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise BaselineError(f"{path}: {name} must be a list of tables ([[{name}]])")
    return tables


def _keys(where: str, raw: dict, allowed: set[str], required: Iterable[str] = ()) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise BaselineError(f"{where}: unknown key {', '.join(sorted(unknown))} (known: {', '.join(sorted(allowed))})")
    missing = [k for k in required if k not in raw]
    if missing:
        raise BaselineError(f"{where}: missing {', '.join(missing)}")


def _string(where: str, raw: dict, name: str, default: str | None = None) -> str:
    value = raw.get(name, default)
    if not isinstance(value, str):
        raise BaselineError(f"{where}: {name} must be a string")
    return value


def _comparisons(spec: str) -> list[tuple[str, str]]:
    parts = spec.split(",")
    found = [COMPARISON.fullmatch(part) for part in parts]
    bad = [part.strip() for part, m in zip(parts, found, strict=True) if not m]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a comparison like >=6.1 or <1.14")
    return [(m.group(1), m.group(2)) for m in found if m]


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in version.split("."))


def _compare(have: tuple[int, ...], op: str, want: tuple[int, ...]) -> bool:
    # 6.1 == 6.1.0: pad to the same length
    width = max(len(have), len(want))
    a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
    return {">=": a >= b, "<=": a <= b, "==": a == b, "!=": a != b, ">": a > b, "<": a < b}[op]


def _q(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
