"""vmblock programs: the target directory's names at the start and a list of operations, replayable.

Operations (arguments in brackets; `slot` numbers the control handles in the order they were opened, `text`
is what is written to `/dev` with `{target}` standing for the subject's target directory):

    open  close[slot]  write[slot, text]  read[slot, size]        the control file /dev
    touch[name]  rm[name]                                            the target directory
    readlink[name]  notify[name]                                     calls that may wait: run in the background
    lstat[path]  readdir[path]  version                              the tree ("" is the root)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vfslab.check.engine.kept import Kept

FAMILY = "vmblock"
BACKGROUND = ("readlink", "notify")
OPS = ("open", "close", "write", "read", "touch", "rm", *BACKGROUND, "lstat", "readdir", "version")


@dataclass(frozen=True)
class BlockOp:
    name: str
    args: tuple = ()

    def to_json(self) -> dict:
        return {"op": self.name, "args": list(self.args)}

    @classmethod
    def from_json(cls, data: dict) -> BlockOp:
        if data["op"] not in OPS:
            raise ValueError(f"unknown vmblock operation {data['op']!r}")
        return cls(data["op"], tuple(data.get("args", ())))

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(repr, self.args))})"


@dataclass
class BlockProgram(Kept):
    family = FAMILY

    names: tuple[str, ...]
    ops: list[BlockOp] = field(default_factory=list)
    subject: str = ""
    profile: str = "vmblock"
    message: str = ""

    def to_json(self) -> dict:
        return {"family": FAMILY, "subject": self.subject, "profile": self.profile, "message": self.message,
                "layers": list(self.names), "ops": [op.to_json() for op in self.ops]}

    @classmethod
    def from_json(cls, data: dict) -> BlockProgram:
        return cls(tuple(data["layers"]), [BlockOp.from_json(o) for o in data["ops"]], data.get("subject", ""),
                   data.get("profile", "vmblock"), data.get("message", ""))
