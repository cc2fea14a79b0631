"""Systems under test, by name."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from vfslab.subjects.base import Capabilities, Mounted, Subject
from vfslab.subjects.files import SHIPPED, load_all
from vfslab.subjects.model import ModelSubject
from vfslab.subjects.overlayfs import UnionFuse
from vfslab.subjects.ovlfs import SUBJECTS as OVLFS
from vfslab.subjects.pmem import PmemFuse, PmemRouter, Tmpfs
from vfslab.subjects.simulator import Simulator
from vfslab.subjects.storage import SUBJECTS as STORAGES
from vfslab.subjects.vmblock import SUBJECTS as VMBLOCKS

__all__ = ["SUBJECTS", "Capabilities", "Mounted", "Subject", "get", "register", "registered"]

SUBJECTS: dict[str, Subject] = {s.name: s for s in (ModelSubject(), *load_all([], [SHIPPED]), UnionFuse(),
                                                  *OVLFS, PmemFuse(), PmemRouter(), Tmpfs(), *VMBLOCKS, Simulator(),
                                                  *STORAGES)}


def get(name: str) -> Subject:
    """The subject called `name`; KeyError naming the known subjects otherwise."""
    try:
        return SUBJECTS[name]
    except KeyError:
        raise KeyError(f"unknown subject {name!r} (known: {', '.join(sorted(SUBJECTS))})") from None


@contextlib.contextmanager
def registered(subjects: list[Subject]) -> Iterator[tuple[str, ...]]:
    """Make `subjects` known while the block runs (a command's subject files); their names."""
    names = []
    try:
        for subject in subjects:
            register(subject)
            names.append(subject.name)
        yield tuple(names)
    finally:
        for name in names:
            del SUBJECTS[name]


def register(subject: Subject) -> None:
    """Make `subject` known by its name, beside the shipped ones (a name already taken is refused)."""
    if subject.name in SUBJECTS:
        raise ValueError(f"a subject called {subject.name!r} is already known")
    SUBJECTS[subject.name] = subject
