"""The tables every storage method of ours keeps: inodes, directories, symlink targets and mappings, in memory.

`dir:`, `file:` and `pmem:` differ only in where these tables live and when they are written (`base.py`); every
rule of seed 002 about what the operations do is here, once:

- Add Inode gives a new, unique number: numbers come from a counter that only grows, so a number is never given
  twice, not even after its inode left storage. Attributes and the reference name are taken from the reference
  inode; mappings start empty (Map Inode makes them) and so do the flags.
- Read Inode returns a copy, its number never changes, with its base and storage mappings filled in.
- Update Inode saves the attributes (mode, owner, size, link count, times, rdev) and the reference name; it may
  not change the file type (EINVAL). Mappings and flags are the storage's own (Map Inode, Add Directory Entry)
  and are not overwritten by it.
- Clear Inode removes the inode from storage only when its link count is 0 (never the root), and then its
  mappings with it ("if and only if the inode is removed from physical storage"); otherwise it does nothing.
- Map Inode remembers (fs, dev, ino) -> ovlfs inode and the ovlfs inode's `base` or `storage` (both directions).
  A mapping is one-to-one per file system: mapping a source inode again moves it, and mapping an ovlfs inode again
  replaces its earlier mapping of that file system; the other side of what was replaced is dropped.
  Map Lookup of an unmapped inode: ENOENT.
- A directory's entries are numbered 1..n with no gaps (Read Directory: None after the last) and keep their
  positions until the directory changes. Entries are never removed, only flagged: an unlinked entry stays at its
  position, flagged UNLINKED, so a base name once deleted never reappears. A name appears once in a directory.
- Lookup never returns an unlinked entry (ENOENT). Unlink of a name that is not live (missing or already
  unlinked): ENOENT.
- Add of a live name: EEXIST. Add over an unlinked entry of the same name replaces it in place (same position),
  flagged RELINK only, and sets NO_BASE_REF on the inode; otherwise the entry goes at position n+1. The inode must
  exist (ENOENT): it is the one that gets NO_BASE_REF.
- Rename (within one directory) keeps the old name as an unlinked entry at the old position and puts the entry,
  flagged as the original was, at the position of an entry of the new name if there is one (unlinked, or live:
  the live one is replaced, as rename(2) replaces its target), else at n+1. Renaming a name to itself: nothing
  changes (if the name is live). A name that is not live: ENOENT.
- Names: "", ".", "..", or containing "/" or NUL: EINVAL; longer than 255 bytes: ENAMETOOLONG.
- A symlink's target is set by Set Symlink (its size becomes the target's length); Read/Set Symlink of another
  kind of inode: EINVAL.
- No directory operation changes a link count, a size or a time: the caller's Update Inode does (a rename over a
  live name included).
- Directories' entries are dropped with their inode; file contents are not here (base.py: `Contents`).

The tables are stored as JSON: `to_json()` gives {"next_ino": N, "inodes": {"<ino>": record}}, one record per
inode (`record()`: attributes, "base"/"storage" [dev, ino] or null, "name", "flags", and "entries"
[[name, ino, [flags]], ...] for a directory, "target" for a symlink); the mappings are read back from the records.
`touched` collects the inodes whose record changed (or that left storage), for a method that writes each change.
"""

from __future__ import annotations

import errno as E
import stat as st
from dataclasses import dataclass, field, replace
from typing import Any

from vfslab.impl.ovlfs.storage.method import (
    BASE,
    NO_BASE_REF,
    RELINK,
    ROOT_INO,
    STORAGE,
    UNLINKED,
    Dirent,
    Inode,
    storage_error,
)

NAME_MAX = 255
FLAGS = frozenset({UNLINKED, RELINK, NO_BASE_REF})
FILE_TYPES = frozenset({st.S_IFREG, st.S_IFDIR, st.S_IFLNK, st.S_IFCHR, st.S_IFBLK, st.S_IFIFO, st.S_IFSOCK})
#: the attributes Update Inode saves, and the integer fields of a record
ATTRIBUTES = ("mode", "uid", "gid", "size", "nlink", "atime_ns", "mtime_ns", "ctime_ns", "rdev")


def root_inode(uid: int, gid: int, now_ns: int) -> Inode:
    """The empty root directory mkfs writes."""
    return Inode(mode=st.S_IFDIR | 0o755, uid=uid, gid=gid, nlink=2, atime_ns=now_ns, mtime_ns=now_ns,
                 ctime_ns=now_ns)


