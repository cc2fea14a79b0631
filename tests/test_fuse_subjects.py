"""fuse-overlayfs and unionfs-fuse held to overlayfs: every difference is a named deviation, or a failure whose
shrunk program reproduces on the real subject."""

from __future__ import annotations

import pytest

from vfslab.check.program import run_program
from vfslab.check.stateful import Budget, check_stateful
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
