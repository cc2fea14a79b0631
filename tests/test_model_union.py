"""The union model on its own: the seed's examples under every profile, and the errnos it promises."""

from __future__ import annotations

import errno
import os

import pytest

from vfslab.model.outcome import Err
from vfslab.model.union import PROFILES, Cred, UnionModel
from vfslab.subjects.tree import Node

F, D, L, H = "file", "dir", "symlink", "hardlink"


def model(*nodes: Node, profile: str = "overlayfs", layers: tuple = ()) -> UnionModel:
    return UnionModel(layers or (nodes,), PROFILES[profile])


def err(name: str) -> Err:
    return Err(getattr(errno, name))


def test_unlink_of_a_lower_file_leaves_a_whiteout_and_cites_the_rule():
    m = model(Node("a", F, data=b"x"))
    out = m.unlink("a")
    assert out.result is None and "union.unlink.whiteout" in out.rules
    assert m.upper_state()["a"].kind == "whiteout"
    assert m.stat("a").result == err("ENOENT")


def test_unlink_of_an_upper_only_file_leaves_nothing():
    m = model()
    fd = m.open("n", os.O_CREAT | os.O_WRONLY, 0o644).result
    m.close(fd)
    assert "union.unlink.upper-only" in m.unlink("n").rules
    assert "n" not in m.upper_state()


def test_mkdir_over_a_whiteout_is_opaque_and_hides_the_lower_directory():
    m = model(Node("d", D, 0o755), Node("d/f", F))
    m.unlink("d/f")
    m.rmdir("d")
    m.mkdir("d", 0o755)
    assert m.upper_state()["d"].opaque
    assert m.readdir("d").result == ()


@pytest.mark.parametrize(("profile", "result"), [("overlayfs", err("EXDEV")), ("union-mounts", err("EXDEV")),
                                                 ("overlayfs-redirect", None)])
def test_rename_of_a_lower_directory(profile, result):
    m = model(Node("d", D, 0o755), Node("d/f", F, data=b"1"), profile=profile)
    assert m.rename("d", "e").result == result
    if result is None:
        assert m.readdir("e").result == ("f",)
        assert m.upper_state()["e"].redirect == "d"
        m.remount()
        assert m.stat("e/f").result.size == 1


def test_redirect_of_a_directory_moved_to_another_parent_is_absolute():
    m = model(Node("d", D, 0o755), Node("d/f", F), Node("p", D, 0o755), profile="overlayfs-redirect")
    assert m.rename("d", "p/e").result is None
    assert m.upper_state()["p/e"].redirect == "/d"
    assert m.readdir("p/e").result == ("f",)


@pytest.mark.parametrize(("profile", "nlinks"), [("overlayfs", (1, 2)), ("overlayfs-index", (2, 2))])
def test_copy_up_of_one_hard_link(profile, nlinks):
    m = model(Node("a", F, data=b"x"), Node("b", H, target="a"), profile=profile)
    fd = m.open("a", os.O_WRONLY | os.O_APPEND).result
    m.write(fd, b"y")
    assert (m.stat("a").result.nlink, m.stat("b").result.nlink) == nlinks
    assert (m.stat("b").result.size == 2) == (profile == "overlayfs-index")


@pytest.mark.parametrize(("profile", "seen"), [("overlayfs", b"new"), ("union-mounts", b"old")])
def test_fd_opened_before_copy_up(profile, seen):
    m = model(Node("f", F, data=b"old"), profile=profile)
    ro = m.open("f", os.O_RDONLY).result
    wr = m.open("f", os.O_WRONLY | os.O_TRUNC).result
    m.write(wr, b"new")
    assert m.read(ro, 10).result == seen


def test_union_mounts_readdir_writes_fallthrus():
    m = model(Node("d", D, 0o755), Node("d/a", F), profile="union-mounts")
    assert m.readdir("d").result == ("a",)
    upper = m.upper_state()
    assert upper["d"].opaque and upper["d/a"].kind == "fallthru"
    assert m.stat("d/a").result.kind == "file"


