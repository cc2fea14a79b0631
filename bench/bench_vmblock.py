"""`make bench`: blocked-then-released readlinks per second through our vmblock's default (deferred) design.

One round: a block is added on a target entry, N readlinks of it start and wait in the daemon (fusectl's
`waiting` count says when all N are there), the block is deleted, and the round ends when all N have
returned. The table gives, for N = 1, 10 and 100 (more than libfuse's 10 workers, which the upstream design
could not survive), readlinks per second over whole rounds, and the time from the delete to the last return.
The upstream design is timed beside it where it can be (N below its worker cap). One run on a live machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vfslab.subjects import get, mounts
from vfslab.subjects.vmblock import LIBFUSE_MAX_THREADS, BlockMount

NAME = "entry"
WAITERS = (1, 10, 100)


class Readers:
    """N threads that each readlink `link` once per round."""

    def __init__(self, n: int, link: Path) -> None:
        self.link = link
        self.go = threading.Barrier(n + 1)
        self.done = threading.Semaphore(0)
        self.stop = False
        for _ in range(n):
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            self.go.wait()
            if self.stop:
                return
            os.readlink(self.link)
            self.done.release()


def rounds(m: BlockMount, n: int, count: int) -> tuple[float, float]:
    """(readlinks per second over `count` whole rounds, median ms from the delete to the last return)."""
    fd = os.open(m.path / "dev", os.O_RDWR)
    readers = Readers(n, m.path / "blockdir" / NAME)
    add, delete = f"a{m.target}/{NAME}".encode(), f"d{m.target}/{NAME}".encode()
    release: list[float] = []
    started = time.perf_counter()
    for _ in range(count):
        os.write(fd, add)
        readers.go.wait()
        while (waiting := m.waiting()) is not None and waiting < n:
            time.sleep(0.0002)
        unblocked = time.perf_counter()
        os.write(fd, delete)
        for _ in range(n):
            readers.done.acquire()
        release.append(time.perf_counter() - unblocked)
    elapsed = time.perf_counter() - started
    readers.stop = True
    readers.go.wait()
    os.close(fd)
    return n * count / elapsed, statistics.median(release) * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=200, help="rounds per N (default 200)")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench_vmblock: needs root (to mount)", file=sys.stderr)
        return 2
    mounts.ensure_fusectl()
    table = Table("design", "waiters", "readlinks/s", "delete to last return (ms, median)",
                  title=f"vmblock: blocked-then-released readlinks ({args.rounds} rounds each)")
    with tempfile.TemporaryDirectory(prefix="vfslab-bench-") as tmp:
        for name, design in (("vmblock-fuse", "deferred"), ("vmblock-fuse-upstream", "upstream")):
            for n in WAITERS:
                if design == "upstream" and n >= LIBFUSE_MAX_THREADS:
                    table.add_row(design, str(n), "not run: deadlocks at N >= max_threads", "-")
                    continue
                m = get(name).mount(Path(tmp) / f"{design}-{n}", names=(NAME,))
                try:
                    with mounts.watchdog(300, m.abort) as dog:
                        rate, ms = rounds(m, n, args.rounds)
                finally:
                    m.teardown()
                if dog.fired:
                    print(f"bench_vmblock: {name} with {n} waiters hung; aborted", file=sys.stderr)
                    return 1
                table.add_row(design, str(n), f"{rate:,.0f}", f"{ms:.2f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
