"""Hypothesis stateful checking: generated trees and programs, run on a subject in lockstep with the model.

Each example draws an initial tree of 1-3 lower layers and a random subset of the operations (swarm
testing: a run that never unlinks explores renames more deeply), mounts the subject, and applies rules,
comparing every outcome and, after every step that may write (and at the end), the whole state. A failing
example is shrunk by Hypothesis to a minimal program, which is kept (the last failing run Hypothesis makes is
the minimal one).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from vfslab.check import gen
from vfslab.check.lockstep import Mismatch
from vfslab.check.ops import ALL_OPS, Op
from vfslab.check.program import Program
from vfslab.check.session import Hang, Session
from vfslab.check.tree import Layers

MAX_PUSHES = 2


@dataclass
class Budget:
    examples: int = 100
    steps: int = 25
    seconds: float = 60.0


@dataclass
class Tally:
    """What a stateful check found, across all its examples."""

    examples: int = 0
    steps: int = 0
    coverage: Counter = field(default_factory=Counter)
    failure: Program | None = None
    hang: bool = False
    deviations: dict[str, Program] = field(default_factory=dict)
    #: rules of the deviating profile that explained a result, with how often (named differences)
    differences: Counter = field(default_factory=Counter)
    error: str = ""

    def record(self, lock, kept: Callable[[], object]) -> None:
        """An example's end, from its lockstep (vmblock, pmem): rules fired, differences named, and its program
        (`kept()`) if it was the first to deviate to its profile."""
        self.coverage.update(lock.coverage)
        self.differences.update(lock.differences)
        if lock.deviation and lock.deviation not in self.deviations:
            self.deviations[lock.deviation] = kept()


def _op_rule(name: str, arg_strategies: tuple, fd: bool):
    """One Hypothesis rule per operation; fd rules pick one of the open slots."""

    def run(self, args, uid, pick=0):
        if fd:
            slots = sorted(self.session.driver.slots)
            args = (slots[pick % len(slots)], *args)
        visible = self.session.lock.visible_paths()
        args = tuple(a.resolve(visible) if isinstance(a, gen.PathChoice) else a for a in args)
        self._do(Op(name, args, uid))

    run.__name__ = name
    strategies = {"args": st.tuples(*arg_strategies), "uid": gen.callers}
    if fd:
        strategies["pick"] = st.integers(0, 7)
        return precondition(lambda self: self._enabled(name) and self.session.driver.slots)(rule(**strategies)(run))
    return precondition(lambda self: self._enabled(name))(rule(**strategies)(run))


def make_machine(subject, profile: str, scratch_root: Path, tally: Tally, ops: tuple[str, ...], deadline: float,
                 watchdog_seconds: float, long_names: bool = True) -> type[RuleBasedStateMachine]:
    """A state machine class checking `subject` held to `profile`, recording into `tally`."""

    class UnionMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.session: Session | None = None
            self.program: list[Op] = []
            self.layers = Layers()
            self.enabled: frozenset[str] = frozenset()
            self.pushes = 0

        def _enabled(self, name: str) -> bool:
            return self.session is not None and name in self.enabled

        # a subject with no layers of its own (a pool) is given one layer: a name hidden by an upper layer
        # would still count in a lower file's nlink, which no plain file system shows
        @initialize(layers=gen.layers_of(getattr(subject, "max_layers", 3)),
                    enabled=st.sets(st.sampled_from(ops), min_size=min(4, len(ops))))
        def setup(self, layers: Layers, enabled: set[str]) -> None:
            if tally.failure is None and time.monotonic() > deadline:
                return  # a failure being shrunk runs on past the budget, or it would not reproduce
            # some path operation always runs, and fd operations need open
            enabled |= {"stat"} | ({"open"} if enabled & set(gen.FD_ARGS) else set())
            self.layers, self.enabled = layers, frozenset(enabled)
            tally.examples += 1
            scratch = scratch_root / f"ex{tally.examples}"
            shutil.rmtree(scratch, ignore_errors=True)
            self.session = Session(subject, profile, layers, scratch, watchdog_seconds)
            self._guard(self.session.check)

        @precondition(lambda self: self.session is None)
        @rule()
        def out_of_budget(self) -> None:
            """The time budget is spent: examples from now on do nothing."""

        @precondition(lambda self: self._enabled("remount"))
        @rule()
        def remount(self) -> None:
            self._do(Op("remount"))

        @precondition(lambda self: self._enabled("push") and self.pushes < MAX_PUSHES)
        @rule()
        def push(self) -> None:
            self.pushes += 1
            self._do(Op("push"))

        def _do(self, op: Op) -> None:
            self.program.append(op)
            tally.steps += 1
            self._guard(lambda: self.session.step(op))

        def _guard(self, call) -> None:
            try:
                call()
            except Mismatch as m:
                tally.hang = isinstance(m, Hang)
                tally.failure = Program(self.layers, list(self.program), subject.name, profile, str(m))
                raise

        def teardown(self) -> None:
            if self.session is None:
                return
            try:
                if tally.failure is None:
                    self._guard(self.session.finish)
            finally:
                lock = self.session.lock
                tally.coverage.update(lock.coverage)
                if lock.deviation and lock.deviation not in tally.deviations:
                    tally.deviations[lock.deviation] = Program(self.layers, list(self.program), subject.name,
                                                               profile, lock.why[profile])
                self.session.close()

    for name, strategies in gen.path_args(long_names).items():
        if name in ops:
            setattr(UnionMachine, f"op_{name}", _op_rule(name, strategies, fd=False))
    for name, strategies in gen.FD_ARGS.items():
        if name in ops:
            setattr(UnionMachine, f"op_{name}", _op_rule(name, strategies, fd=True))
    return UnionMachine


def check_stateful(subject, profile: str, *, seed: int, budget: Budget, scratch_root: Path,
                   ops: tuple[str, ...] = ALL_OPS, database: Path | None = None,
                   watchdog_seconds: float = 10.0, long_names: bool = True) -> Tally:
    """Run generated programs against `subject` held to `profile`; a failure is shrunk and kept in the tally."""
    tally = Tally()
    scratch_root.mkdir(parents=True, exist_ok=True)
    machine = make_machine(subject, profile, scratch_root, tally, ops, time.monotonic() + budget.seconds,
                           watchdog_seconds, long_names)
    return run_machine(machine, tally, seed=seed, budget=budget, database=database)


def check_generated(make_machine: Callable, subject, profile: str, *, seed: int, budget: Budget,
                    scratch_root: Path, database: Path | None = None, watchdog_seconds: float = 10.0) -> Tally:
    """Run the programs of the state machine `make_machine(subject, profile, scratch_root, tally, deadline,
    watchdog_seconds)` builds against `subject` held to `profile`; a failure is shrunk and kept."""
    tally = Tally()
    scratch_root.mkdir(parents=True, exist_ok=True)
    machine = make_machine(subject, profile, scratch_root, tally, time.monotonic() + budget.seconds,
                           watchdog_seconds)
    return run_machine(machine, tally, seed=seed, budget=budget, database=database)


def run_machine(machine: type[RuleBasedStateMachine], tally: Tally, *, seed: int, budget: Budget,
                database: Path | None) -> Tally:
    """Run a checking state machine (which records into `tally`) within `budget`, derandomised by `seed`."""
    hypothesis_seed(seed)(machine)
    config = settings(
        max_examples=budget.examples,
        stateful_step_count=budget.steps,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        database=DirectoryBasedExampleDatabase(str(database)) if database else None,
        print_blob=False,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    )
    try:
        run_state_machine_as_test(machine, settings=config)
    except Exception as e:
        if tally.failure is None:
            tally.error = _one_line(e)
            if isinstance(e, ExceptionGroup) and e.exceptions:  # Hypothesis's Flaky: say what was raised
                tally.error += f" (first raised: {_one_line(e.exceptions[0])})"
    return tally


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
