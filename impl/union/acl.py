"""POSIX ACLs as overlayfs gives them to a new entry: what a directory's default ACL makes of a new inode.

An entry made straight in its upper directory gets them from the upper file system itself (it applies the
directory's default ACL, the daemon's umask being 0). One built in the work directory (an opaque directory, anything
made over a whiteout) would inherit nothing there, so it is given them here, as overlayfs gives them from the overlay
directory (`ovl_create_object`, `posix_acl_create`). The xattr format is the kernel's (`posix_acl_xattr.h`): a
version, then (tag, permissions, id) entries.
"""

from __future__ import annotations

import errno as E
import os
import struct

ACCESS, DEFAULT = "system.posix_acl_access", "system.posix_acl_default"
#: file systems that read ACLs but set none (no set_acl: read-only images); overlayfs refuses to change an ACL of a
#: lower file on one (EOPNOTSUPP) before it would copy the file up
NO_SET_ACL = frozenset({"erofs", "squashfs", "iso9660", "cramfs", "romfs"})
_VERSION = 2
_HEADER, _ENTRY = struct.Struct("<I"), struct.Struct("<HHI")
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def default_acl(path: str) -> bytes | None:
    """A directory's default ACL (a path the l*xattr calls take), or None."""
    try:
        return os.getxattr(path, DEFAULT, follow_symlinks=False)
    except OSError as e:
        if e.errno in (E.ENODATA, E.EOPNOTSUPP):
            return None
        raise


def inherit(default: bytes, mode: int) -> tuple[int, bytes | None]:
    """posix_acl_create: a new inode's mode, made from its requested `mode` and its directory's default ACL, and
    its access ACL (None where the mode says all the ACL would)."""
    (version,) = _HEADER.unpack_from(default)
    if version != _VERSION or (len(default) - _HEADER.size) % _ENTRY.size:
        raise OSError(E.EIO, "malformed default ACL")
    entries = [list(_ENTRY.unpack_from(default, at)) for at in range(_HEADER.size, len(default), _ENTRY.size)]
    tags = {entry[0]: entry for entry in entries if entry[0] in (USER_OBJ, GROUP_OBJ, MASK, OTHER)}
    tags[USER_OBJ][1] &= (mode >> 6) & 7
    tags[OTHER][1] &= mode & 7
    group = tags.get(MASK, tags[GROUP_OBJ])  # with a mask, the group bits are the mask's
    group[1] &= (mode >> 3) & 7
    mode = (mode & ~0o777) | tags[USER_OBJ][1] << 6 | group[1] << 3 | tags[OTHER][1]
    extended = any(tag in (USER, GROUP, MASK) for tag, _, _ in entries)
    acl = _HEADER.pack(_VERSION) + b"".join(_ENTRY.pack(*entry) for entry in entries) if extended else None
    return mode, acl
