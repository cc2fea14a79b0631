"""The pmem family: pmemfile's syscall routing (a routed subject in lockstep with `model/pmem`), the pool's crash
consistency, damaged pools reopened, and the router's transparency (the kernel beside it)."""

from __future__ import annotations

import itertools
import shutil
from collections import Counter

from hypothesis import strategies as hs

from vfslab.check.engine.family import Family, Job
from vfslab.check.engine.generated import check_inputs
from vfslab.check.engine.kept import Kept, Replay
from vfslab.check.pmem import crash, damage, orphans, transparency
from vfslab.check.pmem.crash import CrashProgram
from vfslab.check.pmem.damage import DamageProgram
from vfslab.check.pmem.orphans import OrphanProgram
from vfslab.check.pmem.program import FAMILY as NAME
from vfslab.check.pmem.program import TRANSPARENCY, RouteProgram
from vfslab.check.pmem.stateful import alike_steps, check_route_stateful, pool_trees, resolve, run_route_program
from vfslab.model.pmem import LIMITS, PROFILES, RULES
from vfslab.model.pmem.calls import CALLS

#: fds a transparency program's calls name: among the first four its opens and dups returned
TRANSPARENCY_FDS = 4


class PmemProgram:
    """Reads a kept pmem program of any of the family's checks."""

    @staticmethod
    def from_json(data: dict) -> Kept:
        kept = {"crash": CrashProgram, damage.CHECK: DamageProgram, orphans.CHECK: OrphanProgram}.get(
            data.get("check"), RouteProgram)
        return kept.from_json(data)


def settings(kind: str, params: dict, programs: tuple[dict, ...], profile: str) -> None:
    for spec in programs:
        PmemProgram.from_json(spec)


def stateful(job: Job) -> None:
    job.from_tally(check_route_stateful(job.subject, job.profile, seed=job.seed, budget=job.budget,
                                        scratch_root=job.scratch, database=job.database))


def _generated(job: Job, strategy, check, fired: Counter | None = None) -> None:
    """Generated inputs, each checked in a scratch directory of its own; `fired`: the rules and edges the checks
    met, counted in the record's coverage."""
    count = itertools.count()

    def each(value):
        scratch = job.scratch / f"ex{next(count)}"
        try:
            return check(value, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    tally = check_inputs(strategy, each, seed=job.seed, budget=job.budget, database=job.database)
    tally.coverage.update(fired or {})
    job.from_tally(tally)


def crash_consistency(job: Job) -> None:
    """Programs on a pool crashed at every persist point: each recovery consistent, and all or nothing."""
    fired: Counter = Counter()

    def check(ops, scratch):
        found = crash.replay(CrashProgram(ops), scratch)
        fired.update(found.coverage)
        return None if found.failure is None else CrashProgram(ops, job.subject.name, job.profile, found.failure)

    _generated(job, crash.programs, check, fired)


def damaged(job: Job) -> None:
    """Populated pools damaged (a byte flipped, the file cut short) and reopened: refused in one line, or open and
    consistent or reporting corruption; never another exception."""

    def check(done, scratch):
        problem = damage.run(done, scratch)
        return None if problem is None else DamageProgram(done, job.subject.name, job.profile, problem)

    _generated(job, damage.damages, check)


def orphan_reclaim(job: Job) -> None:
    """Programs leaving orphans (files held open, unlinked) through the subject, whose pool is then closed
    uncleanly (its FUSE daemon, or the program's process with the router, SIGKILLed) and reopened: every orphan
    reclaimed, fsck clean, the tree and the free counts those of the same program closed cleanly."""
    fired: Counter = Counter()

    def check(ops, scratch):
        found = orphans.run(ops, job.subject, scratch)
        fired.update(found.fired)
        return None if found.problem is None else OrphanProgram(ops, job.subject.name, job.profile, found.problem)

    _generated(job, orphans.programs, check, fired)


def transparent(job: Job) -> None:
    """Programs through the router and on the kernel, side by side: the same results but named deviations; the
    rules and edges the compared calls met (as the routing model decides them) are the record's coverage."""
    fired: Counter = Counter()

    def check(drawn, scratch):
        pool, program = drawn
        program = resolve([call for step in program for call in step], 0, TRANSPARENCY_FDS)
        verdict = transparency.run(program, pool, scratch)
        fired.update(transparency.met(program[:verdict.steps], pool))
        if verdict.problem is None:
            return None
        return RouteProgram(pool, program, job.subject.name, job.profile, verdict.problem, TRANSPARENCY)

    _generated(job, hs.tuples(pool_trees, hs.lists(alike_steps, min_size=1, max_size=job.budget.steps)), check,
               fired)


def replay(program: Kept, subject, profile: str, scratch) -> Replay:
    if isinstance(program, CrashProgram):
        return crash.replay(program, scratch)
    if isinstance(program, DamageProgram):
        return damage.replay(program, scratch)
    if isinstance(program, OrphanProgram):
        return orphans.replay(program, subject, scratch)
    if program.check == TRANSPARENCY:
        return transparency.replay(program, scratch)
    return run_route_program(program, subject, profile, scratch)


FAMILY = Family(NAME, RULES, PROFILES, "pmemfile",
                {"stateful": stateful, "program": Job.run_programs, "crash": crash_consistency,
                 "damage": damaged, "orphans": orphan_reclaim, "transparency": transparent}, settings,
                program=PmemProgram, replay=replay, operations=tuple(c.name for c in CALLS),
                default_subject="pmem-router", limits=LIMITS)
