"""The union served through FUSE: libfuse's low-level API (our ctypes binding), one kernel inode per union inode.

The kernel knows a union inode by a node id of ours, from the reply that named it until it forgets it. We keep
what it holds: each node id's names (parent node id, name), lookups not yet forgotten and open handles, so a
request on a node id is a `Union` call on one of its current names. The names of one union inode (`Union.key`)
share a node id, as they share an overlayfs inode, with one exception: a request says which inode it is on, not
through which name, and a change through a lower name of an indexed hard-link group copies up that name. So each
such name keeps a node id of its own, and the node ids of one union inode are told of each other's changes.
With nfs_export a node id is the union inode's inode number where it can be, so that a file handle, which holds
the node id, names the same inode after a remount (`_by_handle`).

Caching: every change of the union goes through this mount, so the kernel may keep entries, negative entries,
attributes and file pages (keep_cache) as long as it likes (TIMEOUT), if it is told what it cannot see:
- a copy-up changes what the copied directories show (a merged directory has one link) though no name changed;
- a change through one node id of a union inode shows through its others.
Those node ids have their cached attributes dropped before the request is answered (a caller woken by the answer
must not see them). Pages are never dropped from here: the kernel may hold them locked for a read that only this
daemon can answer (with one worker, it would wait on itself). A file with several node ids has its pages dropped at
each open instead (no keep_cache), and when another node id's write changes its mtime or size (libfuse's default
auto_inval_data, on the attributes dropped at every write).

An open file whose last name is unlinked or renamed over keeps its node id; its attributes then come from an open
handle (nlink 0 for an upper file, the lower file's own count for a lower one), as overlayfs gives them.
"""

from __future__ import annotations

import ctypes
import errno as E
import itertools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps

from vfslab.impl import fuse_ll as ll
from vfslab.impl.union.disk import fallocate
from vfslab.impl.union.options import MountOptions
from vfslab.impl.union.union import UTIME_NOW, UTIME_OMIT, Attrs, Cred, Handle, Node, RemovedDir, Union, fail

#: seconds the kernel may keep entries and attributes without asking: what changes behind its back is dropped
TIMEOUT = 3600.0
#: with nfs_export, the node ids that are not inode numbers start here (no layer's inode number is this large)
SPARE = 1 << 63
#: setattr's bits (fuse_lowlevel.h FUSE_SET_ATTR_*)
SET_MODE, SET_UID, SET_GID, SET_SIZE, SET_ATIME, SET_MTIME, SET_ATIME_NOW, SET_MTIME_NOW = (
    1, 2, 4, 8, 16, 32, 128, 256)
Name = tuple[int, str]  # (parent node id, name)
Reply = Callable[[], None]


@dataclass
class Inode:
    """What the kernel holds of one node id."""

    #: the union inode it is (None: a directory, which has one name)
    key: tuple | None
    #: a lower name of an indexed hard-link group: it holds that one name, whose copy-up a change makes
    alone: bool = False
    names: set[Name] = field(default_factory=set)
    #: the names the kernel holds in this directory (forgetting it forgets them)
    children: set[Name] = field(default_factory=set)
    lookups: int = 0
    handles: set[int] = field(default_factory=set)
    #: with the node id, what a file handle of it holds
    generation: int = 0
    #: a directory removed while the kernel holds it (open, or a working directory): what it shows from then on
    removed: RemovedDir | None = None


@dataclass
class Listing:
    """An open directory: its entries as read at offset 0, which later offsets index."""

    node_id: int
    entries: list[tuple[str, int, int]] = field(default_factory=list)


def _serialised(method: Callable[..., Reply]) -> Callable[..., None]:
    """A request handled under the union's lock: the handler returns its reply, which is sent once the kernel
    has been told what the request copied up (also when the handler fails: a failed rename may have copied up)."""

    @wraps(method)
    def run(self: UnionOps, req: int, *args) -> None:
        with self.union.lock:
            try:
                reply = method(self, req, *args)
            finally:
                self._tell()
            reply()

    return run


