"""POSIX ACLs through union-fuse, side by side with kernel overlayfs: a default ACL's inheritance (made in place, and
built in the work directory), an ACL granting what the mode bits do not, and ACLs kept by copy-up."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest
import test_union_fuse
from test_union_fuse import on_both

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
