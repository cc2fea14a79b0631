"""The `model` subject: the union model itself, held to one profile (a self-check of the engine and the
profiles: a program passes against it unless the profiles disagree, which makes a deviation)."""

from __future__ import annotations

from pathlib import Path

from vfslab.check.ops import FD_OPS, Op
from vfslab.check.tree import Layers
from vfslab.model.outcome import Err
from vfslab.model.state import State
from vfslab.model.union import PROFILES, Cred, UnionModel


class ModelDriver:
    def __init__(self, model: UnionModel) -> None:
        self.model = model
        self.slots: dict[int, int] = {}

    def apply(self, op: Op) -> object:
        self.model.cred = Cred(op.uid, op.uid)
        args = op.args
        if op.name in FD_OPS:
            if args[0] not in self.slots:
                return Err(9)
            args = (self.slots[args[0]], *args[1:])
        result = getattr(self.model, op.name)(*args).result
        if op.name == "open" and not isinstance(result, Err):
            slot = max(self.slots, default=-1) + 1
            self.slots[slot] = result
            return slot
        if op.name == "close" and not isinstance(result, Err):
            del self.slots[op.args[0]]
        return result

    def release(self) -> None:
        self.slots.clear()

    def reopen(self) -> None:
        """Nothing to reopen."""


class ModelMount:
    upper = None
    path = None

    def __init__(self, layers: Layers, profile: str) -> None:
        self.model = UnionModel(layers.lowers, PROFILES[profile])

    def driver(self) -> ModelDriver:
        return ModelDriver(self.model)

    def observe(self, disk: bool = True) -> tuple[State, State | None]:
        return self.model.state(), self.model.upper_state() if disk else None

    def remount(self) -> None:
        self.model.remount()

    def push(self) -> None:
        self.model.push()

    def teardown(self) -> None:
        """Nothing is mounted."""

    def abort(self) -> None:
        """Nothing can hang."""


class ModelSubject:
    name = "model"
    profiles = tuple(PROFILES)
    claims_overlay_format = True
    can_hang = False

    def available(self) -> tuple[bool, str]:
        return True, "pure Python"

    def version(self) -> str:
        from vfslab import __version__

        return __version__

    def setup(self, layers: Layers, scratch: Path, profile: str) -> ModelMount:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r} for subject model (known: {', '.join(PROFILES)})")
        return ModelMount(layers, profile)
