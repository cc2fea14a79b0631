"""`make bench`: what a pmem pool costs.

- Through the router (a pool at P, in this process) against the same calls on tmpfs: stat, open+read+close of
  a 4 KiB file, create+unlink.
- pmem-fuse (the pool through our FUSE front) against a plain mfusepy passthrough over tmpfs (bench/
  passthrough.py: the same binding, libfuse and options), with the same calls through the mounts.

Times are microseconds per call (one run on a live machine); the ratio is pmem's time over its reference's.
Needs root (to mount).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vfslab.impl.pmem.fs import PmemFS
from vfslab.impl.pmem.router import Router
from vfslab.subjects import mounts

N = 2000
DATA = b"x" * 4096


def workloads(os_like, root: str) -> dict[str, Callable[[], None]]:
    """The three calls, on `os_like` (the os module, or a Router), under directory `root`."""
    f, new = f"{root}/file", f"{root}/new"

    def open_read_close() -> None:
        fd = os_like.open(f, os.O_RDONLY)
        os_like.read(fd, 4096)
        os_like.close(fd)

    def create_unlink() -> None:
        os_like.close(os_like.open(new, os.O_CREAT | os.O_WRONLY, 0o644))
        os_like.unlink(new)

    return {"stat": lambda: os_like.stat(f), "open+read+close": open_read_close, "create+unlink": create_unlink}


def per_call(call: Callable[[], None]) -> float:
    call()
    started = time.perf_counter()
    for _ in range(N):
        call()
    return (time.perf_counter() - started) / N * 1e6


def main() -> int:
    if os.geteuid() != 0:
        print("bench_pmem: needs root (to mount)", file=sys.stderr)
        return 2
    table = Table("what", "call", "pmem (µs)", "reference (µs)", "ratio", title=f"pmem: {N} calls each")
    with tempfile.TemporaryDirectory(prefix="vfslab-bench-") as tmp:
        t = Path(tmp)
        for d in ("tmpfs", "P", "pmnt", "pass"):
            (t / d).mkdir()
        mounts.mount_kernel("tmpfs", "mode=0755,size=64m", t / "tmpfs")
        try:
            pool = t / "tmpfs" / "bench.pool"
            PmemFS.mkfs(str(pool), 16 << 20)
            fs = PmemFS.open(str(pool))
            f = fs.openat(fs.pool.root, "/file", os.O_CREAT | os.O_WRONLY, 0o644)
            fs.write(f, DATA)
            fs.close_file(f)
            router = Router()
            router.mount(str(t / "P"), fs)
            plain = t / "tmpfs" / "plain"
            plain.mkdir()
            (plain / "file").write_bytes(DATA)
            mine, theirs = workloads(router, str(t / "P")), workloads(os, str(plain))
            for name in mine:
                a, b = per_call(mine[name]), per_call(theirs[name])
                table.add_row("router vs tmpfs", name, f"{a:.1f}", f"{b:.1f}", f"{a / b:.1f}x")
            router.close_all()
            fs.close()
            pmem = mounts.start_fuse([sys.executable, "-m", "vfslab.impl.pmem.main", str(pool), str(t / "pmnt"),
                                      "-f"], t / "pmnt", log=t / "pmem.log")
            here = Path(__file__).resolve().parent
            passthrough = mounts.start_fuse([sys.executable, str(here / "passthrough.py"), str(plain),
                                             str(t / "pass")], t / "pass", log=t / "pass.log")
            try:
                with mounts.watchdog(600, lambda: (mounts.abort(t / "pmnt", pmem.pid),
                                                   mounts.abort(t / "pass", passthrough.pid))):
                    mine, theirs = workloads(os, str(t / "pmnt")), workloads(os, str(t / "pass"))
                    for name in mine:
                        a, b = per_call(mine[name]), per_call(theirs[name])
                        table.add_row("pmem-fuse vs passthrough", name, f"{a:.1f}", f"{b:.1f}", f"{a / b:.1f}x")
            finally:
                mounts.unmount(t / "pmnt", pmem.pid)
                mounts.unmount(t / "pass", passthrough.pid)
        finally:
            mounts.unmount(t / "tmpfs")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
