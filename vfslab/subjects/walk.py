"""The abstract state of a real tree: a walk that never follows a symlink.

Everything is opened relative to the directory's fd (O_NOFOLLOW), so no path is walked twice and nothing
resolves outside the tree; this walk runs after every step of every check, so it is kept lean.
"""

from __future__ import annotations

import errno
import os
import stat as st
from collections.abc import Iterator
from pathlib import Path

from vfslab.model.state import Entry, State, digest, shown_xattr
from vfslab.subjects.driver import stat_entry

OPAQUE = "trusted.overlay.opaque"
REDIRECT = "trusted.overlay.redirect"
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY


def _xattrs(fd: int, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """The xattrs a state shows of an open file (`shown_xattr`), and those named in `wanted` (none where xattrs are
    not supported)."""
    try:
        names = os.listxattr(fd)
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            return {}
        raise
    return {n: os.getxattr(fd, n) for n in names if shown_xattr(n) or n in wanted}


def _read(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


#: far beyond any tree a check builds: a mount that shows more shows something outside its layers
MAX_ENTRIES = 1000
MAX_DEPTH = 12
MAX_FILE = 1 << 22


class Unbounded(Exception):
    """The tree is larger or deeper than any the checks build (a symlink followed out of a layer, say)."""


def _walk(root: Path, wanted: tuple[str, ...] = ()) -> Iterator[tuple[str, Entry, dict[str, bytes]]]:
    """(relative path, entry, xattrs) for the root (as ".") and everything below it, in sorted order."""
    seen = 0

    def entry(s: os.stat_result, fd: int | None, target: str | None) -> tuple[Entry, dict[str, bytes]]:
        e = stat_entry(s)
        xattrs = _xattrs(fd, wanted) if fd is not None else {}
        data = digest(_read(fd)) if e.kind == "file" else None
        shown = tuple(sorted((k, v) for k, v in xattrs.items() if shown_xattr(k)))
        return Entry(e.kind, e.mode, e.uid, e.gid, e.nlink, e.size, data, target, shown, e.ino), xattrs

    def visit(dfd: int, rel: str) -> Iterator[tuple[str, Entry, dict[str, bytes]]]:
        nonlocal seen
        if rel.count("/") >= MAX_DEPTH:
            raise Unbounded(f"{rel} is deeper than {MAX_DEPTH} levels")
        for name in sorted(os.listdir(dfd)):
            path = f"{rel}/{name}" if rel else name
            seen += 1
            if seen > MAX_ENTRIES:
                raise Unbounded(f"more than {MAX_ENTRIES} entries (at {path})")
            s = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if s.st_size > MAX_FILE and st.S_ISREG(s.st_mode):
                raise Unbounded(f"{path}, a file of {s.st_size} bytes")
            if st.S_ISLNK(s.st_mode):  # no user xattrs on a symlink: the VFS refuses them
                yield path, *entry(s, None, os.readlink(name, dir_fd=dfd))
            elif st.S_ISREG(s.st_mode) or st.S_ISDIR(s.st_mode):
                fd = os.open(name, _DIR if st.S_ISDIR(s.st_mode) else _FILE, dir_fd=dfd)
                try:
                    yield path, *entry(s, fd, None)
                    if st.S_ISDIR(s.st_mode):
                        yield from visit(fd, path)
                finally:
                    os.close(fd)
            else:
                yield path, *entry(s, None, None)

    rfd = os.open(root, _DIR)
    try:
        yield ".", *entry(os.fstat(rfd), rfd, None)
        yield from visit(rfd, "")
    finally:
        os.close(rfd)


def union_state(root: Path) -> State:
    """What a user sees through the mount (docs/design.md, "Abstract state")."""
    return {path: e for path, e, _ in _walk(root)}


def disk_state(layer: Path) -> State:
    """A layer as it lies on disk, in overlayfs's format: whiteouts, opaque and redirect markers."""
    out: State = {}
    for path, e, marks in _walk(layer, (OPAQUE, REDIRECT)):
        if path == ".":
            continue
        if e.kind == "whiteout":
            out[path] = Entry("whiteout", 0, e.uid, e.gid, None, None, None, None)
            continue
        out[path] = Entry(e.kind, e.mode, e.uid, e.gid, None, e.size, e.digest, e.target, e.xattrs, None,
                          opaque=marks.get(OPAQUE) == b"y",
                          redirect=marks[REDIRECT].decode() if REDIRECT in marks else None)
    return out
