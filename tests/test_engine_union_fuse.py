"""union-fuse against the model: every profile it claims, in the CI profile (its own module, collected early,
so that pytest-xdist starts these long checks first)."""

from __future__ import annotations

import pytest
from conftest import replayable

from vfslab.check.engine.generated import Budget
from vfslab.check.union.stateful import check_stateful
from vfslab.subjects.overlayfs import UnionFuse

pytestmark = pytest.mark.mounts

CI_EXAMPLES = 1000


@pytest.mark.parametrize("profile", UnionFuse.profiles)
def test_union_fuse_agrees_with_the_model(need, tmp_path, profile):
    """Every profile union-fuse claims, over generated programs with remounts, pushes and non-root callers,
    the upper layer on disk compared after every write."""
    subject = need("union-fuse")
    tally = check_stateful(subject, profile, seed=20261121, budget=Budget(CI_EXAMPLES, 12, 900),
                           scratch_root=tmp_path)
    assert tally.failure is None, replayable(tally.failure, tmp_path)
    assert not tally.error and tally.deviations == {}
    assert tally.examples >= CI_EXAMPLES
    for rule in ("union.bench.remount", "union.bench.push", "union.copyup.file", "union.unlink.whiteout",
                 "union.perm.access"):
        assert tally.coverage[rule], f"{rule} never fired"
