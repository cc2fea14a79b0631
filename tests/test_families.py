"""Families and subjects as plugins: a subject defined here, outside vfslab, runs a shipped family's scenarios."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from vfslab import runner, suite
from vfslab.check.engine.family import Job
from vfslab.check.engine.generated import Budget, Tally, run_machine
from vfslab.check.families import FAMILIES
from vfslab.check.results import PASS, Record
from vfslab.model.union import PROFILES, UnionModel
from vfslab.model.union.ops import LOOKS_ONLY
from vfslab.subjects import SUBJECTS, Capabilities, register
from vfslab.subjects.driver import ModelDriver
from vfslab.subjects.tree import Layers


class ForgetfulMount:
    """The union model, except that (when `forget` is set) every unlink also leaves the name behind, and (when
    `eio` is set) the mount cannot be walked once something was renamed."""

    upper = None
    path = None

    def __init__(self, layers: Layers, profile: str, forget: bool, eio: bool = False) -> None:
        self.model = UnionModel(layers.lowers, PROFILES[profile])
        self.forget, self.eio, self.renamed = forget, eio, False

    def driver(self) -> ModelDriver:
        mount = self

        class Driver(ModelDriver):
            def apply(self, op):
                if mount.forget and op.name == "unlink":
                    return None  # says it unlinked, and did nothing
                result = super().apply(op)
                mount.renamed |= op.name == "rename"
                return result

        return Driver(self.model)

    def observe(self, disk: bool = True):
        if self.eio and self.renamed:
            raise OSError(errno.EIO, os.strerror(errno.EIO), "/mnt/a")
        return self.model.state(), None

    def remount(self) -> None:
        self.model.remount()

    def abort(self) -> None:
        """Nothing can hang."""

    def teardown(self) -> None:
        """Nothing is mounted."""


class InTest:
    """A subject vfslab has never seen: one layer, no push, no remount."""

    profiles = ("overlayfs",)
    capabilities = Capabilities(("union",), max_layers=1, remount=False, push=False)

    def __init__(self, name: str, forget: bool, eio: bool = False) -> None:
        self.name, self.forget, self.eio = name, forget, eio

    def available(self) -> tuple[bool, str]:
        return True, "in the test"

    def version(self) -> str:
        return "test"

    def setup(self, layers: Layers, scratch: Path, profile: str, placement: str = "same") -> ForgetfulMount:
        return ForgetfulMount(layers, profile, self.forget, self.eio)


@pytest.fixture
def subjects():
    names = []

    def add(subject):
        register(subject)
        names.append(subject.name)
        return subject

    yield add
    for name in names:
        del SUBJECTS[name]


def _scenario(tmp_path: Path, names: list[str]) -> suite.Scenario:
    path = tmp_path / "mine.toml"
    path.write_text(f'id = "mine"\nkind = "stateful"\nsubjects = {names!r}\nprofile = "overlayfs"\n'
                    "[budget]\nexamples = 60\nsteps = 10\nseconds = 60\n".replace("'", '"'))
    return suite.load(path)


def test_a_subject_defined_outside_vfslab_runs_a_scenario(tmp_path, subjects):
    subjects(InTest("in-test", forget=False))
    subjects(InTest("in-test-broken", forget=True))
    scenario = _scenario(tmp_path, ["in-test", "in-test-broken"])
    assert scenario.family == "union" and scenario.family in FAMILIES
    results = runner.run([scenario], runner.Options(seed=3, out=tmp_path / "out"))
    good, broken = results.records
    assert (good.subject, good.verdict, good.family) == ("in-test", PASS, "union"), good.reason
    assert sorted(good.skipped) == ["push: in-test does not support it", "remount: in-test does not support it"]
    assert not any(op["op"] in ("push", "remount") for r in results.records if r.counterexample
                   for op in r.counterexample.ops), "what a subject does not support is never asked of it"
    assert broken.verdict == "fail" and broken.counterexample is not None
    assert any(op["op"] == "unlink" for op in broken.counterexample.ops), broken.counterexample.ops
    assert broken.counterexample.replay.startswith("vfslab replay ")


def test_a_registered_name_cannot_be_taken_twice(subjects):
    subjects(InTest("in-test", forget=False))
    with pytest.raises(ValueError, match="already known"):
        register(InTest("in-test", forget=True))
    with pytest.raises(ValueError, match="already known"):
        register(InTest("model", forget=False))


def test_a_scenario_of_an_unknown_family_is_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('id = "x"\nfamily = "nfs"\nkind = "stateful"\nsubjects = []\n')
    known = r"\(known: union, posix, vmblock"
    with pytest.raises(ValueError, match=rf"bad.toml: bad scenario: unknown family 'nfs' {known}"):
        suite.load(path)


def test_the_old_model_key_still_names_the_family(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text('id = "x"\nmodel = "vmblock"\nkind = "deadlock"\nsubjects = []\n'
                    "[params]\nwaiters = 3\nmax_threads = 2\n")
    s = suite.load(path)
    assert (s.family, s.profile, s.settings.waiters) == ("vmblock", "vmblock", 3)


def _timed_machine(tally: Tally, seconds: float) -> type[RuleBasedStateMachine]:
    """A machine whose rules depend on what ran, as a checker's may (an example past the budget runs nothing); the
    budget counts from the first example, so that a slow start on a loaded machine does not spend it."""
    deadline: list[float] = []

    class Timed(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.on = False

        @initialize(n=st.integers(0, 3))
        def setup(self, n: int) -> None:
            deadline[:] = deadline or [time.monotonic() + seconds]
            if tally.over(deadline[0]):
                return
            tally.examples += 1
            self.on = True

        @precondition(lambda self: not self.on)
        @rule()
        def idle(self) -> None:
            pass

        @precondition(lambda self: self.on)
        @rule(x=st.integers(0, 9))
        def step(self, x: int) -> None:
            time.sleep(0.001)

    return Timed


@pytest.mark.parametrize("seconds", [0.1, 0.3])
def test_a_budget_spent_mid_search_ends_it_cleanly_and_says_how_far_it_got(tmp_path, seconds):
    tally = Tally()
    run_machine(_timed_machine(tally, seconds), tally, seed=0, budget=Budget(300, 10, seconds),
                database=None)
    assert not tally.error and tally.spent and 0 < tally.examples < 300
    scenario = suite.load(suite.default_suite() / "sim" / "vmblock-upstream.toml")
    job = Job(scenario, SUBJECTS["sim"], "", 0, Budget(300, 10, seconds), tmp_path, tmp_path,
              Record("s", "sim", "sim", "sim", "", "pass", "error"), FAMILIES["sim"])
    job.from_tally(tally)
    assert job.record.verdict == PASS
    assert f"budget ended the search after {tally.examples} of 300 programs" in job.record.reason


def test_a_mount_that_cannot_be_walked_fails_with_a_shrunk_program(tmp_path, subjects):
    # EIO from the walk is the subject misbehaving: a failure like any other, not the bench's error
    subjects(InTest("in-test-eio", forget=False, eio=True))
    record, = runner.run([_scenario(tmp_path, ["in-test-eio"])], runner.Options(seed=3, out=tmp_path / "out")).records
    assert record.verdict == "fail", record.reason
    assert "walking the mount failed at /mnt/a: EIO" in record.counterexample.message
    ops = [op["op"] for op in record.counterexample.ops]
    # Hypothesis's shrinker may leave a lookup or two in front, never another call that changes anything
    assert ops[-1] == "rename" and len(ops) <= 3 and set(ops[:-1]) <= LOOKS_ONLY, f"shrunk to the rename: {ops}"
    assert record.counterexample.replay.startswith("vfslab replay ")
