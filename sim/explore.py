"""Searching the schedules of a workload for deadlocks.

- `simulate`: one run, from a chooser; `replay`: one run from a list of choices.
- `random_search`: runs from seeds `seed`, `seed + 1`, ...
- `pct_search`: PCT runs of depth d, with the probability bound one run reaches.
- `bounded_search`: every schedule with at most k non-default choices (delay bounding: a non-default choice
  runs something other than what was ready first), depth first, each schedule once; says whether it covered
  them all.
- `shrink`: Hypothesis searches the workload's size and the list of choices for a deadlock and shrinks it to
  a minimal one (smallest size, fewest and smallest non-default choices).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, Verbosity, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from vfslab.sim.detect import DEADLOCK, Finding, examine
from vfslab.sim.schedule import Chooser, PCTChooser, RandomChooser
from vfslab.sim.sync import LockOrder
from vfslab.sim.workloads import Workload
from vfslab.sim.world import Step, TooLong, World

HANG = "hang"


@dataclass
class Run:
    params: dict
    choices: list[int]
    verdict: str
    finding: Finding | None
    trace: list[Step] = field(default_factory=list)
    threads: int = 0
    steps: int = 0


def simulate(workload: Workload, params: dict, chooser: Chooser, order: LockOrder | None = None,
             tracing: bool = False, max_steps: int = 100_000) -> Run:
    world = World(chooser, max_steps, tracing)
    workload.build(world, params, order)
    try:
        world.run_all()
    except TooLong:
        return Run(params, chooser.made, HANG, None, world.trace, len(world.threads), world.steps)
    finding = examine(world)
    return Run(params, chooser.made, finding.verdict, finding, world.trace, len(world.threads), world.steps)


def replay(workload: Workload, params: dict, choices: list[int], order: LockOrder | None = None) -> Run:
    """The run these choices make, traced."""
    return simulate(workload, params, Chooser(choices), order, tracing=True)


@dataclass
class Search:
    """What a search did: `runs` schedules, the first bad run (None if none), and for a bounded search
    whether it covered every schedule within its bound."""

    strategy: str
    runs: int = 0
    found: Run | None = None
    complete: bool = False
    bound: str = ""


def random_search(workload: Workload, params: dict, seed: int, runs: int, order: LockOrder | None = None) -> Search:
    search = Search("random")
    for i in range(runs):
        run = simulate(workload, params, RandomChooser(seed + i), order)
        search.runs += 1
        if run.verdict != "pass":
            search.found = run
            break
    return search


def pct_search(workload: Workload, params: dict, seed: int, runs: int, depth: int = 2,
               order: LockOrder | None = None) -> Search:
    probe = simulate(workload, params, Chooser(), order)
    search = Search("pct")
    steps = max(len(probe.choices), 1)
    rng = random.Random(seed)
    for _ in range(runs):
        run = simulate(workload, params, PCTChooser(rng.randrange(2**32), depth, steps), order)
        search.runs += 1
        if run.verdict != "pass":
            search.found = run
            break
    p = PCTChooser.bound(probe.threads, steps, depth)
    search.bound = (f"depth {depth}: each run finds a bug of depth <= {depth} with probability >= {p:.2g} "
                    f"({probe.threads} threads, {steps} choices); {search.runs} runs miss one with probability "
                    f"<= {(1 - p) ** search.runs:.2g}")
    return search


def bounded_search(workload: Workload, params: dict, bound: int, limit: int = 100_000,
                   order: LockOrder | None = None) -> Search:
    search = Search("bounded", bound=f"every schedule with at most {bound} non-default choices")
    stack: list[list[int]] = [[]]
    while stack and search.runs < limit:
        prefix = stack.pop()
        chooser = Chooser(prefix)
        run = simulate(workload, params, chooser, order)
        search.runs += 1
        if run.verdict != "pass" and search.found is None:
            search.found = run
        if sum(1 for c in prefix if c) < bound:
            for i in range(len(chooser.made) - 1, len(prefix) - 1, -1):
                for alternative in range(chooser.options[i] - 1, 0, -1):
                    stack.append([*chooser.made[:i], alternative])
    search.complete = not stack
    if not search.complete:
        search.bound += f" (stopped after {limit} schedules: not all covered)"
    return search


#: every search a study or a plan may ask for
STRATEGIES = ("shrink", "random", "pct", "bounded")


def search(workload: Workload, params: dict, strategy: str, seed: int, runs: int, depth: int, bound: int) -> Search:
    """The `random`, `pct` or `bounded` search (`shrink` is `shrink`)."""
    if strategy == "random":
        return random_search(workload, params, seed, runs)
    if strategy == "pct":
        return pct_search(workload, params, seed, runs, depth)
    return bounded_search(workload, params, bound)


def shrink(workload: Workload, params: dict, seed: int, examples: int = 2000, vary_size: bool = True
           ) -> Run | None:
    """A minimal deadlocking run: the smallest workload size (if it has one and `vary_size`: up to twice the
    given one), then the fewest and smallest non-default choices. None if Hypothesis finds no deadlock in
    `examples` tries."""
    size = workload.size
    sizes = st.integers(1, 2 * params[size]) if size and vary_size else st.just(params[size] if size else 0)
    choices = st.lists(st.integers(0, 7), max_size=64)

    def params_for(n: int) -> dict:
        return {**params, size: n} if size else params

    def deadlocks(example: tuple[int, list[int]]) -> bool:
        n, picks = example
        return simulate(workload, params_for(n), Chooser(picks)).verdict == DEADLOCK

    config = settings(max_examples=examples, database=None, deadline=None, verbosity=Verbosity.quiet,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
    try:
        n, picks = find(st.tuples(sizes, choices), deadlocks, settings=config, random=random.Random(seed))
    except NoSuchExample:
        return None
    run = replay(workload, params_for(n), picks)
    run.choices = _trimmed(run.choices)
    return run


def _trimmed(choices: list[int]) -> list[int]:
    """Trailing default choices say nothing: a replay makes them anyway."""
    while choices and choices[-1] == 0:
        choices = choices[:-1]
    return choices
