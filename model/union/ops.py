"""The union model's operations, defined once, and the record a program makes of each call.

Every operation is a row of `OPERATIONS`: its name (the `UnionModel` method and the driver method of the same
name), its arguments in call order, each named by the *domain* it is drawn from (the engine's generator maps a
domain to a strategy; a trailing `?` marks an argument with a default), whether its first argument is a slot
or the bench itself performs it on the whole mount, and whether it only looks (changes neither the layers nor
the index). Everything else (the generator, the drivers, program JSON, the model's looks-only set, the CLI's
help) is derived from this table.

Calls on open files name a *slot*: the n-th successful open of the program, so a program means the same thing
to the model and to any subject whatever fd numbers they hand out. A file handle is named the same way: the n-th
handle the program made (none is ever given up).
"""

from __future__ import annotations

import functools
import operator
import os
from dataclasses import dataclass

ROOT_UID = 0
PATH, FD, HANDLE, BENCH = "path", "fd", "handle", "bench"


@dataclass(frozen=True)
class Operation:
    name: str
    #: argument domains in call order (after the slot, for fd operations); "?" ends an optional one
    args: tuple[str, ...] = ()
    kind: str = PATH
    looks: bool = False
    #: succeeds with a new slot (open, dup): the n-th such success of a program is slot n
    opens: bool = False
    #: succeeds with a new file handle: the n-th such success of a program is handle n
    handles: bool = False
    #: the model decides its outcome on an open directory too (a directory's offsets are each file system's own)
    dirs: bool = True

    @property
    def arity(self) -> tuple[int, int]:
        """How many arguments a call takes (at least, at most), the slot included."""
        slot = self.kind in (FD, HANDLE)
        return slot + sum(not a.endswith("?") for a in self.args), slot + len(self.args)


OPERATIONS = (
    Operation("stat", ("path|root",), looks=True),
    Operation("lstat", ("path|root|long",), looks=True),
    Operation("open", ("path|long", "flags", "create-mode?"), opens=True),
    Operation("truncate", ("path", "length")),
    Operation("mkdir", ("path|long", "create-mode")),
    Operation("rmdir", ("path",)),
    Operation("unlink", ("path",)),
    Operation("rename", ("path", "path", "noreplace?")),
    Operation("link", ("path", "path")),
    Operation("symlink", ("target", "path|long")),
    Operation("readlink", ("path",), looks=True),
    Operation("chmod", ("path|root", "chmod-mode")),
    Operation("chown", ("path", "owner", "owner")),
    Operation("utimens", ("path", "times")),
    Operation("readdir", ("path|root",), looks=True),
    Operation("setxattr", ("path", "xattr-name", "xattr-value")),
    Operation("getxattr", ("path", "xattr-name"), looks=True),
    Operation("listxattr", ("path",), looks=True),
    Operation("removexattr", ("path", "xattr-name")),
    Operation("setacl", ("path|root", "acl-kind", "acl")),
    Operation("getacl", ("path|root", "acl-kind"), looks=True),
    Operation("removeacl", ("path|root", "acl-kind")),
    Operation("close", (), FD),
    Operation("fstat", (), FD, looks=True),
    Operation("ftruncate", ("fd-length",), FD),
    Operation("read", ("read-size",), FD, looks=True),
    Operation("write", ("data",), FD),
    Operation("lseek", ("offset", "whence"), FD, dirs=False),
    Operation("fallocate", ("falloc-mode", "falloc-offset", "falloc-length"), FD),
    Operation("fchmod", ("chmod-mode",), FD),
    Operation("fchown", ("owner", "owner"), FD),
    Operation("futimens", ("times",), FD),
    Operation("fsetxattr", ("xattr-name", "xattr-value"), FD),
    Operation("fremovexattr", ("xattr-name",), FD),
    Operation("dup", (), FD, opens=True),
    Operation("flink", ("path|new|long",), FD),
    Operation("handle", ("path|root",), handles=True),
    Operation("open_handle", ("handle-flags",), HANDLE, opens=True),
    Operation("push", (), BENCH),
    Operation("remount", (), BENCH),
)
BY_NAME = {o.name: o for o in OPERATIONS}
#: argument domains whose values are bytes, which program JSON may spell as text
BYTE_DOMAINS = frozenset({"data", "xattr-value"})
#: ops whose first argument is a slot
FD_OPS = frozenset(o.name for o in OPERATIONS if o.kind == FD)
#: ops the bench itself performs on the whole mount
BENCH_OPS = frozenset(o.name for o in OPERATIONS if o.kind == BENCH)
#: ops whose first argument is a file handle (the n-th the program made)
HANDLE_OPS = frozenset(o.name for o in OPERATIONS if o.kind == HANDLE)
#: ops whose success is a new slot
OPENS = frozenset(o.name for o in OPERATIONS if o.opens)
#: ops that change neither the layers nor the index (unless lookups themselves write: union mounts)
LOOKS_ONLY = frozenset(o.name for o in OPERATIONS if o.looks)
#: what a scenario may generate, in table order
ALL_OPS = tuple(o.name for o in OPERATIONS)

