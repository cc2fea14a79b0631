"""Run one program on a subject and on the model, comparing as it goes.

A profile stays *alive* while the model under it allowed every outcome, every state and (for subjects in
overlayfs's format) every upper layer the subject showed. Only the held profile runs in lockstep; the subject's
results and states are recorded, and when the held profile dies every other profile is replayed over the
record and the survivors go on in lockstep. The held profile dying while another lives is a deviation named
after the living one; every profile dying is a failure, reported with each profile's first difference.
"""

from __future__ import annotations

import errno
from collections import Counter
from dataclasses import replace

from vfslab.check.engine.race import RECOUNTS, Race, failure
from vfslab.check.engine.state import Identity, diff_states, show, view
from vfslab.model.outcome import Err
from vfslab.model.state import State
from vfslab.model.union import PROFILES, UnionModel
from vfslab.model.union import profiles as union_profiles
from vfslab.model.union.ops import BENCH_OPS, EVERY_KIND, OPENS, FallocSupport, Op
from vfslab.subjects.driver import ModelDriver
from vfslab.subjects.support import fallocate_support, is_fuse, lower_acls, tmpfile_support


def _without_private(state: State, profile) -> State:
    """A subject's upper layer without what it keeps there for itself (as its profile names it)."""
    names, prefixes = profile.private_disk_names, profile.private_disk_xattrs
    if not names and not prefixes:
        return state
    return {p: replace(e, xattrs=tuple(x for x in e.xattrs if not x[0].startswith(prefixes)))
            for p, e in state.items() if p.rpartition("/")[2] not in names}


