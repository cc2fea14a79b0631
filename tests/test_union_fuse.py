"""union-fuse (impl/union) on real mounts: the on-disk format both ways with kernel overlayfs, hard links,
open files, errnos, symlink containment, permissions, a crash in the middle of writes, and the commands."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vfslab.subjects import mounts
from vfslab.subjects.driver import as_caller
from vfslab.subjects.tree import Node, build_layer
from vfslab.subjects.walk import disk_state, union_state

pytestmark = pytest.mark.mounts

PROGRAM = [sys.executable, "-m", "vfslab.impl.union.main"]
OPTIONS = {"overlayfs": "redirect_dir=off,index=off", "overlayfs-redirect-index": "redirect_dir=on,index=on"}

LOWER = (
    Node("dir", "dir", 0o755), Node("dir/file", "file", data=b"lower file"), Node("dir/sub", "dir", 0o755),
    Node("dir/sub/deep", "file", data=b"deep"), Node("gone", "file", data=b"to be unlinked"),
    Node("link1", "file", data=b"linked", xattrs=(("user.k", b"v"),)), Node("link2", "hardlink", target="link1"),
    Node("empty", "dir", 0o700), Node("sym", "symlink", target="dir/file"),
    Node("mode600", "file", 0o600, uid=1000, gid=1000, data=b"private"),
    Node("home", "dir", 0o755, uid=1000, gid=1000),
)
MIDDLE = (Node("dir", "dir", 0o755), Node("dir/below", "file", data=b"from the second layer"))


def _layers(root: Path, *trees: tuple[Node, ...]) -> list[Path]:
    out = []
    for i, nodes in enumerate(trees):
        d = root / f"lower{i}"
        d.mkdir()
        build_layer(nodes, d)
        out.append(d)
    return out


def _dirs(root: Path, *names: str) -> list[Path]:
    for name in names:
        (root / name).mkdir()
    return [root / name for name in names]


def mount_ours(lowers: list[Path], upper: Path | None, work: Path | None, mnt: Path, extra: str = "") -> int:
    opts = "lowerdir=" + ":".join(map(str, lowers))
    if upper is not None:
        opts += f",upperdir={upper},workdir={work}"
    opts += f",{extra}" if extra else ""
    return mounts.start_fuse([*PROGRAM, "-f", "-o", opts, str(mnt)], mnt, log=mnt.parent / "union-fuse.log").pid


def mount_kernel(lowers: list[Path], upper: Path | None, work: Path | None, mnt: Path, extra: str) -> None:
    opts = "lowerdir=" + ":".join(map(str, lowers))
    if upper is not None:
        opts += f",upperdir={upper},workdir={work}"
    mounts.mount_overlay(f"{opts},{extra},metacopy=off,xino=off", mnt)


def workload(mnt: Path) -> None:
    """Copy-up, whiteouts, an opaque directory, a directory rename, hard links, xattrs, a new subtree."""
    (mnt / "dir/file").write_bytes(b"changed through the union")
    os.unlink(mnt / "gone")
    os.rmdir(mnt / "empty")
    os.mkdir(mnt / "empty")  # over a whiteout: opaque
    (mnt / "empty/new").write_bytes(b"new")
    with open(mnt / "link1", "ab") as f:
        f.write(b" and appended")
    os.link(mnt / "link2", mnt / "link3")
    os.setxattr(mnt / "dir/sub/deep", "user.mark", b"1")
    os.chmod(mnt / "dir/sub", 0o750)
    os.rename(mnt / "dir/sub", mnt / "dir/moved")  # EXDEV without redirect_dir
    os.symlink("moved/deep", mnt / "dir/newlink")


def run_workload(mnt: Path) -> None:
    try:
        workload(mnt)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        os.rename(mnt / "dir/sub/deep", mnt / "dir/deep")


def fresh(scratch: Path, who: str) -> tuple[list[Path], Path, Path, Path, Callable]:
    """Fresh LOWER and MIDDLE layers with an upper, work and mount directory under scratch/who, and the mount
    call of `who` (kernel overlayfs, or ours)."""
    root = scratch / who
    root.mkdir()
    lowers = _layers(root, LOWER, MIDDLE)
    upper, work, mnt = _dirs(root, "upper", "work", "mnt")
    return lowers, upper, work, mnt, mount_kernel if who == "kernel" else mount_ours


def on_both(need, scratch: Path, extra: str, run: Callable[[Path], object]) -> Iterator[tuple[str, tuple, object]]:
    """Kernel overlayfs, then union-fuse, each mounted with `extra` over fresh LOWER and MIDDLE layers: who, its
    (lowers, upper, work, mnt), and what `run(mnt)` gave, with the mount gone again."""
    need("union-fuse")
    need("kernel-overlay")
    for who in ("kernel", "ours"):
        lowers, upper, work, mnt, mount = fresh(scratch, who)
        pid = mount(lowers, upper, work, mnt, extra)
        try:
            result = run(mnt)
        finally:
            mounts.unmount(mnt, pid)
        yield who, (lowers, upper, work, mnt), result


@pytest.mark.parametrize("profile", sorted(OPTIONS))
def test_on_disk_format_reads_the_same_both_ways(need, scratch, profile):
    """The same workload through the kernel and through union-fuse: the two unions look the same, the two
    upper layers hold the same entries and markers, and each upper layer mounted by the other reads the same
    (as an upper layer with its work dir, and as a lower layer)."""
    extra = OPTIONS[profile]
    seen, uppers = {}, {}
    for who, dirs, state in on_both(need, scratch, extra, lambda mnt: run_workload(mnt) or union_state(mnt)):
        seen[who], uppers[who] = state, dirs
    assert seen["ours"] == seen["kernel"]
    assert disk_state(uppers["ours"][1]) == disk_state(uppers["kernel"][1])

    lowers, upper, work, mnt = uppers["ours"]
    mount_kernel(lowers, upper, work, mnt, extra)  # the kernel on our layers
    try:
        assert union_state(mnt) == seen["kernel"]
    finally:
        mounts.unmount(mnt)
    lowers, upper, work, mnt = uppers["kernel"]
    pid = mount_ours(lowers, upper, work, mnt, extra)  # ours on the kernel's layers
    try:
        assert union_state(mnt) == seen["kernel"]
    finally:
        mounts.unmount(mnt, pid)
    for who in ("ours", "kernel"):  # an old upper layer as the topmost lower layer, read-only
        lowers, upper, _, mnt = uppers[who]
        pid = mount_ours([upper, *lowers], None, None, mnt)
        try:
            ours = union_state(mnt)
        finally:
            mounts.unmount(mnt, pid)
        mount_kernel([upper, *lowers], None, None, mnt, "redirect_dir=follow" if "on" in extra else extra)
        try:
            assert ours == union_state(mnt), who
        finally:
            mounts.unmount(mnt)


@dataclass
class Union:
    lowers: list[Path]
    upper: Path
    work: Path
    mnt: Path
    pid: int = 0

    def mount(self) -> None:
        self.pid = mount_ours(self.lowers, self.upper, self.work, self.mnt)

    def remount(self) -> None:
        mounts.unmount(self.mnt, self.pid)
        self.mount()


#: every name the caching workload touches; looked at by stat alone (a readdir would refresh the kernel's caches)
LOOKED_AT = ("dir", "dir/file", "dir/sub", "dir/sub/deep", "dir/below", "link1", "link2", "link3", "empty", "sym")


def _look(mnt: Path) -> dict:
    """What stat shows of every name, read through the kernel's caches; an inode number as the first name seen
    with it (the numbers are each layer's own)."""
    out: dict = {}
    first: dict[int, str] = {}
    for name in LOOKED_AT:
        try:
            s = os.lstat(mnt / name)
        except FileNotFoundError:
            out[name] = None
            continue
        out[name] = (s.st_mode, s.st_nlink, s.st_size, s.st_uid, first.setdefault(s.st_ino, name))
    return out


def caching_workload(mnt: Path) -> list:
    """Changes the kernel cannot see in its caches, each followed by a look at what it changed through another
    name: copy-ups that merge directories, and changes through one name of a lower hard link seen through the
    other (open before the change, and after)."""
    seen = [_look(mnt)]
    with open(mnt / "link2", "rb") as reader:
        reader.read()
        os.chmod(mnt / "dir/sub/deep", 0o640)  # copies up dir and dir/sub: merged now, one link each
        seen.append(_look(mnt))
        with open(mnt / "link1", "ab") as f:
            f.write(b" and more")
        reader.seek(0)
        seen.append(reader.read())
    seen.append((mnt / "link2").read_bytes())
    os.chmod(mnt / "link1", 0o604)
    os.link(mnt / "link2", mnt / "link3")
    seen.append(_look(mnt))
    os.unlink(mnt / "link1")
    os.rename(mnt / "dir/file", mnt / "link3")
    seen.append(_look(mnt))
    return seen


@pytest.mark.parametrize("profile", sorted(OPTIONS))
def test_what_the_kernel_caches_stays_true(need, scratch, profile):
    """union-fuse lets the kernel cache entries, attributes and pages, and tells it what changed behind its back:
    after every change, what every name shows is what kernel overlayfs shows after the same change."""
    seen = {who: looks for who, _, looks in on_both(need, scratch, OPTIONS[profile], caching_workload)}
    for step, (ours, kernel) in enumerate(zip(seen["ours"], seen["kernel"], strict=True)):
        assert ours == kernel, f"step {step}"


@pytest.fixture
def union(need, scratch) -> Iterator[Union]:
    """A union-fuse mount with its defaults (redirect_dir=on, index=on) over LOWER and MIDDLE."""
    need("union-fuse")
    u = Union(_layers(scratch, LOWER, MIDDLE), *_dirs(scratch, "upper", "work", "mnt"))
    u.mount()
    yield u
    mounts.unmount(u.mnt, u.pid)


def test_the_multithreaded_loop_serves_callers_at_once(need, scratch):
    """With max_threads=N, libfuse's workers serve callers side by side: threads each copy up, write, rename and
    unlink files of their own while another reads a lower file over and over; each sees what it would alone, and
    the daemon ran more than one worker."""
    need("union-fuse")
    lower = scratch / "lower"
    lower.mkdir()
    build_layer((Node("big", "file", data=os.urandom(1 << 20)),
                 *(Node(f"t{t}", "dir", 0o755) for t in range(6)),
                 *(Node(f"t{t}/f{i}", "file", data=b"lower %d" % i) for t in range(6) for i in range(20))), lower)
    upper, work, mnt = _dirs(scratch, "upper", "work", "mnt")
    pid = mount_ours([lower], upper, work, mnt, "max_threads=4")
    try:
        expected = (lower / "big").read_bytes()
        wrong: list[str] = []
        done = threading.Event()

        def reader() -> None:
            while not done.is_set():
                if (mnt / "big").read_bytes() != expected:
                    wrong.append("big")

        def changer(t: int) -> None:
            for i in range(20):
                path = mnt / f"t{t}/f{i}"
                with open(path, "ab") as f:
                    f.write(b" changed")
                os.rename(path, mnt / f"t{t}/g{i}")
                if (mnt / f"t{t}/g{i}").read_bytes() != b"lower %d changed" % i:
                    wrong.append(f"t{t}/g{i}")
                if i % 2:
                    os.unlink(mnt / f"t{t}/g{i}")

        threads = [threading.Thread(target=reader)] + [threading.Thread(target=changer, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        workers = 0
        for thread in threads[1:]:
            workers = max(workers, len(os.listdir(f"/proc/{pid}/task")))
            thread.join()
        done.set()
        threads[0].join()
        assert not wrong
        for t in range(6):
            assert sorted(os.listdir(mnt / f"t{t}")) == sorted(f"g{i}" for i in range(0, 20, 2))
        assert workers > 2, "the daemon's main thread and more than one worker"
    finally:
        mounts.unmount(mnt, pid)


def test_hard_links_stay_one_file_across_copy_up_and_remount(union):
    mnt, work = union.mnt, union.work
    before = os.stat(mnt / "link1").st_ino
    with open(mnt / "link2", "r+b") as f:  # copy-up of the second name
        f.write(b"LINKED")
    for name in ("link1", "link2"):
        s = os.stat(mnt / name)
        assert (s.st_ino, s.st_nlink, (mnt / name).read_bytes()) == (before, 2, b"LINKED")
    os.link(mnt / "link1", mnt / "link3")
    union.remount()
    stats = [os.stat(mnt / n) for n in ("link1", "link2", "link3")]
    assert {(s.st_ino, s.st_nlink) for s in stats} == {(before, 3)}
    assert (mnt / "link1").read_bytes() == b"LINKED"
    assert os.getxattr(mnt / "link3", "user.k") == b"v"
    assert any((work / "index").iterdir()), "index=on keeps the shared copy in work/index"


def test_st_ino_is_stable_across_copy_up_rename_and_remount(union):
    mnt = union.mnt
    names = {"dir/file": None, "dir": None, "dir/sub": None}
    for n in names:
        names[n] = os.stat(mnt / n).st_ino
    (mnt / "dir/file").write_bytes(b"x")
    os.rename(mnt / "dir/sub", mnt / "renamed")
    os.rename(mnt / "dir/file", mnt / "dir/file2")
    union.remount()
    assert os.stat(mnt / "dir").st_ino == names["dir"]
    assert os.stat(mnt / "renamed").st_ino == names["dir/sub"]
    assert os.stat(mnt / "dir/file2").st_ino == names["dir/file"]
    assert len({os.stat(mnt / p).st_dev for p in ("dir", "renamed", "dir/file2", "link1")}) == 1


def test_copy_up_keeps_mode_owner_times_xattrs_and_holes(union):
    mnt, upper, work = union.mnt, union.upper, union.work
    sparse = union.lowers[0] / "sparse"
    with open(sparse, "wb") as f:
        f.seek(64 << 20)
        f.write(b"end")
    os.utime(sparse, ns=(10**18, 2 * 10**18))
    os.setxattr(sparse, "user.x", b"y")
    os.chown(sparse, 1000, 1000)
    os.chmod(sparse, 0o640)
    union.remount()
    with open(mnt / "sparse", "r+b") as f:  # copy-up, no data change
        pass
    os.setxattr(mnt / "sparse", "user.after", b"1")
    copied = os.stat(upper / "sparse")
    assert (copied.st_mode & 0o7777, copied.st_uid, copied.st_gid) == (0o640, 1000, 1000)
    assert copied.st_mtime_ns == 2 * 10**18
    assert copied.st_size == (64 << 20) + 3
    assert copied.st_blocks * 512 < 1 << 20, "the 64 MiB hole was written out"
    assert os.getxattr(upper / "sparse", "user.x") == b"y"
    assert os.listdir(work / "work") == []


def test_open_files_follow_copy_up_and_survive_unlink(union):
    mnt, upper = union.mnt, union.upper
    reader = os.open(mnt / "dir/file", os.O_RDONLY)
    try:
        (mnt / "dir/file").write_bytes(b"written after the reader opened")
        assert os.pread(reader, 100, 0) == b"written after the reader opened"
    finally:
        os.close(reader)
    fd = os.open(mnt / "fresh", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"still here")
        os.unlink(mnt / "fresh")
        assert os.fstat(fd).st_nlink == 0
        assert os.pread(fd, 100, 0) == b"still here"
        assert "fresh" not in os.listdir(mnt)
        assert not any(n.startswith(".fuse_hidden") for n in os.listdir(mnt))
    finally:
        os.close(fd)
    assert not (upper / "fresh").exists()


def fstat_after_rename_over(mnt: Path) -> list[tuple]:
    """Open a lower file, an upper file and a copied-up one, rename another name over each, and fstat, read and
    fchmod each through its open fd."""
    (mnt / "made").write_bytes(b"an upper file")
    (mnt / "dir" / "file").write_bytes(b"copied up")  # dir/file is now a copy-up
    seen = []
    for name in ("gone", "made", "dir/file"):
        fd = os.open(mnt / name, os.O_RDWR if name != "gone" else os.O_RDONLY)
        try:
            (mnt / "over").write_bytes(b"the new file")
            os.rename(mnt / "over", mnt / name)
            before = os.fstat(fd)
            if name != "gone":
                os.fchmod(fd, 0o600)
            after = os.fstat(fd)
            seen.append((name, before.st_nlink, before.st_size, stat.S_IMODE(after.st_mode), os.pread(fd, 100, 0),
                         (mnt / name).read_bytes()))
        finally:
            os.close(fd)
    return seen


def test_fstat_after_rename_over_answers_from_the_open_file_as_the_kernel_does(need, scratch):
    seen = {who: result for who, _, result in on_both(need, scratch, "", fstat_after_rename_over)}
    assert seen["kernel"] == [("gone", 1, 14, 0o644, b"to be unlinked", b"the new file"),
                              ("made", 0, 13, 0o600, b"an upper file", b"the new file"),
                              ("dir/file", 0, 9, 0o600, b"copied up", b"the new file")]
    assert seen["ours"] == seen["kernel"]


def removed_working_directory(mnt: Path) -> list[tuple]:
    """Remove an upper-only, a lower-only and a merged directory while it is the working directory, make another
    at its name at once, and look at `.`: its stat, whether its number is the new directory's, its listing, and
    what a mkdir in it says."""
    os.mkdir(mnt / "made")
    (mnt / "empty" / "x").write_bytes(b"")
    os.unlink(mnt / "empty" / "x")  # empty is merged now
    seen, cwd = [], os.getcwd()
    try:
        for name in ("made", "home", "empty"):
            os.chdir(mnt / name)
            os.rmdir(mnt / name)
            os.mkdir(mnt / name)
            here = os.stat(".")
            try:
                os.mkdir("x")
                made = "made"
            except OSError as e:
                made = errno.errorcode[e.errno]
            seen.append((name, here.st_nlink, oct(here.st_mode), here.st_ino == os.stat(mnt / name).st_ino,
                         os.listdir("."), made))
            os.chdir(cwd)
    finally:
        os.chdir(cwd)
    return seen


def test_a_removed_working_directory_shows_itself_as_the_kernel_does(need, scratch):
    """The kernel holds a removed working directory's inode and asks for its attributes by node id alone: union-fuse
    answers from the real directory it keeps until the kernel lets it go, and no new directory takes its number."""
    seen = {who: result for who, _, result in on_both(need, scratch, "", removed_working_directory)}
    assert seen["kernel"] == [("made", 0, "0o40755", False, [], "ENOENT"), ("home", 2, "0o40755", False, [], "ENOENT"),
                              ("empty", 1, "0o40700", False, [], "ENOENT")]
    assert seen["ours"] == seen["kernel"]


def changes_with_no_name_left(mnt: Path) -> dict[str, tuple]:
    """Change, through an fd, files and directories that have lost their last name while open: an upper file and
    a copied-up one unlinked, a lower one unlinked or renamed over, a lower, an upper and a merged directory
    removed. Each change's outcome, then what the fd shows (mode, owner, mtime, user xattrs)."""
    os.mkdir(mnt / "made")
    (mnt / "empty" / "x").write_bytes(b"")
    os.unlink(mnt / "empty" / "x")  # empty is merged now
    (mnt / "new").write_bytes(b"new")
    (mnt / "over").write_bytes(b"over")
    fds = {"new": os.open(mnt / "new", os.O_RDWR), "gone": os.open(mnt / "gone", os.O_RDONLY),
           "link1": os.open(mnt / "link1", os.O_RDONLY), "mode600": os.open(mnt / "mode600", os.O_RDWR),
           **{d: os.open(mnt / d, os.O_RDONLY | os.O_DIRECTORY) for d in ("made", "home", "empty")}}
    os.unlink(mnt / "new")
    os.unlink(mnt / "gone")
    os.unlink(mnt / "link2")  # so that renaming over link1 leaves its inode no name (a request says no name)
    os.rename(mnt / "over", mnt / "link1")
    os.unlink(mnt / "mode600")
    for d in ("made", "home", "empty"):
        os.rmdir(mnt / d)
    changes = (lambda fd: os.chmod(fd, 0o710), lambda fd: os.chown(fd, 1, 2), lambda fd: os.utime(fd, ns=(1, 2)),
               lambda fd: os.setxattr(fd, "user.t", b"v"), lambda fd: os.removexattr(fd, "user.t"),
               lambda fd: os.removexattr(fd, "user.k"), lambda fd: os.removexattr(fd, "user.none"))
    seen = {}
    for name, fd in fds.items():
        outcomes = []
        for change in changes:
            try:
                change(fd)
                outcomes.append("ok")
            except OSError as e:
                outcomes.append(errno.errorcode[e.errno])
        s = os.fstat(fd)
        seen[name] = (*outcomes, oct(s.st_mode), s.st_uid, s.st_gid, s.st_mtime_ns == 2,
                      sorted(n for n in os.listxattr(fd) if n.startswith("user.")))
        os.close(fd)
    return seen


@pytest.mark.parametrize("index", ["off", "on"])
def test_changes_with_no_name_left_land_as_through_the_kernel(need, scratch, index):
    """An inode with no name left is changed where it is (the kernel asks by node id alone): an upper file or
    directory itself; a lower one overlayfs tries to copy up under its old name, where the whiteout or the
    file renamed over it stands, and fails (EEXIST for a file, ENOTDIR for a directory). With index=on the
    unlink of link2 copied link1's inode up to the index, where its changes land."""
    seen = {who: result for who, _, result in on_both(need, scratch, f"index={index}", changes_with_no_name_left)}
    changed = ("ok",) * 5 + ("ENODATA",) * 2
    assert seen["kernel"]["made"] == (*changed, "0o40710", 1, 2, True, [])
    assert seen["kernel"]["gone"][:7] == ("EEXIST",) * 4 + ("ENODATA",) * 3
    assert seen["kernel"]["home"][:7] == ("ENOTDIR",) * 4 + ("ENODATA",) * 3
    assert seen["kernel"]["link1"][:7] == (("ok",) * 6 if index == "on" else ("EEXIST",) * 4 + (
        "ENODATA", "EEXIST")) + ("ENODATA",)  # it has user.k
    assert seen["ours"] == seen["kernel"]


def set_id_after_others_change(mnt: Path) -> dict[str, str]:
    """Files with set-id bits, opened by root and changed by uid 1000 (outside their group): written, truncated,
    fallocated, or opened with O_TRUNC; and each changed by root. The modes they are left with."""
    from vfslab.impl.union.disk import fallocate
    changes = {"write": lambda fd: os.write(fd, b"x"), "truncate": lambda fd: os.ftruncate(fd, 1),
               "fallocate": lambda fd: fallocate(fd, 0, 0, 4096)}
    seen = {}
    for mode in (0o4755, 0o2745, 0o2775, 0o6744):
        for change, call in changes.items():
            for uid in (1000, 0):
                name = f"setid-{mode:o}-{change}-{uid}"
                (mnt / name).write_bytes(b"")
                os.chmod(mnt / name, mode)
                fd = os.open(mnt / name, os.O_WRONLY)
                try:
                    with as_caller(uid):
                        call(fd)
                finally:
                    os.close(fd)
                seen[name] = oct(stat.S_IMODE(os.stat(mnt / name).st_mode))
    root = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)  # so the caller needs no permission above the mount
    try:
        for mode in (0o6777, 0o2767):  # truncated by the caller's own open (O_TRUNC), which needs write permission
            for uid in (1000, 0):
                name = f"setid-{mode:o}-open-trunc-{uid}"
                (mnt / name).write_bytes(b"data")
                os.chmod(mnt / name, mode)
                with as_caller(uid):
                    os.close(os.open(name, os.O_WRONLY | os.O_TRUNC, dir_fd=root))
                seen[name] = oct(stat.S_IMODE(os.stat(mnt / name).st_mode))
    finally:
        os.close(root)
    return seen


def test_set_id_bits_are_dropped_by_the_vfs_rule_as_through_the_kernel(need, scratch):
    """setgid without group execute goes for a writer outside the group (the kernel's FUSE client alone would
    keep it: docs/facts.md, FUSE 10); a root writer keeps every bit."""
    seen = {who: result for who, _, result in on_both(need, scratch, "", set_id_after_others_change)}
    assert seen["kernel"]["setid-2745-write-1000"] == "0o745" and seen["kernel"]["setid-2745-write-0"] == "0o2745"
    assert seen["kernel"]["setid-6744-fallocate-1000"] == "0o744"
    assert seen["kernel"]["setid-6777-open-trunc-1000"] == "0o777"
    assert seen["kernel"]["setid-6777-open-trunc-0"] == "0o6777"
    assert seen["ours"] == seen["kernel"]


def test_a_rename_between_two_names_of_one_inode_does_nothing_even_when_the_target_is_open(union):
    # libfuse hides an open rename target before the rename: the hide must not unlink it
    mnt, upper = union.mnt, union.upper
    fd = os.open(mnt / "link2", os.O_RDONLY)
    try:
        os.rename(mnt / "link1", mnt / "link2")
        assert os.stat(mnt / "link1").st_nlink == 2 and os.path.samefile(mnt / "link1", mnt / "link2")
        assert not any(n.startswith(".fuse_hidden") for n in os.listdir(mnt))
    finally:
        os.close(fd)
    assert {"link1", "link2"} <= set(os.listdir(mnt))
    assert not (upper / "link1").exists() and not (upper / "link2").exists(), "nothing was copied up or whited out"


def rename_between_indexed_names(mnt: Path) -> list:
    """Open both lower names of an indexed hard link, rename one onto the other (which does nothing), change the file
    through each fd, and write through the target's name: what each fd shows."""
    fds = [os.open(mnt / "link1", os.O_RDONLY), os.open(mnt / "link2", os.O_RDONLY)]
    try:
        os.rename(mnt / "link1", mnt / "link2")
        os.chmod(fds[1], 0o600)
        with open(mnt / "link2", "ab") as f:
            f.write(b"+")
        os.chmod(fds[0], 0o640)
        return [(oct(s.st_mode), s.st_size, s.st_nlink) for s in map(os.fstat, fds)]
    finally:
        for fd in fds:
            os.close(fd)


def test_a_rename_between_two_indexed_names_leaves_each_fd_changing_through_its_own_name(need, scratch):
    """union-fuse holds the lower names of an indexed hard link as node ids of their own; the kernel, told a rename
    between them succeeded, moves the source's entry to the target's name. Each node id keeps its own name, so a
    change through either fd copies up the name it was opened by, as through overlayfs, where nothing moved."""
    seen = {who: (result, {p.name: oct(p.lstat().st_mode) for p in where[1].iterdir()})
            for who, where, result in on_both(need, scratch, "index=on", rename_between_indexed_names)}
    assert seen["kernel"] == ([("0o100640", 7, 2)] * 2, {"link1": "0o100640", "link2": "0o100640"})
    assert seen["ours"] == seen["kernel"]


def test_names_too_long_are_enametoolong_never_enoent(union):
    mnt, upper = union.mnt, union.upper
    long_name = "n" * 256
    for call in (lambda: os.stat(mnt / long_name), lambda: os.mkdir(mnt / long_name),
                 lambda: os.open(mnt / long_name, os.O_CREAT | os.O_WRONLY),
                 lambda: os.unlink(mnt / "dir" / long_name)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.ENAMETOOLONG
    deep = "/".join(["d"] * 2100)
    with pytest.raises(OSError) as e:
        os.stat(mnt / deep)
    assert e.value.errno == errno.ENAMETOOLONG
    (mnt / ("m" * 255)).write_bytes(b"")  # 255 is allowed
    assert (upper / ("m" * 255)).exists()


def test_without_upperdir_the_union_is_read_only(need, scratch):
    need("union-fuse")
    lowers = _layers(scratch, LOWER, MIDDLE)
    (mnt,) = _dirs(scratch, "mnt")
    pid = mount_ours(lowers, None, None, mnt)
    try:
        assert (mnt / "dir/below").read_bytes() == b"from the second layer"
        for call in (lambda: (mnt / "new").write_bytes(b""), lambda: os.unlink(mnt / "gone"),
                     lambda: os.open(mnt / "dir/file", os.O_RDWR)):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.EROFS
    finally:
        mounts.unmount(mnt, pid)


def test_permissions_hold_for_a_non_root_caller(union):
    mnt, upper = union.mnt, union.upper
    os.chmod(mnt.parent, 0o755)  # the scratch dir is root's 0700
    with as_caller(2000):
        for call in (lambda: (mnt / "mode600").read_bytes(), lambda: os.open(mnt / "dir/file", os.O_RDWR),
                     lambda: os.mkdir(mnt / "dir/mine")):
            with pytest.raises(PermissionError):
                call()
    with as_caller(1000):
        with open(mnt / "mode600", "r+b") as f:  # the owner may write: copy-up keeps 0600 and the owner
            f.write(b"P")
        os.mkdir(mnt / "home/mine", 0o700)
        (mnt / "home/mine/f").write_bytes(b"")
    copied = os.stat(upper / "mode600")
    assert (copied.st_mode & 0o777, copied.st_uid, copied.st_gid) == (0o600, 1000, 1000)
    made = os.stat(upper / "home/mine")
    assert (made.st_mode & 0o777, made.st_uid, made.st_gid) == (0o700, 1000, 1000)
    assert os.stat(upper / "home/mine/f").st_uid == 1000
    with as_caller(2000):
        for call in (lambda: (mnt / "mode600").read_bytes(), lambda: os.listdir(mnt / "home/mine")):
            with pytest.raises(PermissionError):
                call()


# ---- symlinks in layers never take the daemon outside them ----------------------------------------------


def test_no_symlink_in_a_layer_takes_the_daemon_outside(need, scratch):
    """A lower layer's symlink where a directory would be, and redirects crafted to climb out: the daemon
    neither shows nor changes anything outside the layers (a sentinel tree beside them)."""
    need("union-fuse")
    outside = scratch / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not yours")
    top = (Node("d", "dir", 0o755), Node("d/own", "file", data=b"mine"), Node("r", "dir", 0o755),
           Node("s", "dir", 0o755), Node("a", "dir", 0o755))
    below = (Node("d", "symlink", target=str(outside)), Node("p", "symlink", target=str(outside)),
             Node("a", "symlink", target=".."))
    lowers = _layers(scratch, top, below)
    os.setxattr(lowers[0] / "r", "trusted.overlay.redirect", b"../outside")
    os.setxattr(lowers[0] / "s", "trusted.overlay.redirect", f"/p/../..{outside}".encode())
    upper, work, mnt = _dirs(scratch, "upper", "work", "mnt")
    pid = mount_ours(lowers, upper, work, mnt)
    try:
        assert sorted(os.listdir(mnt / "d")) == ["own"]
        assert os.listdir(mnt / "a") == []
        for crafted in ("r", "s"):
            with pytest.raises(OSError) as e:
                os.listdir(mnt / crafted)
            assert e.value.errno == errno.EIO, "an invalid redirect is an I/O error, as overlayfs has it"
        (mnt / "d/secret").write_bytes(b"written in the union")
        os.mkdir(mnt / "d/sub")
        os.rename(mnt / "d", mnt / "moved")
        assert sorted(os.listdir(mnt)) == ["a", "moved", "p", "r", "s"]
        moved = union_state(mnt / "moved")
    finally:
        mounts.unmount(mnt, pid)
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"not yours"
    assert sorted(moved) == [".", "own", "secret", "sub"]


# ---- a crash in the middle of writes ------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_sigkill_mid_workload_keeps_fsynced_files_and_shows_no_half_copy_up(need, scratch):
    """SIGKILL the daemon while a writer copies up big lower files and writes new ones, fsync'ing each; after
    a remount every fsync'ed file reads back exactly, and every lower file is either untouched or a whole
    copy (its lower bytes intact around the writer's marker), never a partial one."""
    need("union-fuse")
    big = 8 << 20
    lower_nodes = tuple(Node(f"big{i}", "file", data=bytes([i]) * big) for i in range(12))
    lowers = _layers(scratch, lower_nodes)
    upper, work, mnt = _dirs(scratch, "upper", "work", "mnt")
    pid = mount_ours(lowers, upper, work, mnt)
    synced: dict[str, bytes] = {}
    stop = threading.Event()

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set():
                name = f"big{i % 12}"
                fd = os.open(mnt / name, os.O_RDWR)  # copy-up of 8 MiB
                os.pwrite(fd, b"MARK%04d" % i, 0)
                os.fsync(fd)
                os.close(fd)
                synced[name] = b"MARK%04d" % i
                new = f"new{i}"
                data = os.urandom(64 << 10)
                fd = os.open(mnt / new, os.O_CREAT | os.O_WRONLY, 0o644)
                os.write(fd, data)
                os.fsync(fd)
                os.close(fd)
                synced[new] = data
                i += 1
        except OSError:
            return  # the daemon is gone

    thread = threading.Thread(target=writer)
    thread.start()
    deadline = time.monotonic() + 20
    while len(synced) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    stop.set()
    mounts.unmount(mnt, pid)
    thread.join(10)
    assert not thread.is_alive()
    assert len(synced) >= 6, "the writer did not get going before the kill"
    pid = mount_ours(lowers, upper, work, mnt)
    try:
        assert os.listdir(work / "work") == [], "a half-made copy-up outlived the remount"
        for name, data in synced.items():
            got = (mnt / name).read_bytes()
            if name.startswith("new"):
                assert got == data, name
            else:
                i = int(name[3:])
                assert len(got) == big and got[8:] == bytes([i]) * (big - 8), name
        for node in lower_nodes:
            got = (mnt / node.path).read_bytes()
            assert len(got) == big and got[8:] == node.data[8:], node.path
    finally:
        mounts.unmount(mnt, pid)


# ---- the commands -----------------------------------------------------------------------------------


def _wait_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def _daemon_pid(mnt: Path) -> int:
    out = subprocess.run(["pgrep", "-f", f"vfslab.* {mnt}"], capture_output=True, text=True).stdout.split()
    assert out, f"no daemon for {mnt}"
    return int(out[-1])


def test_vfslab_mount_union_daemonizes_and_umount_ends_it(need, scratch):
    need("union-fuse")
    lowers = _layers(scratch, LOWER)
    upper, work, mnt = _dirs(scratch, "upper", "work", "mnt")
    opts = f"lowerdir={lowers[0]},upperdir={upper},workdir={work},rw,noatime,dev,suid"
    done = subprocess.run([sys.executable, "-m", "vfslab", "mount", "union", "-o", opts, str(mnt)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    info = mounts.find_mount(mnt)
    assert info is not None and info.fstype == "fuse.vfslab-union"
    pid = _daemon_pid(mnt)
    try:
        assert (mnt / "dir/file").read_bytes() == b"lower file"
        (mnt / "new").write_bytes(b"1")
    finally:
        subprocess.run(["umount", str(mnt)], check=True, timeout=30)
    assert _wait_gone(pid), "the daemon outlived umount"
    assert (upper / "new").read_bytes() == b"1"


def test_mount_t_fuse_vfslab_union(need, scratch):
    """The system way, through mount(8) and the installed helper (`make` installs it)."""
    need("union-fuse")
    if not (shutil.which("vfslab-union", path="/usr/local/bin:/usr/bin:/bin")
            and Path("/sbin/mount.fuse.vfslab-union").exists()):
        message = "vfslab-union is not installed on the default PATH (run `make install-helpers`)"
        if os.environ.get("VFSLAB_REQUIRE_FUSE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    lowers = _layers(scratch, LOWER, MIDDLE)
    upper, work, mnt = _dirs(scratch, "upper", "work", "mnt")
    opts = f"lowerdir={lowers[0]}:{lowers[1]},upperdir={upper},workdir={work}"
    done = subprocess.run(["mount", "-t", "fuse.vfslab-union", "vfslab-union", str(mnt), "-o", opts],
                          capture_output=True, text=True, timeout=30, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert done.returncode == 0, done.stderr
    pid = _daemon_pid(mnt)
    try:
        assert sorted(os.listdir(mnt / "dir")) == ["below", "file", "sub"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True, timeout=30)
    assert _wait_gone(pid)


@pytest.mark.parametrize(("options", "message"), [
    ("upperdir=/tmp", "missing lowerdir"),
    ("lowerdir=/nonexistent/x", "not a directory"),
    ("lowerdir=/tmp,bogus=1", "unknown or malformed mount option 'bogus=1'"),
    ("lowerdir=/tmp,upperdir=/tmp", "upperdir= and workdir= go together"),
    ("lowerdir=/tmp,index=maybe", "unknown or malformed mount option 'index=maybe'"),
])
def test_bad_options_are_one_line_errors(scratch, options, message):
    done = subprocess.run([*PROGRAM, "-o", options, str(scratch)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert mounts.find_mount(scratch) is None
