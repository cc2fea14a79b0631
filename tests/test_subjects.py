"""The union subjects and their mount lifecycle, against real mounts."""

from __future__ import annotations

import errno
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vfslab.subjects import SUBJECTS, Subject, get, mounts
from vfslab.subjects.overlayfs import UnionMount
from vfslab.subjects.tree import DIR, FILE, HARDLINK, SYMLINK, Layers, Node

pytestmark = pytest.mark.mounts

ALL = ("kernel-overlay", "union-fuse", "fuse-overlayfs", "unionfs-fuse")
FUSE = ("union-fuse", "fuse-overlayfs", "unionfs-fuse")

# Two lower layers, topmost first: `f` in the top one shadows the bottom one's; `h` is a hard link to `f`.
TREE = Layers(
    (
        (
            Node("f", FILE, data=b"top\n"),
            Node("d", DIR, mode=0o755),
            Node("d/g", FILE, data=b"in dir\n"),
            Node("s", SYMLINK, target="f"),
            Node("h", HARDLINK, target="f"),
            Node("p", FILE, data=b"plain\n"),
        ),
        (
            Node("f", FILE, data=b"shadowed\n"),
            Node("q", FILE, data=b"bottom\n"),
        ),
    )
)

Setup = Callable[..., UnionMount]


@pytest.fixture
def setup(need: Callable[[str], Subject], scratch: Path) -> Iterator[Setup]:
    """`setup(name, profile="overlayfs")` mounts TREE with that subject; torn down after the test."""
    made: list[UnionMount] = []

    def _setup(name: str, profile: str = "overlayfs") -> UnionMount:
        m = need(name).setup(TREE, scratch, profile)
        made.append(m)
        return m

    yield _setup
    for m in made:
        m.teardown()


