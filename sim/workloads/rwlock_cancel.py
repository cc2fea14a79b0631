"""The fuse-devel report (seed 001): a read handler holds a rwlock, another read handler waits for it, and the
file system is unmounted: old libfuse cancelled the holder where it stood, and the lock was never released.

`handlers` clients each send a read; the handler takes the lock (exclusively), does I/O holding it, and
answers. An unmount comes while they run. With cancellation `anywhere` the holder can be cancelled in its
I/O; the waiter, whose lock wait is no cancellation point, waits for good, and the daemon cannot exit (it
joins the waiter). With `while-reading` every handler finishes first.
"""

from __future__ import annotations

from collections.abc import Generator

import simpy

from vfslab.sim.fuse import Daemon, Design, Request
from vfslab.sim.sync import LockOrder, RWLock
from vfslab.sim.world import World

DEFAULTS = {"handlers": 2, "prefer": "reader", "libfuse": "2.5", "max_threads": 10, "cancel": "anywhere"}


def build(world: World, params: dict, order: LockOrder | None = None) -> Daemon:
    lock = RWLock(world, "cache", "cache.rwlock", order, prefer=params["prefer"])

    def read(daemon: Daemon, request: Request, worker: str) -> Generator:
        yield lock.acquire(worker, write=True)
        yield from daemon.io(worker)
        lock.release(worker)
        daemon.reply(request, b"data", worker)

    daemon = Daemon(world, Design(params["libfuse"], params["max_threads"], params["cancel"]), {"read": read})
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
