"""Routing programs: the pool's tree at the start and a list of calls, replayable.

The kernel's tree is always `KERNEL`: `/k` holding a file `f` and a symlink `toP -> ../P`, and the directory
`/P`, where the pool is mounted (`POOL_AT`). A call is `[name, *args]` as `process.py` runs it, with paths
relative to the cwd (`/` at the start) or absolute from the kernel's root; `"#i"` stands for the fd that the
i-th successful open, dup or dup2 returned (an fd never returned is -1: EBADF). Open flags may be written as
text (`"O_WRONLY|O_CREAT"`), and a long string short: `{N*TEXT}` is TEXT N times (`"/P/{255*m}"`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vfslab.check.engine.kept import Kept
from vfslab.model.pmem.calls import BY_NAME
from vfslab.model.union.ops import flags_text, flags_value
from vfslab.subjects.tree import DIR, FILE, SYMLINK, Layers, Node

FAMILY = "pmem"
#: what a routing program is checked by: lockstep with the routing model, or the kernel beside the router
ROUTING, TRANSPARENCY = "routing", "transparency"
POOL_AT = "P"
KERNEL = (Node("k", DIR, 0o755), Node("k/f", FILE, 0o644, data=b"kernel file\n"),
          Node("k/toP", SYMLINK, 0o777, target="../P"), Node(POOL_AT, DIR, 0o755))


#: `{N*TEXT}` in a written program's string stands for TEXT N times: a name of 255 bytes, a path of 4095, a chain of
#: 41 symlinks, written short
REPEAT = re.compile(r"\{(\d+)\*([^{}]*)\}")


def expand(value: object) -> object:
    """A written argument with its `{N*TEXT}` repeated out."""
    return REPEAT.sub(lambda m: m.group(2) * int(m.group(1)), value) if isinstance(value, str) else value


def parse_call(data: list) -> list:
    if not isinstance(data, list) or not data or data[0] not in BY_NAME:
        raise ValueError(f"not a routing call: {data!r} (calls: {', '.join(BY_NAME)})")
    low, high = BY_NAME[data[0]].arity
    if not low <= len(data) - 1 <= high:
        raise ValueError(f"{data[0]} takes {low if low == high else f'{low} to {high}'} arguments: {data!r}")
    data = [data[0], *map(expand, data[1:])]
    if data[0] == "open":
        return ["open", data[1], flags_value(data[2]), *data[3:]]
    return data


def show_call(call: list) -> str:
    name, *args = call
    shown = [flags_text(a) if name == "open" and i == 1 else repr(a) for i, a in enumerate(args)]
    return f"{name}({', '.join(shown)})"


@dataclass
class RouteProgram(Kept):
    family = FAMILY

    pool: tuple[Node, ...]
    ops: list[list] = field(default_factory=list)
    subject: str = ""
    profile: str = "pmemfile"
    message: str = ""
    check: str = ROUTING

    def to_json(self) -> dict:
        calls = [["open", c[1], flags_text(c[2]), *c[3:]] if c[0] == "open" else c for c in self.ops]
        return {"family": FAMILY, "check": self.check, "subject": self.subject, "profile": self.profile,
                "message": self.message, "layers": Layers((self.pool,)).to_json(), "ops": calls}

    @classmethod
    def from_json(cls, data: dict) -> RouteProgram:
        pool = Layers.from_json(data["layers"]).lowers
        if len(pool) != 1:
            raise ValueError("a routing program has one tree, the pool's")
        check = data.get("check", ROUTING)
        if check not in (ROUTING, TRANSPARENCY):
            raise ValueError(f"a routing program is checked by {ROUTING} or {TRANSPARENCY}, not {check!r}")
        return cls(pool[0], [parse_call(c) for c in data["ops"]], data.get("subject", ""),
                   data.get("profile", "pmemfile"), data.get("message", ""), check)


@dataclass
class PoolProgram(Kept):
    """A program of pool operations (`(op, *args)` tuples) checked by `check` rather than in lockstep: crashed at
    each persist point, or left with orphans and closed uncleanly (kept for `vfslab replay`)."""

    family = FAMILY
    check = ""

    ops: list[tuple]
    subject: str = ""
    profile: str = ""
    message: str = ""

    def to_json(self) -> dict:
        return {"family": FAMILY, "check": self.check, "subject": self.subject, "profile": self.profile,
                "message": self.message, "layers": [], "ops": [list(op) for op in self.ops]}

    @classmethod
    def from_json(cls, data: dict) -> PoolProgram:
        return cls([tuple(op) for op in data["ops"]], data.get("subject", ""), data.get("profile", ""),
                   data.get("message", ""))
