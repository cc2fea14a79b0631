"""`pmem:POOL[?size=N]`: the storage in a persistent-memory pool, each operation one pool transaction.

The pool (impl/pmem/pool.py) holds a PmemFS (impl/pmem/fs.py); in its root directory:

    ovlfs        the header, JSON: {"format": "vfslab-ovlfs-pmem", "version": 1, "next_ino": N}
    <ino>        inode <ino>'s record, JSON (tables.py's `record`: attributes, mappings, flags, and a directory's
                 entries, a symlink's target)
    <ino>.data   regular file <ino>'s contents

Every operation that changes anything writes the records it changed (and the header, when it gave an inode
number, and the contents it wrote) in one transaction of the pool: after a crash the storage is as before the
operation or as after it, never between; Sync has nothing left to do. A transaction is bounded by the pool's undo
log (1/64 of the pool): an operation that would log more fails with ENOSPC and changes nothing (then the tables in
memory are read back from the pool, which rolled back).

`crash_at`/`persists` are the pool's (set `crash_at` after Init: the persist points of the operations that follow
are counted from the pool's opening).

mkfs: a pool of `?size=N` bytes (N with K, M or G; 16M when not given), formatted, with the header and the root.
An existing pmem pool with nothing in it (`vfslab pmem mkfs`) is taken as it is; anything else at POOL is refused
unless forced (then formatted anew; never a directory).
"""

from __future__ import annotations

import contextlib
import errno as E
import json
import os
import stat as st
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vfslab.impl.ovlfs.storage.base import TablesMethod
from vfslab.impl.ovlfs.storage.method import StatFs, storage_error
from vfslab.impl.ovlfs.storage.tables import Tables, root_inode
from vfslab.impl.pmem.fs import PmemFS
from vfslab.impl.pmem.pool import BLOCK, Crash, Pool, PoolError

FORMAT = "vfslab-ovlfs-pmem"
VERSION = 1
HEADER = "ovlfs"
DATA = ".data"
DEFAULT_SIZE = 16 << 20
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse(location: str) -> tuple[str, int]:
    """(pool path, size for mkfs) of `POOL[?size=N]`; ValueError for any other option."""
    path, _, query = location.partition("?")
    if not query:
        return path, DEFAULT_SIZE
    key, _, value = query.partition("=")
    number, unit = value.rstrip("KMG"), value[len(value.rstrip("KMG")):]
    if key != "size" or not number.isdigit() or unit not in UNITS:
        raise ValueError(f"pmem:{location}: the one option is ?size=N (bytes, or with K, M or G)")
    return path, int(number) * UNITS[unit]


