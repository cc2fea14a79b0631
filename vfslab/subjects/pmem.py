"""The `pmem-fuse` subject: a pool served by our FUSE front, held to the union model's `posix` profile.

A generated initial tree is a union's layers; a pool has none, so it is given one layer's tree (the engine
draws one for it: `max_layers`): the layer is built on disk, mounted read-only by kernel overlayfs (as the
model reads it) and copied into the mounted pool with `cp -a` (owners, modes and hard links kept; xattrs,
which a pool does not hold, dropped). From then on every name is an upper one, and the model held to `posix`
says what a plain POSIX file system must do. `remount` closes the pool and opens it again; a pool has no
layers to `push`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vfslab.check.driver import OsDriver
from vfslab.check.tree import Layers, build_layer
from vfslab.check.walk import union_state
from vfslab.model.state import State
from vfslab.subjects import mounts
from vfslab.subjects.forkserver import FORKS

POOL_SIZE = 32 << 20


@dataclass
class PmemMount:
    pool: Path
    path: Path
    scratch: Path
    pid: int | None = None
    upper = None

    def mount(self) -> None:
        argv = [str(self.pool), str(self.path), "-f"]
        self.pid = mounts.start_fuse([sys.executable, "-m", "vfslab.impl.pmem.main", *argv], self.path,
                                     log=self.scratch / "pmem-fuse.log",
                                     spawn=lambda _, log: FORKS.spawn("vfslab.impl.pmem.main:main", argv, log)).pid

    def driver(self) -> OsDriver:
        return OsDriver(self.path)

    def observe(self, disk: bool = True) -> tuple[State, State | None]:
        return union_state(self.path), None

    def abort(self) -> None:
        mounts.abort(self.path, self.pid)

    def remount(self) -> None:
        self.teardown()
        self.mount()

    def push(self) -> None:
        raise NotImplementedError("a pool has no layers to push")

    def teardown(self) -> None:
        mounts.unmount(self.path, self.pid)
        self.pid = None


class PmemFuse:
    name = "pmem-fuse"
    profiles = ("posix",)
    claims_overlay_format = False
    can_hang = True
    #: its initial tree is one layer (see check/stateful.py)
    max_layers = 1

    def available(self) -> tuple[bool, str]:
        if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
            return False, "needs root (to mount) and /dev/fuse"
        return True, ""

    def version(self) -> str:
        from vfslab.impl.union.main import version

        return version()

    def setup(self, layers: Layers, scratch: Path, profile: str) -> PmemMount:
        if profile not in self.profiles:
            raise ValueError(f"{self.name} cannot be held to profile {profile!r} (it has: posix)")
        from vfslab.impl.pmem.fs import PmemFS

        scratch = Path(scratch).resolve()
        scratch.mkdir(parents=True, exist_ok=True)
        m = PmemMount(scratch / "tree.pool", scratch / "mnt", scratch)
        PmemFS.mkfs(str(m.pool), POOL_SIZE)
        m.path.mkdir()
        m.mount()
        try:
            _fill(layers, scratch, m.path)
        except BaseException:
            m.teardown()
            raise
        return m


def _fill(layers: Layers, scratch: Path, dest: Path) -> None:
    """Copy the union's visible tree of `layers` into `dest`."""
    lowers = []
    for i, nodes in enumerate(layers.lowers or ((),)):
        lower = scratch / f"lower{i}"
        lower.mkdir(mode=0o755)
        os.chmod(lower, 0o755)
        build_layer(nodes, lower)
        lowers.append(lower)
    view = scratch / "view"
    view.mkdir()
    if len(lowers) == 1:  # overlayfs wants two lower layers when there is no upper
        lowers.append(scratch / "empty")
        lowers[-1].mkdir()
    mounts.mount_overlay(f"lowerdir={':'.join(map(str, lowers))},redirect_dir=off,index=off,metacopy=off,"
                         "xino=off", view)
    try:
        done = subprocess.run(["cp", "-a", "--no-preserve=xattr", f"{view}/.", f"{dest}/"], capture_output=True,
                              text=True, timeout=60)
        if done.returncode:
            raise mounts.MountError(f"filling the pool failed: {done.stderr.strip().splitlines()[0]}")
        os.chmod(dest, os.stat(view).st_mode & 0o7777)
    finally:
        mounts.unmount(view)
