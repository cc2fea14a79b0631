"""Hypothesis strategies for small scopes: initial layers and operation arguments.

Names come from a tiny alphabet and trees are at most three deep, so operations collide with what is
there. Symlink targets are relative and never contain `..`, so nothing resolves outside the mount. Paths also come
at the edges of the model's limits (model/union/rules.py's LIMITS): components and whole paths one byte short of,
at and one over NAME_MAX and PATH_MAX, and lookups through 39, 40 and 41 symlinks (the bottom layer's `s`, a
symlink to `.`, repeated).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import product

from hypothesis import strategies as st

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

names = st.sampled_from(NAMES)
#: operations also use a name no generated tree holds, so that creations are not mostly EEXIST
OP_NAMES = ("d", *NAMES)
LINK_TARGETS = ("a", "b", "c", "a/b", "b/c", ".", "x", "a/x")
link_targets = st.sampled_from(LINK_TARGETS)
OWNERS = (0, USER)
XATTR_NAMES, XATTR_VALUES = ("user.k", "user.m"), (b"1", b"two", b"")
xattr_names, xattr_values = st.sampled_from(XATTR_NAMES), st.sampled_from(XATTR_VALUES)
acl_kinds = st.sampled_from(tuple(acl.KINDS))
#: ACLs that decide an access (uid 1000 named and granted rwx; named and refused what other may do; its group named
#: and granted), one the mode bits say all of, one out of order and one that is not an ACL
ACLS = ("u::rwx,u:1000:rwx,g::r-x,m::rwx,o::r-x", "u::rw-,u:1000:---,g::rw-,m::rw-,o::rw-",
        "u::rwx,g::---,g:1000:rwx,m::rwx,o::---", "u::rw-,g::r--,o::---", "u::rwx,g::r-x,u:1000:rwx,m::rwx,o::---",
        acl.NOT_AN_ACL)
acls = st.sampled_from(ACLS)
#: a node's user xattrs: none half the time, else one
XATTR_SETS = ((),) * 6 + tuple(((n, v),) for n, v in product(XATTR_NAMES, XATTR_VALUES))

# Each choice Hypothesis makes costs about as much as a step's comparisons, so a thing drawn is one choice where it
# can be (a table to sample, not a loop of draws) and only what is used is drawn. Strategies are built once, here:
# one built at each draw is validated and labelled again, which costs more than the draw itself.
#: what a layer's file, directory and symlink are made of, each one choice: (mode, owner, data, xattrs), (mode,
#: owner, xattrs) and (owner, target)
_FILES = st.sampled_from(tuple(product((0o644, 0o600, 0o666, 0o444, 0o755, 0o000), OWNERS,
                                       (b"", b"x", b"hello\n", b"0123456789" * 500), XATTR_SETS)))
_DIRS = st.sampled_from(tuple(product((0o755, 0o700, 0o777, 0o555, 0o711), OWNERS, XATTR_SETS)))
_SYMLINKS = st.sampled_from(tuple(product(OWNERS, LINK_TARGETS)))
#: what a name of a layer is, by whether a directory there may hold more and whether a file to link to exists
_KINDS = {(deeper, linkable): st.sampled_from(["none", "none", FILE, SYMLINK] + [DIR, DIR] * deeper
                                              + [HARDLINK] * linkable)
          for deeper in (False, True) for linkable in (False, True)}


@st.composite
def layer(draw: st.DrawFn) -> tuple[Node, ...]:
    nodes: list[Node] = []
    files: list[str] = []

    def fill(prefix: str, depth: int) -> None:
        for name in NAMES:
            path = f"{prefix}{name}"
            kind = draw(_KINDS[depth < MAX_DEPTH, bool(files)])
            if kind == HARDLINK:
                nodes.append(Node(path, HARDLINK, target=draw(st.sampled_from(files))))
            elif kind == SYMLINK:
                owner, target = draw(_SYMLINKS)
                nodes.append(Node(path, SYMLINK, 0o777, owner, owner, target=target))
            elif kind == FILE:
                mode, owner, data, xattrs = draw(_FILES)
                nodes.append(Node(path, FILE, mode, owner, owner, data, xattrs=xattrs))
                files.append(path)
            elif kind == DIR:
                mode, owner, xattrs = draw(_DIRS)
                nodes.append(Node(path, DIR, mode, owner, owner, xattrs=xattrs))
                fill(f"{path}/", depth + 1)

    fill("", 1)
    return tuple(nodes)


def layers_of(most: int = 3) -> st.SearchStrategy[Layers]:
    """1 to `most` lower layers, the bottom one holding `LOOP` unless it has an `s` of its own."""
    def with_loop(ls: list[tuple[Node, ...]]) -> Layers:
        bottom = ls[-1] if any(n.path == LOOP.path for n in ls[-1]) else (LOOP, *ls[-1])
        return Layers((*ls[:-1], bottom))

    return st.lists(layer(), min_size=1, max_size=most).map(with_loop)


layers = layers_of()


@dataclass(frozen=True)
class PathChoice:
    """A path argument as drawn: a path of random names, or (half the time) the n-th path the model shows now,
    so that operations meet what is there instead of ending in ENOENT. Resolved when the rule runs; the op
    records the concrete path, so programs replay without the model."""

    path: str
    existing: int | None

    def resolve(self, visible: list[str]) -> str:
        return visible[self.existing % len(visible)] if self.existing is not None and visible else self.path


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


def paths(root: bool = False, long: bool = False) -> st.SearchStrategy[PathChoice]:
    """A path in the tree; sometimes (a tenth) the root (`.`) or, if `long`, (a quarter of the rest) a path at an
    edge of one of the limits.

    One choice, an integer read in three ranges: the root; a random path and which of the paths the model shows;
    a random path and an edge. Four choices a path cost a step more than its comparisons, and shrinking an
    integer goes to the root first, then to the model's first path, as it went when they were four."""
    plain = len(RANDOM_PATHS) * _SHOWN
    roots = plain // 9 if root else 0
    edges = plain // 3 if long else 0

    def read(i: int) -> PathChoice:
        if i < roots:
            return PathChoice(".", None)
        n, shown = divmod(i - roots, _SHOWN)
        if n < len(RANDOM_PATHS):
            return PathChoice(RANDOM_PATHS[n], shown if shown < _SHOWN // 2 else None)
        n, kind = divmod(i - roots - plain, len(_EDGE_KINDS))
        limit, edge = _EDGE_KINDS[kind]
        return PathChoice(at_edge(limit, limit.value + edge, RANDOM_PATHS[n % len(RANDOM_PATHS)]), None)

    return st.integers(0, roots + plain + edges - 1).map(read)


#: who makes a call: root three times in four
CALLERS = (0, 0, 0, USER)
create_modes = st.sampled_from((0o644, 0o600, 0o755, 0o000, 0o777))
#: the set-id and sticky bits too: what chown, a write and a truncate clear, what a setgid directory hands down, and
#: whom a sticky directory lets remove a name
chmod_modes = st.sampled_from((0o644, 0o600, 0o755, 0o000, 0o777, 0o555, 0o700, 0o4755, 0o2755, 0o2775, 0o6777,
                               0o1777, 0o3777, 0o2745))


_ACCESS = st.sampled_from((OPEN_FLAGS["O_RDONLY"], OPEN_FLAGS["O_WRONLY"], OPEN_FLAGS["O_RDWR"]))
_EXTRA = st.sets(st.sampled_from(("O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND", "O_NOFOLLOW", "O_DIRECTORY", "O_SYNC",
                                  "O_DSYNC")), max_size=3)


#: an O_TMPFILE open, one in eight: for writing or not, O_EXCL (never to be named) or not, with O_CREAT (EINVAL)
_TMPFILES = (os.O_TMPFILE | os.O_WRONLY, os.O_TMPFILE | os.O_RDWR, os.O_TMPFILE | os.O_RDWR | os.O_EXCL,
             os.O_TMPFILE | os.O_RDONLY, os.O_TMPFILE | os.O_RDWR | os.O_CREAT)
_TMPFILE = st.sampled_from((None,) * 7 * len(_TMPFILES) + _TMPFILES)


@st.composite
def open_flags(draw: st.DrawFn) -> int:
    if (tmpfile := draw(_TMPFILE)) is not None:
        return tmpfile
    flags = draw(_ACCESS)
    extra = draw(_EXTRA)
    if "O_CREAT" in extra:
        extra.discard("O_DIRECTORY")  # O_CREAT|O_DIRECTORY is EINVAL since Linux 6.4: not a union question
    for name in extra:
        flags |= OPEN_FLAGS[name]
    return flags


def domains(long_names: bool = True) -> dict[str, st.SearchStrategy]:
    """What each argument domain of the operation table (`model/union/ops.py`) draws; with `long_names`, a path
    of a `|long` domain is sometimes at an edge of a limit."""
    return {
        "path": paths(),
        "path|root": paths(root=True),
        "path|long": paths(long=long_names),
        "path|root|long": paths(root=True, long=long_names),
        "flags": open_flags(),
        "create-mode": create_modes,
        "chmod-mode": chmod_modes,
        "length": st.sampled_from((0, 1, 3, 7000)),
        "noreplace": st.booleans(),
        "target": link_targets,
        "owner": st.sampled_from(OWNERS),
        "times": st.just((1_000_000_000, 2_000_000_000)),
        "xattr-name": xattr_names,
        "xattr-value": xattr_values,
        "acl-kind": acl_kinds,
        "acl": acls,
        "read-size": st.sampled_from((1, 5, 100_000)),
        "data": st.sampled_from((b"W", b"write\n", b"Z" * 3000)),
        "fd-length": st.sampled_from((0, 2, 6000)),
        # past the end (a write there leaves a hole and ends the file in data), before the start, and a whence
        # that is none (SEEK_DATA and SEEK_HOLE are 3 and 4)
        "offset": st.sampled_from((0, 1, 4, 9000, -1)),
        "whence": st.sampled_from((os.SEEK_SET, os.SEEK_CUR, os.SEEK_END, 7)),
        # every kind, with and without KEEP_SIZE where that is a question; PUNCH_HOLE alone is refused
        "falloc-mode": st.sampled_from((0, KEEP_SIZE, PUNCH | KEEP_SIZE, PUNCH, ZERO, ZERO | KEEP_SIZE, COLLAPSE,
                                        INSERT)),
        # whole blocks and not (collapse and insert need them), inside and past the data the files hold
        "falloc-offset": st.sampled_from((0, 1, 4096, 8192)),
        "falloc-length": st.sampled_from((4096, 1, 8192, 0)),
    }


def arguments(long_names: bool = True) -> dict[str, tuple[st.SearchStrategy, ...]]:
    """The argument strategies of every operation but the bench's own, in call order (after the slot, for fd
    operations); an optional argument is always drawn."""
    drawn = domains(long_names)
    return {o.name: tuple(drawn[d.rstrip("?")] for d in o.args) for o in OPERATIONS
            if o.kind != BENCH}