OPEN_FLAGS = {
    "O_RDONLY": os.O_RDONLY, "O_WRONLY": os.O_WRONLY, "O_RDWR": os.O_RDWR, "O_CREAT": os.O_CREAT,
    "O_EXCL": os.O_EXCL, "O_TRUNC": os.O_TRUNC, "O_APPEND": os.O_APPEND, "O_NOFOLLOW": os.O_NOFOLLOW,
    "O_DIRECTORY": os.O_DIRECTORY, "O_SYNC": os.O_SYNC, "O_DSYNC": os.O_DSYNC, "O_TMPFILE": os.O_TMPFILE,
}


#: fallocate(2)'s mode bits (linux/falloc.h)
FALLOC_FLAGS = {
    "FALLOC_FL_KEEP_SIZE": 0x01, "FALLOC_FL_PUNCH_HOLE": 0x02, "FALLOC_FL_COLLAPSE_RANGE": 0x08,
    "FALLOC_FL_ZERO_RANGE": 0x10, "FALLOC_FL_INSERT_RANGE": 0x20,
}
#: what a fallocate mode does, by the one bit (besides KEEP_SIZE) it sets; 0 allocates
ALLOCATE, PUNCH, COLLAPSE, ZERO, INSERT = 0, 0x02, 0x08, 0x10, 0x20
KEEP_SIZE = 0x01
#: the kinds of fallocate a file system may or may not do, by name (a subject's support is a set of these)
FALLOC_KINDS = {"allocate": ALLOCATE, "punch-hole": PUNCH, "collapse-range": COLLAPSE, "zero-range": ZERO,
                "insert-range": INSERT}


@dataclass(frozen=True)
class FallocSupport:
    """Which kinds of fallocate the file system under a subject does (the kernel's overlayfs passes the call to the
    upper layer's; FUSE passes on only some), and its block size, which collapse and insert ranges align to."""

    kinds: frozenset[str] = frozenset(FALLOC_KINDS)
    block: int = 4096


#: a file system that does every kind (ext4), with 4 KiB blocks
EVERY_KIND = FallocSupport()


def _bits_text(value: int, names: dict[str, int], none: str) -> str:
    return "|".join(n for n, v in names.items() if value & v) or none


def _bits_value(text: str | int, names: dict[str, int], what: str) -> int:
    if isinstance(text, int):
        return text
    try:
        return functools.reduce(operator.or_, (names[p.strip()] for p in text.split("|")), 0)
    except KeyError as e:
        raise ValueError(f"unknown {what} {e.args[0]!r} in {text!r}") from None


def falloc_text(mode: int) -> str:
    return _bits_text(mode, FALLOC_FLAGS, "0")


def falloc_value(text: str | int) -> int:
    return 0 if text == "0" else _bits_value(text, FALLOC_FLAGS, "fallocate flag")


def flags_text(flags: int) -> str:
    acc = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}[flags & 3]
    rest = [n for n, v in OPEN_FLAGS.items() if v & ~3 and flags & v == v]
    for whole, part in (("O_SYNC", "O_DSYNC"), ("O_TMPFILE", "O_DIRECTORY")):  # the first's bits hold the second's
        if whole in rest:
            rest.remove(part)
    return "|".join([acc, *rest])


def flags_value(text: str | int) -> int:
    return _bits_value(text, OPEN_FLAGS, "open flag")


@dataclass(frozen=True)
class Op:
    name: str
    args: tuple = ()
    uid: int = ROOT_UID

    def __str__(self) -> str:
        shown = []
        for i, a in enumerate(self.args):
            if self.name in _TEXT_ARGS and i == 1:
                shown.append(_TEXT_ARGS[self.name][0](a))
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
        if self.name in _TEXT_ARGS:
            args[1] = _TEXT_ARGS[self.name][0](args[1])
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
        low, high = BY_NAME[name].arity
        if not low <= len(args) <= high:
            raise ValueError(f"{name} takes {low if low == high else f'{low} to {high}'} arguments, not {len(args)}")
        if name in _TEXT_ARGS:
            args[1] = _TEXT_ARGS[name][1](args[1])
        slot = BY_NAME[name].kind in (FD, HANDLE)
        for i, domain in enumerate(BY_NAME[name].args[:len(args) - slot], slot):
            if domain in BYTE_DOMAINS and isinstance(args[i], str):
                args[i] = args[i].encode()
        return cls(name, tuple(args), int(data.get("uid", ROOT_UID)))


#: arguments program JSON spells by name: (to text, from text) of each op's second argument
_TEXT_ARGS = {"open": (flags_text, flags_value), "open_handle": (flags_text, flags_value),
              "fallocate": (falloc_text, falloc_value)}