class Lockstep(Race):
    """`subject` is an OsDriver-like object (`apply`, `release`, `reopen`); `mounted` has `remount`, `push`
    and `upper`; `held` names the profile the subject is held to."""

    def __init__(self, layers, subject, mounted, held: str, disk: bool, one_fs: bool = True) -> None:
        union_profiles.get(held)
        self.layers = layers
        self.one_fs = one_fs
        self.subject = subject
        self.mounted = mounted
        self.held = held
        self.disk = disk and mounted.upper is not None
        self.profiles = tuple(PROFILES)
        self.waiting = [p for p in PROFILES if p != held]
        self.drivers: dict[str, ModelDriver] = {}
        self.identity: dict[str, Identity] = {}
        self.why: dict[str, str] = {}
        # ("op", op, actual, step), ("bench", op) and ("state", union, upper, step) events
        self.history: list[tuple] = []
        self.coverage: Counter[str] = Counter()
        #: the union checker names no differences (its deviations say their profile's description)
        self.differences: Counter[str] = Counter()
        self.steps = 0
        self.trace: list[str] = []
        self._falloc: FallocSupport | None = None
        self._tmpfile: bool | None = None
        self._fuse = False
        self._lower_acls: tuple[bool, ...] = ()
        self._start(held)

    def _start(self, name: str) -> None:
        profile = PROFILES[name]
        if self._tmpfile is None:
            self._tmpfile, self._fuse = tmpfile_support(self.mounted), is_fuse(self.mounted)
            self._lower_acls = lower_acls(self.mounted)
        if profile.fallocate is None and self._falloc is None:
            self._falloc = fallocate_support(self.mounted, self._fuse)
        self.drivers[name] = ModelDriver(UnionModel(self.layers.lowers, profile, one_fs=self.one_fs,
                                                    falloc=self._falloc or EVERY_KIND, tmpfile=self._tmpfile,
                                                    fuse=self._fuse, lower_acls=self._lower_acls))
        self.identity[name] = self._identity()

    def _identity(self) -> Identity:
        """Inode identities as the layers' placement shows them (docs/facts.md, overlayfs 6)."""
        return Identity(by_device=not self.one_fs, dirs=self.one_fs)

    # -- the record and the comparisons -----------------------------------------------------------

    def _apply(self, name: str, event: tuple) -> str | None:
        """Apply one recorded event to a profile's model: the difference it finds, or None."""
        if event[0] == "op":
            return self._compare_op(name, event[1], event[2], event[3])
        if event[0] == "bench":
            outcome = getattr(self.drivers[name].model, event[1].name)()
            if name == self.held:
                self.coverage.update(outcome.rules)
            if "union.ino.renumbered" in outcome.rules:
                self.identity[name] = self._identity()
            self.drivers[name].release()
            return None
        return self._compare_state(name, event[1], event[2], event[3])

    def _compare_op(self, name: str, op: Op, actual: object, step: int) -> str | None:
        # an open or dup takes the slot the subject's driver numbered it
        refused = actual if isinstance(actual, Err) else None
        outcome = self.drivers[name].call(op, slot=None if refused is not None else actual, refused=refused)
        if name == self.held:
            self.coverage.update(outcome.rules)
        if op.name in OPENS:
            same = isinstance(actual, Err) == outcome.failed and (not outcome.failed or outcome.allows(actual))
        else:
            same = view(actual) == view(outcome.result) or any(view(actual) == view(a) for a in outcome.also)
        if not same:
            return (f"step {step}: {op}: subject gave {show(actual)}, the model under {name} allows "
                    f"{show(outcome.result)} (rules: {', '.join(outcome.rules) or '-'})")
        if hasattr(actual, "ino"):
            return self.identity[name].check(f"step {step}: {op}", outcome.result.ino, actual.ino, actual.kind)
        return None

    def _compare_state(self, name: str, union: State, upper: State | None, step: int) -> str | None:
        model = self.drivers[name].model
        expected = model.state()
        ident = self.identity[name]
        ident.forget_all_but({e.ino for e in expected.values()})
        diffs = diff_states(expected, union, ident)
        if upper is not None and self.disk:
            on_disk = _without_private(upper, model.profile)
            diffs += [f"upper layer on disk: {d}" for d in diff_states(model.upper_state(), on_disk, None)]
        if diffs:
            return f"after step {step}: the state differs from the model under {name}:\n  " + "\n  ".join(diffs[:12])
        return None

    def _record(self, event: tuple) -> None:
        """Add an event to the record and apply it to every living profile."""
        self.history.append(event)
        for name in self.running:
            problem = self._apply(name, event)
            if problem:
                self._kill(name, problem)

    def holds_dir(self, slot: int) -> bool:
        """Whether `slot` is an open directory (to the held profile's model)."""
        driver = self.drivers[self.held]
        return slot in driver.slots and driver.model.fds[driver.slots[slot]].is_dir

    @property
    def running(self) -> list[str]:
        """The profiles driven in lockstep now: the held one, and once it died, those that replayed the record."""
        return [p for p in self.drivers if p not in self.why]

    def _kill(self, name: str, why: str) -> None:
        self.why[name] = why
        if name == self.held:
            for n in self.waiting:
                self._replays(n)
            self.waiting = []
        if not self.running:
            others = [f"  under {n}: {' '.join(self.why[n].split())[:200]}" for n in self.why if n != self.held]
            raise failure(self.why[self.held], others)

    def _replays(self, name: str) -> None:
        """Start the model under `name` on everything recorded so far; its first difference kills it."""
        self._start(name)
        for event in self.history:
            problem = self._apply(name, event)
            if problem:
                self.why[name] = problem
                return

    def visible_paths(self) -> list[str]:
        """The paths the model (under the first living profile) shows now, for choosing arguments that exist."""
        running = self.running
        return sorted(p for p in self.drivers[running[0]].model.state() if p != ".") if running else []

    # -- driving ----------------------------------------------------------------------------------

    def step(self, op: Op) -> object:
        self.steps += 1
        if op.name in BENCH_OPS:
            self.subject.release()
            getattr(self.mounted, op.name)()
            self.subject.reopen()
            self.trace.append(f"{op}")
            self._record(("bench", op))
            return None
        actual = self.subject.apply(op)
        for _ in range(RECOUNTS):  # the kernel's recount of symlinks (engine/race.py): ask again
            if actual != Err(errno.ELOOP):
                break
            actual = self.subject.apply(op)
        self.trace.append(f"{op} -> {show(actual)}")
        self._record(("op", op, actual, self.steps))
        return actual

    def check_state(self, union: State, upper: State | None) -> None:
        """Compare the subject's abstract state (and upper layer on disk) with every living profile."""
        self._record(("state", union, upper, self.steps))
