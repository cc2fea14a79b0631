"""What a subject is: a system under test that can be set up on initial layers, remounted, pushed and torn down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vfslab.model.state import State
from vfslab.subjects.tree import Layers


class Mounted(Protocol):
    """A subject mounted over its layers.

    `path` is where operations are applied; `upper` is the upper layer directory on disk (None for
    subjects without one). `remount()` unmounts and mounts again on the same layers; `push()` makes the
    upper layer the topmost lower layer under a fresh, empty upper layer and work directory (the old work
    directory is removed). `teardown()` must leave no mount behind, whatever state the mount is in.
    """

    path: Path
    upper: Path | None

    def driver(self) -> Any:
        """What applies operations to it (an OsDriver on the mount, or the model's own driver)."""

    def observe(self, disk: bool = True) -> tuple[State, State | None]:
        """The abstract state of the union, and (if `disk`) of the upper layer on disk (None if it has none)."""

    def abort(self) -> None:
        """Make a hung operation on it fail (the watchdog calls this)."""

    def remount(self) -> None: ...
    def push(self) -> None:
        """Only asked of a subject whose capabilities say `push`."""
    def teardown(self) -> None: ...


@dataclass(frozen=True)
class Capabilities:
    """What a subject declares it can be asked; the engine asks nothing else of it and says in the record what it
    left out."""

    #: the families whose checks it takes (union: the union engine, whatever profile it is held to)
    families: tuple[str, ...]
    #: lower layers it can be set up on (a plain file system: one, its initial tree)
    max_layers: int = 3
    remount: bool = True
    push: bool = True
    #: its upper layer is in kernel overlayfs's on-disk format (on-disk checks apply)
    overlay_format: bool = False
    #: a daemon serves it, so an operation can hang: the bench guards each one with a watchdog
    can_hang: bool = False
    #: it is the model itself: program scenarios also hold it to their written expectations under every design
    #: profile
    reference: bool = False
    #: where its layers may live (subjects/placement.py)
    placements: tuple[str, ...] = ("same",)


class Subject(Protocol):
    name: str
    #: profiles this subject can be held to; the first is its default
    profiles: tuple[str, ...]
    capabilities: Capabilities

    def available(self) -> tuple[bool, str]: ...
    def version(self) -> str: ...
    def setup(self, layers: Layers, scratch: Path, profile: str) -> Mounted: ...
