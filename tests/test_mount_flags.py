"""The generic mount flags a union is given (suid, dev, noatime), honoured by union-fuse as kernel overlayfs honours
them: a set-id program, a device node and the access times of lower and upper files."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from test_union_fuse import on_both

from vfslab.subjects.tree import Node

pytestmark = pytest.mark.mounts

OWNER, CALLER = 1000, 2000
#: atime before mtime (ns): relatime updates it at the next read
PAST = (1_000_000_000 * 10**9, 2_000_000_000 * 10**9)


def id_program(where: Path) -> None:
    """A copy of id(1), set-uid to OWNER: run by CALLER it says euid=OWNER where set-id programs are honoured."""
    shutil.copy2("/usr/bin/id", where / "setuid-id")
    os.chown(where / "setuid-id", OWNER, OWNER)
    os.chmod(where / "setuid-id", 0o4755)


def run_set_id_and_device(mnt: Path) -> tuple[bool, str]:
    # run through an fd of ours, so that the caller needs no search permission on the directories above the mount
    program = os.open(mnt / "bin" / "setuid-id", os.O_PATH)
    try:
        done = subprocess.run([f"/proc/self/fd/{program}"], pass_fds=(program,), user=CALLER, group=CALLER,
                              extra_groups=[], capture_output=True, text=True, timeout=30)
    finally:
        os.close(program)
    assert done.returncode == 0, done.stderr
    try:
        fd = os.open(mnt / "bin" / "null", os.O_WRONLY)
    except PermissionError:
        device = "refused"
    else:
        device = "written" if os.write(fd, b"x") == 1 else "short"
        os.close(fd)
    return f"euid={OWNER}" in done.stdout, device


@pytest.fixture
def lower_with_programs(monkeypatch):
    import test_union_fuse
    monkeypatch.setattr(test_union_fuse, "LOWER", (*test_union_fuse.LOWER, Node("bin", "dir", 0o755)))
    built = test_union_fuse._layers

    def layers(root: Path, *trees):
        out = built(root, *trees)
        id_program(out[0] / "bin")
        os.mknod(out[0] / "bin" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return out

    monkeypatch.setattr(test_union_fuse, "_layers", layers)


@pytest.mark.parametrize(("flags", "honoured"), [("suid,dev", (True, "written")),
                                                 ("nosuid,nodev", (False, "refused"))])
def test_suid_and_dev_are_the_mounts_to_give(need, scratch, lower_with_programs, flags, honoured):
    seen = {who: result for who, _, result in on_both(need, scratch, flags, run_set_id_and_device)}
    assert seen["kernel"] == honoured
    assert seen["ours"] == seen["kernel"]


def read_lower_and_upper(mnt: Path) -> dict[str, int]:
    """Make an upper file, set both files' times in the past, read each through the union and run a program:
    the access times the union then shows."""
    (mnt / "upper-file").write_bytes(b"made through the union")
    shutil.copy2("/usr/bin/true", mnt / "upper-true")
    for name in ("upper-file", "upper-true"):
        os.utime(mnt / name, ns=PAST)
    before = {name: os.stat(mnt / name).st_atime_ns for name in ("dir/file", "upper-file", "upper-true")}
    (mnt / "dir" / "file").read_bytes()
    (mnt / "upper-file").read_bytes()
    subprocess.run([str(mnt / "upper-true")], check=True, timeout=30)
    return {name: os.stat(mnt / name).st_atime_ns != atime for name, atime in before.items()}


@pytest.mark.parametrize("flags", ["noatime", "relatime"])
def test_access_times_follow_the_mount_flags_as_the_kernels_do(need, scratch, flags):
    seen = {who: result for who, _, result in on_both(need, scratch, flags, read_lower_and_upper)}
    if flags == "noatime":
        assert seen["kernel"] == {"dir/file": False, "upper-file": False, "upper-true": False}
    else:  # a lower file's access time is never changed (overlayfs reads it with O_NOATIME); an upper one's is
        assert seen["kernel"] == {"dir/file": False, "upper-file": True, "upper-true": True}
    assert seen["ours"] == seen["kernel"]
