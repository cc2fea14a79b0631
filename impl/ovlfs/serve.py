"""ovlfs served through FUSE: mfusepy on libfuse3, each callback one `Ovlfs` call under its lock.

Reads and writes take the lock too: a storage method is not written for concurrent calls (the seed's ovlfs runs
under the VFS's locks). Caching is union-fuse's (`impl/union/serve.py`), for the same reasons: entries are cached
(every name change goes through the kernel), attributes are not (the high-level API gives each *name* a kernel
inode of its own, so a change through one name of a hard link would leave the others stale), and file pages are
kept while mtime and size are unchanged.

Unmounting is the seed's VFS unmount: libfuse calls `destroy` once the kernel lets go, and that is Sync, Clear
Inode of every inode in use, and Release.

An open file whose last name is unlinked: libfuse's high-level API renames it to `.fuse_hiddenXXXX` (hard_remove
off) and unlinks that at the last close. We take the rename for the unlink it stands for (the inode keeps its data
while it is open, with no link) and serve the hidden name from the node it was. libfuse takes one off the link
count it is given for a hidden name (fuse_lib_getattr: the name would be a link of the file), so the hidden name's
count is given one more than the inode's.
"""

from __future__ import annotations

import errno as E
import itertools
import logging
import os

from vfslab.impl.mfuse import FUSE, HIDDEN, mfusepy, serialised
from vfslab.impl.ovlfs.fs import Cred, Handle, Node, Ovlfs

log = logging.getLogger("vfslab-ovlfs")
ENTRY_TIMEOUT = 1.0

_serialised = serialised(lambda ops: ops.fs.lock, log)


def _caller() -> Cred:
    uid, gid, _pid = mfusepy.fuse_get_context()
    return Cred(uid, gid)


class OvlfsOps(mfusepy.Operations):
    use_ns = True

    def __init__(self, fs: Ovlfs) -> None:
        self.fs = fs
        self.files: dict[int, Handle] = {}
        self.hidden: dict[str, Node] = {}  # a hidden name -> the node of the open file it stands for
        self._ids = itertools.count(1)

    def init_with_config(self, conn, config) -> None:
        if config is None:
            return
        config.use_ino = 1
        config.hard_remove = 0
        config.entry_timeout = ENTRY_TIMEOUT
        config.attr_timeout = 0.0
        config.negative_timeout = 0.0
        config.auto_cache = 1

    def destroy(self, path: str) -> None:
        with self.fs.lock:
            self.fs.close()

    def _node(self, path: str | None, fh: int | None = None) -> Node:
        """What a request acts on: the open file when it has no path (or its hidden one), else the path's node."""
        if path in self.hidden:
            return self.hidden[path]
        if path is None:
            h = self.files.get(fh)
            if h is None:
                raise mfusepy.FuseOSError(E.ENOENT)
            return h.node
        return self.fs.existing(path)

    # ---- names -------------------------------------------------------------------------------------------

    @_serialised
    def getattr(self, path: str | None, fh: int | None = None) -> dict:
        attrs = self.fs.attrs(self._node(path, fh).ino)
        if path in self.hidden:  # libfuse takes the hidden name off the count, which ours never had in it
            attrs["st_nlink"] += 1
        return attrs

    @_serialised
    def readlink(self, path: str) -> str:
        return self.fs.readlink(self._node(path))

    @_serialised
    def readdir(self, path: str, fh: int) -> list[tuple[str, dict, int]]:
        return [(name, {"st_mode": mode, "st_ino": ino}, 0) for name, mode, ino in self.fs.entries(self._node(path))]

    @_serialised
    def mkdir(self, path: str, mode: int) -> None:
        self.fs.mkdir(path, mode, _caller())

    @_serialised
    def mknod(self, path: str, mode: int, dev: int) -> None:
        self.fs.mknod(path, mode, dev, _caller())

    @_serialised
    def symlink(self, path: str, target: str) -> None:
        self.fs.symlink(path, target, _caller())

    @_serialised
    def link(self, new: str, old: str) -> None:
        self.fs.link(old, new)

    @_serialised
    def unlink(self, path: str) -> None:
        if self.hidden.pop(path, None) is None:
            self.fs.unlink(path)

    @_serialised
    def rmdir(self, path: str) -> None:
        self.fs.rmdir(path)

    @_serialised
    def rename(self, old: str, new: str, flags: int = 0) -> None:
        if HIDDEN.search(new) and self.fs.resolve(new) is None and new not in self.hidden:
            node = self.fs.existing(old)
            self.fs.unlink(old)
            self.hidden[new] = node
            return
        self.fs.rename(old, new, flags)

    # ---- attributes ----------------------------------------------------------------------------------------

    @_serialised
    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> None:
        self.fs.chmod(self._node(path, fh).ino, mode)

    @_serialised
    def chown(self, path: str | None, uid: int, gid: int, fh: int | None = None) -> None:
        self.fs.chown(self._node(path, fh).ino, uid, gid)

    @_serialised
    def utimens(self, path: str | None, times: tuple[int, int] | None = None, fh: int | None = None) -> None:
        self.fs.utimens(self._node(path, fh).ino, times)

    @_serialised
    def truncate(self, path: str | None, length: int, fh: int | None = None) -> None:
        self.fs.truncate(self._node(path, fh), length)

    # ---- xattrs: the storage method keeps none ----------------------------------------------------------------

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        raise mfusepy.FuseOSError(E.ENOTSUP)

    def listxattr(self, path: str) -> list[str]:
        raise mfusepy.FuseOSError(E.ENOTSUP)

    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> None:
        raise mfusepy.FuseOSError(E.ENOTSUP)

    def removexattr(self, path: str, name: str) -> None:
        raise mfusepy.FuseOSError(E.ENOTSUP)

    # ---- files -------------------------------------------------------------------------------------------

    def _register(self, h: Handle) -> int:
        fh = next(self._ids)
        self.files[fh] = h
        return fh

    @_serialised
    def open(self, path: str, flags: int) -> int:
        return self._register(self.fs.open(self._node(path), flags))

    @_serialised
    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        return self._register(self.fs.create(path, mode, flags, _caller()))

    @_serialised
    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return self.fs.read(self.files[fh], size, offset)

    @_serialised
    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        return self.fs.write(self.files[fh], data, offset)

    @_serialised
    def release(self, path: str | None, fh: int) -> None:
        self.fs.release(self.files.pop(fh))

    @_serialised
    def fsync(self, path: str | None, datasync: int, fh: int) -> None:
        self.fs.sync()

    @_serialised
    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> None:
        self.fs.sync()

    @_serialised
    def statfs(self, path: str) -> dict:
        return self.fs.statfs()


def serve(fs: Ovlfs, mountpoint: str, foreground: bool, fuse_options: dict[str, bool]) -> None:
    """Mount `fs` at `mountpoint` and serve it until it is unmounted (daemonized unless `foreground`)."""
    os.umask(0)  # modes come from the caller, already masked by the kernel
    options = {"fsname": "vfslab-ovlfs", "subtype": "vfslab-ovlfs", "default_permissions": True, **fuse_options}
    if os.geteuid() == 0:
        options["allow_other"] = True
    FUSE(OvlfsOps(fs), mountpoint, foreground=foreground, **options)
