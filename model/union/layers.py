"""The layers as file systems: inodes and directory entries, exactly what lies on disk.

All layers share one inode table, so an inode number is unique across the stack and can serve as the
model's identity for st_ino. Layer 0 is the upper layer; layers 1.. are the lower layers, topmost first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vfslab.model.state import Entry, digest, shown_xattr

FILE, DIR, SYMLINK, WHITEOUT, FALLTHRU = "file", "dir", "symlink", "whiteout", "fallthru"

OPAQUE = "trusted.overlay.opaque"
REDIRECT = "trusted.overlay.redirect"


@dataclass
class Inode:
    ino: int
    kind: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    target: str = ""
    xattrs: dict[str, bytes] = field(default_factory=dict)
    entries: dict[str, int] = field(default_factory=dict)
    links: int = 0  # directory entries naming a non-directory (plus an index link, if any)
    origin: int | None = None  # the lower inode this one was copied up from

    @property
    def opaque(self) -> bool:
        return self.xattrs.get(OPAQUE) == b"y"

    @property
    def redirect(self) -> str | None:
        value = self.xattrs.get(REDIRECT)
        return value.decode() if value is not None else None

    def user_xattrs(self) -> tuple[tuple[str, bytes], ...]:
        return tuple(sorted((k, v) for k, v in self.xattrs.items() if k.startswith("user.")))

    def shown_xattrs(self) -> tuple[tuple[str, bytes], ...]:
        return tuple(sorted((k, v) for k, v in self.xattrs.items() if shown_xattr(k)))


class Store:
    """The inode table and the roots of the layers."""

    def __init__(self) -> None:
        self.inodes: dict[int, Inode] = {}
        self.roots: list[int] = []
        self._next = 1

    def new(self, kind: str, **attrs) -> Inode:
        inode = Inode(self._next, kind, **attrs)
        self.inodes[inode.ino] = inode
        self._next += 1
        return inode

    def __getitem__(self, ino: int) -> Inode:
        return self.inodes[ino]

    def add_layer_below(self) -> int:
        root = self.new(DIR, mode=0o755)
        self.roots.append(root.ino)
        return len(self.roots) - 1

    def link(self, parent: Inode, name: str, child: Inode) -> None:
        parent.entries[name] = child.ino
        if child.kind != DIR:
            child.links += 1

    def unlink(self, parent: Inode, name: str) -> None:
        child = self[parent.entries.pop(name)]
        if child.kind != DIR:
            child.links -= 1

    def nlink(self, inode: Inode) -> int:
        """The real link count of an inode within its layer."""
        if inode.kind == DIR:
            return 2 + sum(1 for ino in inode.entries.values() if self[ino].kind == DIR)
        return inode.links

    def walk_names(self, dir_ino: int, names: tuple[str, ...]) -> int | None:
        """Follow plain names inside one layer (no symlinks): the inode, or None."""
        ino = dir_ino
        for name in names:
            node = self[ino]
            if node.kind != DIR or name not in node.entries:
                return None
            ino = node.entries[name]
        return ino

    def snapshot(self, root: int) -> dict[str, Entry]:
        """One layer as it lies on disk, in the abstract form a walk of the real directory produces."""
        out: dict[str, Entry] = {}

        def visit(ino: int, path: str) -> None:
            node = self[ino]
            for name in sorted(node.entries):
                child = self[node.entries[name]]
                p = f"{path}/{name}" if path else name
                out[p] = entry(child, disk=True)
                if child.kind == DIR:
                    visit(child.ino, p)

        visit(root, "")
        return out


def entry(node: Inode, nlink: int | None = None, ino: int | None = None, disk: bool = False) -> Entry:
    """An inode in the abstract form: as the union shows it, or (`disk`) as it lies in its layer, with its
    overlayfs markers."""
    if node.kind == WHITEOUT:
        return Entry("whiteout", 0, node.uid, node.gid, None, None, None, None)
    return Entry(
        kind=node.kind,
        mode=node.mode,
        uid=node.uid,
        gid=node.gid,
        nlink=nlink,
        size=len(node.data) if node.kind == FILE else len(node.target) if node.kind == SYMLINK else None,
        digest=digest(node.data) if node.kind == FILE else None,
        target=node.target if node.kind == SYMLINK else None,
        xattrs=node.shown_xattrs(),
        ino=ino,
        opaque=disk and node.opaque,
        redirect=node.redirect if disk else None,
    )
