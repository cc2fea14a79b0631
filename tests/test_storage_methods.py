"""Our ovlfs storage methods (impl/ovlfs/storage): seed 002's rules on each, their storage refused when it is not
theirs, crashes at every persist point, planted symlinks, and the python: loader."""

from __future__ import annotations

import errno as E
import os
import stat as st
from collections.abc import Callable
from pathlib import Path

import pytest

from vfslab.impl.ovlfs.storage import dump, mkfs, open_method
from vfslab.impl.ovlfs.storage.method import (
    BASE,
    NO_BASE_REF,
    RELINK,
    ROOT_INO,
    STORAGE,
    UNLINKED,
    Dirent,
    Inode,
    StorageMethod,
)
from vfslab.impl.pmem.pool import Crash

SCHEMES = ("dir", "file", "pmem")
FILE = Inode(mode=st.S_IFREG | 0o644, nlink=1, uid=7, gid=8, mtime_ns=5)
DIR = Inode(mode=st.S_IFDIR | 0o755, nlink=2)
LINK = Inode(mode=st.S_IFLNK | 0o777, nlink=1)


def location(tmp_path: Path, scheme: str) -> str:
    return str(tmp_path / {"dir": "store", "file": "store.ovlfs", "pmem": "pool"}[scheme])


def spec_of(tmp_path: Path, scheme: str) -> str:
    return f"{scheme}:{location(tmp_path, scheme)}" + ("?size=1M" if scheme == "pmem" else "")


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(params=SCHEMES)
def scheme(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def spec(tmp_path: Path, scheme: str) -> str:
    spec = spec_of(tmp_path, scheme)
    mkfs(spec)
    return spec


@pytest.fixture
def m(spec: str) -> StorageMethod:
    method = open_method(spec)
    method.init()
    yield method
    method.release()


def remount(m: StorageMethod) -> StorageMethod:
    m.sync()
    m.release()
    m.init()
    return m


def names(m: StorageMethod, dir_ino: int = ROOT_INO) -> list[Dirent]:
    out, pos = [], 1
    while (entry := m.read_directory(dir_ino, pos)) is not None:
        out.append(entry)
        pos += 1
    return out


def errno_of(call: Callable[[], object]) -> int:
    with pytest.raises(OSError) as e:
        call()
    assert "\n" not in str(e.value)
    return e.value.errno


def populate(m: StorageMethod, *entries: str) -> dict[str, int]:
    inos = {}
    for name in entries:
        inos[name] = m.add_inode(FILE)
        m.add_dirent(ROOT_INO, name, inos[name])
    return inos


# ---- the seed's rules, on every method ------------------------------------------------------------------


def test_mkfs_makes_an_empty_root(m):
    root = m.read_inode(ROOT_INO)
    assert (root.mode, root.nlink) == (st.S_IFDIR | 0o755, 2)
    assert m.number_dirent(ROOT_INO, True) == 0
    assert m.read_directory(ROOT_INO, 1) is None
    assert errno_of(lambda: m.read_inode(99)) == E.ENOENT


def test_inode_numbers_are_unique_and_attributes_kept(m):
    a, b = m.add_inode(FILE), m.add_inode(DIR)
    assert len({ROOT_INO, a, b}) == 3
    node = m.read_inode(a)
    assert (node.mode, node.uid, node.gid, node.mtime_ns, node.base, node.flags) == \
        (FILE.mode, 7, 8, 5, None, frozenset())
    m.update_inode(a, Inode(mode=FILE.mode, uid=1, nlink=3, ctime_ns=9, name="ref"))
    remount(m)
    node = m.read_inode(a)
    assert (node.uid, node.nlink, node.ctime_ns, node.name) == (1, 3, 9, "ref")
    assert errno_of(lambda: m.update_inode(a, DIR)) == E.EINVAL  # not the file type
    assert m.number_dirent(b, True) == 0
    assert errno_of(lambda: m.number_dirent(a, True)) == E.ENOTDIR


def test_positions_are_stable_and_unlinked_entries_flagged(m):
    inos = populate(m, "a", "b", "c")
    assert [(e.name, e.ino) for e in names(m)] == [("a", inos["a"]), ("b", inos["b"]), ("c", inos["c"])]
    m.unlink_dirent(ROOT_INO, "b")
    entries = names(m)
    assert [e.name for e in entries] == ["a", "b", "c"]
    assert entries[1].flags == {UNLINKED} and not entries[0].flags and not entries[2].flags
    assert errno_of(lambda: m.lookup_dirent(ROOT_INO, "b")) == E.ENOENT
    assert errno_of(lambda: m.unlink_dirent(ROOT_INO, "b")) == E.ENOENT  # already unlinked
    assert errno_of(lambda: m.unlink_dirent(ROOT_INO, "zz")) == E.ENOENT
    assert (m.number_dirent(ROOT_INO, True), m.number_dirent(ROOT_INO, False)) == (3, 2)
    assert m.lookup_dirent(ROOT_INO, "c") == inos["c"]
    assert m.read_directory(ROOT_INO, 4) is None
    assert errno_of(lambda: m.read_directory(ROOT_INO, 0)) == E.EINVAL
    m.add_dirent(ROOT_INO, "d", m.add_inode(FILE))
    assert [e.name for e in names(m)] == ["a", "b", "c", "d"]


def test_unlinked_entries_survive_remount(m):
    populate(m, "a", "b")
    m.unlink_dirent(ROOT_INO, "a")
    remount(m)
    assert names(m)[0] == Dirent("a", names(m)[0].ino, frozenset({UNLINKED}))
    assert errno_of(lambda: m.lookup_dirent(ROOT_INO, "a")) == E.ENOENT
    assert m.number_dirent(ROOT_INO, False) == 1


def test_add_over_an_unlinked_entry_relinks_in_place(m):
    inos = populate(m, "a", "b")
    assert errno_of(lambda: m.add_dirent(ROOT_INO, "a", inos["b"])) == E.EEXIST
    m.unlink_dirent(ROOT_INO, "a")
    new = m.add_inode(FILE)
    m.add_dirent(ROOT_INO, "a", new)
    remount(m)
    assert names(m)[0] == Dirent("a", new, frozenset({RELINK}))
    assert m.lookup_dirent(ROOT_INO, "a") == new
    assert NO_BASE_REF in m.read_inode(new).flags
    assert NO_BASE_REF not in m.read_inode(inos["b"]).flags
    for bad, code in (("", E.EINVAL), ("x/y", E.EINVAL), ("..", E.EINVAL), ("n" * 256, E.ENAMETOOLONG)):
        assert errno_of(lambda bad=bad: m.add_dirent(ROOT_INO, bad, new)) == code
    assert errno_of(lambda: m.add_dirent(ROOT_INO, "c", 999)) == E.ENOENT


def test_rename_keeps_the_old_name_unlinked(m):
    inos = populate(m, "a", "b", "c")
    m.rename_dirent(ROOT_INO, "a", "x")  # to a new name: at the end
    assert [(e.name, e.flags) for e in names(m)] == [("a", {UNLINKED}), ("b", set()), ("c", set()), ("x", set())]
    assert m.lookup_dirent(ROOT_INO, "x") == inos["a"]
    m.unlink_dirent(ROOT_INO, "b")
    m.rename_dirent(ROOT_INO, "x", "b")  # over an unlinked name: in its place, marked as the original was
    assert [(e.name, e.ino, e.flags) for e in names(m)] == [
        ("a", inos["a"], {UNLINKED}), ("b", inos["a"], set()), ("c", inos["c"], set()), ("x", inos["a"], {UNLINKED})]
    m.rename_dirent(ROOT_INO, "b", "c")  # over a live name: it is replaced
    remount(m)
    assert [(e.name, e.ino, e.flags) for e in names(m)] == [
        ("a", inos["a"], {UNLINKED}), ("b", inos["a"], {UNLINKED}), ("c", inos["a"], set()),
        ("x", inos["a"], {UNLINKED})]
    m.rename_dirent(ROOT_INO, "c", "c")
    assert m.number_dirent(ROOT_INO, False) == 1
    assert errno_of(lambda: m.rename_dirent(ROOT_INO, "a", "y")) == E.ENOENT


def test_a_relinked_entry_keeps_its_mark_through_a_rename(m):
    populate(m, "a")
    m.unlink_dirent(ROOT_INO, "a")
    m.add_dirent(ROOT_INO, "a", m.add_inode(FILE))
    m.rename_dirent(ROOT_INO, "a", "b")
    assert [(e.name, e.flags) for e in names(m)] == [("a", {RELINK, UNLINKED}), ("b", {RELINK})]


def test_mappings_both_ways_across_remount(m):
    a, b = m.add_inode(FILE), m.add_inode(FILE)
    m.map_inode(a, BASE, 10, 100)
    m.map_inode(a, STORAGE, 20, 200)
    m.map_inode(b, BASE, 10, 101)
    remount(m)
    assert (m.map_lookup(BASE, 10, 100), m.map_lookup(STORAGE, 20, 200), m.map_lookup(BASE, 10, 101)) == (a, a, b)
    assert (m.read_inode(a).base, m.read_inode(a).storage, m.read_inode(b).storage) == ((10, 100), (20, 200), None)
    assert errno_of(lambda: m.map_lookup(BASE, 20, 200)) == E.ENOENT  # a storage inode is not a base one
    assert errno_of(lambda: m.map_lookup(BASE, 10, 999)) == E.ENOENT
    m.map_inode(b, BASE, 10, 100)  # one-to-one: the source moves to b, a loses it, b's old source goes
    assert m.map_lookup(BASE, 10, 100) == b and m.read_inode(a).base is None
    assert errno_of(lambda: m.map_lookup(BASE, 10, 101)) == E.ENOENT
    assert errno_of(lambda: m.map_inode(a, "elsewhere", 1, 1)) == E.EINVAL
    assert errno_of(lambda: m.map_inode(999, BASE, 1, 1)) == E.ENOENT


def test_clear_inode_removes_only_unlinked_inodes(m):
    a = m.add_inode(FILE)
    m.map_inode(a, BASE, 1, 2)
    m.write_file(a, 0, b"data")
    m.clear_inode(a)  # nlink 1: kept
    assert m.read_inode(a).size == 4
    m.update_inode(a, Inode(mode=FILE.mode, nlink=0, size=4))
    m.clear_inode(a)
    assert errno_of(lambda: m.read_inode(a)) == E.ENOENT
    assert errno_of(lambda: m.map_lookup(BASE, 1, 2)) == E.ENOENT
    remount(m)
    assert errno_of(lambda: m.read_inode(a)) == E.ENOENT
    assert m.add_inode(FILE) > a  # never given again
    m.update_inode(ROOT_INO, Inode(mode=st.S_IFDIR | 0o755, nlink=0))
    m.clear_inode(ROOT_INO)
    assert m.read_inode(ROOT_INO).nlink == 0  # the root stays


def test_contents_have_pread_pwrite_semantics(m):
    a = m.add_inode(FILE)
    assert m.write_file(a, 0, b"hello") == 5
    assert m.write_file(a, 8, b"!") == 1  # past the end: zeros between
    assert m.read_inode(a).size == 9
    assert m.read_file(a, 0, 100) == b"hello\0\0\0!"
    assert m.read_file(a, 1, 3) == b"ell"
    assert m.read_file(a, 20, 5) == b""
    assert m.write_file(a, 50, b"") == 0 and m.read_inode(a).size == 9
    remount(m)
    assert m.read_file(a, 0, 9) == b"hello\0\0\0!"
    m.update_inode(a, Inode(mode=FILE.mode, size=2))  # truncate ...
    m.update_inode(a, Inode(mode=FILE.mode, size=6))  # ... and extend: the cut bytes are gone
    assert m.read_file(a, 0, 10) == b"he\0\0\0\0"
    b = m.add_inode(Inode(mode=FILE.mode, size=3))  # a size and no contents yet: zeros
    assert m.read_file(b, 0, 10) == b"\0\0\0"
    assert errno_of(lambda: m.write_file(ROOT_INO, 0, b"x")) == E.EISDIR
    assert errno_of(lambda: m.read_file(a, -1, 1)) == E.EINVAL


def test_symlink_targets(m):
    link = m.add_inode(LINK)
    m.set_symlink(link, "../some/where")
    remount(m)
    assert m.read_symlink(link) == "../some/where"
    assert m.read_inode(link).size == len("../some/where")
    assert errno_of(lambda: m.read_symlink(ROOT_INO)) == E.EINVAL
    assert errno_of(lambda: m.set_symlink(ROOT_INO, "x")) == E.EINVAL


def test_statfs_gives_real_numbers(m):
    populate(m, "a", "b")
    s = m.statfs()
    assert s.bsize > 0 and 0 < s.bfree <= s.blocks
    assert s.files >= 3 + s.ffree and s.ffree > 0


def test_non_utf8_names_round_trip(m):
    name = b"caf\xe9".decode(errors="surrogateescape")
    populate(m, name)
    remount(m)
    assert m.lookup_dirent(ROOT_INO, name) == names(m)[0].ino


def test_release_leaves_no_fd_open(spec):
    before = fds()
    m = open_method(spec)
    for _ in range(3):
        m.init()
        a = m.add_inode(FILE)
        m.write_file(a, 0, b"x" * 100)
        m.read_file(a, 0, 100)
        m.add_dirent(ROOT_INO, f"f{a}", a)
        m.statfs()
        m.sync()
        m.release()
    assert fds() == before


def test_release_without_sync_keeps_the_last_sync(spec, scheme):
    m = open_method(spec)
    m.init()
    populate(m, "a")
    m.sync()
    populate(m, "b")
    m.release()
    m.init()
    # pmem makes every operation durable; the others, what the last sync wrote
    assert [e.name for e in names(m)] == (["a", "b"] if scheme == "pmem" else ["a"])
    m.release()


# ---- storage that is not ours --------------------------------------------------------------------------


def garble(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(raw)


def truncate(path: Path, size: int) -> None:
    os.truncate(path, size)


def meta_file(tmp_path: Path, scheme: str) -> Path:
    """The file holding the tables (and for file:, everything)."""
    loc = Path(location(tmp_path, scheme))
    return loc / "ovlfs.meta" if scheme == "dir" else loc


BAD_STORAGE = {
    "missing": lambda tmp_path, scheme: None,
    "an empty directory": lambda tmp_path, scheme: Path(location(tmp_path, scheme)).mkdir(),
    "an empty file": lambda tmp_path, scheme: Path(location(tmp_path, scheme)).write_bytes(b""),
    "a random file": lambda tmp_path, scheme: Path(location(tmp_path, scheme)).write_bytes(os.urandom(300_000)),
    # a file: storage where a directory is expected, a dir: one where a file is
    "another method's": lambda tmp_path, scheme: mkfs(f"{'file' if scheme == 'dir' else 'dir'}:"
                                                       f"{location(tmp_path, scheme)}"),
    "truncated": lambda tmp_path, scheme: (mkfs(spec_of(tmp_path, scheme)),
                                           truncate(meta_file(tmp_path, scheme), 40)),
    "garbled": lambda tmp_path, scheme: (mkfs(spec_of(tmp_path, scheme)), garble(meta_file(tmp_path, scheme), 50)),
}


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path below `root` with its bytes (None: a directory)."""
    return {str(p): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("bad", BAD_STORAGE)
def test_init_refuses_storage_not_its_own(tmp_path, scheme, bad):
    BAD_STORAGE[bad](tmp_path, scheme)
    m = open_method(spec_of(tmp_path, scheme))
    before, files = fds(), tree(tmp_path)
    with pytest.raises(OSError) as e:
        m.init()
    assert "\n" not in str(e.value) and e.value.errno in (E.ENOENT, E.EINVAL, E.EUCLEAN, E.ENOTDIR, E.EISDIR)
    assert fds() == before  # nothing left open
    assert tree(tmp_path) == files  # nothing written
    m.release()  # harmless after a failed init


@pytest.mark.parametrize(("name", "data", "code"), [
    ("2", b"X", E.EUCLEAN),  # a record that is no JSON
    ("2", b'{"mode": 1}', E.EUCLEAN),  # nor a record
    ("ovlfs", b'{"format": "someone else\'s"}', E.EINVAL),
    ("ovlfs", b'{"format": "vfslab-ovlfs-pmem", "version": 99}', E.EINVAL),
    ("junk", b"", E.EUCLEAN),  # a file of no inode
    ("9.data", b"", E.EUCLEAN),  # contents of no inode
    ("2.data", b"longer than its size", E.EUCLEAN),
])
def test_init_refuses_a_pool_with_damaged_records(tmp_path, name, data, code):
    from vfslab.impl.pmem.fs import PmemFS

    spec = spec_of(tmp_path, "pmem")
    mkfs(spec)
    m = open_method(spec)
    m.init()
    m.write_file(populate(m, "a")["a"], 0, b"abc")
    m.release()
    fs = PmemFS.open(location(tmp_path, "pmem"))
    f = fs.openat(fs.pool.root, name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    fs.pwrite(f, data, 0)
    fs.close_file(f)
    fs.close()
    before = fds()
    assert errno_of(m.init) == code
    assert fds() == before


ROOT_RECORD = {"mode": 0o40755, "uid": 0, "gid": 0, "size": 0, "nlink": 2, "atime_ns": 0, "mtime_ns": 0,
               "ctime_ns": 0, "rdev": 0, "base": None, "storage": None, "name": "", "flags": [], "entries": []}
FILE_RECORD = ROOT_RECORD | {"mode": 0o100644, "size": 4, "entries": None}


WRONG_TABLES = [
    {"next_ino": 2, "inodes": {}},
    {"next_ino": 1, "inodes": {"1": {}}},
    {"next_ino": 1, "inodes": {"1": ROOT_RECORD}},  # a number in use next
    {"next_ino": 2, "inodes": {"1": ROOT_RECORD | {"flags": ["bogus"]}}},
    {"next_ino": 2, "inodes": {"1": ROOT_RECORD | {"nlink": "2"}}},
    {"next_ino": 2, "inodes": {"1": ROOT_RECORD | {"entries": [["a", 1, []], ["a", 1, []]]}}},
    {"next_ino": 4, "inodes": {"1": ROOT_RECORD, "2": FILE_RECORD | {"base": [1, 1]},
                               "3": FILE_RECORD | {"base": [1, 1]}}},  # one source, two inodes
]
#: file: only, whose tables say where each file's contents are in the data section (4 bytes here)
WRONG_CONTENTS = [
    {"next_ino": 3, "inodes": {"1": ROOT_RECORD, "2": FILE_RECORD}, "contents": {"2": [2, 3]}},  # past the end
    {"next_ino": 3, "inodes": {"1": ROOT_RECORD, "2": FILE_RECORD}, "contents": {"1": [0, 0]}},  # not a file
    {"next_ino": 3, "inodes": {"1": ROOT_RECORD, "2": FILE_RECORD | {"size": 1}}, "contents": {"2": [0, 4]}},
]


@pytest.mark.parametrize(("scheme", "tables"), [(s, t) for s in ("dir", "file") for t in WRONG_TABLES]
                         + [("file", t) for t in WRONG_CONTENTS], ids=lambda v: str(v)[:50])
def test_init_refuses_tables_with_wrong_records(tmp_path, scheme, tables):
    from vfslab.impl.ovlfs.storage import dir as dir_method
    from vfslab.impl.ovlfs.storage import disk
    from vfslab.impl.ovlfs.storage import file as file_method

    spec = spec_of(tmp_path, scheme)
    mkfs(spec)
    magic = dir_method.MAGIC if scheme == "dir" else file_method.MAGIC
    meta_file(tmp_path, scheme).write_bytes(disk.pack(magic, tables, b"data" if "contents" in tables else b""))
    assert errno_of(open_method(spec).init) == E.EUCLEAN


def test_a_tables_file_as_written_is_read(tmp_path):
    """The wrong records above are wrong by what they change, not by their form."""
    from vfslab.impl.ovlfs.storage import disk
    from vfslab.impl.ovlfs.storage import file as file_method

    mkfs(spec_of(tmp_path, "file"))
    meta_file(tmp_path, "file").write_bytes(disk.pack(file_method.MAGIC, {
        "next_ino": 3, "inodes": {"1": ROOT_RECORD, "2": FILE_RECORD}, "contents": {"2": [0, 4]}}, b"data"))
    m = open_method(spec_of(tmp_path, "file"))
    m.init()
    assert m.read_file(2, 0, 10) == b"data"
    m.release()


def test_mkfs_refuses_existing_storage(tmp_path, scheme):
    spec = spec_of(tmp_path, scheme)
    mkfs(spec)
    m = open_method(spec)
    m.init()
    populate(m, "a")
    m.sync()
    m.release()
    assert errno_of(lambda: mkfs(spec)) == E.EEXIST
    m.init()
    assert m.number_dirent(ROOT_INO, True) == 1  # untouched
    m.release()
    mkfs(spec, force=True)
    m.init()
    assert m.number_dirent(ROOT_INO, True) == 0
    m.release()


def test_mkfs_refuses_what_is_not_storage(tmp_path, scheme):
    loc = Path(location(tmp_path, scheme))
    if scheme == "dir":
        loc.mkdir()
        (loc / "someone's").write_text("someone's")
    else:
        loc.write_text("someone's")
    assert errno_of(lambda: mkfs(spec_of(tmp_path, scheme))) == E.EEXIST
    assert "someone's" in (loc / "someone's" if scheme == "dir" else loc).read_text()


# ---- the dir method's storage is other people's -------------------------------------------------------


def test_a_symlink_planted_in_the_storage_is_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    spec = f"dir:{tmp_path / 'store'}"
    mkfs(spec)
    m = open_method(spec)
    m.init()
    a = m.add_inode(FILE)
    m.write_file(a, 0, b"mine")
    m.sync()
    (tmp_path / "store" / "fs" / str(a)).unlink()
    os.symlink(victim, tmp_path / "store" / "fs" / str(a))
    assert errno_of(lambda: m.write_file(a, 0, b"owned")) == E.ELOOP
    assert errno_of(lambda: m.read_file(a, 0, 10)) == E.ELOOP
    assert errno_of(lambda: m.update_inode(a, Inode(mode=FILE.mode, size=1))) == E.ELOOP  # a truncate
    m.release()
    assert errno_of(m.init) == E.ELOOP  # nor repaired through it
    assert victim.read_text() == "precious"
    (tmp_path / "store" / "fs" / str(a)).unlink()
    os.link(victim, tmp_path / "store" / "fs" / str(a))  # a hard link to someone's file
    assert errno_of(m.init) == E.EINVAL
    (tmp_path / "store" / "fs" / str(a)).unlink()
    (tmp_path / "store" / "fs").rename(tmp_path / "store" / "fs.real")
    os.symlink(tmp_path, tmp_path / "store" / "fs")  # fs/ itself
    assert errno_of(m.init) in (E.ELOOP, E.ENOTDIR, E.EUCLEAN)
    (tmp_path / "store" / "fs").unlink()
    os.mkfifo(tmp_path / "store" / "fs")
    assert errno_of(m.init) in (E.ENOTDIR, E.EUCLEAN)
    assert victim.read_text() == "precious"


# ---- the whole picture ----------------------------------------------------------------------------------


def script(m: StorageMethod) -> None:
    """A bit of everything, from a root with fixed attributes (mkfs stamps the time)."""
    m.update_inode(ROOT_INO, Inode(mode=st.S_IFDIR | 0o755, nlink=3))
    inos = populate(m, "a", "b", "c")
    sub = m.add_inode(DIR)
    m.add_dirent(ROOT_INO, "sub", sub)
    m.add_dirent(sub, "inner", inos["a"])
    m.unlink_dirent(ROOT_INO, "b")
    m.add_dirent(ROOT_INO, "b", m.add_inode(FILE))
    m.rename_dirent(ROOT_INO, "c", "d")
    m.map_inode(inos["a"], BASE, 3, 30)
    m.map_inode(sub, STORAGE, 4, 40)
    m.write_file(inos["a"], 3, b"abc")
    link = m.add_inode(LINK)
    m.set_symlink(link, "a")
    m.add_dirent(sub, "l", link)
    m.update_inode(inos["c"], Inode(mode=FILE.mode, nlink=0))
    m.clear_inode(inos["c"])


def test_the_same_operations_give_the_same_dump_on_every_method(tmp_path):
    import json

    dumps = {}
    for scheme in SCHEMES:
        mkfs(spec_of(tmp_path, scheme))
        m = open_method(spec_of(tmp_path, scheme))
        m.init()
        script(m)
        dumps[scheme] = json.loads(json.dumps(dump(remount(m))))
        m.release()
    first = dumps[SCHEMES[0]]
    assert all(d == first for d in dumps.values())
    assert [(e["name"], e["flags"]) for e in first["dirs"][str(ROOT_INO)]] == [
        ("a", []), ("b", ["relink"]), ("c", ["unlinked"]), ("sub", []), ("d", [])]
    assert first["mappings"] == [{"fs": "base", "dev": 3, "ino": 30, "ovlfs": 2},
                                 {"fs": "storage", "dev": 4, "ino": 40, "ovlfs": 5}]
    assert "4" not in first["inodes"]  # c, cleared
    assert first["inodes"]["2"]["size"] == 6 and len(first["inodes"]["2"]["content"]) == 64


def test_dump_needs_a_dump():
    class Bare:
        pass

    with pytest.raises(ValueError, match="no dump"):
        dump(Bare())


# ---- crashes -------------------------------------------------------------------------------------------


def copy_storage(src: Path, dst: Path) -> None:
    import shutil

    if dst.is_dir():
        shutil.rmtree(dst)
    (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)


@pytest.mark.parametrize("scheme", ["file", "dir"])
def test_a_crash_in_a_sync_leaves_the_old_state_or_the_new(tmp_path, scheme):
    """At every persist point of a sync: before the rename, the old state; after it, the new; the temp file gone.
    (dir: metadata only; its contents are written in place between syncs.)"""
    spec = spec_of(tmp_path, scheme)
    saved = tmp_path / "saved"
    mkfs(spec)
    m = open_method(spec)
    m.init()
    inos = populate(m, "a", "b")
    if scheme == "file":
        m.write_file(inos["a"], 0, os.urandom(3000))
    m.sync()
    old = dump(m)
    m.release()
    copy_storage(Path(location(tmp_path, scheme)), saved)

    def change(m: StorageMethod) -> None:
        m.unlink_dirent(ROOT_INO, "a")
        populate(m, *(f"n{i}" for i in range(40)))
        m.map_inode(inos["b"], BASE, 1, 1)
        if scheme == "file":
            m.write_file(inos["b"], 100, os.urandom(2000))

    outcomes = []
    for k in range(1, 100):
        copy_storage(saved, Path(location(tmp_path, scheme)))
        m = open_method(spec)
        m.chunk = 1024  # several chunks, so a crash can leave the temp file half written
        m.init()
        change(m)
        new = dump(m)
        m.crash_at = m.persists + k
        try:
            m.sync()
        except Crash:
            m.release()
            m.init()
            outcomes.append("old" if dump(m) == old else "new" if dump(m) == new else "neither")
            m.release()
            assert not any(p.name.endswith(".tmp") for p in Path(location(tmp_path, scheme)).parent.rglob("*"))
            continue
        m.release()
        break
    # the last point is the directory's fsync, after the rename: the new state; all before it, the old
    assert outcomes == ["old"] * (len(outcomes) - 1) + ["new"]
    assert len(outcomes) >= (5 if scheme == "file" else 3)


PMEM_OPERATIONS = {
    "add_inode": lambda m, inos: m.add_inode(FILE),
    "add_dirent": lambda m, inos: m.add_dirent(ROOT_INO, "new", inos["b"]),
    "relink": lambda m, inos: m.add_dirent(ROOT_INO, "gone", inos["b"]),
    "unlink_dirent": lambda m, inos: m.unlink_dirent(ROOT_INO, "a"),
    "rename_dirent": lambda m, inos: m.rename_dirent(ROOT_INO, "a", "gone"),
    "map_inode": lambda m, inos: m.map_inode(inos["b"], BASE, 1, 2),
    "update_inode": lambda m, inos: m.update_inode(inos["a"], Inode(mode=FILE.mode, size=1, nlink=4)),
    "clear_inode": lambda m, inos: m.clear_inode(inos["dead"]),
    "write_file": lambda m, inos: m.write_file(inos["a"], 4000, b"y" * 5000),
    "set_symlink": lambda m, inos: m.set_symlink(inos["l"], "elsewhere"),
}


def dump_of(spec: str) -> dict:
    m = open_method(spec)
    m.init()
    try:
        return dump(m)
    finally:
        m.release()


@pytest.mark.parametrize("op", PMEM_OPERATIONS)
def test_a_crash_in_a_pmem_operation_leaves_it_undone(tmp_path, op):
    """At every persist point of one operation the pool holds the state before it (its commit is the last);
    after the last, the state after it."""
    spec = spec_of(tmp_path, "pmem")
    pool, saved = Path(location(tmp_path, "pmem")), tmp_path / "saved"
    mkfs(spec)
    m = open_method(spec)
    m.init()
    inos = populate(m, "a", "b", "gone", "dead")
    inos["l"] = m.add_inode(LINK)
    m.write_file(inos["a"], 0, b"x" * 5000)
    m.write_file(inos["dead"], 0, b"x" * 5000)
    m.unlink_dirent(ROOT_INO, "gone")
    m.unlink_dirent(ROOT_INO, "dead")
    m.update_inode(inos["dead"], Inode(mode=FILE.mode, nlink=0, size=5000))
    m.release()
    copy_storage(pool, saved)
    before = dump_of(spec)

    def run(k: int | None) -> dict:
        copy_storage(saved, pool)
        m = open_method(spec)
        m.init()
        m.crash_at = None if k is None else m.persists + k
        try:
            PMEM_OPERATIONS[op](m, inos)
            return dump(m)
        finally:
            m.release()

    after = run(None)
    assert before != after
    crashes = 0
    while True:
        try:
            assert run(crashes + 1) == after
            break
        except Crash:
            crashes += 1
            assert dump_of(spec) == before, f"crash at persist point {crashes}"
    assert crashes >= 2


def test_a_pmem_operation_too_big_for_the_log_changes_nothing(tmp_path):
    spec = spec_of(tmp_path, "pmem")  # 1 MiB: a 16 KiB undo log
    mkfs(spec)
    m = open_method(spec)
    m.init()
    a = populate(m, "a")["a"]
    m.write_file(a, 0, b"small")
    before = dump(m)
    assert errno_of(lambda: m.write_file(a, 0, os.urandom(64 << 10))) == E.ENOSPC
    assert dump(m) == before
    m.release()
    m.init()
    assert dump(m) == before
    m.release()


# ---- python: -------------------------------------------------------------------------------------------


USER_METHOD = '''
from vfslab.impl.ovlfs.storage.dir import DirMethod


class Mine(DirMethod):
    """ours, under another name"""


class Minimal:
    def init(self):
        pass

    def read_inode(self, ino):
        pass

    def map_lookup(self, fs, dev, ino):
        pass

    def read_directory(self, ino, pos):
        pass

    def __init__(self, location):
        self.location = location


class ListsOnly:
    def __init__(self, location):
        self.location = location

    def init(self):
        pass

    def read_inode(self, ino):
        pass
'''


def test_the_python_loader_loads_a_class_from_a_file(tmp_path):
    source = tmp_path / "mine.py"
    source.write_text(USER_METHOD)
    store = tmp_path / "store"
    mkfs(f"python:{source}:Mine:{store}")
    m = open_method(f"python:{source}:Mine:{store}")
    assert type(m).__name__ == "Mine" and m.location == str(store)
    m.init()
    populate(m, "a")
    remount(m)
    assert m.lookup_dirent(ROOT_INO, "a") == 2
    m.release()
    assert open_method("python:vfslab.impl.ovlfs.storage.file:FileMethod").location == ""
    assert open_method(f"python:{source}:Minimal:a:b").location == "a:b"
    with pytest.raises(ValueError, match="has no mkfs"):
        mkfs(f"python:{source}:Minimal:a")


@pytest.mark.parametrize(("spec", "message"), [
    ("python:{source}:ListsOnly", "lacks map_lookup, read_directory"),
    ("python:{source}:Nope", "no class Nope"),
    ("python:{tmp}/missing.py:Mine", "cannot import it"),
    ("python:no_such_module_here:X", "cannot import it"),
    ("python:{source}", "python:MODULE:CLASS"),
    ("tape:/dev/st0", "dir:PATH, file:PATH, pmem:POOL"),
    ("dir:", "dir:PATH"),
    ("nothing", "python:MODULE:CLASS"),
    ("pmem:/x?colour=red", "the one option is ?size=N"),
])
def test_specs_that_name_no_method_are_refused_in_one_line(tmp_path, spec, message):
    source = tmp_path / "mine.py"
    source.write_text(USER_METHOD)
    with pytest.raises(ValueError) as e:
        open_method(spec.format(source=source, tmp=tmp_path))
    assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError):
        mkfs(spec.format(source=source, tmp=tmp_path))
