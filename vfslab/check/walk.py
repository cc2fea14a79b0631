"""The abstract state of a real tree: a walk that never follows a symlink."""

from __future__ import annotations

import os
import stat as st
from pathlib import Path

from vfslab.check.driver import stat_entry
from vfslab.model.state import Entry, State, digest

OPAQUE = "trusted.overlay.opaque"
REDIRECT = "trusted.overlay.redirect"


def _xattrs(path: str, wanted: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The user.* xattrs of `path`, and those named in `wanted`, from one listxattr."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names if n.startswith("user.") or n in wanted}


def _entry(path: str, s: os.stat_result, xattrs: dict[str, bytes]) -> Entry:
    e = stat_entry(s)
    data = target = None
    if e.kind == "file":
        with open(path, "rb") as f:
            data = digest(f.read())
    elif e.kind == "symlink":
        target = os.readlink(path)
    user = tuple(sorted((k, v) for k, v in xattrs.items() if k.startswith("user.")))
    return Entry(e.kind, e.mode, e.uid, e.gid, e.nlink, e.size, data, target, user, e.ino)


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
    out: State = {".": _entry(str(root), os.lstat(root), _xattrs(str(root)))}
    for rel, full, s in _children(root):
        out[rel] = _entry(full, s, _xattrs(full))
    return out


def disk_state(layer: Path) -> State:
    """A layer as it lies on disk, in overlayfs's format: whiteouts, opaque and redirect markers."""
    out: State = {}
    for rel, full, s in _children(layer):
        if st.S_ISCHR(s.st_mode) and s.st_rdev == 0:
            out[rel] = Entry("whiteout", 0, s.st_uid, s.st_gid, None, None, None, None)
            continue
        marks = _xattrs(full, (OPAQUE, REDIRECT))
        e = _entry(full, s, marks)
        out[rel] = Entry(e.kind, e.mode, e.uid, e.gid, None, e.size, e.digest, e.target, e.xattrs, None,
                         opaque=marks.get(OPAQUE) == b"y",
                         redirect=marks[REDIRECT].decode() if REDIRECT in marks else None)
    return out
