"""Plain file systems held to the union model's `posix` profiles: `pmem-fuse` (a pool served by our FUSE front:
`posix-no-xattr`) and `tmpfs` (the kernel's, which keeps the profile honest: `posix`); and the pool behind a
mount point, held to the routing model: `pmem-router` (pmemfile's router, in the program's process) and
`pmem-fuse` (the kernel routing into our FUSE front).

A generated initial tree is a union's layers; a pool has none, so it is given one layer's tree (the engine
draws one for it: `max_layers`), built in the mounted file system as a layer is built on disk (owners, modes,
hard links and, where it holds them, xattrs). A program's tree of several layers is their union's visible
tree: the layers are built on disk, mounted read-only by kernel overlayfs (as the model reads them) and copied
into the mounted file system with `cp -a`. From then on every name is an upper one, and the model held to `posix`
says what a plain POSIX file system must do. `remount` closes the pool and opens it again; a pool has no
layers to `push`.

For the routing model, a subject is `routed`: a tmpfs holds the kernel's tree, a pool file the pool's, and the
program runs in a process of its own chrooted into the tmpfs (`subjects/process.py`), with the pool at `/P`
through the router or through a FUSE mount.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from vfslab.model.state import State
from vfslab.subjects import mounts
from vfslab.subjects.base import Capabilities
from vfslab.subjects.driver import OsDriver
from vfslab.subjects.forkserver import FORKS
from vfslab.subjects.mounts import WATCHDOG_SECONDS
from vfslab.subjects.process import Process
from vfslab.subjects.tree import DIR, FILE, SYMLINK, Layers, Node, build_layer
from vfslab.subjects.walk import union_state

POOL_SIZE = 8 << 20  # small: a pool is written and read whole at every mount
ROUTED_POOL_SIZE = 1 << 20  # a routing program's trees are a few names


@dataclass
class PlainMount:
    subject: PlainSubject
    path: Path
    scratch: Path
    pid: int | None = None
    upper = None

    def mount(self) -> None:
        self.pid = self.subject.mount(self)

    def driver(self) -> OsDriver:
        return OsDriver(self.path)

    def observe(self, disk: bool = True) -> tuple[State, State | None]:
        return union_state(self.path), None

    def abort(self) -> None:
        mounts.abort(self.path, self.pid)

    def remount(self) -> None:
        self.subject.remount(self)

    def teardown(self) -> None:
        self.subject.unmount(self)
        self.pid = None


class PlainSubject:
    profiles = ("posix",)
    #: it keeps extended attributes
    xattrs = True
    #: its initial tree is one layer, and it has no layers to push
    capabilities = Capabilities(("posix",), max_layers=1, push=False)
    name: str

    def available(self) -> tuple[bool, str]:
        if os.geteuid() != 0:
            return False, "needs root (to mount)"
        return True, ""

    def mount(self, m: PlainMount) -> int | None:
        raise NotImplementedError

    def remount(self, m: PlainMount) -> None:
        m.teardown()
        m.mount()

    def unmount(self, m: PlainMount) -> None:
        mounts.unmount(m.path, m.pid)

    def setup(self, layers: Layers, scratch: Path, profile: str) -> PlainMount:
        if profile != self.profiles[0]:
            raise ValueError(f"{self.name} cannot be held to profile {profile!r} (it has: {self.profiles[0]})")
        scratch = Path(scratch).resolve()
        scratch.mkdir(parents=True, exist_ok=True)
        m = PlainMount(self, scratch / "mnt", scratch)
        m.path.mkdir()
        m.mount()
        try:
            _fill(layers, scratch, m.path, self.xattrs)
        except BaseException:
            m.teardown()
            raise
        return m


class PmemFuse(PlainSubject):
    name = "pmem-fuse"
    #: the union model's, for a mount of its own; the routing model's, behind a mount point
    profiles = ("posix-no-xattr", "kernel", "pmemfile")
    xattrs = False
    capabilities = Capabilities(("posix", "pmem"), max_layers=1, push=False, can_hang=True)

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        return (False, "needs /dev/fuse") if ok and not os.path.exists("/dev/fuse") else (ok, reason)

    def version(self) -> str:
        from vfslab.impl.union.main import version

        return version()

    def mount(self, m: PlainMount) -> int:
        pool = m.scratch / "tree.pool"
        if not pool.exists():
            from vfslab.impl.pmem.fs import PmemFS

            PmemFS.mkfs(str(pool), POOL_SIZE)
        return _serve(pool, m.path, m.scratch / "pmem-fuse.log")

    def routed(self, scratch: Path, kernel: tuple[Node, ...], pool: tuple[Node, ...], pool_at: str,
               timeout: float = WATCHDOG_SECONDS) -> Routed:
        """The kernel routes: the pool is FUSE-mounted at `pool_at`, and the program calls the kernel."""
        r = Routed.prepare(scratch, kernel, pool, pool_at)
        try:
            mount_point = r.root / pool_at
            pid = _serve(r.pool, mount_point, r.scratch / "pmem-fuse.log")
            r.undo.append(lambda: mounts.unmount(mount_point, pid))
            r.start(routed=False, timeout=timeout)
        except BaseException:
            r.teardown()
            raise
        return r


class PmemRouter:
    """pmemfile's router (impl/pmem/router.py) in the program's own process, the pool mounted at a kernel
    directory; held to the routing model."""

    name = "pmem-router"
    profiles = ("pmemfile", "kernel")
    capabilities = Capabilities(("pmem",), max_layers=1, remount=False, push=False)

    def available(self) -> tuple[bool, str]:
        if os.geteuid() != 0:
            return False, "needs root (to chroot the program and mount its tmpfs)"
        return True, ""

    def version(self) -> str:
        from vfslab.impl.union.main import version

        return version()

    def routed(self, scratch: Path, kernel: tuple[Node, ...], pool: tuple[Node, ...], pool_at: str,
               timeout: float = WATCHDOG_SECONDS) -> Routed:
        r = Routed.prepare(scratch, kernel, pool, pool_at)
        try:
            r.start(routed=True, timeout=timeout)
        except BaseException:
            r.teardown()
            raise
        return r


@dataclass
class Routed:
    """A program's world: the kernel's tree on a tmpfs at `root`, the pool's tree in the file `pool` (or, `plain`,
    as a directory at `pool_at`), and the process that runs the program's calls."""

    scratch: Path
    pool_at: str
    plain: bool = False
    process: Process | None = None
    #: what teardown undoes, last first
    undo: list[Callable[[], None]] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.scratch / "root"

    @property
    def pool(self) -> Path:
        return self.scratch / "tree.pool"

    @classmethod
    def prepare(cls, scratch: Path, kernel: tuple[Node, ...], pool: tuple[Node, ...], pool_at: str,
                plain: bool = False) -> Routed:
        from vfslab.impl.pmem.fs import PmemFS

        r = cls(Path(scratch).resolve(), pool_at, plain)
        r.root.mkdir(parents=True)
        mounts.mount_kernel("tmpfs", "mode=0755,size=16m", r.root)
        r.undo.append(lambda: mounts.unmount(r.root))
        try:
            build_layer(kernel, r.root)
            if plain:
                build_layer(pool, r.root / pool_at)
                return r
            PmemFS.mkfs(str(r.pool), ROUTED_POOL_SIZE)
            fs = PmemFS.open(str(r.pool))
            try:
                fill_pool(fs, pool)
            finally:
                fs.close()
        except BaseException:
            r.teardown()
            raise
        return r

    def start(self, routed: bool, fds: int = 0, timeout: float = WATCHDOG_SECONDS) -> None:
        """Start the program's process: through the router (the pool mounted at `pool_at`), or on the kernel,
        holding `fds` open at the start."""
        self.process = Process(self.root, self.scratch / "process.log", pool=self.pool if routed else None,
                               pool_at=f"/{self.pool_at}", fds=fds, timeout=timeout)

    def teardown(self) -> None:
        if self.process is not None:
            self.process.stop()
        while self.undo:
            self.undo.pop()()


