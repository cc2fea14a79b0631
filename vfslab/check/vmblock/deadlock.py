"""The deadlock scenario on a real mount: N readlinks wait on one block, then the block is deleted.

With a design whose waiting readlinks hold worker threads, N >= max_threads leaves no worker to serve the
delete: the readlinks never return. The watchdog then aborts the connection through fusectl and SIGKILLs the
daemon (every waiter gets an error at once) and the mount is torn down: the verdict is `deadlock`, never a
stuck run.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from vfslab.subjects import mounts
from vfslab.subjects.vmblock import LIBFUSE_MAX_THREADS

NAME = "waited-on"


@dataclass
class Probe:
    waiters: int
    max_threads: int
    #: readlinks that returned after the unblock (all of them, unless it deadlocked)
    returned: int = 0
    #: whether the delete that lifts the block returned
    unblocked: bool = False
    seconds: float = 0.0

    @property
    def deadlocked(self) -> bool:
        return self.returned < self.waiters or not self.unblocked

    def describe(self) -> str:
        if not self.deadlocked:
            return f"{self.waiters} waiting readlinks all returned after the unblock (max_threads {self.max_threads})"
        return (f"deadlock: {self.waiters} readlinks waited with max_threads {self.max_threads}; after the unblock "
                f"{self.returned} returned and the delete {'returned' if self.unblocked else 'never returned'}; "
                "the connection was aborted")


def probe(subject, scratch: Path, waiters: int, max_threads: int = LIBFUSE_MAX_THREADS,
          patience: float | None = None) -> Probe:
    """Mount `subject` with `max_threads` workers, make `waiters` readlinks wait on a block, delete it, and see
    whether they all return within `patience` seconds (default: 3 s plus 10 ms per waiter)."""
    started = time.monotonic()
    mounts.ensure_fusectl()
    mount = subject.mount(scratch, max_threads, names=(NAME,))
    result = Probe(waiters, max_threads)
    link = mount.path / "blockdir" / NAME
    fd = os.open(mount.path / "dev", os.O_RDWR | os.O_CLOEXEC)
    try:
        os.write(fd, f"a{mount.target}/{NAME}".encode())
        os.lstat(link)  # looked up while workers are free
        done = threading.Semaphore(0)

        def reader() -> None:
            with contextlib.suppress(OSError):  # the connection was aborted
                os.readlink(link)
            done.release()

        def unblock() -> None:
            with contextlib.suppress(OSError):  # in a deadlock it waits until the abort fails it
                os.write(fd, f"d{mount.target}/{NAME}".encode())
                result.unblocked = True

        threads = [threading.Thread(target=reader, daemon=True) for _ in range(waiters)]
        for t in threads:
            t.start()
        _until_waiting(mount, waiters)
        unblocker = threading.Thread(target=unblock, daemon=True)
        unblocker.start()
        deadline = time.monotonic() + (patience if patience is not None else 3 + waiters * 0.01)
        result.returned = sum(done.acquire(timeout=max(0.0, deadline - time.monotonic())) for _ in range(waiters))
        unblocker.join(max(0.0, deadline - time.monotonic()))
        if result.deadlocked:
            mount.abort()
        for t in [*threads, unblocker]:
            t.join(10)
        if any(t.is_alive() for t in threads):
            raise RuntimeError(f"{subject.name}: a readlink outlived the abort of {mount.path}")
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        mount.teardown()
    result.seconds = round(time.monotonic() - started, 2)
    return result


def _until_waiting(mount, waiters: int, seconds: float = 5.0) -> None:
    """Give every readlink the time to reach the daemon: fusectl counts the requests it has not answered."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        waiting = mount.waiting()
        if waiting is None or waiting >= waiters:
            break
        time.sleep(0.005)
    time.sleep(0.1)  # the last ones from the kernel's queue into a worker
