"""pmem from outside: the pool mounted through FUSE (against the model, and next to tmpfs), vfslab mount pmem,
and the pmemfile tools."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from conftest import errno_of, replayable

from vfslab.check.engine.generated import Budget
from vfslab.check.union.stateful import check_stateful
from vfslab.cli import main
from vfslab.impl.pmem import fsck
from vfslab.impl.pmem.fs import PmemFS
from vfslab.model.union.ops import ALL_OPS
from vfslab.subjects import mounts

pytestmark = pytest.mark.mounts
OPS = tuple(op for op in ALL_OPS if op != "push")  # a pool has no layers to push


@pytest.mark.parametrize("name", ["pmem-fuse", "tmpfs"])
def test_generated_programs_agree_with_the_posix_model(need, tmp_path, name):
    """The CI check: 100 generated programs each (seed 20261121, <= 12 steps, remounts included). tmpfs keeps
    the `posix` profile honest; pmem-fuse is held to it, without xattrs."""
    subject = need(name)
    tally = check_stateful(subject, subject.profiles[0], seed=20261121, budget=Budget(100, 12, 600),
                           scratch_root=tmp_path, ops=OPS)
    assert tally.failure is None, replayable(tally.failure, tmp_path)
    assert not tally.error, tally.error
    assert tally.examples >= 100 and not tally.deviations


@pytest.fixture
def pool(tmp_path):
    path = tmp_path / "p.pool"
    assert main(["pmem", "mkfs", str(path), "8M"]) == 0
    return path


def test_vfslab_mount_pmem_serves_the_pool_and_umount_ends_it(need, scratch, pool):
    need("pmem-fuse")
    mnt = scratch / "mnt"
    mnt.mkdir()
    # in a process of its own: it daemonizes (a daemonizing call in the test process would take the test with it)
    done = subprocess.run([sys.executable, "-m", "vfslab", "mount", "pmem", str(pool), str(mnt)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    try:
        (mnt / "d").mkdir()
        (mnt / "d" / "f").write_bytes(b"persistent\n" * 1000)
        os.symlink("d/f", mnt / "l")
        fd = os.open(mnt / "d" / "f", os.O_RDONLY)
        try:
            os.unlink(mnt / "d" / "f")
            assert os.fstat(fd).st_nlink == 0 and os.pread(fd, 10, 0) == b"persistent"
        finally:
            os.close(fd)
        (mnt / "d" / "g").write_text("kept")
        assert errno_of(lambda: os.rmdir(mnt / "d")) == errno.ENOTEMPTY
    finally:
        assert subprocess.run(["umount", str(mnt)]).returncode == 0
    assert mounts.find_mount(mnt) is None
    fs = PmemFS.open(str(pool))
    try:
        assert fsck.check(fs) == [] and fs.readlinkat(fs.pool.root, "/l") == "d/f"
        assert [n for n, _ in fs.entries(fs.lookup(fs.pool.root, "/d"))] == ["..", "g"], "the orphan went"
    finally:
        fs.close()


def test_the_tools(pool, tmp_path, capsys):
    fs = PmemFS.open(str(pool))
    f = fs.openat(fs.pool.root, "/hello", os.O_CREAT | os.O_WRONLY)
    fs.write(f, b"hello, pool\n")
    fs.close_file(f)
    fs.close()
    assert main(["pmem", "cat", str(pool), "/hello"]) == 0
    assert capsys.readouterr().out == "hello, pool\n"
    assert main(["pmem", "ls", "-l", str(pool)]) == 0
    assert "-rw" in capsys.readouterr().out
    assert main(["pmem", "stat", str(pool)]) == 0 and "inodes in use" in capsys.readouterr().out
    assert main(["pmem", "cat", str(pool), "/nope"]) == 1
    assert capsys.readouterr().err == "vfslab pmem cat: error: /nope: No such file or directory\n"
    notes = tmp_path / "notes"
    notes.write_text("not a pool")
    assert main(["pmem", "mkfs", str(notes)]) == 1 and notes.read_text() == "not a pool", "not overwritten"
    assert "--force" in capsys.readouterr().err
    assert main(["pmem", "ls", str(notes)]) == 1 and "not a pmem pool" in capsys.readouterr().err
    bin_dir = os.path.dirname(sys.executable)
    done = subprocess.run([os.path.join(bin_dir, "pmemfile-ls"), str(pool), "/"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "hello\n"
    done = subprocess.run([os.path.join(bin_dir, "mkfs.pmemfile"), str(notes)], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith("mkfs.pmemfile: error:")
