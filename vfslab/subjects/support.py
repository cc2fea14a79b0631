"""What a mounted union subject does of the calls file systems differ in: fallocate's kinds, O_TMPFILE, ACLs below.

Kernel overlayfs hands fallocate to the upper layer's file system, whose support differs (ext4 does every kind,
tmpfs only allocation and punching holes), so the model is told what that file system does, found by trying each
kind on a scratch file beside the upper layer (never in it). A FUSE mount passes on less whatever its daemon
does: the kernel's FUSE client refuses collapse and insert ranges itself (docs/facts.md, FUSE 9).

Whether the mount makes unnamed files (O_TMPFILE) is the mount's own: overlayfs makes them where its upper file
system does, a FUSE daemon where it serves the request (libfuse has it from 3.17). It is found by opening one in
the mount's root, which leaves nothing behind: the file has no name and goes with its close.
"""

from __future__ import annotations

import contextlib
import errno as E
import os
from pathlib import Path

from vfslab.impl.union.acl import NO_SET_ACL
from vfslab.impl.union.disk import fallocate
from vfslab.model.union.ops import EVERY_KIND, FALLOC_KINDS, KEEP_SIZE, PUNCH, FallocSupport
from vfslab.subjects.mounts import find_mount, find_mounts

#: what the kernel's FUSE client passes to a daemon (fuse_file_fallocate)
FUSE_KINDS = frozenset({"allocate", "punch-hole", "zero-range"})
_PROBE = ".vfslab-fallocate-probe"
_BLOCKS = 3


def fallocate_support(mounted, fuse: bool | None = None) -> FallocSupport:
    """For a mounted union subject with `upper` and `path` (a FUSE mount if `fuse`; looked up if None); every kind
    where it has no upper layer (the model)."""
    if mounted.upper is None:
        return EVERY_KIND
    found = _file_system(Path(mounted.upper).parent)
    if is_fuse(mounted) if fuse is None else fuse:
        return FallocSupport(found.kinds & FUSE_KINDS, found.block)
    return found


def is_fuse(mounted) -> bool:
    """Whether a mounted subject (with `path`) is a FUSE mount."""
    info = None if mounted.path is None else find_mount(Path(mounted.path))
    return info is not None and info.is_fuse


#: what each file system (by st_dev) was found to do: a check mounts a subject per example, all on one
_FOUND: dict[int, FallocSupport] = {}


def _file_system(where: Path) -> FallocSupport:
    dev = os.stat(where).st_dev
    if dev not in _FOUND:
        _FOUND[dev] = _probe(str(where))
    return _FOUND[dev]


def _probe(where: str) -> FallocSupport:
    """Try each kind once on a file of a few blocks in `where`."""
    block = os.statvfs(where).f_bsize
    kinds = set()
    path = os.path.join(where, _PROBE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        for name, kind in FALLOC_KINDS.items():
            os.ftruncate(fd, 0)
            os.pwrite(fd, b"p" * block * _BLOCKS, 0)
            try:
                fallocate(fd, kind | (KEEP_SIZE if kind == PUNCH else 0), block, block)
            except OSError as e:
                if e.errno not in (E.EOPNOTSUPP, E.ENOSYS):
                    raise
                continue
            kinds.add(name)
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return FallocSupport(frozenset(kinds), block)


def tmpfile_support(mounted) -> bool:
    """Whether a mounted subject (with `path`) makes O_TMPFILE files; True where it has no mount (the model)."""
    if mounted.path is None:
        return True
    try:
        os.close(os.open(mounted.path, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    except OSError as e:
        if e.errno in (E.EOPNOTSUPP, E.EISDIR, E.ENOSYS):
            return False
        raise
    return True


def lower_acls(mounted) -> tuple[bool, ...]:
    """Whether each lower layer of a mounted union subject (`lowers`, topmost first) is on a file system that sets
    POSIX ACLs (a read-only image does not); () where it has none (the model, a plain file system)."""
    # a layer that is no mount point is the scratch's file system
    return tuple(info is None or info.fstype not in NO_SET_ACL
                 for info in find_mounts([Path(p) for p in getattr(mounted, "lowers", ())]))
