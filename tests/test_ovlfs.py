"""ovlfs (impl/ovlfs) on real mounts, once per storage method: ordinary tools work, a remount keeps everything (what
was deleted stays deleted, inode numbers stay), the base is never written, storage that is not fit is refused in one
line with nothing mounted, and a symlink in the base pointing out of it is served as a symlink, never followed."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import errno_of
from vfslab.impl.ovlfs.fs import Ovlfs
from vfslab.impl.ovlfs.storage import mkfs, open_method
from vfslab.subjects import mounts
from vfslab.subjects.tree import Node, build_layer
from vfslab.subjects.walk import union_state

pytestmark = pytest.mark.mounts

SCHEMES = ("dir", "file", "pmem")
MOUNT = [sys.executable, "-m", "vfslab", "mount", "ovlfs"]
BASE = (
    Node("docs", "dir", 0o755), Node("docs/readme", "file", data=b"read me\n"), Node("docs/old", "file", data=b"old\n"),
    Node("album", "dir", 0o755), Node("album/photo", "file", data=b"\x89PNG" * 3000),
    Node("gone", "file", data=b"to be deleted\n"), Node("keep", "file", 0o640, uid=1000, gid=1000, data=b"kept\n"),
    Node("twin", "hardlink", target="keep"), Node("empty", "dir", 0o700),
    Node("etc", "symlink", target="/etc"), Node("root", "symlink", target="/"),
)


@pytest.fixture(autouse=True)
def _fuse(need):
    need("ovlfs-dir")


def _base(scratch: Path, nodes: tuple[Node, ...] = BASE) -> Path:
    base = scratch / "base"
    base.mkdir()
    build_layer(nodes, base)
    return base


def _spec(scratch: Path, scheme: str) -> str:
    return f"{scheme}:{scratch / 'storage'}"


def _picture(base: Path) -> dict:
    """Everything of the base a write would change: each entry's attributes, contents or target, and times."""
    times = {p: os.lstat(base / p).st_mtime_ns for p in union_state(base)}
    return {"entries": union_state(base), "mtimes": times}


def _mount(base: Path, spec: str, mnt: Path, *options: str) -> subprocess.CompletedProcess:
    """`vfslab mount ovlfs` in a process of its own: it daemonizes, and returns once mounted (or refused)."""
    mnt.mkdir(exist_ok=True)
    return subprocess.run([*MOUNT, "--base", str(base), "--storage", spec, str(mnt), *options], capture_output=True,
                          text=True, timeout=30)


