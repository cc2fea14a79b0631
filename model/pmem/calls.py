"""The routing model's calls, defined once: what a routing program is made of.

Each row names a call (the `RoutingModel` method and the call the program's process makes, through the router or
on the kernel), its arguments in order, each by the *domain* it is drawn from (a trailing `?` marks one with a
default), whether it only looks (changes no tree: the check walks the trees only after the others), and whether
it returns a new fd (which later calls may name as `"#i"`). Program JSON, the process's dispatch, the lockstep's
walks, the generator and the CLI's help are derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[str, ...] = ()
    looks: bool = False
    returns_fd: bool = False

    @property
    def arity(self) -> tuple[int, int]:
        """How many arguments it takes (at least, at most)."""
        return sum(not a.endswith("?") for a in self.args), len(self.args)


CALLS = (
    Call("open", ("open-path", "flags", "mode?"), returns_fd=True),
    Call("close", ("fd",), looks=True),
    Call("dup", ("fd",), looks=True, returns_fd=True),
    Call("dup2", ("fd", "fd"), looks=True, returns_fd=True),
    Call("read", ("fd", "size"), looks=True),
    Call("write", ("fd", "data")),
    Call("lseek", ("fd", "offset", "whence"), looks=True),
    Call("fstat", ("fd",), looks=True),
    Call("stat", ("path",), looks=True),
    Call("lstat", ("path",), looks=True),
    Call("readlink", ("path",), looks=True),
    Call("readdir", ("path",), looks=True),
    Call("mkdir", ("path", "mode?")),
    Call("rmdir", ("path",)),
    Call("unlink", ("path",)),
    Call("symlink", ("target", "path")),
    Call("link", ("path", "path")),
    Call("rename", ("path", "path")),
    Call("chdir", ("path",), looks=True),
    Call("getcwd", (), looks=True),
)
BY_NAME = {c.name: c for c in CALLS}
#: calls that change no tree
LOOKS = frozenset(c.name for c in CALLS if c.looks)
#: calls that return a new fd
FD_CALLS = frozenset(c.name for c in CALLS if c.returns_fd)
