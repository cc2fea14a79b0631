"""Choosers: every nondeterministic choice of a simulated run goes through one, so a run is a list of choices.

A choice is asked for with the number of options and, where the options are threads about to run, their
names. Option 0 is always the default (the order things became ready in: FIFO), so the all-zero schedule is
the run without surprises, and a shorter or smaller list of choices is a simpler schedule: what Hypothesis
shrinks towards.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


class Chooser:
    """Replays `prefix`, then chooses the default (0); records every choice made, and how many options each had."""

    #: whether `choose` needs the names of the threads behind the options (finding them costs)
    wants_owners = False

    def __init__(self, prefix: Sequence[int] = ()) -> None:
        self.prefix = list(prefix)
        self.made: list[int] = []
        self.options: list[int] = []

    def choose(self, n: int, owners: Sequence[str] = ()) -> int:
        """One of `n` options (0 <= result < n); `owners` names the thread behind each option, if any."""
        if n <= 1:
            return 0
        i = len(self.made)
        pick = self._pick(n, owners) if i >= len(self.prefix) else self.prefix[i] % n
        self.made.append(pick)
        self.options.append(n)
        return pick

    def _pick(self, n: int, owners: Sequence[str]) -> int:
        return 0


class RandomChooser(Chooser):
    """Uniform random choices from `seed` (after the prefix)."""

    def __init__(self, seed: int, prefix: Sequence[int] = ()) -> None:
        super().__init__(prefix)
        self.rng = random.Random(seed)

    def _pick(self, n: int, owners: Sequence[str]) -> int:
        return int(self.rng.random() * n)


class PCTChooser(Chooser):
    """Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010) with bug depth `depth`.

    Each thread gets a random priority; the highest-priority ready thread runs. At `depth - 1` random points
    among the first `steps` choices, the thread that would run drops to the lowest priorities. A bug of depth d
    in a program of n threads and k steps is found by one run with probability at least 1 / (n * k^(d-1)).
    Choices between options with no thread behind them stay uniform random."""

    wants_owners = True

    def __init__(self, seed: int, depth: int, steps: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.depth = depth
        self.priority: dict[str, float] = {}
        self.change_points = sorted(self.rng.sample(range(1, max(steps, depth) + 1), depth - 1))

    def _pick(self, n: int, owners: Sequence[str]) -> int:
        if len(owners) != n:
            return self.rng.randrange(n)
        for owner in owners:
            if owner not in self.priority:
                self.priority[owner] = self.depth + self.rng.random()  # above every lowered priority
        best = max(range(n), key=lambda i: self.priority[owners[i]])
        step = len(self.made) + 1
        if step in self.change_points:
            self.priority[owners[best]] = self.depth - 1 - self.change_points.index(step)
            best = max(range(n), key=lambda i: self.priority[owners[i]])
        return best

    @staticmethod
    def bound(threads: int, steps: int, depth: int) -> float:
        """The probability one run finds a bug of this depth, at least."""
        return 1.0 / (threads * steps ** (depth - 1))
