"""Crash consistency: a program on a pool, crashed at every persist point, then reopened and checked.

A crash-free run records the pool's visible tree after every operation and the persist points each one spans.
Then, for every persist point k, the program runs again on a fresh copy of the starting pool and "crashes" at k
(the pool's stores not yet persisted are lost); the pool is reopened (recovery: the undo log rolled back,
orphans reclaimed) and must be consistent (`fsck`) and show the tree from just before or just after the
operation that was cut short: all or nothing.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat as st
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as hs

from vfslab.check.engine.kept import Kept, Replay
from vfslab.check.pmem.program import FAMILY
from vfslab.impl.pmem import fsck
from vfslab.impl.pmem.fs import RENAME_EXCHANGE, RENAME_NOREPLACE, PmemFS
from vfslab.impl.pmem.pool import Crash

#: (op, args): create P; append P N; mkdir P; rmdir P; unlink P; rename A B FLAGS; link A B; symlink T P;
#: truncate P SIZE; hold P (open it and keep it open: unlinking it then leaves an orphan)
Op = tuple
#: what a crashed program starts from: an empty pool of this size
POOL_SIZE = 1 << 20
NAMES = hs.sampled_from(["/a", "/b", "/d", "/d/a", "/d/b", "/e"])
OPS = hs.one_of(
    hs.tuples(hs.just("create"), NAMES), hs.tuples(hs.just("append"), NAMES, hs.sampled_from([1, 100, 5000])),
    hs.tuples(hs.just("mkdir"), NAMES), hs.tuples(hs.just("rmdir"), NAMES), hs.tuples(hs.just("unlink"), NAMES),
    hs.tuples(hs.just("rename"), NAMES, NAMES, hs.sampled_from([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE])),
    hs.tuples(hs.just("link"), NAMES, NAMES), hs.tuples(hs.just("symlink"), hs.just("a"), NAMES),
    hs.tuples(hs.just("truncate"), NAMES, hs.sampled_from([0, 3, 9000])), hs.tuples(hs.just("hold"), NAMES),
)
programs = hs.lists(OPS, min_size=1, max_size=8)


def tree(fs: PmemFS) -> dict[str, tuple]:
    """The visible tree: path -> (kind, mode, nlink, size, content digest or symlink target)."""
    out, todo = {}, [("", fs.pool.root)]
    while todo:
        prefix, d = todo.pop()
        for name, child in fs.entries(d):
            if name == "..":
                continue
            node, path = fs.inode(child), f"{prefix}/{name}"
            kind = st.S_IFMT(node.mode)
            body = fs._read(node, 0, node.size)
            what = body.decode(errors="surrogateescape") if kind == st.S_IFLNK else hashlib.sha1(body).hexdigest()
            out[path] = (kind, st.S_IMODE(node.mode), node.nlink, 0 if kind == st.S_IFDIR else node.size,
                         "" if kind == st.S_IFDIR else what)
            if kind == st.S_IFDIR:
                todo.append((path, child))
    return out


def apply(fs: PmemFS, op: Op, held: list) -> None:
    """One operation; an errno is an outcome like any other (the call changed nothing)."""
    root, name, *args = fs.pool.root, *op
    try:
        if name == "create":
            fs.close_file(fs.openat(root, args[0], os.O_CREAT | os.O_WRONLY, 0o644))
        elif name == "append":
            f = fs.openat(root, args[0], os.O_WRONLY | os.O_APPEND)
            try:
                fs.write(f, bytes([len(held) % 251 + 1]) * args[1])
            finally:
                fs.close_file(f)
        elif name == "mkdir":
            fs.mkdirat(root, args[0], 0o755)
        elif name == "rmdir":
            fs.unlinkat(root, args[0], rmdir=True)
        elif name == "unlink":
            fs.unlinkat(root, args[0])
        elif name == "rename":
            fs.renameat2(root, args[0], root, args[1], args[2])
        elif name == "link":
            fs.linkat(root, args[0], root, args[1])
        elif name == "symlink":
            fs.symlinkat(args[0], root, args[1])
        elif name == "truncate":
            fs.truncate(fs.lookup(root, args[0]), args[1])
        elif name == "hold":
            held.append(fs.openat(root, args[0], os.O_RDONLY))
        else:
            raise ValueError(f"unknown pool operation {name!r}")
    except OSError as e:
        if e.errno == errno.EIO:
            raise


@dataclass
class Verdict:
    """`problem` is None when every crash point recovered consistently, all or nothing."""

    persist_points: int
    problem: str | None = None


def run(program: list[Op], pool: Path, scratch: Path) -> Verdict:
    """Crash `program` (run on a copy of `pool`) at each of its persist points; check each recovery."""
    work = scratch / "work.pool"
    shutil.copyfile(pool, work)
    fs = PmemFS.open(str(work))
    states, marks, held = [tree(fs)], [fs.pool.persists], []
    for op in program:
        apply(fs, op, held)
        states.append(tree(fs))
        marks.append(fs.pool.persists)
    fs.close()
    for k in range(marks[0] + 1, marks[-1] + 1):
        shutil.copyfile(pool, work)
        fs = PmemFS.open(str(work))
        fs.pool.crash_at, held, cut = k, [], None
        try:
            for i, op in enumerate(program, 1):
                cut = i
                apply(fs, op, held)
        except Crash:
            pass
        else:
            return Verdict(marks[-1], f"no crash at persist point {k}: the runs differ")
        finally:
            fs.close()
        after = PmemFS.open(str(work))
        try:
            problems = fsck.check(after)
            seen = tree(after)
        finally:
            after.close()
        where = f"crash at persist point {k}, in op {cut} {program[cut - 1]}"
        if problems:
            return Verdict(marks[-1], f"{where}: inconsistent after recovery: {problems[0]}")
        if seen not in (states[cut - 1], states[cut]):
            return Verdict(marks[-1], f"{where}: the tree is neither the one before nor after it")
    return Verdict(marks[-1])


@dataclass
class CrashProgram(Kept):
    """A program on an empty pool, crashed at each of its persist points (kept for `vfslab replay`)."""

    family = FAMILY

    ops: list[Op]
    subject: str = ""
    profile: str = ""
    message: str = ""

    def to_json(self) -> dict:
        return {"family": FAMILY, "check": "crash", "subject": self.subject, "profile": self.profile,
                "message": self.message, "layers": [], "ops": [list(op) for op in self.ops]}

    @classmethod
    def from_json(cls, data: dict) -> CrashProgram:
        return cls([tuple(op) for op in data["ops"]], data.get("subject", ""), data.get("profile", ""),
                   data.get("message", ""))


def replay(program: CrashProgram, scratch: Path) -> Replay:
    """Crash the program at each persist point of a fresh pool's run."""
    scratch.mkdir(parents=True, exist_ok=True)
    start = scratch / "start.pool"
    PmemFS.mkfs(str(start), POOL_SIZE)
    verdict = run(program.ops, start, scratch)
    return Replay(trace=[str(op) for op in program.ops] + [f"{verdict.persist_points} persist points crashed at"],
                  failure=verdict.problem)
