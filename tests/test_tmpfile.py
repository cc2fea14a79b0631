"""O_TMPFILE and flink: the model against kernel overlayfs and tmpfs by generated programs, and what a mount that
makes no unnamed files answers."""

from __future__ import annotations

import errno
import os

import pytest
from conftest import replayable

from vfslab.check.engine.generated import Budget
from vfslab.check.union.stateful import check_stateful
from vfslab.model.outcome import Err
from vfslab.model.union import PROFILES, UnionModel
from vfslab.subjects.tree import Node

pytestmark = pytest.mark.mounts

#: the calls an unnamed file meets: made, written, named, its names removed, fstat'd through its fd
TMPFILE_CALLS = ("open", "flink", "write", "read", "fstat", "close", "unlink", "rename", "link", "stat")


def test_the_model_makes_unnamed_files_named_by_flink_only_where_the_mount_does():
    lowers = [[Node("d", "dir", 0o755)]]
    flags = os.O_TMPFILE | os.O_RDWR
    model = UnionModel(lowers, PROFILES["overlayfs"])
    assert model.open("d", flags, 0o640).result == 0
    assert model.fstat(0).result.nlink == 0
    assert model.flink(0, "d/n").result is None and model.stat("d/n").result.mode == 0o640
    assert model.open("d", flags | os.O_EXCL, 0o600).result == 1
    assert model.flink(1, "d/x").result == Err(errno.ENOENT)
    refused = UnionModel(lowers, PROFILES["overlayfs"], tmpfile=False).open("d", flags, 0o600)
    assert refused.result == Err(errno.EOPNOTSUPP) and "union.open.tmpfile-unsupported" in refused.rules


@pytest.mark.parametrize(("name", "profile"), [
    ("kernel-overlay", "overlayfs-redirect-index"), ("kernel-overlay", "overlayfs"), ("tmpfs", "posix"),
])
def test_generated_programs_with_unnamed_files_agree_with_the_model(need, tmp_path, name, profile):
    """The CI check of O_TMPFILE and flink: 300 generated programs of the calls an unnamed file meets, by root and by
    an ordinary caller, with remounts and pushes of the unions."""
    ops = TMPFILE_CALLS + (("push", "remount") if profile.startswith("overlayfs") else ())
    tally = check_stateful(need(name), profile, seed=20261202, budget=Budget(300, 25, 900),
                           scratch_root=tmp_path, ops=ops)
    assert tally.failure is None, replayable(tally.failure, tmp_path)
    assert not tally.error and not tally.deviations
    assert tally.examples >= 300
    for rule in ("union.open.tmpfile", "union.link.fd"):
        assert tally.coverage[rule], f"{rule} never fired"
    assert not tally.coverage["union.open.tmpfile-unsupported"], "the mount was taken for one that makes none"
