"""`vfslab crosscheck`: the simulator's verdict next to a real mount's, for the vmblock deadlock.

For N = cap - 1, cap and cap + 1 readlinks waiting on a block, the simulated vmblock (the design the subject
has, on libfuse 3.12+ with `max_threads` = cap; a bounded search, so that a deadlock any schedule reaches
counts) and the real mount (the deadlock probe) must agree on `pass` or `deadlock`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vfslab.check.vmblock.deadlock import probe
from vfslab.sim.detect import DEADLOCK, PASS
from vfslab.sim.explore import bounded_search
from vfslab.sim.workloads import get

#: the simulated design each real subject has
DESIGN_OF = {"vmblock-fuse": "deferred", "vmblock-fuse-upstream": "upstream", "vmware-vmblock": "upstream"}


@dataclass
class Agreement:
    subject: str
    waiters: int
    max_threads: int
    simulated: str
    real: str

    @property
    def agree(self) -> bool:
        return self.simulated == self.real


def simulated(design: str, waiters: int, max_threads: int) -> str:
    workload = get("vmblock")
    params = workload.params({"readers": waiters, "design": design, "libfuse": "3.12", "max_threads": max_threads})
    return DEADLOCK if bounded_search(workload, params, 1).found else PASS


def crosscheck(subject, scratch: Path, max_threads: int = 10) -> list[Agreement]:
    rows = []
    for n in (max_threads - 1, max_threads, max_threads + 1):
        real = probe(subject, scratch / f"n{n}", n, max_threads)
        rows.append(Agreement(subject.name, n, max_threads, simulated(DESIGN_OF[subject.name], n, max_threads),
                              DEADLOCK if real.deadlocked else PASS))
    return rows
