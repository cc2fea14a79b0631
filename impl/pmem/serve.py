"""A pool served through FUSE (mfusepy on libfuse3), so that every program sees its files.

Every callback is one `PmemFS` call under one lock (the pool is not thread-safe), as the caller who made the
request. When the last name of an open file is unlinked, libfuse's high-level API (whose fstat needs a path)
renames it to `.fuse_hiddenXXXX` instead, and unlinks that at the last close: we take that rename for the
unlink it stands for (the pool keeps the file as an orphan) and serve the hidden name from the open file.
Attributes are not cached (a change through one hard link would leave the others stale); entries are, for a
second.
"""

from __future__ import annotations

import errno as E
import itertools
import logging
import os
import stat as st
import threading
import time

from vfslab.impl.mfuse import FUSE, HIDDEN, mfusepy, serialised
from vfslab.impl.pmem.fs import ROOT, Cred, File, PmemFS

log = logging.getLogger("vfslab-pmem")


#: one callback at a time: the pool is not thread-safe
_locked = serialised(lambda ops: ops.lock, log)


def _caller() -> Cred:
    uid, gid, _pid = mfusepy.fuse_get_context()
    return Cred(uid, gid)


class PoolOps(mfusepy.Operations):
    use_ns = True

    def __init__(self, fs: PmemFS) -> None:
        self.fs = fs
        self.root = fs.pool.root
        self.lock = threading.RLock()
        self.files: dict[int, File] = {}
        self.hidden: dict[str, int] = {}  # hidden name -> the unlinked inode it stands for
        self._ids = itertools.count(1)

    def init_with_config(self, conn, config) -> None:
        if config is None:
            return
        config.use_ino = 1
        config.hard_remove = 0
        config.entry_timeout = 1.0
        config.attr_timeout = 0.0
        config.negative_timeout = 0.0

    def destroy(self, path: str) -> None:
        with self.lock:
            for f in self.files.values():
                self.fs.close_file(f)
            self.files.clear()
            self.fs.close()

    def _ino(self, path: str | None, fh: int | None = None) -> int:
        if fh is not None and fh in self.files:
            return self.files[fh].ino
        if path is None:
            raise mfusepy.FuseOSError(E.EBADF)
        if path in self.hidden:
            return self.hidden[path]
        return self.fs.lookup(self.root, path, follow=False)

    # ---- names ---------------------------------------------------------------------------------------

    @_locked
    def getattr(self, path: str | None, fh: int | None = None) -> dict:
        s = self.fs.stat(self._ino(path, fh))
        return {"st_ino": s.st_ino, "st_mode": s.st_mode, "st_nlink": s.st_nlink, "st_uid": s.st_uid,
                "st_gid": s.st_gid, "st_size": s.st_size, "st_blocks": s.st_blocks, "st_atime": s.st_atime_ns,
                "st_mtime": s.st_mtime_ns, "st_ctime": s.st_ctime_ns}

    @_locked
    def readlink(self, path: str) -> str:
        return self.fs.readlinkat(self.root, path, _caller())

    @_locked
    def mkdir(self, path: str, mode: int) -> None:
        self.fs.mkdirat(self.root, path, mode, _caller())

    @_locked
    def symlink(self, path: str, target: str) -> None:
        self.fs.symlinkat(target, self.root, path, _caller())

    @_locked
    def link(self, new: str, old: str) -> None:
        self.fs.linkat(self.root, old, self.root, new, _caller())

    @_locked
    def unlink(self, path: str) -> None:
        if self.hidden.pop(path, None) is None:
            self.fs.unlinkat(self.root, path, cred=_caller())

    @_locked
    def rmdir(self, path: str) -> None:
        self.fs.unlinkat(self.root, path, rmdir=True, cred=_caller())

    @_locked
    def rename(self, old: str, new: str, flags: int = 0) -> None:
        if HIDDEN.search(new) and new not in self.hidden:
            ino = self.fs.lookup(self.root, old, follow=False)
            self.fs.unlinkat(self.root, old, cred=_caller())
            self.hidden[new] = ino
            return
        self.fs.renameat2(self.root, old, self.root, new, flags, _caller())

    # The kernel has decided a change of attributes before it asks (default_permissions), and clears set-id bits
    # after another caller's write to a file through a chmod in that caller's name, which an owner check here would
    # refuse: both are made as root.
    @_locked
    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> None:
        self.fs.chmod(self._ino(path, fh), mode, ROOT)

    @_locked
    def chown(self, path: str | None, uid: int, gid: int, fh: int | None = None) -> None:
        self.fs.chown(self._ino(path, fh), uid, gid, ROOT)

    @_locked
    def truncate(self, path: str | None, length: int, fh: int | None = None) -> None:
        self.fs.truncate(self._ino(path, fh), length)

    @_locked
    def utimens(self, path: str | None, times: tuple[int, int] | None = None, fh: int | None = None) -> None:
        now = time.time_ns()
        atime, mtime = times if times is not None else (now, now)
        self.fs.utimens(self._ino(path, fh), atime, mtime, _caller())

    @_locked
    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict, int]]:
        return [(name, {"st_ino": ino, "st_mode": kind}, 0)
                for name, ino, kind in self.fs.getdents(self._ino(path, fh))]

    @_locked
    def opendir(self, path: str) -> int:
        return self._register(self.fs.openat(self.root, path, os.O_RDONLY | os.O_DIRECTORY, cred=_caller()))

    @_locked
    def releasedir(self, path: str | None, fh: int) -> None:
        self.fs.close_file(self.files.pop(fh))

    @_locked
    def statfs(self, path: str) -> dict:
        pool = self.fs.pool
        free = sum(not pool.block_used(b) for b in range(pool.data_start, pool.blocks))
        inodes_free = sum(self.fs.inode(i).mode == 0 for i in range(1, pool.inodes + 1))
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": pool.blocks - pool.data_start, "f_bfree": free,
                "f_bavail": free, "f_files": pool.inodes, "f_ffree": inodes_free, "f_favail": inodes_free,
                "f_namemax": 255}

    # ---- files ---------------------------------------------------------------------------------------

    def _register(self, f: File) -> int:
        fh = next(self._ids)
        self.files[fh] = f
        return fh

    @_locked
    def open(self, path: str, flags: int) -> int:
        return self._register(self.fs.openat(self.root, path, flags & ~os.O_CREAT, cred=_caller()))

    @_locked
    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        return self._register(self.fs.openat(self.root, path, flags | os.O_CREAT, st.S_IMODE(mode), _caller()))

    @_locked
    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return self.fs.pread(self.files[fh], size, offset)

    @_locked
    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        return self.fs.pwrite(self.files[fh], data, offset)

    @_locked
    def fallocate(self, path: str | None, mode: int, offset: int, length: int, fh: int) -> None:
        self.fs.fallocate(self.files[fh], mode, offset, length)

    def fsync(self, path: str | None, datasync: int, fh: int) -> None:
        """Every write is persisted before it returns."""

    def flush(self, path: str | None, fh: int) -> None:
        """Nothing is buffered."""

    @_locked
    def release(self, path: str | None, fh: int) -> None:
        self.fs.close_file(self.files.pop(fh))


def serve(fs: PmemFS, mountpoint: str, foreground: bool, max_threads: int = 10) -> None:
    """Serve the open pool `fs` at `mountpoint` until it is unmounted (daemonized unless `foreground`)."""
    os.umask(0)  # modes come from the caller, already masked by the kernel
    options: dict = {"fsname": f"pmem:{os.path.basename(fs.pool.path)}", "subtype": "vfslab-pmem",
                     "default_permissions": True, "max_threads": max_threads}
    if os.geteuid() == 0:
        options["allow_other"] = True
    FUSE(PoolOps(fs), mountpoint, foreground=foreground, **options)
