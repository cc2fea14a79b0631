"""Hypothesis stateful checking: generated trees and programs, run on a subject in lockstep with the model.

Each example draws an initial tree of 1-3 lower layers and a random subset of the operations (swarm
testing: a run that never unlinks explores renames more deeply), mounts the subject, and applies steps, each an
operation drawn from that subset with its arguments, comparing every outcome and, after every step that may write
(and at the end), the whole state. A failing example is shrunk by Hypothesis to a minimal program, which is kept
(the last failing run Hypothesis makes is the minimal one).
"""

from __future__ import annotations

import shutil
from functools import lru_cache, partial
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from vfslab.check.engine.choices import Pick, Table, machine_picks
from vfslab.check.engine.generated import Budget, Tally, check_generated
from vfslab.check.engine.race import WATCHDOG_SECONDS, Hang, Mismatch
from vfslab.check.union import gen
from vfslab.check.union.program import Program
from vfslab.check.union.session import Session
from vfslab.model.union.ops import ALL_OPS, BENCH_OPS, BY_NAME, FD, HANDLE, ROOT_UID, Op
from vfslab.subjects.placement import SAME
from vfslab.subjects.tree import Layers

MAX_PUSHES = 2


@lru_cache
def _calls(long_names: bool) -> dict[tuple[str, int], tuple[Table, ...]]:
    """What a call of each operation by each caller is drawn from: for an fd operation which open slot (taken
    modulo how many it could take are open when it runs), for a handle operation which handle (modulo how many were
    made), then its arguments (paths still choices)."""
    slot = range(8)
    calls = {(name, uid): (*([slot] if BY_NAME[name].kind in (FD, HANDLE) else []), *tables)
             for name, tables in gen.arguments(long_names).items() for uid in set(gen.CALLERS)}
    return calls | {(name, ROOT_UID): () for name in BENCH_OPS}


#: what must have been drawn before an operation of a kind can find what it acts on
_NEEDS = {FD: "open", HANDLE: "handle"}


@lru_cache
def _menu(enabled: tuple[str, ...], drawn: frozenset[str], pushes_left: bool) -> tuple[tuple[str, int], ...]:
    """Which calls a step chooses from, `(name, caller)`: of the example's operations, by each of the callers, but
    of no fd operation before an open was drawn (it could only find no file open), no handle operation before a
    handle was, and no push once MAX_PUSHES were."""
    names = tuple(name for name in enabled if _NEEDS.get(BY_NAME[name].kind, name) in drawn | {name}
                  and (pushes_left or name != "push"))
    return tuple((name, uid) for name in names for uid in ((ROOT_UID,) if name in BENCH_OPS else gen.CALLERS))


