"""The storage method's contract as an executable reference (seed 002, the ovlfs "Storage Method").

A storage method keeps what an ovlfs adds over its base: inodes with their attributes, directories whose entries
are numbered by position (unlinked ones kept, flagged), and mappings from inodes of the base or storage file
system to ovlfs inodes. `StorageModel` is that storage, one method per operation of the seed, named as the
interface names them (impl/ovlfs/storage/method.py), each returning an `Outcome`: the result the contract gives
(a value, or `Err(errno)` for the seed's -errno), tagged with the ids of the rules that decided it (`rules.py`).

Where the seed leaves a choice to the method, the model is told what the method chose, or offers every state the
choice allows:
- the number Add Inode hands out is the method's: `add_inode` is given it, and a number that is not new is a
  `Breach` (no result matches one);
- the figures Statfs fills in are the method's: `statfs` is given them and holds them to being a space at all;
- whether Clear Inode frees an unlinked inode, and what a Release with no Sync kept, are the method's: the
  operation leaves `choices`, the states the method may now be in, and whoever compares picks the one the method
  shows (`choose`).

Persistence: `synced` is the storage as the last Sync left it; an Init after a Release serves it. When no Sync came
first, it may also serve the storage as it was at Release: the tables (inodes, entries, mappings, symlink targets)
as synced or as they are, and file contents as synced or as last written (`recoveries`;
`storage.silent.unsynced-release`), which is also what a crash may leave (`storage.silent.crash-old-or-new`).
"""

from __future__ import annotations

import errno as E
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import wraps

from vfslab.model.outcome import Err, Fires, ModelError, Outcome
from vfslab.model.storage.rules import NAME_LIMIT

# ---- the vocabulary of the interface (impl/ovlfs/storage/method.py writes it again, on purpose) ----------------

#: the root directory's ovlfs inode number, which Init must make sure exists
ROOT_INO = 1
#: which file system a mapping's source inode lives in
BASE, STORAGE = "base", "storage"
FILE_SYSTEMS = (BASE, STORAGE)
#: an entry's flags (OVLFS_DIRENT_UNLINKED, RELINK) and an inode's (NO_BASE_REF)
UNLINKED, RELINK, NO_BASE_REF = "unlinked", "relink", "no-base-ref"
#: the seed's operations, in its order
OPERATIONS = ("init", "sync", "release", "statfs", "add_inode", "read_inode", "clear_inode", "update_inode",
              "map_inode", "map_lookup", "number_dirent", "read_directory", "lookup_dirent", "add_dirent",
              "rename_dirent", "unlink_dirent", "read_file", "write_file", "set_symlink", "read_symlink")
#: those the seed calls optional
OPTIONAL = ("read_file", "write_file", "set_symlink", "read_symlink")
#: requirement 1: "required for all of the ovlfs' functions to operate properly"
REQUIRED = ("init", "sync", "add_inode", "read_inode", "update_inode", "map_inode", "map_lookup", "lookup_dirent",
            "add_dirent", "rename_dirent", "unlink_dirent")
#: requirement 2: "the bare minimum required for the ovlfs to operate at all (i.e. mount a filesystem and see files)"
BARE_MINIMUM = ("init", "read_inode", "map_lookup", "read_directory")
#: the operations that only look: they change nothing a later operation sees
LOOKS = ("statfs", "read_inode", "map_lookup", "number_dirent", "read_directory", "lookup_dirent", "read_file",
         "read_symlink")

#: a mapping's source: (file system, device, inode number)
Key = tuple[str, int, int]


# ---- the records that cross the interface, and outcomes -----------------------------------------------------------

@dataclass(frozen=True)
class Attrs:
    """An inode as Read Inode gives it: attributes, its mappings (device, inode) in the base and storage file
    systems, its reference name, its flags (the interface's `Inode`)."""

    mode: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    nlink: int = 1
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    rdev: int = 0
    base: tuple[int, int] | None = None
    storage: tuple[int, int] | None = None
    name: str = ""
    flags: frozenset[str] = frozenset()

    def mapping(self, fs: str) -> tuple[int, int] | None:
        return self.base if fs == BASE else self.storage


