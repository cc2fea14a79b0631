"""`vfslab run`: every scenario against every chosen subject, into a Results record."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from vfslab import __version__
from vfslab.check.examples import check_examples
from vfslab.check.pmem.program import RouteProgram
from vfslab.check.pmem.stateful import check_route_stateful, run_route_program
from vfslab.check.results import (
    DEADLOCK,
    ERROR,
    FAIL,
    HANG,
    PASS,
    UNAVAILABLE,
    Counterexample,
    Record,
    Results,
    RunMeta,
    deviation,
)
from vfslab.check.stateful import Budget, Tally, check_stateful
from vfslab.check.vmblock.deadlock import probe
from vfslab.check.vmblock.program import BlockProgram
from vfslab.check.vmblock.stateful import check_block_stateful, run_block_program
from vfslab.crosscheck import crosscheck
from vfslab.model.block import PROFILES as BLOCK_PROFILES
from vfslab.model.block import RULES as BLOCK_RULES
from vfslab.model.pmem import PROFILES as PMEM_PROFILES
from vfslab.model.pmem import RULES as PMEM_RULES
from vfslab.model.union import PROFILES, RULES
from vfslab.sim import timeline
from vfslab.sim.study import conduct, sim_search
from vfslab.simulate import keep
from vfslab.subjects import SUBJECTS, mounts
from vfslab.suite import Scenario


@dataclass
class Options:
    subjects: tuple[str, ...] = ()
    profile: str | None = None
    seed: int = 0
    budget: float | None = None  # seconds per scenario and subject, overriding the scenarios'
    examples: int | None = None
    out: Path = Path("out")


def _command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _meta(seed: int) -> RunMeta:
    here = Path(__file__).resolve().parent.parent
    libfuse = re.search(r"version:?\s*([\d.]+)", _command_output(["fusermount3", "--version"]))
    return RunMeta(
        vfslab_version=__version__,
        git_sha=_command_output(["git", "-C", str(here), "rev-parse", "--short", "HEAD"]),
        seed=seed,
        kernel=os.uname().release,
        libfuse=libfuse.group(1) if libfuse else "",
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def _replay_command(path: Path, subject: str, profile: str) -> str:
    return f"vfslab replay {path} --subject {subject} --profile {profile}"


def _save(program, out: Path, name: str) -> Counterexample:
    """Keep a program (union, vmblock or pmem) as JSON and as a regression scenario; the counterexample citing it."""
    folder = out / "programs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    program.write(path)
    (folder / f"{name}.toml").write_text(program.to_scenario(name))
    data = program.to_json()
    return Counterexample(data["layers"], data["ops"], program.message,
                          _replay_command(path, program.subject, program.profile), str(path))


@dataclass(frozen=True)
class Family:
    """What a scenario's model brings: its rules (for coverage) and its profiles (for deviations)."""

    rules: dict[str, str]
    profiles: dict


FAMILIES = {"union": Family(RULES, PROFILES), "vmblock": Family(BLOCK_RULES, BLOCK_PROFILES),
            "pmem": Family(PMEM_RULES, PMEM_PROFILES)}


def _coverage(fired: dict[str, int], family: Family) -> dict[str, int]:
    """Every rule with how often it decided an outcome: a rule at 0 never fired in this scenario."""
    return {rule: fired.get(rule, 0) for rule in family.rules}


def _deviates(record: Record, profiles: list[str], family: Family, differences: Counter | None = None) -> None:
    record.deviations = profiles
    record.verdict = deviation(profiles[0])
    record.reason = f"allowed under {profiles[0]}: {family.profiles[profiles[0]].description}"
    if differences:
        record.reason += "; differences seen: " + ", ".join(f"{rule} x{n}" for rule, n in differences.most_common())


def _from_tally(record: Record, tally: Tally, family: Family, options: Options, name: str) -> None:
    record.examples, record.steps, record.coverage = tally.examples, tally.steps, _coverage(tally.coverage, family)
    if tally.failure is not None:
        record.verdict = HANG if tally.hang else FAIL
        record.counterexample = _save(tally.failure, options.out, name)
    elif tally.error:
        record.reason = tally.error
    elif tally.deviations:
        _deviates(record, sorted(tally.deviations), family, tally.differences)
        record.counterexample = _save(tally.deviations[record.deviations[0]], options.out, name)
    else:
        record.verdict = PASS


def _budget(scenario: Scenario, options: Options) -> Budget:
    return Budget(options.examples or scenario.examples, scenario.steps, options.budget or scenario.seconds)


def _union(scenario: Scenario, subject, profile: str, options: Options, scratch: Path, record: Record) -> None:
    family, name = FAMILIES["union"], f"{scenario.id}--{subject.name}"
    if scenario.kind == "stateful":
        tally = check_stateful(subject, profile, seed=options.seed, budget=_budget(scenario, options),
                               scratch_root=scratch, ops=scenario.ops, database=options.out / "hypothesis",
                               long_names=scenario.long_names)
        _from_tally(record, tally, family, options, name)
        return
    run = check_examples(scenario.programs, subject, profile, scratch, subject.claims_overlay_format)
    record.examples = len(scenario.programs)
    record.coverage = _coverage(run.coverage, family)
    if run.problems:
        record.verdict = FAIL
        record.reason = f"{len(run.problems)} expectation(s) not met; first: {run.problems[0].splitlines()[0]}"
        record.counterexample = _save(run.failed, options.out, name)
    elif run.deviation:
        _deviates(record, [run.deviation], family)
    else:
        record.verdict = PASS


