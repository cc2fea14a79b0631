"""The union: kernel overlayfs's semantics over real layers, one method per file-system operation.

The kernel has already walked the path, followed symlinks and checked permissions (default_permissions)
by the time a call reaches us; what is left is overlayfs's part:

- lookup (`child`): the topmost layer decides; a whiteout ends the search, an opaque directory hides what is
  below it, a redirect sends the search below to another name (ovl_lookup);
- copy-up (`copy_up`): a lower entry is copied, with mode, owner, times, xattrs and holes, into the work
  directory and renamed into place, after its parents; with index=on all names of a lower hard-link group
  share one upper inode, linked from `work/index`;
- creation over a whiteout and removal that leaves one are each a single rename, so a crash shows either the
  old or the new entry, never a half-made one;
- st_ino: a copy-up keeps its origin's number (when the origin is not a hard link, or is indexed), a
  directory its topmost lower one's, so numbers are stable across copy-up, rename and remount.

Every method runs under one lock: layers change only here, so a cache of resolved paths (and of names found
missing) stays true until a method that changes names or copies up clears it. Errors are OSError with the errno a
caller should see.
"""

from __future__ import annotations

import errno as E
import itertools
import os
import shutil
import stat as st
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from vfslab.impl.union import acl
from vfslab.impl.union.disk import (
    NLINK,
    OPAQUE,
    ORIGIN,
    PREFIX,
    REDIRECT,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    RENAME_WHITEOUT,
    Layer,
    Rel,
    decode_origin,
    encode_origin,
    is_whiteout,
    linkat_fd,
    origin_fid,
    proc,
    renameat2,
)
from vfslab.impl.union.options import MountOptions
from vfslab.impl.union.tmpfiles import TmpFiles

NAME_MAX = 255
#: where a layer's file-system index goes in the inode numbers shown (xino): above what any of them uses
XINO_SHIFT = 58
#: copy_file_range refusing to copy between these two files (across file systems, or not supported): copy by hand
_NO_RANGE_COPY = frozenset({E.EXDEV, E.EINVAL, E.EOPNOTSUPP, E.ENOSYS})
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
_REAL_OPEN = os.O_ACCMODE | os.O_TRUNC | os.O_SYNC | os.O_DSYNC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _open_real(name: str, flags: int, dir_fd: int | None = None) -> int:
    """Open a real file; O_NOATIME, where asked, only where the daemon may use it (root, or the file's owner)."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        if not flags & os.O_NOATIME:
            raise
        return os.open(name, flags & ~os.O_NOATIME, dir_fd=dir_fd)


def _maybe_whiteout(entry: os.DirEntry) -> bool:
    """Neither file, directory nor symlink (from the directory entry's type, without a stat)."""
    return not (entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False) or entry.is_symlink())


def _redirect_names(value: bytes) -> Rel:
    """The names a redirect sends the lookup below to: one name in the same directory, or an absolute path.
    Anything else (`..`, an empty name, a slash in a relative one) is an I/O error, as in overlayfs."""
    text = os.fsdecode(value)
    names = tuple(text.split("/")[1:]) if text.startswith("/") else (text,)
    if not names or any(n in ("", ".", "..") or "/" in n or "\0" in n for n in names):
        raise fail(E.EIO)
    return names


def fail(errno: int) -> OSError:
    return OSError(errno, os.strerror(errno))


@dataclass(frozen=True)
class Cred:
    """Who is asking (the FUSE request's caller): owner of what it creates."""

    uid: int = 0
    gid: int = 0
    #: the caller's umask: applied here, unless the new entry's directory has a default ACL (FUSE passes the mode as
    #: asked, so that an ACL can decide)
    umask: int = 0


#: not read yet: `Real.origin`, or a path not resolved yet
_UNREAD: Any = object()


@dataclass
class Real:
    """One real entry: where it is, its lstat when it was looked up, and its origin handle once read (an
    upper entry gets it before it is renamed into place and never changes it: `trusted.overlay.*` is refused
    to callers)."""

    layer: Layer
    rel: Rel
    st: os.stat_result
    origin: bytes | None = field(default=_UNREAD, repr=False, compare=False)

    @property
    def is_dir(self) -> bool:
        return st.S_ISDIR(self.st.st_mode)

    def fresh(self) -> os.stat_result:
        if not self.rel:
            return os.fstat(self.layer.root)
        dfd, name = self.layer.at(self.rel)
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)


@dataclass
class Node:
    """A name as the union shows it: a directory's merge stack (topmost first), or one entry for anything
    else; `shown` is whose attributes and data the union shows (the index inode for an indexed lower name)."""

    path: Rel
    parent: Node | None
    stack: list[Real]
    shown: Real

    @property
    def is_dir(self) -> bool:
        return self.stack[0].is_dir

    @property
    def merged(self) -> bool:
        return len(self.stack) > 1


@dataclass(frozen=True)
class Attrs:
    """What stat shows of a union inode: the real file's lstat, under the union's inode number and link count."""

    st: os.stat_result
    ino: int
    nlink: int


@dataclass(frozen=True)
class RemovedDir:
    """A directory removed while the kernel holds it (open, or someone's working directory): what it shows from
    then on, and an O_PATH fd on its real directory, held until the kernel lets it go so that its inode number is
    not given to a new directory (ext4 reuses a freed number at once; overlayfs's inode holds its real one)."""

    held: int
    ino: int
    #: it was merged: it shows one link, as it did
    merged: bool
    #: its real directory is an upper one (upper-only or merged), which changes to it land on
    on_upper: bool

    @property
    def attrs(self) -> Attrs:
        """Its real directory's attributes now (a change to it shows), under the number it had."""
        s = os.fstat(self.held)
        return Attrs(s, self.ino, 1 if self.merged else s.st_nlink)


@dataclass
class OvlFile:
    """overlayfs's in-memory inode for a non-directory: open files on it follow its copy-up."""

    upper: int | None = None  # an O_PATH fd on the upper file, once there is one
    refs: int = 0


@dataclass
class Handle:
    """An open file: the real fd, and the in-memory inode it belongs to."""

    fd: int
    flags: int
    key: tuple
    ovl: OvlFile
    on_upper: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: the fd it had before its copy-up, kept until release: a read begun on it may still be using it
    before: int | None = None


