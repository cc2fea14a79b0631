"""Our vmblock (impl/block) on real mounts: the protocol against the model's rules, and the deadlock table."""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import errno_of, replayable

from vfslab.check.engine.generated import Budget
from vfslab.check.results import Results
from vfslab.check.vmblock.deadlock import probe
from vfslab.check.vmblock.program import BlockOp, BlockProgram
from vfslab.check.vmblock.stateful import check_block_stateful
from vfslab.cli import main
from vfslab.model.block import BANNER, VERSION
from vfslab.subjects import mounts
from vfslab.subjects import vmblock as vmblock_subjects
from vfslab.subjects.driver import as_caller
from vfslab.suite import default_suite

pytestmark = pytest.mark.mounts


@pytest.fixture
def ours(scratch, need):
    scratch.chmod(0o755)  # a non-root caller must reach the mount for its checks to be the daemon's
    m = need("vmblock-fuse").mount(scratch, names=("foo", "bar"))
    yield m.target, m.path
    m.teardown()


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


TABLE = [(name, cap, n, name != "vmblock-fuse" and n >= cap)
         for name in ("vmblock-fuse-upstream", "vmware-vmblock") for cap in (5, 10, 20) for n in (cap - 1, cap)]
TABLE += [("vmblock-fuse", 10, 200, False), ("vmblock-fuse", 5, 20, False)]


@pytest.mark.parametrize(("name", "max_threads", "waiters", "deadlock"), TABLE)
def test_the_deadlock_table(scratch, need, name, max_threads, waiters, deadlock):
    """The upstream design and Debian's vmware-vmblock-fuse deadlock exactly when the waiting readlinks take
    every worker; our default (deferred) design never does. A deadlock is aborted, never a hang."""
    found = probe(need(name), scratch, waiters, max_threads)
    assert found.deadlocked == deadlock, found.describe()
    assert mounts.mounts_under(scratch) == [], "the probe left its mount behind"


@pytest.mark.parametrize(("name", "profile", "expected", "unprivileged"), [
    ("vmblock-fuse", "vmblock", None, False),
    ("vmblock-fuse-upstream", "vmblock", None, False),
    ("vmware-vmblock", "vmblock-upstream", None, False),
    ("vmware-vmblock", "vmblock", "vmblock-upstream", False),
    ("vmblock-fuse", "vmblock", None, True),
    ("vmblock-fuse-upstream", "vmblock", None, True),
])
def test_generated_concurrent_programs_agree_with_the_model(scratch, need, name, profile, expected, unprivileged):
    """The CI check: 60 generated programs per subject (seed 20261121), waits and wake-ups included, and a second
    caller (uid 1000): refused the control file, or in the unprivileged mode blocking only for itself.
    Debian's program keeps to open-vm-tools' release build, which differs from the seed's design."""
    tally = check_block_stateful(need(name), profile, seed=20261121, budget=Budget(60, 25, 600),
                                 scratch_root=scratch / "check", unprivileged=unprivileged)
    assert tally.failure is None, replayable(tally.failure, scratch)
    assert not tally.error, tally.error
    assert tally.examples >= 60
    assert tally.coverage["vmblock.wake"] > 0 and tally.coverage["vmblock.notify.waits"] > 0
    assert tally.coverage["vmblock.perm.per-user" if unprivileged else "vmblock.perm.root"] > 0
    assert sorted(tally.deviations) == ([expected] if expected else [])
    if expected:
        assert "vmblock.version.absent" in tally.differences


def _as(uid: int, call) -> threading.Thread:
    """Run `call` in a thread whose file-system uid is `uid` (FUSE sees the caller's fsuid)."""

    def run() -> None:
        with as_caller(uid):
            call()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_only_root_may_open_the_control_file(ours):
    _, mnt = ours
    got: list[object] = []

    def as_user() -> None:
        got.append((mnt / "version").read_bytes())  # the mount is within reach: what follows is the daemon's
        got.append(errno_of(lambda: os.open(mnt / "dev", os.O_RDWR)))

    _as(1000, as_user).join(10)
    assert got == [VERSION, errno.EACCES]


