"""vmblock-fuse on libfuse's low-level API: `/dev` (control), `/blockdir` (symlinks into the target
directory), `/notifydir`, `/version`.

Writes to `/dev` add and delete blocks on target paths; a readlink of a blocked `/blockdir/x` waits until
the block goes. How it waits is the design:

- `upstream`, as vmware-vmblock-fuse: the handler waits in its worker thread. Once `max_threads` readlinks
  wait, no worker is left to serve the write or the close that would release them: a deadlock.
- `deferred` (the default): the handler keeps the request and returns its worker at once; the write or close
  that removes the block replies to every request waiting on it. A waiting readlink costs no thread, only the
  kernel's pending request and a few hundred bytes here, so no number of waiters can use up the workers; a
  waiter whose caller is interrupted is answered EINTR and dropped.

Blocks are kept per target path: a list of (handle, uid) entries (one per path, or one per user in the
unprivileged mode, where a user's blocks hold only that user's accesses), under one lock.
"""

from __future__ import annotations

import ctypes
import errno as E
import itertools
import os
import re
import stat as st
import threading
from dataclasses import dataclass, field

from vfslab.impl import fuse_ll as ll

PATH_MAX = 4096
BANNER = b"I am VMBLOCK-FUSE\0"
VERSION = b"1\n"
DEV, BLOCKDIR, NOTIFYDIR, VERSION_INO = 2, 3, 4, 5
FIRST_DYNAMIC = 16
DESIGNS = ("deferred", "upstream")


@dataclass
class Block:
    path: str
    handle: int
    uid: int
    accessed: bool = False  # a readlink has waited on it: notify reads return at once


@dataclass
class Waiter:
    req: int
    kind: str  # "readlink" or "notify"
    path: str
    uid: int
    done: threading.Event = field(default_factory=threading.Event)  # the upstream design waits on it


