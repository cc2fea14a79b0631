"""A routed subject and the routing model in lockstep.

Every profile of `model/pmem` runs beside the subject. A profile stays alive while it allowed every result, and
every tree after a call that may change one (walked from `/` through the program's own calls). The held profile
dying while another lives is a deviation named after the living one; every profile dying is a failure, with each
profile's first difference.
"""

from __future__ import annotations

import errno as E
from collections import Counter
from pathlib import Path

from vfslab.check.engine.race import RECOUNTS, Hang, Mismatch, Race
from vfslab.check.engine.state import diff_states, show
from vfslab.check.pmem.program import KERNEL, POOL_AT, show_call
from vfslab.model.outcome import Err, Outcome
from vfslab.model.pmem import PROFILES, RoutingModel
from vfslab.model.pmem.calls import FD_CALLS, LOOKS
from vfslab.model.pmem.routing import DIRECTORY_OFFSET
from vfslab.model.state import Entry
from vfslab.subjects.mounts import WATCHDOG_SECONDS
from vfslab.subjects.process import DIRECTORY, Gone, entries
from vfslab.subjects.tree import Node


def start(subject, scratch: Path, profile: str, pool: tuple[Node, ...],
          timeout: float = WATCHDOG_SECONDS) -> RouteLockstep:
    """Set `subject` up with the pool's tree at /P and put the model beside it."""
    if profile not in PROFILES:
        raise ValueError(f"unknown pmem profile {profile!r} (known: {', '.join(PROFILES)})")
    routed = subject.routed(scratch, KERNEL, pool, POOL_AT, timeout)
    return RouteLockstep(routed, profile, pool)




def _view(result: object) -> object:
    if isinstance(result, Entry):
        return ("stat", result.kind, result.mode, result.nlink, result.size)
    return result


def _actual(answer: dict) -> object:
    if "errno" in answer:
        return Err(answer["errno"])
    value = answer["value"]
    if isinstance(value, dict):
        return value["bytes"].encode("latin-1")
    if isinstance(value, list) and value[:1] == ["stat"]:
        return tuple(value)
    return DIRECTORY_OFFSET if value == DIRECTORY else value


def _allows(outcome: Outcome, actual: object) -> bool:
    return _view(outcome.result) == actual or actual in map(_view, outcome.also)


class RouteLockstep(Race):
    profiles = tuple(PROFILES)

    def __init__(self, routed, profile: str, pool: tuple[Node, ...]) -> None:
        self.routed = routed
        self.held = profile
        taken = routed.process.taken
        self.models = {p: RoutingModel(KERNEL, {POOL_AT: pool}, PROFILES[p], taken) for p in PROFILES}
        self.returned: list[int] = []  # fds returned by opens, dups and dup2s, in order ("#i")
        self.why: dict[str, str] = {}  # profile -> its first difference
        self.coverage: Counter = Counter()
        self.differences: Counter = Counter()  # rule of another profile -> steps it explained
        self.steps = 0

    def _arg(self, a: object) -> object:
        if isinstance(a, str) and a.startswith("#") and a[1:].isdigit():
            i = int(a[1:])
            return self.returned[i] if i < len(self.returned) else -1
        return a

    def step(self, call: list) -> object:
        """Run one call on the subject and every living profile; Mismatch when no profile allows the result."""
        self.steps += 1
        name, *args = call
        args = [self._arg(a) for a in args]
        if name == "write" and isinstance(args[1], str):
            args[1] = args[1].encode()
        wire = [{"bytes": a.decode("latin-1")} if isinstance(a, bytes) else a for a in args]
        what = f"step {self.steps} {show_call(call)}"
        actual = _actual(self._ask([name, *wire], what))
        expected = {p: getattr(self.models[p], name)(*args) for p in self.alive}
        for _ in range(RECOUNTS):
            if not (actual == Err(E.ELOOP) and not any(_allows(o, actual) for o in expected.values())
                    and any("pmem.symlink.follow" in o.rules for o in expected.values())):
                break
            actual = _actual(self._ask([name, *wire], what))  # the kernel's recount (docs/pmem.md): ask again
        held_before = self.held not in self.why
        for p, outcome in expected.items():
            if p == self.held:
                self.coverage.update(outcome.rules)
            if not _allows(outcome, actual):
                self.why.setdefault(p, f"step {self.steps} {show_call(call)}: the model says "
                                       f"{show(_view(outcome.result))}, the subject {show(actual)}")
        if held_before and self.deviation:
            self.differences.update(set(expected[self.deviation].rules) - set(expected[self.held].rules))
        if name in FD_CALLS and isinstance(actual, int):
            self.returned.append(actual)
        if name not in LOOKS and self.alive:
            self._compare_trees()
        if not self.alive:
            raise Mismatch("no profile of the routing model allows what the subject did:\n"
                           + "\n".join(f"  {p}: {why}" for p, why in self.why.items()))
        return actual

    def _ask(self, call: list, what: str) -> dict:
        try:
            return self.routed.process.call(call)
        except Gone as e:
            raise (Hang if e.hung else Mismatch)(f"{what}: {e}") from None

    def _compare_trees(self) -> None:
        answer = self._ask(["state"], f"walking the tree after step {self.steps}")
        if "errno" in answer:
            raise Mismatch(f"walking the tree after step {self.steps} failed: {show(Err(answer['errno']))}")
        seen = entries(answer["value"])
        for p in self.alive:
            diffs = diff_states(self.models[p].state(), seen, None)
            if diffs:
                self.why.setdefault(p, f"the tree after step {self.steps}: " + "; ".join(diffs[:3]))

    def close(self) -> None:
        self.routed.teardown()
