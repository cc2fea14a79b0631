"""fuse-overlayfs and unionfs-fuse held to overlayfs: every difference is a named deviation, or a failure whose
shrunk program reproduces on the real subject."""

from __future__ import annotations

import pytest

from vfslab.check.engine.generated import Budget
from vfslab.check.union.program import run_program
from vfslab.check.union.stateful import check_stateful
from vfslab.model.union import PROFILES


@pytest.mark.mounts
@pytest.mark.parametrize("name", ["fuse-overlayfs", "unionfs-fuse"])
def test_differences_are_named_or_replay(need, tmp_path, name):
    subject = need(name)
    tally = check_stateful(subject, "overlayfs", seed=11, budget=Budget(60, 20, 60), scratch_root=tmp_path / "s",
                           watchdog_seconds=10)
    assert tally.examples > 0 and not tally.error
    assert set(tally.deviations) <= set(PROFILES)
    if tally.failure is not None:
        replay = run_program(tally.failure, subject, "overlayfs", tmp_path / "replay")
        assert replay.failure is not None, f"the shrunk program did not reproduce: {tally.failure.message}"


@pytest.mark.mounts
@pytest.mark.parametrize(("name", "contained"), [("kernel-overlay", True), ("fuse-overlayfs", True),
                                                 ("unionfs-fuse", False)])
def test_a_symlink_in_a_lower_layer_never_shows_the_host(need, tmp_path, name, contained):
    """unionfs-fuse 1.0 looks through a lower layer's symlink hidden under a directory: the host's / shows."""
    from vfslab.check.union.examples import check_examples
    from vfslab.suite import default_suite, load

    subject = need(name)
    scenario = load(default_suite() / "union" / "safety.toml")
    run = check_examples(scenario.programs, subject, "overlayfs", tmp_path)
    escaped = [p for p in run.problems if "more than its layers hold" in p or "d/etc" in p]
    assert (not escaped) == contained, run.problems


@pytest.mark.mounts
def test_a_hung_daemon_is_a_hang_verdict_not_a_stuck_run(need, tmp_path):
    import os
    import signal
    import time

    from vfslab.check.engine.race import Hang
    from vfslab.check.union.session import Session
    from vfslab.model.union.ops import Op
    from vfslab.subjects.tree import Layers, Node

    subject = need("fuse-overlayfs")
    session = Session(subject, "overlayfs", Layers(((Node("a", "file"),),)), tmp_path / "s", watchdog_seconds=1)
    try:
        os.kill(session.mounted.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(Hang, match="did not return within 1 s"):
            session.step(Op("stat", ("a",)))
        assert time.monotonic() - started < 10
    finally:
        session.close()