class VMBlock(ll.Operations):
    def __init__(self, target: str, design: str = "deferred", unprivileged: bool = False) -> None:
        if design not in DESIGNS:
            raise ValueError(f"unknown design {design!r} (known: {', '.join(DESIGNS)})")
        self.target = os.path.abspath(target)
        self.target_fd = os.open(self.target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.design = design
        self.unprivileged = unprivileged
        # reentrant: libfuse calls the interrupt callback at once, from inside _wait, for a request that was
        # interrupted already
        self.lock = threading.RLock()
        self.blocks: list[Block] = []
        self.waiters: list[Waiter] = []
        self.handles: dict[int, int] = {}  # open /dev handle -> opener's uid
        self._fh = itertools.count(1)
        self._ino = itertools.count(FIRST_DYNAMIC)
        self.names: dict[tuple[int, str], int] = {}  # (dir, name) -> ino
        self.entries: dict[int, tuple[int, str]] = {}
        self._interrupted = ll.INTERRUPT(self._interrupt)

    # ---- the tree ------------------------------------------------------------------------------------

    def _target_path(self, name: str) -> str:
        return f"{self.target}/{name}"

    def _lstat_target(self, name: str) -> None:
        """readlink and getattr lstat the target first: its errno if it is missing."""
        os.stat(name, dir_fd=self.target_fd, follow_symlinks=False)

    def _entry(self, ino: int) -> tuple[int, str]:
        """(parent directory, name) of a /blockdir or /notifydir entry; (0, "") for any other inode."""
        return self.entries.get(ino, (0, ""))

    def _ino_of(self, parent: int, name: str) -> int:
        with self.lock:
            ino = self.names.get((parent, name))
            if ino is None:
                ino = self.names[(parent, name)] = next(self._ino)
                self.entries[ino] = (parent, name)
            return ino

    def _attr(self, ino: int) -> ll.c_stat:
        if ino in (ll.ROOT, BLOCKDIR, NOTIFYDIR):
            return ll.stat(st.S_IFDIR | 0o555, 3, 4096, ino)
        if ino == DEV:
            return ll.stat(st.S_IFREG | (0o666 if self.unprivileged else 0o600), 1, 0, ino)
        if ino == VERSION_INO:
            return ll.stat(st.S_IFREG | 0o444, 1, len(VERSION), ino)
        parent, name = self._entry(ino)
        if parent == BLOCKDIR:
            self._lstat_target(name)
            return ll.stat(st.S_IFLNK | 0o777, 1, len(self._target_path(name)), ino)
        if parent == NOTIFYDIR:
            return ll.stat(st.S_IFREG | 0o444, 1, 0, ino)
        raise OSError(E.ENOENT, "no such entry")

    def lookup(self, req: int, parent: int, name: bytes) -> None:
        text = os.fsdecode(name)
        fixed = {"dev": DEV, "blockdir": BLOCKDIR, "notifydir": NOTIFYDIR, "version": VERSION_INO}
        if parent == ll.ROOT and text in fixed:
            ino = fixed[text]
        elif parent in (BLOCKDIR, NOTIFYDIR) and "/" not in text and text not in (".", ".."):
            ino = self._ino_of(parent, text)
        else:
            raise OSError(E.ENOENT, "no such entry")
        ll.reply_entry(req, ino, self._attr(ino))

    def getattr(self, req: int, ino: int, fi) -> None:
        ll.reply_attr(req, self._attr(ino))

    def opendir(self, req: int, ino: int, fi) -> None:
        if ino not in (ll.ROOT, BLOCKDIR, NOTIFYDIR):
            raise OSError(E.ENOTDIR, "not a directory")
        ll.reply_open(req, fi)

    def readdir(self, req: int, ino: int, size: int, off: int, fi) -> None:
        entries = [(".", ino, st.S_IFDIR), ("..", ll.ROOT, st.S_IFDIR)]
        if ino == ll.ROOT:
            entries += [("blockdir", BLOCKDIR, st.S_IFDIR), ("dev", DEV, st.S_IFREG),
                        ("notifydir", NOTIFYDIR, st.S_IFDIR), ("version", VERSION_INO, st.S_IFREG)]
        elif ino in (BLOCKDIR, NOTIFYDIR):  # both list the target directory, as upstream's do
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.target_fd)
            try:
                names = sorted(os.listdir(fd))
            finally:
                os.close(fd)
            kind = st.S_IFLNK if ino == BLOCKDIR else st.S_IFREG
            entries += [(n, self._ino_of(ino, n), kind) for n in names]
        ll.reply_dir(req, entries, size, off)

    def releasedir(self, req: int, ino: int, fi) -> None:
        ll.reply_err(req, 0)

    # ---- waiting ---------------------------------------------------------------------------------------

    def _blocking(self, path: str, uid: int) -> Block | None:
        """The block an access by `uid` to `path` waits on."""
        return next((b for b in self.blocks if b.path == path and (not self.unprivileged or b.uid == uid)), None)

    def _wait(self, req: int, kind: str, path: str, uid: int) -> None:
        """Make `req` wait (the lock is held); it is answered by `_release` when the block goes."""
        w = Waiter(req, kind, path, uid)
        self.waiters.append(w)
        if self.design == "deferred":
            ll.lib.fuse_req_interrupt_func(req, self._interrupted, None)
            return
        self.lock.release()
        try:
            w.done.wait()
        finally:
            self.lock.acquire()
        self._answer(w)

    def _answer(self, w: Waiter) -> None:
        if w.kind == "readlink":
            ll.reply_readlink(w.req, w.path)
        else:
            ll.reply_buf(w.req, b"")

    def _release(self, path: str, uid: int, kinds: tuple[str, ...]) -> None:
        """Answer every waiter of `kinds` on `path` (of `uid`'s, in the unprivileged mode); the lock is held."""
        for w in [w for w in self.waiters if w.path == path and w.kind in kinds
                  and (not self.unprivileged or w.uid == uid)]:
            self.waiters.remove(w)
            if self.design == "deferred":
                self._answer(w)
            else:
                w.done.set()

    def _interrupt(self, req: int, data: int) -> None:
        with self.lock:
            for w in [w for w in self.waiters if w.req == req]:
                self.waiters.remove(w)
                ll.reply_err(req, E.EINTR)

    def readlink(self, req: int, ino: int) -> None:
        parent, name = self._entry(ino)
        if parent != BLOCKDIR:
            raise OSError(E.EINVAL, "not a symlink")
        self._lstat_target(name)
        path = self._target_path(name)
        uid = ll.caller(req).uid
        with self.lock:
            block = self._blocking(path, uid)
            if block is not None:
                block.accessed = True
                self._release(path, uid, ("notify",))
                self._wait(req, "readlink", path, uid)
                return
        ll.reply_readlink(req, path)

    # ---- files -----------------------------------------------------------------------------------------

    def open(self, req: int, ino: int, fi) -> None:
        info = fi.contents
        if ino == DEV:
            with self.lock:
                info.fh = next(self._fh)
                self.handles[info.fh] = ll.caller(req).uid
        elif ino != VERSION_INO and self._entry(ino)[0] != NOTIFYDIR:
            raise OSError(E.EISDIR if ino in (ll.ROOT, BLOCKDIR, NOTIFYDIR) else E.ENOENT, "cannot open")
        info.direct_io = 1  # every read is answered afresh: no page cache
        ll.reply_open(req, fi)

    def read(self, req: int, ino: int, size: int, off: int, fi) -> None:
        if ino == DEV:
            if size < len(BANNER):
                raise OSError(E.EINVAL, "buffer too small for the banner")
            ll.reply_buf(req, BANNER)
        elif ino == VERSION_INO:
            ll.reply_buf(req, VERSION[off : off + size])
        else:
            self._read_notify(req, ino)

    def _read_notify(self, req: int, ino: int) -> None:
        _, name = self._entry(ino)
        try:
            self._lstat_target(name)
        except OSError:
            raise OSError(E.EINVAL, "no such target") from None
        path = self._target_path(name)
        uid = ll.caller(req).uid
        with self.lock:
            block = self._blocking(path, uid)
            if block is None:
                raise OSError(E.ENOENT, "not blocked")
            if not block.accessed:
                self._wait(req, "notify", path, uid)
                return
        ll.reply_buf(req, b"")

    def write(self, req: int, ino: int, buf: int, size: int, off: int, fi) -> None:
        handle = fi.contents.fh
        if ino != DEV or handle not in self.handles:
            raise OSError(E.EBADF, "not the control file")
        if size > PATH_MAX:
            raise OSError(E.ENAMETOOLONG, "path too long")
        text = ctypes.string_at(buf, size).split(b"\0", 1)[0].decode(errors="surrogateescape")
        text = re.sub("/+", "/", text)
        if len(text) > 1 and text.endswith("/"):
            text = text[:-1]
        op, path = text[:1], text[1:]
        uid = self.handles[handle]
        with self.lock:
            if op == "a":
                if self._blocking(path, uid) is not None:
                    raise OSError(E.EEXIST, "blocked already")
                self.blocks.append(Block(path, handle, uid))
            elif op == "d":
                mine = next((b for b in self.blocks if b.path == path and b.handle == handle), None)
                if mine is None:
                    raise OSError(E.ENOENT, "no such block of this handle")
                self._remove(mine)
            elif op != "l":
                raise OSError(E.EINVAL, "unknown operation")
        ll.reply_write(req, size)

    def _remove(self, block: Block) -> None:
        self.blocks.remove(block)
        if self._blocking(block.path, block.uid) is None:
            self._release(block.path, block.uid, ("readlink", "notify"))

    def release(self, req: int, ino: int, fi) -> None:
        handle = fi.contents.fh
        with self.lock:
            if ino == DEV and self.handles.pop(handle, None) is not None:
                for b in [b for b in self.blocks if b.handle == handle]:
                    self._remove(b)
        ll.reply_err(req, 0)