@dataclass
class Directory:
    """A directory's entries, position p at index p-1, and where each name is."""

    entries: list[Dirent] = field(default_factory=list)
    where: dict[str, int] = field(default_factory=dict)  # name -> index

    def find(self, name: str) -> int | None:
        return self.where.get(name)

    def put(self, index: int, entry: Dirent) -> None:
        """Entry `index` becomes `entry` (index == len: a new last entry)."""
        if index == len(self.entries):
            self.entries.append(entry)
        else:
            del self.where[self.entries[index].name]
            self.entries[index] = entry
        self.where[entry.name] = index

    def live(self) -> int:
        return sum(not e.unlinked for e in self.entries)


def _check_name(name: str) -> None:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise storage_error(E.EINVAL, f"not a name for an entry: {name!r}")
    if len(name.encode(errors="surrogateescape")) > NAME_MAX:
        raise storage_error(E.ENAMETOOLONG, name[:40] + "...")


class Tables:
    def __init__(self, next_ino: int, inodes: dict[int, Inode], dirs: dict[int, Directory],
                 targets: dict[int, str]) -> None:
        self.next_ino = next_ino
        self.inodes = inodes
        self.dirs = dirs
        self.targets = targets
        self.maps: dict[tuple[str, int, int], int] = {}
        for ino, node in inodes.items():
            for fs, source in ((BASE, node.base), (STORAGE, node.storage)):
                if source is not None:
                    self.maps[(fs, *source)] = ino
        self.touched: set[int] = set()

    @classmethod
    def fresh(cls, root: Inode) -> Tables:
        return cls(ROOT_INO + 1, {ROOT_INO: root}, {ROOT_INO: Directory()}, {})

    # ---- inodes ---------------------------------------------------------------------------------------

    def inode(self, ino: int) -> Inode:
        try:
            return self.inodes[ino]
        except KeyError:
            raise storage_error(E.ENOENT, f"no inode {ino}") from None

    def directory(self, ino: int) -> Directory:
        self.inode(ino)
        try:
            return self.dirs[ino]
        except KeyError:
            raise storage_error(E.ENOTDIR, f"inode {ino}") from None

    def regular(self, ino: int) -> Inode:
        """The inode of a regular file, for Read/Write File (EISDIR for a directory, EINVAL otherwise)."""
        node = self.inode(ino)
        if not st.S_ISREG(node.mode):
            raise storage_error(E.EISDIR if st.S_ISDIR(node.mode) else E.EINVAL, f"inode {ino} is no regular file")
        return node

    def add_inode(self, ref: Inode) -> int:
        if st.S_IFMT(ref.mode) not in FILE_TYPES:
            raise storage_error(E.EINVAL, f"mode {ref.mode:o} has no file type")
        ino = self.next_ino
        self.next_ino += 1
        self.inodes[ino] = replace(ref, base=None, storage=None, flags=frozenset())
        if st.S_ISDIR(ref.mode):
            self.dirs[ino] = Directory()
        elif st.S_ISLNK(ref.mode):
            self.targets[ino] = ""
        self.touched.add(ino)
        return ino

    def read_inode(self, ino: int) -> Inode:
        return replace(self.inode(ino))

    def update_inode(self, ino: int, inode: Inode) -> None:
        node = self.inode(ino)
        if st.S_IFMT(inode.mode) != st.S_IFMT(node.mode):
            raise storage_error(E.EINVAL, f"inode {ino}: Update Inode cannot change the file type")
        self.inodes[ino] = replace(node, name=inode.name, **{a: getattr(inode, a) for a in ATTRIBUTES})
        self.touched.add(ino)

    def set_size(self, ino: int, size: int) -> None:
        self.inodes[ino] = replace(self.inode(ino), size=size)
        self.touched.add(ino)

    def clear_inode(self, ino: int) -> bool:
        """True when the inode left storage (link count 0): its contents must go too."""
        node = self.inode(ino)
        if node.nlink or ino == ROOT_INO:
            return False
        for fs, source in ((BASE, node.base), (STORAGE, node.storage)):
            if source is not None:
                del self.maps[(fs, *source)]
        del self.inodes[ino]
        self.dirs.pop(ino, None)
        self.targets.pop(ino, None)
        self.touched.add(ino)
        return True

    # ---- mappings -------------------------------------------------------------------------------------

    def map_inode(self, ino: int, fs: str, dev: int, src_ino: int) -> None:
        if fs not in (BASE, STORAGE):
            raise storage_error(E.EINVAL, f"no file system {fs!r} (base or storage)")
        node = self.inode(ino)
        key = (fs, dev, src_ino)
        before = self.maps.get(key)
        if before is not None and before != ino:  # the source inode moves: its old ovlfs inode loses it
            self.inodes[before] = replace(self.inodes[before], **{fs: None})
            self.touched.add(before)
        if getattr(node, fs) is not None:  # the ovlfs inode's earlier mapping of this file system goes
            del self.maps[(fs, *getattr(node, fs))]
        self.maps[key] = ino
        self.inodes[ino] = replace(node, **{fs: (dev, src_ino)})
        self.touched.add(ino)

    def map_lookup(self, fs: str, dev: int, src_ino: int) -> int:
        try:
            return self.maps[(fs, dev, src_ino)]
        except KeyError:
            raise storage_error(E.ENOENT, f"no mapping of {fs} inode ({dev}, {src_ino})") from None

    # ---- directories ----------------------------------------------------------------------------------

    def number_dirent(self, dir_ino: int, include_deleted: bool) -> int:
        d = self.directory(dir_ino)
        return len(d.entries) if include_deleted else d.live()

    def read_directory(self, dir_ino: int, pos: int) -> Dirent | None:
        d = self.directory(dir_ino)
        if pos < 1:
            raise storage_error(E.EINVAL, f"position {pos}: positions start at 1")
        return d.entries[pos - 1] if pos <= len(d.entries) else None

    def _live(self, d: Directory, name: str) -> int:
        """The index of the live entry `name`, or ENOENT."""
        i = d.find(name)
        if i is None or d.entries[i].unlinked:
            raise storage_error(E.ENOENT, name)
        return i

    def lookup_dirent(self, dir_ino: int, name: str) -> int:
        d = self.directory(dir_ino)
        return d.entries[self._live(d, name)].ino

    def add_dirent(self, dir_ino: int, name: str, ino: int) -> None:
        d = self.directory(dir_ino)
        _check_name(name)
        node = self.inode(ino)
        i = d.find(name)
        if i is None:
            d.put(len(d.entries), Dirent(name, ino))
        elif not d.entries[i].unlinked:
            raise storage_error(E.EEXIST, name)
        else:  # over a deleted entry: in its place, and the inode no longer refers to the base's `name`
            d.put(i, Dirent(name, ino, frozenset({RELINK})))
            self.inodes[ino] = replace(node, flags=node.flags | {NO_BASE_REF})
            self.touched.add(ino)
        self.touched.add(dir_ino)

    def rename_dirent(self, dir_ino: int, old: str, new: str) -> None:
        d = self.directory(dir_ino)
        i = self._live(d, old)
        _check_name(new)
        if new == old:
            return
        entry = d.entries[i]
        j = d.find(new)
        d.put(i, replace(entry, flags=entry.flags | {UNLINKED}))  # the old name stays deleted
        d.put(len(d.entries) if j is None else j, replace(entry, name=new))
        self.touched.add(dir_ino)

    def unlink_dirent(self, dir_ino: int, name: str) -> None:
        d = self.directory(dir_ino)
        i = self._live(d, name)
        d.put(i, replace(d.entries[i], flags=d.entries[i].flags | {UNLINKED}))
        self.touched.add(dir_ino)

    # ---- symlinks -------------------------------------------------------------------------------------

    def _symlink(self, ino: int) -> Inode:
        node = self.inode(ino)
        if not st.S_ISLNK(node.mode):
            raise storage_error(E.EINVAL, f"inode {ino} is no symlink")
        return node

    def set_symlink(self, ino: int, target: str) -> None:
        node = self._symlink(ino)
        self.targets[ino] = target
        self.inodes[ino] = replace(node, size=len(target.encode(errors="surrogateescape")))
        self.touched.add(ino)

    def read_symlink(self, ino: int) -> str:
        self._symlink(ino)
        return self.targets[ino]

    # ---- as stored ------------------------------------------------------------------------------------

    def record(self, ino: int) -> dict[str, Any]:
        node = self.inodes[ino]
        out: dict[str, Any] = {a: getattr(node, a) for a in ATTRIBUTES}
        out |= {"base": node.base and list(node.base), "storage": node.storage and list(node.storage),
                "name": node.name, "flags": sorted(node.flags)}
        if ino in self.dirs:
            out["entries"] = [[e.name, e.ino, sorted(e.flags)] for e in self.dirs[ino].entries]
        if ino in self.targets:
            out["target"] = self.targets[ino]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"next_ino": self.next_ino, "inodes": {str(ino): self.record(ino) for ino in sorted(self.inodes)}}

    @classmethod
    def from_records(cls, next_ino: Any, records: dict[int, Any], what: str) -> Tables:
        """Tables from stored records, every field checked: EUCLEAN, naming `what`, if any is not as written."""
        try:
            return cls._from_records(next_ino, records)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise storage_error(E.EUCLEAN, f"{what}: corrupt storage ({type(e).__name__}: {e})") from None

    @classmethod
    def from_json(cls, data: Any, what: str) -> Tables:
        if not isinstance(data, dict) or not isinstance(data.get("inodes"), dict):
            raise storage_error(E.EUCLEAN, f"{what}: corrupt storage (no inode table)")
        try:
            records = {_key(k): r for k, r in data["inodes"].items()}
        except ValueError as e:
            raise storage_error(E.EUCLEAN, f"{what}: corrupt storage ({e})") from None
        return cls.from_records(data.get("next_ino"), records, what)

    @classmethod
    def _from_records(cls, next_ino: Any, records: dict[int, Any]) -> Tables:
        inodes, dirs, targets = {}, {}, {}
        for ino, r in records.items():
            attrs = {a: _int(r[a]) for a in ATTRIBUTES}
            flags = _flags(r["flags"])
            if st.S_IFMT(attrs["mode"]) not in FILE_TYPES or not isinstance(r["name"], str):
                raise ValueError(f"inode {ino}: bad mode or name")
            inodes[ino] = Inode(**attrs, base=_source(r["base"]), storage=_source(r["storage"]), name=r["name"],
                                flags=flags)
            if st.S_ISDIR(attrs["mode"]):
                d = dirs[ino] = Directory()
                for name, child, eflags in r["entries"]:
                    if not isinstance(name, str) or name in d.where:
                        raise ValueError(f"directory {ino}: entry {name!r} twice or not a name")
                    d.put(len(d.entries), Dirent(name, _int(child), _flags(eflags)))
            elif st.S_ISLNK(attrs["mode"]):
                if not isinstance(r["target"], str):
                    raise ValueError(f"symlink {ino}: no target")
                targets[ino] = r["target"]
        if ROOT_INO not in dirs or min(inodes) < ROOT_INO:
            raise ValueError("no root directory, or an inode numbered below it")
        next_ino = _int(next_ino)
        if next_ino <= max(inodes):
            raise ValueError(f"next inode number {next_ino} already in use")
        tables = cls(next_ino, inodes, dirs, targets)
        if len(tables.maps) != sum((n.base is not None) + (n.storage is not None) for n in inodes.values()):
            raise ValueError("a source inode mapped to two ovlfs inodes")
        return tables

    def dump(self) -> dict[str, Any]:
        """The tables as a JSON-able picture: inodes (without entries), directories with positions and flags,
        mappings. Part of the dump `base.TablesMethod.dump` gives."""
        inodes = {}
        for ino in sorted(self.inodes):
            inodes[str(ino)] = {k: v for k, v in self.record(ino).items() if k != "entries"}
        dirs = {str(ino): [{"pos": p, "name": e.name, "ino": e.ino, "flags": sorted(e.flags)}
                           for p, e in enumerate(self.dirs[ino].entries, 1)] for ino in sorted(self.dirs)}
        maps = [{"fs": fs, "dev": dev, "ino": src, "ovlfs": ino} for (fs, dev, src), ino in sorted(self.maps.items())]
        return {"next_ino": self.next_ino, "inodes": inodes, "dirs": dirs, "mappings": maps}


def _key(value: str) -> int:
    """An inode number as a JSON object's key spells it."""
    if not value.isdigit():
        raise ValueError(f"not an inode number: {value!r}")
    return int(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):  # bool is an int to Python, not to a record
        raise ValueError(f"not an integer: {value!r}")
    return value


def _flags(value: Any) -> frozenset[str]:
    flags = frozenset(value)
    if not flags <= FLAGS:
        raise ValueError(f"unknown flags {sorted(flags - FLAGS)}")
    return flags


def _source(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    dev, ino = value
    return _int(dev), _int(ino)
