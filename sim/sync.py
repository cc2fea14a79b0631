"""Simulated locks: mutex, reader-writer lock (reader or writer preference), condition variable, completion,
reference count.

Each is a resource of the wait-for graph: a thread that waits on it is recorded in `world.waits`, and
`holders()` names the threads that must act before it is free. Every lock has a class (`klass`, as lockdep
calls it: "A.i_mutex" for every directory of file system A); acquiring one while holding others adds edges
to the lock-order graph, across runs.
"""

from __future__ import annotations

from collections import deque

import networkx as nx
import simpy

from vfslab.sim.world import World


class LockOrder:
    """The order lock classes were taken in, over every run seen (lockdep): a cycle is a potential deadlock,
    whether or not any run deadlocked."""

    def __init__(self) -> None:
        self.graph = nx.DiGraph()

    def taken(self, held: list[str], klass: str, witness: str) -> None:
        for before in held:
            if before != klass and not self.graph.has_edge(before, klass):
                self.graph.add_edge(before, klass, witness=witness)

    def inversions(self) -> list[list[str]]:
        """Each cycle of lock classes, smallest first, as the list of classes in it."""
        cycles = [c[c.index(min(c)):] + c[:c.index(min(c))] for c in nx.simple_cycles(self.graph)]
        return sorted(cycles, key=lambda c: (len(c), c))

    def witness(self, a: str, b: str) -> str:
        return self.graph.edges[a, b]["witness"]


class Lock:
    kind = "lock"

    def __init__(self, world: World, name: str, klass: str | None = None, order: LockOrder | None = None) -> None:
        self.world = world
        self.name = name
        self.klass = klass or name
        self.order = order
        self.queue: deque[tuple[str, bool, simpy.Event]] = deque()

    def __repr__(self) -> str:
        return f"{self.kind} {self.name}"

    def holders(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _wait(self, who: str, write: bool = True) -> simpy.Event:
        event = self.world.event()
        self.queue.append((who, write, event))
        self.world.waits[who] = self
        self.world.log(who, "waits", self.name)
        return event

    def _grant(self, who: str, event: simpy.Event) -> None:
        self.world.waits.pop(who, None)
        held = self.world.held.setdefault(who, [])
        if self.order is not None:
            witness = f"{who} at choice {len(self.world.chooser.made)}"
            self.order.taken([lock.klass for lock in held], self.klass, witness)
        held.append(self)
        self.world.log(who, "holds", self.name)
        event.succeed()

    def _released(self, who: str) -> None:
        self.world.held[who].remove(self)
        self.world.log(who, "releases", self.name)

    def forget(self, who: str) -> None:
        """`who` stopped waiting (it was cancelled)."""
        self.queue = deque(q for q in self.queue if q[0] != who)
        self.world.waits.pop(who, None)


class Mutex(Lock):
    kind = "mutex"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.holder: str | None = None

    def holders(self) -> tuple[str, ...]:
        return (self.holder,) if self.holder else ()

    def acquire(self, who: str) -> simpy.Event:
        if self.holder is not None:
            return self._wait(who)
        event = self.world.event()
        self.holder = who
        self._grant(who, event)
        return event

    def release(self, who: str) -> None:
        self._released(who)
        self.holder = None
        if self.queue:
            nxt, _, event = self.queue.popleft()
            self.holder = nxt
            self._grant(nxt, event)


class RWLock(Lock):
    """`prefer` is "reader" (a reader gets in while a writer waits, as glibc's default) or "writer"."""

    kind = "rwlock"

    def __init__(self, *args, prefer: str = "reader", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.prefer = prefer
        self.readers: list[str] = []
        self.writer: str | None = None

    def holders(self) -> tuple[str, ...]:
        return (self.writer,) if self.writer else tuple(self.readers)

    def _may(self, write: bool) -> bool:
        if write:
            return self.writer is None and not self.readers
        writers_waiting = any(w for _, w, _ in self.queue)
        return self.writer is None and (self.prefer == "reader" or not writers_waiting)

    def acquire(self, who: str, write: bool) -> simpy.Event:
        if not self._may(write):
            return self._wait(who, write)
        event = self.world.event()
        self._take(who, write, event)
        return event

    def _take(self, who: str, write: bool, event: simpy.Event) -> None:
        if write:
            self.writer = who
        else:
            self.readers.append(who)
        self._grant(who, event)

    def release(self, who: str) -> None:
        self._released(who)
        if self.writer == who:
            self.writer = None
        else:
            self.readers.remove(who)
        # waiters are let in in their order, as many as fit: a writer alone, or readers up to the next writer
        while self.queue:
            nxt, write, event = self.queue[0]
            if self.writer is not None or (write and self.readers):
                break
            self.queue.popleft()
            self._take(nxt, write, event)


class Completion(Lock):
    """A completion completed for all (`complete_all`) stays complete: later waits return at once.

    It is held by whoever is to complete it (`owner`), for the wait-for graph."""

    kind = "completion"

    def __init__(self, world: World, name: str, owner: str) -> None:
        super().__init__(world, name)
        self.owner = owner
        self.done = False

    def holders(self) -> tuple[str, ...]:
        return () if self.done else (self.owner,)

    def wait(self, who: str) -> simpy.Event:
        if self.done:
            return self.world.event().succeed()
        return self._wait(who)

    def complete_all(self, by: str) -> None:
        self.done = True
        self.world.log(by, "completes", self.name)
        while self.queue:
            who, _, event = self.queue.popleft()
            self.world.waits.pop(who, None)
            event.succeed()


class Condition(Lock):
    """A condition variable used with a mutex: `yield from cond.wait(who, mutex)` releases the mutex, waits for a
    notify and takes the mutex again. It is held by `owner`, whoever is meant to notify."""

    kind = "condition"

    def __init__(self, world: World, name: str, owner: str) -> None:
        super().__init__(world, name)
        self.owner = owner

    def holders(self) -> tuple[str, ...]:
        return (self.owner,)

    def wait(self, who: str, mutex: Mutex):
        mutex.release(who)
        yield self._wait(who)
        yield mutex.acquire(who)

    def notify(self, by: str, everyone: bool = False) -> None:
        self.world.log(by, "notifies", self.name)
        while self.queue:
            who, _, event = self.queue.popleft()
            self.world.waits.pop(who, None)
            event.succeed()
            if not everyone:
                break


class Refcount(Lock):
    """A reference count: `wait_zero` waits until every reference is put; the holders are the referrers."""

    kind = "refcount"

    def __init__(self, world: World, name: str) -> None:
        super().__init__(world, name)
        self.referrers: list[str] = []

    def holders(self) -> tuple[str, ...]:
        return tuple(self.referrers)

    def get(self, who: str) -> None:
        self.referrers.append(who)

    def put(self, who: str) -> None:
        self.referrers.remove(who)
        if not self.referrers:
            while self.queue:
                waiter, _, event = self.queue.popleft()
                self.world.waits.pop(waiter, None)
                event.succeed()

    def wait_zero(self, who: str) -> simpy.Event:
        return self._wait(who) if self.referrers else self.world.event().succeed()
