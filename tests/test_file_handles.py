"""File handles (name_to_handle_at / open_by_handle_at, what an NFS server keeps): with `nfs_export=on`, union-fuse
opens a handle again after a remount exactly where kernel overlayfs does, and says ESTALE where it does."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest
from conftest import replayable
from test_union_fuse import fresh

from vfslab.check.engine.generated import Budget
from vfslab.check.union.stateful import check_stateful
from vfslab.impl.union.options import OptionError, parse
from vfslab.subjects import mounts
from vfslab.subjects.tree import Layers, Node

pytestmark = pytest.mark.mounts

_libc = ctypes.CDLL(None, use_errno=True)
MAX_HANDLE = 128
EXPORT = "redirect_dir=on,index=on,nfs_export=on"


class _FileHandle(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int), ("f", ctypes.c_ubyte * MAX_HANDLE)]


def handle_of(path: Path) -> tuple[int, bytes] | str:
    """name_to_handle_at: the handle's type and bytes, or the errno's name."""
    h, mount_id = _FileHandle(MAX_HANDLE), ctypes.c_int()
    if _libc.name_to_handle_at(-100, os.fsencode(path), ctypes.byref(h), ctypes.byref(mount_id), 0) != 0:
        return errno.errorcode[ctypes.get_errno()]
    return h.type, bytes(h.f[: h.bytes])


def open_handle(mnt: Path, handle: tuple[int, bytes] | str) -> object:
    """What open_by_handle_at of `handle` in the mount at `mnt` opens: a file's bytes, a directory's names, or
    the errno's name."""
    if isinstance(handle, str):
        return handle
    kind, data = handle
    h = _FileHandle(len(data), kind)
    ctypes.memmove(h.f, data, len(data))
    mount_fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = _libc.open_by_handle_at(mount_fd, ctypes.byref(h), os.O_RDONLY)
        if fd < 0:
            return errno.errorcode[ctypes.get_errno()]
        try:
            return sorted(os.listdir(fd)) if os.path.isdir(f"/proc/self/fd/{fd}") else os.read(fd, 4096)
        finally:
            os.close(fd)
    finally:
        os.close(mount_fd)


def handles_across_remount(scratch: Path, who: str, extra: str) -> tuple[dict, dict, dict]:
    """Handles of lower and upper files and directories, taken before their files are changed, copied up,
    renamed, removed (and a removed one's inode number used again), opened in the same mount, after a remount of
    the same layers, and again once every name of the new mount was looked up (a daemon numbering its inodes in
    the order it is asked for them has then given the old numbers to inodes again)."""
    lowers, upper, work, mnt, mount = fresh(scratch, who)
    pid = mount(lowers, upper, work, mnt, extra)
    try:
        (mnt / "new").write_bytes(b"upper file")
        (mnt / "dir" / "newdir").mkdir()
        names = ("dir/file", "dir/sub/deep", "dir/sub", "dir", "link2", "gone", "new", "dir/newdir", "dir/below",
                 "mode600", "removed")
        (mnt / "removed").write_bytes(b"removed")
        handles = {name: handle_of(mnt / name) for name in names}
        with open(mnt / "dir" / "file", "ab") as f:
            f.write(b", copied up")
        with open(mnt / "link1", "ab") as f:
            f.write(b", through the other name")
        os.rename(mnt / "dir" / "sub", mnt / "moved")
        os.unlink(mnt / "gone")
        gone = os.stat(mnt / "removed").st_ino
        os.unlink(mnt / "removed")
        for i in range(50):  # a new file, most likely on the removed one's inode number
            (mnt / f"after{i}").write_bytes(b"another file")
            if os.stat(mnt / f"after{i}").st_ino == gone:
                break
        same = {name: open_handle(mnt, h) for name, h in handles.items()}
    finally:
        mounts.unmount(mnt, pid)
    pid = mount(lowers, upper, work, mnt, extra)
    try:
        again = {name: open_handle(mnt, h) for name, h in handles.items()}
        # what the handles found, the paths find as well
        assert (mnt / "moved" / "deep").read_bytes() == b"deep" and sorted(os.listdir(mnt / "moved")) == ["deep"]
        for top, dirs, files in os.walk(mnt):
            for name in dirs + files:
                os.lstat(Path(top, name))
        looked_up = {name: open_handle(mnt, h) for name, h in handles.items()}
    finally:
        mounts.unmount(mnt, pid)
    return same, again, looked_up


def test_handles_open_after_a_remount_as_on_kernel_overlayfs(need, scratch):
    need("kernel-overlay")
    need("union-fuse")
    kernel = handles_across_remount(scratch, "kernel", EXPORT)
    ours = handles_across_remount(scratch, "ours", EXPORT)
    assert ours == kernel
    same, again, looked_up = kernel
    assert again["dir/file"] == b"lower file, copied up" and again["link2"] == b"linked, through the other name"
    assert again["dir/sub"] == ["deep"] and again["dir/newdir"] == [] and again["new"] == b"upper file"
    assert again["gone"] == again["removed"] == "ESTALE", "a removed file's handle is stale, its number used again"
    assert same == again == looked_up


