"""Profiles of the routing model: where the router (upstream's choices) and the kernel, serving the same pool
through a FUSE mount, legitimately differ."""

from __future__ import annotations

import errno as E
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    #: the errno of an empty path, and the rule that says so
    empty_path: int
    empty_rule: str
    #: the union-model profiles of a plain file system that decide what a call does to a name: the kernel's
    #: own (tmpfs) and a pool's
    kernel_fs: str = "posix"
    pool_fs: str = "posix-no-xattr"


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("pmemfile", "pmemfile's router, in the process: upstream answers an empty path with ENOTDIR.",
                E.ENOTDIR, "pmem.path.empty"),
        Profile("kernel", "the kernel routing to a pool it mounts through FUSE (pmem-fuse): POSIX's ENOENT for an "
                "empty path.", E.ENOENT, "pmem.path.empty-posix"),
    )
}


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown pmem profile {name!r}; known: {', '.join(PROFILES)}") from None
