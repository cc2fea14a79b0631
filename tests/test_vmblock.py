"""Our vmblock (impl/block) on real mounts: the protocol against the model's rules, and the deadlock table."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from vfslab.model.block import BANNER, VERSION
from vfslab.subjects import mounts

pytestmark = pytest.mark.mounts


def mount_vmblock(scratch: Path, design: str = "deferred", max_threads: int = 10) -> tuple[Path, Path, int]:
    target, mnt = scratch / "target", scratch / "mnt"
    target.mkdir()
    mnt.mkdir()
    (target / "foo").write_text("x")
    (target / "bar").mkdir()
    argv = [sys.executable, "-m", "vfslab.impl.block.main", "--target", str(target), "--design", design,
            "--max-threads", str(max_threads), "-f", str(mnt)]
    return target, mnt, mounts.start_fuse(argv, mnt, log=scratch / "vmblock.log").pid


@pytest.fixture
def fuse_root() -> None:
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        message = "vmblock needs root and /dev/fuse"
        if os.environ.get("VFSLAB_REQUIRE_FUSE") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def vmblock(fuse_root, scratch):
    target, mnt, pid = mount_vmblock(scratch)
    yield target, mnt
    mounts.unmount(mnt, pid)


def errno_of(call) -> int:
    with pytest.raises(OSError) as e:
        call()
    return e.value.errno


def test_the_tree_and_the_control_protocol(vmblock):
    target, mnt = vmblock
    assert sorted(os.listdir(mnt)) == ["blockdir", "dev", "notifydir", "version"]
    assert sorted(os.listdir(mnt / "blockdir")) == ["bar", "foo"]
    assert os.readlink(mnt / "blockdir/foo") == f"{target}/foo"
    assert os.lstat(mnt / "blockdir/foo").st_size == len(f"{target}/foo")
    assert errno_of(lambda: os.readlink(mnt / "blockdir/gone")) == errno.ENOENT
    assert (os.stat(mnt / "dev").st_mode & 0o7777, os.stat(mnt / "dev").st_uid) == (0o600, 0)
    assert (mnt / "version").read_bytes() == VERSION
    fd, other = os.open(mnt / "dev", os.O_RDWR), os.open(mnt / "dev", os.O_RDWR)
    try:
        assert os.read(fd, 100) == BANNER
        assert os.write(fd, f"a{target}/foo".encode()) == len(f"a{target}/foo")
        assert errno_of(lambda: os.write(other, f"a{target}//foo/".encode())) == errno.EEXIST
        assert errno_of(lambda: os.write(other, f"d{target}/foo".encode())) == errno.ENOENT
        assert errno_of(lambda: os.write(fd, b"x/y")) == errno.EINVAL
        assert errno_of(lambda: os.write(fd, b"a" + b"/z" * 2048 + b"y")) == errno.ENAMETOOLONG
        assert errno_of(lambda: (mnt / "notifydir/bar").read_bytes()) == errno.ENOENT
        assert errno_of(lambda: (mnt / "notifydir/gone").read_bytes()) == errno.EINVAL
        assert os.write(fd, f"d{target}/foo".encode()) > 0
    finally:
        os.close(fd)
        os.close(other)


def test_a_blocked_readlink_waits_until_the_block_goes_and_notify_sees_it(vmblock):
    target, mnt = vmblock
    fd = os.open(mnt / "dev", os.O_RDWR)
    os.write(fd, f"a{target}/foo".encode())
    got: list[object] = []
    notified = threading.Event()
    notifier = threading.Thread(target=lambda: ((mnt / "notifydir/foo").read_bytes(), notified.set()))
    notifier.start()
    time.sleep(0.2)
    readers = [threading.Thread(target=lambda: got.append(os.readlink(mnt / "blockdir/foo"))) for _ in range(3)]
    for r in readers:
        r.start()
    assert notified.wait(5), "a readlink of the entry did not end the notify read"
    time.sleep(0.3)
    assert got == [], "a readlink returned while the block was on"
    assert os.readlink(mnt / "blockdir/bar") == f"{target}/bar", "only the exact path is blocked"
    os.close(fd)  # the handle's blocks go with it
    for r in readers:
        r.join(5)
    assert got == [f"{target}/foo"] * 3


def _deadlocks(scratch: Path, design: str, max_threads: int, waiters: int) -> bool:
    """`waiters` readlinks wait on a block, then the block is deleted: True if they never return (the mount
    is then aborted and torn down)."""
    target, mnt, pid = mount_vmblock(scratch, design, max_threads)
    fd = os.open(mnt / "dev", os.O_RDWR)
    os.write(fd, f"a{target}/foo".encode())
    os.lstat(mnt / "blockdir/foo")  # looked up while workers are free
    done = threading.Semaphore(0)

    def reader() -> None:
        with contextlib.suppress(OSError):  # the connection was aborted
            os.readlink(mnt / "blockdir/foo")
        done.release()

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(waiters)]
    for t in threads:
        t.start()
    time.sleep(0.5 + waiters * 0.005)  # let every readlink reach the daemon
    def unblock_them() -> None:
        with contextlib.suppress(OSError):  # hangs in a deadlock, until the abort fails it
            os.write(fd, f"d{target}/foo".encode())

    unblock = threading.Thread(target=unblock_them, daemon=True)
    unblock.start()
    deadline = time.monotonic() + 3 + waiters * 0.01
    returned = sum(done.acquire(timeout=max(0.0, deadline - time.monotonic())) for _ in range(waiters))
    stuck = returned < waiters
    if stuck:
        mounts.abort(mnt, pid)  # fusectl abort + SIGKILL: every waiter gets an error at once
    for t in [*threads, unblock]:
        t.join(10)
    with contextlib.suppress(OSError):
        os.close(fd)
    mounts.unmount(mnt, pid)
    assert not any(t.is_alive() for t in threads), "a reader outlived the abort"
    return stuck


@pytest.mark.parametrize(("design", "max_threads", "waiters", "deadlock"), [
    ("upstream", 5, 4, False), ("upstream", 5, 5, True),
    ("upstream", 10, 9, False), ("upstream", 10, 10, True),
    ("upstream", 20, 19, False), ("upstream", 20, 20, True),
    ("deferred", 10, 200, False), ("deferred", 5, 20, False),
])
def test_the_deadlock_table(fuse_root, scratch, design, max_threads, waiters, deadlock):
    """The upstream design deadlocks exactly when the waiting readlinks take every worker; ours never does."""
    assert _deadlocks(scratch, design, max_threads, waiters) == deadlock
