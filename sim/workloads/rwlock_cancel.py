"""The fuse-devel report (seed 001): a read handler holds a rwlock, another read handler waits for it, and the
file system is unmounted: old libfuse cancelled the holder where it stood, and the lock was never released.

`handlers` clients each send a read; the handler takes the lock (`lock`: a rwlock, exclusively, or a mutex),
does I/O holding it, and answers. An unmount comes while they run. With cancellation `anywhere` the holder can
be cancelled in its I/O; the waiter, whose lock wait is no cancellation point, waits for good, and the daemon
cannot exit (it joins the waiter). With `while-reading` every handler finishes first.
"""

from __future__ import annotations

from collections.abc import Generator

import simpy

from vfslab.sim.fuse import Daemon, Design, Request
from vfslab.sim.sync import LockOrder, Mutex, RWLock
from vfslab.sim.world import World

LOCKS = ("rwlock", "mutex")
DEFAULTS = {"handlers": 2, "lock": "rwlock", "prefer": "reader", "libfuse": "2.5", "max_threads": 10,
            "cancel": "anywhere", "jitter": 0}


def build(world: World, params: dict, order: LockOrder | None = None) -> Daemon:
    if params["lock"] not in LOCKS:
        raise ValueError(f"lock {params['lock']!r}: one of {', '.join(LOCKS)}")
    if params["lock"] == "rwlock":
        rw = RWLock(world, "cache", "cache.rwlock", order, prefer=params["prefer"])
        lock, take = rw, lambda worker: rw.acquire(worker, write=True)
    else:
        lock = Mutex(world, "cache", "cache.mutex", order)
        take = lock.acquire

    def read(daemon: Daemon, request: Request, worker: str) -> Generator:
        yield take(worker)
        yield from daemon.io(worker)
        lock.release(worker)
        daemon.reply(request, b"data", worker)

    daemon = Daemon(world, Design.of(params), {"read": read})
    sent = [world.event() for _ in range(params["handlers"])]

    def client(i: int) -> Generator:
        yield from daemon.call(f"client-{i}", "read", sent=sent[i - 1])

    def unmount() -> Generator:
        yield simpy.AllOf(world, sent)
        yield from daemon.unmount()

    for i in range(1, params["handlers"] + 1):
        world.spawn(f"client-{i}", client(i))
    world.spawn("unmount", unmount())
    return daemon
