"""Generated checks: budgets, what they found (a tally), and running a checking state machine within its budget.

A family's state machine draws an initial tree and a program, runs it on the subject in lockstep with its model,
and records into a `Tally`; `check_generated` runs it derandomised by the seed, and a failure Hypothesis finds is
shrunk to a minimal program (the last failing run it makes is the minimal one, which the machine keeps).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from vfslab.check.engine.kept import Kept
from vfslab.check.engine.race import WATCHDOG_SECONDS


@dataclass(frozen=True)
class Budget:
    """How much a generated check may do: programs, operations per program, seconds of generation (a failure
    found is shrunk past the seconds if need be), and how many programs a failure found may be shrunk through
    (None: until Hypothesis is done with it; a count, not seconds, so that a run makes the same ones anywhere)."""

    examples: int = 100
    steps: int = 25
    seconds: float = 120.0
    shrink: int | None = None

    def within(self, cap: Budget) -> Budget:
        """This budget, no larger than `cap` in any part."""
        shrinks = [s for s in (self.shrink, cap.shrink) if s is not None]
        return Budget(min(self.examples, cap.examples), min(self.steps, cap.steps), min(self.seconds, cap.seconds),
                      min(shrinks, default=None))


#: what a quick run (a bare `vfslab run`, `make run`) allows each scenario and subject at most: every suite is
#: exercised, with fewer programs; `--full` gives each scenario its own budget
QUICK = Budget(examples=30, steps=25, seconds=15.0)
#: how many programs a quick run shrinks a failure its scenario expects through: the known failure's program is
#: shown, not debugged (shrinking one of a peer's known failures to the end took up to 700 programs, 15 s); an
#: unexpected failure is shrunk to the end
QUICK_SHRINK = 150


@dataclass
class Tally:
    """What a stateful check found, across all its examples."""

    examples: int = 0
    steps: int = 0
    coverage: Counter = field(default_factory=Counter)
    failure: Kept | None = None
    hang: bool = False
    deviations: dict[str, Kept] = field(default_factory=dict)
    #: rules of the deviating profile that explained a result, with how often (named differences)
    differences: Counter = field(default_factory=Counter)
    error: str = ""
    #: the time budget ran out before the examples did: the examples drawn after it did nothing
    spent: bool = False
    #: programs a failure may be shrunk through (the budget's `shrink`), and whether they ran out: the failure
    #: kept is the smallest found until then
    shrink: int | None = None
    shrink_cut: bool = False
    _failed_at: int | None = field(default=None, repr=False)

    def over(self, deadline: float) -> bool:
        """Whether an example starting now is past the time budget, and so does nothing (a failure being shrunk
        runs on past it, or it would not reproduce, unless its own programs of shrinking are spent)."""
        if self.failure is None:
            self.spent |= time.monotonic() > deadline
            return self.spent
        if self.shrink is None:
            return False
        if self._failed_at is None:
            self._failed_at = self.examples
        self.shrink_cut |= self.examples - self._failed_at >= self.shrink
        return self.shrink_cut

    def record(self, lock, kept: Callable[[], object]) -> None:
        """An example's end, from its lockstep (vmblock, pmem): rules fired, differences named, and its program
        (`kept()`) if it was the first to deviate to its profile."""
        self.coverage.update(lock.coverage)
        self.differences.update(lock.differences)
        if lock.deviation and lock.deviation not in self.deviations:
            self.deviations[lock.deviation] = kept()


def check_generated(make_machine: Callable, subject, profile: str, *, seed: int, budget: Budget,
                    scratch_root: Path, database: Path | None = None,
                    watchdog_seconds: float = WATCHDOG_SECONDS) -> Tally:
    """Run the programs of the state machine `make_machine(subject, profile, scratch_root, tally, deadline,
    watchdog_seconds)` builds against `subject` held to `profile`; a failure is shrunk and kept."""
    tally = Tally(shrink=budget.shrink)
    scratch_root.mkdir(parents=True, exist_ok=True)
    machine = make_machine(subject, profile, scratch_root, tally, time.monotonic() + budget.seconds,
                           watchdog_seconds)
    return run_machine(machine, tally, seed=seed, budget=budget, database=database)


def check_inputs(strategy, check: Callable[[object], Kept | None], *, seed: int, budget: Budget,
                 database: Path | None = None) -> Tally:
    """Inputs drawn from `strategy`, each given to `check`, which returns the kept program of a failure (or None);
    the first failure is shrunk by Hypothesis and the minimal one kept, as for a state machine."""
    tally = Tally(shrink=budget.shrink)
    deadline = time.monotonic() + budget.seconds

    def test(value: object) -> None:
        if tally.over(deadline):
            return
        tally.examples += 1
        kept = check(value)
        if kept is not None:
            tally.failure = kept
            raise AssertionError(kept.message)

    run = given(strategy)(test)
    hypothesis_seed(seed)(run)
    _run(settings(_config(budget, database))(run), tally)
    return tally


def run_machine(machine: type[RuleBasedStateMachine], tally: Tally, *, seed: int, budget: Budget,
                database: Path | None) -> Tally:
    """Run a checking state machine (which records into `tally`) within `budget`, derandomised by `seed`."""
    hypothesis_seed(seed)(machine)
    _run(lambda: run_state_machine_as_test(machine, settings=_config(budget, database)), tally)
    return tally


def _config(budget: Budget, database: Path | None) -> settings:
    return settings(
        max_examples=budget.examples,
        stateful_step_count=budget.steps,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        database=DirectoryBasedExampleDatabase(str(database)) if database else None,
        print_blob=False,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    )


def _run(test: Callable[[], None], tally: Tally) -> None:
    """Run a Hypothesis test that records into `tally`: what it raised is the tally's failure, kept already, or
    its error."""
    try:
        test()
    except Exception as e:
        if isinstance(e, FlakyStrategyDefinition) and tally.spent and tally.failure is None:
            return  # an example drawn again after the budget ran out does nothing, so a machine whose rules
            # depend on what ran may draw it otherwise: the budget's end, not an error
        if tally.failure is None:
            tally.error = _one_line(e)
            if isinstance(e, ExceptionGroup) and e.exceptions:  # Hypothesis's Flaky: say what was raised
                tally.error += f" (first raised: {_one_line(e.exceptions[0])})"


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
