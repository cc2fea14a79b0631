"""One subject mounted over one initial tree, with the model in lockstep: the unit every check runs in."""

from __future__ import annotations

import errno as E
import shutil
from pathlib import Path

from vfslab.check.engine.race import WATCHDOG_SECONDS, Mismatch, guarded
from vfslab.check.union.lockstep import Lockstep
from vfslab.model.outcome import Err
from vfslab.model.union import profiles as union_profiles
from vfslab.model.union.ops import LOOKS_ONLY, Op
from vfslab.subjects.placement import SAME
from vfslab.subjects.tree import Layers
from vfslab.subjects.walk import Unbounded


class Session:
    def __init__(self, subject, profile: str, layers: Layers, scratch: Path,
                 watchdog_seconds: float = WATCHDOG_SECONDS, placement: str = SAME) -> None:
        self.scratch = scratch
        self.watchdog_seconds = watchdog_seconds if subject.capabilities.can_hang else None
        scratch.mkdir(parents=True, exist_ok=True)
        scratch.chmod(0o755)  # a non-root caller reaches the mount through it
        # a subject is asked to place its layers only when it is asked to place them elsewhere than usual
        where = {} if placement == SAME else {"placement": placement}
        self.mounted = subject.setup(layers, scratch, profile, **where)
        try:
            self.driver = self.mounted.driver()
        except BaseException:
            self.mounted.teardown()
            raise
        self.last_upper = None
        self.lock = Lockstep(layers, self.driver, self.mounted, profile, subject.capabilities.overlay_format,
                             one_fs=placement == SAME)
        #: lookups write nothing under this profile: a walk after a call that only looked, or that failed as the
        #: model says it fails, can wait
        self.pure = not union_profiles.get(profile).lookups_write
        self.unchecked = False  # such a call has not been followed by a walk yet
        self.unchecked_disk = False  # and one of them may write the upper layer (a failed rename copies up first)

    def _guarded(self, what: str, call):
        return guarded(self.watchdog_seconds, self.mounted.abort, f"step {self.lock.steps}: {what}", call)

    def check(self, disk: bool = True) -> None:
        """Compare the whole state of the subject (and, if `disk`, its upper layer) with the model's."""
        try:
            union, upper = self._guarded("walking the mount", lambda: self.mounted.observe(disk))
        except Unbounded as e:
            raise Mismatch(f"after step {self.lock.steps}: the mount shows {e}: more than its layers hold") from None
        except OSError as e:  # the subject misbehaving, as any other difference: a failure, shrunk and replayable
            where = f" at {e.filename}" if e.filename else ""
            raise Mismatch(f"after step {self.lock.steps}: walking the mount failed{where}: "
                           f"{E.errorcode.get(e.errno, e.errno)} ({e.strerror})") from None
        if upper is not None:
            self.last_upper = upper
        self.unchecked = False
        self.unchecked_disk &= not disk
        self.lock.check_state(union, upper)

    def begin(self) -> None:
        """The walk of the tree as mounted. On a profile whose lookups write nothing it waits, as after a call that
        only looked, for the first call that changes something or for `finish`, and then takes the upper layer
        on disk with it: a tree mounted wrong stays wrong until a call changes it."""
        if self.pure:
            self.unchecked = self.unchecked_disk = True
        else:
            self.check()

    def step(self, op: Op) -> object:
        """Apply one op to the subject and the models, then compare the whole visible state; the upper layer on
        disk is compared after every op that may write to it.

        On a profile whose lookups write nothing, after a call that only looks (stat, readdir, read...) or one that
        failed (its errno already compared: as the model says), the walk waits for the next call that succeeds in
        changing something, or for `finish`: what such a call wrote is still caught, a step or so later (a walk
        through a FUSE mount is most of a step's cost, and two writing calls in three fail)."""
        result = self._guarded(str(op), lambda: self.lock.step(op))
        writes = op.name not in LOOKS_ONLY
        if self.pure and (not writes or isinstance(result, Err)):
            self.unchecked = True
            self.unchecked_disk |= writes
        else:
            self.check(disk=writes or self.unchecked_disk)
        return result

    def finish(self) -> None:
        """The end of a program: the walk the calls that only looked or failed left waiting."""
        if self.unchecked:
            self.check(disk=self.unchecked_disk)

    def close(self) -> None:
        try:
            self.driver.release()
        finally:
            self.mounted.teardown()
            shutil.rmtree(self.scratch, ignore_errors=True)
