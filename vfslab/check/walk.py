"""The abstract state of a real tree: a walk that never follows a symlink."""

from __future__ import annotations

import contextlib
import os
import stat as st
from pathlib import Path

from vfslab.check.driver import stat_entry
from vfslab.model.state import Entry, State, digest

OPAQUE = "trusted.overlay.opaque"
REDIRECT = "trusted.overlay.redirect"


def _user_xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names if n.startswith("user.")))


def _entry(path: str, s: os.stat_result) -> Entry:
    e = stat_entry(s)
    data = target = None
    if e.kind == "file":
        with open(path, "rb") as f:
            data = digest(f.read())
    elif e.kind == "symlink":
        target = os.readlink(path)
    return Entry(e.kind, e.mode, e.uid, e.gid, e.nlink, e.size, data, target, _user_xattrs(path), e.ino)


def _children(root: Path) -> list[tuple[str, str, os.stat_result]]:
    out = []

    def visit(rel: str) -> None:
        full = f"{root}/{rel}" if rel else str(root)
        for name in sorted(os.listdir(full)):
            r = f"{rel}/{name}" if rel else name
            s = os.lstat(f"{full}/{name}")
            out.append((r, f"{full}/{name}", s))
            if st.S_ISDIR(s.st_mode):
                visit(r)

    visit("")
    return out


def union_state(root: Path) -> State:
    """What a user sees through the mount (DESIGN.md abstract state)."""
    out: State = {".": _entry(str(root), os.lstat(root))}
    for rel, full, s in _children(root):
        out[rel] = _entry(full, s)
    return out


def disk_state(layer: Path) -> State:
    """A layer as it lies on disk, in overlayfs's format: whiteouts, opaque and redirect markers."""
    out: State = {}
    for rel, full, s in _children(layer):
        if st.S_ISCHR(s.st_mode) and s.st_rdev == 0:
            out[rel] = Entry("whiteout", 0, s.st_uid, s.st_gid, None, None, None, None)
            continue
        e = _entry(full, s)
        marks = {}
        if e.kind == "dir":
            for name in (OPAQUE, REDIRECT):
                with contextlib.suppress(OSError):
                    marks[name] = os.getxattr(full, name, follow_symlinks=False)
        out[rel] = Entry(e.kind, e.mode, e.uid, e.gid, None, e.size, e.digest, e.target, e.xattrs, None,
                         opaque=marks.get(OPAQUE) == b"y",
                         redirect=marks[REDIRECT].decode() if REDIRECT in marks else None)
    return out
