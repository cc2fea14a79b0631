"""`vfslab run`: every scenario against every chosen subject, into a Results record."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from vfslab import __version__
from vfslab.check.engine.family import Job
from vfslab.check.engine.generated import QUICK, QUICK_SHRINK, Budget
from vfslab.check.families import FAMILIES
from vfslab.check.results import ERROR, FAIL, HANG, UNAVAILABLE, Record, Results, RunMeta, label
from vfslab.shard import WHOLE, Shard
from vfslab.subjects import SUBJECTS, Subject, mounts, placement
from vfslab.subjects.placement import SAME
from vfslab.suite import Scenario


@dataclass
class Options:
    subjects: tuple[str, ...] = ()
    profile: str | None = None
    seed: int = 0
    budget: float | None = None  # seconds per scenario and subject, overriding the scenarios'
    examples: int | None = None
    out: Path = Path("out")
    #: subjects from subject files: no scenario can list them, so each runs every scenario it takes
    added: tuple[str, ...] = ()
    #: where union checks place their layers, unless a scenario pins it
    placements: tuple[str, ...] = (SAME,)
    #: each scenario's budget capped at QUICK (the command line's default); False: the scenario's own (--full)
    quick: bool = False
    #: which of the run's jobs to run (`--shard K/N`)
    shard: Shard = WHOLE


def _command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _meta(seed: int, shard: Shard) -> RunMeta:
    here = Path(__file__).resolve().parent.parent
    libfuse = re.search(r"version:?\s*([\d.]+)", _command_output(["fusermount3", "--version"]))
    return RunMeta(
        vfslab_version=__version__,
        git_sha=_command_output(["git", "-C", str(here), "rev-parse", "--short", "HEAD"]),
        seed=seed,
        kernel=os.uname().release,
        libfuse=libfuse.group(1) if libfuse else "",
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        shard=[] if shard == WHOLE else [shard.index, shard.count],
    )


def _budget(scenario: Scenario, options: Options, expected: str) -> Budget:
    """The scenario's budget for one subject: in a quick run capped at QUICK, and a failure the scenario expects
    of it shrunk for QUICK_SHRINK seconds at most."""
    b = scenario.budget.within(QUICK) if options.quick else scenario.budget
    shrink = QUICK_SHRINK if options.quick and expected in (FAIL, HANG) else b.shrink
    return Budget(options.examples or b.examples, b.steps, options.budget or b.seconds, shrink)


def _takes(subject, scenario: Scenario, profile: str) -> bool:
    """Whether `subject` runs `scenario`: it takes the scenario's family, and can be held to the profile (when
    the family has profiles)."""
    return (scenario.family in subject.capabilities.families
            and (not FAMILIES[scenario.family].profiles or profile in subject.profiles))


def _unplaceable(where: str) -> str:
    ok, reason = placement.available(where)
    return "" if ok else f"placement {where}: {reason}"


def _placements(scenario: Scenario, subject, options: Options) -> tuple[str, ...]:
    """Where a job's layers go: the scenario's pin or the command line's, those the subject takes (once, as they
    are, for a family that places nothing)."""
    if not FAMILIES[scenario.family].placed:
        return (SAME,)
    return tuple(p for p in scenario.placements or options.placements if p in subject.capabilities.placements)


@dataclass(frozen=True)
class Planned:
    """One job of a run: a scenario, the subject it runs on, where the layers go."""

    scenario: Scenario
    subject: Subject
    placement: str = SAME

    @property
    def label(self) -> str:
        return label(self.subject.name, self.placement)


def wanted(options: Options) -> tuple[str, ...]:
    """The subjects named or given as files; every one there is when neither."""
    return tuple(dict.fromkeys((*options.subjects, *options.added))) or tuple(SUBJECTS)


def plan(scenarios: list[Scenario], options: Options) -> list[Planned]:
    """Every job of a run, in the order it runs them: each scenario on each wanted subject it lists (and each
    subject from a file) that takes it, once per placement. The same on every machine (shards rely on it)."""
    chosen = wanted(options)
    return [Planned(sc, SUBJECTS[name], where) for sc in scenarios
            for name in dict.fromkeys((*sc.subjects, *options.added))
            if name in chosen and _takes(SUBJECTS[name], sc, options.profile or sc.profile_for(name))
            for where in _placements(sc, SUBJECTS[name], options)]


def unavailable(subject: Subject, where: str) -> str:
    """Why `subject` cannot run here with its layers placed so; empty when it can."""
    ok, reason = subject.available()
    return _unplaceable(where) if ok else reason


def scenario_seed(seed: int, scenario: str) -> int:
    """The seed a scenario's checks draw from: the run's, mixed with the scenario's id, so that scenarios of one
    family explore different programs (every subject of one scenario still gets the same ones)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{scenario}".encode(), digest_size=4).digest(), "big")


def run_one(scenario: Scenario, subject, options: Options, scratch: Path, placement: str = SAME) -> Record:
    """One scenario against one subject, its layers placed so: the record with its verdict."""
    profile = options.profile or scenario.profile_for(subject.name)
    record = Record(scenario.id, scenario.suite, scenario.kind, subject.name, profile,
                    scenario.expected(subject.name), verdict=ERROR, family=scenario.family, placement=placement)
    family = FAMILIES[scenario.family]
    started = time.monotonic()
    try:
        family.kinds[scenario.kind](Job(scenario, subject, profile, scenario_seed(options.seed, scenario.id),
                                        _budget(scenario, options, record.expected),
                                        scratch, options.out, record, family, placement))
    except (RuntimeError, OSError) as e:  # a mount refused, say: this record's error, not the whole run's
        record.verdict, record.reason = ERROR, f"{type(e).__name__}: {e}"
    record.seconds = round(time.monotonic() - started, 2)
    return record


def run(scenarios: list[Scenario], options: Options, console: Console | None = None) -> Results:
    console = console or Console(stderr=True)
    meta = _meta(options.seed, options.shard)
    results = Results(meta)
    for name in wanted(options):
        subject = SUBJECTS[name]
        ok, reason = subject.available()
        if ok:
            meta.subjects[name] = subject.version()
        else:
            meta.unavailable[name] = reason
    jobs = options.shard.take(plan(scenarios, options))
    options.out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="vfslab-run-"))
    base.chmod(0o755)
    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(bar_width=20), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("scenarios", total=len(jobs))
            for i, (scenario, subject, where) in enumerate((j.scenario, j.subject, j.placement) for j in jobs):
                progress.update(task, description=f"{scenario.id} on {label(subject.name, where)}")
                missing = meta.unavailable.get(subject.name) or _unplaceable(where)
                if missing:
                    results.records.append(Record(scenario.id, scenario.suite, scenario.kind, subject.name,
                                                  options.profile or scenario.profile_for(subject.name),
                                                  scenario.expected(subject.name), UNAVAILABLE, reason=missing,
                                                  family=scenario.family, placement=where))
                else:
                    results.records.append(run_one(scenario, subject, options, base / f"job{i}", where))
                progress.advance(task)
    finally:
        for m in mounts.mounts_under(base):
            mounts.unmount(m.mount_point)
        shutil.rmtree(base, ignore_errors=True)
    meta.seconds = round(time.monotonic() - started, 2)
    return results
