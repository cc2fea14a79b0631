"""vfslab scenarios as pytest items: `pytest --vfslab [PATH...]` runs each scenario x subject as one test.

Off unless `--vfslab` is given: without it the plugin only adds its options. With it, the scenario files under the
paths given (or the shipped suites) are collected beside whatever else pytest was asked to collect, one item per
scenario x subject (x placement), each running `runner.run_one` in a scratch directory of its own. docs/pytest.md
is the interface.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# vfslab itself is imported only once --vfslab is given: a pytest run without it pays nothing for the plugin (the
# checkers take a good part of a second to import)
if TYPE_CHECKING:
    from vfslab.check.results import Record
    from vfslab.gate import Finding
    from vfslab.runner import Planned
    from vfslab.subjects import Subject
    from vfslab.suite import Scenario

#: CI sets it so that a subject it cannot run is a failure, not a skip (as the bench's own tests do)
REQUIRE_FUSE = "VFSLAB_REQUIRE_FUSE"
#: what each item records for --junitxml (item.user_properties), in this order
PROPERTIES = ("verdict", "expected", "profile", "seconds", "replay")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vfslab", "vfslab scenarios as test items (docs/pytest.md)")
    group.addoption("--vfslab", nargs="*", metavar="PATH",
                    help="turn the plugin on: one item per scenario x subject of the scenario files among these "
                    "paths and the positional ones, or in folders among them (the shipped suites when none holds "
                    "one). Without it, this plugin is off")
    group.addoption("--vfslab-subject", action="append", default=[], metavar="NAME|FILE",
                    help="a subject by name, or a subject file (.toml), which runs every scenario of its family it "
                    "takes (repeatable; default: the known subjects each scenario lists)")
    group.addoption("--vfslab-seed", type=int, default=0, metavar="N", help="seed for every random choice (0)")
    group.addoption("--vfslab-full", action="store_true",
                    help="each scenario's own budget (default: capped at the quick budget, as `vfslab run`)")
    group.addoption("--vfslab-profile", metavar="NAME", help="hold every subject to this profile")
    group.addoption("--vfslab-baseline", metavar="FILE",
                    help="hold each verdict to this baseline's entry (`vfslab baseline`, docs/ci.md) where it has "
                    "one whose scope holds, instead of the scenario's expectation")
    group.addoption("--vfslab-out", metavar="DIR",
                    help="where failing programs and the Hypothesis database go (default: ROOTDIR/vfslab-out)")


def pytest_configure(config: pytest.Config) -> None:
    named = config.getoption("vfslab")
    if named is None:
        return
    from vfslab.suite import default_suite

    # after `--vfslab`, argparse cannot tell its PATHs from positional arguments: both are simply what pytest
    # collects, and the scenario files among them, or in folders among them, are ours
    positional = config.args if config.args_source is pytest.Config.ArgsSource.ARGS else []
    args = [*positional, *named]
    paths = [p for p in (Path(a.partition("::")[0]) for a in args) if _holds_scenarios(p)]
    if not paths:
        paths = [default_suite()]
        args.append(str(paths[0]))
    config.pluginmanager.register(Bench(config, paths), "vfslab-bench")
    # without positional arguments pytest would collect its testpaths: the scenarios are what it was asked for
    config.args, config.args_source = args, pytest.Config.ArgsSource.ARGS


def _holds_scenarios(path: Path) -> bool:
    """Whether `path` is a scenario file, or a folder holding some."""
    return path.suffix == ".toml" or (path.is_dir() and next(path.rglob("*.toml"), None) is not None)


class Bench:
    """The plugin while --vfslab is on: the scenarios given, what they run with, and the verdicts seen."""

    def __init__(self, config: pytest.Config, paths: list[Path]) -> None:
        from vfslab import runner, suite
        from vfslab.baseline import load
        from vfslab.subjects import get, registered
        from vfslab.subjects.files import load_all

        self._subject_files = contextlib.ExitStack()
        files = [Path(s) for s in config.getoption("vfslab_subject") if s.endswith(".toml")]
        names = tuple(s for s in config.getoption("vfslab_subject") if not s.endswith(".toml"))
        baseline = config.getoption("vfslab_baseline")
        try:
            #: the user's expected verdicts, when given
            self.baseline = load(Path(baseline)) if baseline else None
            added = self._subject_files.enter_context(registered(load_all(files, [])))
            for name in names:
                get(name)
            #: by file, as collection meets them
            self.scenarios = {Path(s.source).resolve(): s for s in suite.collect(paths)}
        except (ValueError, KeyError, OSError) as e:
            self._subject_files.close()
            raise pytest.UsageError(f"vfslab: {e.args[0] if isinstance(e, KeyError) else e}") from None
        out = config.getoption("vfslab_out")
        self.options = runner.Options(subjects=names, profile=config.getoption("vfslab_profile"),
                                      seed=config.getoption("vfslab_seed"), added=added,
                                      out=config.invocation_params.dir / out if out else config.rootpath / "vfslab-out",
                                      quick=not config.getoption("vfslab_full"))
        #: node id -> what the summary says of it, from the reports (so also a controller's, under xdist)
        self.verdicts: dict[str, str] = {}

    def jobs(self, scenario: Scenario) -> list[Planned]:
        """The subjects `scenario` runs on, each with where its layers go, chosen as `vfslab run` chooses them."""
        from vfslab import runner

        return runner.plan([scenario], self.options)

    def held(self, record: Record) -> Finding | None:
        """What is wrong with `record`: held to its baseline entry (--vfslab-baseline) when there is one whose scope
        holds here, else to its scenario's expected verdict; None when nothing is."""
        from vfslab import gate
        from vfslab.baseline import key
        from vfslab.subjects import SUBJECTS

        entry = self.baseline.entries.get(key(record)) if self.baseline else None
        if entry and not entry.scope.holds(SUBJECTS[record.subject].version(), os.uname().release):
            entry = None
        if entry:
            record.expected = entry.verdict
        return gate.held(record, entry)

    def run(self, scenario: Scenario, subject: Subject, where: str) -> Record:
        """`scenario` on `subject` in a fresh scratch directory, which is unmounted and removed afterwards."""
        from vfslab import runner
        from vfslab.subjects import mounts

        self.options.out.mkdir(parents=True, exist_ok=True)
        base = Path(tempfile.mkdtemp(prefix="vfslab-pytest-"))
        base.chmod(0o755)  # the checks' unprivileged caller (uid 1000) walks into it
        try:
            record = runner.run_one(scenario, subject, self.options, base / "job", where)
        finally:
            for m in mounts.mounts_under(base):
                mounts.unmount(m.mount_point)
            shutil.rmtree(base, ignore_errors=True)
        return record

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
        scenario = self.scenarios.get(file_path.resolve())
        return ScenarioFile.from_parent(parent, path=file_path, scenario=scenario, bench=self) if scenario else None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if report.when == "call" and "verdict" in props:
            off = f" (expected {props['expected']})" if report.failed and "expected" in props else ""
            self.verdicts[report.nodeid] = f"{props['verdict']}{off}"

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.verdicts:
            return
        terminalreporter.section("vfslab verdicts")
        # reports arrive in any order under xdist: by file and scenario, then subject
        ids = sorted(self.verdicts, key=lambda nodeid: nodeid.rstrip("]").split("["))
        width = max(len(nodeid.rpartition("::")[2]) for nodeid in ids)
        for nodeid in ids:
            terminalreporter.line(f"{nodeid.rpartition('::')[2]:<{width}}  {self.verdicts[nodeid]}")
        terminalreporter.line(f"programs and the Hypothesis database: {self.options.out}")

    def pytest_unconfigure(self) -> None:
        self._subject_files.close()


