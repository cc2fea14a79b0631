"""Profiles raced beside a subject, and the ways a check ends early."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from vfslab.subjects.mounts import WATCHDOG_SECONDS, watchdog

__all__ = ["OTHERS", "RECOUNTS", "WATCHDOG_SECONDS", "Hang", "Mismatch", "Race", "failure", "guarded",
           "held_difference"]
T = TypeVar("T")


class Mismatch(AssertionError):
    """The subject did something no profile of the model allows."""


#: how often a call a real kernel refused with ELOOP is asked again: the kernel counts again the symlinks a lookup
#: followed before it restarted (an RCU walk that could not finish because a mount was made anywhere meanwhile), so a
#: lookup of more than MAXSYMLINKS / 2 of them is now and then ELOOP (59 in 60,000 lookups of 30, under a mount loop:
#: docs/pmem.md). A refused lookup changed nothing, and a subject whose ELOOP is no accident gives it every time.
RECOUNTS = 3

#: how a failure's message goes on, after the held profile's difference, to what the other profiles said
OTHERS = "no other profile allows it either:"


def failure(held: str, others: list[str]) -> Mismatch:
    """Every profile dropped out: the held profile's difference, then each other's."""
    return Mismatch("\n".join([held, OTHERS, *others]))


def held_difference(message: str) -> str:
    """The held profile's difference in a failure's message (the message itself when it has no more)."""
    return message.split(f"\n{OTHERS}")[0]


class Hang(Mismatch):
    """An operation on the subject did not return within the watchdog's time."""


class Race:
    """Every profile of a model run side by side with a subject; each drops out at its first difference (`why`).
    The held profile dropping out while another runs on is a deviation named after that one."""

    held: str
    profiles: tuple[str, ...]
    why: dict[str, str]

    @property
    def alive(self) -> list[str]:
        return [p for p in dict.fromkeys((self.held, *self.profiles)) if p not in self.why]

    @property
    def deviation(self) -> str | None:
        """The profile the subject keeps to when it does not keep to the held one."""
        return self.alive[0] if self.held in self.why and self.alive else None


def guarded(seconds: float | None, abort: Callable[[], None], what: str, call: Callable[[], T]) -> T:
    """Run `call` under a watchdog of `seconds` (None: no watchdog, the subject cannot hang). When it fires,
    `abort` makes the hung call fail, and whatever the call then raised or returned becomes a `Hang`."""
    if seconds is None:
        return call()
    dog = watchdog(seconds, abort)
    try:
        with dog:
            result = call()
    except (Mismatch, OSError):
        if not dog.fired:
            raise
    if dog.fired:
        raise Hang(f"{what} did not return within {seconds:g} s; the connection was aborted")
    return result