@dataclass(frozen=True)
class Entry:
    """A directory entry at its position (the interface's `Dirent`)."""

    name: str
    ino: int
    flags: frozenset[str] = frozenset()

    @property
    def unlinked(self) -> bool:
        return UNLINKED in self.flags


@dataclass(frozen=True)
class Space:
    """What Statfs fills in (the interface's `StatFs`)."""

    bsize: int
    blocks: int
    bfree: int
    files: int
    ffree: int


@dataclass(frozen=True)
class Breach:
    """What the model says when the method made a choice the contract forbids: `wanted` describes what it allows.
    No result matches a Breach."""

    rule: str
    wanted: str

    def __repr__(self) -> str:
        return f"<{self.wanted}>"


def operation(method: Callable) -> Callable:
    """A model operation: what it returns (or the errno it is refused with) as an Outcome with the rules fired."""
    @wraps(method)
    def run(self: StorageModel, *args: object) -> Outcome:
        self._fired, self.choices, self._recovering = [], [], False
        try:
            value = method(self, *args)
        except ModelError as refused:
            return Outcome(Err(refused.errno), (*self._fired, refused.rule))
        return Outcome(value, tuple(self._fired))

    return run


# ---- the storage --------------------------------------------------------------------------------------------------

@dataclass
class State:
    """What the storage holds."""

    inodes: dict[int, Attrs]
    #: a directory inode's entries, by position (position 1 first)
    dirs: dict[int, list[Entry]]
    maps: dict[Key, int] = field(default_factory=dict)
    data: dict[int, bytes] = field(default_factory=dict)
    links: dict[int, str] = field(default_factory=dict)
    #: every number handed out, released ones too (storage.silent.numbers-not-reused)
    issued: set[int] = field(default_factory=set)

    def copy(self) -> State:
        return State(dict(self.inodes), {d: list(es) for d, es in self.dirs.items()}, dict(self.maps),
                     dict(self.data), dict(self.links), set(self.issued))


def is_dir(attrs: Attrs) -> bool:
    return stat.S_ISDIR(attrs.mode)


