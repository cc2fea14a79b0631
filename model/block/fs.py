"""The vmblock model: a small tree over a target directory, whose readlinks wait on blocks that writes to a
control file add and remove.

One method per operation, each returning an `Outcome` tagged with the rules (`rules.py`) that decided it. A
call that waits returns `Waiting(id)` and stays pending until a later operation releases it; `woken()` tells
which pending calls have returned since it was last asked, and with what. The target directory is what the
caller says it holds (`target_add` / `target_remove` mirror a real one).
"""

from __future__ import annotations

import errno as E
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from vfslab.model.block.rules import BANNER, BANNER_LIMIT, PATH_LIMIT
from vfslab.model.outcome import Err, Fires, ModelError, Outcome

#: what /version holds (the seed's proposal: the control protocol's version)
VERSION = b"1\n"
ROOT_NAMES = ("blockdir", "dev", "notifydir")
#: st_size of the three directories (upstream fills in 4096, a page)
DIR_SIZE = 4096


@dataclass(frozen=True)
class Attr:
    kind: str  # "dir", "file" or "symlink"
    mode: int
    nlink: int
    size: int
    uid: int = 0


@dataclass(frozen=True)
class Waiting:
    """A call that has not returned: it will, with a result `woken()` reports under this id."""

    id: int


@dataclass
class Waiter:
    id: int
    kind: str  # "readlink" or "notify"
    path: str  # the target path it waits on
    uid: int


@dataclass
class Block:
    path: str
    handle: int
    uid: int
    #: someone's readlink has waited on it (notify reads then return at once)
    accessed: bool = False


@dataclass
class Options:
    target: str = "/tmp/VMwareDnD"
    #: any user may block, and a user's blocks hold only that user's accesses (the seed's idea)
    unprivileged: bool = False
    #: the `l` operation lists blocks (upstream: developer builds only; elsewhere EINVAL)
    list_op: bool = True
    #: /version exists (the seed's proposal; upstream has none)
    version_file: bool = True
    #: the kernel keeps /blockdir entries for a while (libfuse's high-level API: 1 s), so one may still be
    #: seen after its target went
    entry_cache: bool = False


def operation(method: Callable) -> Callable:
    @wraps(method)
    def run(self: BlockModel, *args, **kwargs) -> Outcome:
        self._fired, self._also = [], []
        try:
            value = method(self, *args, **kwargs)
        except ModelError as err:
            return Outcome(Err(err.errno), (*self._fired, err.rule), (*map(Err, err.also), *self._also))
        return Outcome(value, tuple(self._fired), tuple(self._also))

    return run


