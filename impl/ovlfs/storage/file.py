"""`file:PATH`: the seed's File Storage method: one file holding everything, written whole at Sync.

PATH is an image (disk.py: magic OVLFSFIL): the tables as JSON, with "contents": {"<ino>": [offset, length]}
pointing into the data section, which holds every regular file's bytes. Init reads it all and closes it; the
operations work in memory; Sync ("the File Storage method only writes to its storage file by writing the entire
file") writes it anew beside PATH, as PATH.tmp, fsyncs it, renames it over PATH and fsyncs the directory, so a crash
leaves the old file or the new one, never a mix. Init removes a PATH.tmp a crash left.

Crash testing: `persists` counts the persist points of a sync (each `chunk` bytes of PATH.tmp written, its fsync,
the rename, the directory's fsync); when it reaches `crash_at`, `Crash` is raised before that step.
"""

from __future__ import annotations

import errno as E
import os
import stat as st
import time
from typing import Any

from vfslab.impl.ovlfs.storage import disk
from vfslab.impl.ovlfs.storage.base import Persists, TablesMethod
from vfslab.impl.ovlfs.storage.method import StatFs, storage_error
from vfslab.impl.ovlfs.storage.tables import Tables, root_inode

MAGIC = b"OVLFSFIL"
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: what one more inode takes in the file, about: for Statfs's free inodes
RECORD_BYTES = 256


class MemoryContents:
    """Regular files' bytes in memory, until the next sync writes them with everything else."""

    def __init__(self, data: dict[int, bytearray] | None = None) -> None:
        self.data = data or {}

    def read(self, ino: int, offset: int, size: int) -> bytes:
        return bytes(self.data.get(ino, b"")[offset:offset + size])

    def write(self, ino: int, offset: int, data: bytes) -> None:
        buf = self.data.setdefault(ino, bytearray())
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset:offset + len(data)] = data

    def truncate(self, ino: int, size: int) -> None:
        del self.data.get(ino, bytearray())[size:]

    def remove(self, ino: int) -> None:
        self.data.pop(ino, None)

    def image(self, tables: Tables) -> bytes:
        meta, blob, at = tables.to_json(), bytearray(), 0
        meta["contents"] = {}
        for ino in sorted(self.data):
            meta["contents"][str(ino)] = [at, len(self.data[ino])]
            blob += self.data[ino]
            at += len(self.data[ino])
        return disk.pack(MAGIC, meta, bytes(blob))

    @classmethod
    def from_image(cls, where: Any, blob: bytes, tables: Tables, what: str) -> MemoryContents:
        """The contents an image's tables point to; EUCLEAN if they point anywhere else than a stored regular
        file's bytes (within the data section, no longer than its size)."""
        data = {}
        try:
            for key, (at, length) in where.items():
                node = tables.inodes.get(int(key))
                if node is None or not st.S_ISREG(node.mode) or not 0 <= length <= node.size \
                        or not 0 <= at <= at + length <= len(blob):
                    raise ValueError(f"contents of inode {key}")
                data[int(key)] = bytearray(blob[at:at + length])
        except (AttributeError, TypeError, ValueError) as e:
            raise storage_error(E.EUCLEAN, f"{what}: corrupt storage ({e})") from None
        return cls(data)


class FileMethod(TablesMethod, Persists):
    scheme = "file"
    #: bytes of the temp file per write (per persist point)
    chunk = disk.CHUNK

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self._dir_fd: int | None = None  # the directory PATH is in: the sync writes beside what Init read

    @classmethod
    def mkfs(cls, location: str, force: bool = False) -> None:
        """PATH must not exist (with `force` an existing file is replaced; never a directory)."""
        parent, name = _split(location)
        dir_fd = os.open(parent, DIRECTORY)
        try:
            try:
                mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                mode = None
            if mode is not None and st.S_ISDIR(mode):
                raise storage_error(E.EISDIR, f"{location}: a directory (file storage is one file)")
            if mode is not None and not force:
                raise storage_error(E.EEXIST, f"{location}: exists (use force to format it anyway)")
            tables = Tables.fresh(root_inode(os.getuid(), os.getgid(), time.time_ns()))
            disk.replace_atomically(dir_fd, name, MemoryContents().image(tables), lambda what: None)
        finally:
            os.close(dir_fd)

    def _open(self) -> tuple[Tables, MemoryContents]:
        parent, name = _split(self.location)
        dir_fd = os.open(parent, DIRECTORY)
        try:
            try:
                raw = disk.read_regular(dir_fd, name, self.location)
            except FileNotFoundError:
                raise storage_error(E.ENOENT, f"{self.location}: no such storage (run mkfs)") from None
            meta, blob = disk.unpack(MAGIC, raw, self.location)
            tables = Tables.from_json(meta, self.location)
            contents = MemoryContents.from_image(meta.get("contents"), blob, tables, self.location)
            disk.remove(dir_fd, disk.temp_name(name))
        except BaseException:
            os.close(dir_fd)
            raise
        self._dir_fd = dir_fd
        return tables, contents

    def _close(self) -> None:
        os.close(self._dir_fd)
        self._dir_fd = None

    def sync(self) -> None:
        disk.replace_atomically(self._dir_fd, _split(self.location)[1], self.contents.image(self.tables),
                                self.point, self.chunk)

    def statfs(self) -> StatFs:
        """The space of the file system the file is on; as many more inodes as its free space holds records."""
        s = os.fstatvfs(self._dir_fd)
        free = s.f_bfree * s.f_frsize // RECORD_BYTES
        return StatFs(bsize=s.f_frsize, blocks=s.f_blocks, bfree=s.f_bfree, files=len(self.tables.inodes) + free,
                      ffree=free)


def _split(location: str) -> tuple[str, str]:
    parent, name = os.path.split(location)
    if not name:
        raise storage_error(E.EINVAL, f"{location!r}: file storage is a file's path")
    return parent or ".", name
