"""Union-mount subjects: kernel overlayfs, fuse-overlayfs and unionfs-fuse.

They share one on-disk layout and lifecycle (`UnionMount`); a subject only says how to mount a given set of
layers. Layout under the scratch dir: `lower0 lower1 ... upper work mnt`, then `upper1 upper2 ...` after
pushes. No name is a single lowercase letter, so nothing here collides with the generated trees' names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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
        mounts.unmount(self.path, self.pid)
        self.pid = None

    def driver(self) -> OsDriver:
        return OsDriver(self.path)

    def observe(self, disk: bool = True) -> tuple[State, State | None]:
        """The union as a user sees it, and (if `disk`) the upper layer as it lies on disk."""
        return union_state(self.path), disk_state(self.upper) if disk else None

    def abort(self) -> None:
        """Make operations blocked in this mount fail instead of hanging (called by a watchdog)."""
        self.subject.abort(self)


class UnionSubject:
    """What the three union subjects share; subclasses say how to mount and how to tell availability."""

    name: str
    profiles: tuple[str, ...] = ("overlayfs",)
    capabilities = Capabilities(("union",), overlay_format=True, can_hang=True)
    uses_workdir: bool = True

    def available(self) -> tuple[bool, str]:
        if os.geteuid() != 0:
            return False, "needs root to mount"
        return True, ""

    def version(self) -> str:
        raise NotImplementedError

    def mount(self, m: UnionMount) -> int | None:
        """Mount `m` at `m.path`; return the daemon's pid for a FUSE subject."""
        raise NotImplementedError

    def abort(self, m: UnionMount) -> None:
        mounts.abort(m.path, m.pid)

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


class KernelOverlay(UnionSubject):
    name = "kernel-overlay"
    #: no daemon can hang an operation
    capabilities = Capabilities(("union",), overlay_format=True)
    profiles = ("overlayfs", "overlayfs-redirect", "overlayfs-index", "overlayfs-redirect-index")

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        if ok and "\toverlay\n" not in Path("/proc/filesystems").read_text():
            return False, "overlay is not in /proc/filesystems (modprobe overlay)"
        return ok, reason

    def version(self) -> str:
        return os.uname().release

    def mount(self, m: UnionMount) -> None:
        assert m.work is not None
        lowerdir = ":".join(map(str, m.lowers))
        # every feature is spelled out so the kernel's compiled-in defaults cannot change what a profile means
        options = f"lowerdir={lowerdir},upperdir={m.upper},workdir={m.work},{feature_options(m.profile)}"
        mounts.mount_overlay(f"{options},metacopy=off,xino=off", m.path)

    def abort(self, m: UnionMount) -> None:
        """Nothing to abort: a kernel overlay has no daemon that could hang."""


class FuseUnionSubject(UnionSubject):
    """A union file system served by a FUSE program run in the foreground as our child."""

    binary: str

    def argv(self, m: UnionMount) -> list[str]:
        raise NotImplementedError

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        for program in (self.binary, "fusermount3"):
            if ok and shutil.which(program) is None:
                ok, reason = False, f"{program} not found on PATH"
        if ok and not os.path.exists("/dev/fuse"):
            ok, reason = False, "/dev/fuse is missing"
        return ok, reason

    def version(self) -> str:
        """`<program version> (libfuse <version>)`, from `--version`."""
        try:
            done = subprocess.run([self.binary, "--version"], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return "unavailable"
        text = done.stdout + done.stderr
        # fuse-overlayfs prints fusermount3's version first, so anchor on the program's own name
        own = re.search(rf"^{re.escape(self.binary)}\S*:? version:? (\S+)", text, re.M)
        lib = re.search(r"FUSE library version:? (\S+)", text)
        return (own.group(1) if own else "unknown") + (f" (libfuse {lib.group(1)})" if lib else "")

    def mount(self, m: UnionMount) -> int:
        return mounts.start_fuse(self.argv(m), m.path).pid


class FuseOverlayfs(FuseUnionSubject):
    name = "fuse-overlayfs"
    binary = "fuse-overlayfs"
    # it mounts the same whatever it is held to: the profile is only what its behaviour is compared with
    profiles = ("overlayfs", "overlayfs-index", "fuse-overlayfs")

    def argv(self, m: UnionMount) -> list[str]:
        lowerdir = ":".join(map(str, m.lowers))
        # default semantics otherwise: no squash_to_root, no uid mapping, ACLs on
        options = f"lowerdir={lowerdir},upperdir={m.upper},workdir={m.work},allow_other"
        return [self.binary, "-f", "-o", options, str(m.path)]


class UnionfsFuse(FuseUnionSubject):
    """unionfs-fuse keeps whiteouts in its own format (`.unionfs-fuse/<path>_HIDDEN~` in the writable branch),
    so on-disk overlay checks do not apply. It has no work dir; after a push the old upper, metadata dir and
    all, is the topmost read-only branch and its whiteouts act from there."""

    name = "unionfs-fuse"
    binary = "unionfs"
    profiles = ("overlayfs", "unionfs-fuse")
    #: its whiteouts are its own: no on-disk overlay checks
    capabilities = Capabilities(("union",), can_hang=True)
    uses_workdir = False
    # cow: copy-on-write to the RW branch, without which writes to lower files fail; use_ino: real inode
    # numbers, so hard links and st_ino stability can be checked; suid,dev: overlay-like mount flags;
    # hide_meta_files: keep `.unionfs-fuse` out of readdir
    OPTIONS = "cow,allow_other,use_ino,suid,dev,hide_meta_files"

    def argv(self, m: UnionMount) -> list[str]:
        branches = ":".join([f"{m.upper}=RW", *(f"{lower}=RO" for lower in m.lowers)])
        return [self.binary, "-f", "-o", self.OPTIONS, branches, str(m.path)]


class UnionFuse(FuseUnionSubject):
    """Ours (`impl/union`), run by this Python interpreter, so it needs nothing installed on PATH."""

    name = "union-fuse"
    binary = sys.executable
    profiles = ("overlayfs-redirect-index", "overlayfs", "overlayfs-redirect", "overlayfs-index")

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
