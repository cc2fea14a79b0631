"""The workloads from the seeds, by name: each builds its threads (and daemon) into a world from parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vfslab.sim.workloads import rwlock_cancel, union_locks, vmblock


@dataclass(frozen=True)
class Workload:
    name: str
    build: Callable
    defaults: dict
    #: the integer parameter that says how big a run is (what shrinking makes smaller), if any
    size: str | None = None

    def params(self, given: dict | None = None) -> dict:
        """The defaults overridden by `given`; an unknown or mistyped parameter is a ValueError."""
        given = dict(given or {})
        unknown = set(given) - set(self.defaults)
        if unknown:
            raise ValueError(f"workload {self.name}: unknown parameters {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(self.defaults)})")
        for key, value in given.items():
            if type(value) is not type(self.defaults[key]):
                raise ValueError(f"workload {self.name}: {key} = {value!r} should be a "
                                 f"{type(self.defaults[key]).__name__}")
        return {**self.defaults, **given}


WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("vmblock", vmblock.build, vmblock.DEFAULTS, size="readers"),
    Workload("rwlock-cancel", rwlock_cancel.build, rwlock_cancel.DEFAULTS, size="handlers"),
    Workload("union-locks", union_locks.build, union_locks.DEFAULTS),
)}


def get(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})") from None
