"""Hypothesis stateful checking of a vmblock: generated programs of concurrent clients, in lockstep with the model.

Each example mounts the subject on a target directory of a few names, then applies rules: control handles
opened, duplicated, written (add, delete, list, bad operations, paths to normalise, writes of PATH_MAX-1, PATH_MAX
and PATH_MAX+1 bytes), read (with buffers at the banner's edges) and closed; target entries created and removed
(one just looked up, then looked up again: the kernel may keep it); readlinks and notify reads started in the
background, from this process or a child of its own; lstat, readdir, /version. At the end every handle is closed,
so every waiting call must return. A failing example is shrunk by Hypothesis to a minimal program, which is kept.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from vfslab.check.engine.generated import Tally, check_generated
from vfslab.check.engine.kept import Replay
from vfslab.check.engine.race import WATCHDOG_SECONDS, Hang, Mismatch
from vfslab.check.vmblock.lockstep import BlockLockstep, start
from vfslab.check.vmblock.program import BlockOp, BlockProgram
from vfslab.model.block.rules import BANNER_LIMIT, PATH_LIMIT
from vfslab.subjects.driver import USER

NAMES = ("foo", "bar", "baz")
#: control descriptors per example, at most (opened or duplicated)
MAX_SLOTS = 4
#: calls waiting at once, at most: below the smallest worker cap checked, so no design deadlocks here (that is
#: the deadlock scenario's business)
MAX_WAITING = 4

names = st.sampled_from(NAMES)
_forms = st.sampled_from(("{{target}}/{n}", "{{target}}//{n}/", "{{target}}/{n}/"))
#: the operation letters, with unknown ones on both sides of `a` and `d` (a daemon comparing letters, not matching
#: them, mistakes one for the other)
texts = st.one_of(
    st.builds(lambda op, form, n: op + form.format(n=n), st.sampled_from("aaddlxb!"), _forms, names),
    st.sampled_from(("a", "l", "afoo", "a{target}/foo\0junk", "a" + "/z" * 2048)),
)
tree_paths = st.one_of(st.sampled_from(("", "dev", "blockdir", "notifydir", "version", "nothing")),
                       st.builds(lambda d, n: f"{d}/{n}", st.sampled_from(("blockdir", "notifydir")), names))
dir_paths = st.sampled_from(("", "blockdir", "notifydir"))
#: a limit's edges: one short of it, at it, one past it
offsets = st.sampled_from((-1, 0, 1))
#: reads of /dev: a page, too small for the banner, and the banner's edges
read_sizes = st.sampled_from((4096, 5, *(BANNER_LIMIT.value + o for o in (-1, 0, 1))))
#: who makes a call that may wait: this process, or now and then a child of its own
forks = st.sampled_from((False, False, True))


def make_machine(subject, profile: str, scratch_root: Path, tally: Tally, deadline: float,
                 watchdog_seconds: float, unprivileged: bool = False) -> type[RuleBasedStateMachine]:
    """A state machine class checking the vmblock `subject` held to `profile` (mounted in the unprivileged mode if
    asked), recording into `tally`."""

    class VMBlockMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.lock: BlockLockstep | None = None
            self.program = BlockProgram(())

        def _on(self) -> bool:
            return self.lock is not None

        def _slots(self) -> list[int]:
            return self.lock.client.open_slots() if self.lock else []

        def _slot(self, pick: int) -> int:
            slots = self._slots()
            return slots[pick % len(slots)]

        def _waiting(self) -> int:
            return sum(not c.done for c in self.lock.client.calls) if self.lock else 0

        @initialize(initial=st.sets(names, min_size=1), blocked=st.sampled_from((*NAMES, None)))
        def setup(self, initial: set[str], blocked: str | None) -> None:
            if tally.over(deadline):
                return
            tally.examples += 1
            scratch = scratch_root / f"ex{tally.examples}"
            shutil.rmtree(scratch, ignore_errors=True)
            self.program = BlockProgram(tuple(sorted(initial)), [], subject.name, profile, unprivileged=unprivileged)
            self.lock = start(subject, scratch, profile, self.program.names, watchdog_seconds, unprivileged)
            if blocked is not None:  # most examples start with a block on, so that waits are common
                self._do("open")
                self._do("write", 0, f"a{{target}}/{blocked}")

        @precondition(lambda self: self.lock is None)
        @rule()
        def out_of_budget(self) -> None:
            """The time budget is spent: examples from now on do nothing."""

        def _do(self, name: str, *args: object, uid: int = 0, forked: bool = False) -> None:
            op = BlockOp(name, args, uid, forked)
            self.program.ops.append(op)
            tally.steps += 1
            try:
                self.lock.step(op)
            except Mismatch as m:
                tally.hang = isinstance(m, Hang)
                self.program.message = str(m)
                tally.failure = self.program
                raise

        @precondition(lambda self: self._on() and len(self.lock.client.fds) < MAX_SLOTS)
        @rule()
        def open(self) -> None:
            self._do("open")

        # a second descriptor on an open control file: the same blocker, released with the last close
        @precondition(lambda self: self._slots() and len(self.lock.client.fds) < MAX_SLOTS)
        @rule(pick=st.integers(0, MAX_SLOTS))
        def dup(self, pick: int) -> None:
            self._do("dup", self._slot(pick))

        @precondition(lambda self: self._slots())
        @rule(pick=st.integers(0, MAX_SLOTS))
        def close(self, pick: int) -> None:
            self._do("close", self._slot(pick))

        @precondition(lambda self: self._slots())
        @rule(pick=st.integers(0, MAX_SLOTS), text=texts)
        def write(self, pick: int, text: str) -> None:
            self._do("write", self._slot(pick), text)

        # adding and deleting plain blocks get rules of their own, so that waits are common
        @precondition(lambda self: self._slots())
        @rule(pick=st.integers(0, MAX_SLOTS), name=names)
        def add(self, pick: int, name: str) -> None:
            self._do("write", self._slot(pick), f"a{{target}}/{name}")

        @precondition(lambda self: self._slots())
        @rule(pick=st.integers(0, MAX_SLOTS), name=names)
        def delete(self, pick: int, name: str) -> None:
            self._do("write", self._slot(pick), f"d{{target}}/{name}")

        # writes at the edges of PATH_MAX: the path padded with '/', which are collapsed, so that a write the daemon
        # takes adds (or deletes) the block on the name itself, and one it refuses leaves the name as it was
        @precondition(lambda self: self._slots())
        @rule(pick=st.integers(0, MAX_SLOTS), op=st.sampled_from("aad"), offset=offsets, name=names)
        def write_at_edge(self, pick: int, op: str, offset: int, name: str) -> None:
            self._do("write", self._slot(pick), f"{op}{{target}}{{slashes:{PATH_LIMIT.value + offset}}}{name}")

        @precondition(lambda self: self._slots())
        @rule(pick=st.integers(0, MAX_SLOTS), size=read_sizes)
        def read(self, pick: int, size: int) -> None:
            self._do("read", self._slot(pick), size)

        @precondition(_on)
        @rule(name=names)
        def touch(self, name: str) -> None:
            self._do("touch", name)

        @precondition(_on)
        @rule(name=names)
        def rm(self, name: str) -> None:
            self._do("rm", name)

        @precondition(lambda self: self._on() and self._waiting() < MAX_WAITING)
        @rule(name=names)
        def readlink(self, name: str) -> None:
            self._do("readlink", name)

        @precondition(lambda self: self._on() and self._waiting() < MAX_WAITING)
        @rule(name=names)
        def notify(self, name: str) -> None:
            self._do("notify", name)

        # another caller: a non-root open of the control file (root's only, unless unprivileged), and accesses
        # that a block of another user's does not hold (in the unprivileged mode)
        @precondition(lambda self: self._on() and len(self.lock.client.fds) < MAX_SLOTS)
        @rule()
        def open_as_user(self) -> None:
            self._do("open", uid=USER)

        @precondition(lambda self: self._on() and self._waiting() < MAX_WAITING)
        @rule(name=names, notify=st.booleans(), forked=forks)
        def access_as_user(self, name: str, notify: bool, forked: bool) -> None:
            self._do("notify" if notify else "readlink", name, uid=USER, forked=forked)

        def _blocked(self) -> list[str]:
            """Names the model holds a block on (so that a readlink or notify read of them waits)."""
            if not self._on() or self._waiting() >= MAX_WAITING:
                return []
            model = self.lock.models[self.lock.alive[0]]
            prefix = f"{model.options.target}/"
            return sorted({b.path.removeprefix(prefix) for b in model.blocks if b.path.startswith(prefix)})

        # waiting on a blocked name gets a rule of its own too
        @precondition(lambda self: self._blocked())
        @rule(pick=st.integers(0, len(NAMES)), notify=st.booleans(), forked=forks)
        def wait(self, pick: int, notify: bool, forked: bool) -> None:
            blocked = self._blocked()
            self._do("notify" if notify else "readlink", blocked[pick % len(blocked)], forked=forked)

        def _looked_up(self) -> list[str]:
            """Target names the kernel may hold an entry of (looked up, still there)."""
            if not self._on():
                return []
            model = self.lock.models[self.lock.alive[0]]
            return sorted(model.looked_up & model.target_names)

        # a name looked up, removed from the target and looked up again at once: a kernel that keeps entries (a
        # daemon on libfuse's high-level API) may still show it
        @precondition(lambda self: self._looked_up())
        @rule(pick=st.integers(0, len(NAMES)))
        def forget(self, pick: int) -> None:
            name = self._looked_up()[pick % len(self._looked_up())]
            self._do("rm", name)
            self._do("lstat", f"blockdir/{name}")

        @precondition(_on)
        @rule(path=tree_paths)
        def lstat(self, path: str) -> None:
            self._do("lstat", path)

        @precondition(_on)
        @rule(path=dir_paths)
        def readdir(self, path: str) -> None:
            self._do("readdir", path)

        @precondition(_on)
        @rule()
        def version(self) -> None:
            self._do("version")

        def teardown(self) -> None:
            if self.lock is None:
                return
            lock = self.lock
            try:
                if tally.failure is not self.program:
                    for slot in self._slots():  # every waiter must return once every handle is closed
                        self._do("close", slot)
            finally:
                tally.record(lock, lambda: BlockProgram(self.program.names, list(self.program.ops), subject.name,
                                                        profile, lock.why[profile], unprivileged))
                lock.close()

    return VMBlockMachine


def check_block_stateful(subject, profile: str, *, unprivileged: bool = False, **run) -> Tally:
    """Generated programs against a vmblock subject held to a profile (`run`: check_generated's keywords)."""
    return check_generated(partial(make_machine, unprivileged=unprivileged), subject, profile, **run)


def run_block_program(program: BlockProgram, subject, profile: str, scratch: Path,
                      watchdog_seconds: float = WATCHDOG_SECONDS) -> Replay:
    """Replay `program` in lockstep with the model."""
    out = Replay()
    lock = start(subject, scratch, profile, program.names, watchdog_seconds, program.unprivileged)
    try:
        for op in program.ops:
            out.trace.append(f"{op} -> {lock.step(op)!r}")
        out.trace += [f"{op} (at the end)" for op in lock.finish()]
    except Mismatch as m:
        out.failure = str(m)
    finally:
        lock.close()
    out.deviation, out.coverage = lock.deviation, dict(lock.coverage)
    return out
