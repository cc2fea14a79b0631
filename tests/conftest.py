"""Fixtures shared by the bench's own tests: scratch dirs that cannot outlive their mounts, and a session that
fails if any mount is left behind."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vfslab.check.union.program import Program
from vfslab.subjects import Subject, get, mounts

# one root per test run and pytest-xdist worker: a worker's end-of-session sweep must not unmount the live mounts
# of another worker, nor of another run going on beside this one (a second checkout's `make test`, say)
TEST_ROOT = (Path("/tmp/vfslab-test") / os.environ.get("PYTEST_XDIST_TESTRUNUID", f"run{os.getpid()}")
             / os.environ.get("PYTEST_XDIST_WORKER", "main"))


def _unmount_all_under(root: Path) -> list[str]:
    """Unmount everything at or below `root`; return the mount points that were there."""
    found = [str(m.mount_point) for m in mounts.mounts_under(root)]
    # our own mounts first: the registry knows their daemons, so those get reaped too
    for live in mounts.live_mounts():
        if live.path == root or root in live.path.parents:
            mounts.unmount(live.path, live.pid)
    for m in reversed(mounts.mounts_under(root)):
        mounts.unmount(m.mount_point)
    return found


@pytest.fixture(scope="session", autouse=True)
def no_mounts_left_behind() -> Iterator[None]:
    TEST_ROOT.mkdir(parents=True, exist_ok=True)
    yield
    left = _unmount_all_under(TEST_ROOT)
    if not mounts.mounts_under(TEST_ROOT):  # rmtree would otherwise delete through a mount
        shutil.rmtree(TEST_ROOT, ignore_errors=True)
        with contextlib.suppress(OSError):  # the run's folder, once its last worker is done
            TEST_ROOT.parent.rmdir()
    if left:
        pytest.fail(f"the session left mounts behind (now unmounted): {', '.join(left)}")


@pytest.fixture
def scratch(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh directory under /tmp/vfslab-test, removed afterwards (after unmounting anything in it)."""
    TEST_ROOT.mkdir(parents=True, exist_ok=True)
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60] + "-"
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=TEST_ROOT))
    yield path
    _unmount_all_under(path)
    # only once nothing is mounted: rmtree would otherwise delete through a mount into someone's layers
    shutil.rmtree(path)


@pytest.fixture
def cold_steps(monkeypatch) -> None:
    """Every step of a union program starts with the kernel's dentry and inode caches dropped, as memory pressure
    may drop them (and a FUSE daemon is then told to forget what they held)."""
    from vfslab.check.union.session import Session

    real_step = Session.step

    def step_from_cold(self, op):
        Path("/proc/sys/vm/drop_caches").write_text("2")
        return real_step(self, op)

    monkeypatch.setattr(Session, "step", step_from_cold)


def errno_of(call: Callable[[], object]) -> int:
    """The errno `call` fails with (the test fails if it does not)."""
    with pytest.raises(OSError) as e:
        call()
    return e.value.errno


def replayable(program: Program, folder: Path) -> str:
    """A failure, its program, and the command that replays it (the program is kept in `folder`)."""
    path = folder / "failure.json"
    program.write(path)
    return "\n".join([program.message, *map(str, program.ops), f"replay: vfslab replay {path} --subject "
                      f"{program.subject} --profile {program.profile}"])


@pytest.fixture
def need() -> Callable[[str], Subject]:
    """`need("fuse-overlayfs")` returns the subject, or skips the test with the reason it is unavailable
    (fails instead when VFSLAB_REQUIRE_FUSE=1, so CI cannot silently skip the mount tests)."""

    def _need(name: str) -> Subject:
        subject = get(name)
        ok, reason = subject.available()
        if not ok:
            message = f"{name} is unavailable: {reason}"
            if os.environ.get("VFSLAB_REQUIRE_FUSE") == "1":
                pytest.fail(message)
            pytest.skip(message)
        return subject

    return _need
