"""Union-mount subjects: what they share, and ours, union-fuse (the others are subject files: `files.py`).

They share one on-disk layout and lifecycle (`UnionMount`); a subject only says how to mount a given set of
layers. Layout under the scratch dir: `lower0 lower1 ... upper work mnt`, then `upper1 upper2 ...` after
pushes. No name is a single lowercase letter, so nothing here collides with the generated trees' names.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from vfslab.model.state import State
from vfslab.model.union import profiles
from vfslab.subjects import mounts
from vfslab.subjects.base import Capabilities
from vfslab.subjects.driver import OsDriver
from vfslab.subjects.forkserver import FORKS
from vfslab.subjects.tree import Layers, build_layer
from vfslab.subjects.walk import disk_state, union_state

# Characters that would be read as separators in an option string (`,`), a lowerdir or branch list (`:`),
# unionfs's `dir=RW` (`=`), or need escaping we do not do.
_UNSAFE = re.compile(r"[,:=\\\s]")


def feature_options(profile: str) -> str:
    """The overlayfs mount options a profile stands for (kernel overlayfs and union-fuse spell them alike)."""
    p = profiles.get(profile)
    return f"redirect_dir={'on' if p.redirect_dir else 'off'},index={'on' if p.index else 'off'}"


def _fresh_dir(p: Path) -> None:
    p.mkdir()
    os.chmod(p, 0o755)  # exactly 0755 whatever the umask; we run as root so the owner is root


@dataclass
class UnionMount:
    """A union subject mounted at `path` over `lowers` (topmost first) and `upper`."""

    subject: UnionSubject
    profile: str
    scratch: Path
    path: Path
    lowers: list[Path]
    upper: Path
    work: Path | None
    pid: int | None = None
    pushes: int = 0

    def mount(self) -> None:
        self.pid = self.subject.mount(self)

    def remount(self) -> None:
        self.teardown()
        self.mount()

    def push(self) -> None:
        self.teardown()
        self.lowers.insert(0, self.upper)
        self.pushes += 1
        self.upper = self.scratch / f"upper{self.pushes}"
        _fresh_dir(self.upper)
        if self.work is not None:
            # overlayfs leaves a d--------- work/work (and work/index) behind; rmtree as root removes them
            shutil.rmtree(self.work)
            _fresh_dir(self.work)
        self.mount()

    def teardown(self) -> None:
        self.subject.unmount(self)
        self.pid = None

    def driver(self) -> OsDriver:
        return OsDriver(self.path)

    def observe(self, disk: bool = True) -> tuple[State, State | None]:
        """The union as a user sees it, and (if `disk`) the upper layer as it lies on disk."""
        return union_state(self.path), disk_state(self.upper) if disk else None

    def abort(self) -> None:
        """Make operations blocked in this mount fail instead of hanging (called by a watchdog)."""
        self.subject.abort(self)


class UnionSubject(ABC):
    """What union subjects share; a subclass says how to mount, and how to tell its version and availability."""

    name: str
    profiles: tuple[str, ...] = ("overlayfs",)
    capabilities = Capabilities(("union",), overlay_format=True, can_hang=True)
    uses_workdir: bool = True

    def available(self) -> tuple[bool, str]:
        if os.geteuid() != 0:
            return False, "needs root to mount"
        return True, ""

    @abstractmethod
    def version(self) -> str:
        """What reports say it is."""

    @abstractmethod
    def mount(self, m: UnionMount) -> int | None:
        """Mount `m` at `m.path`; return the daemon's pid for a FUSE subject."""

    def abort(self, m: UnionMount) -> None:
        mounts.abort(m.path, m.pid)

    def unmount(self, m: UnionMount) -> None:
        mounts.unmount(m.path, m.pid)

    def setup(self, layers: Layers, scratch: Path, profile: str) -> UnionMount:
        if profile not in self.profiles:
            known = ", ".join(self.profiles)
            raise ValueError(f"{self.name} cannot be held to profile {profile!r} (it has: {known})")
        scratch = Path(scratch).resolve()
        if _UNSAFE.search(str(scratch)):
            raise ValueError(f"scratch path {scratch} contains one of , : = \\ or whitespace")
        scratch.mkdir(parents=True, exist_ok=True)
        if any(scratch.iterdir()):
            raise ValueError(f"scratch dir {scratch} is not empty")
        lowers = []
        for i, nodes in enumerate(layers.lowers or ((),)):  # a union needs at least one lower layer
            lower = scratch / f"lower{i}"
            _fresh_dir(lower)
            build_layer(nodes, lower)
            lowers.append(lower)
        m = UnionMount(
            subject=self,
            profile=profile,
            scratch=scratch,
            path=scratch / "mnt",
            lowers=lowers,
            upper=scratch / "upper",
            work=scratch / "work" if self.uses_workdir else None,
        )
        for d in (m.upper, m.work, m.path):
            if d is not None:
                _fresh_dir(d)
        m.mount()
        return m


class UnionFuse(UnionSubject):
    """Ours (`impl/union`), run by this Python interpreter, so it needs nothing installed on PATH."""

    name = "union-fuse"
    profiles = ("overlayfs-redirect-index", "overlayfs", "overlayfs-redirect", "overlayfs-index")

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        if ok and shutil.which("fusermount3") is None:
            return False, "fusermount3 not found on PATH"
        if ok and not os.path.exists("/dev/fuse"):
            return False, "/dev/fuse is missing"
        return ok, reason

    def version(self) -> str:
        from vfslab.impl.union.main import version

        return version()

    def argv(self, m: UnionMount) -> list[str]:
        lowerdir = ":".join(map(str, m.lowers))
        options = f"lowerdir={lowerdir},upperdir={m.upper},workdir={m.work},{feature_options(m.profile)}"
        return [sys.executable, "-m", "vfslab.impl.union.main", "-f", "-o", options, str(m.path)]

    def mount(self, m: UnionMount) -> int:
        argv = self.argv(m)
        return mounts.start_fuse(argv, m.path, log=m.scratch / "union-fuse.log",
                                 spawn=lambda _, log: FORKS.spawn("vfslab.impl.union.main:main", argv[3:], log)).pid