def _daemon(mnt: Path) -> int:
    """The pid of the daemon serving `mnt` (it daemonized: it is no child of ours)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"ovlfs" in argv and os.fsencode(mnt) in argv:
            return int(proc.name)
    raise AssertionError(f"no daemon serves {mnt}")


def _umount(mnt: Path) -> None:
    """`umount`, then wait for the daemon to end: its Sync and Release come after the kernel lets go."""
    pid = _daemon(mnt)
    assert subprocess.run(["umount", str(mnt)]).returncode == 0
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(f"/proc/{pid}").exists(), "the daemon did not end after umount"
    assert mounts.find_mount(mnt) is None


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


def _inodes(mnt: Path) -> dict[str, int]:
    return {p: os.lstat(mnt / p).st_ino for p in union_state(mnt)}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_tools_work_and_a_remount_keeps_everything(scratch, scheme):
    base, mnt, spec = _base(scratch), scratch / "mnt", _spec(scratch, scheme)
    before = _picture(base)
    mkfs(spec)
    done = _mount(base, spec, mnt)
    assert done.returncode == 0, done.stderr
    try:
        options = Path("/proc/self/mounts").read_text()
        assert f"{mnt} fuse.vfslab-ovlfs" in options and "default_permissions,allow_other" in options
        (scratch / "src").write_bytes(b"copied in\n" * 500)
        _run("cp", str(scratch / "src"), str(mnt / "docs/copied"))
        _run("mv", str(mnt / "docs/old"), str(mnt / "moved"))
        _run("mv", str(mnt / "album"), str(mnt / "photos"))  # EXDEV: mv copies the directory, then removes it
        _run("ln", str(mnt / "keep"), str(mnt / "third"))
        _run("ln", "-s", "docs/readme", str(mnt / "sym"))
        _run("rm", str(mnt / "gone"))
        _run("mkdir", "-p", str(mnt / "new/sub"))
        _run("rmdir", str(mnt / "empty"))
        _run("sh", "-c", f"echo more >> {mnt / 'twin'}")
        assert _run("cat", str(mnt / "sym"), str(mnt / "keep")) == "read me\nkept\nmore\n"
        listing = {line.split()[-1]: line.split()[:4] for line in _run("ls", "-ln", str(mnt)).splitlines()[1:]
                   if not line.startswith("l")}
        assert "gone" not in listing and listing["third"] == ["-rw-r-----", "3", "1000", "1000"]
        assert "vfslab-ovlfs" in _run("df", str(mnt))
        assert errno_of(lambda: os.rename(mnt / "docs", mnt / "papers")) == errno.EXDEV
        assert errno_of(lambda: os.getxattr(mnt / "keep", "user.k")) == errno.ENOTSUP
        state, inodes = union_state(mnt), _inodes(mnt)
    finally:
        _umount(mnt)
    done = _mount(base, spec, mnt)
    assert done.returncode == 0, done.stderr
    try:
        assert union_state(mnt) == state, "a remount shows what was there before it"
        assert _inodes(mnt) == inodes, "inode numbers are the storage's: the same at every mount"
        assert not (mnt / "gone").exists() and not (mnt / "empty").exists() and not (mnt / "docs/old").exists()
        assert (mnt / "moved").read_bytes() == b"old\n" and (mnt / "photos/photo").read_bytes() == b"\x89PNG" * 3000
        assert (mnt / "docs/copied").read_bytes() == b"copied in\n" * 500
        assert (mnt / "third").read_bytes() == b"kept\nmore\n" and os.lstat(mnt / "third").st_nlink == 3
        assert os.readlink(mnt / "sym") == "docs/readme" and (mnt / "new/sub").is_dir()
    finally:
        _umount(mnt)
    assert _picture(base) == before, "the base is never written"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_open_file_outlives_its_last_name(scratch, scheme):
    """...and one that loses a name of several counts the names left (libfuse takes the hidden name it renamed the
    file to off the count the daemon gives)."""
    base, mnt, spec = _base(scratch), scratch / "mnt", _spec(scratch, scheme)
    mkfs(spec)
    assert _mount(base, spec, mnt).returncode == 0
    try:
        fd, linked = os.open(mnt / "gone", os.O_RDONLY), os.open(mnt / "keep", os.O_RDONLY)
        try:
            os.unlink(mnt / "gone")
            assert os.fstat(fd).st_nlink == 0 and os.pread(fd, 100, 0) == b"to be deleted\n"
            assert "gone" not in os.listdir(mnt)
            os.unlink(mnt / "keep")
            assert os.fstat(linked).st_nlink == os.stat(mnt / "twin").st_nlink == 1
        finally:
            os.close(fd)
            os.close(linked)
        assert not any(name.startswith(".fuse_hidden") for name in os.listdir(mnt))
    finally:
        _umount(mnt)


def _refused(base: Path, spec: str, mnt: Path) -> str:
    done = _mount(base, spec, mnt)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert mounts.find_mount(mnt) is None
    return done.stderr


def _damage(location: Path, scheme: str) -> None:
    """Garble what a method reads at Init: the tables' image (dir:, file:), the root's record in the pool (pmem:,
    whose pool keeps no checksums: bytes garbled at random may fall where nothing is read)."""
    if scheme == "pmem":
        from vfslab.impl.pmem.fs import PmemFS

        fs = PmemFS.open(str(location))
        f = fs.openat(fs.pool.root, "1", os.O_WRONLY | os.O_TRUNC)
        fs.pwrite(f, b"{not json", 0)
        fs.close_file(f)
        fs.close()
        return
    with open(location / "ovlfs.meta" if scheme == "dir" else location, "r+b") as f:
        f.seek(40)
        f.write(b"\xa5" * 16)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_storage_not_fit_is_refused_in_one_line(scratch, scheme):
    base, mnt, spec = _base(scratch), scratch / "mnt", _spec(scratch, scheme)
    location = scratch / "storage"
    assert "storage" in _refused(base, spec, mnt), "unformatted"
    location.write_bytes(b"#!/bin/sh\necho not storage at all\n" * 100)
    _refused(base, spec, mnt)  # foreign
    location.unlink()
    mkfs(spec)
    assert _mount(base, spec, mnt).returncode == 0
    _umount(mnt)
    other = scratch / "other"
    other.mkdir()
    assert "another base directory" in _refused(other, spec, mnt)
    _damage(location, scheme)
    _refused(base, spec, mnt)  # corrupt
    _refused(scratch / "no-such-base", spec, mnt)
    os.symlink(base, scratch / "base-link")
    _refused(scratch / "base-link", spec, mnt)  # the base itself is never reached through a symlink
    _refused(base, f"nonsense:{location}", mnt)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_symlink_out_of_the_base_is_served_never_followed(scratch, scheme):
    base, mnt, spec = _base(scratch), scratch / "mnt", _spec(scratch, scheme)
    mkfs(spec)
    assert _mount(base, spec, mnt).returncode == 0
    try:
        assert os.readlink(mnt / "etc") == "/etc" and os.path.islink(mnt / "root")
        os.rename(mnt / "etc", mnt / "docs/etc")  # a copy-up of the symlink: its target, not what it names
        assert os.readlink(mnt / "docs/etc") == "/etc"
    finally:
        _umount(mnt)
    # what the daemon itself resolves: a path through a symlink of the base is no path (the kernel follows
    # symlinks for callers; the daemon never does)
    fs = Ovlfs(str(base), open_method(spec))
    try:
        with fs.lock:
            assert errno_of(lambda: fs.resolve("/root/etc/passwd")) == errno.ENOTDIR
            assert errno_of(lambda: fs.resolve("/docs/etc/passwd")) == errno.ENOTDIR
            assert fs.readlink(fs.existing("/root")) == "/"
    finally:
        fs.close()
    assert os.readlink(base / "etc") == "/etc" and not (base / "docs/etc").exists()


BARE = """from vfslab.impl.ovlfs.storage.dir import DirMethod


