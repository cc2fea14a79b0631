"""The simulated world: a simpy Environment whose scheduler asks a chooser, and a record of who waits on what.

simpy runs events in (time, priority, insertion) order. Here, whenever several events are due at the same
time and priority, they are concurrent, and the chooser picks which runs first: that is the only
nondeterminism of a run, so a run is its list of choices. Threads (simpy processes started with `spawn`)
say what they wait on (`waits`), which is what deadlock detection reads, and what they did (`log`), which is
what a trace shows.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from heapq import heappop
from typing import Any

import simpy
from simpy.core import EmptySchedule

from vfslab.sim.schedule import Chooser


class TooLong(Exception):
    """A run went on past its step budget (a livelock, or a workload that does not end)."""


@dataclass(frozen=True)
class Step:
    """One line of a trace: at choice `choice`, `thread` did `action` on `what`."""

    choice: int
    thread: str
    action: str
    what: str

    def __str__(self) -> str:
        return f"{self.choice:4}  {self.thread:<14} {self.action:<9} {self.what}"


class World(simpy.Environment):
    def __init__(self, chooser: Chooser, max_steps: int = 100_000, tracing: bool = True) -> None:
        super().__init__()
        self.chooser = chooser
        self.tracing = tracing  # searches run without a trace, and replay what they found with one
        self.max_steps = max_steps
        self.steps = 0
        self.threads: dict[simpy.Process, str] = {}
        self.waits: dict[str, Any] = {}  # thread -> the resource it waits on
        self.held: dict[str, list[Any]] = {}  # thread -> the locks it holds, in the order it took them
        self.dead: set[str] = set()  # threads cancelled in the middle of their work
        self.idle: set[str] = set()  # threads waiting for work (a daemon's idle workers): not blocked
        self.trace: list[Step] = []

    # ---- threads -------------------------------------------------------------------------------------

    def spawn(self, name: str, body: Generator) -> simpy.Process:
        process = self.process(body)
        self.threads[process] = name
        return process

    def log(self, thread: str, action: str, what: str = "") -> None:
        if self.tracing:
            self.trace.append(Step(len(self.chooser.made), thread, action, what))

    def blocked(self) -> list[str]:
        """Threads that have not ended and are not idle (once the schedule is empty: blocked for good)."""
        return sorted(name for p, name in self.threads.items() if p.is_alive and name not in self.idle)

    # ---- the scheduler -------------------------------------------------------------------------------

    def _owner(self, event: simpy.Event) -> str:
        for callback in event.callbacks or ():
            name = self.threads.get(getattr(callback, "__self__", None))
            if name is not None:
                return name
        return ""

    def step(self) -> None:
        """Process the next event; among events due together, the chooser picks."""
        queue = self._queue
        if not queue:
            raise EmptySchedule
        self.steps += 1
        if self.steps > self.max_steps:
            raise TooLong(f"more than {self.max_steps} steps")
        first = queue[0]
        now, priority = first[0], first[1]
        ties = [e for e in queue if e[0] == now and e[1] == priority]
        if len(ties) > 1:
            ties.sort()
            owners = [self._owner(e[3]) for e in ties] if self.chooser.wants_owners else ()
            entry = ties[self.chooser.choose(len(ties), owners)]
            if entry is not first:
                # swap the two events between their heap slots: the keys stay put, so it is still a heap
                i = queue.index(entry)
                queue[0], queue[i] = (*first[:3], entry[3]), (*entry[:3], first[3])
        self._now, _, _, event = heappop(queue)
        callbacks, event.callbacks = event.callbacks, None
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            raise event._value

    def run_all(self) -> None:
        """Run until nothing is scheduled (everything ended, or what is left is blocked for good)."""
        try:
            while True:
                self.step()
        except EmptySchedule:
            pass
