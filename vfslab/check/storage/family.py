"""The storage family: ovlfs storage methods (seed 002) held to `model/storage`, in lockstep (kind `contract`) and
crashed at every persist point (kind `crash`)."""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from pathlib import Path

from vfslab.check.engine.family import Family, Job
from vfslab.check.engine.generated import check_inputs
from vfslab.check.engine.kept import Kept, Replay
from vfslab.check.results import UNAVAILABLE
from vfslab.check.storage.checker import run, which_check
from vfslab.check.storage.program import CRASH, READ_ONLY, StorageProgram, kinds, programs
from vfslab.check.storage.program import FAMILY as NAME
from vfslab.model.storage import OPERATIONS, PROFILES, RULES
from vfslab.model.storage.rules import LIMITS
from vfslab.subjects.storage import DIR, StorageSubject


def settings(kind: str, params: dict, programs: tuple[dict, ...], profile: str) -> None:
    for spec in programs:
        StorageProgram.from_json(spec)


def check(job: Job, how: str) -> None:
    """Generated programs run by the check `how` on fresh storage each; the first failure shrunk and kept."""
    subject: StorageSubject = job.subject
    writer = DIR if how == READ_ONLY else subject
    fired, steps, count = Counter(), Counter(), itertools.count()

    def each(ops: list) -> Kept | None:
        scratch = job.scratch / f"ex{next(count)}"
        try:
            found = run(StorageProgram(ops, subject.method, how), subject, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        fired.update(found.coverage)
        steps["steps"] += found.steps
        if found.failure is None:
            return None
        return StorageProgram(found.ops, subject.method, how, subject.name, job.profile, found.failure)

    tally = check_inputs(programs(writer.operations, job.budget.steps), each, seed=job.seed, budget=job.budget,
                         database=job.database)
    tally.coverage.update(fired)
    tally.steps = steps["steps"]
    job.from_tally(tally)


def contract(job: Job) -> None:
    """The contract in lockstep: of all of ovlfs's requirements, or read back with the bare minimum."""
    try:
        how = which_check(job.subject.operations)
    except ValueError as e:
        job.record.reason = str(e)
        return
    check(job, how)


def crash(job: Job) -> None:
    """Programs crashed at every persist point: what Init finds after is the state before or after the step."""
    if not hasattr(job.subject.cls(), "crash_at"):
        job.record.verdict, job.record.reason = UNAVAILABLE, f"{job.subject.name} has no crash hook (crash_at)"
        return
    check(job, CRASH)


def replay(program: Kept, subject: StorageSubject, profile: str, scratch: Path) -> Replay:
    return run(program, subject.bound(program.method), scratch).replay()


FAMILY = Family(NAME, RULES, PROFILES, "ovlfs", {"contract": contract, "crash": crash, "program": Job.run_programs},
                settings, program=StorageProgram, replay=replay,
                operations=tuple(k for k in kinds(frozenset(OPERATIONS)) if k not in ("init", "release")),
                default_subject=DIR.name, limits=LIMITS)
