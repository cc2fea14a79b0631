"""How to start a vmblock: ours (`impl/block`, per design) or Debian's vmware-vmblock-fuse, whose target
directory is fixed at /tmp/VMwareDnD. `make` unpacks Debian's binary into /var/cache/vfslab (it is never
installed, so no VMware service starts)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from vfslab.impl.block.fs import DESIGNS

VMWARE_TARGET = Path("/tmp/VMwareDnD")
LIBFUSE_MAX_THREADS = 10  # FUSE_LOOP_MT_DEF_MAX_THREADS since libfuse 3.12
VMWARE_CACHE = Path("/var/cache/vfslab/open-vm-tools/usr/bin/vmware-vmblock-fuse")
#: our designs, and Debian's program as one more "design"
KINDS = (*DESIGNS, "vmware")


def vmware_binary() -> Path | None:
    """$VFSLAB_VMWARE_VMBLOCK, the unpacked Debian binary, or one on PATH."""
    for candidate in (os.environ.get("VFSLAB_VMWARE_VMBLOCK"), VMWARE_CACHE, shutil.which("vmware-vmblock-fuse")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def available(kind: str) -> tuple[bool, str]:
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        return False, "needs root and /dev/fuse"
    if kind == "vmware" and vmware_binary() is None:
        return False, f"vmware-vmblock-fuse not found (make fetches it into {VMWARE_CACHE.parent.parent.parent})"
    return True, ""


def target_of(kind: str, scratch: Path) -> Path:
    return VMWARE_TARGET if kind == "vmware" else scratch / "target"


def argv(kind: str, target: Path, mnt: Path, max_threads: int) -> list[str]:
    """The command that serves a vmblock of `kind` at `mnt` in the foreground."""
    if kind == "vmware":
        # libfuse's own default cap (10) is left to libfuse, so that the default itself is what runs
        cap = f"max_threads={max_threads}," if max_threads != LIBFUSE_MAX_THREADS else ""
        return [str(vmware_binary()), "-f", "-o", f"{cap}default_permissions,allow_other", str(mnt)]
    return [sys.executable, "-m", "vfslab.impl.block.main", "--target", str(target), "--design", kind,
            "--max-threads", str(max_threads), "-f", str(mnt)]
