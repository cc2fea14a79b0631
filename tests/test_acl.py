"""POSIX ACLs through union-fuse, side by side with kernel overlayfs: a default ACL's inheritance (made in place, and
built in the work directory), an ACL granting what the mode bits do not, and ACLs kept by copy-up."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest
import test_union_fuse
from conftest import replayable
from test_union_fuse import on_both

from vfslab.check.engine.generated import Budget
from vfslab.check.union.stateful import check_stateful
from vfslab.model import acl as acl_text
from vfslab.model.union import PROFILES
from vfslab.subjects.driver import as_caller
from vfslab.subjects.tree import Node

pytestmark = pytest.mark.mounts

ACCESS, DEFAULT = "system.posix_acl_access", "system.posix_acl_default"
USER_OBJ, USER, GROUP_OBJ, MASK, OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
NOBODY = 0xFFFFFFFF  # the id of an entry that names no one
FRIEND = 1000


def acl(*entries: tuple[int, int, int]) -> bytes:
    """The xattr form of an ACL (linux/posix_acl_xattr.h): version 2, then (tag, permissions, id) entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, who) for tag, perm, who in entries)


#: rwx for FRIEND, by name; the mode bits alone give others r-x
GRANTING = acl((USER_OBJ, 7, NOBODY), (USER, 7, FRIEND), (GROUP_OBJ, 5, NOBODY), (MASK, 7, NOBODY),
               (OTHER, 5, NOBODY))


@pytest.fixture
def acl_layers(monkeypatch):
    """A lower layer with a setgid directory holding a default ACL (and that ACL as its own), a file in it, and a
    file with an access ACL; the middle layer merges the directory."""
    monkeypatch.setattr(test_union_fuse, "LOWER", (
        *test_union_fuse.LOWER, Node("shared", "dir", 0o2775), Node("shared/old", "file", 0o664, data=b"old"),
        Node("acl-file", "file", 0o664, data=b"with an acl")))
    monkeypatch.setattr(test_union_fuse, "MIDDLE", (*test_union_fuse.MIDDLE, Node("shared", "dir", 0o2775)))
    built = test_union_fuse._layers

    def layers(root: Path, *trees):
        out = built(root, *trees)
        for lower in out:
            os.setxattr(lower / "shared", DEFAULT, GRANTING)
            os.setxattr(lower / "shared", ACCESS, GRANTING)
        os.setxattr(out[0] / "acl-file", ACCESS, GRANTING)
        return out

    monkeypatch.setattr(test_union_fuse, "_layers", layers)


def xattrs(path: Path) -> dict[str, bytes]:
    return {name: os.getxattr(path, name, follow_symlinks=False) for name in (ACCESS, DEFAULT)
            if name in os.listxattr(path, follow_symlinks=False)}


def seen(path: Path) -> tuple[str, dict[str, bytes]]:
    return stat.filemode(os.lstat(path).st_mode), xattrs(path)


def use_acls(mnt: Path) -> dict[str, tuple]:
    old = os.umask(0o022)
    try:
        os.mkdir(mnt / "shared" / "made", 0o777)  # in a merged directory: opaque, built in the work directory
        (mnt / "shared" / "file").write_bytes(b"new")  # made in place in the copied-up directory
        os.unlink(mnt / "shared" / "old")
        (mnt / "shared" / "old").write_bytes(b"again")  # over a whiteout: built in the work directory
        root = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)  # the caller needs no search permission above the mount
        try:
            with as_caller(FRIEND):  # the ACL's named user may write where the mode bits say r-x
                os.mkdir("shared/friends", 0o755, dir_fd=root)
        finally:
            os.close(root)
        with open(mnt / "acl-file", "ab") as f:  # a copy-up of a file with an access ACL
            f.write(b"!")
    finally:
        os.umask(old)
    return {name: seen(mnt / name) for name in ("shared", "shared/made", "shared/file", "shared/old",
                                                "shared/friends", "acl-file")}


def test_acls_are_inherited_checked_and_copied_up_as_the_kernel_does(need, scratch, acl_layers):
    extra = "redirect_dir=on,index=on"
    found, uppers = {}, {}
    for who, (_lowers, upper, _work, _mnt), result in on_both(need, scratch, extra, use_acls):
        found[who], uppers[who] = result, upper
    kernel = found["kernel"]
    # the default ACL, not the umask, decided the modes, and new directories inherit it
    assert kernel["shared/made"] == ("drwxrwsr-x", {ACCESS: GRANTING, DEFAULT: GRANTING})
    assert kernel["shared/file"][0] == "-rw-rw-r--" and ACCESS in kernel["shared/file"][1]
    assert kernel["shared/friends"][1].get(DEFAULT) == GRANTING
    assert kernel["acl-file"] == ("-rwxrwxr-x", {ACCESS: GRANTING})  # the ACL set the mode bits
    assert found["ours"] == kernel
    # on disk too: the upper layers hold the same ACLs
    for name in kernel:
        assert xattrs(uppers["ours"] / name) == xattrs(uppers["kernel"] / name), name


