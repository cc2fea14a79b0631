"""`make bench`: how fast the simulator is.

- Simulated schedules per second for the vmblock workload (10 readers, upstream design, libfuse 3.12 with 10
  workers; random schedules), on one core. The goal is at least 2,000 per second.
- For each of the seeds' three deadlocks, the time from a fresh seed to a found and shrunk minimal schedule
  (the goal: under 5 seconds each), for seeds 1 to 5.
"""

from __future__ import annotations

import statistics
import sys
import time

from rich.console import Console
from rich.table import Table

from vfslab.sim.explore import shrink, simulate
from vfslab.sim.schedule import RandomChooser
from vfslab.sim.workloads import get

GOAL_RATE = 2000
GOAL_SECONDS = 5.0
SEEDS = range(1, 6)
DEADLOCKS = {"vmblock": {"readers": 17}, "rwlock-cancel": {"handlers": 4}, "union-locks": {}}


def rate(seconds: float = 5.0) -> float:
    workload = get("vmblock")
    params = workload.params({"readers": 10})
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        simulate(workload, params, RandomChooser(runs))
        runs += 1
    return runs / (time.perf_counter() - started)


def main() -> int:
    console = Console()
    per_second = rate()
    table = Table("workload", "median s to a minimal deadlock", "worst s", "minimal size", "choices",
                  title=f"simulator: vmblock {per_second:,.0f} schedules/s (goal >= {GOAL_RATE:,})")
    ok = per_second >= GOAL_RATE
    for name, given in DEADLOCKS.items():
        workload = get(name)
        params = workload.params(given)
        times, found = [], None
        for seed in SEEDS:
            started = time.perf_counter()
            found = shrink(workload, params, seed)
            times.append(time.perf_counter() - started)
        ok &= found is not None and max(times) < GOAL_SECONDS
        size = found.params[workload.size] if found and workload.size else len(found.params["ops"]) if found else "-"
        table.add_row(name, f"{statistics.median(times):.3f}", f"{max(times):.3f}", str(size),
                      str(found.choices if found else "not found"))
    console.print(table)
    console.print("goals met" if ok else "[red]a goal missed[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
