"""POSIX ACLs as the VFS keeps them (fs/posix_acl.c): an inode's access ACL beside its mode bits, a directory's
default ACL for what is made in it.

An ACL travels as the kernel's xattr value (`system.posix_acl_access` / `_default`, linux/posix_acl_xattr.h: a
version, then (tag, permissions, id) entries) and is written in programs in getfacl's short form, entries in the
order they are sent: `u::rwx,u:1000:r-x,g::r-x,m::rwx,o::---`. The word `truncated` stands for a value that is not
an ACL at all (an entry cut short).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

ACCESS, DEFAULT = "system.posix_acl_access", "system.posix_acl_default"
#: which ACL of an inode an operation names, by the word programs use
KINDS = {"access": ACCESS, "default": DEFAULT}
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
#: the id of an entry that names no one (the owner's, the owning group's, the mask and other)
UNDEFINED_ID = 0xFFFFFFFF
NOT_AN_ACL = "truncated"

_VERSION = 2
_HEADER, _ENTRY = struct.Struct("<I"), struct.Struct("<HHI")
_TAGS = {"u": (USER_OBJ, USER), "g": (GROUP_OBJ, GROUP), "m": (MASK, None), "o": (OTHER, None)}
_LETTERS = {tag: letter for letter, tags in _TAGS.items() for tag in tags if tag}
_NAMED = (USER, GROUP)
_ENTRY_TEXT = re.compile(r"([ugmo]):(\d*):([r-][w-][x-])")

AclEntry = tuple[int, int, int]  # (tag, permissions, id)


def _perm_text(perm: int) -> str:
    return "".join(c if perm & bit else "-" for c, bit in (("r", 4), ("w", 2), ("x", 1)))


def to_xattr(text: str) -> bytes:
    """The xattr value of an ACL in short text form; ValueError for text that is none."""
    if text == NOT_AN_ACL:
        return _HEADER.pack(_VERSION) + _ENTRY.pack(USER_OBJ, 7, UNDEFINED_ID)[:5]
    entries = []
    for part in text.split(","):
        m = _ENTRY_TEXT.fullmatch(part)
        base, named = _TAGS[m[1]] if m else (None, None)
        if not m or (m[2] and named is None):
            raise ValueError(f"not an ACL entry: {part!r} in {text!r} (say e.g. u::rwx,u:1000:r-x,g::r-x,m::rwx,o::---;"
                             " only u: and g: name an id)")
        bits = sum(bit for c, bit in zip(m[3], (4, 2, 1), strict=True) if c != "-")
        entries.append((named, bits, int(m[2])) if m[2] else (base, bits, UNDEFINED_ID))
    return pack(entries)


def pack(entries: list[AclEntry]) -> bytes:
    return _HEADER.pack(_VERSION) + b"".join(_ENTRY.pack(*e) for e in entries)


def parse(value: bytes) -> list[AclEntry] | None:
    """The entries of an xattr value, or None where it is not an ACL (posix_acl_from_xattr's EINVAL)."""
    if len(value) < _HEADER.size or (len(value) - _HEADER.size) % _ENTRY.size:
        return None
    if _HEADER.unpack_from(value)[0] != _VERSION:
        return None
    entries = [_ENTRY.unpack_from(value, at) for at in range(_HEADER.size, len(value), _ENTRY.size)]
    if any(tag not in _LETTERS for tag, _, _ in entries):
        return None
    return [(tag, perm, who if tag in _NAMED else UNDEFINED_ID) for tag, perm, who in entries]


def to_text(value: bytes) -> str:
    entries = parse(value)
    if entries is None:
        return NOT_AN_ACL
    return ",".join(f"{_LETTERS[tag]}:{who if tag in _NAMED else ''}:{_perm_text(perm)}"
                    for tag, perm, who in entries)


def show_xattrs(xattrs: tuple[tuple[str, bytes], ...]) -> str:
    """xattrs as a person reads them: ACLs in their text form."""
    return ", ".join(f"{name}={to_text(value) if name in (ACCESS, DEFAULT) else value!r}" for name, value in xattrs)


def valid(entries: list[AclEntry]) -> bool:
    """posix_acl_valid: each tag in order, the owner's, owning group's and other's once, named entries by
    increasing id, and a mask where there is a named entry."""
    if any(perm & ~7 for _, perm, _ in entries):
        return False
    tags = [tag for tag, _, _ in entries]
    if tags != sorted(tags) or any(tags.count(t) != 1 for t in (USER_OBJ, GROUP_OBJ, OTHER)) or tags.count(MASK) > 1:
        return False
    for named in _NAMED:
        ids = [who for tag, _, who in entries if tag == named]
        if ids != sorted(set(ids)):
            return False
    return MASK in tags or not any(t in _NAMED for t in tags)


def equivalent(entries: list[AclEntry]) -> bool:
    """The mode bits say all of it: the three base entries only (posix_acl_equiv_mode)."""
    return len(entries) == 3


def _base(entries: list[AclEntry]) -> dict[int, int]:
    """Where the mode's owner, group and other bits live: the owner's entry, the mask (else the owning group's),
    other's, by index."""
    at = {tag: i for i, (tag, _, _) in enumerate(entries)}
    return {6: at[USER_OBJ], 3: at.get(MASK, at[GROUP_OBJ]), 0: at[OTHER]}


def mode_bits(entries: list[AclEntry]) -> int:
    """The permission bits an access ACL sets (posix_acl_equiv_mode / posix_acl_update_mode)."""
    return sum(entries[i][1] << shift for shift, i in _base(entries).items())


def chmod(value: bytes, mode: int) -> bytes:
    """posix_acl_chmod: the ACL's owner, mask (or owning group) and other entries take the new mode's bits."""
    entries = parse(value)
    for shift, i in _base(entries).items():
        tag, _, who = entries[i]
        entries[i] = (tag, (mode >> shift) & 7, who)
    return pack(entries)


def create(default: bytes, mode: int) -> tuple[int, bytes | None]:
    """posix_acl_create: a new inode's mode, from the mode asked for and its directory's default ACL (no umask),
    and its access ACL (None where the mode says all of it)."""
    entries = parse(default)
    for shift, i in _base(entries).items():
        tag, perm, who = entries[i]
        entries[i] = (tag, perm & (mode >> shift) & 7, who)
    mode = (mode & ~0o777) | mode_bits(entries)
    return mode, None if equivalent(entries) else pack(entries)


def permits(value: bytes, uid: int, gid: int, in_group: Callable[[int], bool], want: int) -> bool:
    """posix_acl_permission, for a caller other than the owner of a file of group `gid`: its named user entry,
    else the owning and named groups it is in (any that grants), else other; what the first two grant is limited by
    the mask."""
    entries = parse(value)
    mask = next((perm for tag, perm, _ in entries if tag == MASK), 7)
    found = False
    for tag, perm, who in entries:
        if tag == USER and who == uid:
            return perm & mask & want == want
        if tag in (GROUP_OBJ, GROUP) and in_group(gid if tag == GROUP_OBJ else who):
            found = True
            if perm & want == want:
                return perm & mask & want == want
        if tag == OTHER:
            return not found and perm & want == want
    return False
