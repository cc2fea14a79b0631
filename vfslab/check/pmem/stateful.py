"""Hypothesis stateful checking of routing: generated programs, in lockstep with the routing model.

Each example starts a subject with a generated pool tree at /P under the fixed kernel tree (program.py), then
applies steps: single calls (relative and absolute paths, symlinks into and out of the pool, `..` across the mount
point, the cwd inside and outside it, dup'ed fds), and sequences of calls that single calls drawn at random almost
never make: names, paths and symlink chains at NAME_MAX, PATH_MAX and MAXSYMLINKS and one past, the cwd moved into
the pool, calls on the mount point and on an empty path, an lseek on a directory's fd, and what two fds share
(docs/pmem.md). A failing example is shrunk by Hypothesis to a minimal program, which is kept.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from vfslab.check.engine.generated import Tally, check_generated
from vfslab.check.engine.kept import Replay
from vfslab.check.engine.race import WATCHDOG_SECONDS, Hang, Mismatch
from vfslab.check.pmem.lockstep import RouteLockstep, start
from vfslab.check.pmem.program import RouteProgram, show_call
from vfslab.model.limits import Limit
from vfslab.model.pmem.calls import CALLS, FD_CALLS
from vfslab.model.pmem.rules import LINK_LIMIT, NAME_LIMIT, PATH_LIMIT
from vfslab.subjects.tree import DIR, FILE, SYMLINK, Node

#: the pool's possible entries (a tree is a subset, parents kept)
POOL_NODES = (
    Node("a", FILE, 0o644, data=b"hello\n"), Node("d", DIR, 0o755), Node("d/b", FILE, 0o644, data=b"bee\n"),
    Node("e", DIR, 0o755), Node("lk", SYMLINK, 0o777, target="/k/f"), Node("lp", SYMLINK, 0o777, target="../k/f"),
    Node("ld", SYMLINK, 0o777, target="d"), Node("loop", SYMLINK, 0o777, target="loop"),
    Node("lroot", SYMLINK, 0o777, target="/"), Node("d/up", SYMLINK, 0o777, target="../.."),
)


def _tree(chosen: set[int]) -> tuple[Node, ...]:
    names = {POOL_NODES[i].path for i in chosen}
    return tuple(n for i, n in enumerate(POOL_NODES)
                 if i in chosen and ("/" not in n.path or n.path.rsplit("/", 1)[0] in names))


pool_trees = st.sets(st.integers(0, len(POOL_NODES) - 1)).map(_tree)
paths = st.sampled_from([
    "P/a", "P/d", "P/d/b", "P/d/..", "P/../k/f", "k/toP/a", "/P/d/b", "P/lk", "P/lp", "P/ld/b", "P/ld/", "P/loop",
    "P/lroot/k", "P/d/up/k/f", "P/new", "P/d/new", "P/e/", "k/new", "k/f", "k/f/", "k", "P", "P/", "/P", "P/a/",
    "", "nope", "P/d/../../k", ".", "..", "/", "a", "d/b", "b", "../a", "../../k/f", "new", "new/",
    "P/" + "n" * 256, "/" + "x/" * 2048,
])
targets = st.sampled_from(["a", "../k/f", "/k/f", "/P/a", "d", "nowhere", "..", "/P"])
flags = st.sampled_from([os.O_RDONLY, os.O_WRONLY | os.O_CREAT, os.O_RDWR | os.O_CREAT | os.O_EXCL,
                         os.O_RDONLY | os.O_DIRECTORY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                         os.O_RDONLY | os.O_NOFOLLOW, os.O_RDWR, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW])


@dataclass(frozen=True)
class Pick:
    """An fd argument, drawn before the program has any: the machine makes it `#(n mod k+1)` for the k fds
    returned so far, so that most name a real one (and the last choice none: EBADF)."""

    n: int


@dataclass(frozen=True)
class Last:
    """An fd argument naming the fd the program's latest open, dup or dup2 returned (`k` = 1: the one before it):
    what a sequence of calls on one file is written with."""

    k: int = 0


fds = st.builds(Pick, st.integers(0, 7))
#: names that mostly exist, for opens (most fd calls should have an fd to work on)
files = st.sampled_from(["P/a", "P/d/b", "k/f", "P/lk", "P/lp", "P/ld/b", "k/toP/a", "/P/d", "P/new", "k/new"])
#: what each argument domain of the call table (`model/pmem/calls.py`) draws; optional arguments are left out
DOMAINS = {
    "path": paths, "open-path": st.one_of(files, files, paths), "flags": flags, "fd": fds,
    "size": st.sampled_from([1, 100]), "data": st.just("data"), "offset": st.sampled_from([0, 2, -1]),
    "whence": st.sampled_from([os.SEEK_SET, os.SEEK_END]), "target": targets,
}
#: draws per call, relative to the others: most fd calls should have an fd to work on
WEIGHT = {"open": 3}
_singles = [st.tuples(st.just(c.name), *(DOMAINS[d] for d in c.args if not d.endswith("?"))).map(list)
            for c in CALLS for _ in range(WEIGHT.get(c.name, 1))]
#: one call
calls = st.one_of(*_singles)


# ---- sequences: what one call drawn at random almost never does ------------------------------------------------

def pad(path: str, size: int, filler: str = "./") -> str:
    """`path` made `size` bytes long with `filler` (`./`, or `é/`: bytes are counted, not characters) repeated
    before its first name, and a `/` or two more if need be."""
    head = "/" if path.startswith("/") else ""
    width = len(filler.encode())
    times, rest = divmod(size - len(path.encode()), width)
    if times < 1:
        raise ValueError(f"cannot pad {path!r} to {size} bytes")
    return head + filler + "/" * rest + filler * (times - 1) + path[len(head):]


def _at_limit(limit: Limit) -> st.SearchStrategy:
    """Some of limit-1, limit and limit+1, in order: half the draws all three (a sequence drawn reaches all of a
    limit's edges), the others some of them (what a failure shrinks to: one)."""
    edges = [limit.value - 1, limit.value, limit.value + 1]
    return st.one_of(st.sets(st.sampled_from(edges), min_size=1).map(sorted), st.just(edges))


#: directories the names at NAME_MAX are made and looked up in: the pool's and the kernel's (whose own answers
#: the kernel gives: pmem-fuse, and the transparency check's kernel side)
LIMIT_DIRS = ("/P", "/k", "/P/d")
_name_calls = {
    "stat": lambda d, name: ["stat", f"{d}/{name}"],
    "mkdir": lambda d, name: ["mkdir", f"{d}/{name}"],
    "create": lambda d, name: ["open", f"{d}/{name}", os.O_WRONLY | os.O_CREAT],
    "rename": lambda d, name: ["rename", "/P/a" if d.startswith("/P") else "/k/f", f"{d}/{name}"],
    "inner": lambda d, name: ["lstat", f"{d}/{name}/.."],
}
#: components of NAME_MAX-1, NAME_MAX or NAME_MAX+1 bytes, last or before the last, made or looked up
name_edges = st.builds(lambda how, d, sizes: [_name_calls[how](d, "m" * n) for n in sizes],
                       st.sampled_from(sorted(_name_calls)), st.sampled_from(LIMIT_DIRS), _at_limit(NAME_LIMIT))
#: paths of PATH_MAX-2, PATH_MAX-1 or PATH_MAX bytes (PATH_MAX-1, PATH_MAX, PATH_MAX+1 with the NUL), padded with
#: `./` (or with `é/`, fewer characters than bytes): into the pool, through the kernel's symlink to it, in the
#: kernel, relative and absolute
path_edges = st.builds(
    lambda call, path, filler, sizes: [[call, pad(path, n - 1, filler)] + ([os.O_RDONLY] if call == "open" else [])
                                       for n in sizes],
    st.sampled_from(["stat", "lstat", "open", "mkdir"]),
    st.sampled_from(["/P/a", "P/d/b", "/k/f", "/P/new", "k/toP/a", "P/ld/b"]), st.sampled_from(["./", "./", "é/"]),
    _at_limit(PATH_LIMIT))
#: lookups that follow MAXSYMLINKS-1, MAXSYMLINKS or MAXSYMLINKS+1 symlinks: a symlink to `.`, repeated
link_edges = st.builds(
    lambda where, call, tail, sizes: [["symlink", ".", f"{where}/dot"],
                                      *([call, f"{where}/" + "dot/" * n + tail] for n in sizes)],
    st.sampled_from(["/P", "/k", "/P/d"]), st.sampled_from(["stat", "lstat", "readdir"]),
    st.sampled_from([".", "a", "f", "b"]), _at_limit(LINK_LIMIT))
#: the cwd moved into the pool (or out of it, or onto a file: ENOTDIR), a name relative to it, and maybe back to `/`
cwd_moves = st.builds(
    lambda where, call, back: [["chdir", where], ["getcwd"], call, *([["chdir", back]] if back else [])],
    st.sampled_from(["P", "/P/d", "k/toP", "P/ld", "/P/d/up", "/P/e", "P/a", "/k/f", "P/lk"]),
    st.sampled_from([["stat", "b"], ["open", "a", os.O_RDONLY], ["readdir", "."], ["stat", "../k/f"],
                     ["mkdir", "sub"], ["chdir", ".."]]),
    st.sampled_from(["/", "..", ""]))
#: a symlink in the pool to an absolute target, made and then followed (pmem.symlink.absolute: the walk restarts
#: at the kernel's root, even from inside a pool)
absolute_links = st.builds(
    lambda target, then: [["symlink", target, "/P/abs"], [*then[:1], "/P/abs" + then[1], *then[2:]]],
    st.sampled_from(["/k/f", "/k", "/P/d", "/", "/P"]),
    st.sampled_from([["stat", ""], ["readdir", ""], ["open", "", os.O_RDONLY], ["stat", "/toP"], ["chdir", ""],
                     ["stat", "/f"], ["lstat", "/"]]))
#: a call on the mount point itself, named directly, through the kernel's symlink to it, or with a `/` after it
#: (pmem.route.mount-point: the kernel's answers, EBUSY to remove or rename it)
mount_points = st.builds(
    lambda call, at: [{"rmdir": ["rmdir", at], "unlink": ["unlink", at], "mkdir": ["mkdir", at],
                       "away": ["rename", at, "/k/moved"], "onto": ["rename", "/k/f", at],
                       "dir-onto": ["rename", "/k", at], "link": ["link", "/P/a", at]}[call]],
    st.sampled_from(["rmdir", "unlink", "mkdir", "away", "onto", "dir-onto", "link"]),
    st.sampled_from(["P", "/P", "P/", "k/toP", "k/toP/", "/P/d/.."]))
#: a call given an empty path, where the router and the kernel differ (pmem.path.empty, pmem.path.empty-posix)
empty_paths = st.sampled_from([["stat", ""], ["lstat", ""], ["open", "", os.O_RDONLY], ["mkdir", ""],
                               ["unlink", ""], ["rmdir", ""], ["chdir", ""], ["readlink", ""], ["readdir", ""],
                               ["rename", "", "/P/x"], ["rename", "/P/a", ""], ["link", "/P/a", ""],
                               ["symlink", "a", ""]]).map(lambda call: [call])
#: an lseek on a directory's fd (pmem.fd.dir-offset): a directory opened, then sought
dir_seeks = st.builds(lambda d, offset, whence: [["open", d, os.O_RDONLY | os.O_DIRECTORY],
                                                 ["lseek", Last(), offset, whence]],
                      st.sampled_from(["/P", "/P/d", "/k", "P/ld", "k/toP", "/P/e"]), st.sampled_from([0, 2]),
                      st.sampled_from([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END]))
#: files a sequence works on: the pool's (directly and through symlinks) and the kernel's
SHARED_FILES = ("/P/a", "/P/d/b", "/k/f", "P/ld/b", "k/toP/a")
_shared = {
    # dup'ed fds share one offset: a read through one moves the other
    "dup": lambda f, other: [["open", f, os.O_RDWR], ["dup", Last()], ["read", Last(1), 2], ["read", Last(), 100]],
    "dup2": lambda f, other: [["open", f, os.O_RDONLY], ["dup2", Last(), 9], ["lseek", Last(), 3, os.SEEK_SET],
                              ["read", Last(1), 100], ["close", Last()]],
    # two opens of one file: two offsets, one file's data (a write through one is read through the other)
    "two-opens": lambda f, other: [["open", f, os.O_RDWR], ["open", f, os.O_RDONLY], ["write", Last(1), "data"],
                                   ["read", Last(), 100], ["fstat", Last()]],
    # an open file keeps its data across a rename and an unlink of its name
    "renamed": lambda f, other: [["open", f, os.O_RDWR], ["rename", f, other], ["write", Last(), "more"],
                                 ["lseek", Last(), 0, os.SEEK_SET], ["read", Last(), 100], ["fstat", Last()]],
    "unlinked": lambda f, other: [["open", f, os.O_RDWR], ["unlink", f], ["write", Last(), "more"],
                                  ["lseek", Last(), 0, os.SEEK_SET], ["read", Last(), 100], ["fstat", Last()],
                                  ["close", Last()]],
}
#: what two fds of one process share (docs/pmem.md, what is shared), each seen through the other fd; a rename
#: stays in the file's file system (across, it is EXDEV: pmem.xdev's business)
shared = st.builds(lambda how, f, other: _shared[how](f, "/k/moved" if f == "/k/f" else other),
                   st.sampled_from(sorted(_shared)), st.sampled_from(SHARED_FILES),
                   st.sampled_from(["/P/moved", "/P/d/moved"]))
#: calls that each decide by one of the routing rules single calls seldom meet, whatever the pool's tree (they name
#: the kernel's tree, the mount point and names that are never made): rule -> its sequences of calls
SELDOM = {
    "pmem.path.walk": [[["stat", "/P/nope/x"]], [["stat", "/k/f/x"]], [["open", "/k/nope/x", os.O_RDONLY]]],
    "pmem.path.root-dotdot": [[["stat", "/../k"]], [["readdir", "/.."]], [["lstat", "/../../P"]]],
    "pmem.path.trailing-slash": [[["stat", "/k/f/"]], [["unlink", "/k/f/"]], [["symlink", "x", "/k/nope/"]],
                                 [["open", "/P/nope/", os.O_WRONLY | os.O_CREAT]]],
    "pmem.path.dot-last": [[["mkdir", "/P/."]], [["rmdir", "/P/.."]], [["unlink", "/k/."]], [["rmdir", "/k/."]],
                           [["rename", "/k/.", "/k/x"]], [["symlink", "x", "/P/.."]], [["link", "/k/f", "/"]]],
    "pmem.route.dotdot": [[["stat", "/P/../k/f"]], [["readdir", "/P/.."]], [["lstat", "/k/toP/../k"]]],
    "pmem.route.mount-point": [[["rmdir", "/P"]], [["rename", "/P", "/k/x"]], [["mkdir", "/k/toP/"]]],
    "pmem.symlink.follow": [[["stat", "/k/toP"]], [["readdir", "/k/toP/"]]],
    "pmem.symlink.absolute": [[["symlink", "/k", "/P/kabs"], ["stat", "/P/kabs/f"]]],
    "pmem.xdev": [[["rename", "/k/f", "/P/kf"]], [["link", "/k/f", "/P/kf"]], [["rename", "/P/nope", "/k/x"]]],
    "pmem.fd.dup": [[["open", "/k/f", os.O_RDONLY], ["dup", Last()], ["read", Last(1), 3], ["read", Last(), 100],
                     ["close", Last()], ["close", Last(1)]]],
    "pmem.fd.dir-offset": [[["open", "/P", os.O_RDONLY | os.O_DIRECTORY], ["lseek", Last(), 0, os.SEEK_SET],
                            ["close", Last()]]],
    "pmem.cwd.virtual": [[["chdir", "/P"], ["getcwd"], ["chdir", "/"]]],
    "pmem.cwd.notdir": [[["chdir", "/k/f"]]],
}
#: where the router and a plain kernel directory at /P answer differently by design (the transparency check's named
#: deviations, which end its comparison)
DEVIATING = ("pmem.xdev", "pmem.route.mount-point")


def _seldom(rules: list[str]) -> st.SearchStrategy:
    """Some of the seldom `rules`, each decided once (a failure shrinks to one)."""
    return st.sets(st.sampled_from(rules), min_size=1).flatmap(
        lambda chosen: st.tuples(*(st.sampled_from(SELDOM[r]) for r in sorted(chosen)))).map(
        lambda calls: [call for sequence in calls for call in sequence])


SEQUENCES = (name_edges, path_edges, link_edges, cwd_moves, absolute_links, dir_seeks, shared)
#: one step of a program: one call, or (about one step in three) a sequence; a list of calls either way
steps = st.one_of(*(c.map(lambda call: [call]) for c in _singles), *SEQUENCES, mount_points, empty_paths,
                  _seldom(sorted(SELDOM)))
#: the same, but for the sequences that end a transparency check at a named deviation, and with the limits' edges
#: three times as often (its programs are fewer and shorter): what the router and the kernel are compared on
alike_steps = st.one_of(*(c.map(lambda call: [call]) for c in _singles), *SEQUENCES, *(name_edges, path_edges,
                                                                                       link_edges) * 2,
                        _seldom(sorted(set(SELDOM) - set(DEVIATING))))


def resolve(step: list[list], returned: int, slots: int | None = None) -> list[list]:
    """A step's calls with its fd arguments as `#i`, for a program whose opens and dups returned `returned` fds so
    far: a `Pick` names one of them or none (modulo `slots`, default one more than there are), a `Last` the
    latest ones (counted as the step goes: each of its own opens and dups is taken to return one)."""
    out = []
    for call in step:
        fixed = []
        for a in call:
            if isinstance(a, Pick):
                a = f"#{a.n % (slots or returned + 1)}"
            elif isinstance(a, Last):
                a = f"#{returned - 1 - a.k if returned > a.k else returned}"  # none yet: one not returned (EBADF)
            fixed.append(a)
        out.append(fixed)
        returned += call[0] in FD_CALLS
    return out


def make_machine(subject, profile: str, scratch_root: Path, tally: Tally, deadline: float,
                 watchdog_seconds: float) -> type[RuleBasedStateMachine]:
    """A state machine class checking the routed `subject` held to `profile`, recording into `tally`."""

    class RoutingMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.lock: RouteLockstep | None = None
            self.program = RouteProgram(())

        @initialize(pool=pool_trees)
        def setup(self, pool: tuple[Node, ...]) -> None:
            if tally.over(deadline):
                return
            tally.examples += 1
            scratch = scratch_root / f"ex{tally.examples}"
            shutil.rmtree(scratch, ignore_errors=True)
            self.program = RouteProgram(pool, [], subject.name, profile)
            self.lock = start(subject, scratch, profile, pool, watchdog_seconds)

        @precondition(lambda self: self.lock is None)
        @rule()
        def out_of_budget(self) -> None:
            """The time budget is spent: examples from now on do nothing."""

        @precondition(lambda self: self.lock is not None)
        @rule(step=steps)
        def call(self, step: list[list]) -> None:
            for each in step:  # each call's fds among the ones returned so far
                (call,) = resolve([each], len(self.lock.returned))
                self.program.ops.append(call)
                tally.steps += 1
                try:
                    self.lock.step(call)
                except Mismatch as m:
                    tally.hang = isinstance(m, Hang)
                    self.program.message = str(m)
                    tally.failure = self.program
                    raise

        def teardown(self) -> None:
            if self.lock is None:
                return
            lock = self.lock
            tally.record(lock, lambda: RouteProgram(self.program.pool, list(self.program.ops), subject.name, profile,
                                                    lock.why[profile]))
            lock.close()

    return RoutingMachine


#: generated programs against a routed subject held to a profile (check_generated's arguments after the first)
check_route_stateful = partial(check_generated, make_machine)


def run_route_program(program: RouteProgram, subject, profile: str, scratch: Path,
                      watchdog_seconds: float = WATCHDOG_SECONDS) -> Replay:
    """Replay `program` in lockstep with the model."""
    out = Replay()
    lock = start(subject, scratch, profile, program.pool, watchdog_seconds)
    try:
        for call in program.ops:
            out.trace.append(f"{show_call(call)} -> {lock.step(call)!r}")
    except Mismatch as m:
        out.failure = str(m)
    finally:
        lock.close()
    out.deviation, out.coverage = lock.deviation, dict(lock.coverage)
    return out
