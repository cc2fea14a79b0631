"""The `edges` kind: a program per edge of the union model's limits, derived from them, so that every run meets
each edge on every subject however the generated programs fell.

For each limit (model/union/rules.py's LIMITS) and each of limit-1, limit and limit+1, one program on a small tree
looks up, creates and removes names through a path at that edge (vfslab/check/union/gen.py's `at_edge`): a last
component of that many bytes, a whole path of that many bytes with its NUL, or a lookup through that many
symlinks. Each runs in lockstep with the model, which decides what each call must answer.
"""

from __future__ import annotations

import os

from vfslab.check.union.gen import LOOP, at_edge
from vfslab.check.union.program import Program
from vfslab.model.union.ops import Op
from vfslab.model.union.rules import LIMITS
from vfslab.subjects.tree import DIR, FILE, Layers, Node

TREE = Layers(((LOOP, Node("a", DIR, 0o755), Node("a/f", FILE, 0o644, data=b"edge\n")),))


def programs(profile: str) -> list[Program]:
    """One program per edge of every limit, held to `profile`."""
    out = []
    for limit in LIMITS:
        for n in (limit.value - 1, limit.value, limit.value + 1):
            def at(path: str, n: int = n, limit=limit) -> str:
                return at_edge(limit, n, path)

            ops = [Op("lstat", (at("a/f"),)), Op("mkdir", (at("d"), 0o755)), Op("lstat", (at("d"),)),
                   Op("open", (at("e"), os.O_WRONLY | os.O_CREAT, 0o644)), Op("symlink", ("a", at("l"))),
                   Op("rename", (at("e"), at("g"))), Op("unlink", (at("g"),)), Op("rmdir", (at("d"),))]
            out.append(Program(TREE, ops, profile=profile))
    return out
