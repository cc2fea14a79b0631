"""Storage programs: the steps a check applies to a storage method, as JSON lists, and how they are drawn.

A step is `[name, *args]`: an operation of the interface (`add_inode`, `unlink_dirent`, ...) or one of the core's
sequences (`LIFECYCLE`, and `evict`). An inode is named by which of the program's inodes it is: `"#0"` the root,
`"#k"` the one the k-th Add Inode made, `"#?"` a number the storage never handed out; numbers themselves are the
method's to choose, so a program replays on any method. Contents are text (`write_file`'s data, as UTF-8).
"""

from __future__ import annotations

import functools
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from hypothesis import strategies as st

from vfslab.check.engine.kept import Kept, toml_value
from vfslab.model.storage import FILE_SYSTEMS, LOOKS, Attrs
from vfslab.model.storage.rules import NAME_LIMIT

FAMILY = "storage"
#: what a program is checked by: in lockstep with the model; crashed at every persist point of its run; written by
#: `dir:` and read by a method that has only the bare minimum
CONTRACT, CRASH, READ_ONLY = "contract", "crash", "read-only"
CHECKS = (CONTRACT, CRASH, READ_ONLY)

#: the core's lifecycle, as steps, and the calls each makes ("new" / "same": Init on a new method over the same
#: storage, as the next mount makes, or on the same method again): `remount` is ovlfs's unmount and next mount
LIFECYCLE = {"sync": ("sync",), "remount": ("sync", "release", "new"), "remount-unsynced": ("release", "new"),
             "reinit": ("release", "same")}
#: the core's put inode of an inode whose last name went ("VFS put inode: ovlfs write inode, Clear_inode"): Update
#: Inode with no links, then Clear Inode
EVICT = "evict"
#: the operations a step that is none needs
NEEDS = {EVICT: ("update_inode", "clear_inode")}
#: an inode argument that is a number never handed out
STRANGER = "#?"
#: the kinds of inode Add Inode is given: their mode and link count
KINDS = {"dir": (stat.S_IFDIR | 0o755, 2), "file": (stat.S_IFREG | 0o644, 1), "symlink": (stat.S_IFLNK | 0o777, 1)}
#: what Update Inode is given: the inode as Read Inode has it, changed as the core would change it
CHANGES: dict[str, Callable[[Attrs], Attrs]] = {
    "unlink": lambda a: replace(a, nlink=0),
    "chmod": lambda a: replace(a, mode=stat.S_IFMT(a.mode) | (stat.S_IMODE(a.mode) ^ 0o022)),
    "chown": lambda a: replace(a, uid=a.uid ^ 1000, gid=a.gid ^ 1000),
    "grow": lambda a: replace(a, size=a.size + 4),
    "shrink": lambda a: replace(a, size=max(0, a.size - 3)),
    "touch": lambda a: replace(a, mtime_ns=a.mtime_ns + 10, ctime_ns=a.ctime_ns + 10),
    "relink": lambda a: replace(a, nlink=a.nlink + 1),
    "rename": lambda a: replace(a, name="b" if a.name != "b" else "c"),
    # what the core never hands it: another file type, and mappings and flags of its own
    "retype": lambda a: replace(a, mode=stat.S_IFDIR | 0o755 if stat.S_ISREG(a.mode) else stat.S_IFREG | 0o644),
    "unmap": lambda a: replace(a, base=None, storage=(9, 9), flags=frozenset()),
}
NAMES = ("a", "b", "c")
#: names at the edges of NAME_MAX (the empty name, NAME_MAX-1, NAME_MAX and NAME_MAX+1 bytes), by the pick that
#: stands for them
EDGE_NAMES = {8: "", **{9 + o: "n" * (NAME_LIMIT.value - 1 + o) for o in range(3)}}


def inode_ref(k: int | None) -> str:
    return STRANGER if k is None else f"#{k}"


def slot(ref: str) -> int | None:
    """Which of the program's inodes `ref` names (None: a number never handed out)."""
    if ref == STRANGER:
        return None
    if not (isinstance(ref, str) and ref.startswith("#") and ref[1:].isdigit()):
        raise ValueError(f"not an inode of the program: {ref!r} (#0 the root, #k the k-th added, {STRANGER})")
    return int(ref[1:])


def looks(step: list) -> bool:
    """Whether the step changes nothing a later one sees (no state to compare after it)."""
    return step[0] in LOOKS


def show(step: list) -> str:
    name, *args = step
    return f"{name}({', '.join(_shown(a) for a in args)})"


def _shown(arg: object) -> str:
    """An argument as a message shows it: an inode as the program names it, a long name by its length."""
    if isinstance(arg, str) and arg[:1] == "#":
        return arg
    if isinstance(arg, str) and len(arg) > 40 and len(set(arg)) == 1:
        return f"{arg[0]!r}*{len(arg)}"
    return repr(arg)