class Bare(DirMethod):
    \"\"\"dir:'s tables, but no Read/Write File and no Set/Read Symlink: it keeps no data itself.\"\"\"

    read_file = write_file = set_symlink = read_symlink = None
"""


def test_a_method_keeping_no_data_has_it_in_the_storage_file_system(scratch):
    """Copied-up files and symlinks go into `storage_root`, one per inode, by its reference name."""
    base, mnt, files = _base(scratch), scratch / "mnt", scratch / "files"
    (scratch / "bare.py").write_text(BARE)
    spec = f"python:{scratch / 'bare.py'}:Bare:{scratch / 'storage'}"
    mkfs(spec)
    assert "storage_root" in _refused(base, spec, mnt)
    files.mkdir()
    assert _mount(base, spec, mnt, "-o", f"storage_root={files}").returncode == 0
    try:
        with open(mnt / "docs/readme", "r+b") as f:
            f.write(b"READ")
        os.symlink("docs/readme", mnt / "new-link")
        os.rename(mnt / "etc", mnt / "etc2")
        inodes = [os.lstat(mnt / p).st_ino for p in ("docs/readme", "new-link", "etc2")]
    finally:
        _umount(mnt)
    assert sorted(os.listdir(files)) == sorted(map(str, inodes))
    assert os.readlink(files / str(inodes[2])) == "/etc"
    assert _mount(base, spec, mnt, "-o", f"storage_root={files}").returncode == 0
    try:
        assert (mnt / "docs/readme").read_bytes() == b"READ me\n"
        assert os.readlink(mnt / "new-link") == "docs/readme" and os.readlink(mnt / "etc2") == "/etc"
    finally:
        _umount(mnt)
    assert (base / "docs/readme").read_bytes() == b"read me\n"



@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_storage_serves_one_mount_at_a_time_and_the_next_waits_for_its_sync(scratch, scheme):
    # a second daemon on one storage would each overwrite the other's Sync; and `umount` returns before the
    # daemon's Sync and Release: the next mount holds off until the storage's lock is let go
    base, spec = _base(scratch), _spec(scratch, scheme)
    first, second = scratch / "first", scratch / "second"
    mkfs(spec)
    assert _mount(base, spec, first).returncode == 0
    second.mkdir()
    waiting = subprocess.Popen([*MOUNT, "--base", str(base), "--storage", spec, str(second)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=2)
        assert mounts.find_mount(second) is None
        (first / "written").write_bytes(b"x" * 100_000)
        assert subprocess.run(["umount", str(first)]).returncode == 0
        assert waiting.wait(timeout=30) == 0, waiting.stderr.read()
        assert (second / "written").read_bytes() == b"x" * 100_000
    finally:
        waiting.kill()
        _umount(second)