def test_lower_whiteouts_act_after_push():
    m = model(Node("a", F))
    m.unlink("a")
    m.push()
    assert m.stat("a").result == err("ENOENT")
    assert m.upper_state() == {}


@pytest.mark.parametrize(("call", "errname"), [
    (lambda m: m.stat("loop"), "ELOOP"),
    (lambda m: m.stat("f/x"), "ENOTDIR"),
    (lambda m: m.lstat("n" * 256), "ENAMETOOLONG"),
    (lambda m: m.lstat("a/" * 2048 + "f"), "ENAMETOOLONG"),
    (lambda m: m.open("d", os.O_WRONLY), "EISDIR"),
    (lambda m: m.open("f", os.O_CREAT | os.O_EXCL | os.O_WRONLY), "EEXIST"),
    (lambda m: m.open("dangling", os.O_NOFOLLOW | os.O_RDONLY), "ELOOP"),
    (lambda m: m.rmdir("d"), "ENOTEMPTY"),
    (lambda m: m.rename("d", "d/e/x"), "EINVAL"),
    (lambda m: m.link("d", "z"), "EPERM"),
    (lambda m: m.rename("f", "g", True), "EEXIST"),
    (lambda m: m.readlink("f"), "EINVAL"),
    (lambda m: m.getxattr("f", "user.none"), "ENODATA"),
])
def test_posix_errnos(call, errname):
    m = model(Node("f", F), Node("g", F), Node("d", D, 0o755), Node("d/e", D, 0o755), Node("loop", L, target="loop"),
              Node("dangling", L, target="x"))
    assert call(m).result == err(errname)


def test_a_non_root_caller_gets_eacces_and_eperm_and_copy_up_does_not_happen():
    m = model(Node("f", F, 0o644), Node("priv", D, 0o700), Node("priv/x", F))
    m.cred = Cred(1000, 1000)
    assert m.open("f", os.O_WRONLY).result == err("EACCES")
    assert m.chmod("f", 0o777).result == err("EPERM")
    assert m.stat("priv/x").result == err("EACCES")
    assert m.upper_state() == {}


def test_posix_leaves_the_errno_of_a_rename_onto_a_non_empty_directory_open():
    m = model(Node("d", D, 0o755), Node("e", D, 0o755), Node("e/f", F), profile="overlayfs-redirect")
    out = m.rename("d", "e")
    assert out.result == err("ENOTEMPTY") and out.allows(err("EEXIST")) and not out.allows(err("EXDEV"))


def test_an_open_file_pushed_down_twice_has_the_st_ino_stat_gives():
    # settled against the kernel: a copy-up pushed down to a lower layer keeps its origin xattr, which overlayfs no
    # longer follows (only an upper inode's origin counts), for fstat as for stat
    m = model(Node("c", F))
    m.push()
    m.setxattr("c", "user.k", b"v")
    m.push()
    fd = m.open("c", os.O_RDONLY).result
    assert m.fstat(fd).result.ino == m.stat("c").result.ino


def test_an_unmoved_lower_name_of_an_indexed_group_opened_after_a_remount_has_the_st_ino_stat_gives():
    # found by generated programs on kernel overlayfs and union-fuse alike: the fd reads the index's copy, whose
    # origin is the group's lower inode, as the name's stat says
    m = model(Node("b", F), Node("c", H, target="b"), profile="overlayfs-index")
    m.close(m.open("b", os.O_WRONLY).result)
    m.remount()
    fd = m.open("c", os.O_RDONLY).result
    assert m.fstat(fd).result.ino == m.stat("c").result.ino == m.stat("b").result.ino


