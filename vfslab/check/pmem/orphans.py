"""Orphan reclaim at reopen: files written, held open and unlinked (orphans) through the real subject, whose pool is
then closed uncleanly, and reopened.

A program runs in the routing check's program process (`subjects/process.py`) on an empty pool at /P: through
pmemfile's router in that process (`pmem-router`), or through the kernel into our FUSE front (`pmem-fuse`). It
creates files with data (sizes at a block's end among them), holds some of them open, writes through the held fds,
and unlinks held files or renames others over them: each such file is an orphan, nlink 0 and still open. Then the
pool is closed as a crash closes it: the FUSE daemon is SIGKILLed while the program still holds its fds (no
release reaches the pool), or, with the router, the program's process itself is SIGKILLed with the pool mapped.

The pool is reopened (`PmemFS.open`, what the daemon and the router do first) and must have reclaimed every
orphan: consistent (`fsck`: no inode allocated but unreachable, no block in use that no inode maps), the same
visible tree, and the same free inodes and blocks, as the same program run on the pool API and closed cleanly
(every held file closed first, so each orphan is freed by its last close). A failure is shrunk and kept for
`vfslab replay`, whose JSON says `"check": "orphans"`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as hs

from vfslab.check.engine.kept import Replay
from vfslab.check.pmem import crash
from vfslab.check.pmem.program import KERNEL, POOL_AT, PoolProgram
from vfslab.impl.pmem import fsck
from vfslab.impl.pmem.fs import PmemFS
from vfslab.model.pmem.rules import BLOCK_LIMIT
from vfslab.subjects import mounts
from vfslab.subjects.mounts import WATCHDOG_SECONDS
from vfslab.subjects.pmem import ROUTED_POOL_SIZE

CHECK = "orphans"
#: the rule a reclaimed orphan fires
RULE = "pmem.pool.orphan"
#: (op, args), on pool paths: create P SIZE (made or truncated, SIZE bytes written); hold P (opened read-write and
#: kept: the program's i-th hold is H = i); write H SIZE (through the held fd H, modulo the holds: -1 is the last);
#: release H (closed); unlink P; rename A B; link A B
Op = tuple
NAMES = hs.sampled_from(["/a", "/b", "/c"])
#: sizes around a block's end, a few blocks, and one past a file's direct blocks
SIZES = hs.sampled_from([0, 1, 100, *(BLOCK_LIMIT.value + d for d in (-1, 0, 1)), 9000, 24 * 4096 + 1])
HOLDS = hs.integers(0, 3)
OPS = hs.one_of(
    hs.tuples(hs.just("create"), NAMES, SIZES), hs.tuples(hs.just("hold"), NAMES),
    hs.tuples(hs.just("write"), HOLDS, SIZES), hs.tuples(hs.just("release"), HOLDS),
    hs.tuples(hs.just("unlink"), NAMES), hs.tuples(hs.just("rename"), NAMES, NAMES),
    hs.tuples(hs.just("link"), NAMES, NAMES),
)
#: a file made and held, then its last name gone: unlinked, or another file renamed over it (then written to)
ORPHANS = hs.builds(
    lambda path, size, how, other, grow: [("create", path, size), ("hold", path),
                                          *([("unlink", path)] if how == "unlink" else
                                            [("create", other, 1), ("rename", other, path)]),
                                          *([("write", -1, grow)] if grow else [])],
    NAMES, SIZES, hs.sampled_from(["unlink", "rename"]), hs.sampled_from(["/x", "/y"]),
    hs.sampled_from([0, 0, 1, BLOCK_LIMIT.value + 1]))
#: a program: files made, orphans made, other operations
programs = hs.tuples(hs.lists(hs.tuples(hs.just("create"), NAMES, SIZES), max_size=2),
                     hs.lists(ORPHANS, min_size=1, max_size=2), hs.lists(OPS, max_size=5)).map(
    lambda drawn: [*drawn[0], *(op for ops in drawn[1] for op in ops), *drawn[2]])
#: how long a SIGKILLed process may take to be gone
_SECONDS = 5.0


def _data(size: int, n: int) -> bytes:
    return bytes([n % 251 + 1]) * size


class PoolAPI:
    """The reference: the program on the pool's own calls, in this process."""

    def __init__(self, fs: PmemFS) -> None:
        self.fs, self.held = fs, []

    def run(self, op: Op, n: int) -> None:
        fs, root, (name, *args) = self.fs, self.fs.pool.root, op
        try:
            if name == "create":
                f = fs.openat(root, args[0], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
                try:
                    fs.write(f, _data(args[1], n))
                finally:
                    fs.close_file(f)
            elif name == "hold":
                self.held.append(fs.openat(root, args[0], os.O_RDWR))
            elif name in ("write", "release") and self.held:
                f = self.held[args[0] % len(self.held)]
                if name == "write" and f is not None:
                    fs.write(f, _data(args[1], n))
                elif f is not None:
                    fs.close_file(f)
                    self.held[args[0] % len(self.held)] = None
            elif name == "unlink":
                fs.unlinkat(root, args[0])
            elif name == "rename":
                fs.renameat2(root, args[0], root, args[1])
            elif name == "link":
                fs.linkat(root, args[0], root, args[1])
        except OSError:
            pass  # an errno: the call changed nothing

    def orphans(self) -> int:
        return len({f.ino for f in self.held if f is not None and self.fs.inode(f.ino).nlink == 0})

    def close(self) -> None:
        for f in self.held:
            if f is not None:
                self.fs.close_file(f)
        self.fs.close()


class Program:
    """The program through a routed subject's process: pool paths under /P, the held fds the process's."""

    def __init__(self, routed) -> None:
        self.routed, self.held = routed, []

    def _call(self, *call) -> dict:
        return self.routed.process.call(list(call))

    def run(self, op: Op, n: int) -> None:
        name, *args = op
        at = [f"{POOL_AT}{a}" if isinstance(a, str) else a for a in args]
        if name == "create":
            fd = self._call("open", at[0], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644).get("value")
            if fd is not None:
                self._call("write", fd, {"bytes": _data(args[1], n).decode("latin-1")})
                self._call("close", fd)
        elif name == "hold":
            fd = self._call("open", at[0], os.O_RDWR).get("value")
            if fd is not None:
                self.held.append(fd)
        elif name in ("write", "release") and self.held:
            fd = self.held[args[0] % len(self.held)]
            if name == "write" and fd is not None:
                self._call("write", fd, {"bytes": _data(args[1], n).decode("latin-1")})
            elif fd is not None:
                self._call("close", fd)
                self.held[args[0] % len(self.held)] = None
        elif name in ("unlink", "rename", "link"):
            self._call(name, *at)


@dataclass
class Verdict:
    problem: str | None = None
    #: orphans the program left (counted on the reference), pool limits met
    fired: Counter = field(default_factory=Counter)


def run(program: list[Op], subject, scratch: Path, timeout: float = WATCHDOG_SECONDS) -> Verdict:
    """Run `program` through `subject`, close its pool uncleanly, reopen it and compare with the reference."""
    scratch.mkdir(parents=True, exist_ok=True)
    want, fired, wrong = _reference(program, scratch / "reference.pool")
    if wrong:
        return Verdict(f"the program closed cleanly (on the pool's own calls) leaves the pool inconsistent: {wrong}",
                       fired)
    routed = subject.routed(scratch / "subject", KERNEL, (), POOL_AT, timeout)
    try:
        side = Program(routed)
        for n, op in enumerate(program):
            side.run(op, n)
        how = _kill(routed)
    finally:
        routed.teardown()
    fs = PmemFS.open(str(routed.pool))
    try:
        problems = fsck.check(fs)
        seen = (crash.tree(fs), _free(fs))
    finally:
        fs.close()
    if problems:
        return Verdict(f"the pool reopened after {how}: {problems[0]}", fired)
    if seen[0] != want[0]:
        differ = sorted(set(seen[0].items()) ^ set(want[0].items()))
        return Verdict(f"the pool reopened after {how} shows another tree than the program closed cleanly: "
                       f"{differ[:3]}", fired)
    if seen[1] != want[1]:
        return Verdict(f"the pool reopened after {how} has (inodes, blocks) free {seen[1]}, the program closed "
                       f"cleanly {want[1]}: orphans not reclaimed", fired)
    return Verdict(None, fired)


def _reference(program: list[Op], pool: Path) -> tuple[tuple, Counter, str | None]:
    """The visible tree and free counts of the program on the pool API, closed cleanly; what it met; what fsck
    finds wrong with it then."""
    PmemFS.mkfs(str(pool), ROUTED_POOL_SIZE)
    api = PoolAPI(PmemFS.open(str(pool)))
    fired: Counter = Counter()
    try:
        before = crash.sizes(api.fs)
        for n, op in enumerate(program):
            api.run(op, n)
            now = crash.sizes(api.fs)
            fired.update(crash.pool_limits(before, now))
            before = now
        fired[RULE] += api.orphans()
    finally:
        api.close()
    fs = PmemFS.open(str(pool))
    try:
        problems = fsck.check(fs)
        return (crash.tree(fs), _free(fs)), fired, problems[0] if problems else None
    finally:
        fs.close()


def _free(fs: PmemFS) -> tuple[int, int]:
    pool = fs.pool
    return (sum(not fs.inode(i).mode for i in range(1, pool.inodes + 1)),
            sum(not pool.block_used(b) for b in range(pool.data_start, pool.blocks)))


def _kill(routed) -> str:
    """Close the pool as a crash would: SIGKILL the FUSE daemon serving it (the program still holding its files),
    or, with no daemon (the router), the program's process that has it mapped. What was done, in words."""
    mount_point = Path(os.path.abspath(routed.root / POOL_AT))  # not resolve(): no lstat on a FUSE mount
    daemon = next((m.pid for m in mounts.live_mounts() if m.path == mount_point and m.pid is not None), None)
    if daemon is not None:
        _sigkill(daemon)
        return "its FUSE daemon was SIGKILLed"
    pid = routed.process.pid
    routed.process.stop()  # SIGKILL
    _gone(pid)
    return "the program's process (the router, the pool mapped) was SIGKILLed"


def _sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _gone(pid)


def _gone(pid: int | None) -> None:
    """Wait until `pid` has exited (the fork server's children are reaped by the kernel)."""
    deadline = time.monotonic() + _SECONDS
    while pid is not None and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.002)


class OrphanProgram(PoolProgram):
    """A program that leaves orphans in a pool closed uncleanly."""

    check = CHECK


def replay(program: OrphanProgram, subject, scratch: Path) -> Replay:
    verdict = run(program.ops, subject, scratch)
    return Replay(trace=[str(op) for op in program.ops], failure=verdict.problem, coverage=dict(verdict.fired))
