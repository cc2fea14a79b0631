"""The core of ovlfs: an overlay of one read-only base directory whose every change goes through a storage method.

No FUSE here: `serve.py` calls one method per request. The seed's picture of who calls what (seed 002, "USE"),
as this core does it:

    mount       Init(); the root inode, mapped to the base's root the first time
    get inode   Read Inode, once (inodes are cached); for a directory, its entries (Read Directory)
    put inode   Update Inode, at once whenever an inode changes; Clear Inode when it leaves the cache, or when it
                has no name and no open file left
    statfs      Statfs (the base's file system's figures when the method has none)
    sync        Sync (fsync and fsyncdir)
    unmount     Sync, Clear Inode of every cached inode, Release
    symlink     Set Symlink / Read Symlink, when the method has them

Names. A directory's entries in the storage come first: a live entry names its ovlfs inode, and an UNLINKED one
hides the base's name ("Unlink Directory Entry ... responsible for keeping track of deleted entries so that they
will not reappear"). Any other name is looked up in the base, when the directory has a base part. A base object
gets its ovlfs inode by Map Lookup (base, st_dev, st_ino), or the first time by Add Inode (its attributes those of
the "reference inode", the base's) and Map Inode: inode numbers are the mappings', the same at every mount, and
all names of a base hard link are one ovlfs inode.

Data. A regular file's contents and a symlink's target stay in the base until the object is written, truncated,
renamed or linked; then they are copied into the storage (a copy-up): through Write File and Set Symlink when the
method has them, else into the storage file system. Either way the copy is made under the inode's reference name,
"the name that is used to create copies of regular files into the Storage Filesystem from the Base Filesystem",
which is given to the inode (Update Inode) once the copy is complete: a base object's inode with a reference name
has been copied up. So an object whose data is in the base is always reached by its base path, and a directory
with a base part (its inode mapped to a base directory) always lies at its own base path: renaming one is EXDEV,
as overlayfs without redirect_dir has it (`mv` then copies).

The base is never written. Everything in it is reached from a directory fd without following a symlink
(`impl/union/disk.py`'s `Layer`), as is every file in the storage file system; a symlink in the base is served as
a symlink and never followed by the daemon.
"""

from __future__ import annotations

import contextlib
import errno as E
import fcntl
import hashlib
import os
import stat as st
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

from vfslab.impl.ovlfs.storage.method import (
    BARE_MINIMUM,
    BASE,
    REQUIRED,
    ROOT_INO,
    STORAGE,
    Dirent,
    Inode,
    StorageMethod,
    missing,
    operations,
)
from vfslab.impl.union.disk import RENAME_NOREPLACE, Layer, Rel

