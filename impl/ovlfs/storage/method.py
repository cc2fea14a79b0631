"""The storage method: the interface between the core of ovlfs and the physical storage that keeps its changes.

A storage method is a class with one method per operation of the seed's Storage Method (Init, Sync, Release,
Statfs, Add/Read/Clear/Update Inode, Map Inode, Map Lookup, Number Dirent, Read Directory, Lookup/Add/Rename/
Unlink Directory Entry, Read/Write File, Set/Read Symlink), named after it in snake case. It is constructed with
its location (what follows `dir:`, `file:`, `pmem:` in `--storage`); no operation is called before `init()` nor
after `release()` until the next `init()`.

Return convention: the seed's operations return >= 0 on success and -errno on failure; here an operation returns
its result and raises `OSError(errno, message)` on failure (`storage_error` makes one). Every operation may be
left out except those of `REQUIRED` (all of ovlfs works) or at least `BARE_MINIMUM` (ovlfs mounts and lists,
read-only): `operations(method)` says which a class implements, by the methods it defines.

The records that cross the interface are plain dataclasses: an `Inode` (attributes, the base and storage
mappings, the reference name, flags) and a `Dirent` (name, inode number, flags).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

#: which file system a mapping's source inode lives in
BASE, STORAGE = "base", "storage"

#: an entry of a directory that was unlinked: kept, so that its name stays hidden in the base (OVLFS_DIRENT_UNLINKED)
UNLINKED = "unlinked"
#: an entry added over an unlinked entry of the same name (the seed's RELINK)
RELINK = "relink"
#: an inode whose entry replaced an unlinked one: it no longer refers to the base inode of that name (NO_BASE_REF)
NO_BASE_REF = "no-base-ref"

#: the operations, in the seed's order, and which it calls optional
OPERATIONS = ("init", "sync", "release", "statfs", "add_inode", "read_inode", "clear_inode", "update_inode",
              "map_inode", "map_lookup", "number_dirent", "read_directory", "lookup_dirent", "add_dirent",
              "rename_dirent", "unlink_dirent", "read_file", "write_file", "set_symlink", "read_symlink")
OPTIONAL = ("read_file", "write_file", "set_symlink", "read_symlink")
#: requirement 1: needed for all of ovlfs' functions (mount, see files, read and write them)
REQUIRED = ("init", "sync", "add_inode", "read_inode", "update_inode", "map_inode", "map_lookup", "lookup_dirent",
            "add_dirent", "rename_dirent", "unlink_dirent")
#: requirement 2: the bare minimum to operate at all (mount and see files)
BARE_MINIMUM = ("init", "read_inode", "map_lookup", "read_directory")

#: the root directory's ovlfs inode number, which Init must make sure exists
ROOT_INO = 1


@dataclass
class Inode:
    """An ovlfs inode as the storage keeps it (Read Inode fills it, Update Inode saves it)."""

    mode: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    nlink: int = 1
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    rdev: int = 0
    #: the inode's mappings: (st_dev, st_ino) of its inode in the base / storage file system, if any
    base: tuple[int, int] | None = None
    storage: tuple[int, int] | None = None
    #: the name a regular file is copied into the storage file system by ("" when none)
    name: str = ""
    flags: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Dirent:
    """An entry of an ovlfs directory, at its position (Read Directory)."""

    name: str
    ino: int
    flags: frozenset[str] = frozenset()

    @property
    def unlinked(self) -> bool:
        return UNLINKED in self.flags


@dataclass(frozen=True)
class StatFs:
    """What Statfs fills in: space and inodes, used and free."""

    bsize: int
    blocks: int
    bfree: int
    files: int
    ffree: int


class StorageMethod:
    """The operations a storage method may implement, with their contracts (see docs/storage.md). A method
    subclasses this (or merely has these names: `operations()` reads what a class defines) and overrides what it
    implements; what it leaves out is not there (the defaults here are documentation, not behaviour)."""

    #: the method's name in `--storage NAME:LOCATION`
    scheme = ""

    def __init__(self, location: str) -> None:
        self.location = location

    # Each operation's contract, in the seed's words, is in docs/storage.md; these signatures are the interface.
    def init(self) -> None: ...
    def sync(self) -> None: ...
    def release(self) -> None: ...
    def statfs(self) -> StatFs: ...
    def add_inode(self, ref: Inode) -> int: ...
    def read_inode(self, ino: int) -> Inode: ...
    def clear_inode(self, ino: int) -> None: ...
    def update_inode(self, ino: int, inode: Inode) -> None: ...
    def map_inode(self, ino: int, fs: str, dev: int, src_ino: int) -> None: ...
    def map_lookup(self, fs: str, dev: int, src_ino: int) -> int: ...
    def number_dirent(self, dir_ino: int, include_deleted: bool) -> int: ...
    def read_directory(self, dir_ino: int, pos: int) -> Dirent | None: ...
    def lookup_dirent(self, dir_ino: int, name: str) -> int: ...
    def add_dirent(self, dir_ino: int, name: str, ino: int) -> None: ...
    def rename_dirent(self, dir_ino: int, old: str, new: str) -> None: ...
    def unlink_dirent(self, dir_ino: int, name: str) -> None: ...
    def read_file(self, ino: int, offset: int, size: int) -> bytes: ...
    def write_file(self, ino: int, offset: int, data: bytes) -> int: ...
    def set_symlink(self, ino: int, target: str) -> None: ...
    def read_symlink(self, ino: int) -> str: ...


def operations(method: type | object) -> frozenset[str]:
    """The operations a storage method implements: those its class defines itself, not inherits from
    `StorageMethod` (a user's class need not subclass it at all)."""
    cls = method if isinstance(method, type) else type(method)
    return frozenset(op for op in OPERATIONS
                     if callable(getattr(cls, op, None)) and getattr(cls, op) is not getattr(StorageMethod, op, None))


def storage_error(code: int, what: str = "") -> OSError:
    """The Python spelling of returning -errno."""
    return OSError(code, os.strerror(code) + (f": {what}" if what else ""))


def missing(method: type | object, needed: tuple[str, ...]) -> list[str]:
    return [op for op in needed if op not in operations(method)]

