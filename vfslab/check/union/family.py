"""The union family: the union model's profiles held to union mounts and plain file systems."""

from __future__ import annotations

from dataclasses import dataclass

from vfslab.check.engine.family import Family, Job
from vfslab.check.results import FAIL, PASS
from vfslab.check.union import edges, examples
from vfslab.check.union.program import FAMILY as NAME
from vfslab.check.union.program import Program, run_program
from vfslab.check.union.stateful import check_stateful, supported
from vfslab.model.union import PROFILES, RULES
from vfslab.model.union.ops import ALL_OPS
from vfslab.model.union.rules import LIMITS


@dataclass(frozen=True)
class Settings:
    """[params]: `ops`, the operations generated programs draw from; `long_names`, whether paths may end in a
    name over NAME_MAX."""

    ops: tuple[str, ...] = ALL_OPS
    long_names: bool = True


def settings(kind: str, params: dict, programs: tuple[dict, ...], profile: str) -> Settings:
    ops = tuple(params.get("ops", ALL_OPS))
    unknown = set(ops) - set(ALL_OPS)
    if unknown:
        raise ValueError(f"unknown operations {sorted(unknown)}")
    for spec in programs:
        examples.parse(spec, profile)
    return Settings(ops, bool(params.get("long_names", True)))


def stateful(job: Job) -> None:
    ops, job.record.skipped = supported(job.subject, job.scenario.settings.ops)
    job.from_tally(check_stateful(job.subject, job.profile, seed=job.seed, budget=job.budget,
                                  scratch_root=job.scratch, ops=ops, database=job.database,
                                  long_names=job.scenario.settings.long_names, placement=job.placement))


def at_edges(job: Job) -> None:
    """A program per edge of the model's limits (vfslab/check/union/edges.py)."""
    job.run_programs([p.to_json() for p in edges.programs(job.profile)])


def program(job: Job) -> None:
    """Explicit programs with the outcomes each profile expects, written out by hand."""
    r = job.record
    run = examples.check_examples(job.scenario.programs, job.subject, job.profile, job.scratch, job.placement)
    r.examples = len(job.scenario.programs)
    job.count(run.coverage)
    if run.problems:
        r.verdict = FAIL
        r.reason = f"{len(run.problems)} expectation(s) not met; first: {run.problems[0].splitlines()[0]}"
        r.counterexample = job.keep(run.failed)
    elif run.deviation:
        job.deviates([run.deviation])
    else:
        r.verdict = PASS


FAMILY = Family(NAME, RULES, PROFILES, "overlayfs", {"stateful": stateful, "program": program, "edges": at_edges},
                settings,
                program=Program, replay=run_program, operations=ALL_OPS, default_subject="model", placed=True,
                limits=LIMITS)
