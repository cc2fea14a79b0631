"""Initial lower layers: what a generated example starts from, and how it is built on disk.

A layer is a tuple of `Node`s in creation order (parents before children, a hard link after the
file it names). The same `Layers` value seeds the model and is written to disk for a real subject.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

FILE, DIR, SYMLINK, HARDLINK = "file", "dir", "symlink", "hardlink"


@dataclass(frozen=True)
class Node:
    """One entry of a layer. `target` is a symlink's target, or the path a hard link names."""

    path: str
    kind: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    target: str = ""
    xattrs: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Layers:
    """Lower layers, topmost first (the order of overlayfs's `lowerdir=L1:L2`)."""

    lowers: tuple[tuple[Node, ...], ...] = field(default_factory=lambda: ((),))

    def to_json(self) -> list:
        return [[_node_json(n) for n in layer] for layer in self.lowers]

    @classmethod
    def from_json(cls, data: list) -> Layers:
        return cls(tuple(tuple(_node_from_json(n) for n in layer) for layer in data))


def _node_json(n: Node) -> dict:
    out: dict = {"path": n.path, "kind": n.kind}
    if n.kind != HARDLINK:
        out.update(mode=oct(n.mode), uid=n.uid, gid=n.gid)
    if n.kind == FILE:
        out["data"] = n.data.decode("latin-1")
    if n.target:
        out["target"] = n.target
    if n.xattrs:
        out["xattrs"] = {k: v.decode("latin-1") for k, v in n.xattrs}
    return out


def _node_from_json(d: dict) -> Node:
    return Node(
        path=d["path"],
        kind=d["kind"],
        mode=int(d.get("mode", "0o644"), 8),
        uid=d.get("uid", 0),
        gid=d.get("gid", 0),
        data=d.get("data", "").encode("latin-1"),
        target=d.get("target", ""),
        xattrs=tuple((k, v.encode("latin-1")) for k, v in d.get("xattrs", {}).items()),
    )


def build_layer(nodes: tuple[Node, ...], root: Path) -> None:
    """Write one layer under `root` (which must exist). Modes are applied last, deepest first,
    so that a read-only directory does not stop its own children from being created."""
    dirs: list[Node] = []
    for n in nodes:
        p = root / n.path
        if n.kind == DIR:
            p.mkdir()
            dirs.append(n)
        elif n.kind == FILE:
            p.write_bytes(n.data)
        elif n.kind == SYMLINK:
            os.symlink(n.target, p)
        elif n.kind == HARDLINK:
            os.link(root / n.target, p, follow_symlinks=False)
            continue
        else:
            raise ValueError(f"unknown node kind {n.kind!r} at {n.path}")
        for name, value in n.xattrs:
            os.setxattr(p, name, value, follow_symlinks=False)
        os.chown(p, n.uid, n.gid, follow_symlinks=False)
        if n.kind == FILE:
            os.chmod(p, n.mode)
    for n in sorted(dirs, key=lambda n: -n.path.count("/")):
        os.chmod(root / n.path, n.mode)
