"""vmblock programs: the target directory's names at the start and a list of operations, replayable.

Operations (arguments in brackets; `slot` numbers the control handles in the order they were opened, `text`
is what is written to `/dev` with `{target}` standing for the subject's target directory and `{slashes:N}` for as
many `/` as make the whole write N bytes long; `dup` gives a new slot on the open file of an existing one):

    open  dup[slot]  close[slot]  write[slot, text]  read[slot, size]  the control file /dev
    touch[name]  rm[name]                                            the target directory
    readlink[name]  notify[name]                                     calls that may wait: run in the background
    lstat[path]  readdir[path]  version                              the tree ("" is the root)

`open`, `readlink` and `notify` may be made by another caller (`uid`): a block holds only its adder's accesses in
the unprivileged mode, and only root may open the control file otherwise. `readlink` and `notify` may be made by
another process (`forked`): a block holds every process's accesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vfslab.check.engine.kept import Kept

FAMILY = "vmblock"
BACKGROUND = ("readlink", "notify")
OPS = ("open", "dup", "close", "write", "read", "touch", "rm", *BACKGROUND, "lstat", "readdir", "version")


@dataclass(frozen=True)
class BlockOp:
    name: str
    args: tuple = ()
    #: the caller (0: root; the bench's other caller is uid 1000)
    uid: int = 0
    #: made by a child process of its own, not by the bench's process
    forked: bool = False

    def to_json(self) -> dict:
        return {"op": self.name, "args": list(self.args), **({"uid": self.uid} if self.uid else {}),
                **({"forked": True} if self.forked else {})}

    @classmethod
    def from_json(cls, data: dict) -> BlockOp:
        if data["op"] not in OPS:
            raise ValueError(f"unknown vmblock operation {data['op']!r}")
        if data.get("forked") and data["op"] not in BACKGROUND:
            raise ValueError(f"only {' and '.join(BACKGROUND)} are made by another process, not {data['op']!r}")
        return cls(data["op"], tuple(data.get("args", ())), int(data.get("uid", 0)), bool(data.get("forked", False)))

    def __str__(self) -> str:
        args = ", ".join(_short(a) for a in self.args)
        return (f"{self.name}({args})" + (f" as uid {self.uid}" if self.uid else "")
                + (" in another process" if self.forked else ""))


def _short(arg: object) -> str:
    """An argument as a message shows it: a long text cut in the middle."""
    shown = repr(arg)
    return shown if len(shown) <= 80 else f"{shown[:40]}...{shown[-30:]} ({len(arg)} chars)"


@dataclass
class BlockProgram(Kept):
    family = FAMILY

    names: tuple[str, ...]
    ops: list[BlockOp] = field(default_factory=list)
    subject: str = ""
    profile: str = "vmblock"
    message: str = ""
    #: the vmblock was mounted in the seed's unprivileged mode (any user may block; a user's blocks hold only them)
    unprivileged: bool = False

    def to_json(self) -> dict:
        return {"family": FAMILY, "subject": self.subject, "profile": self.profile, "message": self.message,
                "unprivileged": self.unprivileged, "layers": list(self.names), "ops": [op.to_json() for op in self.ops]}

    @classmethod
    def from_json(cls, data: dict) -> BlockProgram:
        return cls(tuple(data["layers"]), [BlockOp.from_json(o) for o in data["ops"]], data.get("subject", ""),
                   data.get("profile", "vmblock"), data.get("message", ""), bool(data.get("unprivileged", False)))
