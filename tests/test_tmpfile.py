"""O_TMPFILE and flink: the model against kernel overlayfs and tmpfs by generated programs, and what a mount that
makes no unnamed files answers."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

import pytest
from conftest import replayable
from test_union_fuse import on_both

from vfslab.check.engine.generated import Budget
from vfslab.check.union.program import Program, run_program
from vfslab.check.union.stateful import check_stateful
from vfslab.impl.union.disk import linkat_fd
from vfslab.model.outcome import Err
from vfslab.model.union import PROFILES, UnionModel
from vfslab.model.union.ops import Op
from vfslab.subjects.driver import USER, as_caller
from vfslab.subjects.tree import Layers, Node

pytestmark = pytest.mark.mounts

#: the calls an unnamed file meets: made, written, named, its names removed, fstat'd through its fd
TMPFILE_CALLS = ("open", "flink", "write", "read", "fstat", "close", "unlink", "rename", "link", "stat")


def test_the_model_makes_unnamed_files_named_by_flink_only_where_the_mount_does():
    lowers = [[Node("d", "dir", 0o755)]]
    flags = os.O_TMPFILE | os.O_RDWR
    model = UnionModel(lowers, PROFILES["overlayfs"])
    assert model.open("d", flags, 0o640).result == 0
    assert model.fstat(0).result.nlink == 0
    assert model.flink(0, "d/n").result is None and model.stat("d/n").result.mode == 0o640
    assert model.open("d", flags | os.O_EXCL, 0o600).result == 1
    assert model.flink(1, "d/x").result == Err(errno.ENOENT)
    refused = UnionModel(lowers, PROFILES["overlayfs"], tmpfile=False).open("d", flags, 0o600)
    assert refused.result == Err(errno.EOPNOTSUPP) and "union.open.tmpfile-unsupported" in refused.rules


@pytest.mark.parametrize(("name", "profile"), [
    ("kernel-overlay", "overlayfs-redirect-index"), ("kernel-overlay", "overlayfs"), ("tmpfs", "posix"),
    ("union-fuse", "overlayfs-redirect-index"),  # on libfuse 3.17, which has the tmpfile request
])
def test_generated_programs_with_unnamed_files_agree_with_the_model(need, tmp_path, name, profile):
    """The CI check of O_TMPFILE and flink: 300 generated programs of the calls an unnamed file meets, by root and by
    an ordinary caller, with remounts and pushes of the unions."""
    ops = TMPFILE_CALLS + (("push", "remount") if profile.startswith("overlayfs") else ())
    tally = check_stateful(need(name), profile, seed=20261202, budget=Budget(300, 25, 900),
                           scratch_root=tmp_path, ops=ops)
    assert tally.failure is None, replayable(tally.failure, tmp_path)
    assert not tally.error and not tally.deviations
    assert tally.examples >= 300
    for rule in ("union.open.tmpfile", "union.link.fd"):
        assert tally.coverage[rule], f"{rule} never fired"
    assert not tally.coverage["union.open.tmpfile-unsupported"], "the mount was taken for one that makes none"


_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, AT_SYMLINK_FOLLOW = -100, 0x400


def proc_link(fd: int, new: Path, new_dir: int = AT_FDCWD) -> None:
    """linkat of the fd's /proc/self/fd link, followed: what any caller may do."""
    if _libc.linkat(AT_FDCWD, f"/proc/self/fd/{fd}".encode(), new_dir, os.fsencode(new), AT_SYMLINK_FOLLOW) != 0:
        raise OSError(ctypes.get_errno(), "linkat")


def make_and_name_unnamed_files(mnt: Path) -> dict[str, object]:
    """O_TMPFILE in a merged lower directory (copied up for it) and in a directory uid 1000 owns, by that user;
    written, fstat'd, named by linkat of its fd (by /proc/self/fd as anyone may, and by AT_EMPTY_PATH as root),
    and what refuses one: O_EXCL, O_RDONLY, a non-directory."""
    seen: dict[str, object] = {}
    old = os.umask(0o022)
    try:
        fd = os.open(mnt / "dir", os.O_TMPFILE | os.O_RDWR, 0o666)
        os.write(fd, b"made unnamed")
        s = os.fstat(fd)
        seen["unnamed"] = (stat.filemode(s.st_mode), s.st_nlink, s.st_size, sorted(os.listdir(mnt / "dir")))
        proc_link(fd, mnt / "dir" / "named")
        seen["named"] = (os.fstat(fd).st_nlink, (mnt / "dir" / "named").read_bytes())
        linkat_fd(fd, AT_FDCWD, str(mnt / "dir" / "again"))
        seen["twice"] = os.stat(mnt / "dir" / "named").st_nlink
        os.close(fd)
        root = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)  # the caller needs no search permission above the mount
        try:
            with as_caller(USER):
                fd = os.open("home", os.O_TMPFILE | os.O_WRONLY, 0o640, dir_fd=root)
                proc_link(fd, Path("home/mine"), root)
                os.close(fd)
        finally:
            os.close(root)
        s = os.stat(mnt / "home" / "mine")
        seen["by user"] = (stat.filemode(s.st_mode), s.st_uid, s.st_gid)
        refused = []
        fd = os.open(mnt / "dir", os.O_TMPFILE | os.O_RDWR | os.O_EXCL, 0o600)
        for how in (lambda: proc_link(fd, mnt / "dir" / "never"),
                    lambda: os.open(mnt / "dir", os.O_TMPFILE | os.O_RDONLY, 0o600),
                    lambda: os.open(mnt / "dir" / "file", os.O_TMPFILE | os.O_RDWR, 0o600)):
            try:
                how()
            except OSError as e:
                refused.append(errno.errorcode[e.errno])
        os.close(fd)
        seen["refused"] = refused
    finally:
        os.umask(old)
    seen["listing"] = sorted(os.listdir(mnt / "dir"))
    return seen


