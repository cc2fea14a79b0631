"""Crash consistency: a program on a pool, crashed at every persist point, then reopened and checked.

A crash-free run records the pool's visible tree after every operation and the persist points each one spans.
Then, for every persist point k, the program runs again on a fresh copy of the starting pool and "crashes" at k
(the pool's stores not yet persisted are lost); the pool is reopened (recovery: the undo log rolled back,
orphans reclaimed) and must be consistent (`fsck`) and show the tree from just before or just after the
operation that was cut short: all or nothing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import shutil
import stat as st
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as hs

from vfslab.check.engine.kept import Replay
from vfslab.check.pmem.program import PoolProgram
from vfslab.impl.pmem import fsck
from vfslab.impl.pmem.fs import RENAME_EXCHANGE, RENAME_NOREPLACE, PmemFS
from vfslab.impl.pmem.pool import BLOCK, Crash
from vfslab.model.pmem.rules import BLOCK_LIMIT, DIR_BLOCK_LIMIT, DIRECT_LIMIT

#: (op, args): create P; append P N; mkdir P; rmdir P; unlink P; rename A B FLAGS; link A B; symlink T P;
#: truncate P SIZE; hold P (open it and keep it open: unlinking it then leaves an orphan); fill D N (files f00,
#: f01, ... made in directory D until it holds N entries, `..` included: leading fills set the pool up and are not
#: crashed in)
Op = tuple
#: what a crashed program starts from: an empty pool of this size
POOL_SIZE = 1 << 18  # the smallest a pool may be: copied back at every crash point
NAMES = hs.sampled_from(["/a", "/b", "/d", "/d/a", "/d/b", "/e"])
#: sizes at a block's end and at the end of a file's direct blocks (pmem.pool.file-block), and between
SIZES = (0, 1, 2, 3, 100, 5000, 9000, *(n + d for n in (BLOCK_LIMIT.value, DIRECT_LIMIT.value) for d in (-1, 0, 1)))
OPS = hs.one_of(
    hs.tuples(hs.just("create"), NAMES),
    hs.tuples(hs.just("append"), NAMES, hs.sampled_from([1, 2, 100, 5000, *(BLOCK + d for d in (-1, 0, 1))])),
    hs.tuples(hs.just("mkdir"), NAMES), hs.tuples(hs.just("rmdir"), NAMES), hs.tuples(hs.just("unlink"), NAMES),
    hs.tuples(hs.just("rename"), NAMES, NAMES, hs.sampled_from([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE])),
    hs.tuples(hs.just("link"), NAMES, NAMES), hs.tuples(hs.just("symlink"), hs.just("a"), NAMES),
    hs.tuples(hs.just("truncate"), NAMES, hs.sampled_from(SIZES)), hs.tuples(hs.just("hold"), NAMES),
)


def _renaming(src: str, dst: str, src_kind: str, dst_kind: str, flags: int) -> list[Op]:
    """A rename that mostly succeeds: its names' parents made, its source made, its target made or not (never for
    NOREPLACE, always for EXCHANGE)."""
    ops: list[Op] = [("mkdir", "/d")] if "/d/" in src + dst else []
    made = {"file": "create", "dir": "mkdir"}
    ops.append((made[src_kind], src))
    if flags & RENAME_EXCHANGE and dst_kind not in made:
        dst_kind = "file"
    if dst_kind in made and not flags & RENAME_NOREPLACE:
        ops.append((made[dst_kind], dst))
    return [*ops, ("rename", src, dst, flags)]


#: renames that succeed, of each kind (RENAME_KINDS): within a directory and across, onto a new name and over an
#: existing one, NOREPLACE and EXCHANGE, files and directories; each is crashed in at every persist point
RENAMES = hs.builds(_renaming, hs.sampled_from(["/a", "/d/a"]), hs.sampled_from(["/b", "/e", "/d/b"]),
                    hs.sampled_from(["file", "file", "dir"]), hs.sampled_from(["none", "file", "dir"]),
                    hs.sampled_from([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE]))
_sizing = {"append": lambda path, n: [("truncate", path, 0), ("append", path, n)],
           "truncate": lambda path, n: [("truncate", path, n)],
           "across": lambda path, n: [("truncate", path, n - 2), ("append", path, 3)]}
#: a file made, then sized at each of a limit's edges (pmem.pool.file-block: a block's end, the end of the direct
#: blocks): written there, truncated there, or truncated to just before it and written across it
SIZED = hs.one_of(*(hs.builds(lambda path, how, sizes: [("create", path),
                                                        *(op for n in sizes for op in _sizing[how](path, n))],
                              hs.sampled_from(["/a", "/b"]), hs.sampled_from(hows),
                              hs.permutations([limit.value + d for d in (-1, 0, 1)]))
                    # a file's direct blocks are 96 KiB: reached by a truncate (a hole), not crashed in block by block
                    for limit, hows in ((BLOCK_LIMIT, sorted(_sizing)), (DIRECT_LIMIT, ["truncate", "across"]))))
#: what follows a fill of directory D: adding to it, taking from it, moving names into and out of it, up and
#: down across the block's end
_AFTER_FILL = {
    "create": lambda d: [("create", f"{d}/a")],
    "grow": lambda d: [("create", f"{d}/a"), ("mkdir", f"{d}/b"), ("create", f"{d}/e")],
    "unlink": lambda d: [("unlink", f"{d}/f00")],
    "shrink": lambda d: [("unlink", f"{d}/f00"), ("unlink", f"{d}/f01"), ("unlink", f"{d}/f02")],
    "across": lambda d: [("create", f"{d}/a"), ("create", f"{d}/b"), ("unlink", f"{d}/a"), ("unlink", f"{d}/b")],
    "move-in": lambda d: [("create", "/e"), ("rename", "/e", f"{d}/a", 0)],
    "move-out": lambda d: [("rename", f"{d}/f00", "/e", 0), ("rename", f"{d}/f01", "/b", 0)],
}
#: a directory filled up to around one block's entries first (pmem.pool.dir-block; not crashed in), then the
#: program's first operations in it, across the block's end
FILLS = hs.builds(lambda d, n, then: [("fill", d, n), *_AFTER_FILL[then](d.rstrip("/"))],
                  hs.sampled_from(["/", "/d"]), hs.sampled_from([DIR_BLOCK_LIMIT.value + d for d in (-2, -1, 0, 1)]),
                  hs.sampled_from(sorted(_AFTER_FILL)))
#: a program: maybe a fill and what follows it, a few operations of any kind, one or two renames that mostly
#: succeed and a file sized at a limit (so that every run crashes in renames of each kind and in each edge)
programs = hs.tuples(hs.lists(FILLS, max_size=1), hs.lists(OPS.map(lambda op: [op]), max_size=4),
                     hs.lists(RENAMES, max_size=4), hs.lists(SIZED, max_size=2)).map(
    lambda drawn: [op for part in drawn for ops in part for op in ops])
#: what a rename that succeeded was (several may hold); a crash check counts the persist points it crashed in each
RENAME_KINDS = ("plain", "over", "noreplace", "exchange", "across", "directory")


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


def apply(fs: PmemFS, op: Op, held: list) -> int | None:
    """One operation; an errno is an outcome like any other (the call changed nothing): returned, None for none."""
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
        elif name == "fill":
            _fill(fs, args[0], args[1])
        else:
            raise ValueError(f"unknown pool operation {name!r}")
    except OSError as e:
        if e.errno == errno.EIO:
            raise
        return e.errno
    return None


def _fill(fs: PmemFS, directory: str, entries: int) -> None:
    root = fs.pool.root
    if directory.rstrip("/"):
        with contextlib.suppress(FileExistsError):
            fs.mkdirat(root, directory, 0o755)
    ino = fs.lookup(root, directory)
    made = 0
    while len(fs.entries(ino)) < entries:
        fs.close_file(fs.openat(root, f"{directory.rstrip('/')}/f{made:02}", os.O_CREAT | os.O_WRONLY, 0o644))
        made += 1


def sizes(fs: PmemFS) -> dict[int, tuple[bool, int]]:
    """Every allocated directory's and regular file's inode -> (a directory?, its entries or bytes)."""
    out = {}
    for ino in range(1, fs.pool.inodes + 1):
        node = fs.inode(ino)
        if st.S_ISDIR(node.mode):
            out[ino] = (True, len(fs.entries(ino)))
        elif st.S_ISREG(node.mode):
            out[ino] = (False, node.size)
    return out


def pool_limits(before: dict[int, tuple[bool, int]], after: dict[int, tuple[bool, int]]) -> list[str]:
    """What an operation that changed the pool from `before` to `after` met of the pool's limits: the edge each
    directory's entries and each file's size it changed is at, and a limit's rule when it crossed the limit (a
    block taken or freed)."""
    fired = []
    for ino, (is_dir, n) in after.items():
        old = before.get(ino, (is_dir, 0))[1]
        if n == old:
            continue
        for limit in (DIR_BLOCK_LIMIT,) if is_dir else (BLOCK_LIMIT, DIRECT_LIMIT):
            if (edge := limit.edge(n)) is not None:
                fired.append(edge)
            if limit.over(n) != limit.over(old):
                fired.append(limit.rule)
    return fired


def rename_kinds(fs: PmemFS, op: Op) -> list[str]:
    """What a rename is (RENAME_KINDS), judged before it runs."""
    _, src, dst, flags = op
    root = fs.pool.root
    there = _exists(fs, dst)
    kinds = ["exchange" if flags & RENAME_EXCHANGE else "noreplace" if flags & RENAME_NOREPLACE
             else "over" if there else "plain"]
    if src.rsplit("/", 1)[0] != dst.rsplit("/", 1)[0]:
        kinds.append("across")
    if _exists(fs, src) and st.S_ISDIR(fs.inode(fs.lookup(root, src, follow=False)).mode):
        kinds.append("directory")
    return kinds


def _exists(fs: PmemFS, path: str) -> bool:
    try:
        fs.lookup(fs.pool.root, path, follow=False)
    except OSError:
        return False
    return True


@dataclass
class Verdict:
    """`problem` is None when every crash point recovered consistently, all or nothing."""

    persist_points: int
    problem: str | None = None
    #: the pool's limits met (edge ids and rules, with how often: pool_limits)
    fired: Counter = field(default_factory=Counter)
    #: renames that succeeded, by kind: the persist points crashed at in them
    renames: Counter = field(default_factory=Counter)


def run(program: list[Op], pool: Path, scratch: Path) -> Verdict:
    """Crash `program` (run on a copy of `pool`) at each of its persist points; check each recovery. Leading fills
    set the pool up first, and are not crashed in."""
    setup = list(itertools.takewhile(lambda op: op[0] == "fill", program))
    program = program[len(setup):]
    if any(op[0] == "fill" for op in program):
        raise ValueError("a fill sets a crashed program's pool up: it comes before the program's other operations")
    start, work = scratch / "setup.pool", scratch / "work.pool"
    shutil.copyfile(pool, start)
    if setup:
        fs = PmemFS.open(str(start))
        try:
            for op in setup:
                apply(fs, op, [])
        finally:
            fs.close()
    image = start.read_bytes()
    work.write_bytes(image)
    fs = PmemFS.open(str(work))
    states, marks, held = [tree(fs)], [fs.pool.persists], []
    fired: Counter = Counter()
    renames: Counter = Counter()
    measured = sizes(fs)
    for op in program:
        kinds = rename_kinds(fs, op) if op[0] == "rename" else []
        failed = apply(fs, op, held)
        states.append(tree(fs))
        marks.append(fs.pool.persists)
        now = sizes(fs)
        fired.update(pool_limits(measured, now))
        measured = now
        if failed is None:
            renames.update({kind: marks[-1] - marks[-2] for kind in kinds})
    fs.close()
    out = os.open(work, os.O_WRONLY)
    try:
        return _crashes(program, setup, image, work, out, states, marks, fired, renames)
    finally:
        os.close(out)


def _crashes(program, setup, image, work, out, states, marks, fired, renames) -> Verdict:
    """The crash at each persist point of the program's run, on the pool `image` written into `work` again (through
    `out`, open: no file made or truncated per crash)."""
    for k in range(marks[0] + 1, marks[-1] + 1):
        os.pwrite(out, image, 0)
        fs = PmemFS.open(str(work))
        fs.pool.crash_at, held, cut = k, [], None
        try:
            for i, op in enumerate(program, 1):
                cut = i
                apply(fs, op, held)
        except Crash:
            pass
        else:
            return Verdict(marks[-1], f"no crash at persist point {k}: the runs differ", fired, renames)
        finally:
            fs.close()
        after = PmemFS.open(str(work))
        try:
            problems = fsck.check(after)
            seen = tree(after)
        finally:
            after.close()
        where = f"crash at persist point {k}, in op {len(setup) + cut} {program[cut - 1]}"
        if problems:
            return Verdict(marks[-1], f"{where}: inconsistent after recovery: {problems[0]}", fired, renames)
        if seen not in (states[cut - 1], states[cut]):
            return Verdict(marks[-1], f"{where}: the tree is neither the one before nor after it", fired, renames)
    return Verdict(marks[-1], None, fired, renames)


class CrashProgram(PoolProgram):
    """A program on an empty pool, crashed at each of its persist points."""

    check = "crash"


def replay(program: CrashProgram, scratch: Path) -> Replay:
    """Crash the program at each persist point of a fresh pool's run."""
    scratch.mkdir(parents=True, exist_ok=True)
    start = scratch / "start.pool"
    PmemFS.mkfs(str(start), POOL_SIZE)
    verdict = run(program.ops, start, scratch)
    renamed = "".join(f", {n} in renames ({kind})" for kind, n in sorted(verdict.renames.items()))
    return Replay(trace=[str(op) for op in program.ops] + [f"{verdict.persist_points} persist points crashed at"
                                                           f"{renamed}"],
                  failure=verdict.problem, coverage=dict(verdict.fired))