def fill_pool(fs, nodes: tuple[Node, ...]) -> None:
    """Write a tree of nodes (directories, files, symlinks) into an open pool."""
    root = fs.pool.root
    for n in nodes:
        path = "/" + n.path
        if n.kind == DIR:
            fs.mkdirat(root, path, n.mode)
        elif n.kind == FILE:
            f = fs.openat(root, path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, n.mode)
            fs.write(f, n.data)
            fs.close_file(f)
        elif n.kind == SYMLINK:
            fs.symlinkat(n.target, root, path)
        else:
            raise ValueError(f"a pool tree holds no {n.kind} ({n.path})")


def _serve(pool: Path, mount_point: Path, log: Path) -> int:
    """Serve `pool` at `mount_point` through our FUSE front: the daemon's pid."""
    argv = [str(pool), str(mount_point), "-f"]
    return mounts.start_fuse([sys.executable, "-m", "vfslab.impl.pmem.main", *argv], mount_point, log=log,
                             spawn=lambda _, log: FORKS.spawn("vfslab.impl.pmem.main:main", argv, log)).pid


class Tmpfs(PlainSubject):
    """The kernel's tmpfs: what the `posix` profile says, on a file system nobody here wrote."""

    name = "tmpfs"

    def version(self) -> str:
        return os.uname().release

    def mount(self, m: PlainMount) -> None:
        mounts.mount_kernel("tmpfs", "mode=0755,size=64m", m.path)

    def remount(self, m: PlainMount) -> None:
        """tmpfs forgets everything when unmounted: a remount is `mount -o remount`."""
        mounts.remount_kernel(m.path)


def _fill(layers: Layers, scratch: Path, dest: Path, xattrs: bool) -> None:
    """Copy the union's visible tree of `layers` into `dest`. One layer is its own union's tree: it is built in
    `dest` at once (a generated tree always has one: `max_layers`)."""
    if len(layers.lowers) <= 1:
        nodes = layers.lowers[0] if layers.lowers else ()
        build_layer(nodes if xattrs else tuple(replace(n, xattrs=()) for n in nodes), dest)
        os.chmod(dest, 0o755)  # as build_layer leaves a lower layer's root
        return
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
        keep = "--preserve=xattr" if xattrs else "--no-preserve=xattr"
        done = subprocess.run(["cp", "-a", keep, f"{view}/.", f"{dest}/"], capture_output=True, text=True,
                              timeout=60)
        if done.returncode:
            raise mounts.MountError(f"filling the pool failed: {done.stderr.strip().splitlines()[0]}")
        os.chmod(dest, os.stat(view).st_mode & 0o7777)
    finally:
        mounts.unmount(view)
