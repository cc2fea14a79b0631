"""Our vmblock (impl/block) on real mounts: the protocol against the model's rules, and the deadlock table."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from pathlib import Path

import pytest

from vfslab.model.block import BANNER, VERSION
from vfslab.subjects import mounts, vmblock

pytestmark = pytest.mark.mounts


def mount_vmblock(scratch: Path, kind: str = "deferred", max_threads: int = 10) -> tuple[Path, Path, int]:
    ok, reason = vmblock.available(kind)
    if not ok:
        if os.environ.get("VFSLAB_REQUIRE_FUSE") == "1":
            pytest.fail(f"{kind} vmblock is unavailable: {reason}")
        pytest.skip(f"{kind} vmblock is unavailable: {reason}")
    target, mnt = vmblock.target_of(kind, scratch), scratch / "mnt"
    target.mkdir(exist_ok=True)
    mnt.mkdir()
    (target / "foo").write_text("x")
    (target / "bar").mkdir(exist_ok=True)
    argv = vmblock.argv(kind, target, mnt, max_threads)
    return target, mnt, mounts.start_fuse(argv, mnt, log=scratch / "vmblock.log").pid


@pytest.fixture
def ours(scratch):
    target, mnt, pid = mount_vmblock(scratch)
    yield target, mnt
    mounts.unmount(mnt, pid)


def errno_of(call) -> int:
    with pytest.raises(OSError) as e:
        call()
    return e.value.errno


def test_the_tree_and_the_control_protocol(ours):
    target, mnt = ours
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


def test_a_blocked_readlink_waits_until_the_block_goes_and_notify_sees_it(ours):
    target, mnt = ours
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


def _deadlocks(scratch: Path, kind: str, max_threads: int, waiters: int) -> bool:
    """`waiters` readlinks wait on a block, then the block is deleted: True if they never return (the mount
    is then aborted and torn down)."""
    target, mnt, pid = mount_vmblock(scratch, kind, max_threads)
    name = f"wait-{os.getpid()}-{max_threads}-{waiters}"  # vmware's target dir is shared by parallel tests
    (target / name).write_text("x")
    fd = os.open(mnt / "dev", os.O_RDWR)
    os.write(fd, f"a{target}/{name}".encode())
    os.lstat(mnt / "blockdir" / name)  # looked up while workers are free
    done = threading.Semaphore(0)

    def reader() -> None:
        with contextlib.suppress(OSError):  # the connection was aborted
            os.readlink(mnt / "blockdir" / name)
        done.release()

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(waiters)]
    for t in threads:
        t.start()
    time.sleep(0.5 + waiters * 0.005)  # let every readlink reach the daemon
    def unblock_them() -> None:
        with contextlib.suppress(OSError):  # hangs in a deadlock, until the abort fails it
            os.write(fd, f"d{target}/{name}".encode())

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
    (target / name).unlink()
    assert not any(t.is_alive() for t in threads), "a reader outlived the abort"
    return stuck


TABLE = [(kind, cap, n, kind != "deferred" and n >= cap)
         for kind in ("upstream", "vmware") for cap in (5, 10, 20) for n in (cap - 1, cap)]
TABLE += [("deferred", 10, 200, False), ("deferred", 5, 20, False)]


@pytest.mark.parametrize(("kind", "max_threads", "waiters", "deadlock"), TABLE)
def test_the_deadlock_table(scratch, kind, max_threads, waiters, deadlock):
    """The upstream design and Debian's vmware-vmblock-fuse deadlock exactly when the waiting readlinks take
    every worker; our deferred design never does."""
    assert _deadlocks(scratch, kind, max_threads, waiters) == deadlock
