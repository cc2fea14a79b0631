"""The `model` subject: the union model itself, held to one profile (a self-check of the engine and the
profiles: a program passes against it unless the profiles disagree, which makes a deviation)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from vfslab.model.state import State
from vfslab.model.union import PROFILES, UnionModel
from vfslab.subjects.base import Capabilities
from vfslab.subjects.driver import ModelDriver
from vfslab.subjects.placement import PLACEMENTS, SAME
from vfslab.subjects.tree import Layers


class ModelMount:
    upper = None
    path = None

    def __init__(self, layers: Layers, profile: str, placement: str = SAME) -> None:
        self.model = UnionModel(layers.lowers, PROFILES[profile], one_fs=placement == SAME)

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
    capabilities = Capabilities(("union", "posix"), overlay_format=True, reference=True, placements=PLACEMENTS)

    def available(self) -> tuple[bool, str]:
        return True, "pure Python"

    def version(self) -> str:
        return metadata.version("vfslab")

    def setup(self, layers: Layers, scratch: Path, profile: str, placement: str = SAME) -> ModelMount:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r} for subject model (known: {', '.join(PROFILES)})")
        return ModelMount(layers, profile, placement)
