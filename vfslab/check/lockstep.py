"""Run one program on a subject and on the model, comparing as it goes.

A profile stays *alive* while the model under it allowed every outcome, every state and (for subjects in
overlayfs's format) every upper layer the subject showed. Only the held profile runs in lockstep; the subject's
results and states are recorded, and when the held profile dies every other profile is replayed over the
record and the survivors go on in lockstep. The held profile dying while another lives is a deviation named
after the living one; every profile dying is a failure, reported with each profile's first difference.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from vfslab.check.driver import ModelDriver
from vfslab.check.ops import BENCH_OPS, Op, show, view
from vfslab.model.outcome import Err
from vfslab.model.state import State
from vfslab.model.union import PROFILES, UnionModel
from vfslab.model.union import profiles as union_profiles


class Mismatch(AssertionError):
    """The subject did something no profile of the model allows."""


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


@dataclass
class Identity:
    """A bijection between model inode identities and the subject's st_ino."""

    fwd: dict[int, int] = field(default_factory=dict)
    back: dict[int, int] = field(default_factory=dict)

    def check(self, path: str, model_ino: int | None, real_ino: int | None) -> str | None:
        if model_ino is None or real_ino is None:
            return None
        if self.fwd.get(model_ino, real_ino) != real_ino or self.back.get(real_ino, model_ino) != model_ino:
            return (f"{path}: st_ino does not follow the model's identity (model object {model_ino}; "
                    "a hard link broken or joined, or st_ino changed across copy-up/remount)")
        self.fwd[model_ino] = real_ino
        self.back[real_ino] = model_ino
        return None

    def forget_all_but(self, model_inos: set[int], real_inos: set[int]) -> None:
        """Objects gone from both sides may have their numbers reused."""
        for m in [m for m in self.fwd if m not in model_inos]:
            r = self.fwd.pop(m)
            if r not in real_inos:
                self.back.pop(r, None)


FIELDS = ("kind", "mode", "uid", "gid", "nlink", "size", "digest", "target", "xattrs", "opaque", "redirect")


def diff_states(expected: State, actual: State, identity: Identity | None) -> list[str]:
    out = []
    for path in sorted(expected.keys() | actual.keys()):
        e, a = expected.get(path), actual.get(path)
        if e is None:
            out.append(f"{path}: present on the subject ({a.kind}), absent in the model")
            continue
        if a is None:
            out.append(f"{path}: absent on the subject, the model has a {e.kind}")
            continue
        # a whiteout is only a kind: its mode, owner and link count are the file system's business
        fields = ("kind",) if e.kind == "whiteout" else FIELDS
        if e != a:
            for f in fields:
                ev, av = getattr(e, f), getattr(a, f)
                if ev != av:
                    shown = (oct(ev), oct(av)) if f == "mode" else (ev, av)
                    out.append(f"{path}: {f} model={shown[0]!r} subject={shown[1]!r}")
        if identity is not None and e.kind != "whiteout" and (msg := identity.check(path, e.ino, a.ino)):
            out.append(msg)
    return out


def _without_private(state: State, profile) -> State:
    """A subject's upper layer without what it keeps there for itself (as its profile names it)."""
    names, prefixes = profile.private_disk_names, profile.private_disk_xattrs
    if not names and not prefixes:
        return state
    return {p: replace(e, xattrs=tuple(x for x in e.xattrs if not x[0].startswith(prefixes)))
            for p, e in state.items() if p.rpartition("/")[2] not in names}