def snapshot(root: Path) -> dict[str, tuple]:
    """What a user sees below `root`: per path its type, permission bits, size and content or target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                body: object = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                body = p.read_bytes()
            else:
                body = None
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), body)
    return out


def change_things(m: UnionMount) -> None:
    """A few changes of every kind; `p` is not hard-linked (see test_copied_up_hard_link_survives_remount)."""
    with open(m.path / "p", "ab") as fh:
        fh.write(b"appended\n")
    (m.path / "q").unlink()
    (m.path / "d" / "g").unlink()
    (m.path / "new").mkdir()
    (m.path / "new" / "file").write_bytes(b"fresh\n")
    os.symlink("new/file", m.path / "link")


def wait_for_errno(path: Path, wanted: int, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.stat(path)
        except OSError as e:
            if e.errno == wanted:
                return
        assert time.monotonic() < deadline, f"stat {path} never gave {errno.errorcode[wanted]}"
        time.sleep(0.05)


def assert_gone(m: UnionMount, pid: int | None) -> None:
    assert mounts.find_mount(m.path) is None
    assert m.path not in [live.path for live in mounts.live_mounts()]
    if pid is not None:
        with pytest.raises(ChildProcessError):  # reaped: no longer our child, not even a zombie
            os.waitpid(pid, os.WNOHANG)


@pytest.mark.parametrize("name", ALL)
def test_lower_tree_is_visible(setup: Setup, name: str) -> None:
    m = setup(name)
    assert (m.path / "f").read_bytes() == b"top\n"  # the topmost lower layer wins
    assert (m.path / "q").read_bytes() == b"bottom\n"
    assert (m.path / "d").is_dir() and (m.path / "d" / "g").read_bytes() == b"in dir\n"
    assert (m.path / "s").is_symlink() and os.readlink(m.path / "s") == "f"
    assert (m.path / "s").read_bytes() == b"top\n"
    f, h = (m.path / "f").stat(), (m.path / "h").stat()
    assert (h.st_ino, h.st_nlink) == (f.st_ino, 2)
    assert sorted(os.listdir(m.path)) == ["d", "f", "h", "p", "q", "s"]


@pytest.mark.parametrize("name", ALL)
def test_write_copies_up(setup: Setup, name: str) -> None:
    m = setup(name)
    with open(m.path / "p", "ab") as fh:
        fh.write(b"more\n")
    assert (m.path / "p").read_bytes() == b"plain\nmore\n"
    assert (m.upper / "p").read_bytes() == b"plain\nmore\n"
    assert (m.lowers[0] / "p").read_bytes() == b"plain\n"


@pytest.mark.parametrize("name", ALL)
def test_unlink_of_lower_file_leaves_whiteout(setup: Setup, name: str) -> None:
    m = setup(name)
    (m.path / "d" / "g").unlink()
    assert not (m.path / "d" / "g").exists()
    assert (m.lowers[0] / "d" / "g").read_bytes() == b"in dir\n"
    if get(name).capabilities.overlay_format:
        st = (m.upper / "d" / "g").lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    else:  # unionfs-fuse: an empty marker file in its own metadata dir
        assert (m.upper / ".unionfs-fuse" / "d" / "g_HIDDEN~").is_file()
        assert not (m.upper / "d" / "g").exists()


@pytest.mark.parametrize("name", ALL)
def test_remount_keeps_changes(setup: Setup, name: str) -> None:
    m = setup(name)
    change_things(m)
    before = snapshot(m.path)
    old_pid = m.pid
    m.remount()
    assert snapshot(m.path) == before
    assert (m.path / "p").read_bytes() == b"plain\nappended\n"
    assert not (m.path / "q").exists()
    if old_pid is not None:
        assert m.pid != old_pid  # really a new daemon, not the old mount left in place


@pytest.mark.parametrize("name", ALL)
def test_push_keeps_tree_and_starts_empty_upper(setup: Setup, name: str) -> None:
    m = setup(name)
    change_things(m)
    before = snapshot(m.path)
    old_upper = m.upper
    if m.work is not None:
        (m.work / "stale").write_bytes(b"")
    m.push()
    assert snapshot(m.path) == before
    assert m.lowers[0] == old_upper
    assert m.upper == m.scratch / "upper1" and list(m.upper.iterdir()) == []
    if m.work is not None:  # a fresh work dir: only what the mount itself just made there
        assert {p.name for p in m.work.iterdir()} <= {"work", "index"}
    (m.path / "after-push").write_bytes(b"x")
    assert (m.upper / "after-push").read_bytes() == b"x"
    m.push()
    assert m.upper == m.scratch / "upper2" and m.lowers[:2] == [m.scratch / "upper1", old_upper]
    assert (m.path / "after-push").read_bytes() == b"x"
    assert snapshot(m.path) == {**before, "after-push": (stat.S_IFREG, 0o644, b"x")}


@pytest.mark.parametrize("name", ALL)
def test_teardown_leaves_no_mount(setup: Setup, name: str) -> None:
    m = setup(name)
    pid = m.pid
    assert mounts.find_mount(m.path) is not None
    m.teardown()
    assert_gone(m, pid)
    m.teardown()  # idempotent
    assert list(m.path.iterdir()) == []


@pytest.mark.parametrize("name", FUSE)
def test_teardown_after_daemon_killed(setup: Setup, name: str) -> None:
    m = setup(name)
    pid = m.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for_errno(m.path, errno.ENOTCONN)  # a dead mount: still listed, every access fails
    assert mounts.find_mount(m.path) is not None
    m.teardown()
    assert_gone(m, pid)


@pytest.mark.parametrize("name", FUSE)
def test_watchdog_turns_hung_stat_into_error(setup: Setup, name: str) -> None:
    m = setup(name)
    pid = m.pid
    started = time.monotonic()
    with mounts.watchdog(1.0, m.abort) as wd:
        worker, outcome = start_hung_stat(m)
        worker.join(5)
    assert wd.fired
    assert not worker.is_alive() and time.monotonic() - started < 5
    assert outcome["errno"] in (errno.ENOTCONN, errno.ECONNABORTED)
    m.teardown()
    assert_gone(m, pid)


def thread_states(pid: int) -> list[str]:
    """The state letter (proc(5)) of each of the process's threads."""
    return [(task / "stat").read_text().rpartition(")")[2].split()[0] for task in Path(f"/proc/{pid}/task").iterdir()]


def start_hung_stat(m: UnionMount) -> tuple[threading.Thread, dict[str, int]]:
    """Stop the daemon and start a stat that must wait for it; the thread records the errno it ends with."""
    assert m.pid is not None
    outcome: dict[str, int] = {}

    def probe() -> None:
        try:
            os.stat(m.path / "never-looked-up")  # not in any cache: the lookup must reach the daemon
            outcome["errno"] = 0
        except OSError as e:
            outcome["errno"] = e.errno or 0

    os.kill(m.pid, signal.SIGSTOP)
    # a stop takes effect as each thread next runs: on a busy machine a daemon thread woken by the stat could
    # still answer it
    deadline = time.monotonic() + 5
    while not all(state == "T" for state in thread_states(m.pid)):
        assert time.monotonic() < deadline, f"the daemon's threads did not stop: {thread_states(m.pid)}"
        time.sleep(0.001)
    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(0.5)
    assert worker.is_alive(), f"the stat should hang while the daemon is stopped, but it ended: {outcome}"
    return worker, outcome


@pytest.mark.parametrize("name", FUSE)
def test_connection_abort_alone_releases_hung_stat(setup: Setup, name: str) -> None:
    m = setup(name)
    worker, outcome = start_hung_stat(m)
    mounts.abort(m.path, None)  # no pid: the daemon stays (stopped); only fusectl's abort can help
    worker.join(3)
    assert not worker.is_alive()
    assert outcome["errno"] in (errno.ENOTCONN, errno.ECONNABORTED)
    pid = m.pid
    started = time.monotonic()
    m.teardown()
    assert time.monotonic() - started < 2  # a stopped daemon is continued so it can exit, not waited out
    assert_gone(m, pid)


