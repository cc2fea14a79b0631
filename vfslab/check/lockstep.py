"""Run one program on a subject and on the model under every profile at once, comparing as it goes.

A profile stays *alive* while the model under it allowed every outcome, every state and (for subjects in
overlayfs's format) every upper layer the subject showed. The held profile dying while another lives is a
deviation named after the living one; every profile dying is a failure, reported with the held profile's
first difference.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from vfslab.check.ops import BENCH_OPS, FD_OPS, Op, show, view
from vfslab.model.outcome import Err, Outcome
from vfslab.model.state import State
from vfslab.model.union import PROFILES, Cred, UnionModel
from vfslab.model.union import profiles as union_profiles


class Mismatch(AssertionError):
    """The subject did something no profile of the model allows."""


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
        if e == a or (e.kind == a.kind == "whiteout"):
            if identity is not None and e.kind != "whiteout" and (msg := identity.check(path, e.ino, a.ino)):
                out.append(msg)
            continue
        fields = ("kind", "mode", "uid", "gid", "nlink", "size", "digest", "target", "xattrs", "opaque", "redirect")
        for f in fields:
            ev, av = getattr(e, f), getattr(a, f)
            if e.kind == "whiteout" and f != "kind":
                continue
            if ev != av:
                shown = (oct(ev), oct(av)) if f == "mode" else (ev, av)
                out.append(f"{path}: {f} model={shown[0]!r} subject={shown[1]!r}")
        if identity is not None and e.kind != "whiteout":
            msg = identity.check(path, e.ino, a.ino)
            if msg:
                out.append(msg)
    return out


def _without_private_xattrs(state: State, prefixes: tuple[str, ...]) -> State:
    if not prefixes:
        return state
    return {p: replace(e, xattrs=tuple(x for x in e.xattrs if not x[0].startswith(prefixes)))
            for p, e in state.items()}


class Lockstep:
    """`subject` is an OsDriver-like object (`apply`, `release`, `reopen`); `mounted` has `remount`, `push`
    and `upper`; `held` names the profile the subject is held to."""

    def __init__(self, layers, subject, mounted, held: str, disk: bool, candidates: tuple[str, ...] = ()) -> None:
        union_profiles.get(held)
        names = (held, *[p for p in candidates or PROFILES if p != held])
        self.models = {n: UnionModel(layers.lowers, PROFILES[n]) for n in names}
        self.subject = subject
        self.mounted = mounted
        self.held = held
        self.disk = disk and mounted.upper is not None
        self.alive = list(names)
        self.why: dict[str, str] = {}
        self.identity = {n: Identity() for n in names}
        self.slots: dict[str, dict[int, int]] = {n: {} for n in names}
        self.coverage: Counter[str] = Counter()
        self.steps = 0
        self.trace: list[str] = []

    # -- comparing ------------------------------------------------------------------------------

    def _kill(self, name: str, why: str) -> None:
        self.alive.remove(name)
        self.why[name] = why
        if not self.alive:
            others = [f"  under {n}: {' '.join(self.why[n].split())[:200]}" for n in self.why if n != self.held]
            raise Mismatch("\n".join([self.why[self.held], "no other profile allows it either:", *others]))

    @property
    def deviation(self) -> str | None:
        """The profile the subject still agrees with when it left its held one, else None."""
        return None if self.held in self.alive or not self.alive else self.alive[0]

    def _model_apply(self, name: str, op: Op) -> Outcome:
        model = self.models[name]
        model.cred = Cred(op.uid, op.uid)
        args = op.args
        slots = self.slots[name]
        if op.name in FD_OPS:
            if args[0] not in slots:
                return Outcome(Err(9), ("union.fd.mode",))
            args = (slots[args[0]], *args[1:])
        outcome = getattr(model, op.name)(*args)
        if op.name == "close" and not outcome.failed:
            del slots[op.args[0]]
        return outcome

    def step(self, op: Op) -> object:
        self.steps += 1
        if op.name in BENCH_OPS:
            return self._bench(op)
        actual = self.subject.apply(op)
        self.trace.append(f"{op} -> {show(actual)}")
        for name in list(self.alive):
            outcome = self._model_apply(name, op)
            if name == self.held:
                self.coverage.update(outcome.rules)
            if op.name == "open":
                if not outcome.failed and not isinstance(actual, Err):
                    self.slots[name][actual] = outcome.result  # the slot the subject's driver numbered it
                same = isinstance(actual, Err) == outcome.failed and (not outcome.failed or outcome.allows(actual))
            else:
                same = view(actual) == view(outcome.result) or any(view(actual) == view(a) for a in outcome.also)
            problem = None if same else (
                f"step {self.steps}: {op}: subject gave {show(actual)}, the model under {name} allows "
                f"{show(outcome.result)} (rules: {', '.join(outcome.rules) or '-'})")
            if same and hasattr(actual, "ino"):
                problem = self.identity[name].check(f"step {self.steps}: {op}", outcome.result.ino, actual.ino)
            if problem:
                self._kill(name, problem)
        return actual

    def _bench(self, op: Op) -> None:
        self.subject.release()
        getattr(self.mounted, op.name)()
        self.subject.reopen()
        self.trace.append(f"{op}")
        for name in self.alive:
            outcome = getattr(self.models[name], op.name)()
            if name == self.held:
                self.coverage.update(outcome.rules)
        for slots in self.slots.values():
            slots.clear()

    def check_state(self, union: State, upper: State | None) -> None:
        """Compare the subject's abstract state (and upper layer on disk) with every living profile."""
        for name in list(self.alive):
            model = self.models[name]
            expected = model.state()
            ident = self.identity[name]
            ident.forget_all_but({e.ino for e in expected.values()}, {e.ino for e in union.values()})
            diffs = diff_states(expected, union, ident)
            if upper is not None and self.disk:
                on_disk = _without_private_xattrs(upper, model.profile.private_disk_xattrs)
                diffs += [f"upper layer on disk: {d}" for d in diff_states(model.upper_state(), on_disk, None)]
            if diffs:
                self._kill(name, f"after step {self.steps}: the state differs from the model under {name}:\n  "
                           + "\n  ".join(diffs[:12]))
