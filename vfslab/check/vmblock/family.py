"""The vmblock family: concurrent clients of a vmblock in lockstep with `model/block`, and the deadlock probe."""

from __future__ import annotations

from dataclasses import dataclass

from vfslab.check.engine.family import Family, Job
from vfslab.check.results import DEADLOCK, PASS
from vfslab.check.vmblock.deadlock import probe
from vfslab.check.vmblock.program import FAMILY as NAME
from vfslab.check.vmblock.program import OPS, BlockProgram
from vfslab.check.vmblock.stateful import check_block_stateful, run_block_program
from vfslab.model.block import LIMITS, PROFILES, RULES
from vfslab.subjects.vmblock import LIBFUSE_MAX_THREADS


@dataclass(frozen=True)
class Settings:
    """[params]: of a deadlock scenario, `waiters`, readlinks that wait on one block, and `max_threads`, the
    daemon's worker cap; of a stateful one, `unprivileged`, the seed's unprivileged mode (any user may block)."""

    waiters: int = 0
    max_threads: int = LIBFUSE_MAX_THREADS
    unprivileged: bool = False


def settings(kind: str, params: dict, programs: tuple[dict, ...], profile: str) -> Settings:
    for spec in programs:
        BlockProgram.from_json(spec)
    s = Settings(int(params.get("waiters", 0)), int(params.get("max_threads", LIBFUSE_MAX_THREADS)),
                 bool(params.get("unprivileged", False)))
    if kind == "deadlock" and (s.waiters < 1 or s.max_threads < 1):
        raise ValueError("a deadlock scenario needs params waiters >= 1 and max_threads >= 1")
    return s


def stateful(job: Job) -> None:
    job.from_tally(check_block_stateful(job.subject, job.profile, seed=job.seed, budget=job.budget,
                                        scratch_root=job.scratch, database=job.database,
                                        unprivileged=job.scenario.settings.unprivileged))


def deadlock(job: Job) -> None:
    """N readlinks wait on a block, then it is deleted: do they all return?"""
    found = probe(job.subject, job.scratch, job.scenario.settings.waiters, job.scenario.settings.max_threads)
    job.record.examples, job.record.reason = 1, found.describe()
    job.record.verdict = DEADLOCK if found.deadlocked else PASS


FAMILY = Family(NAME, RULES, PROFILES, "vmblock",
                {"stateful": stateful, "program": Job.run_programs, "deadlock": deadlock}, settings,
                program=BlockProgram, replay=run_block_program, operations=OPS, default_subject="vmblock-fuse",
                limits=LIMITS)
