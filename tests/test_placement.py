"""Layer placement: the union checks with each layer on a file system of its own, or the bottom lower layer a
read-only image, on kernel overlayfs and union-fuse."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import replayable

from vfslab.check.engine.generated import Budget
from vfslab.check.union.examples import check_examples
from vfslab.check.union.stateful import check_stateful
from vfslab.subjects import placement
from vfslab.suite import load

CI_EXAMPLES = 300
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios" / "union"


def _placeable(where: str) -> None:
    ok, reason = placement.available(where)
    if not ok:
        pytest.fail(f"placement {where} is unavailable here: {reason} (make installs what it needs)")


@pytest.mark.mounts
@pytest.mark.parametrize("where", [placement.FS_PER_LAYER, placement.RO_IMAGE])
@pytest.mark.parametrize(("name", "profile"), [("kernel-overlay", "overlayfs"),
                                               ("union-fuse", "overlayfs-redirect-index")])
def test_the_union_check_passes_wherever_the_layers_live(scratch, need, tmp_path, name, profile, where):
    _placeable(where)
    tally = check_stateful(need(name), profile, seed=20261201, budget=Budget(CI_EXAMPLES, 25, 900),
                           scratch_root=scratch, placement=where)
    assert not tally.error, tally.error
    assert tally.failure is None, replayable(tally.failure, tmp_path)
    assert tally.examples >= CI_EXAMPLES and not tally.deviations
    for rule in ("union.copyup.file", "union.ino.renumbered", "union.unlink.whiteout"):
        assert tally.coverage[rule] > 0, f"{rule} never fired"


@pytest.mark.mounts
@pytest.mark.parametrize("name", ["kernel-overlay", "union-fuse"])
def test_copy_up_crosses_file_systems(scratch, need, name):
    """The regression scenario of union-fuse's copy-up across file systems (it failed with EXDEV)."""
    scenario = load(SCENARIOS / "placement.toml")
    assert scenario.placements == (placement.FS_PER_LAYER, placement.RO_IMAGE)
    for where in scenario.placements:
        _placeable(where)
        run = check_examples(scenario.programs, need(name), "overlayfs", scratch / where, where)
        assert not run.problems, run.problems
        assert run.coverage["union.copyup.file"] > 0


@pytest.mark.mounts
def test_a_read_only_image_is_never_written(scratch, need):
    """The bottom lower layer is an image mounted read-only: whatever a program does, it is as it was built."""
    from vfslab.subjects.tree import FILE, Layers, Node

    subject = need("union-fuse")
    layers = Layers(((Node("a", FILE, data=b"x"),),))
    m = subject.setup(layers, scratch / "s", "overlayfs", placement=placement.RO_IMAGE)
    try:
        bottom = m.lowers[-1]
        assert any(p == bottom for p in m.placed), "the bottom lower layer is a mount of its own"
        (m.path / "a").write_bytes(b"changed")
        (m.path / "new").write_bytes(b"new")
        assert (bottom / "a").read_bytes() == b"x" and not (bottom / "new").exists()
        assert (m.upper / "a").read_bytes() == b"changed"
    finally:
        m.teardown()
    assert not any(scratch.rglob("mnt/*")), "teardown unmounted the union and its placement"


@pytest.mark.mounts
def test_a_directory_renumbered_by_the_kernel_breaks_no_identity(scratch, need, cold_steps):
    """On layers on several file systems overlayfs numbers a directory anew whenever its inode comes back into
    memory: with the caches dropped before every step, each stat of one directory shows another number, and the
    check takes that as the same directory (a file's number still holds)."""
    from vfslab.check.union.program import Program, run_program
    from vfslab.model.union.ops import Op
    from vfslab.subjects.tree import DIR, FILE, Layers, Node

    _placeable(placement.FS_PER_LAYER)
    layers = Layers(((Node("d", DIR, 0o755), Node("d/f", FILE, data=b"x")),))
    ops = [Op("stat", ("d",)), Op("stat", ("d/f",)), Op("stat", ("d",)), Op("stat", ("d/f",))]
    replay = run_program(Program(layers, ops, "kernel-overlay", placement=placement.FS_PER_LAYER),
                         need("kernel-overlay"), "overlayfs", scratch / "run")
    assert replay.failure is None, replay.failure
    d1, f1, d2, f2 = replay.results
    assert d1.ino != d2.ino, "the kernel kept the directory's number: this test no longer shows anything"
    assert f1.ino == f2.ino
