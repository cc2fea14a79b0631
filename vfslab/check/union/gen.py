"""What generated checks draw, for small scopes: initial layers and operation arguments.

Names come from a tiny alphabet and trees are at most three deep, so operations collide with what is
there. Symlink targets are relative and never contain `..`, so nothing resolves outside the mount. Paths also come
at the edges of the model's limits (model/union/rules.py's LIMITS): components and whole paths one byte short of,
at and one over NAME_MAX and PATH_MAX, and lookups through 39, 40 and 41 symlinks (the bottom layer's `s`, a
symlink to `.`, repeated).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from itertools import combinations, product
from math import comb

from hypothesis import strategies as st

from vfslab.check.engine.choices import Pick, Table, picks
from vfslab.model import acl
from vfslab.model.limits import Limit
from vfslab.model.union.ops import BENCH, COLLAPSE, INSERT, KEEP_SIZE, OPEN_FLAGS, OPERATIONS, PUNCH, ZERO
from vfslab.model.union.rules import LIMITS, LINK_LIMIT, NAME_LIMIT, PATH_LIMIT
from vfslab.subjects.driver import USER
from vfslab.subjects.tree import DIR, FILE, HARDLINK, SYMLINK, Layers, Node

NAMES = ("a", "b", "c")
MAX_DEPTH = 3
#: in the bottom layer of every tree: a symlink to its own directory, so `s/s/.../s/x` follows as many as asked
LOOP = Node("s", SYMLINK, 0o777, target=".")

#: the name no generated tree holds
NEW = "d"
#: operations also use it, so that creations are not mostly EEXIST
OP_NAMES = (NEW, *NAMES)
LINK_TARGETS = ("a", "b", "c", "a/b", "b/c", ".", "x", "a/x")
OWNERS = (0, USER)
XATTR_NAMES, XATTR_VALUES = ("user.k", "user.m"), (b"1", b"two", b"")
#: ACLs that decide an access (uid 1000 named and granted rwx; named and refused what other may do; its group named
#: and granted), one the mode bits say all of, one out of order and one that is not an ACL
ACLS = ("u::rwx,u:1000:rwx,g::r-x,m::rwx,o::r-x", "u::rw-,u:1000:---,g::rw-,m::rw-,o::rw-",
        "u::rwx,g::---,g:1000:rwx,m::rwx,o::---", "u::rw-,g::r--,o::---", "u::rwx,g::r-x,u:1000:rwx,m::rwx,o::---",
        acl.NOT_AN_ACL)
#: a node's user xattrs: none half the time, else one
XATTR_SETS = ((),) * 6 + tuple(((n, v),) for n, v in product(XATTR_NAMES, XATTR_VALUES))

# Each choice Hypothesis makes costs about as much as a step's comparisons, so a thing drawn is one choice where it
# can be (an entry of a table, not a loop of draws), only what is used is drawn, and draws are picks
# (engine/choices.py), which open no span of their own.
#: what a layer's file, directory and symlink are made of, each one choice: (mode, owner, data, xattrs), (mode,
#: owner, xattrs) and (owner, target)
_FILES = tuple(product((0o644, 0o600, 0o666, 0o444, 0o755, 0o000), OWNERS,
                       (b"", b"x", b"hello\n", b"0123456789" * 500), XATTR_SETS))
_DIRS = tuple(product((0o755, 0o700, 0o777, 0o555, 0o711), OWNERS, XATTR_SETS))
_SYMLINKS = tuple(product(OWNERS, LINK_TARGETS))
#: what a name of a layer is, by whether a directory there may hold more and whether a file to link to exists
_KINDS = {(deeper, linkable): ("none", "none", FILE, SYMLINK, *(DIR, DIR) * deeper, *(HARDLINK,) * linkable)
          for deeper in (False, True) for linkable in (False, True)}


def _layer(pick: Pick) -> tuple[Node, ...]:
    nodes: list[Node] = []
    files: list[str] = []

    def fill(prefix: str, depth: int) -> None:
        for name in NAMES:
            path = f"{prefix}{name}"
            kind = pick(_KINDS[depth < MAX_DEPTH, bool(files)])
            if kind == HARDLINK:
                nodes.append(Node(path, HARDLINK, target=pick(files)))
            elif kind == SYMLINK:
                owner, target = pick(_SYMLINKS)
                nodes.append(Node(path, SYMLINK, 0o777, owner, owner, target=target))
            elif kind == FILE:
                mode, owner, data, xattrs = pick(_FILES)
                nodes.append(Node(path, FILE, mode, owner, owner, data, xattrs=xattrs))
                files.append(path)
            elif kind == DIR:
                mode, owner, xattrs = pick(_DIRS)
                nodes.append(Node(path, DIR, mode, owner, owner, xattrs=xattrs))
                fill(f"{path}/", depth + 1)

    fill("", 1)
    return tuple(nodes)


layer = picks(_layer)


def layers_of(most: int = 3) -> st.SearchStrategy[Layers]:
    """1 to `most` lower layers, the bottom one holding `LOOP` unless it has an `s` of its own."""
    def with_loop(ls: list[tuple[Node, ...]]) -> Layers:
        bottom = ls[-1] if any(n.path == LOOP.path for n in ls[-1]) else (LOOP, *ls[-1])
        return Layers((*ls[:-1], bottom))

    return st.lists(layer, min_size=1, max_size=most).map(with_loop)


layers = layers_of()


@dataclass(frozen=True)
class PathChoice:
    """A path argument as drawn: a path of random names, or (half the time) the n-th path the model shows now,
    so that operations meet what is there instead of ending in ENOENT, or, for a name to be made, `NEW` in it, so
    that they meet no EEXIST. Resolved when the rule runs; the op records the concrete path, so programs replay
    without the model."""

    path: str
    existing: int | None
    new: bool = False

    def resolve(self, visible: list[str]) -> str:
        if self.existing is None or not visible:
            return self.path
        shown = visible[self.existing % len(visible)]
        return f"{shown}/{NEW}" if self.new else shown


def at_edge(limit: Limit, n: int, path: str) -> str:
    """`path` made to measure `n` against `limit`: its last component `n` bytes long, the whole path `n` bytes
    with its NUL (padded in front with `./`), or reached through `n` symlinks."""
    if limit is NAME_LIMIT:
        return "/".join([*path.split("/")[:-1], "n" * n])
    if limit is PATH_LIMIT:
        pad = n - 1 - len(path)
        return "./" * (pad // 2) + "/" * (pad % 2) + path
    assert limit is LINK_LIMIT
    return f"{LOOP.path}/" * n + path


#: mostly shallow, as a random deep path rarely exists: each path of one name 48 times (half of all), of two
#: names 8 times (a third), of three once (a sixth)
RANDOM_PATHS = tuple("/".join(names) for depth, times in ((1, 48), (2, 8), (3, 1))
                     for names in product(OP_NAMES, repeat=depth) for _ in range(times))
#: which of the paths the model shows a path argument means: 0-63 the n-th (modulo how many), 64-127 none
_SHOWN = 128
_EDGE_KINDS = tuple(product(LIMITS, (-1, 0, 1)))


class Paths(Sequence[PathChoice]):
    """The paths an argument is drawn from: sometimes (a tenth) the root (`.`), the rest a random path and which of
    the paths the model shows (if `new`, a name `NEW` in it: a name to be made is otherwise nearly always taken),
    or, if `long`, (a quarter of the rest) a random path at an edge of one of the limits. One table read in three
    ranges, so one choice; shrinking its index goes to the root first, then to the model's first path."""

    def __init__(self, root: bool = False, long: bool = False, new: bool = False) -> None:
        self.plain = len(RANDOM_PATHS) * _SHOWN
        self.roots = self.plain // 9 if root else 0
        self.edges = self.plain // 3 if long else 0
        self.new = new

    def __len__(self) -> int:
        return self.roots + self.plain + self.edges

    def __getitem__(self, i: int) -> PathChoice:
        if not 0 <= i < len(self):
            raise IndexError(i)
        if i < self.roots:
            return PathChoice(".", None)
        n, shown = divmod(i - self.roots, _SHOWN)
        if n < len(RANDOM_PATHS):
            return PathChoice(RANDOM_PATHS[n], shown if shown < _SHOWN // 2 else None, self.new)
        n, kind = divmod(i - self.roots - self.plain, len(_EDGE_KINDS))
        limit, edge = _EDGE_KINDS[kind]
        return PathChoice(at_edge(limit, limit.value + edge, RANDOM_PATHS[n % len(RANDOM_PATHS)]), None)


#: who makes a call: root three times in four
CALLERS = (0, 0, 0, USER)
CREATE_MODES = (0o644, 0o600, 0o755, 0o000, 0o777)
#: the set-id and sticky bits too: what chown, a write and a truncate clear, what a setgid directory hands down, and
#: whom a sticky directory lets remove a name
CHMOD_MODES = (0o644, 0o600, 0o755, 0o000, 0o777, 0o555, 0o700, 0o4755, 0o2755, 0o2775, 0o6777, 0o1777, 0o3777,
               0o2745)


def _open_flags() -> tuple[int, ...]:
    """What an open's flags are drawn from: an access mode and up to three more flags, each number of them as
    likely (a set of k flags listed C(8, 3) / C(8, k) times); about one in eight an O_TMPFILE open, for writing or
    not, O_EXCL (never to be named) or not, with O_CREAT (EINVAL)."""
    extra = ("O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND", "O_NOFOLLOW", "O_DIRECTORY", "O_SYNC", "O_DSYNC")
    sets = [names for k in range(4) for names in combinations(extra, k)
            for _ in range(comb(len(extra), 3) // comb(len(extra), k))]
    plain = []
    for access, names in product(("O_RDONLY", "O_WRONLY", "O_RDWR"), sets):
        if "O_CREAT" in names:
            names = tuple(n for n in names if n != "O_DIRECTORY")  # EINVAL since Linux 6.4: not a union question
        plain.append(reduce(operator.or_, (OPEN_FLAGS[n] for n in names), OPEN_FLAGS[access]))
    tmpfiles = (os.O_TMPFILE | os.O_WRONLY, os.O_TMPFILE | os.O_RDWR, os.O_TMPFILE | os.O_RDWR | os.O_EXCL,
                os.O_TMPFILE | os.O_RDONLY, os.O_TMPFILE | os.O_RDWR | os.O_CREAT)
    return (*plain, *(f for f in tmpfiles for _ in range(len(plain) // 7 // len(tmpfiles))))


def domains(long_names: bool = True) -> dict[str, Table]:
    """What each argument domain of the operation table (`model/union/ops.py`) is drawn from, a table each; with
    `long_names`, a path of a `|long` domain is sometimes at an edge of a limit."""
    return {
        "path": Paths(),
        "path|root": Paths(root=True),
        "path|long": Paths(long=long_names),
        "path|root|long": Paths(root=True, long=long_names),
        "path|new|long": Paths(long=long_names, new=True),
        "flags": _open_flags(),
        "create-mode": CREATE_MODES,
        "chmod-mode": CHMOD_MODES,
        "length": (0, 1, 3, 7000),
        "noreplace": (False, True),
        "target": LINK_TARGETS,
        "owner": OWNERS,
        "times": ((1_000_000_000, 2_000_000_000),),
        "xattr-name": XATTR_NAMES,
        "xattr-value": XATTR_VALUES,
        "acl-kind": tuple(acl.KINDS),
        "acl": ACLS,
        "read-size": (1, 5, 100_000),
        "data": (b"W", b"write\n", b"Z" * 3000),
        "fd-length": (0, 2, 6000),
        # past the end (a write there leaves a hole and ends the file in data), before the start, and a whence
        # that is none (SEEK_DATA and SEEK_HOLE are 3 and 4)
        "offset": (0, 1, 4, 9000, -1),
        "whence": (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END, 7),
        # reading and writing (a write copies up), truncating, and asking for a directory
        "handle-flags": (os.O_RDONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC, os.O_RDONLY | os.O_DIRECTORY),
        # every kind, with and without KEEP_SIZE where that is a question; PUNCH_HOLE alone is refused
        "falloc-mode": (0, KEEP_SIZE, PUNCH | KEEP_SIZE, PUNCH, ZERO, ZERO | KEEP_SIZE, COLLAPSE, INSERT),
        # whole blocks and not (collapse and insert need them), inside and past the data the files hold
        "falloc-offset": (0, 1, 4096, 8192),
        "falloc-length": (4096, 1, 8192, 0),
    }


def arguments(long_names: bool = True) -> dict[str, tuple[Table, ...]]:
    """The argument tables of every operation but the bench's own, in call order (after the slot, for fd
    operations); an optional argument is always drawn."""
    drawn = domains(long_names)
    return {o.name: tuple(drawn[d.rstrip("?")] for d in o.args) for o in OPERATIONS
            if o.kind != BENCH}