@pytest.mark.parametrize("name", FUSE)
def test_teardown_with_a_request_stuck_in_a_stopped_daemon(setup: Setup, name: str) -> None:
    m = setup(name)
    worker, outcome = start_hung_stat(m)
    pid = m.pid
    started = time.monotonic()
    m.teardown()  # fusermount3 -u is refused (busy): teardown must force its way out
    assert time.monotonic() - started < 5
    assert_gone(m, pid)
    worker.join(3)
    assert not worker.is_alive() and outcome["errno"] != 0


@pytest.mark.parametrize("name", FUSE)
def test_missing_binary_makes_subject_unavailable(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    ok, reason = SUBJECTS[name].available()
    assert not ok and "not found on PATH" in reason


def test_watchdog_stays_quiet_when_body_is_fast() -> None:
    calls: list[int] = []
    with mounts.watchdog(0.2, lambda: calls.append(1)) as wd:
        pass
    time.sleep(0.3)
    assert not wd.fired and calls == []


@pytest.mark.parametrize(("profile", "expected"), [("overlayfs", errno.EXDEV), ("overlayfs-redirect", 0)])
def test_kernel_lower_dir_rename_depends_on_redirect_dir(setup: Setup, profile: str, expected: int) -> None:
    m = setup("kernel-overlay", profile)
    try:
        os.rename(m.path / "d", m.path / "renamed")
        got = 0
    except OSError as e:
        got = e.errno or -1
    assert got == expected
    if expected == 0:
        assert os.getxattr(m.upper / "renamed", "trusted.overlay.redirect")
        m.remount()  # the redirect is on disk, so the lower contents still follow the new name
        assert (m.path / "renamed" / "g").read_bytes() == b"in dir\n"
        assert not (m.path / "d").exists()


@pytest.mark.parametrize(("profile", "nlink"), [("overlayfs", 1), ("overlayfs-index", 2)])
def test_kernel_copy_up_of_hard_link_depends_on_index(setup: Setup, profile: str, nlink: int) -> None:
    m = setup("kernel-overlay", profile)
    with open(m.path / "f", "ab") as fh:
        fh.write(b"more\n")
    assert (m.path / "f").stat().st_nlink == nlink
    h_expected = b"top\nmore\n" if nlink == 2 else b"top\n"  # without index, h stays the old lower file
    assert (m.path / "h").read_bytes() == h_expected
    m.remount()
    assert (m.path / "f").stat().st_nlink == nlink
    assert (m.path / "h").read_bytes() == h_expected


@pytest.mark.parametrize(
    "name",
    [
        "kernel-overlay",
        "union-fuse",
        pytest.param(
            "fuse-overlayfs",
            marks=pytest.mark.xfail(
                strict=True,
                reason="fuse-overlayfs 1.10: after remount a copied-up hard-linked file is served as its "
                "lower inode (upper size, lower data, NUL-padded)",
            ),
        ),
        "unionfs-fuse",
    ],
)
def test_copied_up_hard_link_survives_remount(setup: Setup, name: str) -> None:
    m = setup(name)
    with open(m.path / "f", "ab") as fh:
        fh.write(b"more\n")
    m.remount()
    assert (m.path / "f").read_bytes() == b"top\nmore\n"


@pytest.mark.parametrize("name", ALL)
def test_unknown_profile_is_a_value_error(scratch: Path, name: str) -> None:
    with pytest.raises(ValueError, match="union-mounts"):
        SUBJECTS[name].setup(TREE, scratch, "union-mounts")
    assert list(scratch.iterdir()) == []  # refused before touching the disk


def test_unknown_subject_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="kernel-overlay"):
        get("no-such-subject")


def test_failed_overlay_mount_is_one_line(need: Callable[[str], Subject], scratch: Path) -> None:
    need("kernel-overlay")
    (scratch / "mnt").mkdir()
    missing = scratch / "missing-lower"
    options = f"lowerdir={missing},upperdir={scratch},workdir={scratch}"
    with pytest.raises(mounts.MountError) as info:
        mounts.mount_overlay(options, scratch / "mnt")
    message = str(info.value)
    assert "\n" not in message and "failed" in message
    assert mounts.find_mount(scratch / "mnt") is None and mounts.live_mounts() == []


def test_fuse_daemon_that_exits_reports_its_stderr(need: Callable[[str], Subject], scratch: Path) -> None:
    need("fuse-overlayfs")
    (scratch / "mnt").mkdir()
    argv = ["fuse-overlayfs", "-f", "-o", f"lowerdir={scratch}/missing-lower", str(scratch / "mnt")]
    with pytest.raises(mounts.MountError, match="cannot read lower dirs") as info:
        mounts.start_fuse(argv, scratch / "mnt")
    assert "\n" not in str(info.value)
    with pytest.raises(mounts.MountError, match=r"not found|No such file"):
        mounts.start_fuse(["vfslab-no-such-daemon", "-f"], scratch / "mnt")
    assert mounts.find_mount(scratch / "mnt") is None
