"""`vfslab explore FILE`: a locking design as data, swept against a workload.

A plan (TOML) names the workload, fixed parameters, a sweep (each key a list of values: one row per
combination) and how to search each row:

    workload = "vmblock"
    strategy = "bounded"     # bounded (default), random, pct or shrink
    bound = 1                # bounded: non-default choices at most
    runs = 2000              # random and pct: runs at most; shrink: examples
    depth = 2                # pct: bug depth
    seed = 0
    [params]
    readers = 11
    [sweep]
    design = ["upstream", "deferred"]
    max_threads = [5, 10]

Each row says the verdict, the minimal deadlocking schedule when there is one (shrunk by Hypothesis with the
row's parameters fixed), and how many schedules the search covered.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from vfslab.sim import explore
from vfslab.sim.detect import PASS
from vfslab.sim.workloads import get


@dataclass
class Plan:
    workload: str
    strategy: str = "bounded"
    params: dict = field(default_factory=dict)
    sweep: dict[str, list] = field(default_factory=dict)
    seed: int = 0
    runs: int = 2000
    bound: int = 1
    depth: int = 2

    @classmethod
    def read(cls, path: Path) -> Plan:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"{path}: cannot read the plan: {e}") from None
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
        try:
            plan = cls(**data)
        except TypeError as e:
            raise ValueError(f"{path}: {e}") from None
        if plan.strategy not in explore.STRATEGIES:
            raise ValueError(f"{path}: strategy {plan.strategy!r} is not one of {', '.join(explore.STRATEGIES)}")
        if not all(isinstance(v, list) and v for v in plan.sweep.values()):
            raise ValueError(f"{path}: every [sweep] key needs a non-empty list of values")
        get(plan.workload).params({**plan.params, **{k: v[0] for k, v in plan.sweep.items()}})
        return plan


@dataclass
class Row:
    design: dict
    verdict: str
    schedules: int
    coverage: str
    minimal: explore.Run | None = None


def rows(plan: Plan) -> list[Row]:
    workload = get(plan.workload)
    keys = list(plan.sweep)
    out = []
    for values in itertools.product(*(plan.sweep[k] for k in keys)):
        design = dict(zip(keys, values, strict=True))
        params = workload.params({**plan.params, **design})
        out.append(_row(plan, workload, params, design))
    return out


def _row(plan: Plan, workload, params: dict, design: dict) -> Row:
    if plan.strategy == "shrink":
        minimal = explore.shrink(workload, params, plan.seed, plan.runs, vary_size=False)
        return Row(design, minimal.verdict if minimal else PASS, plan.runs,
                   f"Hypothesis, {plan.runs} examples", minimal)
    search = explore.search(workload, params, plan.strategy, plan.seed, plan.runs, plan.depth, plan.bound)
    coverage = search.bound or f"{plan.strategy}, seeds from {plan.seed}"
    if search.found is None:
        return Row(design, PASS, search.runs, coverage)
    minimal = explore.shrink(workload, params, plan.seed, vary_size=False) or explore.replay(
        workload, params, search.found.choices)
    return Row(design, minimal.verdict, search.runs, coverage, minimal)
