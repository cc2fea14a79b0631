"""What a default run must reach: every rule of every family fired and every edge of its limits met, on some
subject; the exceptions, each with its reason, are listed here and nowhere else.

A rule of the seed's own design that no real system implements (union mounts' fallthrus) is `DESIGN_ONLY`: it must
fire on the model, in its program scenarios, and is marked so in reports. A rule no default run can fire on this
bench at all is `UNREACHED`, with why; firing one is a finding too (the exception is stale). A rule that fires only on
what no program asks for (the kernel dropping an inode from memory) is `BY_CHANCE`: a run need not fire it, and may.
`blind()` is what the guard test and the reports ask.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vfslab.check.results import Record
from vfslab.subjects.model import ModelSubject

#: the subject that is the model itself: what fires there alone proves the model, not a file system
MODEL_SUBJECT = ModelSubject.name

DESIGN_ONLY: dict[str, str] = {
    "union.lookup.fallthru": "union mounts' fallthrus: no real union file system writes them",
    "union.readdir.fallthru": "union mounts' readdir writes fallthrus: no real union file system does",
    "union.lookup.dir-copyup": "union mounts copy directories up during lookup: overlayfs and its peers do not",
    "union.fd.stale": "union mounts leave an fd on the lower copy: every real peer follows the copy-up",
}

UNREACHED: dict[str, str] = {}

BY_CHANCE: dict[str, str] = {
    "union.handle.evicted": "a FUSE mount's kernel dropping a handle's inode under memory pressure; the caches "
    "dropped before each step reach it (tests/test_file_handles.py)",
}


@dataclass(frozen=True)
class Blind:
    """What a run did not reach: rules and edges no subject hit, design-only rules the model did not fire, and
    exceptions that no longer hold (an unreached rule that fired)."""

    rules: tuple[str, ...] = ()
    edges: tuple[str, ...] = ()
    design: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rules or self.edges or self.design or self.stale)


def blind(records: Iterable[Record]) -> Blind:
    """What `records` (a run's, all families) left unreached."""
    counted: set[str] = set()
    on_subject: set[str] = set()
    on_model: set[str] = set()
    edges: set[str] = set()
    for r in records:
        counted |= r.coverage.keys()
        edges |= r.edges.keys()
        fired = {k for k, n in (r.coverage | r.edges).items() if n}
        (on_model if r.subject == MODEL_SUBJECT else on_subject).update(fired)
    return Blind(
        rules=tuple(sorted(counted - on_subject - DESIGN_ONLY.keys() - UNREACHED.keys() - BY_CHANCE.keys())),
        edges=tuple(sorted(edges - on_subject - UNREACHED.keys())),
        design=tuple(sorted(r for r in DESIGN_ONLY if r in counted and r not in on_model | on_subject)),
        stale=tuple(sorted(r for r in UNREACHED if r in on_model | on_subject)),
    )
