"""The union mount model: N read-only lower layers under one writable upper layer.

Every operation is one method, named after the system call, returning an `Outcome` tagged with the ids
of the rules (see `rules.py`) that decided it. The model works on the layers as they lie on disk
(`layers.py`): whiteouts, opaque and redirect xattrs, fallthrus and copy-ups are real entries, so the
expected upper layer of a run is simply layer 0.
"""

from __future__ import annotations

import errno as E
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import wraps

from vfslab.model import acl
from vfslab.model.outcome import Either, Err, Fires, ModelError, Outcome
from vfslab.model.state import Entry, State
from vfslab.model.union.layers import DIR, FALLTHRU, FILE, OPAQUE, REDIRECT, SYMLINK, WHITEOUT, Inode, Store, entry
from vfslab.model.union.ops import (
    ALLOCATE,
    COLLAPSE,
    EVERY_KIND,
    FALLOC_KINDS,
    INSERT,
    KEEP_SIZE,
    LOOKS_ONLY,
    PUNCH,
    FallocSupport,
)
from vfslab.model.union.profiles import Profile
from vfslab.model.union.rules import LINK_LIMIT, NAME_LIMIT, PATH_LIMIT

R, W, X = 4, 2, 1
S_ISUID, S_ISGID, S_ISVTX, S_IXGRP = 0o4000, 0o2000, 0o1000, 0o010

O_ACCMODE, O_RDONLY, O_WRONLY, O_RDWR = 3, 0, 1, 2
O_CREAT, O_EXCL, O_TRUNC, O_APPEND = 0o100, 0o200, 0o1000, 0o2000
O_DIRECTORY, O_NOFOLLOW, O_TMPFILE_BIT = 0o200000, 0o400000, 0o20000000
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2


@dataclass(frozen=True)
class Cred:
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()


ROOT = Cred()


@dataclass
class Found:
    """A name as the union shows it: the layers that hold it, topmost first.

    A non-directory has one layer; a directory has the merge stack. `below` holds directories under an
    opaque barrier, reachable only through fallthrus.
    """

    path: tuple[str, ...]
    parent: Found | None
    stack: list[tuple[int, int]]
    below: list[tuple[int, int]] = field(default_factory=list)

    @property
    def upper(self) -> int | None:
        layer, ino = self.stack[0]
        return ino if layer == 0 else None

    @property
    def merged(self) -> bool:
        return len(self.stack) > 1


@dataclass
class OvlInode:
    """overlayfs's in-memory inode: what an open file refers to, so it can follow a copy-up."""

    upper: int | None
    lower: int | None


@dataclass
class OpenFile:
    ovl: OvlInode
    real: int  # the real inode at open time (what a stale fd keeps reading)
    flags: int
    path: tuple[str, ...]
    is_dir: bool
    offset: int = 0
    #: an O_TMPFILE file not yet named, that flink may name (one opened O_EXCL may not: I_LINKABLE)
    linkable: bool = False
    #: a directory's st_ino when it was opened (what a handle of it holds)
    dir_ino: int | None = None
    #: what a directory removed while open shows
    removed: Entry | None = None


@dataclass
class FileHandle:
    """What name_to_handle_at gave: the union inode it names, by the inode number the union shows for it (which a
    copy-up and a rename keep), and the mount it was made in; where the kernel holds each name of the file as an
    inode of its own, also the name (followed through renames, as an open file's is)."""

    ino: int
    mount: int
    root: bool
    path: tuple[str, ...] | None = None
    #: the fds that have held its inode since it was made (so the kernel cannot have dropped it)
    pins: set[int] = field(default_factory=set)


def operation(method: Callable) -> Callable:
    """Run one model operation: collect the rules it fires, turn a ModelError into an errno outcome."""
    looks_only = method.__name__ in LOOKS_ONLY

    @wraps(method)
    def run(self: UnionModel, *args, **kwargs) -> Outcome:
        self._fired = []
        if not (looks_only and self.lookups_pure):
            self._views.clear()
        try:
            value = method(self, *args, **kwargs)
        except ModelError as err:
            return Outcome(Err(err.errno), (*self._fired, err.rule), tuple(Err(e) for e in err.also))
        if isinstance(value, Either):
            return Outcome(value.result, tuple(self._fired), value.also)
        return Outcome(value, tuple(self._fired))

    return run