def supported(subject, ops: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """The operations of `ops` that `subject` declares it supports, and a note for each left out."""
    caps = subject.capabilities
    left = [op for op in ops if op in BENCH_OPS and not getattr(caps, op)]
    return tuple(op for op in ops if op not in left), [f"{op}: {subject.name} does not support it" for op in left]


def make_machine(subject, profile: str, scratch_root: Path, tally: Tally, deadline: float, watchdog_seconds: float,
                 ops: tuple[str, ...] = ALL_OPS, long_names: bool = True,
                 placement: str = SAME) -> type[RuleBasedStateMachine]:
    """A state machine class checking `subject` held to `profile`, recording into `tally`."""

    calls = _calls(long_names)

    class UnionMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.session: Session | None = None
            self.program: list[Op] = []
            self.layers = Layers()
            self.enabled: tuple[str, ...] = ()
            #: of the operations that others need (`_NEEDS`), those drawn so far
            self.drawn: frozenset[str] = frozenset()
            self.pushes = 0
            self.failed = False

        # a subject with no layers of its own (a pool) is given one layer: a name hidden by an upper layer
        # would still count in a lower file's nlink, which no plain file system shows
        @initialize(layers=gen.layers_of(subject.capabilities.max_layers),
                    enabled=st.sets(st.sampled_from(ops), min_size=min(4, len(ops))))
        def setup(self, layers: Layers, enabled: set[str]) -> None:
            # some path operation always runs, fd operations need open and handle operations handle
            enabled |= {"stat"} | {_NEEDS[BY_NAME[op].kind] for op in enabled if BY_NAME[op].kind in _NEEDS}
            self.layers, self.enabled = layers, tuple(op for op in ops if op in enabled)
            if tally.over(deadline):
                return
            tally.examples += 1
            scratch = scratch_root / f"ex{tally.examples}"
            shutil.rmtree(scratch, ignore_errors=True)
            self.session = Session(subject, profile, layers, scratch, watchdog_seconds, placement)
            self._guard(self.session.begin)

        # One rule draws the operation from the example's subset, then its call: Hypothesis choosing among a rule
        # per operation, each with a precondition, cost more than running the steps. What is drawn depends only on
        # what was drawn before, never on what ran: an example Hypothesis draws again after the time budget is
        # spent, or a step whose fd operation finds no open file, does nothing, but draws as it did (else
        # Hypothesis finds its data generation flaky)
        @rule(call=machine_picks(lambda pick, machine: machine.call(pick)))
        def step(self, call: tuple) -> None:
            (name, uid), *args = call
            if name in _NEEDS.values():
                self.drawn |= {name}
            self.pushes += name == "push"
            if self.session is None:
                return  # the time budget is spent: examples from now on do nothing
            if BY_NAME[name].kind == FD:
                pick, *args = args
                # of the open files, those the operation takes: a file operation on a directory only wastes a step
                slots = [slot for slot in sorted(self.session.driver.slots)
                         if BY_NAME[name].dirs or not self.session.lock.holds_dir(slot)]
                if not slots:
                    return
                args = (slots[pick % len(slots)], *args)
            elif BY_NAME[name].kind == HANDLE:
                pick, *args = args
                if not self.session.driver.handles:
                    return
                args = (pick % len(self.session.driver.handles), *args)
            visible = self.session.lock.visible_paths()
            args = tuple(a.resolve(visible) if isinstance(a, gen.PathChoice) else a for a in args)
            op = Op(name, args, uid)
            self.program.append(op)
            tally.steps += 1
            self._guard(lambda: self.session.step(op))

        def call(self, pick: Pick) -> tuple:
            """A step's call, `((name, caller), *arguments)`: which of the menu (one choice), then each argument."""
            chosen = pick(_menu(self.enabled, self.drawn, self.pushes < MAX_PUSHES))
            return (chosen, *(pick(table) for table in calls[chosen]))

        def _guard(self, call) -> None:
            try:
                call()
            except Mismatch as m:
                self.failed = True
                tally.hang = isinstance(m, Hang)
                tally.failure = Program(self.layers, list(self.program), subject.name, profile, str(m), placement)
                raise

        def teardown(self) -> None:
            if self.session is None:
                return
            try:
                # every example that did not fail yet walks what its last calls left (a shrunk program may fail
                # only there: a walk put off after calls that looked or failed)
                if not self.failed:
                    self._guard(self.session.finish)
            finally:
                lock = self.session.lock
                tally.record(lock, lambda: Program(self.layers, list(self.program), subject.name, profile,
                                                   lock.why[profile], placement))
                self.session.close()

    return UnionMachine


def check_stateful(subject, profile: str, *, seed: int, budget: Budget, scratch_root: Path,
                   ops: tuple[str, ...] = ALL_OPS, database: Path | None = None,
                   watchdog_seconds: float = WATCHDOG_SECONDS, long_names: bool = True, placement: str = SAME) -> Tally:
    """Run generated programs of `ops` (those the subject supports) against `subject` held to `profile`, its layers
    placed as `placement` says; a failure is shrunk and kept in the tally."""
    ops, _ = supported(subject, ops)
    machine = partial(make_machine, ops=ops, long_names=long_names, placement=placement)
    return check_generated(machine, subject, profile, seed=seed,
                           budget=budget, scratch_root=scratch_root, database=database,
                           watchdog_seconds=watchdog_seconds)