class StorageModel(Fires):
    """The storage of one ovlfs, as the contract says a method keeps it."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.synced = state.copy()
        #: each regular file's contents as last written, also of files that have left the tables since (a medium
        #: that does not journal data may still hold them)
        self.written: dict[int, bytes] = dict(state.data)
        #: the states an operation left the method a choice between, (what it chose, the state); empty: no choice
        self.choices: list[tuple[str, State]] = []
        self._released = False
        #: the choices are between what Init may have found in storage
        self._recovering = False
        self._fired: list[str] = []

    @classmethod
    def formatted(cls, root: Attrs) -> StorageModel:
        """Storage as its formatting tool left it: the root only. The root's attributes are the tool's to choose,
        but it is a directory (storage.init.root)."""
        if not is_dir(root):
            root = replace(root, mode=stat.S_IFDIR | stat.S_IMODE(root.mode))
        maps = {(fs, *root.mapping(fs)): ROOT_INO for fs in FILE_SYSTEMS if root.mapping(fs)}
        return cls(State({ROOT_INO: root}, {ROOT_INO: []}, maps, issued={ROOT_INO}))

    def choose(self, index: int) -> None:
        """The method is in the `index`-th of the states the last operation left it a choice between."""
        self.state = self.choices[index][1].copy()
        if self._recovering:  # what Init found is what the storage holds for good
            self.synced = self.state.copy()
            self.written = dict(self.state.data)
        self.choices, self._recovering = [], False

    # ---- helpers ---------------------------------------------------------------------------------------------------

    def _inode(self, ino: int) -> Attrs:
        if ino not in self.state.inodes:
            raise ModelError(E.ENOENT, "storage.silent.enoent")
        return self.state.inodes[ino]

    def _entries(self, dir_ino: int) -> list[Entry]:
        self._inode(dir_ino)
        if dir_ino not in self.state.dirs:
            raise ModelError(E.ENOTDIR, "storage.silent.enotdir")
        return self.state.dirs[dir_ino]

    def _live(self, entries: list[Entry], name: str) -> int:
        """The position (from 0) of the live entry called `name`; ENOENT when there is none."""
        for i, e in enumerate(entries):
            if e.name == name and not e.unlinked:
                return i
        raise ModelError(E.ENOENT, "storage.silent.enoent")

    def _name(self, name: str) -> None:
        """A name an entry may be given (storage.silent.names): the edge of NAME_MAX its length is at fires ("" is
        the edge at 0)."""
        size = len(name.encode(errors="surrogateescape"))
        self._edge(NAME_LIMIT, size)
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise ModelError(E.EINVAL, "storage.silent.names")
        if NAME_LIMIT.over(size):
            raise ModelError(E.ENAMETOOLONG, "storage.silent.names")

    def _store(self, ino: int, data: bytes) -> None:
        """A regular file's contents are now `data`, in the tables and on the medium."""
        self.state.data[ino] = self.written[ino] = data
        if not data:  # no contents and empty contents read the same
            del self.state.data[ino]

    @staticmethod
    def _unlinked(entries: list[Entry], name: str) -> int | None:
        return next((i for i, e in enumerate(entries) if e.name == name and e.unlinked), None)

    def _content(self, ino: int, kind: int, rule: str) -> Attrs:
        """An inode whose content an optional operation reads or writes: of type `kind`, else refused by `rule`."""
        attrs = self._inode(ino)
        if stat.S_IFMT(attrs.mode) != kind:
            raise ModelError(E.EISDIR if is_dir(attrs) and kind == stat.S_IFREG else E.EINVAL, rule)
        return attrs

    # ---- Init, Sync, Release, Statfs -------------------------------------------------------------------------------

    @operation
    def init(self) -> None:
        """Init "must prepare to serve and add inodes to the filesystem" from what physical storage holds. After
        a Release, that is what the last Sync wrote, or with no Sync since the last change any of `recoveries()`
        (storage.silent.unsynced-release)."""
        self._fire("storage.init.reads", "storage.init.root")
        if not self._released:
            return
        self._released = False
        self._fire("storage.release.frees", "storage.sync.persists")
        found = self.recoveries()
        if len(found) > 1:
            self._fire("storage.silent.unsynced-release")
        if all(state.maps for _, state in found):  # mappings of an earlier mount, which the comparison now looks up
            self._fire("storage.map.persistent")
        self.choices, self._recovering = found, True
        if len(found) == 1:  # no choice: what the storage holds is what the last Sync wrote
            self.choose(0)

    def recoveries(self) -> list[tuple[str, State]]:
        """What a new Init may find in storage now, with no Sync since the last change (or a crash now): the
        tables as the last Sync left them or as they are, and file contents as synced or as last written (as on
        a file system that journals its metadata and not its data), each read through the sizes the tables give;
        never a mix within either."""
        found: list[tuple[str, State]] = []
        for tables_are, tables in (("synced", self.synced), ("as they are", self.state)):
            for contents_are, contents in (("synced", self.synced.data), ("as last written", self.written)):
                state = tables.copy()
                state.data = {ino: contents[ino][:a.size] for ino, a in state.inodes.items()
                              if contents.get(ino) and a.size and stat.S_ISREG(a.mode)}
                if all(state != seen for _, seen in found):
                    found.append((f"tables {tables_are}, contents {contents_are}", state))
        return found

    @operation
    def sync(self) -> None:
        """Sync "must update the physical storage for the filesystem"; "any physical storage information that
        would not be updated by the update inode operation, or any other operation, must be written by this
        operation"."""
        self._fire("storage.sync.persists")
        self.synced = self.state.copy()

    @operation
    def release(self) -> None:
        """Release: "No other operations for this filesystem will be called after this one is called until the
        Init() operation is called again"."""
        self._fire("storage.release.frees")
        self._released = True

    @operation
    def statfs(self, space: Space | object) -> Space | Breach:
        """Statfs "should set the members of the given statfs structure to indicate the amount of free and used
        space and inodes". The figures are the method's (`space`, what it filled in); the model holds them to
        being a space: a block size, free space and free inodes within their totals."""
        self._fire("storage.statfs")
        sane = (isinstance(space, Space) and space.bsize > 0 and 0 <= space.bfree <= space.blocks
                and 0 <= space.ffree <= space.files)
        return space if sane else Breach("storage.statfs", "bsize > 0, 0 <= bfree <= blocks, 0 <= ffree <= files")

    # ---- inodes ----------------------------------------------------------------------------------------------------

    @operation
    def add_inode(self, ref: Attrs, number: object) -> int | Breach:
        """Add Inode "must allocate physical storage for a new inode and allocate a unique inode number (within the
        filesystem) for it", and "Set the initial attributes for the inode ... based on the reference inode given".
        The number is the method's to choose (`number`, what it handed out): the model holds it to being new, and
        never handed out before (storage.silent.numbers-not-reused). The inode starts with no mappings and no flags
        (Map Inode and Add Directory Entry make them), a symlink with an empty target."""
        self._fire("storage.add_inode.unique", "storage.silent.numbers-not-reused")
        if not isinstance(number, int) or number < 1 or number in self.state.issued:
            return Breach("storage.add_inode.unique", "a number not handed out before")
        self._fire("storage.add_inode.attributes")
        self.state.issued.add(number)
        self.state.inodes[number] = replace(ref, base=None, storage=None, flags=frozenset())
        if is_dir(ref):
            self.state.dirs[number] = []
        elif stat.S_ISLNK(ref.mode):
            self.state.links[number] = ""
        return number

    @operation
    def read_inode(self, ino: int) -> Attrs:
        """Read Inode "must set the inode's attributes, such as owner and mode", "must NOT change the inode's
        number", "must set the base and storage inode mappings" and "must set the inode's reference name, if
        defined"."""
        attrs = self._inode(ino)
        self._fire("storage.read_inode.attributes", "storage.read_inode.number-stable")
        if attrs.base or attrs.storage:
            self._fire("storage.read_inode.mappings")
        if attrs.name:
            self._fire("storage.read_inode.name")
        return attrs

    @operation
    def update_inode(self, ino: int, inode: Attrs) -> None:
        """Update Inode "must save the attributes of the inode to physical storage" and "must NOT 'unprepare' the
        inode". It saves the attributes and the reference name; the mappings and flags stay the storage's, and
        the file type cannot change (storage.silent.update-attributes). A smaller size cuts a file's contents."""
        old = self._inode(ino)
        self._fire("storage.silent.update-attributes")
        if stat.S_IFMT(inode.mode) != stat.S_IFMT(old.mode):
            raise ModelError(E.EINVAL, "storage.silent.update-attributes")
        self._fire("storage.update_inode.saves")
        self.state.inodes[ino] = replace(inode, base=old.base, storage=old.storage, flags=old.flags)
        if ino in self.state.data:
            self._store(ino, self.state.data[ino][:inode.size])

    @operation
    def clear_inode(self, ino: int) -> None:
        """Clear Inode is "called for every inode just before it is removed from the inode cache, not only inodes
        that have a link count of zero"; the storage "should only be released if the link count for the inode is
        zero", and then "can" be, "AS APPROPRIATE"; the method "must remove all mappings for the inode IF AND ONLY
        IF the inode is removed from physical storage"."""
        attrs = self._inode(ino)
        if attrs.nlink > 0 or ino == ROOT_INO:  # the root: Init "must ensure that the root directory ... exists"
            self._fire("storage.clear_inode.keeps")
            return
        self._fire("storage.clear_inode.may-release", "storage.clear_inode.mappings")
        released = self.state.copy()
        del released.inodes[ino]
        for table in (released.dirs, released.data, released.links):
            table.pop(ino, None)
        released.maps = {key: target for key, target in released.maps.items() if target != ino}
        self.choices = [("kept it", self.state), ("released it", released)]

    # ---- mappings --------------------------------------------------------------------------------------------------

    @operation
    def map_inode(self, ino: int, fs: str, dev: int, src_ino: int) -> None:
        """Map Inode "must remember the mapping from the given inode, in the base or storage filesystem, to the
        ovlfs inode given", "whether the mapping is for the base or storage filesystem", "in both directions", and
        "for later mounts". An inode has one mapping per file system (storage.silent.remap)."""
        attrs = self._inode(ino)
        self._fire("storage.map.both-ways", "storage.map.fs")
        key, maps = (fs, dev, src_ino), self.state.maps
        old = attrs.mapping(fs)
        if old is not None and old != (dev, src_ino):
            self._fire("storage.silent.remap")
            del maps[(fs, *old)]
        holder = maps.get(key)
        if holder is not None and holder != ino:
            self._fire("storage.silent.remap")
            self.state.inodes[holder] = replace(self.state.inodes[holder], **{fs: None})
        maps[key] = ino
        self.state.inodes[ino] = replace(attrs, **{fs: (dev, src_ino)})

    @operation
    def map_lookup(self, fs: str, dev: int, src_ino: int) -> int:
        """Map Lookup "must find the ovlfs inode that matches the device number and inode number ... from the
        specified filesystem", and "must return an error ( < 0 ) if the inode number is not updated"."""
        self._fire("storage.map.fs")
        found = self.state.maps.get((fs, dev, src_ino))
        if found is None:
            raise ModelError(E.ENOENT, "storage.map_lookup.enoent")
        self._fire("storage.map_lookup.found", "storage.map.both-ways")
        return found

    # ---- directories -----------------------------------------------------------------------------------------------

    @operation
    def number_dirent(self, dir_ino: int, include_deleted: bool) -> int:
        """Number Dirent "must return the number of directory entries in the directory", and "must include or
        exclude the number of removed directory entries in the directory, as requested"."""
        entries = self._entries(dir_ino)
        self._fire("storage.number_dirent.counts")
        if any(e.unlinked for e in entries):
            self._fire("storage.number_dirent.with-deleted")
        return sum(1 for e in entries if include_deleted or not e.unlinked)

    @operation
    def read_directory(self, dir_ino: int, pos: int) -> Entry | None:
        """Read Directory returns the entry at `pos`: "all directory entries must be numbered sequentially so that
        no positions from 1 through n are missing, and each position remains the same between calls", unlinked
        ones "with the directory entry flag, OVLFS_DIRENT_UNLINKED, set", and NULL only past the last. "the
        position always starts at one": position 0 is EINVAL (storage.silent.position-from-one)."""
        entries = self._entries(dir_ino)
        if pos < 1:
            raise ModelError(E.EINVAL, "storage.silent.position-from-one")
        self._fire("storage.readdir.positions", "storage.readdir.positions-stable", "storage.silent.positions-kept")
        if pos > len(entries):
            return None
        if entries[pos - 1].unlinked:
            self._fire("storage.readdir.unlinked-flagged")
        return entries[pos - 1]

    @operation
    def lookup_dirent(self, dir_ino: int, name: str) -> int:
        """Lookup Directory Entry finds "the inode number of the ovlfs inode for the entry ... whose name matches",
        and "must NEVER return deleted entries"."""
        entries = self._entries(dir_ino)
        if self._unlinked(entries, name) is not None and not any(e.name == name and not e.unlinked for e in entries):
            raise ModelError(E.ENOENT, "storage.lookup.never-deleted")
        found = entries[self._live(entries, name)]
        self._fire("storage.lookup.found")
        return found.ino

    @operation
    def add_dirent(self, dir_ino: int, name: str, ino: int) -> None:
        """Add Directory Entry "must add the entry ... so that it may be found later by the lookup operation",
        "must make certain that the entry is not marked as deleted, and that it replaces any deleted entry with the
        same name", and "must set the inode's NO_BASE_REF flag, and the directory entry's RELINK flag when the new
        directory entry is replacing an unlinked entry". A live name is EEXIST (storage.silent.add-over-live). The
        seed has it "not need to make any effort to find, validate, or otherwise modify the inode": a checker hands
        it inodes the storage holds."""
        entries = self._entries(dir_ino)
        self._name(name)
        if any(e.name == name and not e.unlinked for e in entries):
            raise ModelError(E.EEXIST, "storage.silent.add-over-live")
        self._fire("storage.add_dirent.found", "storage.silent.positions-kept")
        at = self._unlinked(entries, name)
        if at is None:
            entries.append(Entry(name, ino))
            return
        self._fire("storage.add_dirent.replaces-unlinked", "storage.add_dirent.relink")
        entries[at] = Entry(name, ino, frozenset({RELINK}))
        if ino in self.state.inodes:
            attrs = self.state.inodes[ino]
            self.state.inodes[ino] = replace(attrs, flags=attrs.flags | {NO_BASE_REF})

    @operation
    def rename_dirent(self, dir_ino: int, old: str, new: str) -> None:
        """Rename Directory Entry changes "the name of the specified entry in the ovlfs directory", only ever within
        one; it "must track the old name as an unlinked directory entry", and "must replace any unlinked entry whose
        name matches the new name with the entry", which "must remain marked the same way the original was". It
        "does not need to check the old name and new name to make sure they are different": renaming a name to
        itself changes nothing. A live entry of the new name is replaced, as rename(2) replaces its target
        (storage.silent.rename-over-live)."""
        entries = self._entries(dir_ino)
        self._fire("storage.rename.same-dir")
        at = self._live(entries, old)
        self._name(new)
        if new == old:
            self._fire("storage.rename.same-name")
            return
        moved = entries[at]
        self._fire("storage.rename.old-name-unlinked", "storage.silent.positions-kept")
        entries[at] = Entry(old, moved.ino, moved.flags | {UNLINKED})
        to = next((i for i, e in enumerate(entries) if e.name == new), None)
        if to is None:
            entries.append(Entry(new, moved.ino, moved.flags))
            return
        self._fire("storage.rename.replaces-unlinked" if entries[to].unlinked else "storage.silent.rename-over-live")
        entries[to] = Entry(new, moved.ino, moved.flags)

    @operation
    def unlink_dirent(self, dir_ino: int, name: str) -> None:
        """Unlink Directory Entry "must mark the entry, whose name is specified, as removed", and is "responsible
        for keeping track of deleted entries so that they will not reappear the next time the filesystem is
        mounted". The entry keeps its place, its inode number and its other flags
        (storage.silent.unlink-keeps-flags)."""
        entries = self._entries(dir_ino)
        at = self._live(entries, name)
        self._fire("storage.unlink.tracked", "storage.silent.unlink-keeps-flags", "storage.silent.positions-kept")
        e = entries[at]
        entries[at] = Entry(e.name, e.ino, e.flags | {UNLINKED})

    # ---- the optional operations: contents (the seed: "TO BE DETERMINED") ----------------------------------------

    @operation
    def read_file(self, ino: int, offset: int, size: int) -> bytes:
        """Read File: "Read a sequence of bytes from the given file", as pread(2) reads a file as long as the
        inode's size: what was not written reads as zeros (storage.silent.file-data)."""
        attrs = self._content(ino, stat.S_IFREG, "storage.silent.file-data")
        self._fire("storage.silent.file-data", "storage.silent.content-persists")
        length = max(0, min(offset + size, attrs.size) - offset)
        return self.state.data.get(ino, b"")[offset:offset + length].ljust(length, b"\0")

    @operation
    def write_file(self, ino: int, offset: int, data: bytes) -> int:
        """Write File: "Write a sequence of bytes to the given file", as pwrite(2): past the end the file grows,
        and its size with it (storage.silent.file-data)."""
        attrs = self._content(ino, stat.S_IFREG, "storage.silent.file-data")
        self._fire("storage.silent.file-data")
        if not data:
            return 0
        old = self.state.data.get(ino, b"")
        self._store(ino, old[:offset].ljust(offset, b"\0") + data + old[offset + len(data):])
        if offset + len(data) > attrs.size:
            self.state.inodes[ino] = replace(attrs, size=offset + len(data))
        return len(data)

    @operation
    def set_symlink(self, ino: int, target: str) -> None:
        """Set Symlink: "Set the path for the symbolic link, whose inode is given, to the specified path"; the
        inode's size becomes the path's length (storage.silent.symlink)."""
        attrs = self._content(ino, stat.S_IFLNK, "storage.silent.symlink")
        self._fire("storage.silent.symlink")
        self.state.links[ino] = target
        self.state.inodes[ino] = replace(attrs, size=len(target.encode(errors="surrogateescape")))

    @operation
    def read_symlink(self, ino: int) -> str:
        """Read Symlink: the path Set Symlink stored, empty before the first (storage.silent.symlink)."""
        self._content(ino, stat.S_IFLNK, "storage.silent.symlink")
        self._fire("storage.silent.symlink", "storage.silent.content-persists")
        return self.state.links[ino]