def test_without_nfs_export_handles_do_not_outlive_the_mount(need, scratch):
    """The kernel makes no handles then (EOPNOTSUPP); FUSE always makes them, so union-fuse's open in the same
    mount while the kernel holds the inode, and are stale after a remount, never another file once the new
    mount's node ids repeat the old ones: a named difference."""
    need("kernel-overlay")
    need("union-fuse")
    _, kernel, _ = handles_across_remount(scratch, "kernel", "redirect_dir=on,index=on")
    same, ours, looked_up = handles_across_remount(scratch, "ours", "redirect_dir=on,index=on")
    assert set(kernel.values()) == {errno.errorcode[errno.EOPNOTSUPP]}
    assert same["new"] == b"upper file" and set(ours.values()) == set(looked_up.values()) == {"ESTALE"}


def test_nfs_export_needs_the_index():
    with pytest.raises(OptionError, match="nfs_export=on needs index=on"):
        parse(["lowerdir=/,upperdir=/tmp,workdir=/var,index=off,nfs_export=on"])
    assert parse(["lowerdir=/,nfs_export=on"]).nfs_export


#: what a FUSE union's file handle from before a remount opens once the new mount has looked its names up in
#: another order (docs/facts.md, FUSE 12): unionfs-fuse numbers inodes as it is asked for them, with no
#: generation to tell the mounts apart
AFTER_REMOUNT = {"union-fuse": "ESTALE", "fuse-overlayfs": "ESTALE", "unionfs-fuse": "another file"}
FILES = tuple(Node(f"f{i}", "file", data=f"file {i}".encode()) for i in range(20))


@pytest.mark.parametrize("name", sorted(AFTER_REMOUNT))
def test_a_fuse_unions_handle_from_before_a_remount(need, scratch, name):
    subject = need(name)
    m = subject.setup(Layers((FILES,)), scratch, subject.profiles[0])
    try:
        handles = {node.path: handle_of(m.path / node.path) for node in FILES}
        assert all(not isinstance(h, str) for h in handles.values())
        m.remount()
        for node in reversed(FILES):
            os.lstat(m.path / node.path)
        opened = {path: open_handle(m.path, h) for path, h in handles.items()}
        seen = {"ESTALE" if got == "ESTALE" else "its file" if got == (m.path / path).read_bytes() else
                "another file" if isinstance(got, bytes) else got for path, got in opened.items()}
    finally:
        m.teardown()
    # ESTALE is always possible too: the kernel may have dropped a looked-up inode again (union.handle.evicted)
    assert AFTER_REMOUNT[name] in seen and seen <= {AFTER_REMOUNT[name], "its file", "ESTALE"}, seen


#: the calls a file handle meets: made of a name, opened after its file was renamed, linked, written, removed (still
#: open, or not), and after a remount of the unions (a plain file system's is slow: tmpfs keeps nothing)
HANDLE_CALLS = ("handle", "open_handle", "open", "read", "write", "fstat", "rename", "link", "unlink", "close")
#: what each subject's handles reach in generated programs: kernel overlayfs makes none without nfs_export (so no
#: open is asked); a stale handle, which needs a handle's own file removed, is the explicit programs' (rare-paths)
REACHED = {"kernel-overlay": ("union.handle.unsupported",),
           "tmpfs": ("union.handle.open", "union.handle.perm"),
           "union-fuse": ("union.handle.open", "union.handle.perm")}


@pytest.mark.parametrize(("name", "profile"), [
    ("kernel-overlay", "overlayfs-redirect-index"), ("tmpfs", "posix"), ("union-fuse", "overlayfs-redirect-index"),
])
def test_generated_programs_with_file_handles_agree_with_the_model(need, tmp_path, name, profile):
    """The CI check of file handles: 300 generated programs of the calls a handle meets, by root and by an ordinary
    caller (who may not open one: EPERM)."""
    ops = HANDLE_CALLS + (("remount",) if profile.startswith("overlayfs") else ())
    tally = check_stateful(need(name), profile, seed=20261204, budget=Budget(300, 20, 900),
                           scratch_root=tmp_path, ops=ops)
    assert tally.failure is None, replayable(tally.failure, tmp_path)
    assert not tally.error and not tally.deviations
    assert tally.examples >= 300
    for rule in REACHED[name]:
        assert tally.coverage[rule], f"{rule} never fired"


def test_a_fuse_handle_may_go_stale_whenever_the_kernel_drops_its_inode(need, tmp_path, cold_steps):
    """With the kernel's caches dropped before every step (memory pressure does the same, when it likes), a FUSE
    mount's handle of a file nothing has held since is ESTALE, or opens once a lookup made the inode again under the
    same node id; of one held open since, it opens. Generated programs of the calls a handle meets, as above.
    (fuse-overlayfs from cold caches differs at once: it counts a directory's links as far as it has looked.)"""
    tally = check_stateful(need("union-fuse"), "overlayfs-redirect-index", seed=20261205, budget=Budget(60, 12, 600),
                           scratch_root=tmp_path, ops=HANDLE_CALLS)
    assert tally.failure is None, replayable(tally.failure, tmp_path)
    assert not tally.error and tally.examples >= 60
    assert tally.coverage["union.handle.evicted"] and tally.coverage["union.handle.open"]