@dataclass
class StorageProgram(Kept):
    """A program of steps on fresh storage, and the method it ran on (the spec without its location: `dir`,
    `python:MODULE:CLASS`), kept for `vfslab replay`."""

    family = FAMILY

    ops: list[list] = field(default_factory=list)
    method: str = ""
    check: str = CONTRACT
    subject: str = ""
    profile: str = "ovlfs"
    message: str = ""

    def to_json(self) -> dict:
        return {"family": FAMILY, "check": self.check, "method": self.method, "subject": self.subject,
                "profile": self.profile, "message": self.message, "layers": [], "ops": self.ops}

    def to_scenario(self, scenario_id: str, family: str = "") -> str:
        """The regression scenario, its program saying which method and check it is for."""
        return super().to_scenario(scenario_id, family) + (f"method = {toml_value(self.method)}\n"
                                                           f"check = {toml_value(self.check)}\n")

    @classmethod
    def from_json(cls, data: dict) -> StorageProgram:
        check = data.get("check", CONTRACT)
        if check not in CHECKS:
            raise ValueError(f"a storage program is checked by {', '.join(CHECKS)}, not {check!r}")
        ops = [list(op) for op in data["ops"]]
        for op in ops:
            if not op or not isinstance(op[0], str):
                raise ValueError(f"not a storage step: {op!r}")
        return cls(ops, data.get("method", ""), check, data.get("subject", ""), data.get("profile", "ovlfs"),
                   data.get("message", ""))


# ---- drawing programs ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pick:
    """An argument drawn before the program has the inodes and entries it names: the run makes it one of those
    it has then (`Lockstep.resolve`), so that most steps meet something. `kind` says what it stands for:
    - inodes: "dir" (mostly the root, else a directory), "file", "symlink" (mostly one of that type), "held" (one
      the storage holds), "unlinked" (mostly one whose link count is 0), "mapped" (mostly one with a mapping),
      "any" (any, now and then a number never handed out);
    - names, in the step's directory: "live" (mostly the name of a live entry, now and then an unlinked one's),
      "new" (mostly a name with no live entry: now and then an unlinked one's, a live one's, one no entry may have,
      or one at an edge of NAME_MAX), "to" (a rename's new name: as "new", or now and then the old name itself)."""

    n: int
    kind: str = "any"


#: the kinds of Pick that stand for names
NAME_PICKS = ("live", "new", "to")


def _pick(kind: str = "any") -> st.SearchStrategy[Pick]:
    return st.integers(0, 11 if kind in ("new", "to") else 7).map(lambda n: Pick(n, kind))


#: the sources a program maps: (file system, device, inode number), a few so that they meet
DEVICES, SOURCE_INODES = (1, 2), (7, 8)
SOURCES = [(fs, dev, src) for fs in FILE_SYSTEMS for dev in DEVICES for src in SOURCE_INODES]
files, devs, sources = st.sampled_from(FILE_SYSTEMS), st.sampled_from(DEVICES), st.sampled_from(SOURCE_INODES)
#: each operation's argument domains (after the name); the program steps are drawn from those a method implements
ARGUMENTS: dict[str, tuple[st.SearchStrategy, ...]] = {
    "add_inode": (st.sampled_from(("file", *KINDS)), st.sampled_from((0, 1000)), st.sampled_from(("", "a"))),
    "read_inode": (_pick(),),
    "update_inode": (_pick("held"), st.sampled_from(tuple(CHANGES))),
    "clear_inode": (_pick("unlinked"),),
    "map_inode": (_pick("held"), files, devs, sources),
    "map_lookup": (files, devs, sources),
    "number_dirent": (_pick("dir"), st.booleans()),
    "read_directory": (_pick("dir"), st.integers(0, 4)),
    "lookup_dirent": (_pick("dir"), _pick("live")),
    "add_dirent": (_pick("dir"), _pick("new"), _pick("held")),
    "rename_dirent": (_pick("dir"), _pick("live"), _pick("to")),
    "unlink_dirent": (_pick("dir"), _pick("live")),
    "read_file": (_pick("file"), st.sampled_from((0, 2)), st.sampled_from((1, 100))),
    "write_file": (_pick("file"), st.sampled_from((0, 2, 6)), st.sampled_from(("", "x", "hello"))),
    "set_symlink": (_pick("symlink"), st.sampled_from(("a", "../b", "/x/y"))),
    "read_symlink": (_pick("symlink"),),
    "statfs": (),
    EVICT: (_pick("mapped"),),
}
#: draws per step, relative to the others: the directory operations are where the contract is richest, and an
#: inode is released only by an Update Inode to no links and a Clear Inode after it
WEIGHT = {"add_inode": 3, "add_dirent": 6, "unlink_dirent": 3, "rename_dirent": 4, "lookup_dirent": 2,
          "number_dirent": 2, "update_inode": 2, "clear_inode": 2, "map_inode": 3, EVICT: 2}


def kinds(operations: frozenset[str], lifecycle: bool = True) -> list[str]:
    """The kinds of step a method can be given: the operations it implements (and, if `lifecycle`, the core's
    sequences; `reinit` only with a Release)."""
    out = [k for k in ARGUMENTS if set(NEEDS.get(k, (k,))) <= operations]
    if lifecycle:
        out += [name for name in LIFECYCLE if name != "reinit" or "release" in operations]
    return out


@functools.cache
def _step(kind: str) -> st.SearchStrategy[list]:
    return st.tuples(st.just(kind), *ARGUMENTS.get(kind, ())).map(list)


def programs(operations: frozenset[str], max_steps: int, lifecycle: bool = True) -> st.SearchStrategy[list]:
    """Programs of 1 to `max_steps` steps. The length is drawn first, evenly: left to itself, Hypothesis draws
    mostly short lists."""
    weighted = [k for k in kinds(operations, lifecycle) for _ in range(WEIGHT.get(k, 1))]
    step = st.sampled_from(weighted).flatmap(_step)
    return st.integers(1, max_steps).flatmap(lambda n: st.lists(step, min_size=n, max_size=n))