def _read(fs: PmemFS, name: str) -> bytes:
    f = fs.openat(fs.pool.root, name, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return fs.pread(f, fs.stat(f.ino).st_size, 0)
    finally:
        fs.close_file(f)


def _write(fs: PmemFS, name: str, data: bytes) -> None:
    """`name` holds `data` (rewritten in place, then cut: within the open transaction)."""
    f = fs.openat(fs.pool.root, name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fs.pwrite(f, data, 0)
        fs.truncate(f.ino, len(data))
    finally:
        fs.close_file(f)


def _header(next_ino: int) -> bytes:
    return json.dumps({"format": FORMAT, "version": VERSION, "next_ino": next_ino}).encode()


def _record(tables: Tables, ino: int) -> bytes:
    return json.dumps(tables.record(ino), separators=(",", ":")).encode()


class PmemContents:
    """Regular files' contents as files <ino>.data of the pool's file system."""

    def __init__(self, fs: PmemFS) -> None:
        self.fs = fs

    def read(self, ino: int, offset: int, size: int) -> bytes:
        try:
            f = self.fs.openat(self.fs.pool.root, f"{ino}{DATA}", os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return b""
        try:
            return self.fs.pread(f, size, offset)
        finally:
            self.fs.close_file(f)

    def write(self, ino: int, offset: int, data: bytes) -> None:
        f = self.fs.openat(self.fs.pool.root, f"{ino}{DATA}", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            self.fs.pwrite(f, data, offset)
        finally:
            self.fs.close_file(f)

    def truncate(self, ino: int, size: int) -> None:
        try:
            data = self.fs.lookup(self.fs.pool.root, f"{ino}{DATA}", follow=False)
        except FileNotFoundError:
            return
        if self.fs.stat(data).st_size > size:
            self.fs.truncate(data, size)

    def remove(self, ino: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.unlinkat(self.fs.pool.root, f"{ino}{DATA}")


class PmemMethod(TablesMethod):
    scheme = "pmem"

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.path, self.size = parse(location)
        self.fs: PmemFS | None = None
        self._crash_at: int | None = None
        self._stored_next = 0  # the header's next_ino

    # ---- the crash hook: the pool's ------------------------------------------------------------------

    @property
    def persists(self) -> int:
        return self.fs.pool.persists if self.fs else 0

    @property
    def crash_at(self) -> int | None:
        return self._crash_at

    @crash_at.setter
    def crash_at(self, value: int | None) -> None:
        self._crash_at = value
        if self.fs:
            self.fs.pool.crash_at = value

    # ---- formatting, opening -------------------------------------------------------------------------

    @classmethod
    def mkfs(cls, location: str, force: bool = False) -> None:
        path, size = parse(location)
        try:
            mode = os.stat(path, follow_symlinks=False).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and st.S_ISDIR(mode):
            raise storage_error(E.EISDIR, f"{path}: a directory (pmem storage is a pool file)")
        fresh = mode is None or force
        if not fresh and not _empty_pool(path):
            raise storage_error(E.EEXIST, f"{path}: exists (use force to format it anyway)")
        try:
            if fresh:
                PmemFS.mkfs(path, size)
            fs = PmemFS.open(path)
        except PoolError as e:
            raise storage_error(E.EINVAL, str(e)) from None
        try:
            tables = Tables.fresh(root_inode(os.getuid(), os.getgid(), time.time_ns()))
            with fs.pool.transaction():
                _write(fs, HEADER, _header(tables.next_ino))
                for ino in tables.inodes:
                    _write(fs, str(ino), _record(tables, ino))
        finally:
            fs.close()

    def _open(self) -> tuple[Tables, PmemContents]:
        if not os.path.lexists(self.path):
            raise storage_error(E.ENOENT, f"{self.path}: no such pool (run mkfs)")
        try:
            pool = Pool.open(self.path)
        except PoolError as e:  # our magic in a pool that does not open is a damaged pool; else no pool at all
            raise storage_error(E.EUCLEAN if Pool.is_pool(self.path) else E.EINVAL, str(e)) from None
        try:
            self.fs = PmemFS(pool)
            tables = self._load()
        except BaseException as e:
            pool.close()
            self.fs = None
            if isinstance(e, Exception) and not isinstance(e, OSError):  # what garbage makes PmemFS raise
                raise storage_error(E.EUCLEAN, f"{self.path}: corrupt storage ({type(e).__name__})") from None
            raise
        pool.crash_at = self._crash_at
        return tables, PmemContents(self.fs)

    def _load(self) -> Tables:
        """The tables as the pool holds them: the header, then every record."""
        fs, what = self.fs, self.path
        try:
            header = json.loads(_read(fs, HEADER))
        except FileNotFoundError:
            raise storage_error(E.EINVAL, f"{what}: a pmem pool without ovlfs storage (run mkfs)") from None
        except ValueError:
            raise storage_error(E.EUCLEAN, f"{what}: corrupt storage (its header is no JSON)") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise storage_error(E.EINVAL, f"{what}: not ovlfs storage (no {FORMAT} header)")
        if header.get("version") != VERSION:
            raise storage_error(E.EINVAL, f"{what}: format version {header.get('version')}; this vfslab reads "
                                          f"version {VERSION}")
        records: dict[int, Any] = {}
        contents: dict[int, int] = {}  # ino -> length stored
        for name, child in fs.entries(fs.pool.root):
            stem = name.removesuffix(DATA)
            if name == HEADER:
                continue
            if not stem.isdigit():
                raise storage_error(E.EUCLEAN, f"{what}: corrupt storage (a file {name!r} in it)")
            if stem != name:
                contents[int(stem)] = fs.stat(child).st_size
                continue
            try:
                records[int(name)] = json.loads(_read(fs, name))
            except ValueError:
                raise storage_error(E.EUCLEAN, f"{what}: corrupt storage (record {name} is no JSON)") from None
        tables = Tables.from_records(header.get("next_ino"), records, what)
        for ino, length in contents.items():
            node = tables.inodes.get(ino)
            if node is None or not st.S_ISREG(node.mode) or length > node.size:
                raise storage_error(E.EUCLEAN, f"{what}: corrupt storage (contents {ino}{DATA} of no such file)")
        self._stored_next = tables.next_ino
        return tables

    def _close(self) -> None:
        self.fs.close()
        self.fs = None

    # ---- each change, one transaction ----------------------------------------------------------------

    @contextmanager
    def _change(self) -> Iterator[None]:
        try:
            with self.fs.pool.transaction():
                yield
                self._store()
        except Crash:
            raise
        except BaseException:
            if self.tables.touched or self.tables.next_ino != self._stored_next:
                self.tables = self._load()  # the pool rolled back: so do the tables
            raise
        self.tables.touched.clear()
        self._stored_next = self.tables.next_ino

    def _store(self) -> None:
        """Write the records the operation changed, and the header if it gave an inode number."""
        for ino in sorted(self.tables.touched):
            if ino in self.tables.inodes:
                _write(self.fs, str(ino), _record(self.tables, ino))
            else:
                self.fs.unlinkat(self.fs.pool.root, str(ino))
        if self.tables.next_ino != self._stored_next:
            _write(self.fs, HEADER, _header(self.tables.next_ino))

    def sync(self) -> None:
        """Nothing to do: each operation was made durable by its own transaction."""

    def statfs(self) -> StatFs:
        """The pool's data blocks and its file system's inodes (a regular file of ours takes two of them)."""
        pool = self.fs.pool
        free_blocks = sum(not pool.block_used(b) for b in range(pool.data_start, pool.blocks))
        free_inodes = sum(self.fs.inode(i).mode == 0 for i in range(1, pool.inodes + 1))
        return StatFs(bsize=BLOCK, blocks=pool.blocks - pool.data_start, bfree=free_blocks,
                      files=len(self.tables.inodes) + free_inodes, ffree=free_inodes)


def _empty_pool(path: str) -> bool:
    """A pool with nothing in it yet (formatted by `vfslab pmem mkfs`)?"""
    if not Pool.is_pool(path):
        return False
    try:
        fs = PmemFS.open(path)
    except (PoolError, OSError):
        return False
    try:
        return not fs.entries(fs.pool.root)
    finally:
        fs.close()
