"""Draws of one choice each: a value read from a table by an index Hypothesis chooses.

Every strategy Hypothesis draws from opens a span of the choice sequence and is labelled and validated; a step of a
generated program, drawn as an operation and a handful of arguments each a strategy of its own, cost twice what
the step's comparisons do. A strategy `picks` makes builds its value with `pick(table)`, which reads an entry of a
table by one choice, all in the strategy's one span. The choices are those `sampled_from` makes (an index from 0,
shrinking toward 0), so a failure still shrinks toward each table's first entry.

Hypothesis offers no strategy that draws several indices without a span for each, so this is one: the one place
vfslab reaches into Hypothesis's internals (a strategy's `do_draw`, the choice sequence's `draw_integer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from hypothesis.strategies._internal.strategies import SearchStrategy

T = TypeVar("T")
#: what a table is: anything with a length and an entry at each index below it (a tuple, a range, a computed table)
Table = Sequence
Pick = Callable[[Table], object]


class _Picks(SearchStrategy[T]):
    def __init__(self, build: Callable[..., T], machine: bool) -> None:
        super().__init__()
        self.build = build
        self.machine = machine

    def do_draw(self, data) -> T:
        def pick(table: Table) -> object:
            # a table of one entry is read without a choice, as `just` draws
            return table[data.draw_integer(0, len(table) - 1)] if len(table) > 1 else table[0]

        return self.build(pick, data.hypothesis_runner) if self.machine else self.build(pick)

    def __repr__(self) -> str:
        return f"picks({getattr(self.build, '__name__', self.build)!s})"


def picks(build: Callable[[Pick], T]) -> SearchStrategy[T]:
    """The strategy drawing `build(pick)`, where `pick(table)` is an entry of a non-empty table, one choice each."""
    return _Picks(build, machine=False)


def machine_picks(build: Callable[[Pick, object], T]) -> SearchStrategy[T]:
    """A rule's argument drawn as `build(pick, the state machine running)`, for tables that depend on what the
    machine drew before (as `runner().flatmap` would, in two more draws)."""
    return _Picks(build, machine=True)