def test_a_file_handle_follows_its_file_through_copy_up_and_rename_and_goes_stale_with_it():
    m = UnionModel(((Node("a", F, data=b"x"), Node("d", D, 0o755)),), PROFILES["posix"])
    h = m.handle("a")
    assert h.result == 0 and "union.handle.make" in h.rules
    m.rename("a", "d/b")
    fd = m.open_handle(0, os.O_RDWR)
    assert "union.handle.open" in fd.rules
    m.write(fd.result, b"y")
    assert m.stat("d/b").result.size == 1 and m.read(m.open("d/b", os.O_RDONLY).result, 5).result == b"y"
    m.unlink("d/b")
    again = m.open_handle(0, os.O_RDONLY)  # no name left, but open
    assert not again.failed and m.read(again.result, 5).result == b"y"
    for slot in list(m.fds):
        m.close(slot)
    stale = m.open_handle(0, os.O_RDONLY)
    assert stale.result == err("ESTALE") and "union.handle.stale" in stale.rules


def test_file_handles_need_nfs_export_on_overlayfs_root_to_open_them_and_a_fuse_mount_forgets_them_at_remount():
    assert model(Node("a", F)).handle("a").result == err("EOPNOTSUPP")
    m = UnionModel(((Node("a", F), Node("s", L, target="a")),), PROFILES["overlayfs-redirect-index"], fuse=True)
    assert [m.handle(p).result for p in ("a", "s", ".", "missing")] == [0, 1, 2, err("ENOENT")]
    assert m.open_handle(1, os.O_RDONLY | os.O_DIRECTORY).result == err("ELOOP")  # before O_DIRECTORY is asked
    m.cred = Cred(1000, 1000)
    assert m.open_handle(0, os.O_RDONLY).result == err("EPERM")
    m.cred = Cred()
    m.remount()
    assert m.open_handle(0, os.O_RDONLY).result == err("ESTALE")
    assert not m.open_handle(2, os.O_RDONLY).failed  # the root is node 1 in every mount
    assert m.open_handle(3, os.O_RDONLY).result == err("EBADF")


def test_a_fuse_mount_may_drop_a_handles_inode_unless_something_holds_it():
    """The subject's ESTALE is taken as the kernel's dropping of the inode only where nothing keeps it in memory."""
    for fuse, dropped_ok in ((True, True), (False, False)):
        m = UnionModel(((Node("a", F, data=b"x"), Node("b", F)),), PROFILES["posix"], fuse=fuse)
        for p in ("a", "b", "."):
            m.handle(p)
        dropped = m.open_handle(0, os.O_RDONLY, dropped=True)
        assert (dropped.result == err("ESTALE") and "union.handle.evicted" in dropped.rules) == dropped_ok
        late = m.open("a", os.O_RDONLY).result
        dropped = m.open_handle(0, os.O_RDONLY, dropped=True)
        assert (dropped.result == err("ESTALE")) == dropped_ok, "a file opened after the handle may be a new inode"
        m.close(late)
        m.handle("b")
        held = m.open("b", os.O_RDONLY).result
        m.handle("b")
        assert (m.open_handle(3, os.O_RDONLY, dropped=True).result == err("ESTALE")) == dropped_ok
        assert not m.open_handle(4, os.O_RDONLY, dropped=True).failed, "a file open since the handle holds it"
        assert not m.open_handle(2, os.O_RDONLY, dropped=True).failed, "the root is always held"
        m.close(held)


@pytest.mark.parametrize(("profile", "nlinks"), [("overlayfs-redirect-index", (0, 2, 1)), ("posix", (0, 0, 0)),
                                                 ("fuse-overlayfs", (2, 2, 2)), ("unionfs-fuse", (1, 1, 1))])
