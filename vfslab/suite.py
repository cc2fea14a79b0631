"""Scenario files (TOML) and suites: what `vfslab run` runs.

A scenario names its id, suite, kind (`stateful` or `program` for the union suite), the subjects it
applies to, the profile they are held to, a budget, parameters, and the expected verdict (per subject
where subjects are known to differ). A suite is a folder of scenario files.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from vfslab.check import examples
from vfslab.check.ops import ALL_OPS

KINDS = ("stateful", "program")


@dataclass(frozen=True)
class Scenario:
    id: str
    suite: str
    kind: str
    subjects: tuple[str, ...]
    profile: str
    expect: str
    expect_by_subject: dict[str, str] = field(default_factory=dict)
    examples: int = 100
    steps: int = 25
    seconds: float = 120.0
    ops: tuple[str, ...] = ALL_OPS
    long_names: bool = True
    programs: tuple[dict, ...] = ()
    source: str = ""

    def expected(self, subject: str) -> str:
        return self.expect_by_subject.get(subject, self.expect)


def default_suite() -> Path:
    return Path(str(resources.files("vfslab.scenarios") / "union"))


def load(path: Path) -> Scenario:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: cannot read scenario: {e}") from None
    try:
        kind = data["kind"]
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        budget = data.get("budget", {})
        params = data.get("params", {})
        ops = tuple(params.get("ops", ALL_OPS))
        unknown = set(ops) - set(ALL_OPS)
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}")
        programs = tuple(data.get("programs", ()))
        for spec in programs:  # a program that cannot be read is the scenario file's error, not the run's
            examples.parse(spec, data.get("profile", "overlayfs"))
        return Scenario(
            id=data["id"],
            suite=data.get("suite", path.parent.name),
            kind=kind,
            subjects=tuple(data["subjects"]),
            profile=data.get("profile", "overlayfs"),
            expect=data.get("expect", "pass"),
            expect_by_subject=dict(data.get("expect_by_subject", {})),
            examples=int(budget.get("examples", 100)),
            steps=int(budget.get("steps", 25)),
            seconds=float(budget.get("seconds", 120)),
            ops=ops,
            long_names=bool(params.get("long_names", True)),
            programs=programs,
            source=str(path),
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        what = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{path}: bad scenario: {what}") from None


def collect(paths: list[Path]) -> list[Scenario]:
    """Every scenario in the given files and folders (recursively), in path order."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(p.rglob("*.toml"))
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"{p}: no such scenario file or folder")
    if not files:
        raise ValueError(f"no scenario files in {', '.join(map(str, paths))}")
    return [load(f) for f in files]