# ---- the model's ACLs, and generated programs of them --------------------------------------------------------------


def test_acl_text_and_xattr_forms_are_one_acl():
    text = "u::rw-,u:1000:r-x,g::r--,g:7:rwx,m::rwx,o::---"
    value = acl_text.to_xattr(text)
    assert value == acl((USER_OBJ, 6, NOBODY), (USER, 5, FRIEND), (GROUP_OBJ, 4, NOBODY), (0x08, 7, 7),
                        (MASK, 7, NOBODY), (OTHER, 0, NOBODY))
    assert acl_text.to_text(value) == text
    assert acl_text.parse(acl_text.to_xattr(acl_text.NOT_AN_ACL)) is None
    with pytest.raises(ValueError, match="only u: and g: name an id"):
        acl_text.to_xattr("u::rwx,m:5:rwx,o::---")


@pytest.mark.parametrize(("text", "uid", "groups", "want", "granted"), [
    ("u::---,u:1000:rw-,g::rwx,m::r--,o::rwx", 1000, (), 4, True),  # the named entry, not other
    ("u::---,u:1000:rw-,g::rwx,m::r--,o::rwx", 1000, (), 2, False),  # ... as far as the mask lets it
    ("u::---,g::---,g:5:r--,m::rwx,o::rwx", 1000, (5,), 4, True),  # a named group it is in
    ("u::---,g::---,g:5:r--,m::rwx,o::rwx", 1000, (5,), 2, False),  # in a group, none granting: not other's
    ("u::---,g::---,g:5:r--,m::rwx,o::rwx", 1000, (), 2, True),  # in no group named: other's
    ("u::---,g::r--,g:5:-w-,m::rwx,o::---", 1000, (0, 5), 2, True),  # any group that grants
])
def test_an_acl_decides_as_posix_acl_permission_does(text, uid, groups, want, granted):
    assert acl_text.permits(acl_text.to_xattr(text), uid, 0, lambda gid: gid in groups, want) is granted


def test_inheriting_and_chmod_keep_the_mode_bits_and_the_acl_one():
    mode, access = acl_text.create(GRANTING, 0o640)
    assert mode == 0o640 and acl_text.to_text(access) == "u::rw-,u:1000:rwx,g::r-x,m::r--,o::---"
    assert acl_text.to_text(acl_text.chmod(GRANTING, 0o751)) == "u::rwx,u:1000:rwx,g::r-x,m::r-x,o::--x"
    # the mode bits say all of it: no access ACL
    assert acl_text.create(acl_text.to_xattr("u::rwx,g::r-x,o::r-x"), 0o777) == (0o755, None)


#: the calls an ACL decides, makes or changes, with the ACL calls themselves
ACL_CALLS = ("setacl", "getacl", "removeacl", "open", "mkdir", "chmod", "stat", "readdir", "write", "close")


@pytest.mark.parametrize(("name", "profile", "programs"), [
    ("kernel-overlay", "overlayfs-redirect-index", 300), ("union-fuse", "overlayfs-redirect-index", 300),
    ("kernel-overlay", "overlayfs", 300), ("tmpfs", "posix", 300),
    ("pmem-fuse", "posix-no-xattr", 150),  # a pool is mounted per program, slowly; it keeps no ACLs
])
def test_generated_programs_with_acls_agree_with_the_model(need, tmp_path, name, profile, programs):
    """The CI check of POSIX ACLs: generated programs of ACL calls and the calls ACLs decide, by root and by an
    ordinary caller, with pushes and remounts of the unions (so that ACLs are copied up from below)."""
    ops = ACL_CALLS + (("push", "remount") if profile.startswith("overlayfs") else ())
    tally = check_stateful(need(name), profile, seed=20261202, budget=Budget(programs, 25, 900),
                           scratch_root=tmp_path, ops=ops)
    assert tally.failure is None, replayable(tally.failure, tmp_path)
    assert not tally.error and not tally.deviations
    assert tally.examples >= programs
    kept = PROFILES[profile].user_xattrs
    for rule in ("union.acl.set", "union.acl.get") + (("union.acl.check", "union.acl.chmod") if kept else ()):
        assert tally.coverage[rule], f"{rule} never fired"
