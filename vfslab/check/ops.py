"""Operations: one record type for every call a program makes, and its text and JSON forms.

An op names a model method (`UnionModel.unlink`, ...) and the driver method of the same name. Calls on
open files name a *slot*: the n-th successful open of the program, so a program means the same thing to
the model and to any subject whatever fd numbers they hand out.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from functools import cache

from vfslab.model.outcome import Err
from vfslab.model.state import Entry
from vfslab.model.union import UnionModel

ROOT_UID = 0

#: ops whose first argument is a slot
FD_OPS = frozenset({"read", "write", "ftruncate", "fstat", "close"})
#: ops the bench itself performs on the whole mount
BENCH_OPS = frozenset({"remount", "push"})
PATH_OPS = (
    "stat", "lstat", "open", "truncate", "mkdir", "rmdir", "unlink", "rename", "link", "symlink", "readlink",
    "chmod", "chown", "utimens", "readdir", "setxattr", "getxattr", "listxattr", "removexattr",
)
ALL_OPS = (*PATH_OPS, *sorted(FD_OPS), *sorted(BENCH_OPS))

OPEN_FLAGS = {
    "O_RDONLY": os.O_RDONLY, "O_WRONLY": os.O_WRONLY, "O_RDWR": os.O_RDWR, "O_CREAT": os.O_CREAT,
    "O_EXCL": os.O_EXCL, "O_TRUNC": os.O_TRUNC, "O_APPEND": os.O_APPEND, "O_NOFOLLOW": os.O_NOFOLLOW,
    "O_DIRECTORY": os.O_DIRECTORY,
}


def flags_text(flags: int) -> str:
    acc = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}[flags & 3]
    rest = [n for n, v in OPEN_FLAGS.items() if v & ~3 and flags & v]
    return "|".join([acc, *rest])


def flags_value(text: str | int) -> int:
    if isinstance(text, int):
        return text
    try:
        return sum(OPEN_FLAGS[p.strip()] for p in text.split("|"))
    except KeyError as e:
        raise ValueError(f"unknown open flag {e.args[0]!r} in {text!r}") from None


@dataclass(frozen=True)
class Op:
    name: str
    args: tuple = ()
    uid: int = ROOT_UID

    def __str__(self) -> str:
        shown = []
        for i, a in enumerate(self.args):
            if self.name == "open" and i == 1:
                shown.append(flags_text(a))
            elif self.name in ("open", "mkdir", "chmod") and i == 2 - (self.name != "open"):
                shown.append(oct(a))
            elif isinstance(a, str) and len(a) > 40:
                shown.append(f"{a[0]!r}*{len(a)}")
            else:
                shown.append(repr(a))
        who = f" as uid {self.uid}" if self.uid != ROOT_UID else ""
        return f"{self.name}({', '.join(shown)}){who}"

    def to_json(self) -> dict:
        args = [{"bytes": a.decode("latin-1")} if isinstance(a, bytes) else list(a) if isinstance(a, tuple) else a
                for a in self.args]
        if self.name == "open":
            args[1] = flags_text(args[1])
        out: dict = {"op": self.name, "args": args}
        if self.uid != ROOT_UID:
            out["uid"] = self.uid
        return out

    @classmethod
    def from_json(cls, data: dict | list) -> Op:
        """From `{"op": ..., "args": [...], "uid": ...}` or the short form `["op", arg, ...]`."""
        if isinstance(data, list):
            data = {"op": data[0], "args": data[1:]}
        name = data["op"]
        if name not in ALL_OPS:
            raise ValueError(f"unknown operation {name!r}; known: {', '.join(ALL_OPS)}")
        args = [a["bytes"].encode("latin-1") if isinstance(a, dict) else tuple(a) if isinstance(a, list) else a
                for a in data.get("args", [])]
        low, high = _arity(name)
        if not low <= len(args) <= high:
            raise ValueError(f"{name} takes {low if low == high else f'{low} to {high}'} arguments, not {len(args)}")
        if name == "open":
            args[1] = flags_value(args[1])
        if name in ("write", "setxattr") and isinstance(args[-1], str):
            args[-1] = args[-1].encode()
        return cls(name, tuple(args), int(data.get("uid", ROOT_UID)))


@cache
def _arity(name: str) -> tuple[int, int]:
    """How many arguments the model's operation takes (at least, at most)."""
    params = list(inspect.signature(getattr(UnionModel, name)).parameters.values())[1:]
    return sum(p.default is p.empty for p in params), len(params)


def view(result: object) -> object:
    """What of a result is compared: stat results without the inode number (checked as an identity)."""
    if isinstance(result, Entry):
        return (result.kind, result.mode, result.uid, result.gid, result.nlink, result.size)
    return result


def show(result: object) -> str:
    if isinstance(result, Err):
        return repr(result)
    if isinstance(result, Entry):
        return f"{result.kind} mode={oct(result.mode)} uid={result.uid} gid={result.gid} nlink={result.nlink} " \
               f"size={result.size}"
    if isinstance(result, bytes) and len(result) > 40:
        return f"{result[:20]!r}...({len(result)} bytes)"
    return repr(result)
