"""What `dir:`, `file:` and `pmem:` share: every operation, done on the in-memory `Tables` and a `Contents`.

A method says how its tables are loaded (`_open`, at Init) and dropped (`_close`, at Release), when a change is
written (`_change`: by default at Sync, which a method defines; pmem writes each change in one transaction), and
where regular files' contents live (`Contents`).

Read/Write File have pread/pwrite's semantics on the inode's size, which is the file's length: a read stops at the
size, a write past the end extends the file (what lies between reads as zeros) and grows the size, an empty write
changes nothing. A method's stored contents are never longer than the size (Update Inode to a smaller size cuts
them); where they are shorter, the rest reads as zeros. An inode added with a size has no contents yet: zeros.
"""

from __future__ import annotations

import errno as E
import hashlib
import stat as st
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from vfslab.impl.ovlfs.storage.method import Dirent, Inode, StorageMethod, storage_error
from vfslab.impl.ovlfs.storage.tables import Tables
from vfslab.impl.pmem.pool import Crash


class Contents(Protocol):
    """Where regular files' bytes are kept, by ovlfs inode number."""

    def read(self, ino: int, offset: int, size: int) -> bytes:
        """Up to `size` stored bytes at `offset` (fewer, or none, past what is stored)."""

    def write(self, ino: int, offset: int, data: bytes) -> None:
        """Store `data` at `offset`, zeros before it if that is past what is stored."""

    def truncate(self, ino: int, size: int) -> None:
        """Cut what is stored to at most `size` bytes."""

    def remove(self, ino: int) -> None:
        """Forget the inode's bytes (it left storage)."""


class Persists:
    """Persist points, counted, and a crash injected at one: the hook pmem's Pool has, for methods on files.

    `persists` counts the points passed; when it reaches `crash_at`, `point()` raises `Crash` before the step,
    leaving the disk as a crash there would."""

    persists: int = 0
    crash_at: int | None = None

    def point(self, what: str) -> None:
        self.persists += 1
        if self.persists == self.crash_at:
            raise Crash(f"crash at persist point {self.persists} ({what})")


class TablesMethod(StorageMethod):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.tables: Tables | None = None
        self.contents: Contents | None = None

    # ---- what a method provides -----------------------------------------------------------------------

    @classmethod
    def mkfs(cls, location: str, force: bool = False) -> None:
        """Prepare fresh storage at `location`: the format header and an empty root; refuse existing storage of
        any kind unless `force`."""
        raise NotImplementedError

    def _open(self) -> tuple[Tables, Contents]:
        """Read and verify the storage; on failure raise a one-line OSError with nothing left open."""
        raise NotImplementedError

    def _close(self) -> None:
        """Let go of what `_open` holds."""

    @contextmanager
    def _change(self) -> Iterator[None]:
        """Around every operation that changes the tables or contents."""
        yield

    # ---- Init, Release --------------------------------------------------------------------------------

    def init(self) -> None:
        if self.tables is not None:
            raise storage_error(E.EBUSY, f"{self.location}: already initialised")
        self.tables, self.contents = self._open()

    def release(self) -> None:
        """Frees everything, writes nothing (unmount calls Sync first)."""
        if self.tables is not None:
            self._close()
        self.tables = self.contents = None

    # ---- inodes ---------------------------------------------------------------------------------------

    def add_inode(self, ref: Inode) -> int:
        with self._change():
            return self.tables.add_inode(ref)

    def read_inode(self, ino: int) -> Inode:
        return self.tables.read_inode(ino)

    def update_inode(self, ino: int, inode: Inode) -> None:
        with self._change():
            before = self.tables.inode(ino)
            # contents first: if cutting them fails, the size must not have shrunk past them
            if st.S_ISREG(before.mode) and st.S_ISREG(inode.mode) and inode.size < before.size:
                self.contents.truncate(ino, inode.size)
            self.tables.update_inode(ino, inode)

    def clear_inode(self, ino: int) -> None:
        with self._change():
            regular = st.S_ISREG(self.tables.inode(ino).mode)
            if self.tables.clear_inode(ino) and regular:
                self.contents.remove(ino)

    # ---- mappings -------------------------------------------------------------------------------------

    def map_inode(self, ino: int, fs: str, dev: int, src_ino: int) -> None:
        with self._change():
            self.tables.map_inode(ino, fs, dev, src_ino)

    def map_lookup(self, fs: str, dev: int, src_ino: int) -> int:
        return self.tables.map_lookup(fs, dev, src_ino)

    # ---- directories ----------------------------------------------------------------------------------

    def number_dirent(self, dir_ino: int, include_deleted: bool) -> int:
        return self.tables.number_dirent(dir_ino, include_deleted)

    def read_directory(self, dir_ino: int, pos: int) -> Dirent | None:
        return self.tables.read_directory(dir_ino, pos)

    def lookup_dirent(self, dir_ino: int, name: str) -> int:
        return self.tables.lookup_dirent(dir_ino, name)

    def add_dirent(self, dir_ino: int, name: str, ino: int) -> None:
        with self._change():
            self.tables.add_dirent(dir_ino, name, ino)

    def rename_dirent(self, dir_ino: int, old: str, new: str) -> None:
        with self._change():
            self.tables.rename_dirent(dir_ino, old, new)

    def unlink_dirent(self, dir_ino: int, name: str) -> None:
        with self._change():
            self.tables.unlink_dirent(dir_ino, name)

    # ---- contents and symlinks ------------------------------------------------------------------------

    def read_file(self, ino: int, offset: int, size: int) -> bytes:
        node = self.tables.regular(ino)
        if offset < 0 or size < 0:
            raise storage_error(E.EINVAL, f"offset {offset}, size {size}")
        length = max(0, min(offset + size, node.size) - offset)
        data = self.contents.read(ino, offset, length) if length else b""
        return data + bytes(length - len(data))

    def write_file(self, ino: int, offset: int, data: bytes) -> int:
        node = self.tables.regular(ino)
        if offset < 0:
            raise storage_error(E.EINVAL, f"offset {offset}")
        if not data:
            return 0
        with self._change():
            self.contents.write(ino, offset, data)
            if offset + len(data) > node.size:
                self.tables.set_size(ino, offset + len(data))
        return len(data)

    def set_symlink(self, ino: int, target: str) -> None:
        with self._change():
            self.tables.set_symlink(ino, target)

    def read_symlink(self, ino: int) -> str:
        return self.tables.read_symlink(ino)

    # ---- the whole picture ----------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """The tables' dump (`Tables.dump`), each regular file's record with "content": the sha256 of its bytes.
        Two methods holding the same state give equal dumps."""
        out = self.tables.dump()
        for key, record in out["inodes"].items():
            if st.S_ISREG(record["mode"]):
                record["content"] = hashlib.sha256(self.read_file(int(key), 0, record["size"])).hexdigest()
        return out
