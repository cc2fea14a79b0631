"""ovlfs subjects (`impl/ovlfs`): one per storage method, `ovlfs-dir`, `ovlfs-file` and `ovlfs-pmem`.

A union subject of one lower layer: the base is `lower0`, and the storage takes the upper layer's place, made fresh
with the method's mkfs at a set-up's first mount, at `storage` beside the layers (the upper directory the union
layout makes stays empty: the storage is not in overlayfs's format, so there is no upper layer to compare). A
remount unmounts (Sync, Release) and mounts again over the same storage: what is compared after it is what
persisted. There is no push: the storage cannot become a lower layer.
"""

from __future__ import annotations

import sys

from vfslab.subjects import mounts
from vfslab.subjects.base import Capabilities
from vfslab.subjects.forkserver import FORKS
from vfslab.subjects.overlayfs import UnionFuse, UnionMount

MAIN = "vfslab.impl.ovlfs.main"
STORAGE = "storage"


class Ovlfs(UnionFuse):
    """ovlfs over `scheme:` storage. A subclass of union-fuse's subject for what our daemons share: run by this
    interpreter from the fork server, available where FUSE is, and vfslab's and libfuse's version."""

    profiles = ("ovlfs",)
    capabilities = Capabilities(("union",), max_layers=1, push=False, can_hang=True)
    uses_workdir = False

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.name = f"ovlfs-{scheme}"

    def storage(self, m: UnionMount) -> str:
        """The `--storage` spec of a mount's storage."""
        return f"{self.scheme}:{m.scratch / STORAGE}"

    def argv(self, m: UnionMount) -> list[str]:
        return [sys.executable, "-m", MAIN, "-f", "--base", str(m.lowers[0]), "--storage", self.storage(m),
                str(m.path)]

    def mount(self, m: UnionMount) -> int:
        from vfslab.impl.ovlfs.storage import mkfs

        if not (m.scratch / STORAGE).exists():  # a set-up's first mount: fresh storage; a remount keeps it
            mkfs(self.storage(m))
        argv = self.argv(m)
        return mounts.start_fuse(argv, m.path, log=m.scratch / f"{self.name}.log",
                                 spawn=lambda _, log: FORKS.spawn(f"{MAIN}:main", argv[3:], log)).pid


SUBJECTS = tuple(Ovlfs(scheme) for scheme in ("dir", "file", "pmem"))
