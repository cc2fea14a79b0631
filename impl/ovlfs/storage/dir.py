"""`dir:PATH`: the storage in a directory: the tables in one metadata file, contents in a storage file system.

    PATH/ovlfs.meta      the image (disk.py: magic OVLFSDIR, version, the tables as JSON; no data section)
    PATH/ovlfs.meta.tmp  only while a sync writes, or after a crash in one (removed at Init)
    PATH/fs/             the storage file system: fs/<ino> holds regular file <ino>'s contents (mode 0600)

Operations are durable at Sync: the contents written since the last sync are fsynced, then the metadata file is
replaced atomically (temp file, fsync, rename, fsync of PATH), then the contents of inodes that left storage are
unlinked. After a crash the metadata is the last sync's (old or new, never a mix); contents written after it may
be newer than it, as on a file system that does not journal data. Init repairs what a crash can leave: the temp
file, contents files of no stored inode, contents longer than their inode's size.

Nothing is followed: PATH itself is opened with O_NOFOLLOW, and everything in it relative to its fd (or fs/'s)
with O_NOFOLLOW; a contents file that is a symlink, a device, a FIFO or a hard link is refused (ELOOP or EUCLEAN).
The same `crash_at`/`persists` hook as file: counts the metadata file's persist points.
"""

from __future__ import annotations

import contextlib
import errno as E
import os
import shutil
import stat as st
import time

from vfslab.impl.ovlfs.storage import disk
from vfslab.impl.ovlfs.storage.base import Persists, TablesMethod
from vfslab.impl.ovlfs.storage.method import StatFs, storage_error
from vfslab.impl.ovlfs.storage.tables import Tables, root_inode

MAGIC = b"OVLFSDIR"
META = "ovlfs.meta"
FS = "fs"
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | disk.NOFOLLOW


class DirContents:
    """Regular files' contents as files fs/<ino>, each opened for the one call that needs it."""

    def __init__(self, fs_fd: int, what: str) -> None:
        self.fs_fd = fs_fd
        self.what = what
        self.written: set[int] = set()  # to fsync at the next sync
        self.removed: set[int] = set()  # to unlink once the metadata no longer has them

    def _open(self, ino: int, flags: int) -> int:
        return disk.open_regular(self.fs_fd, str(ino), flags, f"{self.what}/{FS}/{ino}")

    def read(self, ino: int, offset: int, size: int) -> bytes:
        try:
            fd = self._open(ino, os.O_RDONLY)
        except FileNotFoundError:
            return b""  # never written: all zeros
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    def write(self, ino: int, offset: int, data: bytes) -> None:
        fd = self._open(ino, os.O_WRONLY | os.O_CREAT)
        try:
            disk.write_all(fd, data, offset)
        finally:
            os.close(fd)
        self.written.add(ino)

    def truncate(self, ino: int, size: int) -> None:
        try:
            fd = self._open(ino, os.O_WRONLY)
        except FileNotFoundError:
            return
        try:
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
        finally:
            os.close(fd)
        self.written.add(ino)

    def remove(self, ino: int) -> None:
        self.removed.add(ino)
        self.written.discard(ino)

    def flush(self) -> None:
        """Make what was written durable (before the metadata that counts on it)."""
        for ino in sorted(self.written):
            try:
                fd = self._open(ino, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.written.clear()
        os.fsync(self.fs_fd)

    def forget(self) -> None:
        """Unlink the contents of inodes the (durable) metadata no longer has."""
        for ino in sorted(self.removed):
            disk.remove(self.fs_fd, str(ino))
        self.removed.clear()

    def repair(self, tables: Tables) -> None:
        """After a crash: drop contents files of no stored regular file, cut those longer than their size."""
        for name in os.listdir(self.fs_fd):
            node = tables.inodes.get(int(name)) if name.isdigit() else None
            if node is None or not st.S_ISREG(node.mode):
                disk.remove(self.fs_fd, name)
            else:
                self.truncate(int(name), node.size)
        self.flush()


class DirMethod(TablesMethod, Persists):
    scheme = "dir"

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self._fd: int | None = None

    @classmethod
    def mkfs(cls, location: str, force: bool = False) -> None:
        """PATH must be missing or an empty directory; with `force`, a directory holding anything is taken, and
        the storage of ours in it (the metadata, fs/) replaced; what else it holds is left alone."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(location, 0o700)
        fd = os.open(location, DIRECTORY)
        try:
            if os.listdir(fd) and not force:
                raise storage_error(E.EEXIST, f"{location}: not empty (use force to format it anyway)")
            for name in (META, disk.temp_name(META)):
                disk.remove(fd, name)
            _remove_tree(fd, FS)
            os.mkdir(FS, 0o700, dir_fd=fd)
            tables = Tables.fresh(root_inode(os.getuid(), os.getgid(), time.time_ns()))
            disk.replace_atomically(fd, META, disk.pack(MAGIC, tables.to_json()), lambda what: None)
        finally:
            os.close(fd)

    def _open(self) -> tuple[Tables, DirContents]:
        fd = os.open(self.location, DIRECTORY)
        fs_fd = None
        try:
            try:
                raw = disk.read_regular(fd, META, f"{self.location}/{META}")
            except FileNotFoundError:
                raise storage_error(E.EINVAL, f"{self.location}: not formatted (no {META}; run mkfs)") from None
            tables = Tables.from_json(disk.unpack(MAGIC, raw, f"{self.location}/{META}")[0], self.location)
            try:
                fs_fd = os.open(FS, DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                raise storage_error(E.EUCLEAN, f"{self.location}: corrupt storage (no {FS}/)") from None
            contents = DirContents(fs_fd, self.location)
            disk.remove(fd, disk.temp_name(META))
            contents.repair(tables)
        except BaseException:
            if fs_fd is not None:
                os.close(fs_fd)
            os.close(fd)
            raise
        self._fd = fd
        return tables, contents

    def _close(self) -> None:
        os.close(self.contents.fs_fd)
        os.close(self._fd)
        self._fd = None

    def sync(self) -> None:
        self.contents.flush()
        disk.replace_atomically(self._fd, META, disk.pack(MAGIC, self.tables.to_json()), self.point)
        self.contents.forget()

    def statfs(self) -> StatFs:
        """The storage file system's space; its free inodes, each of which can hold one more of ours."""
        s = os.fstatvfs(self.contents.fs_fd)
        return StatFs(bsize=s.f_frsize, blocks=s.f_blocks, bfree=s.f_bfree, files=len(self.tables.inodes)
                      + s.f_ffree, ffree=s.f_ffree)


def _remove_tree(dir_fd: int, name: str) -> None:
    """Remove `name` in `dir_fd` and all below it, following no symlink (rmtree with a dir_fd walks by fds)."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if st.S_ISDIR(mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)
