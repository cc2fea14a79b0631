"""The engine against kernel overlayfs: agreement in the CI profile, and a broken rule caught and shrunk."""

from __future__ import annotations

import os

import pytest
from conftest import replayable

from vfslab.check.engine.generated import Budget
from vfslab.check.engine.race import Mismatch
from vfslab.check.union.program import Program, run_program
from vfslab.check.union.stateful import check_stateful
from vfslab.cli import main
from vfslab.model.outcome import Err
from vfslab.model.union.fs import UnionModel
from vfslab.model.union.ops import Op
from vfslab.subjects import get
from vfslab.subjects.overlayfs import UnionMount
from vfslab.subjects.tree import Layers, Node

CI_EXAMPLES = 500


@pytest.mark.mounts
@pytest.mark.parametrize("profile", ["overlayfs", "overlayfs-redirect", "overlayfs-index", "overlayfs-redirect-index"])
def test_model_agrees_with_kernel_overlayfs(need, tmp_path, profile):
    subject = need("kernel-overlay")
    tally = check_stateful(subject, profile, seed=20261121, budget=Budget(CI_EXAMPLES, 25, 600),
                           scratch_root=tmp_path)
    assert tally.failure is None, replayable(tally.failure, tmp_path)
    assert not tally.error
    assert tally.examples >= CI_EXAMPLES
    assert tally.deviations == {}
    # the examples reached the union's own rules, not only path errors
    assert tally.coverage["union.unlink.whiteout"] and tally.coverage["union.copyup.file"]
    assert tally.coverage["union.rename.file"] and tally.coverage["union.lookup.topmost-first"]


@pytest.fixture
def no_whiteouts(monkeypatch):
    """Break one rule on purpose: the model forgets the whiteout on unlink and rmdir."""
    monkeypatch.setattr(UnionModel, "_lower_positive", lambda self, parent, name: False)


@pytest.mark.mounts
def test_a_broken_rule_is_caught_and_shrunk_to_at_most_three_operations(need, tmp_path, no_whiteouts):
    subject = need("kernel-overlay")
    tally = check_stateful(subject, "overlayfs", seed=1, budget=Budget(300, 25, 600), scratch_root=tmp_path / "s")
    assert tally.failure is not None
    assert 1 <= len(tally.failure.ops) <= 3, tally.failure.ops
    assert "whiteout" in tally.failure.message or "absent" in tally.failure.message
    assert any(op.name in ("unlink", "rmdir", "rename") for op in tally.failure.ops)


@pytest.mark.mounts
def test_a_shrink_cap_keeps_the_smallest_failure_found_within_it_and_the_same_one_every_time(need, tmp_path,
                                                                                         no_whiteouts):
    """A failure shrunk through a capped number of programs: the check stops there, keeps the smallest failure
    found so far (no smaller than a full shrink's), and makes the same one each time (a count, not seconds)."""
    subject = need("kernel-overlay")
    full = check_stateful(subject, "overlayfs", seed=3, budget=Budget(300, 25, 600), scratch_root=tmp_path / "f")
    capped = [check_stateful(subject, "overlayfs", seed=3, budget=Budget(300, 25, 600, shrink=3),
                             scratch_root=tmp_path / f"c{i}") for i in range(2)]
    assert full.failure is not None and not full.shrink_cut
    for tally in capped:
        assert tally.failure is not None and tally.shrink_cut and not tally.error
        assert tally.examples < full.examples
        assert len(tally.failure.ops) >= len(full.failure.ops)
    assert capped[0].failure.ops == capped[1].failure.ops and capped[0].examples == capped[1].examples


