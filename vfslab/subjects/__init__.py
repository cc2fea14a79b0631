"""Systems under test, by name."""

from __future__ import annotations

from vfslab.subjects.base import Capabilities, Mounted, Subject
from vfslab.subjects.model import ModelSubject
from vfslab.subjects.overlayfs import FuseOverlayfs, KernelOverlay, UnionfsFuse, UnionFuse
from vfslab.subjects.pmem import PmemFuse, PmemRouter, Tmpfs
from vfslab.subjects.simulator import Simulator
from vfslab.subjects.vmblock import SUBJECTS as VMBLOCKS

__all__ = ["SUBJECTS", "Capabilities", "Mounted", "Subject", "get", "register"]

SUBJECTS: dict[str, Subject] = {s.name: s for s in (ModelSubject(), KernelOverlay(), UnionFuse(), FuseOverlayfs(),
                                                  UnionfsFuse(), PmemFuse(), PmemRouter(), Tmpfs(), *VMBLOCKS,
                                                  Simulator())}


def get(name: str) -> Subject:
    """The subject called `name`; KeyError naming the known subjects otherwise."""
    try:
        return SUBJECTS[name]
    except KeyError:
        raise KeyError(f"unknown subject {name!r} (known: {', '.join(sorted(SUBJECTS))})") from None


def register(subject: Subject) -> None:
    """Make `subject` known by its name, beside the shipped ones (a name already taken is refused)."""
    if subject.name in SUBJECTS:
        raise ValueError(f"a subject called {subject.name!r} is already known")
    SUBJECTS[subject.name] = subject
