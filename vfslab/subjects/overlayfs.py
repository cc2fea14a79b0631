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
from dataclasses import dataclass, field
from pathlib import Path

from vfslab.model.state import State
from vfslab.model.union import profiles
from vfslab.subjects import mounts
from vfslab.subjects.base import Capabilities
from vfslab.subjects.driver import OsDriver
from vfslab.subjects.forkserver import FORKS
from vfslab.subjects.placement import FS_PER_LAYER, PLACEMENTS, SAME, fresh_fs
from vfslab.subjects.placement import lower as place_lower
from vfslab.subjects.tree import Layers
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
    placement: str = SAME
    pid: int | None = None
    pushes: int = 0
    #: what the placement mounted for the layers, unmounted last
    placed: list[Path] = field(default_factory=list)

    def mount(self) -> None:
        self.pid = self.subject.mount(self)

    def remount(self) -> None:
        self._unmount()
        self.mount()

    def push(self) -> None:
        self._unmount()
        self.lowers.insert(0, self.upper)
        self.pushes += 1
        self.upper, work = self.new_upper(self.pushes)
        if self.work is not None:
            # the old work directory goes, its index with it (overlayfs leaves a d--------- work/work and
            # work/index behind; rmtree as root removes them)
            shutil.rmtree(self.work)
            _fresh_dir(work)
            self.work = work
        self.mount()

    def new_upper(self, n: int) -> tuple[Path, Path]:
        """The n-th upper directory (made) and where its work directory goes: beside it on a file system of their
        own when each layer has one."""
        suffix = str(n) if n else ""
        if self.placement == FS_PER_LAYER:
            fs = self.scratch / f"upperfs{suffix}"
            fresh_fs(fs)
            self.placed.append(fs)
            upper, work = fs / "upper", fs / "work"
        else:
            upper, work = self.scratch / f"upper{suffix}", self.scratch / "work"
        _fresh_dir(upper)
        return upper, work

    def _unmount(self) -> None:
        self.subject.unmount(self)
        self.pid = None

    def teardown(self) -> None:
        try:
            self._unmount()
        finally:
            for fs in reversed(self.placed):
                mounts.unmount(fs)
            self.placed.clear()

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

    def setup(self, layers: Layers, scratch: Path, profile: str, placement: str = SAME) -> UnionMount:
        if profile not in self.profiles:
            known = ", ".join(self.profiles)
            raise ValueError(f"{self.name} cannot be held to profile {profile!r} (it has: {known})")
        if placement not in self.capabilities.placements:
            raise ValueError(f"{self.name} cannot be placed {placement!r} (it takes: "
                             f"{', '.join(self.capabilities.placements)})")
        scratch = Path(scratch).resolve()
        if _UNSAFE.search(str(scratch)):
            raise ValueError(f"scratch path {scratch} contains one of , : = \\ or whitespace")
        scratch.mkdir(parents=True, exist_ok=True)
        if any(scratch.iterdir()):
            raise ValueError(f"scratch dir {scratch} is not empty")
        m = UnionMount(self, profile, scratch, scratch / "mnt", [], scratch / "upper", None, placement)
        try:
            trees = layers.lowers or ((),)  # a union needs at least one lower layer
            for i, nodes in enumerate(trees):
                m.lowers.append(scratch / f"lower{i}")
                m.placed += place_lower(placement, nodes, m.lowers[-1], i == len(trees) - 1, scratch)
            m.upper, work = m.new_upper(0)
            if self.uses_workdir:
                m.work = work
                _fresh_dir(work)
            _fresh_dir(m.path)
            m.mount()
        except BaseException:
            m.teardown()
            raise
        return m


class UnionFuse(UnionSubject):
    """Ours (`impl/union`), run by this Python interpreter, so it needs nothing installed on PATH."""

    name = "union-fuse"
    profiles = ("overlayfs-redirect-index", "overlayfs", "overlayfs-redirect", "overlayfs-index")
    capabilities = Capabilities(("union",), overlay_format=True, can_hang=True, placements=PLACEMENTS)

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
