"""The pmem family: pmemfile's syscall routing, a routed subject in lockstep with `model/pmem`."""

from __future__ import annotations

from vfslab.check.engine.family import Family, Job
from vfslab.check.pmem.program import FAMILY as NAME
from vfslab.check.pmem.program import RouteProgram
from vfslab.check.pmem.stateful import check_route_stateful, run_route_program
from vfslab.model.pmem import PROFILES, RULES
from vfslab.model.pmem.calls import CALLS


def settings(kind: str, params: dict, programs: tuple[dict, ...], profile: str) -> None:
    for spec in programs:
        RouteProgram.from_json(spec)


def stateful(job: Job) -> None:
    job.from_tally(check_route_stateful(job.subject, job.profile, seed=job.seed, budget=job.budget,
                                        scratch_root=job.scratch, database=job.database))


FAMILY = Family(NAME, RULES, PROFILES, "pmemfile", {"stateful": stateful, "program": Job.run_programs}, settings,
                program=RouteProgram, replay=run_route_program, operations=tuple(c.name for c in CALLS),
                default_subject="pmem-router")
