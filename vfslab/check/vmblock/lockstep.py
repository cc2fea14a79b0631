"""A vmblock and the model in lockstep, including which background calls still wait.

Every profile of `model/block` runs beside the subject. A profile stays alive while it allowed every result
and every wake-up the subject showed: a call it says returns must return (within RETURN_SECONDS) with its
value; a call it says waits must still be waiting. The held profile dying while another lives is a
deviation named after the living one; every profile dying is a failure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

from vfslab.check.engine.race import WATCHDOG_SECONDS, Mismatch, Race, guarded
from vfslab.check.vmblock.client import BLOCKED, RETURN_SECONDS, Background, Client
from vfslab.check.vmblock.program import BACKGROUND, BlockOp
from vfslab.model.block import PROFILES, BlockModel, Waiting
from vfslab.model.outcome import Outcome
from vfslab.subjects.vmblock import BlockMount


def start(subject, scratch: Path, profile: str, names: tuple[str, ...], watchdog_seconds: float = WATCHDOG_SECONDS,
          unprivileged: bool = False) -> BlockLockstep:
    """Mount `subject` (in the unprivileged mode if asked) on a target directory holding `names` and put the model
    beside it."""
    mount = subject.mount(scratch, names=names, unprivileged=unprivileged)
    try:
        return BlockLockstep(mount, profile, names, watchdog_seconds, unprivileged)
    except BaseException:
        mount.teardown()
        raise


class BlockLockstep(Race):
    profiles = tuple(PROFILES)

    def __init__(self, mount: BlockMount, profile: str, names: tuple[str, ...],
                 watchdog_seconds: float = WATCHDOG_SECONDS, unprivileged: bool = False) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown vmblock profile {profile!r} (known: {', '.join(PROFILES)})")
        self.client = Client(mount)
        self.held = profile
        self.models = {p: BlockModel(PROFILES[p].options(str(mount.target), unprivileged), names) for p in PROFILES}
        self.handles: dict[str, list[int]] = {p: [] for p in PROFILES}  # slot -> the model's handle
        self.waits: dict[str, dict[int, Background]] = {p: {} for p in PROFILES}  # waiting id -> the real call
        self.why: dict[str, str] = {}  # profile -> its first difference
        self.coverage: Counter = Counter()
        self.differences: Counter = Counter()  # rule of another profile -> steps it explained
        self.steps = 0
        self.watchdog_seconds = watchdog_seconds

    def _differs(self, profile: str, what: str) -> None:
        self.why.setdefault(profile, f"step {self.steps}: {what}")

    def _model(self, profile: str, op: BlockOp) -> Outcome:
        m, a, handles = self.models[profile], op.args, self.handles[profile]
        if op.name == "open":
            opened = m.open_ctl(op.uid)
            if opened.failed:
                return opened
            handles.append(opened.result)
            return replace(opened, result=None)  # the caller sees a new fd, not the handle's number
        if op.name == "dup":
            duped = m.dup_ctl(handles[a[0]])
            handles.append(duped.result)
            return replace(duped, result=None)
        calls = {
            "close": lambda: m.close_ctl(handles[a[0]]),
            "write": lambda: m.write_ctl(handles[a[0]], self.client.data(a[1])),
            "read": lambda: m.read_ctl(handles[a[0]], a[1]),
            "touch": lambda: m.target_add(a[0]),
            "rm": lambda: m.target_remove(a[0]),
            "readlink": lambda: m.readlink(f"/blockdir/{a[0]}", op.uid),
            "notify": lambda: m.read_notify(f"/notifydir/{a[0]}", op.uid),
            "lstat": lambda: m.getattr(f"/{a[0]}"),
            "readdir": lambda: m.readdir(f"/{a[0]}"),
            "version": m.read_version,
        }
        return calls[op.name]()

    def step(self, op: BlockOp) -> object:
        """Apply `op` to the subject and every living profile; raise Mismatch when no profile is left."""
        self.steps += 1
        # the held profile runs on after it died, so that every later difference is named too
        outcomes = {p: self._model(p, op) for p in dict.fromkeys((self.held, *self.alive))}
        self.coverage.update(outcomes[self.alive[0]].rules)
        call = None
        if op.name in BACKGROUND:
            call = self.client.start(op)
            waits = all(isinstance(o.result, Waiting) for o in outcomes.values())
            if waits:
                call.settle()
            actual = call.result(0 if waits else RETURN_SECONDS)
        else:
            actual = self._guarded(op)
        for p, o in outcomes.items():
            if p in self.why:
                continue
            if isinstance(o.result, Waiting):  # only a background call waits
                self.waits[p][o.result.id] = call
                if actual is not BLOCKED:
                    self._differs(p, f"{op} returned {actual!r}; the model says it waits ({', '.join(o.rules)})")
            elif not o.allows(actual):
                self._differs(p, f"{op}: expected {o.result!r} ({', '.join(o.rules)}), got {actual!r}")
        self._name_differences(outcomes, actual)
        self._check_waiters()
        if not self.alive:
            raise Mismatch("\n".join(f"under {p}: {why}" for p, why in self.why.items()))
        return actual

    def _name_differences(self, outcomes: dict[str, Outcome], actual: object) -> None:
        """Count the rules of a living profile that allowed what the held profile did not."""
        held = outcomes[self.held]
        if isinstance(held.result, Waiting) or held.allows(actual):
            return
        for p in self.alive:
            if p != self.held and outcomes[p].allows(actual):
                self.differences.update(set(outcomes[p].rules) - set(held.rules))
                return

    def _guarded(self, op: BlockOp) -> object:
        return guarded(self.watchdog_seconds, self.client.mount.abort, f"step {self.steps}: {op}",
                       lambda: self.client.apply(op))

    def _check_waiters(self) -> None:
        self.client.quiesce()
        for p in self.alive:
            for wid, value in self.models[p].woken().items():
                call = self.waits[p].pop(wid)
                got = call.result(RETURN_SECONDS)
                if got != value:
                    self._differs(p, f"{call.op} should have returned {value!r} now; it is {got!r}"
                                  if got is BLOCKED else f"{call.op} should have returned {value!r}; got {got!r}")
            for call in self.waits[p].values():
                if call.done:
                    self._differs(p, f"{call.op} returned {call.result()!r}; the model says it still waits")

    def finish(self) -> list[BlockOp]:
        """Close every open control handle, as steps: every waiter must then return. The ops it ran."""
        ops = [BlockOp("close", (slot,)) for slot in self.client.open_slots()]
        for op in ops:
            self.step(op)
        return ops

    def close(self) -> None:
        """Tear the mount down; a call still waiting (after a failure) is ended by aborting the connection."""
        try:
            self.client.close()
        finally:
            if any(not c.done for c in self.client.calls):
                self.client.mount.abort()
            self.client.mount.teardown()