class UnionModel(Fires):
    """A union mount over `lowers` (topmost first), each an iterable of spec nodes with the attributes of
    `vfslab.subjects.tree.Node`, held to `profile`; `one_fs` when every layer is on one file system (the
    `same` placement); `falloc`, what the file system under the union does of fallocate (unless the profile
    says); `tmpfile`, whether the mount makes O_TMPFILE files; `fuse`, whether it is a FUSE mount; `lower_acls`,
    whether each lower layer's file system can set ACLs (a read-only image cannot; all can, unless it says)."""

    def __init__(self, lowers: Iterable[Iterable], profile: Profile, umask: int = 0o022, one_fs: bool = True,
                 falloc: FallocSupport = EVERY_KIND, tmpfile: bool = True, fuse: bool = False,
                 lower_acls: tuple[bool, ...] = ()) -> None:
        self.profile = profile
        self.tmpfile = tmpfile
        self.fuse = fuse
        self.one_fs = one_fs
        self.falloc = falloc if profile.fallocate is None else FallocSupport(frozenset(profile.fallocate))
        self.umask = umask
        self.cred = ROOT
        self.store = Store()
        self.store.add_layer_below()
        for nodes in lowers:
            self._build_layer(self.store.add_layer_below(), nodes)
        #: the roots of the lower layers on file systems that set no ACLs (by root, which a push leaves as it is)
        self.acl_less = {self.store.roots[i + 1] for i, kept in enumerate(lower_acls) if not kept}
        self.index: dict[int, int] = {}  # lower inode -> its indexed upper copy (index=on)
        self.index_nlink: dict[int, int] = {}  # lower inode -> the union's link count (trusted.overlay.nlink)
        self.ovl: dict[tuple, OvlInode] = {}
        self.fds: dict[int, OpenFile] = {}
        self._next_fd = 0
        #: the program's file handles, numbered in the order they were made (none is ever given up)
        self.handles: list[FileHandle] = []
        #: how many times the union was mounted again (remount, push) since it was first
        self.mounts = 0
        self._fired: list[str] = []
        # state() and upper_state() are asked for after every step; they are kept until an operation may write
        self._views: dict[str, State] = {}
        self.lookups_pure = not profile.lookups_write

    def _build_layer(self, layer: int, nodes: Iterable) -> None:
        root = self.store[self.store.roots[layer]]
        for n in nodes:
            *dirs, name = n.path.split("/")
            parent = self.store[self.store.walk_names(root.ino, tuple(dirs))]
            if n.kind == "hardlink":
                self.store.link(parent, name, self.store[self.store.walk_names(root.ino, tuple(n.target.split("/")))])
                continue
            mode = 0o777 if n.kind == SYMLINK else n.mode  # what any file system reports for a symlink
            inode = self.store.new(n.kind, mode=mode, uid=n.uid, gid=n.gid, data=n.data, target=n.target,
                                   xattrs=dict(n.xattrs))
            self.store.link(parent, name, inode)

    # ---- rules machinery -------------------------------------------------------------------------

    def _need(self, inode: Inode, want: int, rule: str = "union.perm.access") -> None:
        if not self._may(inode, want):
            raise ModelError(E.EACCES, rule)

    def _may(self, inode: Inode, want: int) -> bool:
        c = self.cred
        if c.uid == 0:
            return True
        if c.uid == inode.uid:
            bits = inode.mode >> 6
        elif (access := inode.xattrs.get(acl.ACCESS)) is not None and inode.mode & 0o070:
            self._fire("union.acl.check")
            return acl.permits(access, c.uid, inode.gid, lambda gid: gid == c.gid or gid in c.groups, want)
        elif inode.gid == c.gid or inode.gid in c.groups:
            bits = inode.mode >> 3
        else:
            bits = inode.mode
        return bits & want == want

    def _own(self, inode: Inode) -> None:
        if self.cred.uid not in (0, inode.uid):
            raise ModelError(E.EPERM, "union.perm.owner")

    def _in_group(self, inode: Inode) -> bool:
        """The caller may keep an inode's setgid bit: it is in the inode's group, or root (CAP_FSETID)."""
        c = self.cred
        return c.uid == 0 or inode.gid == c.gid or inode.gid in c.groups

    def _sticky(self, parent: Found, found: Found) -> None:
        """In a sticky directory only root, the directory's owner or the entry's may remove or replace it."""
        d, node = self._inode(parent), self._inode(found)
        if d.mode & S_ISVTX and self.cred.uid not in (0, d.uid, node.uid):
            raise ModelError(E.EPERM, "union.perm.sticky")

    def _kill_setid(self, node: Inode) -> None:
        """A write, truncate or fallocate of a regular file by a caller without CAP_FSETID clears setuid, and
        setgid where group execute makes it one (should_remove_suid)."""
        if node.kind == FILE and self.cred.uid != 0:
            self._drop_setid(node)

    def _drop_setid(self, node: Inode) -> None:
        kill = S_ISUID | (S_ISGID if node.mode & S_IXGRP or not self._in_group(node) else 0)
        if node.mode & kill:
            self._fire("union.mode.kill-setid")
            node.mode &= ~kill

    # ---- lookup ----------------------------------------------------------------------------------

    def _root(self) -> Found:
        roots = list(enumerate(self.store.roots))
        return Found((), None, roots)

    def _lookup_child(self, parent: Found, name: str) -> Found | None:
        """overlayfs's ovl_lookup / the seed's __lookup_union for one name in a directory."""
        dirs = dict(parent.stack)
        hidden = dict(parent.below)
        names: tuple[str, ...] = (name,)
        absolute_from: int | None = None
        stack: list[tuple[int, int]] = []
        below: list[tuple[int, int]] = []
        fallthru = barrier = False
        for layer, root in enumerate(self.store.roots):
            if absolute_from is not None:
                if layer <= absolute_from:
                    continue
                base = root
            elif layer in dirs:
                base = dirs[layer]
            elif fallthru and layer in hidden:
                base = hidden[layer]
            else:
                continue
            ino = self.store.walk_names(base, names)
            if ino is None:
                continue
            node = self.store[ino]
            if node.kind == FALLTHRU:
                self._fire("union.lookup.fallthru")
                fallthru = True
                continue
            if node.kind == WHITEOUT:
                self._fire("union.lookup.whiteout")
                break
            if node.kind != DIR:
                if stack:
                    self._fire("union.lookup.dir-hides-nondir")
                    break
                return Found((*parent.path, name), parent, [(layer, ino)])
            (below if barrier else stack).append((layer, ino))
            if node.opaque:
                barrier = True
            redirect = node.redirect
            if redirect is not None:
                self._fire("union.lookup.redirect")
                if redirect.startswith("/"):
                    names = tuple(c for c in redirect.split("/") if c)
                    absolute_from = layer
                else:
                    names = (redirect,)
        if not stack:
            return None
        if len(stack) > 1 or below:
            self._fire("union.lookup.topmost-first")
        if below:
            self._fire("union.lookup.opaque")
        return Found((*parent.path, name), parent, stack, below)

    def _resolve(self, path: str, follow: bool) -> tuple[Found | None, str, Found | None]:
        """Walk `path` from the root of the union: (parent, last name, what the name holds or None).

        Intermediate symlinks are always followed, the last one only if `follow`.
        """
        self._measure(PATH_LIMIT, len(path.encode()) + 1, E.ENAMETOOLONG)
        todo = deque(c for c in path.split("/") if c)
        cur = self._root()
        links = 0
        try:
            while todo:
                comp = todo.popleft()
                # link_path_walk checks search permission before every component, "." and ".." included
                self._need(self._inode(cur), X, "union.path.search")
                if comp == ".":
                    if not todo:
                        return cur.parent, ".", cur
                    continue
                if comp == "..":
                    cur = cur.parent or cur
                    continue
                self._measure(NAME_LIMIT, len(comp.encode()), E.ENAMETOOLONG)
                child = self._lookup_child(cur, comp)
                last = not todo
                if child is None:
                    if last:
                        return cur, comp, None
                    raise ModelError(E.ENOENT, "union.path.enoent")
                kind = self._inode(child).kind
                if kind == DIR and child.upper is None and self.profile.dir_copyup_on_lookup:
                    self._fire("union.lookup.dir-copyup")
                    self._copy_up(child)
                if kind == SYMLINK and (follow or not last):
                    links += 1
                    if LINK_LIMIT.over(links):
                        raise ModelError(E.ELOOP, LINK_LIMIT.rule)
                    target = self._inode(child).target
                    todo.extendleft(reversed([c for c in target.split("/") if c] or ["."]))
                    if target.startswith("/"):
                        cur = self._root()
                    continue
                if last:
                    return cur, comp, child
                if kind != DIR:
                    raise ModelError(E.ENOTDIR, "union.path.enotdir")
                cur = child
            return None, ".", cur
        finally:
            self._edge(LINK_LIMIT, links)  # the lookup's total, not each count on the way

    def _existing(self, path: str, follow: bool) -> Found:
        _, _, found = self._resolve(path, follow)
        if found is None:
            raise ModelError(E.ENOENT, "union.path.enoent")
        return found

    def _inode(self, found: Found) -> Inode:
        """The inode whose attributes and data the union shows for `found`."""
        layer, ino = found.stack[0]
        if layer != 0 and ino in self.index:
            return self.store[self.index[ino]]
        return self.store[ino]

    def _lower_of(self, found: Found) -> int | None:
        """The lower inode behind a non-directory: its own, or the origin of its copy-up."""
        layer, ino = found.stack[0]
        return self.store[ino].origin if layer == 0 else ino

    def _names(self, found: Found) -> list[str]:
        """The merged listing of a directory (union.readdir.merge)."""
        candidates: set[str] = set()
        for _, ino in (*found.stack, *found.below):
            candidates.update(self.store[ino].entries)
        return sorted(n for n in candidates if self._lookup_child(found, n) is not None)

    def _lower_positive(self, parent: Found, name: str) -> bool:
        """Whether a name exists in the layers below the upper one (so removing it needs a whiteout)."""
        lower_only = Found(parent.path, parent.parent, [(layer, ino) for layer, ino in parent.stack if layer],
                           [(layer, ino) for layer, ino in parent.below if layer])
        return bool(lower_only.stack) and self._lookup_child(lower_only, name) is not None

    # ---- identity and attributes -----------------------------------------------------------------

    def _identity(self, found: Found) -> int:
        node = self._inode(found)
        if not self.profile.ino_from_origin:
            self._fire("union.ino.topmost")
            return node.ino
        if node.kind == DIR:
            lowers = [ino for layer, ino in found.stack if layer]
            if lowers and found.upper is not None:
                self._fire("union.ino.origin")
            return lowers[0] if lowers else found.stack[0][1]
        upper = found.upper
        if upper is None:
            return found.stack[0][1]
        origin = self.store[upper].origin
        if origin is not None and (origin in self.index or self.store.nlink(self.store[origin]) == 1):
            self._fire("union.ino.origin")
            return origin
        return upper

    def _key(self, found: Found) -> tuple:
        """How overlayfs finds the in-memory inode of a name (ovl_hash_bylower)."""
        lower, upper = self._lower_of(found), found.upper
        if lower is not None and (self.profile.index or self.store.nlink(self.store[lower]) == 1):
            return ("lower", lower)
        if upper is not None:
            return ("upper", upper)
        return ("dentry", found.path)

    def _ovl_inode(self, found: Found) -> OvlInode:
        key = self._key(found)
        if key not in self.ovl:
            self.ovl[key] = OvlInode(found.upper, self._lower_of(found))
        return self.ovl[key]

    def _nlink(self, found: Found) -> int:
        node = self._inode(found)
        if node.kind == DIR:
            rule = self.profile.dir_nlink
            if rule == "one" or (rule == "merged-one" and found.merged):
                self._fire("union.nlink.merged-dir" if rule == "merged-one" else "union.nlink.dir-one")
                return 1
            if rule == "subdirs":
                self._fire("union.nlink.dir-subdirs")
                return 2 + sum(1 for n in self._names(found) if self._inode(self._lookup_child(found, n)).kind == DIR)
            return self.store.nlink(node)
        lower = self._lower_of(found)
        if lower is not None and lower in self.index:
            self._fire("union.hardlink.index")
            return self.index_nlink[lower]
        if lower is not None and self.store.nlink(self.store[lower]) > 1:
            self._fire("union.hardlink.broken")
        return self.store.nlink(node)

    def _walk(self, top: Found) -> Iterable[Found]:
        for name in self._names(top):
            child = self._lookup_child(top, name)
            yield child
            if self._inode(child).kind == DIR:
                yield from self._walk(child)

    def _entry(self, found: Found) -> Entry:
        node = self._inode(found)
        shown = entry(node, self._nlink(found), self._identity(found))
        return shown if self.profile.user_xattrs else replace(shown, xattrs=())

    # ---- copy-up ---------------------------------------------------------------------------------

    def _copy_up(self, found: Found) -> Inode:
        """Give `found` an upper copy (and its parents first); returns the upper inode."""
        if found.upper is not None:
            return self.store[found.upper]
        if found.parent.upper is None:
            self._fire("union.copyup.parents")
        up_parent = self._copy_up(found.parent)
        name = found.path[-1]
        lower_ino = found.stack[0][1]
        src = self.store[lower_ino]
        done = up_parent.entries.get(name)
        if done is not None and self.store[done].kind not in (WHITEOUT, FALLTHRU):
            # copied up already, through another view of the same name
            found.stack = [(0, done), *found.stack] if src.kind == DIR else [(0, done)]
            return self.store[done]
        if src.kind == DIR:
            self._fire("union.copyup.dir")
            copy = self._copy_of(src)
        else:
            self._fire("union.copyup.file")
            ovl = self._ovl_inode(found)
            if lower_ino in self.index:
                copy = self.store[self.index[lower_ino]]
            else:
                copy = self._copy_of(src)
                if self.profile.index and self.store.nlink(src) > 1:
                    self._fire("union.hardlink.index")
                    self.index[lower_ino] = copy.ino
                    self.index_nlink[lower_ino] = self.store.nlink(src)
                    copy.links += 1
        if name in up_parent.entries:  # a fallthru
            self.store.unlink(up_parent, name)
        self.store.link(up_parent, name, copy)
        found.stack = [(0, copy.ino), *found.stack] if src.kind == DIR else [(0, copy.ino)]
        if src.kind != DIR:
            ovl.upper = copy.ino
            self.ovl[self._key(found)] = ovl
        return copy

    def _copy_of(self, src: Inode) -> Inode:
        return self.store.new(src.kind, mode=src.mode, uid=src.uid, gid=src.gid, data=src.data,
                              target=src.target, xattrs=dict(src.shown_xattrs()), origin=src.ino)

    # ---- creation and removal helpers ------------------------------------------------------------

    def _free_name(self, path: str) -> tuple[Found, str]:
        """Resolve `path` for creating its last component: EEXIST if it exists."""
        parent, name, found = self._resolve(path, follow=False)
        if found is not None:
            raise ModelError(E.EEXIST, "union.link.exists")
        return parent, name

    def _create_parent(self, path: str) -> tuple[Found, str]:
        """A free name in a directory the caller may write to."""
        parent, name = self._free_name(path)
        self._need(self._inode(parent), W | X)
        return parent, name

    def _add(self, parent: Found, name: str, inode: Inode) -> None:
        """Enter a new inode under `name` on the upper layer, replacing a whiteout or fallthru."""
        up = self._copy_up(parent)
        self._fire("union.create.topmost")
        if name in up.entries:
            self._fire("union.create.over-whiteout")
            was_whiteout = self.store[up.entries[name]].kind == WHITEOUT
            self.store.unlink(up, name)
            if inode.kind == DIR and was_whiteout:
                self._fire("union.mkdir.opaque")
                inode.xattrs[OPAQUE] = b"y"
        elif inode.kind == DIR and (self.profile.opaque_new_dirs
                                    or (parent.merged and not self.profile.offline_changes)):
            self._fire("union.mkdir.opaque-in-merged")
            inode.xattrs[OPAQUE] = b"y"
        self.store.link(up, name, inode)

    def _remove(self, parent: Found, name: str, found: Found, rule: str) -> None:
        """Remove a name: drop its upper entry and leave a whiteout if it exists below."""
        up = self._copy_up(parent)
        positive = self._lower_positive(parent, name)
        if name in up.entries:
            self.store.unlink(up, name)
        if positive:
            self._fire(rule)
            self.store.link(up, name, self.store.new(WHITEOUT, mode=0))
        else:
            self._fire("union.unlink.upper-only")

    def _new_inode(self, parent: Found, kind: str, mode: int, **attrs) -> Inode:
        """A new inode owned by the caller; in a setgid directory it takes the directory's group, and a new
        directory its setgid bit too (mkdir keeps neither set-id bit it was asked for)."""
        d = self._inode(parent)
        default = d.xattrs.get(acl.DEFAULT) if kind != SYMLINK else None
        acls = {}
        if default is None:
            mode &= ~self.umask
        else:
            self._fire("union.acl.inherit")
            mode, access = acl.create(default, mode)
            acls = {acl.ACCESS: access} if access is not None else {}
            if kind == DIR:
                acls[acl.DEFAULT] = default
        mode &= 0o1777 if kind == DIR else 0o7777
        gid = self.cred.gid
        if d.mode & S_ISGID:
            self._fire("union.mode.setgid-dir")
            gid = d.gid
            mode |= S_ISGID if kind == DIR else 0
        return self.store.new(kind, mode=mode, uid=self.cred.uid, gid=gid, xattrs=acls, **attrs)

    # ---- operations: metadata --------------------------------------------------------------------

    @operation
    def stat(self, path: str) -> Entry:
        return self._entry(self._existing(path, follow=True))

    @operation
    def lstat(self, path: str) -> Entry:
        return self._entry(self._existing(path, follow=False))

    @operation
    def readlink(self, path: str) -> str:
        node = self._inode(self._existing(path, follow=False))
        if node.kind != SYMLINK:
            raise ModelError(E.EINVAL, "union.readlink.notlink")
        return node.target

    @operation
    def readdir(self, path: str) -> tuple[str, ...]:
        found = self._existing(path, follow=True)
        node = self._inode(found)
        if node.kind != DIR:
            raise ModelError(E.ENOTDIR, "union.path.enotdir")
        self._need(node, R)
        self._fire("union.readdir.merge")
        names = self._names(found)
        if self.profile.readdir_fallthrus and (found.merged or found.below):
            self._fire("union.readdir.fallthru")
            up = self._copy_up(found)
            for name in names:
                if name not in up.entries:
                    self.store.link(up, name, self.store.new(FALLTHRU, mode=0))
            up.xattrs[OPAQUE] = b"y"
        return tuple(names)

    def _setattr(self, where: Found | OpenFile, apply: Callable[[Inode], None], check: Callable[[Inode], None]
                 ) -> None:
        """A change of attributes, checked on the inode shown and made on its copy-up (`where` is its name), or
        on the inode itself where it has no name left (`where` is an open file of it: `_nameless`)."""
        check(self._shown(where))
        self._asked(where)
        apply(self._lands(where, self._metadata_copy_up))

    def _shown(self, where: Found | OpenFile) -> Inode:
        return self._inode(where) if isinstance(where, Found) else self._fd_inode(where)

    def _lands(self, where: Found | OpenFile, copy_up: Callable[[Found], Inode]) -> Inode:
        """The inode a change lands on: the copy-up of the name it is made through, or, where the inode has no
        name left, the inode itself (`_nameless`)."""
        return copy_up(where) if isinstance(where, Found) else self._nameless(where)

    def _metadata_copy_up(self, found: Found) -> Inode:
        self._fire("union.copyup.metadata")
        return self._copy_up(found)

    def _chmod(self, mode: int) -> Callable[[Inode], None]:
        def apply(node: Inode) -> None:
            node.mode = mode & 0o7777
            if node.mode & S_ISGID and not self._in_group(node):
                self._fire("union.mode.chmod-setgid")
                node.mode &= ~S_ISGID
            if acl.ACCESS in node.xattrs:
                self._fire("union.acl.chmod")
                node.xattrs[acl.ACCESS] = acl.chmod(node.xattrs[acl.ACCESS], node.mode)

        return apply

    def _chown(self, where: Found | OpenFile, uid: int, gid: int) -> None:
        def check(node: Inode) -> None:
            c = self.cred
            if c.uid != 0 and (uid not in (-1, node.uid) or c.uid != node.uid
                               or gid not in (-1, node.gid, c.gid, *c.groups)):
                raise ModelError(E.EPERM, "union.perm.owner")

        def apply(node: Inode) -> None:
            if node.kind != DIR:  # chown_common: ATTR_KILL_SUID, and setgid where it would be kept no further
                self._drop_setid(node)
            node.uid = node.uid if uid == -1 else uid
            node.gid = node.gid if gid == -1 else gid

        self._setattr(where, apply, check)

    @operation
    def chmod(self, path: str, mode: int) -> None:
        self._setattr(self._existing(path, follow=True), self._chmod(mode), self._own)

    @operation
    def chown(self, path: str, uid: int, gid: int) -> None:
        self._chown(self._existing(path, follow=True), uid, gid)

    @operation
    def utimens(self, path: str, times: tuple[int, int]) -> None:
        self._setattr(self._existing(path, follow=True), lambda node: None, self._own)

    @operation
    def truncate(self, path: str, length: int) -> None:
        found = self._existing(path, follow=True)
        node = self._inode(found)
        if node.kind == DIR:
            raise ModelError(E.EISDIR, "union.open.flags")
        self._need(node, W)
        self._fire("union.copyup.open-write")
        up = self._copy_up(found)
        self._kill_setid(up)
        up.data = up.data[:length].ljust(length, b"\0")

    # ---- operations: xattrs ----------------------------------------------------------------------

    def _unsupported(self) -> None:
        if not self.profile.user_xattrs:
            raise ModelError(E.EOPNOTSUPP, "union.xattr.unsupported")

    def _xattr_check(self, node: Inode, want: int, name: str) -> None:
        if not name.startswith("user."):
            raise ModelError(E.EOPNOTSUPP, "union.xattr.user")
        if node.kind not in (FILE, DIR):
            raise ModelError(E.EPERM if want == W else E.ENODATA, "union.xattr.user")
        if want == W and node.kind == DIR and node.mode & S_ISVTX and self.cred.uid not in (0, node.uid):
            raise ModelError(E.EPERM, "union.xattr.user")
        self._need(node, want)

    def _has_upper(self, found: Found) -> bool:
        """The name's inode has an upper copy: its own, or for a lower name of an indexed inode the index's."""
        return found.upper is not None or self._lower_of(found) in self.index

    def _xattr_copy_up(self, found: Found) -> Inode:
        """Where an xattr change lands: the copy-up, or for a lower name of an indexed inode the index inode
        itself (overlayfs links no upper alias for it, unlike for chmod or a write)."""
        self._fire("union.copyup.metadata")
        lower = self._lower_of(found)
        if found.upper is None and lower in self.index:
            self._fire("union.hardlink.index")
            return self.store[self.index[lower]]
        return self._copy_up(found)

    def _set_xattr(self, where: Found | OpenFile, name: str, value: bytes) -> None:
        self._xattr_check(self._shown(where), W, name)  # the VFS checks permission before the file system is asked
        self._asked(where)
        self._unsupported()
        self._lands(where, self._xattr_copy_up).xattrs[name] = value

    def _remove_xattr(self, where: Found | OpenFile, name: str) -> None:
        self._xattr_check(self._shown(where), W, name)
        self._asked(where)
        self._unsupported()
        if name not in self._shown(where).xattrs:
            raise ModelError(E.ENODATA, "union.xattr.user")
        del self._lands(where, self._xattr_copy_up).xattrs[name]

    @operation
    def setxattr(self, path: str, name: str, value: bytes) -> None:
        self._set_xattr(self._existing(path, follow=True), name, value)

    @operation
    def removexattr(self, path: str, name: str) -> None:
        self._remove_xattr(self._existing(path, follow=True), name)

    @operation
    def getxattr(self, path: str, name: str) -> bytes:
        found = self._existing(path, follow=True)
        self._xattr_check(self._inode(found), R, name)
        self._unsupported()
        value = self._inode(found).xattrs.get(name)
        if value is None:
            raise ModelError(E.ENODATA, "union.xattr.user")
        return value

    @operation
    def listxattr(self, path: str) -> tuple[str, ...]:
        found = self._existing(path, follow=True)
        self._unsupported()
        return tuple(name for name, _ in self._inode(found).user_xattrs())

    # ---- operations: POSIX ACLs ------------------------------------------------------------------

    @operation
    def setacl(self, path: str, kind: str, text: str) -> None:
        found = self._existing(path, follow=True)
        entries = acl.parse(acl.to_xattr(text))
        if entries is None:
            raise ModelError(E.EINVAL, "union.acl.set")
        self._change_acl(found, kind, entries)

    @operation
    def removeacl(self, path: str, kind: str) -> None:
        self._change_acl(self._existing(path, follow=True), kind, None)

    def _change_acl(self, found: Found, kind: str, entries: list[acl.AclEntry] | None) -> None:
        """Set (or with no `entries`, remove) an ACL, in the VFS's order of checks (set_posix_acl)."""
        node, name = self._inode(found), acl.KINDS[kind]
        self._fire("union.acl.set")
        if name == acl.DEFAULT and node.kind != DIR:
            if entries is None:
                return
            raise ModelError(E.EACCES, "union.acl.set")
        if self.cred.uid not in (0, node.uid):
            raise ModelError(E.EPERM, "union.acl.set")
        if entries is not None and not acl.valid(entries):
            raise ModelError(E.EINVAL, "union.acl.set")
        self._unsupported()
        if not self.profile.plain and not self._has_upper(found):  # overlayfs asks the lower layer first
            if self.store.roots[found.stack[0][0]] in self.acl_less:
                raise ModelError(E.EOPNOTSUPP, "union.acl.lower")
            if entries is None and name not in node.xattrs:
                raise ModelError(E.ENODATA, "union.acl.lower")
        up = self._xattr_copy_up(found)
        if entries is None:
            up.xattrs.pop(name, None)
            return
        if name == acl.ACCESS:
            up.mode = up.mode & ~0o777 | acl.mode_bits(entries)
            if up.mode & S_ISGID and not self._in_group(up):
                self._fire("union.mode.chmod-setgid")
                up.mode &= ~S_ISGID
            if acl.equivalent(entries):
                up.xattrs.pop(name, None)
                return
        up.xattrs[name] = acl.pack(entries)

    @operation
    def getacl(self, path: str, kind: str) -> str:
        found = self._existing(path, follow=True)
        value = self._inode(found).xattrs.get(acl.KINDS[kind])
        self._fire("union.acl.get")
        if not self.profile.user_xattrs:
            # the kernel's FUSE client takes a daemon's ENOSYS for no ACL, its EOPNOTSUPP as it is
            raise ModelError(E.ENODATA, "union.xattr.unsupported", also=(E.EOPNOTSUPP,))
        if value is None:
            raise ModelError(E.ENODATA, "union.acl.get")
        return acl.to_text(value)

    # ---- operations: namespace -------------------------------------------------------------------

    @operation
    def mkdir(self, path: str, mode: int) -> None:
        parent, name = self._create_parent(path)
        self._add(parent, name, self._new_inode(parent, DIR, mode))

    @operation
    def symlink(self, target: str, path: str) -> None:
        parent, name = self._create_parent(path)
        link = self._new_inode(parent, SYMLINK, 0o777, target=target)
        link.mode = 0o777  # a symlink's mode is always 0777, whatever the umask
        self._add(parent, name, link)

    @operation
    def link(self, old: str, new: str) -> None:
        src = self._existing(old, follow=False)
        node = self._inode(src)
        parent, name = self._free_name(new)
        c = self.cred
        if c.uid not in (0, node.uid) and (node.kind != FILE or not self._may(node, R | W)):
            raise ModelError(E.EPERM, "union.perm.hardlink")
        self._need(self._inode(parent), W | X)
        if node.kind == DIR:
            raise ModelError(E.EPERM, "union.link.dir")
        if src.upper is None:
            self._fire("union.copyup.link")
        self._add(parent, name, self._copy_up(src))
        self._count_link(src, +1)

    @operation
    def unlink(self, path: str) -> None:
        parent, name, found = self._resolve(path, follow=False)
        if found is None:
            raise ModelError(E.ENOENT, "union.path.enoent")
        self._need(self._inode(parent), W | X)
        self._sticky(parent, found)
        if self._inode(found).kind == DIR:
            raise ModelError(E.EISDIR, "union.unlink.dir")
        self._index_before_removal(found)
        self._remove(parent, name, found, "union.unlink.whiteout")
        self._count_link(found, -1)

    def _count_link(self, found: Found, delta: int) -> None:
        """Keep the union's link count of an indexed inode as names come and go (ovl_nlink_end)."""
        lower = self._lower_of(found)
        if lower in self.index_nlink:
            self.index_nlink[lower] += delta

    def _index_before_removal(self, found: Found) -> None:
        """overlayfs ovl_nlink_start: with index=on a lower hard link is copied up (indexed) before it is
        whited out or renamed over, so the union's link count can be kept. With a link count of its own (ovlfs), or on
        a plain file system (whose files the model holds below), any lower file is: an open file then counts the names
        left, 0 for the last."""
        lower = self._lower_of(found)
        if found.upper is None and lower is not None:
            if self.profile.index and self.store.nlink(self.store[lower]) > 1:
                self._copy_up(found)
            elif self.profile.own_nlink or self.profile.plain:  # a plain file system's count is the file's own
                if self.profile.own_nlink:
                    self._fire("union.nlink.own")
                self._copy_up(found)

    @operation
    def rmdir(self, path: str) -> None:
        parent, name, found = self._resolve(path, follow=False)
        if found is None:
            raise ModelError(E.ENOENT, "union.path.enoent")
        if name == ".":
            raise ModelError(E.EINVAL, "union.rmdir.dot")
        self._need(self._inode(parent), W | X)
        self._sticky(parent, found)
        if self._inode(found).kind != DIR:
            raise ModelError(E.ENOTDIR, "union.path.enotdir")
        if self._names(found):
            raise ModelError(E.ENOTEMPTY, "union.rmdir.notempty")
        self._removing(found, lambda: self._remove(parent, name, found, "union.rmdir.whiteout"))

    def _removing(self, found: Found | None, remove: Callable[[], None]) -> None:
        """Remove the directory `found` (None: no directory) by `remove` (rmdir, or a rename over it); its open
        files show from then on what it showed as it went."""
        held = [f for f in self.fds.values() if f.is_dir and f.path == found.path] if found is not None else []
        gone = self._removed_dir(found) if held else None
        remove()
        for f in held:
            f.removed = gone
            f.ovl = OvlInode(found.upper, None)  # the directory a change through it lands on (`_nameless`)

    def _removed_dir(self, found: Found) -> Entry:
        """What an open directory shows once removed (union.fstat.removed-dir): on a plain file system nlink 0; on
        overlayfs a merged directory 1, an upper one 0 (it is gone), a lower one its own count; by the profile's
        rule where it counts otherwise."""
        rule = self.profile.dir_nlink
        if self.profile.plain or (rule == "merged-one" and not found.merged and found.upper is not None):
            nlink = 0
        elif rule == "merged-one" and not found.merged:
            nlink = self.store.nlink(self._inode(found))
        else:
            nlink = self._nlink(found)
        return entry(self._inode(found), nlink, self._identity(found))

    def _parents_first(self, *paths: str) -> None:
        """renameat2 walks to both parents (searching each) before it looks up either last component."""
        for path in paths:
            parent = path.rstrip("/").rpartition("/")[0]
            found = self._existing(parent, follow=True) if parent else self._root()
            if self._inode(found).kind != DIR:
                raise ModelError(E.ENOTDIR, "union.path.enotdir")
            self._need(self._inode(found), X, "union.path.search")

    @operation
    def rename(self, old: str, new: str, noreplace: bool = False) -> None:
        self._parents_first(old, new)
        op, oname, src = self._resolve(old, follow=False)
        if src is None:
            raise ModelError(E.ENOENT, "union.path.enoent")
        np_, nname, dst = self._resolve(new, follow=False)
        if oname == "." or nname == ".":
            raise ModelError(E.EBUSY, "union.rename.subtree")
        if noreplace and dst is not None:
            raise ModelError(E.EEXIST, "union.rename.noreplace")
        is_dir = self._inode(src).kind == DIR
        if is_dir and np_.path[: len(src.path)] == src.path:
            raise ModelError(E.EINVAL, "union.rename.subtree")
        if dst is not None and op.path[: len(dst.path)] == dst.path:
            raise ModelError(E.ENOTEMPTY, "union.rename.subtree")
        same_inode = dst is not None and self._key(src) == self._key(dst)
        if dst is not None and (src.path == dst.path or (same_inode and not self._inode_per_name(src, dst))):
            self._fire("union.rename.same-inode")
            return
        self._need(self._inode(op), W | X)
        self._sticky(op, src)
        self._need(self._inode(np_), W | X)
        if dst is not None:
            self._sticky(np_, dst)
        if same_inode:
            self._fire("union.rename.same-inode-path-api")
            return
        if dst is not None:
            dst_dir = self._inode(dst).kind == DIR
            if is_dir and not dst_dir:
                raise ModelError(E.ENOTDIR, "union.rename.types")
            if not is_dir and dst_dir:
                raise ModelError(E.EISDIR, "union.rename.types")
        if is_dir and op.path != np_.path:
            self._need(self._inode(src), W)
        movable = not is_dir or (src.upper is not None and not src.merged)
        if not movable and not self.profile.redirect_dir:
            raise ModelError(E.EXDEV, "union.rename.dir-exdev")
        not_empty = dst is not None and is_dir and bool(self._names(dst))
        if not_empty and (dst.upper is None or dst.merged):
            raise ModelError(E.ENOTEMPTY, "union.rename.types", also=(E.EEXIST,))
        self._removing(dst if is_dir else None, lambda: self._move(op, oname, src, np_, nname, dst, is_dir, not_empty))
        moved = (*np_.path, nname)
        for f in self.fds.values():  # an open file, or one under an open directory, goes with its name
            if f.path[: len(src.path)] == src.path:
                f.path = moved + f.path[len(src.path):]
        for h in self.handles:  # and so does the inode a handle holds by its name
            if h.path is not None and h.path[: len(src.path)] == src.path:
                h.path = moved + h.path[len(src.path):]

    def _inode_per_name(self, *names: Found) -> bool:
        """Whether the kernel holds these names of one file as inodes of their own: served by path, or on a FUSE
        mount a lower name of a hard link, which with index=on must copy up that name and without it is an
        overlayfs inode of its own (`_key`)."""
        if self.profile.path_api:
            return True
        return self.fuse and any(
            n.upper is None and (lower := self._lower_of(n)) is not None and self.store.nlink(self.store[lower]) > 1
            for n in names)

    def _move(self, op: Found, oname: str, src: Found, np_: Found, nname: str, dst: Found | None,
              is_dir: bool, not_empty: bool) -> None:
        """overlayfs ovl_rename: copy-ups, then the source's redirect or opaque mark, then the rename on the upper
        layer, which is where a non-empty upper-only target fails (after the marks: they stay)."""
        if dst is not None:
            self._index_before_removal(dst)
            self._count_link(dst, -1)
        self._index_before_removal(src)
        redirect = None
        if is_dir and (src.upper is None or src.merged):
            self._fire("union.rename.dir-redirect")
            redirect = self._redirect_for(src, op, np_)
        elif is_dir:
            self._fire("union.rename.upper-dir")
        else:
            self._fire("union.rename.file")
        up_src = self._copy_up(src)
        up_old = self._copy_up(op)
        up_new = self._copy_up(np_)
        source_positive = self._lower_positive(op, oname)
        if redirect is not None:
            up_src.xattrs[REDIRECT] = redirect.encode()
        elif is_dir and not up_src.opaque and np_.merged:
            self._fire("union.rename.opaque-into-merged")
            up_src.xattrs[OPAQUE] = b"y"
        if not_empty:
            raise ModelError(E.ENOTEMPTY, "union.rename.types", also=(E.EEXIST,))
        self.store.unlink(up_old, oname)
        if nname in up_new.entries:
            self.store.unlink(up_new, nname)
        self.store.link(up_new, nname, up_src)
        if source_positive:
            self._fire("union.unlink.whiteout")
            self.store.link(up_old, oname, self.store.new(WHITEOUT, mode=0))

    def _redirect_for(self, src: Found, op: Found, np_: Found) -> str:
        """overlayfs ovl_get_redirect: the name in the same directory, else the absolute lower path."""
        current = self.store[src.upper].redirect if src.upper is not None else None
        if op.path == np_.path and (current is None or not current.startswith("/")):
            return current or src.path[-1]
        if current is not None and current.startswith("/"):
            return current
        parent_redirect = self._absolute_lower_path(op)
        return "/" + "/".join((*parent_redirect, current or src.path[-1]))

    def _absolute_lower_path(self, found: Found) -> tuple[str, ...]:
        """Where a directory's lower layers are, following its ancestors' redirects."""
        if found.parent is None:
            return ()
        upper = found.upper
        redirect = self.store[upper].redirect if upper is not None else None
        if redirect is not None and redirect.startswith("/"):
            return tuple(c for c in redirect.split("/") if c)
        return (*self._absolute_lower_path(found.parent), redirect or found.path[-1])

    # ---- operations: open files ------------------------------------------------------------------

    @operation
    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        if flags & O_TMPFILE_BIT:
            return self._open_tmpfile(path, flags, mode)
        create, excl = bool(flags & O_CREAT), bool(flags & O_EXCL) and bool(flags & O_CREAT)
        follow = not (flags & O_NOFOLLOW) and not excl
        parent, name, found = self._resolve(path, follow)
        created = False
        if found is None:
            if not create:
                raise ModelError(E.ENOENT, "union.path.enoent")
            self._need(self._inode(parent), W | X)
            self._add(parent, name, self._new_inode(parent, FILE, mode))
            found = self._lookup_child(parent, name)
            created = True
        else:
            if excl:
                raise ModelError(E.EEXIST, "union.open.flags")
            if create and self._inode(found).kind == DIR:
                raise ModelError(E.EISDIR, "union.open.flags")
            self._open_existing(found, flags)
        return self._fd_of(found, flags & ~(O_CREAT | O_EXCL | O_TRUNC) if created else flags)

    def _open_existing(self, found: Found, flags: int) -> None:
        """What opening an existing name checks, and the copy-up (and truncation) a write-open makes."""
        node = self._inode(found)
        acc = flags & O_ACCMODE
        if flags & O_DIRECTORY and node.kind != DIR:
            raise ModelError(E.ENOTDIR, "union.open.flags")
        if node.kind == SYMLINK:
            raise ModelError(E.ELOOP, "union.path.eloop")
        writing = acc != O_RDONLY or bool(flags & O_TRUNC)
        if node.kind == DIR and writing:
            raise ModelError(E.EISDIR, "union.open.flags")
        want = (R if acc != O_WRONLY else 0) | (W if writing else 0)
        self._need(node, want)
        if writing and node.kind == FILE:
            self._fire("union.copyup.open-write")
            up = self._copy_up(found)
            if flags & O_TRUNC:
                self._kill_setid(up)
                up.data = b""

    def _fd_of(self, found: Found, flags: int) -> int:
        node = self._inode(found)
        is_dir = node.kind == DIR
        ovl = OvlInode(found.upper, None) if is_dir else self._ovl_inode(found)
        return self._new_fd(OpenFile(ovl, node.ino, flags, found.path, is_dir,
                                     dir_ino=self._identity(found) if is_dir else None))

    def _open_tmpfile(self, path: str, flags: int, mode: int) -> int:
        """O_TMPFILE: a new regular file with no name in the directory `path`, open for writing."""
        if flags & O_CREAT or flags & O_ACCMODE == O_RDONLY:
            raise ModelError(E.EINVAL, "union.open.tmpfile")
        found = self._existing(path, follow=not flags & O_NOFOLLOW)
        if self._inode(found).kind != DIR:
            raise ModelError(E.ENOTDIR, "union.open.tmpfile")
        self._need(self._inode(found), W | X)
        if not self.tmpfile:
            raise ModelError(E.EOPNOTSUPP, "union.open.tmpfile-unsupported")
        self._fire("union.open.tmpfile")
        self._copy_up(found)  # overlayfs makes it in the upper directory
        node = self._new_inode(found, FILE, mode)
        return self._new_fd(OpenFile(OvlInode(node.ino, None), node.ino, flags & ~O_EXCL, found.path, False,
                                     linkable=not flags & O_EXCL))

    def _new_fd(self, f: OpenFile) -> int:
        fd = self._next_fd
        self._next_fd += 1
        self.fds[fd] = f
        return fd

    def _fd(self, fd: int) -> OpenFile:
        try:
            return self.fds[fd]
        except KeyError:
            raise ModelError(E.EBADF, "union.fd.mode") from None

    def _fd_inode(self, f: OpenFile) -> Inode:
        if not self.profile.fd_follows_copyup:
            if f.ovl.upper is not None and f.ovl.upper != f.real:
                self._fire("union.fd.stale")
            return self.store[f.real]
        if f.ovl.upper is not None:
            if f.ovl.upper != f.real:
                self._fire("union.fd.follows-copyup")
            return self.store[f.ovl.upper]
        lower = f.ovl.lower if f.ovl.lower is not None else f.real
        return self.store[self.index.get(lower, lower)]

    @operation
    def read(self, fd: int, size: int) -> bytes:
        f = self._fd(fd)
        if f.flags & O_ACCMODE == O_WRONLY:
            raise ModelError(E.EBADF, "union.fd.mode")
        if f.is_dir:
            raise ModelError(E.EISDIR, "union.fd.mode")
        data = self._fd_inode(f).data[f.offset : f.offset + size]
        f.offset += len(data)
        return data

    @operation
    def write(self, fd: int, data: bytes) -> int:
        f = self._fd(fd)
        if f.flags & O_ACCMODE == O_RDONLY:
            raise ModelError(E.EBADF, "union.fd.mode")
        node = self._fd_inode(f)
        if f.flags & O_APPEND:
            f.offset = len(node.data)
        if data:
            self._kill_setid(node)
        node.data = node.data[: f.offset].ljust(f.offset, b"\0") + data + node.data[f.offset + len(data) :]
        f.offset += len(data)
        return len(data)

    @operation
    def dup(self, fd: int) -> int:
        """A second descriptor of the same open file: the two share one offset, and one's close leaves the other."""
        return self._new_fd(self._fd(fd))

    @operation
    def flink(self, fd: int, path: str) -> None:
        """linkat of an open file: a new name for the file the fd refers to, checked as link() checks one."""
        f = self._fd(fd)
        parent, name = self._free_name(path)
        node = self._fd_inode(f)
        c = self.cred
        if c.uid not in (0, node.uid) and (node.kind != FILE or not self._may(node, R | W)):
            raise ModelError(E.EPERM, "union.perm.hardlink")
        self._need(self._inode(parent), W | X)
        if f.is_dir:
            raise ModelError(E.EPERM, "union.link.dir")
        self._fire("union.link.fd")
        named = self._name_of(f)
        if named is not None:  # a lower file is copied up through the name it is shown by
            if named.upper is None:
                self._fire("union.copyup.link")
            self._add(parent, name, self._copy_up(named))
            self._count_link(named, +1)
            return
        up = None if f.ovl.upper is None else self.store[f.ovl.upper]
        if self.profile.path_api:
            raise ModelError(E.ENOENT, "union.fd.path-api")
        if up is None or (self._fd_nlink(f) == 0 and not f.linkable):
            raise ModelError(E.ENOENT, "union.link.fd")
        if f.linkable:
            self._fire("union.open.tmpfile")
            f.linkable = False
        self._add(parent, name, up)
        if f.ovl.lower in self.index_nlink:  # an indexed file whose name the fd came by was renamed away
            self.index_nlink[f.ovl.lower] += 1

    @contextmanager
    def _as_root(self) -> Iterator[None]:
        """Look as root: what an fd refers to is found by its own path, which needs no permission of its holder."""
        cred, self.cred = self.cred, ROOT
        try:
            yield
        finally:
            self.cred = cred

    def _fd_nlink(self, f: OpenFile) -> int:
        """The link count of the file an fd refers to: the union's, kept in the index, for an indexed lower hard
        link (the upper copy's own count has the index entry in it), else the file's."""
        if f.ovl.lower in self.index_nlink and self.profile.fd_follows_copyup:
            return self.index_nlink[f.ovl.lower]
        return self.store.nlink(self._fd_inode(f))

    def _name_of(self, f: OpenFile) -> Found | None:
        """The name an open file was opened by, if it still shows that file (an O_TMPFILE file has none)."""
        try:
            with self._as_root():  # the fd's own name, not a lookup by the caller
                _, _, found = self._resolve("/".join(f.path) or ".", follow=False)
        except ModelError:
            return None
        return found if found is not None and self.ovl.get(self._key(found)) is f.ovl else None

    @operation
    def lseek(self, fd: int, offset: int, whence: int) -> int:
        """A regular file's offset (a directory's positions are each file system's own: not asked)."""
        f = self._fd(fd)
        base = {SEEK_SET: 0, SEEK_CUR: f.offset, SEEK_END: len(self._fd_inode(f).data)}.get(whence)
        if base is None or base + offset < 0:
            raise ModelError(E.EINVAL, "union.fd.lseek")
        self._fire("union.fd.lseek")
        f.offset = base + offset
        return f.offset

    @operation
    def ftruncate(self, fd: int, length: int) -> None:
        f = self._fd(fd)
        if f.flags & O_ACCMODE == O_RDONLY or f.is_dir:
            raise ModelError(E.EINVAL, "union.fd.mode")
        node = self._fd_inode(f)
        self._kill_setid(node)
        node.data = node.data[:length].ljust(length, b"\0")

    @operation
    def fallocate(self, fd: int, mode: int, offset: int, length: int) -> None:
        if offset < 0 or length <= 0:
            raise ModelError(E.EINVAL, "union.fd.fallocate-args")
        kind = mode & ~KEEP_SIZE
        shifts = kind in (COLLAPSE, INSERT)
        if kind not in FALLOC_KINDS.values() or (kind == PUNCH and not mode & KEEP_SIZE) or (shifts and mode != kind):
            raise ModelError(E.EOPNOTSUPP, "union.fd.fallocate-args")
        f = self._fd(fd)
        if f.flags & O_ACCMODE == O_RDONLY:
            raise ModelError(E.EBADF, "union.fd.mode")
        if not any(FALLOC_KINDS[k] == kind for k in self.falloc.kinds):
            raise ModelError(E.EOPNOTSUPP, "union.fd.fallocate-unsupported")
        node = self._fd_inode(f)
        size, end = len(node.data), offset + length
        if shifts and (offset % self.falloc.block or length % self.falloc.block
                       or (end >= size if kind == COLLAPSE else offset >= size)):
            raise ModelError(E.EINVAL, "union.fd.fallocate-range")
        self._fire("union.fd.fallocate")
        self._kill_setid(node)
        data = node.data
        if kind == COLLAPSE:
            data = data[:offset] + data[end:]
        elif kind == INSERT:
            data = data[:offset] + bytes(length) + data[offset:]
        else:
            grown = data if mode & KEEP_SIZE or end <= size else data.ljust(end, b"\0")
            stop = min(end, len(grown))
            data = grown if kind == ALLOCATE else grown[:offset] + bytes(max(0, stop - offset)) + grown[stop:]
        node.data = data

    # ---- operations: changes through an open file -------------------------------------------------

    def _through(self, fd: int) -> Found | OpenFile:
        """What a change through an fd acts on (union.fd.change): the name it still has, found by its own path
        (the kernel walks nothing), else the open file itself, whose inode has no name left."""
        f = self._fd(fd)
        self._fire("union.fd.change")
        if not f.is_dir:
            return self._name_of(f) or f
        if f.removed is not None:
            return f
        with self._as_root():
            return self._existing("/".join(f.path) or ".", follow=False)

    def _asked(self, where: Found | OpenFile) -> None:
        """The file system is asked for a change: a daemon serving paths has none for a directory with no name left
        (the kernel asks by node id alone: union.fd.path-api)."""
        if isinstance(where, OpenFile) and where.is_dir and self.profile.path_api:
            raise ModelError(E.ESTALE, "union.fd.path-api")

    def _nameless(self, f: OpenFile) -> Inode:
        """union.fd.nameless: a change to an inode with no name left lands on it where it is an upper one (an
        unlinked or renamed-over file, a removed upper or merged directory, an indexed file's index inode) or on a
        plain file system; overlayfs copies a lower one up under the name it had, where its whiteout or another
        file now stands: EEXIST, ENOTDIR for a directory."""
        self._fire("union.fd.nameless")
        if f.ovl.upper is None and not self.profile.plain:
            raise ModelError(E.ENOTDIR if f.is_dir else E.EEXIST, "union.fd.nameless")
        return self._fd_inode(f)

    @operation
    def fchmod(self, fd: int, mode: int) -> None:
        self._setattr(self._through(fd), self._chmod(mode), self._own)

    @operation
    def fchown(self, fd: int, uid: int, gid: int) -> None:
        self._chown(self._through(fd), uid, gid)

    @operation
    def futimens(self, fd: int, times: tuple[int, int]) -> None:
        self._setattr(self._through(fd), lambda node: None, self._own)

    @operation
    def fsetxattr(self, fd: int, name: str, value: bytes) -> None:
        self._set_xattr(self._through(fd), name, value)

    @operation
    def fremovexattr(self, fd: int, name: str) -> None:
        self._remove_xattr(self._through(fd), name)

    @operation
    def fstat(self, fd: int) -> Entry:
        f = self._fd(fd)
        if f.removed is not None:
            if self.profile.path_api:  # the kernel sends no file handle with a directory's getattr
                raise ModelError(E.ESTALE, "union.fd.path-api")
            self._fire("union.fstat.removed-dir")
            # its inode as changed since through an fd (union.fd.nameless), with the count and number it had
            return replace(entry(self._fd_inode(f)), nlink=f.removed.nlink, ino=f.removed.ino)
        if f.is_dir:
            # an open directory is looked up again by its path (which needs no permission of the fd's holder)
            with self._as_root():
                return self._entry(self._existing("/".join(f.path) or ".", follow=False))
        node = self._fd_inode(f)
        shown = entry(node, self._fd_nlink(f), self._fd_identity(f))
        if self.profile.path_api and self._name_of(f) is None:
            self._fire("union.fd.path-api")
            return Either(shown, (replace(shown, nlink=0),))
        return shown

    def _fd_identity(self, f: OpenFile) -> int:
        """The st_ino of the non-directory an fd refers to."""
        node = self._fd_inode(f)
        # an origin counts only on the upper layer (as in `_identity`): a copy pushed down to a lower layer keeps
        # its origin xattr, which overlayfs no longer follows. The upper copy is the file's, or for a lower name of
        # an indexed group opened after a remount, the index's
        on_upper = node.ino in (f.ovl.upper, self.index.get(f.ovl.lower))
        if self.profile.ino_from_origin and on_upper and node.origin is not None and (
                node.origin in self.index or self.store.nlink(self.store[node.origin]) == 1):
            self._fire("union.ino.origin")
            return node.origin
        return node.ino

    @operation
    def close(self, fd: int) -> None:
        self._fd(fd)
        del self.fds[fd]

    # ---- file handles ----------------------------------------------------------------------------

    @operation
    def handle(self, path: str) -> int:
        """name_to_handle_at(path, 0): a handle of the inode `path` names, a last symlink not followed; the n-th
        handle a program makes is handle n."""
        found = self._existing(path, follow=False)
        if not (self.fuse or self.profile.handles):
            raise ModelError(E.EOPNOTSUPP, "union.handle.unsupported")
        self._fire("union.handle.make")
        by_name = found.path if found.path and self._inode_per_name(found) else None
        h = FileHandle(self._identity(found), self.mounts, not found.path, by_name)
        h.pins = {fd for fd, f in self.fds.items() if self._holds(f, h)}
        self.handles.append(h)
        return len(self.handles) - 1

    @operation
    def open_handle(self, handle: int, flags: int, dropped: bool = False) -> int:
        """open_by_handle_at: the inode a handle names, opened as open() opens an existing name of it (by root:
        nothing on the way to it is checked), or, once it has no name, through a file still open. `dropped`: the
        subject answered as a kernel that dropped the inode from memory would, taken where that may be."""
        if self.cred.uid != 0:
            raise ModelError(E.EPERM, "union.handle.perm")
        if not 0 <= handle < len(self.handles):
            raise ModelError(E.EBADF, "union.handle.slot")
        h = self.handles[handle]
        if h.mount != self.mounts and self.fuse and not h.root:
            raise ModelError(E.ESTALE, "union.handle.remount")
        if dropped and self.fuse and not h.root and not self._pinned(h):
            raise ModelError(E.ESTALE, "union.handle.evicted")
        with self._as_root():
            found = self._named_by(h)
            if found is not None:
                self._fire("union.handle.open")
                if self._inode(found).kind == SYMLINK:  # a handle's open has no name to check O_DIRECTORY against
                    raise ModelError(E.ELOOP, "union.path.eloop")
                self._open_existing(found, flags)
                return self._pin(h, self._fd_of(found, flags))
        held = self._holder(h)
        if held is None:
            raise ModelError(E.ESTALE, "union.handle.stale")
        self._fire("union.handle.open")
        if flags & O_DIRECTORY and not held.is_dir:
            raise ModelError(E.ENOTDIR, "union.open.flags")
        if held.is_dir and (flags & O_ACCMODE != O_RDONLY or flags & O_TRUNC):
            raise ModelError(E.EISDIR, "union.open.flags")
        if flags & O_TRUNC:
            node = self._fd_inode(held)
            self._kill_setid(node)
            node.data = b""
        return self._pin(h, self._new_fd(replace(held, flags=flags, offset=0, linkable=False)))

    def _holds(self, f: OpenFile, h: FileHandle) -> bool:
        """Whether an open file is of the inode a handle holds."""
        return f.path == h.path if h.path is not None else self._held_identity(f) == h.ino

    def _holder(self, h: FileHandle) -> OpenFile | None:
        return next((f for f in self.fds.values() if self._holds(f, h)), None)

    def _pinned(self, h: FileHandle) -> bool:
        """Whether a file open since the handle was made holds its inode: else the kernel may have dropped that
        inode at any time since, and an open file of the same file now may be of the inode it made again."""
        return any(self._holds(self.fds[fd], h) for fd in h.pins & self.fds.keys())

    @staticmethod
    def _pin(h: FileHandle, fd: int) -> int:
        """A handle's open is of the inode the kernel holds for it: the new fd keeps it in memory too."""
        h.pins.add(fd)
        return fd

    def _named_by(self, h: FileHandle) -> Found | None:
        """A name that shows the inode a handle holds: its own name if it holds one, else any."""
        fired = list(self._fired)  # a search of the whole union is not the call's own lookups
        try:
            if h.path is not None:
                try:
                    _, _, found = self._resolve("/".join(h.path), follow=False)
                except ModelError:
                    return None
                return found if found is not None and self._identity(found) == h.ino else None
            root = self._root()
            if h.root:
                return root
            return next((f for f in self._walk(root) if self._identity(f) == h.ino), None)
        finally:
            self._fired = fired

    def _held_identity(self, f: OpenFile) -> int:
        """The st_ino of what an open file refers to, also once its name is gone."""
        return f.dir_ino if f.is_dir else self._fd_identity(f)

    # ---- bench operations ------------------------------------------------------------------------

    @operation
    def remount(self) -> None:
        """Unmount (closing every file) and mount again on the same layers."""
        self._fire("union.bench.remount")
        self.mounts += 1
        self._renumber()
        self.fds.clear()
        self.ovl.clear()

    def _renumber(self) -> None:
        """union.ino.renumbered: with layers on several file systems, a mount numbers each layer's inodes on a
        device of its own, allocated anew for every mount."""
        if not self.one_fs:
            self._fire("union.ino.renumbered")

    @operation
    def push(self) -> None:
        """The upper layer becomes the topmost lower layer under a fresh, empty upper layer."""
        self._fire("union.bench.push")
        self.mounts += 1
        self._renumber()
        self.fds.clear()
        self.ovl.clear()
        for ino in self.index.values():
            self.store[ino].links -= 1
        self.index.clear()
        self.index_nlink.clear()
        self.store.roots.insert(0, self.store.new(DIR, mode=0o755).ino)

    # ---- whole-state views -----------------------------------------------------------------------

    def state(self) -> State:
        """The abstract state of the union as a user sees it (docs/design.md, "Abstract state")."""
        if "union" not in self._views:
            self._fired = []
            root = self._root()
            out: State = {".": self._entry(root)}
            for found in self._walk(root):
                out["/".join(found.path)] = self._entry(found)
            self._views["union"] = out
        return self._views["union"]

    def upper_state(self) -> State:
        """The expected upper layer on disk, in overlayfs's format."""
        if "upper" not in self._views:
            self._views["upper"] = self.store.snapshot(self.store.roots[0])
        return self._views["upper"]
