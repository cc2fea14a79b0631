"""What a model operation returns: the outcomes the spec allows, tagged with the rules that decided them."""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass

from vfslab.model.limits import Limit


@dataclass(frozen=True)
class Err:
    """A failed call: compared by errno value, never by message."""

    errno: int

    def __repr__(self) -> str:
        return _errno.errorcode.get(self.errno, str(self.errno))


@dataclass(frozen=True)
class Outcome:
    """`result` is a value (None for a bare success) or an `Err`; `also` lists other results the spec
    allows for the same call (POSIX sometimes leaves the choice of errno open)."""

    result: object
    rules: tuple[str, ...] = ()
    also: tuple[object, ...] = ()

    def allows(self, actual: object) -> bool:
        return actual == self.result or actual in self.also

    @property
    def failed(self) -> bool:
        return isinstance(self.result, Err)


@dataclass(frozen=True)
class Either:
    """What an operation returns where the spec allows other results beside `result` (its wrapper makes an
    `Outcome` of it)."""

    result: object
    also: tuple[object, ...]


class ModelError(Exception):
    """Raised inside a model operation to end it with an errno; the operation's wrapper turns it into an
    `Outcome`. `rule` names the rule that decided the failure."""

    def __init__(self, errno: int, rule: str, also: tuple[int, ...] = ()):
        super().__init__(errno, rule)
        self.errno = errno
        self.rule = rule
        self.also = also  # other errnos the spec allows here


class Fires:
    """What the operation a model is running has fired so far: rule ids and edges of limits, in order, each once
    (the operation's wrapper empties `_fired` before it and puts it in the Outcome after)."""

    _fired: list[str]

    def _fire(self, *rules: str) -> None:
        self._fired += [r for r in rules if r not in self._fired]

    def _edge(self, limit: Limit, n: int) -> None:
        if (edge := limit.edge(n)) is not None:
            self._fire(edge)

    def _measure(self, limit: Limit, n: int, errno: int) -> None:
        """Count `n` against `limit`: the edge it is at fires, and over it the limit's rule fails the call."""
        self._edge(limit, n)
        if limit.over(n):
            raise ModelError(errno, limit.rule)
