"""A simulated FUSE daemon: the kernel's request queue, a worker pool as libfuse grows it, handlers, clients,
cancellation and unmount (docs/facts.md, libfuse threading 1-3).

- Workers: the loop starts one; a worker that takes a request when no other is idle starts another, up to
  the cap: 10 in libfuse 2.5 and older, none from 2.6 to 3.11, `max_threads` (default 10) from 3.12.
- Handlers are generator functions `handler(daemon, request, worker)`; they take simulated locks, wait, do
  I/O (`yield from daemon.io(worker)`), and answer with `daemon.reply(request, value, worker)`, now or later
  from another thread.
- Unmount: the daemon exits by cancelling every worker and joining it. With cancellation `while-reading`
  (libfuse since 2.7) a worker is cancelled only while it waits for a request; with `anywhere` (older libfuse)
  also at any cancellation point of a handler (its I/O; a lock wait is none), holding whatever it holds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from itertools import count

import simpy

from vfslab.sim.world import World

LIBFUSE_VERSIONS = ("2.5", "2.6", "3.12")
CANCEL_POLICIES = ("while-reading", "anywhere")


@dataclass(frozen=True)
class Design:
    """The daemon's threading: libfuse version (2.5: at most 10 workers; 2.6 to 3.11: no cap; 3.12 and later:
    `max_threads`), where a cancel may land, and how much a handler's I/O time may vary."""

    libfuse: str = "3.12"
    max_threads: int = 10
    cancel: str = "while-reading"
    #: a handler's I/O takes 0 to `jitter` ticks, as the chooser says (0: every step takes no time)
    jitter: int = 0

    def __post_init__(self) -> None:
        if self.libfuse not in LIBFUSE_VERSIONS:
            raise ValueError(f"libfuse {self.libfuse!r}: one of {', '.join(LIBFUSE_VERSIONS)} (2.6 stands for "
                             "2.6 to 3.11)")
        if self.cancel not in CANCEL_POLICIES:
            raise ValueError(f"cancel policy {self.cancel!r}: one of {', '.join(CANCEL_POLICIES)}")
        if self.max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        if self.jitter < 0:
            raise ValueError("jitter must be at least 0")

    @classmethod
    def of(cls, params: dict) -> Design:
        """The design a workload's parameters name (`libfuse`, `max_threads`, `cancel`, `jitter`)."""
        return cls(params["libfuse"], params["max_threads"], params["cancel"], params["jitter"])

    @property
    def cap(self) -> int | None:
        return {"2.5": 10, "2.6": None, "3.12": self.max_threads}[self.libfuse]


class Cancelled(Exception):
    """Thrown into a worker where a cancel lands."""


@dataclass(eq=False)
class Request:
    id: int
    op: str
    args: tuple
    client: str
    reply: simpy.Event
    pool: WorkerPool
    worker: str | None = None  # the worker handling it, while one does
    parked_on: object = None  # what it waits on when no worker holds it (a deferred design)

    kind = "request"

    def __repr__(self) -> str:
        return f"{self.op}#{self.id}"

    @property
    def name(self) -> str:
        return repr(self)

    def holders(self) -> tuple:
        if self.worker is not None:
            return (self.worker,)
        return (self.parked_on,) if self.parked_on is not None else (self.pool,)


@dataclass(eq=False)
class WorkerPool:
    """The workers as a resource: a request no worker has taken waits on it; when the pool is at its cap, it is
    held by every busy worker."""

    cap: int | None
    busy: list[str] = field(default_factory=list)
    workers: int = 0

    kind = "workers"
    name = "worker pool"

    def __repr__(self) -> str:
        return f"{self.name} ({self.workers}/{self.cap or 'no cap'})"

    def holders(self) -> tuple:
        return tuple(self.busy) if self.cap is not None and self.workers >= self.cap else ()


@dataclass(eq=False)
class Join:
    """Unmount waiting for a worker to end."""

    worker: str
    kind = "join"

    @property
    def name(self) -> str:
        return self.worker

    def holders(self) -> tuple:
        return (self.worker,)


Handler = Callable[["Daemon", Request, str], Generator]