@pytest.mark.parametrize("name", ["kernel-overlay", "union-fuse"])
@pytest.mark.parametrize(("removed", "named"), [(("a",), True), (("a", "c"), False)])
def test_an_indexed_hard_link_opened_by_a_name_since_removed_is_named_by_its_fd(need, tmp_path, name, removed,
                                                                                 named):
    """With index=on, a lower hard link opened by `a`, then `a` unlinked (which indexes it): flink of the fd names
    the index's inode, which the other name `c` shows too (one link count for both, nothing copied up for `c`);
    once `c` is gone as well, the file has no link left and flink is ENOENT. Found by generated programs: the
    model said a file with its last link gone could be named, and union-fuse copied `c` up to link it."""
    tree = Layers(((Node("a", "file", data=b"x"), Node("c", "hardlink", target="a")),))
    ops = [Op("open", ("a", os.O_RDONLY, 0)), *(Op("unlink", (n,)) for n in removed), Op("flink", (0, "d")),
           Op("stat", ("d",))]
    replay = run_program(Program(tree, ops, name), need(name), "overlayfs-redirect-index", tmp_path / "s")
    assert replay.failure is None, replay.failure
    linked, stat_d = replay.results[-2:]
    assert (linked is None) == named and (named or linked == Err(errno.ENOENT))
    assert stat_d.nlink == 2 if named else stat_d == Err(errno.ENOENT)
    assert ("c" in replay.upper) == (not named), "c is copied up only as its removal indexes it"


@pytest.mark.parametrize("name", ["kernel-overlay", "union-fuse"])
def test_an_indexed_hard_link_is_named_by_its_fd_after_its_covered_name_was_forgotten(need, tmp_path, name,
                                                                                    cold_steps):
    """A lower hard link `a`/`c` whose name `a` a rename covers, then `c` opened and named by its fd, the caches
    dropped before each step (the kernel forgets the covered name's inode first). Found by generated programs under
    memory pressure: union-fuse kept the forgotten node id among the inode's others and answered the link EIO."""
    tree = Layers(((Node("b", "file"),), (Node("a", "file", data=b"x"), Node("c", "hardlink", target="a"))))
    ops = [Op("rename", ("b", "a", False)), Op("open", ("c", os.O_RDONLY, 0)), Op("flink", (0, "d")),
           Op("stat", ("d",))]
    replay = run_program(Program(tree, ops, name), need(name), "overlayfs-index", tmp_path / "s")
    assert replay.failure is None, replay.failure
    assert replay.results[2] is None and replay.results[3].nlink == 2  # c and d


@pytest.mark.parametrize("name", ["kernel-overlay", "union-fuse"])
def test_a_link_of_an_unlinked_file_is_checked_on_its_acl(need, tmp_path, name):
    """A lower file anyone may write, opened, its name unlinked, then linked by its fd by uid 1000 into a directory
    it may not write: EACCES. The kernel first asks whether the caller may read and write the file (else EPERM),
    which on a FUSE mount fetches the file's ACL: union-fuse answered that getxattr by name, which was gone (found
    by generated programs)."""
    tree = Layers(((Node("c", "file", 0o666, data=b""),),))
    ops = [Op("open", ("c", os.O_RDONLY, 0)), Op("unlink", ("c",)), Op("flink", (0, "d"), USER)]
    replay = run_program(Program(tree, ops, name), need(name), "overlayfs-redirect-index", tmp_path / "s")
    assert replay.failure is None, replay.failure
    assert replay.results[-1] == Err(errno.EACCES)


def test_unnamed_files_are_made_and_named_as_the_kernel_does(need, scratch):
    seen, uppers = {}, {}
    for who, (_lowers, upper, _work, _mnt), result in on_both(need, scratch, "", make_and_name_unnamed_files):
        seen[who], uppers[who] = result, upper
    kernel = seen["kernel"]
    assert kernel["unnamed"][:3] == ("-rw-r--r--", 0, 12)  # no name yet: the directory shows nothing new
    assert kernel["named"] == (1, b"made unnamed") and kernel["twice"] == 2
    assert kernel["by user"] == ("-rw-r-----", USER, USER)
    assert kernel["refused"] == ["ENOENT", "EINVAL", "ENOTDIR"]
    assert seen["ours"] == kernel
    for who, upper in uppers.items():  # the names are the upper layer's, the file one inode there
        assert (upper / "dir" / "named").read_bytes() == b"made unnamed", who
        assert os.stat(upper / "dir" / "named").st_ino == os.stat(upper / "dir" / "again").st_ino, who
        assert sorted(os.listdir(upper / "dir")) == ["again", "named"], who
