"""A study: one workload and design, one search, one verdict, as a scenario or `vfslab sim` asks for it.

Verdicts: `pass`; `deadlock` (a run ended with threads blocked for good: the minimal such run is kept);
`potential-deadlock` (with `lockdep`: no run deadlocked, but the lock-order graph over every run has a cycle);
`hang` (a run did not end within its steps).
"""

from __future__ import annotations

from dataclasses import dataclass

from vfslab.sim import explore
from vfslab.sim.detect import PASS
from vfslab.sim.schedule import RandomChooser
from vfslab.sim.sync import LockOrder
from vfslab.sim.workloads import Workload, get

POTENTIAL = "potential-deadlock"
SEARCH_KEYS = ("workload", "strategy", "seed", "runs", "depth", "bound", "lockdep")


@dataclass
class Study:
    workload: Workload
    params: dict
    strategy: str = "shrink"
    seed: int = 0
    runs: int = 2000
    depth: int = 2
    bound: int = 1
    lockdep: bool = False


@dataclass
class Result:
    verdict: str
    reason: str
    schedules: int
    run: explore.Run | None = None


def sim_search(raw: dict) -> Study:
    """A study from a scenario's [params]: `workload`, the search keys, and the workload's own parameters."""
    if "workload" not in raw:
        raise ValueError("a sim scenario needs params.workload")
    search = {k: raw[k] for k in SEARCH_KEYS if k in raw}
    workload = get(search.pop("workload"))
    study = Study(workload, workload.params({k: v for k, v in raw.items() if k not in SEARCH_KEYS}), **search)
    if study.strategy not in explore.STRATEGIES:
        raise ValueError(f"strategy {study.strategy!r} is not one of {', '.join(explore.STRATEGIES)}")
    return study


def conduct(study: Study) -> Result:
    w, p = study.workload, study.params
    if study.lockdep:
        order = LockOrder()
        for i in range(study.runs):
            run = explore.simulate(w, p, RandomChooser(study.seed + i), order)
            if run.verdict != PASS:
                return Result(run.verdict, f"run {i} deadlocked", i + 1, explore.replay(w, p, run.choices))
        cycles = order.inversions()
        if cycles:
            pairs = "; ".join(" -> ".join([*c, c[0]]) for c in cycles)
            return Result(POTENTIAL, f"no run of {study.runs} deadlocked, but the lock order has a cycle: {pairs}",
                          study.runs)
        return Result(PASS, f"{study.runs} runs; the lock order has no cycle", study.runs)
    if study.strategy == "shrink":
        run = explore.shrink(w, p, study.seed, study.runs)
        if run is None:
            return Result(PASS, f"Hypothesis found no deadlock in {study.runs} examples", study.runs)
        return Result(run.verdict, _why(run), study.runs, run)
    search = explore.search(w, p, study.strategy, study.seed, study.runs, study.depth, study.bound)
    covered = f"{study.strategy}: {search.runs} schedules" + (f"; {search.bound}" if search.bound else "")
    if search.found is None:
        return Result(PASS, covered + ("; all covered" if search.complete else ""), search.runs)
    run = explore.replay(w, p, search.found.choices)
    return Result(run.verdict, f"{covered}; {_why(run)}", search.runs, run)


def _why(run: explore.Run) -> str:
    return run.finding.explain() if run.finding else f"{run.verdict}: a run did not end within its steps"