class ScenarioFile(pytest.File):
    """A scenario file: one item per subject (and placement) it runs on."""

    def __init__(self, *, scenario: Scenario, bench: Bench, **kw) -> None:
        super().__init__(**kw)
        self.scenario, self.bench = scenario, bench

    def collect(self) -> Iterator[ScenarioItem]:
        for job in self.bench.jobs(self.scenario):
            yield ScenarioItem.from_parent(self, name=f"{self.scenario.id}[{job.label}]", subject=job.subject,
                                           where=job.placement)


class Unexpected(Exception):
    """A record whose verdict is not the expected one, and what is wrong with it."""

    def __init__(self, record: Record, finding: Finding) -> None:
        super().__init__(finding.text)
        self.record, self.finding = record, finding


class ScenarioItem(pytest.Item):
    """One scenario on one subject, its layers placed so: passes when the verdict is the expected one."""

    def __init__(self, *, subject: Subject, where: str, **kw) -> None:
        super().__init__(**kw)
        self.subject, self.where = subject, where

    def runtest(self) -> None:
        from vfslab import runner
        from vfslab.check.results import UNAVAILABLE

        scenario, bench = self.parent.scenario, self.parent.bench
        missing = runner.unavailable(self.subject, self.where)
        if missing:
            self.user_properties.append(("verdict", UNAVAILABLE))
            self._unavailable(missing)
        record = bench.run(scenario, self.subject, self.where)
        finding = bench.held(record)
        cx = record.counterexample
        values = (record.verdict, record.expected, record.profile, record.seconds, cx.replay if cx else "")
        self.user_properties += zip(PROPERTIES, values, strict=True)
        if record.verdict == UNAVAILABLE:
            self._unavailable(record.reason)
        if finding:
            raise Unexpected(record, finding)

    def _unavailable(self, reason: str) -> None:
        message = f"{self.subject.name} is unavailable: {reason}"
        if os.environ.get(REQUIRE_FUSE) == "1":
            pytest.fail(f"{message} ({REQUIRE_FUSE}=1)", pytrace=False)
        pytest.skip(message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        from vfslab.gate import FIXED, KINDS

        if not isinstance(excinfo.value, Unexpected):
            return super().repr_failure(excinfo, style)
        r, finding = excinfo.value.record, excinfo.value.finding
        held = f" ({r.profile})" if r.profile else ""
        lines = [f"{r.scenario} on {r.label}{held}: {finding.kind}: verdict {r.verdict}, expected {r.expected}"]
        if finding.kind == FIXED:
            lines.append(f"  {KINDS[FIXED]}")
        # a failure's reason is its counterexample's first line; a deviation's says which profile allows it
        if r.reason and (r.deviations or not r.counterexample):
            lines.append(f"  {r.reason}")
        if cx := r.counterexample:
            lines += [f"  {line}" for line in (cx.difference or cx.message).splitlines()]
            lines += [f"  program ({len(cx.ops)} ops): {cx.program_file}", f"  replay: {cx.replay}"]
        return "\n".join(lines)

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, self.name
