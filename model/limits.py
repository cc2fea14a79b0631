"""Numeric limits: each a named parameter of the rule it decides, and the edges a check must reach.

A limit is the largest value a rule allows (a component of NAME_MAX bytes is allowed, one more is refused). An
implementation whose limit is off by one passes every check that only goes past it, so a model reports the
*edges* it met, limit-1, limit and limit+1 (and 0 where 0 means something): an edge id, `RULE@NAME+1`, is counted
beside the rules an outcome fired, and a check reports each edge no program reached.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Linux's numbers (include/uapi/linux/limits.h, fs/namei.c), which every model here follows
NAME_MAX = 255
PATH_MAX = 4096
MAXSYMLINKS = 40

#: what separates a rule from a limit's edge in an edge id
EDGE_MARK = "@"


@dataclass(frozen=True)
class Limit:
    """`value` is the most of what it `measures` that `rule` allows; one more and the rule refuses."""

    name: str
    value: int
    rule: str
    measures: str
    #: 0 is an edge too (an empty name, a pool with no room left)
    zero: bool = False

    def edges(self) -> tuple[str, ...]:
        """The edge ids of this limit, smallest first."""
        offsets = ((None,) if self.zero else ()) + (-1, 0, 1)
        return tuple(self._id(o) for o in offsets)

    def edge(self, n: int) -> str | None:
        """The edge id `n` is at, or None."""
        if n == 0 and self.zero:
            return self._id(None)
        return self._id(n - self.value) if abs(n - self.value) <= 1 else None

    def over(self, n: int) -> bool:
        return n > self.value

    def _id(self, offset: int | None) -> str:
        at = "0" if offset is None else f"{self.name}{offset:+d}" if offset else self.name
        return f"{self.rule}{EDGE_MARK}{at}"


@dataclass(frozen=True)
class Least(Limit):
    """A limit from below: `value` is the fewest of what it `measures` that `rule` allows; one fewer and the rule
    refuses (the edges are the same: value-1, value, value+1)."""

    def over(self, n: int) -> bool:
        return n < self.value


def edges_of(limits: tuple[Limit, ...]) -> tuple[str, ...]:
    return tuple(e for limit in limits for e in limit.edges())