class BlockModel(Fires):
    def __init__(self, options: Options | None = None, target_names: tuple[str, ...] = ()) -> None:
        self.options = options or Options()
        self.target_names: set[str] = set(target_names)
        self.blocks: list[Block] = []
        self.handles: dict[int, int] = {}  # handle -> uid of its opener
        self.refs: dict[int, int] = {}  # handle -> descriptors open on it (dup shares a handle)
        self.waiters: dict[int, Waiter] = {}
        self.looked_up: set[str] = set()  # /blockdir names the kernel may have cached
        self._done: dict[int, object] = {}
        self._ids = 0
        self._fired: list[str] = []
        self._also: list[object] = []  # other results the operation being run allows

    # ---- rules machinery and helpers -----------------------------------------------------------------

    def _next(self) -> int:
        self._ids += 1
        return self._ids

    def _target_of(self, name: str) -> str:
        return f"{self.options.target}/{name}"

    def _entry(self, path: str) -> tuple[str, str]:
        """(directory, name) for /blockdir/x or /notifydir/x; ENOENT for anything else below them."""
        parts = [p for p in path.split("/") if p]
        if len(parts) != 2 or parts[0] not in ("blockdir", "notifydir"):
            raise ModelError(E.ENOENT, "vmblock.tree")
        return parts[0], parts[1]

    def _blocking(self, path: str, uid: int) -> Block | None:
        """The block a caller's access to `path` waits on (per user in unprivileged mode)."""
        for b in self.blocks:
            if b.path == path and (not self.options.unprivileged or b.uid == uid):
                return b
        return None

    def _wake(self, path: str, uid: int | None, kinds: tuple[str, ...]) -> None:
        """Return every waiter of `kinds` on `path` (for `uid` only, in unprivileged mode)."""
        for w in list(self.waiters.values()):
            if w.path == path and w.kind in kinds and (uid is None or not self.options.unprivileged or w.uid == uid):
                self._fire("vmblock.wake")
                del self.waiters[w.id]
                self._done[w.id] = path if w.kind == "readlink" else b""

    def _park(self, kind: str, path: str, uid: int) -> Waiting:
        w = Waiter(self._next(), kind, path, uid)
        self.waiters[w.id] = w
        return Waiting(w.id)

    def _remove(self, block: Block) -> None:
        self.blocks.remove(block)
        if self._blocking(block.path, block.uid) is None:
            self._wake(block.path, block.uid, ("readlink", "notify"))

    # ---- the tree --------------------------------------------------------------------------------------

    @operation
    def getattr(self, path: str) -> Attr:
        clean = "/" + "/".join(p for p in path.split("/") if p)
        if clean in ("/", "/blockdir", "/notifydir"):
            self._fire("vmblock.getattr.special")
            return Attr("dir", 0o555, 3, DIR_SIZE)
        if clean == "/dev":
            self._fire("vmblock.getattr.special")
            return Attr("file", 0o666 if self.options.unprivileged else 0o600, 1, 0)
        if clean == "/version":
            self._version_file()
            return Attr("file", 0o444, 1, len(VERSION))
        where, name = self._entry(clean)
        if where == "notifydir":
            self._fire("vmblock.getattr.notify")
            return Attr("file", 0o444, 1, 0)
        link = Attr("symlink", 0o777, 1, len(self._target_of(name)))
        if name not in self.target_names:
            if self.options.entry_cache and name in self.looked_up:
                self._also.append(link)
                raise ModelError(E.ENOENT, "vmblock.cache.entry")
            raise ModelError(E.ENOENT, "vmblock.getattr.link")
        self._fire("vmblock.getattr.link")
        self.looked_up.add(name)
        return link

    @operation
    def readdir(self, path: str) -> tuple[str, ...]:
        clean = "/" + "/".join(p for p in path.split("/") if p)
        self._fire("vmblock.readdir")
        if clean == "/":
            if not self.options.version_file:
                self._fire("vmblock.version.absent")
                return ROOT_NAMES
            return tuple(sorted((*ROOT_NAMES, "version")))
        if clean in ("/blockdir", "/notifydir"):
            return tuple(sorted(self.target_names))
        raise ModelError(E.ENOENT, "vmblock.tree")

    @operation
    def readlink(self, path: str, uid: int = 0) -> str | Waiting:
        where, name = self._entry(path)
        if where != "blockdir":
            raise ModelError(E.EINVAL, "vmblock.getattr.notify")
        if name not in self.target_names:
            raise ModelError(E.ENOENT, "vmblock.readlink.missing")
        self.looked_up.add(name)
        target = self._target_of(name)
        block = self._blocking(target, uid)
        if block is None:
            self._fire("vmblock.readlink.target")
            return target
        self._fire("vmblock.readlink.blocks")
        block.accessed = True
        self._wake(target, uid, ("notify",))
        return self._park("readlink", target, uid)

    @operation
    def read_notify(self, path: str, uid: int = 0) -> bytes | Waiting:
        where, name = self._entry(path)
        if where != "notifydir":
            raise ModelError(E.EINVAL, "vmblock.tree")
        if name not in self.target_names:
            raise ModelError(E.EINVAL, "vmblock.notify.missing")
        target = self._target_of(name)
        block = self._blocking(target, uid)
        if block is None:
            raise ModelError(E.ENOENT, "vmblock.notify.unblocked")
        if block.accessed:
            self._fire("vmblock.notify.accessed")
            return b""
        self._fire("vmblock.notify.waits")
        return self._park("notify", target, uid)

    def _version_file(self) -> None:
        if not self.options.version_file:
            raise ModelError(E.ENOENT, "vmblock.version.absent")
        self._fire("vmblock.version")

    @operation
    def read_version(self) -> bytes:
        self._version_file()
        return VERSION

    # ---- the control file ------------------------------------------------------------------------------

    @operation
    def open_ctl(self, uid: int = 0) -> int:
        if uid != 0 and not self.options.unprivileged:
            raise ModelError(E.EACCES, "vmblock.perm.root")
        self._fire("vmblock.ctl.handle")
        handle = self._next()
        self.handles[handle] = uid
        self.refs[handle] = 1
        return handle

    @operation
    def dup_ctl(self, handle: int) -> int:
        """A second descriptor on a handle's open file (dup, fork): the same blocker."""
        self._handle(handle)
        self._fire("vmblock.ctl.shared")
        self.refs[handle] += 1
        return handle

    @operation
    def read_ctl(self, handle: int, size: int = 4096) -> bytes:
        self._handle(handle)
        self._measure(BANNER_LIMIT, size, E.EINVAL)
        self._fire("vmblock.ctl.read")
        return BANNER

    def _handle(self, handle: int) -> int:
        if handle not in self.handles:
            raise ModelError(E.EBADF, "vmblock.ctl.handle")
        return self.handles[handle]

    @operation
    def write_ctl(self, handle: int, data: bytes) -> int:
        uid = self._handle(handle)
        self._fire("vmblock.ctl.format")
        self._measure(PATH_LIMIT, len(data), E.ENAMETOOLONG)
        text = data.split(b"\0", 1)[0].decode(errors="surrogateescape")
        text = re.sub("/+", "/", text)
        if len(text) > 1 and text.endswith("/"):
            text = text[:-1]
        if text != data.decode(errors="surrogateescape"):
            self._fire("vmblock.ctl.normalise")
        op, path = text[:1], text[1:]
        if op == "a":
            if any(b.path == path and (not self.options.unprivileged or b.uid == uid) for b in self.blocks):
                raise ModelError(E.EEXIST, "vmblock.ctl.add.exists")
            if self.options.unprivileged:
                self._fire("vmblock.perm.per-user")
            self.blocks.append(Block(path, handle, uid))
        elif op == "d":
            mine = next((b for b in self.blocks if b.path == path and b.handle == handle), None)
            if mine is None:
                raise ModelError(E.ENOENT, "vmblock.ctl.delete.owner")
            self._remove(mine)
        elif op == "l":
            if not self.options.list_op:
                raise ModelError(E.EINVAL, "vmblock.ctl.list.release")
        else:
            raise ModelError(E.EINVAL, "vmblock.ctl.op")
        self._fire("vmblock.ctl.op")
        return len(data)

    @operation
    def close_ctl(self, handle: int) -> None:
        """Closing a descriptor; the handle is released (its blocks removed) with the last one open on it."""
        self._handle(handle)
        self.refs[handle] -= 1
        if self.refs[handle]:
            self._fire("vmblock.ctl.shared")
            return
        self._fire("vmblock.release")
        del self.handles[handle], self.refs[handle]
        for b in [b for b in self.blocks if b.handle == handle]:
            self._remove(b)

    # ---- the target directory, and what the waiting calls did -----------------------------------------

    @operation
    def target_add(self, name: str) -> None:
        self._fire("vmblock.target")
        self.target_names.add(name)

    @operation
    def target_remove(self, name: str) -> None:
        if name not in self.target_names:
            raise ModelError(E.ENOENT, "vmblock.target")
        self._fire("vmblock.target")
        self.target_names.remove(name)

    def woken(self) -> dict[int, object]:
        """The waiting calls that returned since the last time this was asked, with their results."""
        done, self._done = self._done, {}
        return done

    def pending(self) -> tuple[int, ...]:
        return tuple(sorted(self.waiters))

