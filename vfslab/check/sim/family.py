"""The sim family: a simulated workload's schedules searched for deadlocks (kind `sim`), and the simulator's
verdicts held against real vmblock mounts (kind `crosscheck`)."""

from __future__ import annotations

from dataclasses import asdict, replace

from vfslab.check.engine.family import Family, Job
from vfslab.check.engine.kept import Replay
from vfslab.check.results import FAIL, PASS, Counterexample
from vfslab.crosscheck import crosscheck
from vfslab.sim import explore, timeline
from vfslab.sim.detect import PASS as SIM_PASS
from vfslab.sim.explore import Run
from vfslab.sim.study import Study, conduct, sim_search
from vfslab.sim.workloads import get
from vfslab.simulate import keep
from vfslab.subjects.vmblock import LIBFUSE_MAX_THREADS

NAME = timeline.FAMILY


def settings(kind: str, params: dict, programs: tuple[dict, ...], profile: str) -> Study | int:
    """A sim scenario's workload, search and design (a bad one is the scenario file's error); a crosscheck's
    worker cap."""
    if kind == "sim":
        return sim_search(params)
    return int(params.get("max_threads", LIBFUSE_MAX_THREADS))


def simulate(job: Job) -> None:
    study = replace(job.scenario.settings, seed=job.seed or job.scenario.settings.seed)
    result = conduct(study)
    r = job.record
    r.verdict, r.reason, r.examples = result.verdict, result.reason, result.schedules
    if result.run is not None:
        path = keep(result.run, study.workload.name, job.out / "sim", job.name)
        r.counterexample = Counterexample([], [{"params": result.run.params, "choices": result.run.choices}],
                                          result.reason, f"vfslab replay {path}", str(path),
                                          timeline.mermaid(result.run), result.reason, **wait_for(result.run),
                                          timeline=[asdict(step) for step in result.run.trace])


def wait_for(run: Run) -> dict:
    """The run's wait-for graph as data (its edges, which nodes are threads, its cycle), for reports to draw."""
    finding = run.finding
    if finding is None or not finding.blocked:
        return {}
    # detect.py names a thread by its name, a cancelled one followed by " (cancelled)", a resource "kind name"
    names = set(finding.world.threads.values())
    threads = [n for n in finding.graph if n in names or n.removesuffix(" (cancelled)") in finding.world.dead]
    return {"wait_for": [[a, b] for a, b in finding.graph.edges], "wait_for_threads": threads,
            "wait_for_cycle": finding.cycle}


def cross(job: Job) -> None:
    rows = crosscheck(job.subject, job.scratch, job.scenario.settings)
    r = job.record
    r.examples = len(rows)
    r.verdict = PASS if all(row.agree for row in rows) else FAIL
    r.reason = "; ".join(f"N={row.waiters}: simulated {row.simulated}, real {row.real}" for row in rows)


def replay_file(data: dict) -> Replay:
    """A saved run replayed in the simulator: its timeline, and the deadlock if it still ends in one."""
    name, params, choices, verdict = timeline.load(data)
    workload = get(name)
    run = explore.replay(workload, workload.params(params), choices)
    out = Replay(trace=[*timeline.describe(run).splitlines(), "timeline:", *timeline.timeline(run),
                        *(["at the end:", *timeline.state(run)] if timeline.state(run) else [])])
    if run.verdict != verdict:
        out.trace.append(f"the run now ends {run.verdict}; it was saved as {verdict}")
    if run.verdict != SIM_PASS:
        out.failure = timeline.describe(run).splitlines()[0]
    return out


FAMILY = Family(NAME, {}, {}, "", {"sim": simulate, "crosscheck": cross}, settings, replay_file=replay_file,
                default_subject="sim")