def _vmblock(scenario: Scenario, subject, profile: str, options: Options, scratch: Path, record: Record) -> None:
    family, name = FAMILIES["vmblock"], f"{scenario.id}--{subject.name}"
    if scenario.kind == "stateful":
        tally = check_block_stateful(subject, profile, seed=options.seed, budget=_budget(scenario, options),
                                     scratch_root=scratch, database=options.out / "hypothesis")
        _from_tally(record, tally, family, options, name)
    elif scenario.kind == "deadlock":
        found = probe(subject, scratch, scenario.waiters, scenario.max_threads)
        record.examples, record.reason = 1, found.describe()
        record.verdict = DEADLOCK if found.deadlocked else PASS
    else:
        _programs(scenario, subject, profile, options, scratch, record, BlockProgram, run_block_program)


def _pmem(scenario: Scenario, subject, profile: str, options: Options, scratch: Path, record: Record) -> None:
    if scenario.kind == "stateful":
        tally = check_route_stateful(subject, profile, seed=options.seed, budget=_budget(scenario, options),
                                     scratch_root=scratch, database=options.out / "hypothesis")
        _from_tally(record, tally, FAMILIES["pmem"], options, f"{scenario.id}--{subject.name}")
    else:
        _programs(scenario, subject, profile, options, scratch, record, RouteProgram, run_route_program)


def _programs(scenario: Scenario, subject, profile: str, options: Options, scratch: Path, record: Record,
              kind, run) -> None:
    """A vmblock or pmem scenario's programs, each replayed in lockstep with the model; the first failure ends
    it."""
    family, name = FAMILIES[scenario.model], f"{scenario.id}--{subject.name}"
    fired: Counter = Counter()
    record.verdict = PASS
    for i, spec in enumerate(scenario.programs):
        program = kind.from_json(spec)
        _, failure, deviated, coverage = run(program, subject, profile, scratch / f"p{i}")
        fired.update(coverage)
        record.examples += 1
        if failure or deviated:
            program.subject, program.profile, program.message = subject.name, profile, failure or deviated
            record.counterexample = _save(program, options.out, name)
            if failure:
                record.verdict, record.reason = FAIL, failure.splitlines()[0]
                break
            _deviates(record, [deviated], family)
    record.coverage = _coverage(fired, family)


def _sim(scenario: Scenario, subject, profile: str, options: Options, scratch: Path, record: Record) -> None:
    if scenario.kind == "crosscheck":
        rows = crosscheck(subject, scratch, scenario.max_threads)
        record.examples = len(rows)
        record.verdict = PASS if all(r.agree for r in rows) else FAIL
        record.reason = "; ".join(f"N={r.waiters}: simulated {r.simulated}, real {r.real}" for r in rows)
        return
    study = sim_search(scenario.params)
    study.seed = options.seed or study.seed
    result = conduct(study)
    record.verdict, record.reason, record.examples = result.verdict, result.reason, result.schedules
    if result.run is not None:
        path = keep(result.run, study.workload.name, options.out / "sim", f"{scenario.id}--{subject.name}")
        record.counterexample = Counterexample([], [{"params": result.run.params, "choices": result.run.choices}],
                                               result.reason, f"vfslab replay {path}", str(path),
                                               timeline.mermaid(result.run))


def run_one(scenario: Scenario, subject, options: Options, scratch: Path) -> Record:
    """One scenario against one subject: the record with its verdict."""
    profile = options.profile or scenario.profile
    record = Record(scenario.id, scenario.suite, scenario.kind, subject.name, profile,
                    scenario.expected(subject.name), verdict=ERROR)
    started = time.monotonic()
    try:
        run = {"union": _union, "vmblock": _vmblock, "pmem": _pmem, "sim": _sim}[scenario.model]
        run(scenario, subject, profile, options, scratch, record)
    except (RuntimeError, OSError) as e:  # a mount refused, say: this record's error, not the whole run's
        record.verdict, record.reason = ERROR, f"{type(e).__name__}: {e}"
    record.seconds = round(time.monotonic() - started, 2)
    return record


def run(scenarios: list[Scenario], options: Options, console: Console | None = None) -> Results:
    console = console or Console(stderr=True)
    meta = _meta(options.seed)
    results = Results(meta)
    wanted = options.subjects or tuple(SUBJECTS)
    for name in wanted:
        subject = SUBJECTS[name]
        ok, reason = subject.available()
        if ok:
            meta.subjects[name] = subject.version()
        else:
            meta.unavailable[name] = reason
    # a sim scenario holds nothing to a profile
    jobs = [(sc, SUBJECTS[name]) for sc in scenarios for name in sc.subjects if name in wanted
            and (sc.model == "sim" or (options.profile or sc.profile) in SUBJECTS[name].profiles)]
    options.out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="vfslab-run-"))
    base.chmod(0o755)
    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("scenarios", total=len(jobs))
            for i, (scenario, subject) in enumerate(jobs):
                progress.update(task, description=f"{scenario.id} on {subject.name}")
                if subject.name in meta.unavailable:
                    results.records.append(Record(scenario.id, scenario.suite, scenario.kind, subject.name,
                                                  options.profile or scenario.profile, scenario.expected(subject.name),
                                                  UNAVAILABLE, reason=meta.unavailable[subject.name]))
                else:
                    results.records.append(run_one(scenario, subject, options, base / f"job{i}"))
                progress.advance(task)
    finally:
        for m in mounts.mounts_under(base):
            mounts.unmount(m.mount_point)
        shutil.rmtree(base, ignore_errors=True)
    meta.seconds = round(time.monotonic() - started, 2)
    return results
