"""Systems under test, by name."""

from __future__ import annotations

from vfslab.subjects.base import Mounted, Subject
from vfslab.subjects.model import ModelSubject
from vfslab.subjects.overlayfs import FuseOverlayfs, KernelOverlay, UnionfsFuse, UnionFuse
from vfslab.subjects.pmem import PmemFuse, PmemRouter, Tmpfs
from vfslab.subjects.simulator import Simulator
from vfslab.subjects.vmblock import SUBJECTS as VMBLOCKS

__all__ = ["SUBJECTS", "Mounted", "Subject", "get"]

SUBJECTS: dict[str, Subject] = {s.name: s for s in (ModelSubject(), KernelOverlay(), UnionFuse(), FuseOverlayfs(),
                                                  UnionfsFuse(), PmemFuse(), PmemRouter(), Tmpfs(), *VMBLOCKS,
                                                  Simulator())}


def get(name: str) -> Subject:
    """The subject called `name`; KeyError naming the known subjects otherwise."""
    try:
        return SUBJECTS[name]
    except KeyError:
        raise KeyError(f"unknown subject {name!r} (known: {', '.join(sorted(SUBJECTS))})") from None