@pytest.mark.parametrize("by", ["rmdir", "rename"])
def test_fstat_of_a_directory_removed_while_open(profile, nlinks, by):
    m = UnionModel(((Node("low", D, 0o755), Node("mer", D, 0o700)),), PROFILES[profile])
    m.mkdir("up", 0o755)
    m.mkdir("mer/x", 0o755)
    m.rmdir("mer/x")
    fds = [m.open(p, os.O_RDONLY).result for p in ("up", "low", "mer")]
    for p in ("up", "low", "mer"):
        if by == "rmdir":
            m.rmdir(p)
        else:  # another directory renamed over it
            assert not m.mkdir("new", 0o711).failed and not m.rename("new", p).failed
    if by == "rmdir":
        m.mkdir("up", 0o700)
    # another directory at the name (a new one, or the one renamed there): the fd still shows the removed one
    shown = [m.fstat(fd) for fd in fds]
    assert tuple(s.result.nlink for s in shown) == nlinks
    assert shown[0].result.mode == 0o755 and all("union.fstat.removed-dir" in s.rules for s in shown)


@pytest.mark.parametrize("profile, lower, removed_lower", [("overlayfs", "EEXIST", "ENOTDIR"), ("posix", None, None),
                                                           ("union-mounts", "EEXIST", None)])
def test_a_change_through_an_fd_lands_on_the_name_it_has_or_on_its_inode(profile, lower, removed_lower):
    """union.fd.change and union.fd.nameless: through the name the fd still has (a lower file is copied up), else on
    the inode itself where it is an upper one; a lower one with no name left is EEXIST (a directory ENOTDIR) on
    overlayfs, where its copy-up under its old name meets the whiteout. Union mounts copied the lower directory up
    when it was looked up, and a plain file system changes any inode."""
    m = model(Node("a", F, xattrs=(("user.k", b"v"),)), Node("b", F), Node("low", D, 0o755), profile=profile)
    named, gone, up = (m.open(p, os.O_RDONLY).result for p in ("b", "a", "low"))
    new = m.open("n", os.O_CREAT | os.O_WRONLY, 0o644).result
    through_name = m.fchmod(named, 0o600)
    assert through_name.result is None and "union.fd.change" in through_name.rules
    assert m.stat("b").result.mode == 0o600
    for path in ("a", "n"):
        m.unlink(path)
    m.rmdir("low")
    assert m.fchown(new, 1000, 1000).result is None and m.fstat(new).result.uid == 1000
    changed = m.fchmod(gone, 0o600)
    assert changed.result == (err(lower) if lower else None) and "union.fd.nameless" in changed.rules
    assert m.fremovexattr(gone, "user.none").result == err("ENODATA"), "a missing xattr is ENODATA first"
    assert m.fremovexattr(gone, "user.k").result == (err(lower) if lower else None)
    assert m.fchmod(up, 0o700).result == (err(removed_lower) if removed_lower else None)
    assert m.fstat(up).result.mode == (0o755 if removed_lower else 0o700)


def test_a_change_through_an_fd_of_a_removed_directory_shows_on_every_fd_of_it():
    m = model()
    m.mkdir("up", 0o755)
    fds = [m.open("up", os.O_RDONLY).result for _ in range(2)]
    m.rmdir("up")
    assert m.fsetxattr(fds[0], "user.t", b"v").result is None
    assert m.fchmod(fds[1], 0o711).result is None
    assert [m.fstat(fd).result.mode for fd in fds] == [0o711, 0o711]
    assert [m.fstat(fd).result.nlink for fd in fds] == [0, 0], "the count it had when removed"
    assert m.fstat(fds[0]).result.xattrs == (("user.t", b"v"),)


def test_served_by_path_a_removed_directory_is_estale_to_a_change_before_the_file_system_answers():
    m = model(profile="ovlfs")
    m.mkdir("up", 0o755)
    fd = m.open("up", os.O_RDONLY).result
    m.rmdir("up")
    for out in (m.fchmod(fd, 0o700), m.fsetxattr(fd, "user.t", b"v")):
        assert out.result == err("ESTALE") and "union.fd.path-api" in out.rules
