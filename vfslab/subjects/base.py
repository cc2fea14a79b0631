"""What a subject is: a system under test that can be set up on initial layers, remounted, pushed and torn down."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from vfslab.check.tree import Layers
from vfslab.model.state import State


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
    def push(self) -> None: ...
    def teardown(self) -> None: ...


class Subject(Protocol):
    name: str
    #: profiles this subject can be held to; the first is its default
    profiles: tuple[str, ...]
    #: True when its upper layer is in kernel overlayfs's on-disk format (on-disk checks apply)
    claims_overlay_format: bool
    #: True when an operation can hang (a daemon serves it): the bench then guards each one with a watchdog
    can_hang: bool

    def available(self) -> tuple[bool, str]: ...
    def version(self) -> str: ...
    def setup(self, layers: Layers, scratch: Path, profile: str) -> Mounted: ...
