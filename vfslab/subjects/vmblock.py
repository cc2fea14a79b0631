"""vmblock subjects: ours (`impl/block`, one subject per design) and Debian's vmware-vmblock-fuse.

Debian's program has its target directory fixed at /tmp/VMwareDnD. So that it can be checked on a target
of our making, and run beside other instances, it runs in a mount namespace of its own (`namespace.py`) where
our target directory stands in for /tmp/VMwareDnD. Its FUSE mount is made by us, in our namespace, and it
serves it through the connection's fd (`/dev/fd/N`). `make` unpacks the binary into /var/cache/vfslab (never
installed, so no VMware service starts).
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vfslab.impl.block.fs import DESIGNS
from vfslab.model.block import PROFILES
from vfslab.subjects import mounts, namespace
from vfslab.subjects.base import Capabilities
from vfslab.subjects.forkserver import FORKS

VMWARE_TARGET = Path("/tmp/VMwareDnD")
LIBFUSE_MAX_THREADS = 10  # FUSE_LOOP_MT_DEF_MAX_THREADS since libfuse 3.12
VMWARE_ROOT = Path("/var/cache/vfslab/open-vm-tools")
VMWARE_CACHE = VMWARE_ROOT / "usr/bin/vmware-vmblock-fuse"

def vmware_binary() -> Path | None:
    """$VFSLAB_VMWARE_VMBLOCK, the unpacked Debian binary, or one on PATH."""
    for candidate in (os.environ.get("VFSLAB_VMWARE_VMBLOCK"), VMWARE_CACHE, shutil.which("vmware-vmblock-fuse")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


@dataclass
class BlockMount:
    """A vmblock mounted at `path`. `target` is its target directory as the daemon names it (what readlink
    returns); `entries` is that same directory as we reach it, where the target's entries are made."""

    subject: VMBlockSubject
    path: Path
    target: Path
    entries: Path
    max_threads: int
    pid: int | None = None
    _connection: Path | None = field(default=None, init=False, repr=False)

    def waiting(self) -> int | None:
        """Its connection's requests not yet answered (fusectl's `waiting`); None once it is gone."""
        if self._connection is None:  # found once: polling must not read mountinfo every time
            info = mounts.find_mount(self.path)
            if info is None or not info.is_fuse:
                return None
            self._connection = mounts.FUSECTL / str(info.minor)
        try:
            return int((self._connection / "waiting").read_text())
        except (OSError, ValueError):
            return None

    def abort(self) -> None:
        mounts.abort(self.path, self.pid)

    def teardown(self) -> None:
        mounts.unmount(self.path, self.pid)
        self.pid = None


class VMBlockSubject:
    """A vmblock: `kind` is one of our designs, or `vmware` for Debian's program."""

    profiles = tuple(PROFILES)
    #: sim: the crosscheck holds the simulator's verdicts against its mounts
    capabilities = Capabilities(("vmblock", "sim"), max_layers=0, remount=False, push=False, can_hang=True)

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind

    def available(self) -> tuple[bool, str]:
        if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
            return False, "needs root and /dev/fuse"
        if self.kind == "vmware" and vmware_binary() is None:
            return False, f"vmware-vmblock-fuse not found (make fetches it into {VMWARE_ROOT})"
        return True, ""

    def version(self) -> str:
        if self.kind != "vmware":
            from vfslab.impl.union.main import version

            return f"{version()}, design {self.kind}"
        changelog = VMWARE_ROOT / "usr/share/doc/open-vm-tools/changelog.Debian.gz"
        try:
            with gzip.open(changelog, "rt") as f:
                return f"open-vm-tools {f.readline().split('(')[1].split(')')[0]}"
        except (OSError, IndexError):
            return "open-vm-tools (version unknown)"

    def mount(self, scratch: Path, max_threads: int = LIBFUSE_MAX_THREADS, names: tuple[str, ...] = (),
              unprivileged: bool = False) -> BlockMount:
        """Mount it on a fresh target directory holding `names` (empty files) under `scratch`; `unprivileged`:
        in the seed's unprivileged mode (ours only)."""
        if unprivileged and self.kind == "vmware":
            raise ValueError(f"{self.name} has no unprivileged mode")
        entries, mnt = scratch / "target", scratch / "mnt"
        for d in (entries, mnt):
            d.mkdir(parents=True)
        for name in names:
            (entries / name).touch()
        target = VMWARE_TARGET if self.kind == "vmware" else entries
        m = BlockMount(self, mnt, target, entries, max_threads)
        log = scratch / f"{self.name}.log"
        if self.kind == "vmware":
            m.pid = self._start_vmware(m, log)
        else:
            argv = ["--target", str(target), "--design", self.kind, "--max-threads", str(max_threads), "-f",
                    *(["--unprivileged"] if unprivileged else []), str(mnt)]
            m.pid = mounts.start_fuse([sys.executable, *argv], mnt, log=log,
                                      spawn=lambda _, out: FORKS.spawn("vfslab.impl.block.main:main", argv, out)).pid
        return m

    def _start_vmware(self, m: BlockMount, log: Path) -> int:
        # libfuse's own cap (10) is left to libfuse, so that its default is what runs
        cap = f"max_threads={m.max_threads}," if m.max_threads != LIBFUSE_MAX_THREADS else ""
        VMWARE_TARGET.mkdir(exist_ok=True)
        argv = [sys.executable, namespace.__file__, str(m.entries), str(VMWARE_TARGET), "--",
                str(vmware_binary()), "-f", "-o", f"{cap}default_permissions,allow_other", "{fd}"]
        return mounts.start_fuse_on_fd(argv, m.path, "vmware-vmblock-fuse", "default_permissions,allow_other",
                                       log).pid


#: ours per design (the default design plain `vmblock-fuse`), then Debian's
SUBJECTS = (*(VMBlockSubject("vmblock-fuse" if d == DESIGNS[0] else f"vmblock-fuse-{d}", d) for d in DESIGNS),
            VMBlockSubject("vmware-vmblock", "vmware"))
