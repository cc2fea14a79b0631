"""Scenario files (TOML) and suites: what `vfslab run` runs.

A scenario names its id, suite, the model it checks against (`union`, the default, `vmblock`, `pmem` or `sim`),
its kind (`stateful` or `program`; `deadlock` for vmblock; `sim` and `crosscheck` for the simulator), the subjects
it applies to, the profile they are held to, a budget, parameters, and the expected verdict (per subject where
subjects are known to differ). A suite is a folder of scenario files.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from vfslab.check import examples
from vfslab.check.ops import ALL_OPS
from vfslab.check.pmem.program import RouteProgram
from vfslab.check.vmblock.program import BlockProgram
from vfslab.sim.study import sim_search

KINDS = {"union": ("stateful", "program"), "vmblock": ("stateful", "program", "deadlock"),
         "pmem": ("stateful", "program"), "sim": ("sim", "crosscheck")}
PROFILE = {"union": "overlayfs", "vmblock": "vmblock", "pmem": "pmemfile", "sim": ""}


@dataclass(frozen=True)
class Scenario:
    id: str
    suite: str
    model: str
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
    #: deadlock scenarios: readlinks that wait, and the daemon's worker cap
    waiters: int = 0
    max_threads: int = 10
    #: the [params] table as written (sim scenarios: the workload, the search, the design)
    params: dict = field(default_factory=dict)
    source: str = ""

    def expected(self, subject: str) -> str:
        return self.expect_by_subject.get(subject, self.expect)


def default_suite() -> Path:
    """Every suite shipped with vfslab."""
    return Path(str(resources.files("vfslab.scenarios")))


def load(path: Path) -> Scenario:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: cannot read scenario: {e}") from None
    try:
        model = data.get("model", "union")
        if model not in KINDS:
            raise ValueError(f"model {model!r} is not one of {', '.join(KINDS)}")
        kind = data["kind"]
        if kind not in KINDS[model]:
            raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS[model])} for model {model}")
        profile = data.get("profile", PROFILE[model])
        budget = data.get("budget", {})
        params = data.get("params", {})
        ops = tuple(params.get("ops", ALL_OPS)) if model == "union" else ALL_OPS
        unknown = set(ops) - set(ALL_OPS)
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}")
        if kind == "sim":
            sim_search(params)  # a bad workload, search or design is the scenario file's error
        programs = tuple(data.get("programs", ()))
        for spec in programs:  # a program that cannot be read is the scenario file's error, not the run's
            if model == "union":
                examples.parse(spec, profile)
            else:
                (RouteProgram if model == "pmem" else BlockProgram).from_json(spec)
        waiters, max_threads = int(params.get("waiters", 0)), int(params.get("max_threads", 10))
        if kind == "deadlock" and (waiters < 1 or max_threads < 1):
            raise ValueError("a deadlock scenario needs params waiters >= 1 and max_threads >= 1")
        return Scenario(
            id=data["id"],
            suite=data.get("suite", path.parent.name),
            model=model,
            kind=kind,
            subjects=tuple(data["subjects"]),
            profile=profile,
            expect=data.get("expect", "pass"),
            expect_by_subject=dict(data.get("expect_by_subject", {})),
            examples=int(budget.get("examples", 100)),
            steps=int(budget.get("steps", 25)),
            seconds=float(budget.get("seconds", 120)),
            ops=ops,
            long_names=bool(params.get("long_names", True)),
            programs=programs,
            waiters=waiters,
            max_threads=max_threads,
            params=dict(params),
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
