"""`vfslab gate`: a run's results held to a user's baseline, and what differs, as findings a CI can fail on.

Each record is held to its baseline entry when the entry's scope holds for the run's subject version and
kernel, and otherwise to the verdict its scenario expects (vfslab's own knowledge of the subjects it ships). A
verdict worse than expected is a regression; a better one, under a strict entry, is a fix to write down; an
entry with no record is missing; an entry whose scope does not hold is listed (its record is held to the
scenario instead); rules that fired in the baseline run and not now are a check gone blind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vfslab.baseline import Baseline, Entry, key
from vfslab.check.results import DEADLOCK, ERROR, FAIL, HANG, PASS, UNAVAILABLE, Record, Results

REGRESSION = "regression"
FIXED = "fixed"
MISSING = "missing"
OUT_OF_SCOPE = "out of scope"
BLIND = "blind"
#: what each kind of finding means, in the order a gate lists them
KINDS = {
    REGRESSION: "a verdict worse than expected",
    FIXED: "an expected failure that now passes (strict): update the baseline",
    MISSING: "an entry with no verdict in the results",
    BLIND: "rules that fired in the baseline run and never fired now",
    OUT_OF_SCOPE: "an entry whose scope does not hold for this run (its record was held to the scenario)",
}
#: how bad a verdict is: a regression is a verdict worse than expected, or as bad but another
_RANK = {PASS: 0, FAIL: 2, HANG: 2, DEADLOCK: 2, "potential-deadlock": 2, ERROR: 2}


@dataclass(frozen=True)
class Finding:
    kind: str
    #: the record's or entry's "scenario on subject"
    label: str
    text: str
    replay: str = ""


@dataclass
class Gate:
    findings: list[Finding] = field(default_factory=list)
    #: records held to an entry / to their scenario
    checked: int = 0
    #: whether rules gone blind fail the gate (`--coverage strict`)
    coverage_strict: bool = False

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if f.kind in (REGRESSION, FIXED, MISSING)
                or (f.kind == BLIND and self.coverage_strict)]


def rank(verdict: str) -> int:
    return 1 if verdict.startswith("deviation:") else _RANK.get(verdict, 2)


def label(record: Record) -> str:
    return f"{record.scenario} on {record.label}"


def gate(results: Results, baseline: Baseline, coverage_strict: bool = False, partial: bool = False) -> Gate:
    """`results` held to `baseline`; `partial`: the results are part of a run (a shard, a suite), so an entry
    with no record is not missing."""
    out = Gate(coverage_strict=coverage_strict)
    meta = results.meta
    seen = set()
    for r in results.records:
        seen.add(key(r))
        entry = baseline.entries.get(key(r))
        if r.verdict == UNAVAILABLE:
            if entry:
                out.findings.append(Finding(MISSING, label(r), f"expected {entry.verdict}; unavailable: {r.reason}"))
            continue
        out.checked += 1
        if entry and not entry.scope.holds(meta.subjects.get(r.subject, ""), meta.kernel):
            out.findings.append(Finding(OUT_OF_SCOPE, label(r), f"the entry ({entry.verdict}) holds for "
                                        f"{entry.scope}; this run has {r.subject} "
                                        f"{meta.subjects.get(r.subject) or '(no version)'}, kernel {meta.kernel}"))
            entry = None
        found = held(r, entry)
        if found:
            out.findings.append(found)
        elif key(r) in baseline.fired:
            lost = baseline.fired[key(r)] - {rule for rule, n in r.coverage.items() if n}
            if lost:
                out.findings.append(Finding(BLIND, label(r), f"{len(lost)} rules no longer fire: "
                                            + ", ".join(sorted(lost))))
    for k, entry in baseline.entries.items():
        if k not in seen and not partial:
            out.findings.append(Finding(MISSING, entry.label, f"expected {entry.verdict}; not in the results"))
    out.findings.sort(key=lambda f: list(KINDS).index(f.kind))
    return out


def unexpected(results: Results) -> list[Finding]:
    """A run's records whose verdict is not the one their scenario expects, as regressions."""
    return [f for r in results.records if r.verdict != UNAVAILABLE and (f := held(r, None))]


def held(r: Record, entry: Entry | None) -> Finding | None:
    """What is wrong with `r` held to `entry` (or, with none, to its scenario's expected verdict)."""
    expected, strict = (entry.verdict, entry.strict) if entry else (r.expected, True)
    if r.verdict == expected:
        return None
    replay = r.counterexample.replay if r.counterexample else ""
    why = f" ({entry.reason})" if entry and entry.reason else ""
    if rank(r.verdict) < rank(expected):
        return Finding(FIXED, label(r), f"{r.verdict}, expected {expected}{why}") if strict else None
    detail = (r.counterexample.difference or r.counterexample.message).splitlines()[0] if r.counterexample \
        else r.reason
    return Finding(REGRESSION, label(r), f"{r.verdict}, expected {expected}{why}"
                   + (f": {detail}" if detail else ""), replay)