class Lockstep:
    """`subject` is an OsDriver-like object (`apply`, `release`, `reopen`); `mounted` has `remount`, `push`
    and `upper`; `held` names the profile the subject is held to."""

    def __init__(self, layers, subject, mounted, held: str, disk: bool) -> None:
        union_profiles.get(held)
        self.layers = layers
        self.subject = subject
        self.mounted = mounted
        self.held = held
        self.disk = disk and mounted.upper is not None
        self.waiting = [p for p in PROFILES if p != held]
        self.drivers: dict[str, ModelDriver] = {}
        self.identity: dict[str, Identity] = {}
        self.alive: list[str] = []
        self.why: dict[str, str] = {}
        # ("op", op, actual, step), ("bench", op) and ("state", union, upper, step) events
        self.history: list[tuple] = []
        self.coverage: Counter[str] = Counter()
        self.steps = 0
        self.trace: list[str] = []
        self._start(held)
        self.alive.append(held)

    def _start(self, name: str) -> None:
        self.drivers[name] = ModelDriver(UnionModel(self.layers.lowers, PROFILES[name]))
        self.identity[name] = Identity()

    # -- the record and the comparisons -----------------------------------------------------------

    def _apply(self, name: str, event: tuple) -> str | None:
        """Apply one recorded event to a profile's model: the difference it finds, or None."""
        if event[0] == "op":
            return self._compare_op(name, event[1], event[2], event[3])
        if event[0] == "bench":
            outcome = getattr(self.drivers[name].model, event[1].name)()
            if name == self.held:
                self.coverage.update(outcome.rules)
            self.drivers[name].release()
            return None
        return self._compare_state(name, event[1], event[2], event[3])

    def _compare_op(self, name: str, op: Op, actual: object, step: int) -> str | None:
        # an open takes the slot the subject's driver numbered it
        outcome = self.drivers[name].call(op, slot=None if isinstance(actual, Err) else actual)
        if name == self.held:
            self.coverage.update(outcome.rules)
        if op.name == "open":
            same = isinstance(actual, Err) == outcome.failed and (not outcome.failed or outcome.allows(actual))
        else:
            same = view(actual) == view(outcome.result) or any(view(actual) == view(a) for a in outcome.also)
        if not same:
            return (f"step {step}: {op}: subject gave {show(actual)}, the model under {name} allows "
                    f"{show(outcome.result)} (rules: {', '.join(outcome.rules) or '-'})")
        if hasattr(actual, "ino"):
            return self.identity[name].check(f"step {step}: {op}", outcome.result.ino, actual.ino)
        return None

    def _compare_state(self, name: str, union: State, upper: State | None, step: int) -> str | None:
        model = self.drivers[name].model
        expected = model.state()
        ident = self.identity[name]
        ident.forget_all_but({e.ino for e in expected.values()}, {e.ino for e in union.values()})
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
        for name in list(self.alive):
            problem = self._apply(name, event)
            if problem:
                self._kill(name, problem)

    def _kill(self, name: str, why: str) -> None:
        self.alive.remove(name)
        self.why[name] = why
        if name == self.held:
            self.alive += [n for n in self.waiting if self._replays(n)]
            self.waiting = []
        if not self.alive:
            others = [f"  under {n}: {' '.join(self.why[n].split())[:200]}" for n in self.why if n != self.held]
            raise Mismatch("\n".join([self.why[self.held], "no other profile allows it either:", *others]))

    def _replays(self, name: str) -> bool:
        """Whether the model under `name` allows everything recorded so far."""
        self._start(name)
        for event in self.history:
            problem = self._apply(name, event)
            if problem:
                self.why[name] = problem
                return False
        return True

    def visible_paths(self) -> list[str]:
        """The paths the model (under the first living profile) shows now, for choosing arguments that exist."""
        return sorted(p for p in self.drivers[self.alive[0]].model.state() if p != ".") if self.alive else []

    @property
    def deviation(self) -> str | None:
        """The profile the subject still agrees with when it left its held one, else None."""
        return None if self.held in self.alive or not self.alive else self.alive[0]

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
        self.trace.append(f"{op} -> {show(actual)}")
        self._record(("op", op, actual, self.steps))
        return actual

    def check_state(self, union: State, upper: State | None) -> None:
        """Compare the subject's abstract state (and upper layer on disk) with every living profile."""
        self._record(("state", union, upper, self.steps))