@pytest.mark.mounts
@pytest.mark.parametrize(("first", "failed"), [(Op("stat", ("a",)), False), (Op("unlink", ("nope",)), True)])
def test_a_walk_put_off_still_comes(need, tmp_path, monkeypatch, first, failed):
    """After a call that only looks, or one that failed as the model says it fails, the walk waits for the end of
    the program, but it comes: a model that forgets a name once that call was made is caught there. The walk of
    the tree as mounted waits too, and the one walk at the end compares the upper layer on disk."""
    subject = need("kernel-overlay")
    program = Program(Layers(((Node("a", "file", data=b"x"),),)), [first, Op("lstat", ("a",))], "kernel-overlay")
    seen = []
    real_observe = UnionMount.observe
    monkeypatch.setattr(UnionMount, "observe", lambda self, disk=True: seen.append(disk) or real_observe(self, disk))
    replay = run_program(program, subject, "overlayfs", tmp_path / "good")
    assert replay.failure is None and isinstance(replay.results[0], Err) == failed
    assert seen == [True], "one walk, at the end, with the upper layer"
    real_call, real_state = getattr(UnionModel, first.name), UnionModel.state
    monkeypatch.setattr(UnionModel, first.name,
                        lambda self, *args: setattr(self, "called", True) or real_call(self, *args))
    monkeypatch.setattr(UnionModel, "state", lambda self: {p: e for p, e in real_state(self).items()
                                                           if p != "a" or not getattr(self, "called", False)})
    failure = run_program(program, subject, "overlayfs", tmp_path / "bad").failure
    assert failure is not None and "a: present on the subject" in failure


@pytest.mark.mounts
def test_replay_reproduces_a_saved_program(need, tmp_path, monkeypatch, capsys):
    need("kernel-overlay")
    program = Program(Layers(((Node("a", "file", data=b"x"),),)), [Op("unlink", ("a",))], "kernel-overlay")
    path = tmp_path / "p.json"
    program.write(path)
    assert main(["replay", str(path), "--subject", "kernel-overlay"]) == 0
    monkeypatch.setattr(UnionModel, "_lower_positive", lambda self, parent, name: False)
    assert main(["replay", str(path), "--subject", "kernel-overlay"]) == 1
    assert "reproduced on kernel-overlay" in capsys.readouterr().out


@pytest.mark.mounts
def test_open_fds_survive_copy_up_on_kernel_overlay(need, tmp_path):
    """Read through an fd opened before a copy-up; write through one fd, read through another."""
    import os

    subject = need("kernel-overlay")
    program = Program(Layers(((Node("f", "file", data=b"old"),),)), [
        Op("open", ("f", os.O_RDONLY, 0)), Op("open", ("f", os.O_RDWR, 0)), Op("write", (1, b"NEW")),
        Op("read", (0, 10)), Op("fstat", (0,)), Op("close", (1,)), Op("read", (0, 10))])
    replay = run_program(program, subject, "overlayfs", tmp_path / "s")
    assert replay.failure is None
    assert replay.results[3] == b"NEW"


def test_a_mismatch_names_the_step_and_the_rules(tmp_path):
    from vfslab.subjects.model import ModelSubject

    class Liar(ModelSubject):
        def setup(self, layers, scratch, profile):
            mount = super().setup(layers, scratch, profile)
            mount.model.unlink = lambda path: type(mount.model.stat(path))(None)  # claims success, does nothing
            return mount

    program = Program(Layers(((Node("a", "file"),),)), [Op("unlink", ("a",))])
    replay = run_program(program, Liar(), "overlayfs", tmp_path / "s")
    assert replay.failure is not None and "after step 1" in replay.failure
    assert isinstance(Mismatch(replay.failure), AssertionError)


@pytest.mark.parametrize("seconds", [0.2, 0.4, 1.0])
def test_a_time_budget_spent_mid_run_ends_the_check_without_flaky_generation(tmp_path, seconds):
    # Hypothesis draws some examples again; those drawn after the budget is spent run nothing, and must draw as
    # they did when they ran (a rule enabled by what ran made it report "inconsistent data generation")
    # more programs than fit in the budget on any machine (the model runs some 150 a second), and the budget's end
    # seen as such: an example began after it
    tally = check_stateful(get("model"), "overlayfs", seed=0, budget=Budget(400, 25, seconds), scratch_root=tmp_path)
    assert not tally.error and tally.failure is None
    assert tally.spent and 0 < tally.examples < 400, "the budget ended it"


@pytest.mark.mounts
@pytest.mark.parametrize("name, profile", [("kernel-overlay", "overlayfs"), ("union-fuse", "overlayfs-redirect-index")])
def test_an_open_copy_pushed_down_twice_keeps_the_kernels_st_ino(need, tmp_path, name, profile):
    # the kernel follows an origin xattr only on the upper layer; the model's fstat followed it on a lower one
    program = Program(Layers(((Node("c", "file"),),)), [
        Op("push"), Op("setxattr", ("c", "user.k", b"v")), Op("push"), Op("open", ("c", os.O_RDONLY, 0)),
        Op("fstat", (0,))])
    assert run_program(program, need(name), profile, tmp_path / "s").failure is None