class Union:
    """A union of `opts.lowerdirs` (topmost first) under `opts.upperdir`, or of the lower layers alone."""

    def __init__(self, opts: MountOptions) -> None:
        self.opts = opts
        self.lock = threading.RLock()
        self.upper = Layer(opts.upperdir, 0) if opts.upperdir else None
        base = 1 if self.upper else 0
        self.lowers = [Layer(p, base + i) for i, p in enumerate(opts.lowerdirs)]
        self.layers = ([self.upper] if self.upper else []) + self.lowers
        self.work: Layer | None = None
        self.index: Layer | None = None
        if self.upper is not None:
            self._prepare_workdir(opts.workdir)
        #: resolved paths, None for a name the union has not (a create is looked up first)
        self._nodes: dict[str, Node | None] = {}
        self._origins: dict[bytes, os.stat_result | None] = {}
        self._ovl: dict[tuple, OvlFile] = {}
        self._tmp = itertools.count()
        # the layers' file systems, the upper layer's first: inode numbers from each but the first carry its
        # index in their top bits (overlayfs's xino), since a FUSE mount has one st_dev for them all
        devs = dict.fromkeys(os.fstat(layer.root).st_dev for layer in self.layers)
        self._fsid = {dev: i for i, dev in enumerate(devs)}
        self._range_copy = True  # until copy_file_range refuses a pair of our files
        #: names copied up since the caller last emptied this: what they show changed (a directory's link
        #: count, once merged) though no name did, which a cache of attributes must be told
        self.copied: list[Rel] = []

    # ---- work directory ---------------------------------------------------------------------------

    def _prepare_workdir(self, workdir: str) -> None:
        """`work/work` holds copy-ups in progress (a crash leaves them there; they are removed here, never
        shown); `work/index` the index. Both mode 0, as overlayfs makes them."""
        wfd = os.open(workdir, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for name in ("work", "index"):
                with suppress(FileExistsError):
                    os.mkdir(name, 0, dir_fd=wfd)
            os.chmod(proc(wfd, "work"), 0)
        finally:
            os.close(wfd)
        self.work = Layer(os.path.join(workdir, "work"), -1)
        for name in os.listdir(proc(self.work.root)):
            self._purge(self.work.root, name)
        self._tmpfiles = TmpFiles(self.work.root)
        if self.opts.index:
            self.index = Layer(os.path.join(workdir, "index"), -1)

    def _purge(self, dirfd: int, name: str) -> None:
        """Remove `name` (a whole tree) from a directory we hold, following no symlink."""
        s = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        if st.S_ISDIR(s.st_mode):
            shutil.rmtree(name, dir_fd=dirfd)
        else:
            os.unlink(name, dir_fd=dirfd)

    def _tmpname(self) -> str:
        return f"#{os.getpid():x}.{next(self._tmp):x}"

    def close(self) -> None:
        if self.work is not None:
            self._tmpfiles.close()
        for fd in (f.upper for f in self._ovl.values()):
            if fd is not None:
                os.close(fd)
        for layer in (*self.layers, self.work, self.index):
            if layer is not None:
                layer.close()

    # ---- lookup -----------------------------------------------------------------------------------

    def root(self) -> Node:
        stack = [Real(layer, (), os.fstat(layer.root)) for layer in self.layers]
        return Node((), None, stack, stack[0])

    def child(self, parent: Node, name: str) -> Node | None:
        """ovl_lookup for one name in a directory: None if the union has no such name."""
        dirs = {r.layer.index: r.rel for r in parent.stack}
        names: Rel = (name,)
        absolute_from: int | None = None
        stack: list[Real] = []
        for pos, layer in enumerate(self.layers):
            if absolute_from is not None:
                if pos <= absolute_from:
                    continue
                rel = names
            elif layer.index in dirs:
                rel = dirs[layer.index] + names
            else:
                continue
            s = layer.lstat(rel)
            if s is None:
                continue
            if is_whiteout(s):
                break
            real = Real(layer, rel, s)
            if not real.is_dir:
                if stack:
                    break  # a directory hides a non-directory below it
                return self._nondir(parent, name, real)
            stack.append(real)
            if layer.getxattr(rel, OPAQUE) == b"y":
                break
            redirect = layer.getxattr(rel, REDIRECT)
            if redirect:
                names = _redirect_names(redirect)
                if redirect.startswith(b"/"):
                    absolute_from = pos
        return Node((*parent.path, name), parent, stack, stack[0]) if stack else None

    def _nondir(self, parent: Node, name: str, real: Real) -> Node:
        shown = real
        if self.index is not None and real.layer is not self.upper and real.st.st_nlink > 1:
            entry = self._index_entry(self._handle(real))
            if entry is not None:
                shown = entry
        return Node((*parent.path, name), parent, [real], shown)

    def resolve(self, path: str) -> Node | None:
        """The node at an absolute path from FUSE (the kernel has followed every symlink in it); None when
        the last component does not exist."""
        node = self._nodes.get(path, _UNREAD)
        if node is not _UNREAD:
            return node
        if path == "/":
            node = self._nodes["/"] = self.root()
            return node
        head, _, name = path.rpartition("/")
        if len(os.fsencode(name)) > NAME_MAX:
            raise fail(E.ENAMETOOLONG)
        parent = self.existing(head or "/")
        if not parent.is_dir:
            raise fail(E.ENOTDIR)
        node = self._nodes[path] = self.child(parent, name)
        return node

    def lookup(self, path: str) -> tuple[Node, Attrs] | None:
        """The node at `path` and its attributes, as a lookup asks for both: a name resolved now shows what
        resolving it read (one stat, not two)."""
        known = path in self._nodes
        node = self.resolve(path)
        if node is None:
            return None
        return node, self.attrs(node, None if known else node.shown.st)

    def existing(self, path: str) -> Node:
        node = self.resolve(path)
        if node is None:
            raise fail(E.ENOENT)
        return node

    def _forget(self, path: Rel, is_dir: bool) -> None:
        """A name was made, removed or moved: forget what was resolved at it, and below it for a directory
        (with the layers' directory fds: a path may name another directory now). Other names' nodes stay
        true: a copy-up updates the nodes it goes through in place."""
        key = "/" + "/".join(path)
        self._nodes.pop(key, None)
        if is_dir:
            below = key + "/"
            for k in [k for k in self._nodes if k.startswith(below)]:
                del self._nodes[k]
            for layer in self.layers:
                layer.forget()

    def _listing(self, node: Node) -> dict[str, os.DirEntry]:
        """The merged listing: a name is there if the topmost layer holding it holds no whiteout."""
        seen: dict[str, os.DirEntry | None] = {}
        for real in node.stack:
            fd = _open_real(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | self._noatime(real.layer),
                           dir_fd=real.layer.dirfd(real.rel))
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        if entry.name not in seen:
                            hidden = _maybe_whiteout(entry) and is_whiteout(entry.stat(follow_symlinks=False))
                            seen[entry.name] = None if hidden else entry
            finally:
                os.close(fd)
        return {name: entry for name, entry in sorted(seen.items()) if entry is not None}

    def names(self, node: Node) -> list[str]:
        return list(self._listing(node))

    def entries(self, node: Node) -> list[tuple[str, int, int]]:
        """readdir: (name, mode, st_ino) for `.`, `..` and the merged listing. d_ino is st_ino, except for a
        name whose lookup fails (an invalid redirect): listed with its real inode, an error when used."""
        parent = node.parent or node
        out = [(".", node.stack[0].st.st_mode, self.ino(node)), ("..", parent.stack[0].st.st_mode, self.ino(parent))]
        for name, raw in self._listing(node).items():
            path = "/" + "/".join((*node.path, name))
            try:
                child = self._nodes.get(path) or self.child(node, name)
            except OSError:
                out.append((name, 0, raw.inode()))  # type unknown: a readdir caller has to look
                continue
            self._nodes[path] = child  # a listing is mostly followed by a look at each name
            out.append((name, child.shown.st.st_mode, self.ino(child)))
        return out

    def _lower_positive(self, parent: Node, name: str) -> bool:
        """Whether a name exists below the upper layer (so removing it needs a whiteout)."""
        lower = [r for r in parent.stack if r.layer is not self.upper]
        return bool(lower) and self.child(Node(parent.path, parent.parent, lower, lower[0]), name) is not None

    # ---- origins, the index and identity ------------------------------------------------------------

    def _origin(self, real: Real) -> bytes | None:
        if real.layer is not self.upper:
            return None
        # read once per looked-up entry: getattr asks for it on every stat of a copied-up file
        if real.origin is _UNREAD:
            real.origin = real.layer.getxattr(real.rel, ORIGIN)
        return real.origin

    def _decode(self, fb: bytes) -> os.stat_result | None:
        if fb not in self._origins:
            found = None
            for layer in self.lowers:
                found = decode_origin(layer.root, fb)
                if found is not None:
                    break
            self._origins[fb] = found
        return self._origins[fb]

    def _lower(self, node: Node) -> os.stat_result | None:
        """The lower inode behind a non-directory: its own, or its copy-up's origin."""
        top = node.stack[0]
        if top.layer is not self.upper:
            return top.st
        fb = self._origin(top)
        return self._decode(fb) if fb else None

    @staticmethod
    def _handle(real: Real) -> bytes:
        return encode_origin(*real.layer.at(real.rel))

    def _index_entry(self, fb: bytes) -> Real | None:
        """work/index/<the origin handle in hex>, as overlayfs names index entries."""
        name = fb.hex()
        s = self.index.lstat((name,))
        return Real(self.index, (name,), s) if s is not None else None

    def _number(self, s: os.stat_result) -> int:
        """The st_ino the union shows for a real file: its own, marked with its file system when the layers are
        on several (overlayfs's xino: unique, and persistent across mounts of the same layers)."""
        fsid = self._fsid.get(s.st_dev, 0)
        return s.st_ino | (fsid << XINO_SHIFT) if fsid else s.st_ino

    def _by_origin(self, fb: bytes | None, own: os.stat_result) -> tuple[int, Real | None]:
        """An upper non-directory's st_ino and index entry, from its origin handle: the origin's number when
        the origin is not a hard link, or is indexed (ovl_get_inode); else its own."""
        origin = self._decode(fb) if fb else None
        if origin is None:
            return self._number(own), None
        index = self._index_entry(fb) if self.index is not None and origin.st_nlink > 1 else None
        return self._number(origin if origin.st_nlink == 1 or index is not None else own), index

    def _identity(self, node: Node) -> tuple[int, Real | None]:
        """A name's st_ino, and the index entry of a non-directory's lower inode if it has one."""
        top = node.stack[0]
        if node.is_dir:
            lowers = [r for r in node.stack if r.layer is not self.upper]
            return self._number((lowers or node.stack)[0].st), None
        if top.layer is not self.upper:
            # found by `_nondir`
            return self._number(top.st), node.shown if node.shown.layer is self.index else None
        return self._by_origin(self._origin(top), top.st)

    def ino(self, node: Node) -> int:
        return self._identity(node)[0]

    def generation(self, node: Node) -> int:
        """A 32-bit tag of the real inode whose number a name shows, from that inode's file handle (which holds
        its file system's generation): an inode number used again by another file, after the first was removed,
        comes with another tag."""
        real = node.stack[0]
        if node.is_dir:
            real = ([r for r in node.stack if r.layer is not self.upper] or node.stack)[0]
        elif real.layer is self.upper and self.ino(node) != self._number(real.st):
            return zlib.crc32(origin_fid(self._origin(real)))  # it shows its origin's number
        return zlib.crc32(origin_fid(self._handle(real)))

    def _union_nlink(self, entry: Real) -> int:
        """The union's link count of an indexed inode: `trusted.overlay.nlink` is `U<delta>` from its own."""
        s = entry.fresh()
        value = entry.layer.getxattr(entry.rel, NLINK)
        if value and value[:1] == b"U":
            try:
                return s.st_nlink + int(value[1:])
            except ValueError:
                pass
        return s.st_nlink

    def _set_union_nlink(self, entry: Real, nlink: int) -> None:
        own = entry.fresh().st_nlink
        os.setxattr(entry.layer.xpath(entry.rel), NLINK, b"U%+d" % (nlink - own), follow_symlinks=False)

    def _index_of(self, node: Node | None) -> Real | None:
        return self._identity(node)[1] if node is not None else None

    @contextmanager
    def _counting(self, entry: Real | None, delta: int) -> Iterator[None]:
        """Keep the union's link count of an indexed inode (its index `entry`) across a change of names: its count
        before, plus `delta` (the change may move the index inode's own count too, which the xattr is relative
        to)."""
        before = self._union_nlink(entry) if entry is not None else 0
        yield
        if entry is not None:
            self._set_union_nlink(entry, before + delta)

    def key(self, node: Node) -> tuple:
        """Which in-memory inode a name belongs to (ovl_hash_bylower): names of one file share it."""
        lower = self._lower(node)
        if lower is not None and (self.index is not None or lower.st_nlink == 1):
            return ("lower", lower.st_dev, lower.st_ino)
        top = node.stack[0]
        if top.layer is self.upper:
            return ("upper", top.st.st_dev, top.st.st_ino)
        return ("path", node.path)

    def indexed_links(self, node: Node) -> bool:
        """Whether a non-directory's lower inode has several names that the index keeps one file: what is done
        through one of them, the others show."""
        if node.is_dir or self.index is None:
            return False
        lower = self._lower(node)
        return lower is not None and lower.st_nlink > 1

    # ---- attributes ----------------------------------------------------------------------------------

    def attrs(self, node: Node, s: os.stat_result | None = None) -> Attrs:
        """A name's attributes, from `s` if it is what `node.shown` was stat'ed as just now."""
        s = s or node.shown.fresh()
        ino, index = self._identity(node)
        if node.is_dir:
            nlink = 1 if node.merged else s.st_nlink
        else:
            nlink = self._union_nlink(index) if index is not None else s.st_nlink
        return Attrs(s, ino, nlink)

    def handle_attrs(self, h: Handle) -> Attrs:
        """fstat: the file the handle reads now (its copy-up, if it was copied up since it was opened)."""
        self._follow(h)
        s = os.fstat(h.fd)
        ino, index = self._by_origin(self._fd_origin(h.fd), s) if h.on_upper else (self._number(s), None)
        return Attrs(s, ino, self._union_nlink(index) if index is not None else s.st_nlink)

    @staticmethod
    def _fd_origin(fd: int) -> bytes | None:
        try:
            return os.getxattr(proc(fd), ORIGIN)
        except OSError as e:
            if e.errno in (E.ENODATA, E.EOPNOTSUPP):
                return None
            raise

    # ---- copy-up -------------------------------------------------------------------------------------

    def _writable(self) -> Layer:
        if self.upper is None or "ro" in self.opts.fuse:
            raise fail(E.EROFS)
        return self.upper

    def copy_up(self, node: Node) -> Real:
        """Give `node` an upper entry (its parents first) and return it."""
        top = node.stack[0]
        if top.layer is self.upper:
            return top
        upper = self._writable()
        up_parent = self.copy_up(node.parent)
        name = node.path[-1]
        rel = (*up_parent.rel, name)
        pfd = upper.dirfd(up_parent.rel)
        done = upper.lstat(rel)
        origin = _UNREAD  # the copy's origin xattr, where it is known without reading it back
        if done is not None and not is_whiteout(done):
            pass  # copied up already, through another node for the same name
        elif top.is_dir:
            self._copy(top, pfd, name)
        elif self.index is not None and top.st.st_nlink > 1:
            fb = origin = self._handle(top)
            entry = self._index_entry(fb)
            # the union's link count starts at the lower inode's, and another name's copy-up keeps it
            nlink = self._union_nlink(entry) if entry is not None else top.st.st_nlink
            if entry is None:
                entry = self._make_index(top, fb)
                self._nodes.clear()  # the group's other lower names show the index inode from now on
            os.link(entry.rel[-1], name, src_dir_fd=self.index.root, dst_dir_fd=pfd, follow_symlinks=False)
            self._set_union_nlink(entry, nlink)
        else:
            origin = self._copy(top, pfd, name)
        if origin is not _UNREAD:
            self._origins.setdefault(origin, top.st)  # what decoding it would find: the lower inode copied
        real = Real(upper, rel, os.stat(name, dir_fd=pfd, follow_symlinks=False), origin)
        node.stack.insert(0, real) if top.is_dir else node.stack.__setitem__(0, real)
        node.shown = real
        self.copied.append(node.path)
        if not top.is_dir:
            self._copied(node, real)
        return real

    def _copied(self, node: Node, real: Real) -> None:
        """Open files of the lower file now read the copy (overlayfs: one in-memory inode for both)."""
        ovl = self._ovl.get(self.key(node)) or self._ovl.get(("path", node.path))
        if ovl is not None and ovl.upper is None:
            dfd, name = real.layer.at(real.rel)
            ovl.upper = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)

    def _make_index(self, lower: Real, fb: bytes) -> Real:
        """The first copy-up of a lower hard link goes to work/index/<origin handle in hex>."""
        name = fb.hex()
        self._copy(lower, self.index.root, name, origin=fb)
        return Real(self.index, (name,), os.stat(name, dir_fd=self.index.root, follow_symlinks=False))

    def _copy(self, src: Real, dest_fd: int, dest: str, origin: bytes | None = None) -> bytes:
        """Copy a lower entry (not a directory's contents) to `dest` in `dest_fd`: built in the work directory
        with every attribute, made durable, then put in place in one step. Returns the origin it was given."""
        sfd, sname = src.layer.at(src.rel)
        origin = origin or encode_origin(sfd, sname)
        s = src.st
        if st.S_ISREG(s.st_mode):
            self._copy_file(sfd, sname, s, dest_fd, dest, origin)
            return origin
        wfd, tmp = self.work.root, self._tmpname()
        if st.S_ISDIR(s.st_mode):
            os.mkdir(tmp, 0o700, dir_fd=wfd)
        elif st.S_ISLNK(s.st_mode):
            os.symlink(os.readlink(sname, dir_fd=sfd), tmp, dir_fd=wfd)
        else:
            os.mknod(tmp, s.st_mode, s.st_rdev, dir_fd=wfd)
        try:
            self._copy_xattrs(src.layer.xpath(src.rel), proc(wfd, tmp), follow_symlinks=False)
            os.setxattr(proc(wfd, tmp), ORIGIN, origin, follow_symlinks=False)
            self._set_owner_mode_times(wfd, tmp, s)
            renameat2(wfd, tmp, dest_fd, dest, RENAME_NOREPLACE)
        except BaseException:
            self._purge(wfd, tmp)
            raise
        return origin

    def _copy_file(self, sfd: int, sname: str, s: os.stat_result, dest_fd: int, dest: str, origin: bytes) -> None:
        """A regular file's copy-up, as overlayfs makes it: an unnamed file (O_TMPFILE) given the data, fsync'ed,
        given the attributes, then linked into place; a crash leaves nothing behind. On an upper layer without
        O_TMPFILE, a file under a temporary name in the work directory, renamed into place."""
        source = _open_real(sname, _READ | os.O_NOATIME, dir_fd=sfd)
        try:
            copy, tmp = self._work_file()
            try:
                self._copy_data(source, copy, s.st_size)
                if not self.opts.volatile:
                    os.fsync(copy)
                self._copy_xattrs(source, copy)
                os.setxattr(copy, ORIGIN, origin)
                os.fchown(copy, s.st_uid, s.st_gid)
                os.fchmod(copy, st.S_IMODE(s.st_mode))  # after chown, which clears set-id bits
                os.utime(copy, ns=(s.st_atime_ns, s.st_mtime_ns))
                if tmp is None:
                    os.link(proc(copy), dest, dst_dir_fd=dest_fd, follow_symlinks=True)
                else:
                    renameat2(self.work.root, tmp, dest_fd, dest, RENAME_NOREPLACE)
            except BaseException:
                if tmp is not None:
                    os.unlink(tmp, dir_fd=self.work.root)
                raise
            finally:
                os.close(copy)
        finally:
            os.close(source)

    def _work_file(self) -> tuple[int, str | None]:
        """A new file in the work directory to build a copy-up in, and its name (None: it has none)."""
        unnamed = self._tmpfiles.take()
        if unnamed is not None:
            return unnamed, None
        tmp = self._tmpname()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(tmp, flags, 0o600, dir_fd=self.work.root), tmp

    def _copy_data(self, src: int, dst: int, size: int) -> None:
        """Copy the data extents only, so holes stay holes."""
        pos = 0
        while pos < size:
            try:
                data = os.lseek(src, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == E.ENXIO:
                    break
                raise
            end = os.lseek(src, data, os.SEEK_HOLE)
            pos = data
            while pos < end:
                n = self._copy_range(src, dst, end - pos, pos)
                if n == 0:
                    break
                pos += n
        os.ftruncate(dst, size)

    def _copy_range(self, src: int, dst: int, count: int, pos: int) -> int:
        """Copy up to `count` bytes at `pos`: in the kernel where it can (copy_file_range), else through a buffer
        (copy_file_range refuses two file systems, as when a lower layer is on one of its own)."""
        if self._range_copy:
            try:
                return os.copy_file_range(src, dst, count, pos, pos)
            except OSError as e:
                if e.errno not in _NO_RANGE_COPY:
                    raise
                self._range_copy = False
        data = os.pread(src, min(count, 1 << 20), pos)
        return os.pwrite(dst, data, pos) if data else 0

    @staticmethod
    def _copy_xattrs(src: str | int, dst: str | int, **how) -> None:
        """Every xattr but overlayfs's own, between two paths (`how`: follow_symlinks=False) or two fds."""
        try:
            names = os.listxattr(src, **how)
        except OSError as e:
            if e.errno == E.EOPNOTSUPP:
                return
            raise
        for name in names:
            if not name.startswith(PREFIX):
                os.setxattr(dst, name, os.getxattr(src, name, **how), **how)

    @staticmethod
    def _set_owner_mode_times(dfd: int, name: str, s: os.stat_result) -> None:
        os.chown(name, s.st_uid, s.st_gid, dir_fd=dfd, follow_symlinks=False)
        if not st.S_ISLNK(s.st_mode):  # chown cleared set-id bits; a symlink's mode is always 0777
            os.chmod(proc(dfd, name), st.S_IMODE(s.st_mode))
        os.utime(name, ns=(s.st_atime_ns, s.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)

    # ---- creation and removal ------------------------------------------------------------------------

    def _free(self, path: str) -> tuple[Node, str]:
        head, _, name = path.rpartition("/")
        if self.resolve(path) is not None:
            raise fail(E.EEXIST)
        return self.existing(head or "/"), name

    def _add(self, parent: Node, name: str, make: Callable[[int, str, int], None], cred: Cred | None,
             is_dir: bool = False, new_inode: bool = True, mode: int | None = None) -> None:
        """Enter a new entry under `name` on the upper layer, replacing a whiteout there; `make(dir fd, name, mode)`
        makes it with `mode` (None: an entry that has none of its own, a symlink or a link) as the caller's umask or
        the directory's default ACL leave it.

        A directory is made opaque over a whiteout, and in a merged directory when the layers may not change
        offline (redirect_dir or index on). Anything that needs more than one step is built in the work
        directory and renamed into place, given the ACLs the directory's default ACL gives (the upper file system
        gives them to what is made in place).
        """
        self._writable()
        up = self.copy_up(parent)
        pfd = self.upper.dirfd(up.rel)
        old = self.upper.lstat((*up.rel, name))
        whiteout = old is not None and is_whiteout(old)
        if old is not None and not whiteout:
            raise fail(E.EEXIST)
        opaque = is_dir and (whiteout or (parent.merged and not self.opts.offline_changes))
        where = os.fstat(pfd)
        default = acl.default_acl(self.upper.xpath(up.rel)) if mode is not None else None
        if default is None and mode is not None and cred is not None:
            mode &= ~cred.umask
        if not (whiteout or opaque):
            make(pfd, name, mode)
            self._own(pfd, name, cred, where, is_dir)
        else:
            wfd, tmp = self.work.root, self._tmpname()
            access = None
            if default is not None:
                mode, access = acl.inherit(default, mode)  # (not None: a mode is given with a default ACL)
            make(wfd, tmp, mode)
            try:
                for xattr, value in ((acl.ACCESS, access), (acl.DEFAULT, default if is_dir else None)):
                    if value is not None:
                        os.setxattr(proc(wfd, tmp), xattr, value, follow_symlinks=False)
                self._own(wfd, tmp, cred, where, is_dir)
                if opaque:
                    os.setxattr(proc(wfd, tmp), OPAQUE, b"y", follow_symlinks=False)
                renameat2(wfd, tmp, pfd, name, RENAME_EXCHANGE if whiteout else RENAME_NOREPLACE)
            except BaseException:
                self._purge(wfd, tmp)
                raise
            if whiteout:
                os.unlink(tmp, dir_fd=wfd)
        path = (*parent.path, name)
        self._forget(path, is_dir=False)  # nothing was resolved below a new name
        if not is_dir:  # what a lookup would find: the new upper entry alone (a new inode has no origin)
            origin = None if new_inode else _UNREAD
            real = Real(self.upper, (*up.rel, name), os.stat(name, dir_fd=pfd, follow_symlinks=False), origin)
            self._nodes["/" + "/".join(path)] = Node(path, parent, [real], real)

    @staticmethod
    def _own(dfd: int, name: str, cred: Cred | None, parent: os.stat_result, is_dir: bool) -> None:
        """Give a new inode the owner the kernel gives one (inode_init_owner): the caller, and in a setgid
        directory (`parent`) that directory's group, and for a directory its setgid bit too. We made it as root,
        maybe in the work directory, where it inherited neither; a chown keeps the set-id bits it was made with.
        No `cred`: a new name of an inode that has its owner."""
        setgid = parent.st_mode & st.S_ISGID
        if cred is None or (not setgid and (cred.uid, cred.gid) == (0, 0)):
            return
        gid = parent.st_gid if setgid else cred.gid
        s = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        mode = st.S_IMODE(s.st_mode) | (st.S_ISGID if setgid and is_dir else 0)
        chown = (s.st_uid, s.st_gid) != (cred.uid, gid)
        if chown:
            os.chown(name, cred.uid, gid, dir_fd=dfd, follow_symlinks=False)
        if not st.S_ISLNK(s.st_mode) and (mode != st.S_IMODE(s.st_mode) or (chown and mode & 0o6000)):
            os.chmod(proc(dfd, name), mode)

    def _remove(self, parent: Node, name: str, node: Node) -> None:
        """Remove a name: its upper entry goes, and a whiteout takes its place if it exists below, in one
        rename (RENAME_WHITEOUT)."""
        self._writable()
        up = self.copy_up(parent)
        pfd = self.upper.dirfd(up.rel)
        positive = self._lower_positive(parent, name)
        if node.stack[0].layer is self.upper:
            if positive or node.is_dir:
                tmp = self._tmpname()
                renameat2(pfd, name, self.work.root, tmp, RENAME_WHITEOUT if positive else 0)
                self._purge(self.work.root, tmp)
            else:
                os.unlink(name, dir_fd=pfd)
        elif positive:
            os.mknod(name, st.S_IFCHR, 0, dir_fd=pfd)
        self._forget(node.path, node.is_dir)

    def _index_before_removal(self, node: Node) -> None:
        """overlayfs ovl_nlink_start: a lower hard link is indexed before it is removed or renamed over, so
        the union's link count can be kept."""
        top = node.stack[0]
        if self.index is not None and top.layer is not self.upper and not top.is_dir and top.st.st_nlink > 1:
            self.copy_up(node)

    # ---- operations: names ---------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int, cred: Cred) -> None:
        parent, name = self._free(path)
        self._add(parent, name, lambda fd, n, m: os.mkdir(n, m & 0o7777, dir_fd=fd), cred, is_dir=True, mode=mode)

    def mknod(self, path: str, mode: int, rdev: int, cred: Cred) -> None:
        parent, name = self._free(path)
        self._add(parent, name, lambda fd, n, m: os.mknod(n, m, rdev, dir_fd=fd), cred, mode=mode)

    def symlink(self, path: str, target: str, cred: Cred) -> None:
        parent, name = self._free(path)
        self._add(parent, name, lambda fd, n, _: os.symlink(target, n, dir_fd=fd), cred)

    def link(self, old: str, new: str) -> None:
        src = self.existing(old)
        if src.is_dir:
            raise fail(E.EPERM)
        parent, name = self._free(new)
        up = self.copy_up(src)
        ufd, uname = up.layer.at(up.rel)
        with self._counting(self._index_of(src), +1):
            self._add(parent, name, lambda fd, n, _: os.link(uname, n, src_dir_fd=ufd, dst_dir_fd=fd,
                                                             follow_symlinks=False), None, new_inode=False)

    def unlink(self, path: str) -> None:
        node = self.existing(path)
        if node.is_dir:
            raise fail(E.EISDIR)
        self._index_before_removal(node)
        with self._counting(self._index_of(node), -1):
            self._remove(node.parent, node.path[-1], node)

    def rmdir(self, path: str, keep: bool = False) -> RemovedDir | None:
        """Remove a directory; with `keep` (it is held), what it shows from then on (`_removing`)."""
        node = self.existing(path)
        if not node.is_dir:
            raise fail(E.ENOTDIR)
        if node.parent is None:
            raise fail(E.EBUSY)
        if self.names(node):
            raise fail(E.ENOTEMPTY)
        return self._removing(node, keep, lambda: self._remove(node.parent, node.path[-1], node))

    def _removing(self, node: Node, keep: bool, remove: Callable[[], None]) -> RemovedDir | None:
        """Remove the directory `node` by `remove`; with `keep` (it is held), return what it shows from then on,
        as overlayfs shows it: a merged directory nlink 1, any other its real directory's count (0 for an upper
        one, which is gone), with its real directory held (the caller closes it)."""
        if not keep:
            remove()
            return None
        dfd, name = node.shown.layer.at(node.shown.rel)
        held = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            remove()
        except BaseException:
            os.close(held)
            raise
        return RemovedDir(held, self.ino(node), node.merged, node.shown.layer is self.upper)

    def one_inode(self, old: str, new: str) -> bool:
        """Whether `old` and `new` name one union inode, between which a rename does nothing."""
        dst = self.resolve(new)
        return dst is not None and self._one_inode(self.existing(old), dst)

    def _one_inode(self, src: Node, dst: Node) -> bool:
        return dst.path == src.path or self.key(src) == self.key(dst)

    def rename(self, old: str, new: str, flags: int = 0, keep: bool = False) -> RemovedDir | None:
        """overlayfs ovl_rename: checks, copy-ups, the source's redirect or opaque mark, then one rename on
        the upper layer, leaving a whiteout where the source name exists below. With `keep` (the directory it
        replaces is held), what that directory shows from then on (`_removing`)."""
        if flags & ~RENAME_NOREPLACE:
            raise fail(E.EINVAL)  # RENAME_EXCHANGE and RENAME_WHITEOUT are not offered
        src = self.existing(old)
        dst = self.resolve(new)
        head, _, nname = new.rpartition("/")
        np_ = self.existing(head or "/")
        op, oname = src.parent, src.path[-1]
        if dst is not None and flags & RENAME_NOREPLACE:
            raise fail(E.EEXIST)
        if dst is not None and self._one_inode(src, dst):
            return None  # rename does nothing
        is_dir = src.is_dir
        if dst is not None and dst.is_dir != is_dir:
            raise fail(E.ENOTDIR if is_dir else E.EISDIR)
        if is_dir and np_.path[: len(src.path)] == src.path:
            raise fail(E.EINVAL)
        movable = not is_dir or (src.stack[0].layer is self.upper and not src.merged)
        if not movable and not self.opts.redirect_dir:
            raise fail(E.EXDEV)
        not_empty = dst is not None and is_dir and bool(self.names(dst))
        if not_empty and (dst.stack[0].layer is not self.upper or dst.merged):
            raise fail(E.ENOTEMPTY)
        self._writable()
        if dst is not None:
            self._index_before_removal(dst)
        with self._counting(self._index_of(dst), -1):
            move = partial(self._move, src, op, np_, oname, nname, is_dir, movable, not_empty)
            if dst is None or not is_dir:
                move()
                return None
            return self._removing(dst, keep, move)

    def _move(self, src: Node, op: Node, np_: Node, oname: str, nname: str, is_dir: bool, movable: bool,
              not_empty: bool) -> None:
        self._index_before_removal(src)
        redirect = self._redirect_for(src, op, np_) if is_dir and not movable else None
        up_src = self.copy_up(src)
        up_old = self.copy_up(op)
        up_new = self.copy_up(np_)
        source_positive = self._lower_positive(op, oname)
        src_path = self.upper.xpath(up_src.rel)
        if redirect is not None:
            os.setxattr(src_path, REDIRECT, os.fsencode(redirect), follow_symlinks=False)
        elif is_dir and np_.merged and self.upper.getxattr(up_src.rel, OPAQUE) != b"y":
            os.setxattr(src_path, OPAQUE, b"y", follow_symlinks=False)
        if not_empty:
            raise fail(E.ENOTEMPTY)
        ofd, nfd = self.upper.dirfd(up_old.rel), self.upper.dirfd(up_new.rel)
        there = self.upper.lstat((*up_new.rel, nname))
        if there is not None and is_whiteout(there):
            # exchange with the whiteout: it lands on the old name, where it stays only if needed there
            renameat2(ofd, oname, nfd, nname, RENAME_EXCHANGE)
            if not source_positive:
                os.unlink(oname, dir_fd=ofd)
        else:
            if there is not None and st.S_ISDIR(there.st_mode):
                self._empty_dir_at(nfd, nname)
            renameat2(ofd, oname, nfd, nname, RENAME_WHITEOUT if source_positive else 0)
        self._forget(src.path, is_dir)
        self._forget((*np_.path, nname), is_dir)

    def _empty_dir_at(self, dfd: int, name: str) -> None:
        """Swap an upper directory that is empty in the union (but may hold whiteouts) for an empty one, so
        rename can replace it (overlayfs ovl_clear_empty)."""
        wfd, tmp = self.work.root, self._tmpname()
        os.mkdir(tmp, 0o700, dir_fd=wfd)
        renameat2(wfd, tmp, dfd, name, RENAME_EXCHANGE)
        self._purge(wfd, tmp)

    def _redirect_for(self, src: Node, op: Node, np_: Node) -> str:
        """overlayfs ovl_get_redirect: the name in the same directory, else the absolute lower path."""
        current = self._redirect(src)
        if op.path == np_.path and (current is None or not current.startswith("/")):
            return current or src.path[-1]
        if current is not None and current.startswith("/"):
            return current
        return "/" + "/".join((*self._absolute_lower_path(op), current or src.path[-1]))

    def _redirect(self, node: Node) -> str | None:
        top = node.stack[0]
        if top.layer is not self.upper:
            return None
        value = self.upper.getxattr(top.rel, REDIRECT)
        return os.fsdecode(value) if value else None

    def _absolute_lower_path(self, node: Node) -> Rel:
        """Where a directory's lower layers are, following its ancestors' redirects."""
        if node.parent is None:
            return ()
        redirect = self._redirect(node)
        if redirect is not None and redirect.startswith("/"):
            return tuple(c for c in redirect.split("/") if c)
        return (*self._absolute_lower_path(node.parent), redirect or node.path[-1])

    def readlink(self, path: str) -> str:
        real = self.existing(path).shown
        dfd, name = real.layer.at(real.rel)
        return os.readlink(name, dir_fd=dfd)

    # ---- operations: attributes ----------------------------------------------------------------------

    def _target(self, path: str | None, h: Handle | RemovedDir | None) -> tuple[int | str, dict]:
        """Where an attribute change lands, as the first argument and keywords of the os call: the copy-up of
        the name, or an inode with no name left itself (`_nameless`)."""
        if h is not None:
            return self._nameless(h), {}
        real = self.copy_up(self.existing(path))
        if not real.rel:
            return real.layer.root, {}
        dfd, name = real.layer.at(real.rel)
        if st.S_ISLNK(real.st.st_mode):
            return name, {"dir_fd": dfd, "follow_symlinks": False}
        return name, {"dir_fd": dfd}

    def _nameless(self, of: Handle | RemovedDir) -> int | str:
        """Where a change of an inode with no name left lands (an unlinked or renamed-over file still open, a
        directory removed while held): its upper file or directory itself. overlayfs copies a lower one up
        under the name it had, where its whiteout or another file now stands: EEXIST for a file, ENOTDIR for a
        directory (docs/facts.md, overlayfs 24; where a new empty directory stands, the kernel copies the old one
        over it, which would bring its removed entries back: not followed here)."""
        if isinstance(of, RemovedDir):
            if not of.on_upper:
                raise fail(E.ENOTDIR)
            return proc(of.held, ".")
        self._follow(of)
        if not of.on_upper:
            raise fail(E.EEXIST)
        return of.fd

    def chmod(self, path: str | None, mode: int, h: Handle | RemovedDir | None = None) -> None:
        target, how = self._target(path, h)
        if "follow_symlinks" in how:
            raise fail(E.EOPNOTSUPP)  # a symlink's mode cannot change (the VFS never asks: chmod follows)
        os.chmod(target, st.S_IMODE(mode), **how)

    def chown(self, path: str | None, uid: int, gid: int, h: Handle | RemovedDir | None = None) -> None:
        target, how = self._target(path, h)
        os.chown(target, uid, gid, **how)

    def utimens(self, path: str | None, times: tuple[int, int] | None, h: Handle | RemovedDir | None = None) -> None:
        target, how = self._target(path, h)
        os.utime(target, ns=self._times(times, os.stat(target, **how)), **how)

    @staticmethod
    def _times(times: tuple[int, int] | None, now: os.stat_result) -> tuple[int, int]:
        current = time.time_ns()
        if times is None:
            return current, current
        out = []
        for value, old in zip(times, (now.st_atime_ns, now.st_mtime_ns), strict=True):
            out.append(old if value == UTIME_OMIT else current if value == UTIME_NOW else value)
        return out[0], out[1]

    def drop_set_id(self, path: str | None, h: Handle | None, in_group: Callable[[int], bool]) -> bool:
        """After a write, truncate or fallocate by a caller without CAP_FSETID: setuid goes, and setgid where group
        execute is set or the caller is outside the file's group (the VFS's should_remove_suid); whether it did."""
        target, how = self._target(path, h)
        s = os.stat(target, **how)
        if not st.S_ISREG(s.st_mode) or not s.st_mode & (st.S_ISUID | st.S_ISGID):
            return False
        kill = st.S_ISUID | (st.S_ISGID if s.st_mode & st.S_IXGRP or not in_group(s.st_gid) else 0)
        if not s.st_mode & kill:
            return False
        os.chmod(target, st.S_IMODE(s.st_mode) & ~kill, **how)
        return True

    def truncate(self, path: str | None, length: int, h: Handle | None = None) -> None:
        if h is not None:
            self._follow(h)
            os.ftruncate(h.fd, length)
            return
        node = self.existing(path)
        if node.is_dir:
            raise fail(E.EISDIR)
        up = self.copy_up(node)
        dfd, name = up.layer.at(up.rel)
        fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            os.ftruncate(fd, length)
        finally:
            os.close(fd)

    # ---- operations: xattrs --------------------------------------------------------------------------

    @staticmethod
    def _private(name: str) -> None:
        if name.startswith(PREFIX):
            raise fail(E.EOPNOTSUPP)

    def getxattr(self, of: str | Handle | RemovedDir, name: str) -> bytes:
        self._private(name)
        src = self._xattr_source(of)
        return os.getxattr(src, name, follow_symlinks=isinstance(src, int))

    def listxattr(self, of: str | Handle | RemovedDir) -> list[str]:
        src = self._xattr_source(of)
        return [n for n in os.listxattr(src, follow_symlinks=isinstance(src, int)) if not n.startswith(PREFIX)]

    def _xattr_source(self, of: str | Handle | RemovedDir) -> str | int:
        """Where xattrs are read: the file a path shows, or for a file with no name left the one its open handle
        reads (the kernel asks for an unlinked file's ACL to check a link of it), or a removed directory's real
        one (its ACL, to check a caller's open of it)."""
        if isinstance(of, RemovedDir):
            return proc(of.held, ".")
        if isinstance(of, Handle):
            self._follow(of)
            return of.fd
        real = self.existing(of).shown
        return real.layer.xpath(real.rel)

    def _xattr_target(self, of: str | Handle | RemovedDir) -> str | int:
        """Where an xattr change lands: the copy-up, or for a lower name of an indexed inode the index inode
        itself (overlayfs links no upper alias for it), or an inode with no name left itself (`_nameless`)."""
        if not isinstance(of, str):
            return self._nameless(of)
        node = self.existing(of)
        self._writable()
        real = node.shown if node.shown.layer is self.index else self.copy_up(node)
        return real.layer.xpath(real.rel)

    def setxattr(self, of: str | Handle | RemovedDir, name: str, value: bytes, flags: int) -> None:
        self._private(name)
        if name in (acl.ACCESS, acl.DEFAULT) and isinstance(of, str):
            self._acl_settable(self.existing(of).shown)
        target = self._xattr_target(of)
        os.setxattr(target, name, value, flags, follow_symlinks=isinstance(target, int))

    def _acl_settable(self, real: Real) -> None:
        """overlayfs changes an ACL of a lower file only where the lower file system could (ovl_set_acl asks the
        real inode for set_acl): EOPNOTSUPP on a read-only image, before any copy-up."""
        if real.layer not in (self.upper, self.index) and real.layer.fstype in acl.NO_SET_ACL:
            raise fail(E.EOPNOTSUPP)

    def removexattr(self, of: str | Handle | RemovedDir, name: str) -> None:
        self._private(name)
        if isinstance(of, str):
            real = self.existing(of).shown
            if name in (acl.ACCESS, acl.DEFAULT):
                self._acl_settable(real)
            below = real.layer not in (self.upper, self.index)
        else:
            if isinstance(of, Handle):
                self._follow(of)
            below = not of.on_upper
        if below:  # overlayfs asks the lower layer before it copies up
            src = self._xattr_source(of)
            os.getxattr(src, name, follow_symlinks=isinstance(src, int))
        target = self._xattr_target(of)
        os.removexattr(target, name, follow_symlinks=isinstance(target, int))

    # ---- operations: open files ----------------------------------------------------------------------

    def open(self, path: str, flags: int) -> Handle:
        node = self.existing(path)
        writing = flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC
        if writing and not node.is_dir:
            up = self.copy_up(node)
            return self._open(node, up, flags)
        return self._open(node, node.shown, flags)

    def create(self, path: str, mode: int, flags: int, cred: Cred) -> Handle:
        """A new file, opened as it is made (the fd the caller gets is the one that made it)."""
        parent, name = self._free(path)
        flags &= ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC)
        made: list[int] = []
        how = (flags & _REAL_OPEN) | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self._add(parent, name, lambda fd, n, m: made.append(os.open(n, how, m & 0o7777, dir_fd=fd)), cred,
                      mode=mode)
            node = self.existing(path)
        except BaseException:
            for fd in made:
                os.close(fd)
            raise
        return self._open(node, node.shown, flags, made[0])

    def tmpfile(self, path: str, mode: int, flags: int, cred: Cred) -> Handle:
        """O_TMPFILE: a file with no name, made in the upper copy of the directory `path` as overlayfs makes it
        (ovl_tmpfile), owned and moded as a file made there by name would be."""
        self._writable()
        node = self.existing(path)
        if not node.is_dir:
            raise fail(E.ENOTDIR)
        up = self.copy_up(node)
        pfd = self.upper.dirfd(up.rel)
        where = os.fstat(pfd)
        if acl.default_acl(self.upper.xpath(up.rel)) is None:
            mode &= ~cred.umask  # else the upper file system applies the default ACL to what it makes there
        fd = os.open(".", os.O_TMPFILE | (flags & _REAL_OPEN) | os.O_CLOEXEC, mode & 0o7777, dir_fd=pfd)
        try:
            setgid = where.st_mode & st.S_ISGID
            if setgid or (cred.uid, cred.gid) != (0, 0):
                made = os.fstat(fd)
                os.fchown(fd, cred.uid, where.st_gid if setgid else cred.gid)
                if made.st_mode & 0o6000:  # a chown drops the set-id bits the file was made with
                    os.fchmod(fd, st.S_IMODE(made.st_mode))
            s = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        key = ("upper", s.st_dev, s.st_ino)
        ovl = self._ovl.setdefault(key, OvlFile())
        ovl.refs += 1
        return Handle(fd, flags, key, ovl, True)

    def link_open(self, h: Handle, new: str) -> None:
        """A new name for an open file the kernel knows by no name (an O_TMPFILE file, or an indexed lower hard link
        whose name it was opened by went): linkat of its upper fd. The kernel has refused those it may not name
        (one with no link left, or made O_EXCL)."""
        parent, name = self._free(new)
        self._follow(h)
        # an indexed lower hard link whose names the union removed: its index inode, named again
        index = self._by_origin(self._fd_origin(h.fd), os.fstat(h.fd))[1] if h.on_upper else None
        with self._counting(index, +1):
            self._add(parent, name, lambda fd, n, _: linkat_fd(h.fd, fd, n), None, new_inode=False)

    def _open(self, node: Node, real: Real, flags: int, fd: int | None = None) -> Handle:
        if fd is None:
            # the kernel sends each write's offset, O_APPEND ones included: the real fd must not move them
            dfd, name = real.layer.at(real.rel)
            fd = _open_real(name, (flags & _REAL_OPEN) | os.O_NOFOLLOW | os.O_CLOEXEC | self._noatime(real.layer),
                           dir_fd=dfd)
        key = self.key(node)
        ovl = self._ovl.setdefault(key, OvlFile())
        ovl.refs += 1
        return Handle(fd, flags, key, ovl, real.layer is self.upper or real.layer is self.index)

    def reopen(self, h: Handle, flags: int) -> Handle:
        """Another open of the file `h` reads, which has no name left (open_by_handle_at of it): by its own fd's
        /proc link. A lower file is never written: it would have to be copied up, which needs a name."""
        self._follow(h)
        if not h.on_upper and (flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC):
            raise fail(E.EROFS)
        fd = _open_real(proc(h.fd), (flags & _REAL_OPEN) | os.O_CLOEXEC)
        h.ovl.refs += 1
        return Handle(fd, flags, h.key, h.ovl, h.on_upper)

    def _noatime(self, layer: Layer) -> int:
        """O_NOATIME where reading must change no access time: a lower layer's files, whose times overlayfs never
        changes, and every file on a noatime mount; reading an upper file changes its time as its own mount says."""
        return os.O_NOATIME if self.opts.noatime or layer not in (self.upper, self.index) else 0

    def _follow(self, h: Handle) -> None:
        """A file opened before its copy-up reads the copy (overlayfs: one in-memory inode)."""
        if not h.on_upper and h.ovl.upper is not None:
            with h.lock:
                if not h.on_upper:
                    how = (h.flags & os.O_ACCMODE) | os.O_CLOEXEC | self._noatime(self.upper)
                    fd = _open_real(proc(h.ovl.upper), how)
                    h.before, h.fd, h.on_upper = h.fd, fd, True

    def read_fd(self, h: Handle) -> int:
        """The fd that `h`'s data is read from now. No union lock on the data path: a request holding it may wait
        on pages a read has locked."""
        self._follow(h)
        return h.fd

    def release(self, h: Handle) -> None:
        if h.before is not None:
            os.close(h.before)
        os.close(h.fd)
        h.ovl.refs -= 1
        if h.ovl.refs == 0 and self._ovl.get(h.key) is h.ovl:
            del self._ovl[h.key]
            if h.ovl.upper is not None:
                os.close(h.ovl.upper)

    def statfs(self) -> os.statvfs_result:
        return os.statvfs(proc((self.upper or self.lowers[0]).root))