NAME_MAX = 255
#: inodes kept in the cache (Clear Inode when one leaves it); open ones are never evicted
CACHE = 4096
#: how much of a file a copy-up moves at a time
CHUNK = 1 << 20
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
#: where a daemon holds its storage's lock, and how long a mount waits for a daemon that still holds it (one that is
#: unmounting: `umount` returns before its Sync and Release)
HOLDS = "/run/vfslab-ovlfs"
HOLD_SECONDS = 30.0
_BASE_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def hold(location: str, seconds: float = HOLD_SECONDS) -> int | None:
    """An exclusive lock on the storage at `location`, held while the returned fd is open (None for a method
    with no location): one daemon at a time on a storage, and a mount right after an unmount waits for the old
    daemon's Sync instead of reading what it has not yet written."""
    if not location:
        return None
    os.makedirs(HOLDS, mode=0o700, exist_ok=True)
    key = hashlib.sha256(os.path.realpath(location).encode(errors="surrogateescape")).hexdigest()[:32]
    fd = os.open(os.path.join(HOLDS, key), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise fail(E.EBUSY, f"{location}: in use by another ovlfs mount (still, after {seconds:g} s)") \
                    from None
            time.sleep(0.02)


def fail(errno: int, what: str = "") -> OSError:
    return OSError(errno, os.strerror(errno) + (f": {what}" if what else ""))


@dataclass(frozen=True)
class Cred:
    """Who is asking: the owner of what it creates."""

    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Node:
    """A name as ovlfs shows it: its ovlfs inode and its path (also its base path while its data is in the base)."""

    ino: int
    path: Rel


@dataclass
class Cached:
    """An inode in use: its record as the storage keeps it, a directory's storage entries by name (in Read
    Directory's order, read when first needed), and how many open files hold it."""

    inode: Inode
    entries: dict[str, Dirent] | None = None
    opens: int = 0


@dataclass
class Handle:
    """An open file: its node (the path it was opened by is its base path while its data is in the base), and an
    fd on the base file while its data is there (a copy-up moves the data: reads then follow it into the storage,
    as overlayfs's do)."""

    node: Node
    base_fd: int | None = None

    @property
    def ino(self) -> int:
        return self.node.ino


class Data:
    """Where the storage keeps data: Read/Write File and Set/Read Symlink when the method has them; otherwise the
    storage file system (the mount's `storage_root`), a regular file or symlink per inode named by its reference
    name. The storage file system is a directory fd: every name in it is one component, opened without following
    a symlink, and must be the inode the storage mapping names."""

    def __init__(self, method: StorageMethod, files: str | None) -> None:
        ops = operations(method)
        self.method = method
        self.own_files = {"read_file", "write_file"} <= ops
        self.own_symlinks = {"set_symlink", "read_symlink"} <= ops
        self.files: int | None = None
        if not (self.own_files and self.own_symlinks):
            if files is None:
                raise fail(E.EINVAL, f"storage method {method.scheme or type(method).__name__} keeps no file data: "
                           "a storage file system (storage_root=DIR) is needed")
            self.files = os.open(files, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)

    def close(self) -> None:
        if self.files is not None:
            os.close(self.files)

    def in_files(self, mode: int) -> bool:
        """Whether an inode of this type keeps its data in the storage file system."""
        return (st.S_ISREG(mode) and not self.own_files) or (st.S_ISLNK(mode) and not self.own_symlinks)

    @staticmethod
    def _name(name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise fail(E.EIO, f"bad reference name {name!r}")
        return name

    def _open(self, inode: Inode, name: str, flags: int) -> int:
        fd = os.open(self._name(name), flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self.files)
        s = os.fstat(fd)
        if not st.S_ISREG(s.st_mode) or (inode.storage is not None and (s.st_dev, s.st_ino) != tuple(inode.storage)):
            os.close(fd)
            raise fail(E.EIO, f"storage file {name!r} is not the inode's")
        return fd

    def create(self, name: str) -> tuple[int, int] | None:
        """An empty file for a regular file's data: its (st_dev, st_ino) in the storage file system, for Map Inode
        (None when the method keeps file data itself)."""
        if self.own_files:
            return None
        fd = os.open(self._name(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=self.files)
        try:
            s = os.fstat(fd)
            return s.st_dev, s.st_ino
        finally:
            os.close(fd)

    def read(self, ino: int, inode: Inode, offset: int, size: int) -> bytes:
        if self.own_files:
            return self.method.read_file(ino, offset, size)
        fd = self._open(inode, inode.name, os.O_RDONLY)
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    def write(self, ino: int, inode: Inode, name: str, offset: int, data: bytes) -> int:
        """pwrite's semantics: a write past the end leaves zeros between (Write File has them too)."""
        if self.own_files:
            return self.method.write_file(ino, offset, data)
        fd = self._open(inode, name, os.O_WRONLY)
        try:
            return os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def resize(self, inode: Inode, length: int) -> None:
        """The storage file system's file follows the size; a method's file data follows Update Inode's size
        ("Update Inode to a smaller size cuts them; where they are shorter, the rest reads as zeros")."""
        if self.own_files:
            return
        fd = self._open(inode, inode.name, os.O_WRONLY)
        try:
            os.ftruncate(fd, length)
        finally:
            os.close(fd)

    def set_symlink(self, ino: int, name: str, target: str) -> tuple[int, int] | None:
        """Keep a symlink's target; the storage file system's symlink's (st_dev, st_ino), for Map Inode."""
        if self.own_symlinks:
            self.method.set_symlink(ino, target)
            return None
        os.symlink(target, self._name(name), dir_fd=self.files)
        s = os.stat(name, dir_fd=self.files, follow_symlinks=False)
        return s.st_dev, s.st_ino

    def read_symlink(self, ino: int, inode: Inode) -> str:
        if self.own_symlinks:
            return self.method.read_symlink(ino)
        return os.readlink(self._name(inode.name), dir_fd=self.files)

    def remove(self, inode: Inode) -> None:
        """The inode left storage: its file or symlink in the storage file system goes with it."""
        if self.in_files(inode.mode) and inode.name:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._name(inode.name), dir_fd=self.files)


class Ovlfs:
    """ovlfs over the directory `base`, its changes kept by `method` (not yet initialised: this is the mount).
    `files` is the storage file system, for the data a method does not keep itself.

    Every public method runs under `lock` (the FUSE front takes it); paths are absolute, as FUSE gives them, with
    every symlink in them already followed by the kernel."""

    def __init__(self, base: str, method: StorageMethod, files: str | None = None) -> None:
        absent = missing(method, (*REQUIRED, *BARE_MINIMUM))
        if absent:
            raise fail(E.EINVAL, f"storage method {method.scheme or type(method).__name__} lacks {', '.join(absent)}")
        self.lock = threading.RLock()
        self.method = method
        self.ops = operations(method)
        self._inodes: OrderedDict[int, Cached] = OrderedDict()
        self._paths: dict[Rel, Node] = {}
        self.base = Layer(base, 0)
        with contextlib.ExitStack() as undo:  # Init's rule: a mount that fails leaves nothing behind
            undo.callback(self.base.close)
            self._hold = hold(method.location)
            if self._hold is not None:
                undo.callback(os.close, self._hold)
            self.data = Data(method, files)
            undo.callback(self.data.close)
            method.init()
            undo.callback(self._release)
            self._mount_root()
            undo.pop_all()

    def _mount_root(self) -> None:
        """The root inode is the base's root: mapped to it (and given its attributes) the first time; storage
        whose root is another base directory's is refused (its inode numbers name other objects)."""
        s = os.fstat(self.base.root)
        root = self._inode(ROOT_INO)
        if not st.S_ISDIR(root.mode):
            raise fail(E.EUCLEAN, f"{self.method.location}: corrupt storage (its root inode is no directory)")
        if root.base is None:
            self.method.map_inode(ROOT_INO, BASE, s.st_dev, s.st_ino)
            self._refresh(ROOT_INO)
            self._put(ROOT_INO, **self._attributes_of(s, ()))
        elif tuple(root.base) != (s.st_dev, s.st_ino):
            raise fail(E.EINVAL, f"{self.method.location}: the storage of another base directory")

    def close(self) -> None:
        """Unmount: Clear Inode of every cached inode, then Sync (after the last Clear Inode, so that what it
        released stays released: the VFS too evicts inodes before it puts the super block), then Release."""
        try:
            while self._inodes:
                self._evict(next(iter(self._inodes)))
            self.sync()
        finally:
            self._release()
            self.data.close()
            self.base.close()
            if self._hold is not None:
                os.close(self._hold)  # the next mount of this storage may start now

    def _release(self) -> None:
        if "release" in self.ops:
            self.method.release()

    # ---- the inode cache -----------------------------------------------------------------------------

    def _cached(self, ino: int) -> Cached:
        c = self._inodes.get(ino)
        if c is not None:
            self._inodes.move_to_end(ino)
            return c
        c = self._inodes[ino] = Cached(self.method.read_inode(ino))
        for old in [i for i, o in self._inodes.items() if o.opens == 0][: max(0, len(self._inodes) - CACHE)]:
            self._evict(old)
        return c

    def _inode(self, ino: int) -> Inode:
        return self._cached(ino).inode

    def _refresh(self, ino: int) -> None:
        """Read the record again: the storage changed it itself (Map Inode, Add Directory Entry's NO_BASE_REF,
        Write File's size)."""
        if ino in self._inodes:
            self._inodes[ino].inode = self.method.read_inode(ino)

    def _put(self, ino: int, **changes) -> Inode:
        """Change an inode's attributes and write them (Update Inode)."""
        c = self._cached(ino)
        c.inode = replace(c.inode, **changes)
        self.method.update_inode(ino, c.inode)
        return c.inode

    def _evict(self, ino: int) -> None:
        """The inode leaves the cache: Clear Inode, "called for every inode just before it is removed from the
        inode cache" (the storage removes an inode whose link count is 0)."""
        c = self._inodes.pop(ino)
        if c.inode.nlink == 0:
            self.data.remove(c.inode)
        if "clear_inode" in self.ops:
            self.method.clear_inode(ino)

    def _unused(self, ino: int) -> None:
        """An inode with no name left goes once no open file holds it."""
        c = self._inodes.get(ino)
        if c is not None and c.inode.nlink == 0 and c.opens == 0:
            self._evict(ino)

    # ---- the base ------------------------------------------------------------------------------------

    def _attributes_of(self, s: os.stat_result, path: Rel) -> dict:
        """An inode's attributes from a base object's; a directory's link count as ovlfs counts it, 2 and one per
        subdirectory (the base's own count is its file system's business: btrfs says 1)."""
        nlink = 2 + self._base_subdirs(path) if st.S_ISDIR(s.st_mode) else s.st_nlink
        return dict(mode=s.st_mode, uid=s.st_uid, gid=s.st_gid, size=s.st_size, nlink=nlink, atime_ns=s.st_atime_ns,
                    mtime_ns=s.st_mtime_ns, ctime_ns=s.st_ctime_ns, rdev=s.st_rdev)

    def _base_listing(self, path: Rel) -> list[tuple[str, os.stat_result]]:
        """A base directory's names, sorted, each with its lstat."""
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.base.dirfd(path))
        try:
            with os.scandir(fd) as entries:
                return sorted((e.name, e.stat(follow_symlinks=False)) for e in entries)
        finally:
            os.close(fd)

    def _base_subdirs(self, path: Rel) -> int:
        return sum(1 for _, s in self._base_listing(path) if st.S_ISDIR(s.st_mode))

    def _base_ino(self, s: os.stat_result, path: Rel) -> int:
        """The ovlfs inode of a base object: Map Lookup, or the first time Add Inode + Map Inode."""
        try:
            ino = self.method.map_lookup(BASE, s.st_dev, s.st_ino)
        except OSError as e:
            if e.errno != E.ENOENT:
                raise
            ino = self.method.add_inode(Inode(**self._attributes_of(s, path)))
            self.method.map_inode(ino, BASE, s.st_dev, s.st_ino)
            self._refresh(ino)
        if st.S_IFMT(self._inode(ino).mode) != st.S_IFMT(s.st_mode):
            raise fail(E.EUCLEAN, f"inode {ino} is mapped to a base object of another type")
        return ino

    def _open_base(self, node: Node) -> int:
        """A read-only fd on a base file, which must be the base object its inode is mapped to."""
        dfd, name = self.base.at(node.path)
        fd = os.open(name, _BASE_READ, dir_fd=dfd)
        s = os.fstat(fd)
        if (s.st_dev, s.st_ino) != tuple(self._inode(node.ino).base):
            os.close(fd)
            raise fail(E.EIO, f"{'/'.join(node.path)} is not the base object its inode is mapped to")
        return fd

    @staticmethod
    def _in_base(inode: Inode) -> bool:
        """A non-directory's data is still the base's: it has not been copied up (it has no reference name)."""
        return inode.base is not None and not inode.name

    @staticmethod
    def _merges(inode: Inode) -> bool:
        """A directory with a base part: the base's names in it show where the storage has no entry."""
        return inode.base is not None

    # ---- names ---------------------------------------------------------------------------------------

    def _entries(self, ino: int) -> dict[str, Dirent]:
        """A directory's entries in the storage, by name: Read Directory from position 1 until there is none."""
        c = self._cached(ino)
        if c.entries is None:
            c.entries = {}
            pos = 1
            while (d := self.method.read_directory(ino, pos)) is not None:
                c.entries[d.name] = d
                pos += 1
        return c.entries

    def _changed(self, dir_ino: int) -> None:
        """A directory's entries changed: read them again when next needed; a path resolved before may name
        another inode now."""
        self._cached(dir_ino).entries = None
        self._paths.clear()

    def child(self, parent: Node, name: str) -> Node | None:
        """One name in a directory: its storage entry, else (in a directory with a base part) the base's."""
        if len(os.fsencode(name)) > NAME_MAX:
            raise fail(E.ENAMETOOLONG)
        path = (*parent.path, name)
        d = self._entries(parent.ino).get(name)
        if d is not None:
            return None if d.unlinked else Node(d.ino, path)
        if not self._merges(self._inode(parent.ino)):
            return None
        s = self.base.lstat(path)
        return Node(self._base_ino(s, path), path) if s is not None else None

    def resolve(self, path: str) -> Node | None:
        """The node at an absolute path; None when its last component does not exist."""
        names = tuple(n for n in path.split("/") if n)
        node = self._paths.get(names)
        if node is not None:
            return node
        node = Node(ROOT_INO, ())
        for i, name in enumerate(names):
            if not st.S_ISDIR(self._inode(node.ino).mode):
                raise fail(E.ENOTDIR)
            found = self.child(node, name)
            if found is None:
                if i < len(names) - 1:
                    raise fail(E.ENOENT)
                return None
            node = found
        if len(self._paths) > CACHE:
            self._paths.clear()
        self._paths[names] = node
        return node

    def existing(self, path: str) -> Node:
        node = self.resolve(path)
        if node is None:
            raise fail(E.ENOENT)
        return node

    def _parent(self, path: str) -> tuple[Node, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self.existing(head or "/")
        if not st.S_ISDIR(self._inode(parent.ino).mode):
            raise fail(E.ENOTDIR)
        return parent, name

    def _free(self, path: str) -> tuple[Node, str]:
        parent, name = self._parent(path)
        if self.child(parent, name) is not None:
            raise fail(E.EEXIST)
        return parent, name

    def names(self, node: Node) -> list[tuple[str, int]]:
        """A directory's listing (name, ino): its live storage entries as Read Directory gives them, then the
        base's names the storage has no entry for."""
        entries = self._entries(node.ino)
        out = [(name, d.ino) for name, d in entries.items() if not d.unlinked]
        if self._merges(self._inode(node.ino)):
            out += [(name, self._base_ino(s, (*node.path, name)))
                    for name, s in self._base_listing(node.path) if name not in entries]
        return out

    def entries(self, node: Node) -> list[tuple[str, int, int]]:
        """readdir: (name, mode, ino) for `.`, `..` and the listing."""
        parent = self.existing("/" + "/".join(node.path[:-1])) if node.path else node
        out = [(".", self._inode(node.ino).mode, node.ino), ("..", self._inode(parent.ino).mode, parent.ino)]
        return out + [(name, self._inode(ino).mode, ino) for name, ino in self.names(node)]

    # ---- attributes ----------------------------------------------------------------------------------

    def attrs(self, ino: int) -> dict:
        i = self._inode(ino)
        return {"st_mode": i.mode, "st_ino": ino, "st_nlink": i.nlink, "st_uid": i.uid, "st_gid": i.gid,
                "st_size": i.size, "st_rdev": i.rdev, "st_blocks": (i.size + 511) // 512, "st_blksize": 4096,
                "st_atime": i.atime_ns, "st_mtime": i.mtime_ns, "st_ctime": i.ctime_ns}

    def chmod(self, ino: int, mode: int) -> None:
        """Attributes are the inode's, in the storage: changing them copies no data up."""
        self._put(ino, mode=st.S_IFMT(self._inode(ino).mode) | (mode & 0o7777), ctime_ns=time.time_ns())

    def chown(self, ino: int, uid: int, gid: int) -> None:
        i = self._inode(ino)
        self._put(ino, uid=i.uid if uid == -1 else uid, gid=i.gid if gid == -1 else gid, ctime_ns=time.time_ns())

    def utimens(self, ino: int, times: tuple[int, int] | None) -> None:
        i, now = self._inode(ino), time.time_ns()

        def pick(value: int, old: int) -> int:
            return old if value == UTIME_OMIT else now if value == UTIME_NOW else value

        atime, mtime = times or (UTIME_NOW, UTIME_NOW)
        self._put(ino, atime_ns=pick(atime, i.atime_ns), mtime_ns=pick(mtime, i.mtime_ns), ctime_ns=now)

    def truncate(self, node: Node, length: int) -> None:
        if st.S_ISDIR(self._inode(node.ino).mode):
            raise fail(E.EISDIR)
        self._copy_up(node)
        self.data.resize(self._inode(node.ino), length)
        now = time.time_ns()
        self._put(node.ino, size=length, mtime_ns=now, ctime_ns=now)

    def readlink(self, node: Node) -> str:
        i = self._inode(node.ino)
        if not st.S_ISLNK(i.mode):
            raise fail(E.EINVAL)
        if not self._in_base(i):
            return self.data.read_symlink(node.ino, i)
        dfd, name = self.base.at(node.path)
        return os.readlink(name, dir_fd=dfd)

    # ---- copy-up -------------------------------------------------------------------------------------

    def _copy_up(self, node: Node) -> None:
        """Copy a non-directory's data from the base into the storage, once: a file's contents through Write File
        (or into the storage file system), a symlink's target through Set Symlink (or as a symlink there), under
        the reference name the inode gets when the copy is complete."""
        i = self._inode(node.ino)
        if st.S_ISDIR(i.mode) or not self._in_base(i):
            return
        name = str(node.ino)
        if st.S_ISREG(i.mode):
            made = self.data.create(name)
            src = self._open_base(node)
            try:
                offset = 0
                while chunk := os.pread(src, CHUNK, offset):
                    self.data.write(node.ino, i, name, offset, chunk)
                    offset += len(chunk)
            finally:
                os.close(src)
        elif st.S_ISLNK(i.mode):
            dfd, base_name = self.base.at(node.path)
            made = self.data.set_symlink(node.ino, name, os.readlink(base_name, dir_fd=dfd))
        else:
            made = None  # a device, fifo or socket has no data
        self._map_storage(node.ino, made)
        self._put(node.ino, name=name)

    def _map_storage(self, ino: int, made: tuple[int, int] | None) -> None:
        """Map Inode for the inode's file in the storage file system, if one was made."""
        if made is not None:
            self.method.map_inode(ino, STORAGE, *made)
            self._refresh(ino)

    # ---- directory entries ---------------------------------------------------------------------------

    def _enter(self, parent: Node, name: str, ino: int) -> None:
        """Add Directory Entry (over an unlinked entry of the name, the storage flags the inode NO_BASE_REF)."""
        self.method.add_dirent(parent.ino, name, ino)
        self._refresh(ino)
        self._changed(parent.ino)

    def _stored(self, parent: Node, node: Node) -> None:
        """Make a name a live entry in the storage: a base name enters it, so that it can be renamed or unlinked
        there (Unlink of a name the storage does not have is ENOENT)."""
        d = self._entries(parent.ino).get(node.path[-1])
        if d is None:
            self._enter(parent, node.path[-1], node.ino)

    def _unname(self, parent: Node, node: Node) -> None:
        """Unlink Directory Entry: the entry stays, flagged, and hides the base's name for good."""
        self._stored(parent, node)
        self.method.unlink_dirent(parent.ino, node.path[-1])
        self._changed(parent.ino)

    def _touch(self, ino: int, nlink: int = 0) -> None:
        """A directory's entries changed (and its link count by `nlink`: subdirectories came or went)."""
        now = time.time_ns()
        self._put(ino, nlink=self._inode(ino).nlink + nlink, mtime_ns=now, ctime_ns=now)

    def _unlinked(self, node: Node) -> None:
        """One name fewer for an inode (a directory has none left); it goes when nothing holds it."""
        i = self._inode(node.ino)
        self._put(node.ino, nlink=0 if st.S_ISDIR(i.mode) else i.nlink - 1, ctime_ns=time.time_ns())
        self._unused(node.ino)

    # ---- creation and removal ------------------------------------------------------------------------

    def _new(self, path: str, mode: int, cred: Cred, rdev: int = 0, target: str | None = None) -> Node:
        """Add Inode for a new object under a free name, owned by `cred`."""
        parent, name = self._free(path)
        p = self._inode(parent.ino)
        gid = cred.gid
        if p.mode & st.S_ISGID:  # BSD group semantics in a set-group-id directory; subdirectories inherit it
            gid = p.gid
            mode |= st.S_ISGID if st.S_ISDIR(mode) else 0
        now, is_dir = time.time_ns(), st.S_ISDIR(mode)
        size = len(os.fsencode(target)) if target is not None else 0
        ino = self.method.add_inode(Inode(mode, cred.uid, gid, size, 2 if is_dir else 1, now, now, now, rdev))
        if self.data.in_files(mode):
            self._put(ino, name=str(ino))
        if target is not None:
            self._map_storage(ino, self.data.set_symlink(ino, str(ino), target))
        elif st.S_ISREG(mode):
            self._map_storage(ino, self.data.create(str(ino)))
        self._refresh(ino)
        node = Node(ino, (*parent.path, name))
        self._enter(parent, name, ino)
        self._touch(parent.ino, 1 if is_dir else 0)
        return node

    def mkdir(self, path: str, mode: int, cred: Cred) -> None:
        self._new(path, st.S_IFDIR | (mode & 0o7777), cred)

    def mknod(self, path: str, mode: int, rdev: int, cred: Cred) -> None:
        self._new(path, mode, cred, rdev)

    def symlink(self, path: str, target: str, cred: Cred) -> None:
        self._new(path, st.S_IFLNK | 0o777, cred, target=target)

    def link(self, old: str, new: str) -> None:
        """A new name for an inode: its data goes into the storage first (the new name is not its base path)."""
        src = self.existing(old)
        if st.S_ISDIR(self._inode(src.ino).mode):
            raise fail(E.EPERM)
        parent, name = self._free(new)
        self._copy_up(src)
        self._enter(parent, name, src.ino)
        self._put(src.ino, nlink=self._inode(src.ino).nlink + 1, ctime_ns=time.time_ns())
        self._touch(parent.ino)

    def _existing_child(self, path: str) -> tuple[Node, Node]:
        parent, name = self._parent(path)
        node = self.child(parent, name)
        if node is None:
            raise fail(E.ENOENT)
        return parent, node

    def unlink(self, path: str) -> None:
        parent, node = self._existing_child(path)
        if st.S_ISDIR(self._inode(node.ino).mode):
            raise fail(E.EISDIR)
        self._unname(parent, node)
        self._touch(parent.ino)
        self._unlinked(node)

    def rmdir(self, path: str) -> None:
        parent, node = self._existing_child(path)
        if not st.S_ISDIR(self._inode(node.ino).mode):
            raise fail(E.ENOTDIR)
        if self.names(node):
            raise fail(E.ENOTEMPTY)
        self._unname(parent, node)
        self._touch(parent.ino, -1)
        self._unlinked(node)

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        """In one directory, Rename Directory Entry (it replaces a live entry of the new name, as rename(2) its
        target); across directories, Add Directory Entry in the new one, then Unlink Directory Entry in the old.
        A directory with a base part does not move (EXDEV); a non-directory's data goes into the storage first.
        Only RENAME_NOREPLACE of the flags."""
        if flags & ~RENAME_NOREPLACE:
            raise fail(E.EINVAL)
        op, src = self._existing_child(old)
        np_, nname = self._parent(new)
        dst = self.child(np_, nname)
        if dst is not None and flags & RENAME_NOREPLACE:
            raise fail(E.EEXIST)
        if dst is not None and dst.ino == src.ino:
            return  # two names of one inode: rename(2) does nothing
        is_dir = st.S_ISDIR(self._inode(src.ino).mode)
        if dst is not None and is_dir != st.S_ISDIR(self._inode(dst.ino).mode):
            raise fail(E.ENOTDIR if is_dir else E.EISDIR)
        if is_dir and self._merges(self._inode(src.ino)):
            raise fail(E.EXDEV)  # before the target is looked into, as overlayfs's ovl_rename does
        if dst is not None and is_dir and self.names(dst):
            raise fail(E.ENOTEMPTY)
        self._copy_up(src)
        self._stored(op, src)
        if op.ino == np_.ino:
            self.method.rename_dirent(op.ino, src.path[-1], nname)
            self._changed(op.ino)
        else:
            if dst is not None and nname in self._entries(np_.ino):
                self.method.unlink_dirent(np_.ino, nname)  # so that the entry moved in takes its place
                self._changed(np_.ino)
            self._enter(np_, nname, src.ino)
            self._unname(op, src)
        if dst is not None:
            self._unlinked(dst)
        # link counts: a directory moved out of one directory into another, one replaced in its new one
        moved, replaced = int(is_dir and op.ino != np_.ino), int(is_dir and dst is not None)
        self._touch(op.ino, -moved)
        self._touch(np_.ino, moved - replaced)
        self._put(src.ino, ctime_ns=time.time_ns())

    # ---- open files ----------------------------------------------------------------------------------

    def open(self, node: Node, flags: int) -> Handle:
        """A file opened for writing is copied up first; one opened for reading reads the base until it is."""
        i = self._inode(node.ino)
        if st.S_ISREG(i.mode) and (flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC):
            self._copy_up(node)
            if flags & os.O_TRUNC:
                self.truncate(node, 0)
        h = Handle(node)
        if st.S_ISREG(i.mode) and self._in_base(self._inode(node.ino)):
            h.base_fd = self._open_base(node)
        self._cached(node.ino).opens += 1
        return h

    def create(self, path: str, mode: int, flags: int, cred: Cred) -> Handle:
        node = self._new(path, st.S_IFREG | (mode & 0o7777), cred)
        return self.open(node, flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC))

    def read(self, h: Handle, size: int, offset: int) -> bytes:
        i = self._inode(h.ino)
        size = max(0, min(size, i.size - offset))
        if size == 0:
            return b""
        if self._in_base(i):
            return os.pread(h.base_fd, size, offset)
        return self.data.read(h.ino, i, offset, size).ljust(size, b"\0")  # where the storage keeps less: zeros

    def write(self, h: Handle, data: bytes, offset: int) -> int:
        i = self._inode(h.ino)
        n = self.data.write(h.ino, i, i.name, offset, data)
        now = time.time_ns()
        self._put(h.ino, size=max(i.size, offset + n), mtime_ns=now, ctime_ns=now)
        return n

    def release(self, h: Handle) -> None:
        if h.base_fd is not None:
            os.close(h.base_fd)
        self._cached(h.ino).opens -= 1
        self._unused(h.ino)

    # ---- the whole file system -----------------------------------------------------------------------

    def sync(self) -> None:
        self.method.sync()

    def statfs(self) -> dict:
        """Statfs, or when the method has none the base file system's figures."""
        if "statfs" in self.ops:
            s = self.method.statfs()
            bsize, blocks, bfree, files, ffree = s.bsize, s.blocks, s.bfree, s.files, s.ffree
        else:
            v = os.fstatvfs(self.base.root)
            bsize, blocks, bfree, files, ffree = v.f_frsize, v.f_blocks, v.f_bavail, v.f_files, v.f_favail
        return {"f_bsize": bsize, "f_frsize": bsize, "f_blocks": blocks, "f_bfree": bfree, "f_bavail": bfree,
                "f_files": files, "f_ffree": ffree, "f_favail": ffree, "f_namemax": NAME_MAX}