def test_unprivileged_mode_blocks_a_user_only_for_that_user(scratch):
    target, mnt = scratch / "target", scratch / "mnt"
    target.mkdir()
    mnt.mkdir()
    (target / "foo").touch()
    scratch.chmod(0o755)
    argv = [sys.executable, "-m", "vfslab.impl.block.main", "--unprivileged", "--target", str(target), "-f",
            str(mnt)]
    pid = mounts.start_fuse(argv, mnt).pid
    link, fds, seen = mnt / "blockdir/foo", [], {}
    try:
        assert os.stat(mnt / "dev").st_mode & 0o777 == 0o666
        _as(1000, lambda: fds.append(os.open(mnt / "dev", os.O_RDWR))).join(10)
        os.write(fds[0], f"a{target}/foo".encode())  # the handle is user 1000's, whoever writes
        assert os.readlink(link) == f"{target}/foo", "root is not held by user 1000's block"
        _as(1001, lambda: seen.setdefault(1001, os.readlink(link))).join(10)
        assert seen == {1001: f"{target}/foo"}, "nor is another user"
        waiter = _as(1000, lambda: seen.setdefault(1000, os.readlink(link)))
        waiter.join(0.5)
        assert waiter.is_alive() and 1000 not in seen, "user 1000's own readlink waits"
        os.close(fds.pop())  # the handle's blocks go with it
        waiter.join(10)
        assert seen[1000] == f"{target}/foo"
    finally:
        for fd in fds:
            os.close(fd)
        mounts.unmount(mnt, pid)


def test_vfslab_run_gives_the_deadlock_verdict_and_replays_vmblock_programs(need, tmp_path, capsys):
    """The deadlock scenario through the command line, and a vmblock program that must deviate, replayed."""
    for name in ("vmblock-fuse", "vmblock-fuse-upstream"):
        need(name)
    out = tmp_path / "out"
    scenario = default_suite() / "vmblock" / "deadlock-at-cap-5.toml"
    assert main(["run", str(scenario), "--subject", "vmblock-fuse", "--subject", "vmblock-fuse-upstream",
                 "--out", str(out)]) == 0, capsys.readouterr()
    verdicts = {(r.subject, r.verdict) for r in Results.read(out / "results.json").records}
    assert verdicts == {("vmblock-fuse", "pass"), ("vmblock-fuse-upstream", "deadlock")}
    program = BlockProgram(("foo",), [BlockOp("open"), BlockOp("write", (0, "a{target}/foo")),
                                      BlockOp("readlink", ("foo",)), BlockOp("notify", ("foo",)),
                                      BlockOp("version")], "vmblock-fuse", "vmblock-upstream")
    program.write(tmp_path / "p.json")
    assert main(["replay", str(tmp_path / "p.json")]) == 1, "ours has /version: a deviation from upstream"
    assert "deviation:vmblock" in capsys.readouterr().out
    assert main(["replay", str(tmp_path / "p.json"), "--profile", "vmblock"]) == 0
    assert "pass on vmblock-fuse" in capsys.readouterr().out


def test_vmware_vmblock_runs_in_a_namespace_that_pins_none_of_our_mounts(scratch, need):
    """Its namespace keeps no copy of our mounts: a copy of an index=on overlay would keep the upper directory
    in use, and remounting the overlay would fail with EBUSY while the program runs."""
    subject = need("vmware-vmblock")
    dirs = [scratch / n for n in ("lower", "upper", "work", "union")]
    for d in dirs:
        d.mkdir()
    options = f"lowerdir={dirs[0]},upperdir={dirs[1]},workdir={dirs[2]},index=on"
    mounts.mount_overlay(options, dirs[3])
    m = subject.mount(scratch / "vmblock", names=("foo",))
    try:
        assert os.readlink(m.path / "blockdir/foo") == "/tmp/VMwareDnD/foo"
        assert mounts.find_mount(Path("/tmp/VMwareDnD")) is None, "the bind over it stays in its namespace"
        mounts.unmount(dirs[3])
        mounts.mount_overlay(options, dirs[3])
    finally:
        m.teardown()
        mounts.unmount(dirs[3])


