"""Hypothesis stateful checking of routing: generated programs, in lockstep with the routing model.

Each example starts a subject with a generated pool tree at /P under the fixed kernel tree (program.py), then
applies calls: relative and absolute paths, symlinks into and out of the pool, `..` across the mount point, the
cwd inside and outside it, dup'ed fds. A failing example is shrunk by Hypothesis to a minimal program, which is
kept.
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
from vfslab.model.pmem.calls import CALLS
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
calls = st.one_of(*(st.tuples(st.just(c.name), *(DOMAINS[d] for d in c.args if not d.endswith("?")))
                    for c in CALLS for _ in range(WEIGHT.get(c.name, 1)))).map(list)


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
        @rule(call=calls)
        def call(self, call: list) -> None:
            slots = len(self.lock.returned) + 1
            call = [f"#{a.n % slots}" if isinstance(a, Pick) else a for a in call]
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
