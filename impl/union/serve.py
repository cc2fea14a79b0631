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

libfuse also hides an open file that a rename is about to replace, before it asks for the rename; but a
rename between two names of one inode must do nothing, and the hide would already have unlinked the target.
So a hide is done at the next callback instead, unless that callback is, on the same thread, the rename the
hide was for: that rename then learns whether it replaces anything at all. Every observation of the union
is a callback, so none sees the hide undone.
"""

from __future__ import annotations

import errno as E
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from vfslab.impl.mfuse import FUSE, HIDDEN, mfusepy, serialised
from vfslab.impl.union.options import MountOptions
from vfslab.impl.union.union import Cred, Handle, Union

log = logging.getLogger("vfslab-union")
ENTRY_TIMEOUT = 1.0


def _serialised(method: Callable) -> Callable:
    """One callback at a time, under the union's lock, once the hide libfuse asked for is done (unless this is
    the rename it was for)."""
    return serialised(lambda ops: ops.turn(renaming=method.__name__ == "rename"), log)(method)


@dataclass(frozen=True)
class Hide:
    """An open file libfuse renamed to a hidden name, to unlink or to rename onto: not yet unlinked."""

    name: str
    hidden: str
    key: tuple
    thread: int


def _caller() -> Cred:
    uid, gid, _pid = mfusepy.fuse_get_context()
    return Cred(uid, gid)


class UnionOps(mfusepy.Operations):
    use_ns = True

    def __init__(self, union: Union) -> None:
        self.union = union
        self.files: dict[int, Handle] = {}
        self.hidden: dict[str, tuple] = {}  # hidden name -> the key of the open file it stands for
        self.hiding: Hide | None = None
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

    @contextmanager
    def turn(self, renaming: bool) -> Iterator[None]:
        with self.union.lock:
            if self.hiding is not None and not (renaming and self.hiding.thread == threading.get_ident()):
                self._hide()
            yield

    def _hide(self) -> None:
        hide, self.hiding = self.hiding, None
        try:
            self.union.unlink(hide.name)
        except OSError as e:  # the caller's unlink or rename has returned: all we can do is say so
            log.error("unlink %s, hidden as %s: %s", hide.name, hide.hidden, e)

    def destroy(self, path: str) -> None:
        with self.turn(renaming=False):
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
            key = self.union.key(self.union.existing(old))
            if self.hiding is not None:
                self._hide()
            self.hiding = Hide(old, new, key, threading.get_ident())
            self.hidden[new] = key
            return
        if self.hiding is not None:
            if self.hiding.name == new and self.union.key(self.union.existing(old)) == self.hiding.key:
                self.hiding = None
                return  # two names of one inode: nothing to rename (the hidden name is the open file's)
            self._hide()
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
