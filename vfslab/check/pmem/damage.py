"""Damaged pools: a pool holding a small tree, one byte of it flipped (or the file cut short), then reopened.

The pool must be refused with one line that names it (`PoolError`), or open and then pass `fsck` or report each
problem it finds in one line; a damaged inode or directory met on the way is EIO. Anything else (another
exception, another errno, a message of several lines) is a failure: what a user would see as a traceback.
"""

from __future__ import annotations

import errno
import os
import traceback
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as hs

from vfslab.check.engine.kept import Kept, Replay
from vfslab.check.pmem.program import FAMILY
from vfslab.impl.pmem import fsck
from vfslab.impl.pmem.fs import INODE, PmemFS
from vfslab.impl.pmem.pool import BLOCK, INODE_SIZE, PoolError

CHECK = "damage"
POOL_SIZE = 1 << 20
#: where a flip lands: each region of the pool that the small tree uses, from its first byte, and the whole pool
REGIONS = {"header": 64, "log": 64, "inodes": 4 * INODE_SIZE, "bitmap": 16, "data": 4 * BLOCK, "anywhere": POOL_SIZE}
#: ("flip", REGION, OFFSET, MASK) xors the byte at OFFSET into REGION (modulo its size) with MASK;
#: ("truncate", "anywhere", AT, 0) cuts the file at AT
Damage = tuple
damages = hs.one_of(
    hs.tuples(hs.just("flip"), hs.sampled_from(sorted(REGIONS)), hs.integers(0, POOL_SIZE - 1), hs.integers(1, 255)),
    hs.tuples(hs.just("truncate"), hs.just("anywhere"), hs.integers(0, POOL_SIZE - 1), hs.just(0)),
)


def run(damage: Damage, scratch: Path) -> str | None:
    """What is wrong with how a pool so damaged is reopened; None when it is refused or opens as it should."""
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / "damaged.pool"
    starts = _populate(path)
    _damage(path, damage, starts)
    try:
        opened = PmemFS.open(str(path))
    except PoolError as e:
        return None if "\n" not in str(e) and str(path) in str(e) else f"refused, but not in one line naming it: {e!r}"
    except Exception as e:
        return _unexpected("opening it", e)
    try:
        problems = fsck.check(opened)
    except Exception as e:
        return _unexpected("checking it", e)
    finally:
        opened.close()
    several = [p for p in problems if "\n" in p]
    return f"fsck reported a problem in several lines: {several[0]!r}" if several else None


def _populate(path: Path) -> dict[str, int]:
    """A pool holding a directory, a file of three blocks and a symlink; where each region of it starts."""
    PmemFS.mkfs(str(path), POOL_SIZE)
    fs = PmemFS.open(str(path))
    try:
        fs.mkdirat(fs.pool.root, "/d")
        f = fs.openat(fs.pool.root, "/d/f", os.O_CREAT | os.O_WRONLY)
        fs.write(f, b"x" * 9000)
        fs.close_file(f)
        fs.symlinkat("d/f", fs.pool.root, "/s")
        pool = fs.pool
        return {"header": 0, "log": pool.log_at, "inodes": pool.inode_at, "bitmap": pool.bitmap_at,
                "data": pool.data_start * BLOCK, "anywhere": 0}
    finally:
        fs.close()


def _damage(path: Path, damage: Damage, starts: dict[str, int]) -> None:
    how, region, offset, mask = damage
    at = starts[region] + offset % REGIONS[region]
    if region == "inodes":  # into the fields of one of the tree's four inodes (1 to 4), not the padding after them
        at = starts[region] + offset // INODE.size % 4 * INODE_SIZE + offset % INODE.size
    with open(path, "r+b") as out:
        if how == "flip":
            out.seek(at)
            byte = out.read(1)[0]
            out.seek(at)
            out.write(bytes([byte ^ mask]))
        else:
            out.truncate(at)


def _unexpected(doing: str, e: Exception) -> str | None:
    if isinstance(e, OSError) and e.errno == errno.EIO:
        return None  # a damaged inode or directory met on the way: the errno a file system gives
    where = traceback.extract_tb(e.__traceback__)[-1]
    return f"{doing}: {type(e).__name__}: {e} (at {Path(where.filename).name}:{where.lineno})"


@dataclass
class DamageProgram(Kept):
    """One damage done to a populated pool (kept for `vfslab replay`)."""

    family = FAMILY

    damage: Damage
    subject: str = ""
    profile: str = ""
    message: str = ""

    def to_json(self) -> dict:
        return {"family": FAMILY, "check": CHECK, "subject": self.subject, "profile": self.profile,
                "message": self.message, "layers": [], "ops": [list(self.damage)]}

    @classmethod
    def from_json(cls, data: dict) -> DamageProgram:
        (damage,) = data["ops"]
        return cls(tuple(damage), data.get("subject", ""), data.get("profile", ""), data.get("message", ""))


def replay(program: DamageProgram, scratch: Path) -> Replay:
    problem = run(program.damage, scratch)
    how, region, offset, mask = program.damage
    return Replay(trace=[f"{how} at byte {offset % REGIONS[region]} of the {region} (mask {mask:#x})"],
                  failure=problem)