def _caller(req: int) -> Cred:
    ctx = ll.caller(req)
    return Cred(ctx.uid, ctx.gid, ctx.umask)


class UnionOps(ll.Operations):
    #: POSIX ACLs checked by the kernel and kept by the layers, modes passed as asked, umask apart (`Cred`), the
    #: set-id bits a caller's change drops left to us (`_drop_set_id`), and symlink targets kept by the kernel: a
    #: symlink never changes its target, and a node id is never given to another inode
    want = ll.CAP_POSIX_ACL | ll.CAP_DONT_MASK | ll.CAP_HANDLE_KILLPRIV | ll.CAP_CACHE_SYMLINKS

    def __init__(self, union: Union) -> None:
        self.union = union
        #: nfs_export: a union inode's node id is its inode number where it can be, so that a file handle (which
        #: holds the node id) names it again after a remount
        self.stable = union.opts.nfs_export
        if self.stable:
            self.want = type(self).want | ll.CAP_EXPORT_SUPPORT
        # the generation of every node id this mount makes up: a file handle from an earlier mount, whose node id
        # may now be another inode's, is then stale (an identity, not a choice a check could replay)
        self.generation = int.from_bytes(os.urandom(4), "little") | 1
        self.inodes: dict[int, Inode] = {ll.ROOT: Inode(None, lookups=1)}
        self.entries: dict[Name, int] = {}
        #: the node ids of each union inode the kernel holds a name or an open file of (an inode that has
        #: neither may have its number reused by a new file)
        self.groups: dict[tuple, set[int]] = {}
        #: node ids a request changed (their groups are told before the reply), and whose attributes it changed
        self.touched: set[int] = set()
        self.stale: set[int] = set()
        self.files: dict[int, Handle] = {}
        self.dirs: dict[int, Listing] = {}
        self._node_ids = itertools.count(SPARE if self.stable else ll.ROOT + 1)
        self._handles = itertools.count(1)  # next() on it is atomic: file handles need no lock of their own

    # ---- what the kernel holds ---------------------------------------------------------------------

    def _path(self, node_id: int) -> str:
        """A current name of `node_id` as a path from the root; ENOENT if it has none left."""
        if node_id == ll.ROOT:
            return "/"
        inode = self.inodes.get(node_id)
        if inode is None or not inode.names:
            raise fail(E.ENOENT)
        return self._child(*min(inode.names))

    def _child(self, parent: int, name: str) -> str:
        head = self._path(parent)
        return head + name if head == "/" else f"{head}/{name}"

    def _name(self, node_id: int, where: Name) -> None:
        if self.entries.get(where, node_id) != node_id:
            self._unname(where)
        self.entries[where] = node_id
        self.inodes[where[0]].children.add(where)
        inode = self.inodes[node_id]
        inode.names.add(where)
        if inode.key is not None:
            self.groups.setdefault(inode.key, set()).add(node_id)

    def _unname(self, where: Name) -> None:
        node_id = self.entries.pop(where, None)
        if node_id is not None:
            self.inodes[node_id].names.discard(where)
            if (parent := self.inodes.get(where[0])) is not None:
                parent.children.discard(where)
            self._leave(node_id)

    def _leave(self, node_id: int) -> None:
        """Take a node id out of its group once it has neither a name nor an open file."""
        inode = self.inodes[node_id]
        if not inode.names and not inode.handles:
            self._ungroup(inode.key, node_id)

    def _ungroup(self, key: tuple | None, node_id: int) -> None:
        group = self.groups.get(key)
        if group is not None:
            group.discard(node_id)
            if not group:
                del self.groups[key]

    def _rekey(self, node_id: int, node: Node) -> bool:
        """A copy-up may change which union inode a name is (a lower hard link without an index becomes its
        upper copy, which links may share): whether it did."""
        inode = self.inodes[node_id]
        key = None if node.is_dir else self.union.key(node)
        if key == inode.key:
            return False
        self._ungroup(inode.key, node_id)
        inode.key = key
        if key is not None and (inode.names or inode.handles):
            self.groups.setdefault(key, set()).add(node_id)
        return True

    def _known(self, where: Name, node: Node) -> int:
        """The node id of `node`, named `where`: the one the kernel holds for that name, or one another name of
        the same union inode shares (unless this name must be alone), or a new one."""
        node_id = self.entries.get(where)
        if node_id is None:
            key = None if node.is_dir else self.union.key(node)
            alone = key is not None and node.stack[0].layer is not self.union.upper and self.union.indexed_links(node)
            shared = [] if key is None or alone else [n for n in self.groups.get(key, ()) if not self.inodes[n].alone
                                                        and self.inodes[n].names]
            if shared:
                node_id = min(shared)
            else:
                node_id, generation = self._new_node_id(node)
                self.inodes[node_id] = Inode(key, alone, generation=generation)
            self._name(node_id, where)
        return node_id

    def _new_node_id(self, node: Node) -> tuple[int, int]:
        """A node id and generation for a union inode the kernel is told of: with nfs_export its inode number and
        its real inode's tag, unless a node id the kernel holds has that number already (an unlinked file still
        open, a second name of an indexed hard link that must be alone); else the next of ours, with the
        mount's."""
        if self.stable:
            ino = self.union.ino(node)
            if ll.ROOT < ino < SPARE and ino not in self.inodes:
                return ino, self.union.generation(node)
        return next(self._node_ids), self.generation

    def _found(self, node_id: int) -> str:
        """The path of the union inode whose inode number is `node_id`, searched for from the root (a handle's
        node id after a remount); ENOENT, which the kernel answers as ESTALE, if the union shows none."""
        if node_id >= SPARE:  # one of ours, which no longer names anything
            raise fail(E.ENOENT)
        todo = ["/"]
        while todo:
            path = todo.pop(0)
            for name, mode, ino in self.union.entries(self.union.existing(path))[2:]:
                child = path + name if path == "/" else f"{path}/{name}"
                if ino == node_id and mode:
                    return child
                if stat.S_ISDIR(mode):
                    todo.append(child)
        raise fail(E.ENOENT)

    def _by_handle(self, req: int, node_id: int, name: str) -> Reply:
        """FUSE_CAP_EXPORT_SUPPORT: the kernel asks for `.` of a file handle's node id it no longer holds (the
        node itself) and for `..` of a directory's (its parent, to connect it to the root). Each name on the way
        is given its node id, as lookups would give them."""
        inode = self.inodes.get(node_id)
        path = self._path(node_id) if node_id == ll.ROOT or (inode is not None and inode.names) else \
            self._found(node_id)
        if name == "..":
            path = path.rpartition("/")[0] or "/"
        if path == "/":
            attr = self._stat(self.union.attrs(self.union.existing("/")))
            return lambda: ll.reply_entry(req, ll.ROOT, attr, TIMEOUT)
        names = path.split("/")[1:]
        parent_id = ll.ROOT
        for depth, part in enumerate(names[:-1], 1):
            parent_id = self._known((parent_id, part), self.union.existing("/" + "/".join(names[:depth])))
        return self._entry(req, parent_id, names[-1])

    def _siblings(self, node_id: int) -> list[int]:
        """The other node ids of `node_id`'s union inode. Safe without the lock (a write asks): the group is
        copied in one step, which no other thread can interleave with."""
        inode = self.inodes.get(node_id)
        group = tuple(self.groups.get(inode.key, ())) if inode is not None and inode.key is not None else ()
        return [n for n in group if n != node_id]

    def _looked_up(self, where: Name, node: Node, attrs: Attrs | None = None) -> tuple[int, ll.c_stat]:
        """A name the kernel is given, with its node id and attributes (`attrs` if they were just read): one more
        lookup for it to forget."""
        node_id = self._known(where, node)
        self.inodes[node_id].lookups += 1
        return node_id, self._stat(attrs or self.union.attrs(node))

    def _entry(self, req: int, parent: int, name: str) -> Reply:
        where = (parent, name)
        return self._reply_entry(req, *self._looked_up(where, self.union.existing(self._child(*where))))

    def _reply_entry(self, req: int, node_id: int, attr: ll.c_stat) -> Reply:
        generation = self.inodes[node_id].generation
        return lambda: ll.reply_entry(req, node_id, attr, TIMEOUT, generation)

    @staticmethod
    def _stat(a: Attrs) -> ll.c_stat:
        return ll.attr(a.st, a.ino, a.nlink)

    def _open_handle(self, node_id: int) -> Handle:
        inode = self.inodes.get(node_id)
        if inode is None or not inode.handles:
            raise fail(E.ENOENT)
        return self.files[min(inode.handles)]

    def _target(self, node_id: int) -> tuple[str | None, Handle | RemovedDir | None]:
        """What a request on an inode's attributes or xattrs acts on: a name while the inode has one (a change
        through it copies up where it must), else a directory removed while the kernel holds it, else an open
        handle of it."""
        inode = self.inodes.get(node_id)
        if node_id == ll.ROOT or (inode is not None and inode.names):
            return self._path(node_id), None
        if inode is not None and inode.removed is not None:
            return None, inode.removed
        return None, self._open_handle(node_id)

    def _of(self, node_id: int) -> str | Handle | RemovedDir:
        """`_target`, as the one thing the union's xattr calls take."""
        path, held = self._target(node_id)
        return held if path is None else path

    def _attrs(self, node_id: int) -> ll.c_stat:
        of = self._of(node_id)
        if isinstance(of, RemovedDir):
            return self._stat(of.attrs)
        return self._stat(self.union.attrs(self.union.existing(of)) if isinstance(of, str) else
                          self.union.handle_attrs(of))

    def _removed_dir(self, node_id: int) -> RemovedDir | None:
        """What a directory removed while the kernel holds it shows, asked of its node id (it has no name left)."""
        inode = self.inodes.get(node_id)
        return None if inode is None or inode.names else inode.removed

    def _keep_removed(self, where: Name, removed: RemovedDir | None) -> None:
        """The directory the kernel knows by `where` is removed: its node id shows what it showed then, until the
        kernel forgets it, and its open listings show no entries."""
        if removed is not None:
            node_id = self.entries[where]
            self.inodes[node_id].removed = removed
            for listing in self.dirs.values():
                if listing.node_id == node_id:
                    listing.entries = []

    def _removed(self, where: Name) -> None:
        """A name the union no longer has: the inode it named changed (its link count)."""
        if where in self.entries:
            self.touched.add(self.entries[where])
            self._unname(where)

    def _tell(self) -> None:
        """Before a reply: drop the kernel's attributes of every node id a copy-up changed, and of the other node
        ids of the union inodes the request changed."""
        if not (self.union.copied or self.touched or self.stale):
            return
        self._copied()
        stale, self.stale = self.stale, set()
        touched, self.touched = self.touched, set()
        for node_id in touched:
            stale.update(self._siblings(node_id))
        for node_id in stale:
            ll.notify_inval_attr(self.session, node_id)

    def _copied(self) -> None:
        """The node ids of what the union copied up: a directory shows another link count now (merged), a file
        another inode number if it became another union inode; a file that stays the same union inode shows what
        it showed (owner, mode, times and size are copied), and keeps its cached attributes."""
        copied, self.union.copied = self.union.copied, []
        for path in copied:
            node_id: int | None = ll.ROOT
            for name in path:
                node_id = self.entries.get((node_id, name))
                if node_id is None:
                    break
            if node_id is None:
                continue
            node = self.union.resolve("/" + "/".join(path))
            if node is None or node.is_dir or self._rekey(node_id, node):
                self.stale.add(node_id)
            self.touched.add(node_id)

    def _drop_set_id(self, req: int, node_id: int, path: str | None, h: Handle | None) -> None:
        """FUSE_CAP_HANDLE_KILLPRIV: the set-id bits a write, truncate or fallocate drops are ours to drop, by the
        VFS's rule, where the kernel's FUSE client would keep setgid for a writer outside the file's group
        (docs/facts.md, FUSE 10). Root keeps them (CAP_FSETID, as far as a request says who asks)."""
        ctx = ll.caller(req)
        if ctx.uid == 0:
            return
        if self.union.drop_set_id(path, h, lambda gid: gid == ctx.gid or gid in ll.groups(req)):
            for changed in (node_id, *self._siblings(node_id)):
                ll.notify_inval_attr(self.session, changed)

    def forget(self, req: int, node_id: int, nlookup: int) -> None:
        with self.union.lock:
            inode = self.inodes.get(node_id)
            if inode is not None and node_id != ll.ROOT:
                inode.lookups -= nlookup
                if inode.lookups <= 0:
                    for where in [*inode.names, *inode.children]:
                        self._unname(where)
                    self._ungroup(inode.key, node_id)
                    if inode.removed is not None:
                        os.close(inode.removed.held)  # a removed directory's inode number is free again
                    del self.inodes[node_id]
        ll.reply_none(req)

    # ---- names -------------------------------------------------------------------------------------

    @_serialised
    def lookup(self, req: int, parent: int, name: bytes) -> Reply:
        if self.stable and name in (b".", b".."):  # only a file handle's decoding asks these
            return self._by_handle(req, parent, os.fsdecode(name))
        where = (parent, os.fsdecode(name))
        found = self.union.lookup(self._child(*where))
        if found is None:
            self._unname(where)
            return lambda: ll.reply_entry(req, 0, ll.c_stat(), TIMEOUT)
        return self._reply_entry(req, *self._looked_up(where, *found))

    @_serialised
    def mkdir(self, req: int, parent: int, name: bytes, mode: int) -> Reply:
        name = os.fsdecode(name)
        self.union.mkdir(self._child(parent, name), mode, _caller(req))
        return self._entry(req, parent, name)

    @_serialised
    def mknod(self, req: int, parent: int, name: bytes, mode: int, rdev: int) -> Reply:
        name = os.fsdecode(name)
        self.union.mknod(self._child(parent, name), mode, rdev, _caller(req))
        return self._entry(req, parent, name)

    @_serialised
    def symlink(self, req: int, target: bytes, parent: int, name: bytes) -> Reply:
        name = os.fsdecode(name)
        self.union.symlink(self._child(parent, name), os.fsdecode(target), _caller(req))
        return self._entry(req, parent, name)

    @_serialised
    def link(self, req: int, node_id: int, parent: int, name: bytes) -> Reply:
        where = (parent, os.fsdecode(name))
        new = self._child(*where)
        path, h = self._target(node_id)
        if path is None:  # an O_TMPFILE file's first name
            self.union.link_open(h, new)
        else:
            self.union.link(path, new)
        node = self.union.existing(new)
        if self.inodes[node_id].alone:  # the new name is an upper one: it joins the inode's shared node id
            self.stale.add(node_id)  # whose link count the kernel will not take from the reply
            node_id = self._known(where, node)
        else:
            self._name(node_id, where)
        self.inodes[node_id].lookups += 1
        self.touched.add(node_id)
        return self._reply_entry(req, node_id, self._stat(self.union.attrs(node)))

    @_serialised
    def unlink(self, req: int, parent: int, name: bytes) -> Reply:
        where = (parent, os.fsdecode(name))
        self.union.unlink(self._child(*where))
        self._removed(where)
        return lambda: ll.reply_err(req, 0)

    @_serialised
    def rmdir(self, req: int, parent: int, name: bytes) -> Reply:
        where = (parent, os.fsdecode(name))
        self._keep_removed(where, self.union.rmdir(self._child(*where), keep=where in self.entries))
        self._removed(where)
        return lambda: ll.reply_err(req, 0)

    @_serialised
    def rename(self, req: int, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int) -> Reply:
        old, new = (parent, os.fsdecode(name)), (new_parent, os.fsdecode(new_name))
        # Two names of one union inode (two node ids: lower names of an indexed hard link): the rename does nothing,
        # and each node id keeps the name it had, so that what was opened through either name goes on changing
        # through it, as through overlayfs, where nothing moved. The kernel, told it succeeded, moves the source's
        # entry to the target's name: it is dropped once the rename is done, so that the name is looked up again.
        one = self.union.one_inode(self._child(*old), self._child(*new))
        self._keep_removed(new, self.union.rename(self._child(*old), self._child(*new), flags,
                                                  keep=new in self.entries))
        self._copied()  # while the copied names are where they were
        if one:
            def reply() -> None:
                ll.reply_err(req, 0)
                ll.notify_inval_entry(self.session, *new)

            return reply
        moved = self.entries.get(old)
        self._removed(new)
        self._unname(old)
        if moved is not None:
            self._name(moved, new)
            self.touched.add(moved)
        return lambda: ll.reply_err(req, 0)

    @_serialised
    def readlink(self, req: int, node_id: int) -> Reply:
        target = self.union.readlink(self._path(node_id))
        return lambda: ll.reply_readlink(req, target)

    # ---- attributes ------------------------------------------------------------------------------------

    @_serialised
    def getattr(self, req: int, node_id: int, fi) -> Reply:
        attr = self._attrs(node_id)
        return lambda: ll.reply_attr(req, attr, TIMEOUT)

    @_serialised
    def setattr(self, req: int, node_id: int, wanted, to_set: int, fi) -> Reply:
        """The parts of a setattr, in the order libfuse's high-level API makes them: mode, owner, size, times."""
        path, h = self._target(node_id)
        self.touched.add(node_id)
        s = wanted.contents
        if to_set & SET_MODE:
            self.union.chmod(path, s.st_mode, h)
        if to_set & (SET_UID | SET_GID):
            self.union.chown(path, s.st_uid if to_set & SET_UID else -1, s.st_gid if to_set & SET_GID else -1, h)
        if to_set & SET_SIZE:
            self.union.truncate(path, s.st_size, h)
            self._drop_set_id(req, node_id, path, h)
        if to_set & (SET_ATIME | SET_MTIME | SET_ATIME_NOW | SET_MTIME_NOW):
            times = tuple(UTIME_NOW if to_set & now else (t.tv_sec * 1_000_000_000 + t.tv_nsec) if to_set & given
                          else UTIME_OMIT for t, given, now in ((s.st_atimespec, SET_ATIME, SET_ATIME_NOW),
                                                                (s.st_mtimespec, SET_MTIME, SET_MTIME_NOW)))
            self.union.utimens(path, times, h)
        attr = self._attrs(node_id)
        return lambda: ll.reply_attr(req, attr, TIMEOUT)

    # ---- xattrs ----------------------------------------------------------------------------------------

    @_serialised
    def getxattr(self, req: int, node_id: int, name: bytes, size: int) -> Reply:
        value = self.union.getxattr(self._of(node_id), os.fsdecode(name))
        return lambda: ll.reply_xattr(req, value, size)

    @_serialised
    def listxattr(self, req: int, node_id: int, size: int) -> Reply:
        names = b"".join(os.fsencode(n) + b"\0" for n in self.union.listxattr(self._of(node_id)))
        return lambda: ll.reply_xattr(req, names, size)

    @_serialised
    def setxattr(self, req: int, node_id: int, name: bytes, value: int, size: int, flags: int) -> Reply:
        self.union.setxattr(self._of(node_id), os.fsdecode(name), ctypes.string_at(value, size), flags)
        self.touched.add(node_id)
        return lambda: ll.reply_err(req, 0)

    @_serialised
    def removexattr(self, req: int, node_id: int, name: bytes) -> Reply:
        self.union.removexattr(self._of(node_id), os.fsdecode(name))
        self.touched.add(node_id)
        return lambda: ll.reply_err(req, 0)

    # ---- directories -----------------------------------------------------------------------------------

    @_serialised
    def opendir(self, req: int, node_id: int, fi) -> Reply:
        if self._removed_dir(node_id) is None:  # else a file handle's open of a directory removed while held
            self.union.existing(self._path(node_id))
        fh = next(self._handles)
        self.dirs[fh] = Listing(node_id)
        fi.contents.fh = fh
        return lambda: ll.reply_open(req, fi)

    def _listing(self, fi, off: int) -> Listing:
        listing = self.dirs[fi.contents.fh]
        if off == 0 and self._removed_dir(listing.node_id) is None:  # the start, or a rewind: read it again
            listing.entries = self.union.entries(self.union.existing(self._path(listing.node_id)))
        return listing

    @_serialised
    def readdir(self, req: int, node_id: int, size: int, off: int, fi) -> Reply:
        entries = [(name, ino, mode) for name, mode, ino in self._listing(fi, off).entries]
        return lambda: ll.reply_dir(req, entries, size, off)

    @_serialised
    def readdirplus(self, req: int, node_id: int, size: int, off: int, fi) -> Reply:
        """readdir with each entry's node id and attributes, so that a listing followed by a stat of every name
        (`ls -l`, a walk) asks no more; an entry the kernel takes is a lookup it will forget."""
        entries = []
        for name, mode, ino in self._listing(fi, off).entries[off:]:
            node = None if name in (".", "..") or not mode else self.union.resolve(self._child(node_id, name))
            if node is None:  # the kernel takes nothing from `.`, `..` and a name that cannot be looked up
                entries.append((name, 0, 0, ll.stat(mode, ino=ino)))
            else:
                known = self._known((node_id, name), node)
                entries.append((name, known, self.inodes[known].generation, self._stat(self.union.attrs(node))))

        def reply() -> None:
            done = ll.reply_dir_plus(req, entries, size, off, TIMEOUT)
            for _, taken, _, _ in entries[:done]:
                if taken:
                    self.inodes[taken].lookups += 1

        return reply

    @_serialised
    def releasedir(self, req: int, node_id: int, fi) -> Reply:
        self.dirs.pop(fi.contents.fh, None)
        return lambda: ll.reply_err(req, 0)

    # ---- files -----------------------------------------------------------------------------------------

    def _register(self, node_id: int, node: Node | None, h: Handle, fi) -> None:
        """An open file of `node_id`, shown by `node` (None: one with no name yet, an O_TMPFILE file)."""
        fh = next(self._handles)
        self.files[fh] = h
        inode = self.inodes[node_id]
        inode.handles.add(fh)
        fi.contents.fh = fh
        # nobody changes a file behind the kernel, so its pages stay true across opens; unless it has other node
        # ids, whose writes the kernel learns of from the attributes they drop (mtime and size: auto_inval_data)
        fi.contents.keep_cache = node is None or not self.union.indexed_links(node)
        if fi.contents.flags & (os.O_ACCMODE | os.O_TRUNC) != os.O_RDONLY:
            self.touched.add(node_id)

    @_serialised
    def open(self, req: int, node_id: int, fi) -> Reply:
        path, held = self._target(node_id)  # no name left: a file handle's open, of a file still open
        if held is not None:
            h = self.union.reopen(held, fi.contents.flags)
            self._register(node_id, None, h, fi)
        else:
            h = self.union.open(path, fi.contents.flags)
            self._register(node_id, self.union.existing(path), h, fi)
        if fi.contents.flags & os.O_TRUNC:  # the kernel sends no truncate of its own (atomic O_TRUNC)
            self._drop_set_id(req, node_id, path, None if held is None else h)
        return lambda: ll.reply_open(req, fi)

    @_serialised
    def create(self, req: int, parent: int, name: bytes, mode: int, fi) -> Reply:
        where = (parent, os.fsdecode(name))
        path = self._child(*where)
        h = self.union.create(path, mode, fi.contents.flags, _caller(req))
        node = self.union.existing(path)
        node_id, attr = self._looked_up(where, node)
        self._register(node_id, node, h, fi)
        generation = self.inodes[node_id].generation
        return lambda: ll.reply_create(req, node_id, attr, TIMEOUT, fi, generation)

    @_serialised
    def tmpfile(self, req: int, parent: int, mode: int, fi) -> Reply:
        """O_TMPFILE (libfuse 3.17): a file with no name in the directory `parent`, held by a node id of its own
        until a link names it."""
        h = self.union.tmpfile(self._path(parent), mode, fi.contents.flags, _caller(req))
        node_id = next(self._node_ids)
        self.inodes[node_id] = Inode(h.key, lookups=1, generation=self.generation)
        self.groups.setdefault(h.key, set()).add(node_id)
        self._register(node_id, None, h, fi)
        attr = self._stat(self.union.handle_attrs(h))
        return lambda: ll.reply_create(req, node_id, attr, TIMEOUT, fi, self.generation)

    # no union lock on the data path: a request holding it may wait on pages a read has locked
    def read(self, req: int, node_id: int, size: int, off: int, fi) -> None:
        ll.reply_read(req, self.union.read_fd(self.files[fi.contents.fh]), size, off)

    def write(self, req: int, node_id: int, buf: int, size: int, off: int, fi) -> None:
        h = self.files[fi.contents.fh]
        done = os.pwrite(h.fd, ctypes.string_at(buf, size), off)
        self._drop_set_id(req, node_id, None, h)
        for other in self._siblings(node_id):  # dropping attributes takes no lock, in the kernel or here
            ll.notify_inval_attr(self.session, other)
        ll.reply_write(req, done)

    def fallocate(self, req: int, node_id: int, mode: int, offset: int, length: int, fi) -> None:
        """On the open file's real fd: the kernel has checked the arguments and that it is open for writing, and
        passes on only allocation, KEEP_SIZE, punching holes and zeroing ranges; the file system does the rest."""
        h = self.files[fi.contents.fh]
        fallocate(h.fd, mode, offset, length)
        self._drop_set_id(req, node_id, None, h)
        for other in self._siblings(node_id):
            ll.notify_inval_attr(self.session, other)
        ll.reply_err(req, 0)

    def fsync(self, req: int, node_id: int, datasync: int, fi) -> None:
        (os.fdatasync if datasync else os.fsync)(self.files[fi.contents.fh].fd)
        ll.reply_err(req, 0)

    @_serialised
    def release(self, req: int, node_id: int, fi) -> Reply:
        fh = fi.contents.fh
        h = self.files.pop(fh)
        self.inodes[node_id].handles.discard(fh)
        self._leave(node_id)
        self.union.release(h)
        return lambda: ll.reply_err(req, 0)

    @_serialised
    def statfs(self, req: int, node_id: int) -> Reply:
        s = self.union.statfs()
        return lambda: ll.reply_statfs(req, s)


def serve(opts: MountOptions, mountpoint: str, foreground: bool) -> None:
    """Mount the union at `mountpoint` and serve it until it is unmounted (daemonized unless `foreground`)."""
    os.umask(0)  # modes come from the caller, already masked by the kernel
    union = Union(opts)
    options = ["fsname=vfslab-union", "subtype=vfslab-union", "default_permissions", *opts.fuse]
    if os.geteuid() == 0:
        options.append("allow_other")
    if opts.read_only:
        options.append("ro")
    try:
        ll.serve(UnionOps(union), mountpoint, list(dict.fromkeys(options)), foreground, opts.max_threads)
    finally:
        union.close()
