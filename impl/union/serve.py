"""The union served through FUSE: mfusepy on libfuse3, each callback one `Union` call under its lock.

Caching (what the kernel may keep without asking us) is chosen so it is never wrong for a union whose
layers change only through this mount:
- entries are cached (entry_timeout): every name change goes through the kernel, which updates its dentries;
- attributes are not (attr_timeout 0): libfuse's high-level API gives each name its own kernel inode, so a
  change through one name of a hard-linked file, or a copy-up that merges a parent directory, changes
  attributes the kernel holds under other inodes;
- file pages are kept across opens while mtime and size are unchanged (auto_cache).

libfuse's high-level API cannot find the path of an open file whose last name was unlinked (fstat gives
ESTALE), so we keep its `hard_remove` off: libfuse then renames such a file to `.fuse_hiddenXXXX` and
unlinks that at the last close. We take that rename for the unlink it stands for, and serve the hidden
name from the open file, which is how an open, unlinked file keeps working and reports nlink 0.
"""

from __future__ import annotations

import errno as E
import itertools
import logging
import os

from vfslab.impl.mfuse import FUSE, HIDDEN, mfusepy, serialised
from vfslab.impl.union.options import MountOptions
from vfslab.impl.union.union import Cred, Handle, Union

log = logging.getLogger("vfslab-union")
ENTRY_TIMEOUT = 1.0


#: one callback at a time, under the union's lock
_serialised = serialised(lambda ops: ops.union.lock, log)


def _caller() -> Cred:
    uid, gid, _pid = mfusepy.fuse_get_context()
    return Cred(uid, gid)


class UnionOps(mfusepy.Operations):
    use_ns = True

    def __init__(self, union: Union) -> None:
        self.union = union
        self.files: dict[int, Handle] = {}
        self.hidden: dict[str, tuple] = {}  # hidden name -> the key of the open file it stands for
        self._ids = itertools.count(1)  # next() on it is atomic: file handles need no lock of their own

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
        self.union.close()

    # ---- names -------------------------------------------------------------------------------------

    def _hidden_handle(self, path: str) -> Handle | None:
        key = self.hidden.get(path)
        return next((h for h in self.files.values() if h.key == key), None) if key is not None else None

    def _by_handle(self, path: str | None, fh: int | None) -> Handle | None:
        """The open file to act on: only when its name is gone (hidden, or no path at all); a name that is
        there is acted on by name, which copies it up where it has to."""
        if path is not None and path not in self.hidden:
            return None
        h = self.files.get(fh) if fh is not None else self._hidden_handle(path)
        if h is None:
            raise mfusepy.FuseOSError(E.ENOENT)
        return h

    @_serialised
    def getattr(self, path: str | None, fh: int | None = None) -> dict:
        h = self._by_handle(path, fh)
        return self.union.handle_attrs(h) if h is not None else self.union.attrs(self.union.existing(path))

    @_serialised
    def readlink(self, path: str) -> str:
        return self.union.readlink(path)

    @_serialised
    def mkdir(self, path: str, mode: int) -> None:
        self.union.mkdir(path, mode, _caller())

    @_serialised
    def mknod(self, path: str, mode: int, dev: int) -> None:
        self.union.mknod(path, mode, dev, _caller())

    @_serialised
    def symlink(self, path: str, target: str) -> None:
        self.union.symlink(path, target, _caller())

    @_serialised
    def link(self, new: str, old: str) -> None:
        self.union.link(old, new)

    @_serialised
    def unlink(self, path: str) -> None:
        if self.hidden.pop(path, None) is None:
            self.union.unlink(path)

    @_serialised
    def rmdir(self, path: str) -> None:
        self.union.rmdir(path)

    @_serialised
    def rename(self, old: str, new: str, flags: int = 0) -> None:
        if HIDDEN.search(new) and self.union.resolve(new) is None and new not in self.hidden:
            node = self.union.existing(old)
            key = self.union.key(node)
            self.union.unlink(old)
            self.hidden[new] = key
            return
        self.union.rename(old, new, flags)

    # ---- attributes ------------------------------------------------------------------------------------

    @_serialised
    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> None:
        self.union.chmod(path, mode, self._by_handle(path, fh))

    @_serialised
    def chown(self, path: str | None, uid: int, gid: int, fh: int | None = None) -> None:
        self.union.chown(path, uid, gid, self._by_handle(path, fh))

    @_serialised
    def utimens(self, path: str | None, times: tuple[int, int] | None = None, fh: int | None = None) -> None:
        self.union.utimens(path, times, self._by_handle(path, fh))

    @_serialised
    def truncate(self, path: str | None, length: int, fh: int | None = None) -> None:
        self.union.truncate(path, length, self._by_handle(path, fh))

    # ---- xattrs ----------------------------------------------------------------------------------------

    @_serialised
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        return self.union.getxattr(path, name)

    @_serialised
    def listxattr(self, path: str) -> list[str]:
        return self.union.listxattr(path)

    @_serialised
    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> None:
        self.union.setxattr(path, name, value, options)

    @_serialised
    def removexattr(self, path: str, name: str) -> None:
        self.union.removexattr(path, name)

    @_serialised
    def readdir(self, path: str, fh: int) -> list[tuple[str, dict, int]]:
        node = self.union.existing(path)
        return [(name, {"st_mode": mode, "st_ino": ino}, 0) for name, mode, ino in self.union.entries(node)]

    # ---- files -----------------------------------------------------------------------------------------

    def _register(self, h: Handle) -> int:
        fh = next(self._ids)
        self.files[fh] = h
        return fh

    @_serialised
    def open(self, path: str, flags: int) -> int:
        return self._register(self.union.open(path, flags))

    @_serialised
    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        return self._register(self.union.create(path, mode, flags, _caller()))

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return self.union.read(self.files[fh], size, offset)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(self.files[fh].fd, data, offset)

    def fsync(self, path: str | None, datasync: int, fh: int) -> None:
        (os.fdatasync if datasync else os.fsync)(self.files[fh].fd)

    @_serialised
    def release(self, path: str | None, fh: int) -> None:
        self.union.release(self.files.pop(fh))

    @_serialised
    def statfs(self, path: str) -> dict:
        s = self.union.statfs()
        return {k: getattr(s, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                                           "f_ffree", "f_favail", "f_namemax")}


def serve(opts: MountOptions, mountpoint: str, foreground: bool) -> None:
    """Mount the union at `mountpoint` and serve it until it is unmounted (daemonized unless `foreground`)."""
    os.umask(0)  # modes come from the caller, already masked by the kernel
    union = Union(opts)
    fuse_options: dict = {"fsname": "vfslab-union", "subtype": "vfslab-union", "default_permissions": True}
    if os.geteuid() == 0:
        fuse_options["allow_other"] = True
    for name in opts.fuse:
        fuse_options[name] = True
    if opts.read_only:
        fuse_options["ro"] = True
    if opts.max_threads == 1:
        fuse_options["nothreads"] = True
    else:
        fuse_options["max_threads"] = opts.max_threads
    FUSE(UnionOps(union), mountpoint, foreground=foreground, **fuse_options)