# ---- planted bugs: our daemon patched before it serves ------------------------------------------------------------

#: a daemon script: our vmblock's command, with impl/block patched first
PLANTED = """import sys

from vfslab.impl import fuse_ll
from vfslab.impl.block import fs, main

{patch}

sys.exit(main.main(sys.argv[1:]))
"""


class Planted:
    """Starts our vmblock's daemons from a script that patches impl/block before serving: the subjects' fork server
    has imported the real one, so a patch in this process would never reach a daemon."""

    def __init__(self, script: Path) -> None:
        self.script = script

    def spawn(self, main: str, argv: list[str], log: Path) -> int:
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            return os.posix_spawn(sys.executable, [sys.executable, str(self.script), *argv], os.environ,
                                  file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                                (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)],
                                  setsid=True)
        finally:
            os.close(out)


@pytest.fixture
def plant(need, monkeypatch, tmp_path):
    """plant(code): our vmblock subjects' daemons run `code` (with fuse_ll, fs and main imported) before serving."""
    need("vmblock-fuse")

    def planted(code: str) -> None:
        script = tmp_path / "planted_vmblock.py"
        script.write_text(PLANTED.format(patch=code))
        monkeypatch.setattr(vmblock_subjects, "FORKS", Planted(script))

    return planted


def _records(out: Path) -> dict[str, object]:
    return {r.scenario: r for r in Results.read(out / "results.json").records}


ANYONE_OPENS = """
serve = fuse_ll.serve


def without_permission_checks(ops, mountpoint, options, *rest):
    serve(ops, mountpoint, [o for o in options if o != "default_permissions"], *rest)


fuse_ll.serve = without_permission_checks
"""


def test_a_daemon_letting_anyone_open_the_control_file_fails_the_vmblock_suite(plant, tmp_path, capsys):
    """Served without default_permissions, our vmblock lets uid 1000 open /dev for writing (the kernel no longer
    checks its mode 0600): the default suite's conformance scenario fails on vmblock.perm.root, shrunk to the
    other caller's open."""
    plant(ANYONE_OPENS)
    out = tmp_path / "out"
    assert main(["run", str(default_suite() / "vmblock"), "--subject", "vmblock-fuse", "--out", str(out)]) == 1
    records = _records(out)
    failed = records["vmblock-conformance"]
    assert failed.verdict == "fail", failed.reason
    assert "vmblock.perm.root" in failed.counterexample.message
    assert any(op.get("uid") and op["op"] == "open" for op in failed.counterexample.ops)
    assert records["vmblock-unprivileged"].verdict == "pass", "any user may open it there anyway"
    capsys.readouterr()


@pytest.mark.parametrize(("code", "rule"), [
    ("fs.PATH_MAX = 4095", "vmblock.ctl.toolong@PATH_MAX"),
    ("fs.PATH_MAX = 4097", "vmblock.ctl.toolong@PATH_MAX+1"),
    ("fs.BANNER = fs.BANNER + b'!'", "vmblock.ctl.read@BANNER"),
    # a child process's copy of the control file closed (the kernel flushes at every close) drops the blocks
    ("fs.VMBlock.flush = fs.VMBlock.release", "the model says it waits"),
])
def test_a_daemon_off_by_one_at_an_edge_or_releasing_at_every_close_fails(plant, tmp_path, capsys, code, rule):
    """Our vmblock with PATH_MAX one short or one over, a banner one byte longer, or a handle's blocks dropped at
    each close (flush) rather than the last (release): the edges scenario fails at that edge or rule, whatever the
    generated programs drew (a descriptor duplicated by a fork and closed in the child is the first close met)."""
    plant(code)
    out = tmp_path / "out"
    scenario = default_suite() / "vmblock" / "edges.toml"
    assert main(["run", str(scenario), "--subject", "vmblock-fuse", "--out", str(out)]) == 1
    failed = _records(out)["vmblock-edges"]
    assert failed.verdict == "fail" and rule in failed.counterexample.message, failed.reason
    capsys.readouterr()