class Daemon:
    def __init__(self, world: World, design: Design, handlers: dict[str, Handler], name: str = "fuse") -> None:
        self.world = world
        self.design = design
        self.handlers = handlers
        self.name = name
        self.pending: deque[Request] = deque()  # sent, not yet read by a worker
        self.pool = WorkerPool(design.cap)
        self.idle: dict[str, simpy.Event] = {}  # idle worker -> its read, longest idle first
        self.processes: dict[str, simpy.Process] = {}
        self.cancelling: set[str] = set()
        self.exiting = False
        self.outstanding: set[Request] = set()
        self._ids = count(1)
        self._start_worker()

    # ---- clients -------------------------------------------------------------------------------------

    def call(self, client: str, op: str, *args: object, sent: simpy.Event | None = None) -> Generator:
        """A client's system call: send the request (then trigger `sent`, if given) and wait for its answer
        (`value = yield from ...`)."""
        request = Request(next(self._ids), op, args, client, self.world.event(), self.pool)
        self.outstanding.add(request)
        self.world.log(client, "sends", repr(request))
        if self.idle:  # the longest idle worker's read returns it
            worker, read = next(iter(self.idle.items()))
            self._not_idle(worker)
            read.succeed(request)
        else:
            self.pending.append(request)
        if sent is not None:
            sent.succeed()
        self.world.waits[client] = request
        value = yield request.reply
        self.world.waits.pop(client, None)
        self.world.log(client, "returns", f"{request!r} -> {value!r}")
        return value

    # ---- handlers ------------------------------------------------------------------------------------

    def reply(self, request: Request, value: object, by: str) -> None:
        self.world.log(by, "answers", repr(request))
        self.outstanding.discard(request)
        request.worker = request.parked_on = None
        request.reply.succeed(value)

    def io(self, worker: str) -> Generator:
        """A step of work that is a cancellation point (a system call); how long it takes is a choice."""
        yield self.world.timeout(self.world.chooser.choose(self.design.jitter + 1) if self.design.jitter else 0)
        if self.design.cancel == "anywhere" and worker in self.cancelling:
            raise Cancelled

    # ---- workers -------------------------------------------------------------------------------------

    def _start_worker(self) -> None:
        self.pool.workers += 1
        name = f"worker-{self.pool.workers}"
        self.processes[name] = self.world.spawn(name, self._worker(name))

    def _not_idle(self, worker: str) -> None:
        self.idle.pop(worker, None)
        self.world.idle.discard(worker)

    def _read(self, worker: str) -> simpy.Event:
        """A worker's read of the device: the oldest pending request, now or when one is sent."""
        read = self.world.event()
        if self.pending:
            read.succeed(self.pending.popleft())
        else:
            self.idle[worker] = read
            self.world.idle.add(worker)
        return read

    def _worker(self, name: str) -> Generator:
        while name not in self.cancelling:
            try:
                request = yield self._read(name)
            except simpy.Interrupt:  # cancelled while reading: how a worker is meant to end
                self._not_idle(name)
                break
            cap = self.design.cap
            if not self.idle and not self.exiting and (cap is None or self.pool.workers < cap):
                self._start_worker()
            request.worker = name
            self.pool.busy.append(name)
            self.world.log(name, "takes", repr(request))
            try:
                yield from self.handlers[request.op](self, request, name)
            except Cancelled:  # it ends here, its request unanswered and its locks held
                held = ", ".join(lock.name for lock in self.world.held.get(name, ()))
                self.world.log(name, "cancelled", f"holding {held}" if held else "")
                self.world.dead.add(name)
                self.pool.busy.remove(name)
                return
            self.pool.busy.remove(name)
            if request.worker == name:  # it returned without an answer: the request waits elsewhere
                request.worker = None
        self.world.log(name, "ends")

    # ---- unmount -------------------------------------------------------------------------------------

    def unmount(self, who: str = "unmount") -> Generator:
        """The kernel unmounts; the daemon's main thread cancels every worker and joins it."""
        self.world.log(who, "unmounts", self.name)
        self.exiting = True
        for name, process in self.processes.items():
            self.cancelling.add(name)
            if name in self.idle:
                process.interrupt()
        for name, process in list(self.processes.items()):
            join = Join(name)
            self.world.waits[who] = join
            yield process
            self.world.waits.pop(who, None)
        self.world.log(who, "exited", self.name)
        for request in sorted(self.outstanding, key=lambda r: r.id):  # the connection is gone
            self.reply(request, "ENOTCONN", who)
