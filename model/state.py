"""The abstract state of a file tree, as both the models and a walk of a real subject produce it.

Timestamps, st_dev and raw inode numbers are left out: `ino` is an identity, compared only for
sameness (hard-link groups, stability across copy-up and remount), never by value.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from vfslab.model.acl import ACCESS, DEFAULT


@dataclass(frozen=True)
class Entry:
    kind: str  # "file" | "dir" | "symlink" | "whiteout" | "other"
    mode: int  # permission bits (& 0o7777)
    uid: int
    gid: int
    nlink: int | None
    size: int | None  # None for directories (their size is the file system's business)
    digest: str | None  # content hash of a file
    target: str | None  # a symlink's target
    xattrs: tuple[tuple[str, bytes], ...] = ()  # the xattrs that matter (`shown_xattr`)
    #: an identity, checked as a bijection, never by value: a model's inode number, a real file's (st_dev, st_ino)
    ino: object = field(default=None, compare=False)
    opaque: bool = False  # on-disk only: trusted.overlay.opaque = "y"
    redirect: str | None = None  # on-disk only: trusted.overlay.redirect


def shown_xattr(name: str) -> bool:
    """An xattr a state holds: user.* and the POSIX ACLs (the file system's own markers are shown apart)."""
    return name.startswith("user.") or name in (ACCESS, DEFAULT)


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


State = dict[str, Entry]
