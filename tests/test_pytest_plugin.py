"""The pytest plugin (`pytest --vfslab`): each run is a pytest of its own, in a subprocess under pytester's ini (the
repository's has `-n auto`), so what is checked is what a project's CI sees."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vfslab import suite
from vfslab.pytest_plugin import PROPERTIES
from vfslab.subjects import SUBJECTS, mounts

# pytester's fixtures for this module (a test module may still name plugins; only non-root conftests may not)
pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
SIM = REPO / "scenarios" / "sim"
UPSTREAM = SIM / "vmblock-upstream.toml"  # a simulated deadlock, expected: no mount, milliseconds


@pytest.fixture
def pytest_run(pytester: pytest.Pytester, scratch: Path, monkeypatch: pytest.MonkeyPatch):
    """`pytest ARGS` in a subprocess, rooted in pytester's folder with an ini that pytester wrote (and a
    `testpaths = tests` as this repository has), its temporary files in `scratch`."""
    ini = pytester.makeini("[pytest]\ntestpaths = tests\n")
    scratch.chmod(0o755)  # the checks' unprivileged caller walks through it to the scratch directories
    monkeypatch.setenv("TMPDIR", str(scratch))

    def run(*args: object) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-c", str(ini), *map(str, args))

    return run


def _names(result: pytest.RunResult) -> list[str]:
    """The items a `--co -q` run listed, by name."""
    return [line.rpartition("::")[2] for line in result.outlines if "::" in line]


def _pairs(paths: list[Path]) -> list[str]:
    """Every scenario x subject of these scenario files, as items are named (the scenarios here pin no placement)."""
    return [f"{sc.id}[{name}]" for sc in suite.collect(paths) for name in sc.subjects if name in SUBJECTS]


@pytest.mark.mounts
def test_a_folder_is_one_item_per_scenario_and_subject_and_each_passes(pytester, pytest_run, scratch):
    # a test the repository-like testpaths would collect: --vfslab PATH must not run it
    pytester.makepyfile(**{"tests/test_project.py": "def test_project():\n    assert False\n"})
    pairs = _pairs([SIM])
    available = [f"{sc.id}[{name}]" for sc in suite.collect([SIM]) for name in sc.subjects
                 if name in SUBJECTS and SUBJECTS[name].available()[0]]
    simulated = [p for p in pairs if p.endswith("[sim]")]
    assert simulated and set(simulated) <= set(available)  # they need no mount: this cannot pass by skipping
    # -n 2: the crosscheck's real mounts take seconds each
    result = pytest_run("--vfslab", SIM, "-n", "2")
    result.assert_outcomes(passed=len(available), skipped=len(pairs) - len(available))
    lines = result.outlines
    summary = next(i for i, line in enumerate(lines) if "vfslab verdicts" in line) + 1
    assert sorted(line.split()[0] for line in lines[summary:summary + len(pairs)]) == sorted(pairs)
    assert not [m for m in mounts.read_mountinfo() if str(scratch) in str(m.mount_point)]
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("vfslab-pytest-")]


@pytest.mark.parametrize("args", [
    ("--vfslab", SIM),
    ("--vfslab", "-x", SIM),  # an option between: SIM is positional
    (SIM, "--vfslab"),
], ids=["after", "positional", "before"])
def test_paths_after_vfslab_or_positional_collect_the_same_items(pytest_run, args):
    result = pytest_run("--co", "-q", *args)
    assert _names(result) == _pairs([SIM])


def test_one_file_and_by_default_every_shipped_suite(pytest_run):
    assert _names(pytest_run("--co", "-q", "--vfslab", UPSTREAM)) == _pairs([UPSTREAM])
    shipped = suite.collect([suite.default_suite()])
    names = _names(pytest_run("--co", "-q", "--vfslab"))
    assert {n.partition("[")[0] for n in names} == {sc.id for sc in shipped}
    assert len(names) == len(set(names)) >= len(shipped)


def test_a_wrong_expectation_fails_with_its_counterexample_and_replay_command(pytester, pytest_run):
    wrong = UPSTREAM.read_text().replace('expect = "deadlock"', 'expect = "pass"')
    assert wrong != UPSTREAM.read_text()
    pytester.makefile(".toml", wrong=wrong)
    result = pytest_run("--vfslab", "wrong.toml")
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*sim-vmblock-upstream[[]sim[]]*",
        "sim-vmblock-upstream on sim: regression: verdict deadlock, expected pass",
        "  deadlock: *",
        "  program (1 ops): *sim-vmblock-upstream--sim.json",
        "  replay: vfslab replay *sim-vmblock-upstream--sim.json",
    ])
    program = next(line for line in result.outlines if line.startswith("  program")).rpartition(" ")[2]
    assert Path(program).is_file()
    assert program.startswith(str(pytester.path / "vfslab-out"))
    assert "Traceback" not in result.stdout.str() and "pytest_plugin.py" not in result.stdout.str()


def test_a_baseline_overrides_the_scenarios_expectation(pytester, pytest_run):
    # the scenario expects a deadlock; the user's baseline says pass (strict): a fix to write down, so it fails
    baseline = pytester.makefile(".toml", baseline='version = 1\n[[expect]]\nscenario = "sim-vmblock-upstream"\n'
                                 'subject = "sim"\nverdict = "pass"\nreason = "we think it fixed"\n')
    result = pytest_run("--vfslab", UPSTREAM, "--vfslab-baseline", baseline)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["sim-vmblock-upstream on sim: regression: verdict deadlock, expected pass"])
    # an entry saying deadlock: it passes
    baseline.write_text(baseline.read_text().replace('"pass"', '"deadlock"'))
    pytest_run("--vfslab", UPSTREAM, "--vfslab-baseline", baseline).assert_outcomes(passed=1)
    baseline.write_text("version = [")
    result = pytest_run("--vfslab", UPSTREAM, "--vfslab-baseline", baseline)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "not TOML" in result.stderr.str()


def test_xdist_and_junit_carry_each_verdict(pytest_run, tmp_path):
    junit = tmp_path / "junit.xml"
    result = pytest_run("--vfslab", SIM, "--vfslab-subject", "sim", "-n", "2", f"--junitxml={junit}")
    sim = [p for p in _pairs([SIM]) if p.endswith("[sim]")]
    result.assert_outcomes(passed=len(sim))
    assert "2 workers" in result.stdout.str()
    cases = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(junit).iter("testcase")}
    assert sorted(cases) == sorted(sim)
    for props in cases.values():
        assert tuple(props) == PROPERTIES
        assert props["verdict"] == props["expected"]
    assert cases["sim-vmblock-upstream[sim]"]["verdict"] == "deadlock"
    assert cases["sim-vmblock-upstream[sim]"]["replay"].startswith("vfslab replay ")


def test_subject_files_run_every_scenario_of_their_family_they_take(pytester, pytest_run):
    pytester.makefile(".toml", posix=(REPO / "scenarios" / "posix" / "tmpfs.toml").read_text())
    mirrorfs = REPO / "docs" / "tutorial" / "mirrorfs.toml"
    assert _names(pytest_run("--co", "-q", "--vfslab", "posix.toml", "--vfslab-subject", mirrorfs)) == [
        "posix-stateful[mirrorfs]"]
    assert _names(pytest_run("--co", "-q", "--vfslab", "posix.toml", "--vfslab-subject", mirrorfs,
                             "--vfslab-subject", "tmpfs")) == ["posix-stateful[tmpfs]", "posix-stateful[mirrorfs]"]


@pytest.mark.parametrize(("require", "outcome"), [("", "skipped"), ("1", "failed")])
def test_an_unavailable_subject_skips_with_its_reason_unless_fuse_is_required(pytester, pytest_run, monkeypatch,
                                                                               require, outcome):
    pytester.makefile(".toml", posix=(REPO / "scenarios" / "posix" / "tmpfs.toml").read_text(),
                      ghost='name = "ghost"\nfamily = "posix"\nmount = ["vfslab-no-such-fs", "{dir}", "{mnt}"]\n'
                      'requires = ["vfslab-no-such-fs"]\nprofile = "posix"\n')
    monkeypatch.setenv("VFSLAB_REQUIRE_FUSE", require)
    result = pytest_run("--vfslab", "posix.toml", "--vfslab-subject", "ghost.toml", "-rs")
    result.assert_outcomes(**{outcome: 1})
    result.stdout.fnmatch_lines(["*ghost is unavailable: vfslab-no-such-fs not found*"])


def test_off_without_vfslab(pytester, pytest_run):
    pytester.makepyfile(**{"tests/test_project.py": "def test_project():\n    pass\n"})
    (pytester.path / "tests" / "scenario.toml").write_text(UPSTREAM.read_text())
    assert "--vfslab-subject" in pytest_run("--help").stdout.str()  # installed, and off
    result = pytest_run("-v")
    result.assert_outcomes(passed=1)
    assert "vfslab verdicts" not in result.stdout.str()
    assert not (pytester.path / "vfslab-out").exists()


@pytest.mark.parametrize(("args", "error"), [
    (("--vfslab-subject", "nope"), "ERROR: vfslab: unknown subject 'nope' (known: *)"),
    (("--vfslab-subject", "nope.toml"), "ERROR: vfslab: nope.toml: *"),
    (("bad.toml",), "ERROR: vfslab: bad.toml: bad scenario: missing key 'kind'"),
], ids=["subject", "subject-file", "scenario"])
def test_a_mistake_is_one_line(pytester, pytest_run, args, error):
    pytester.makefile(".toml", bad='id = "bad"\n')
    result = pytest_run("--vfslab", SIM, "-n", "2", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([error])
    assert [line for line in result.errlines if line.strip()] == [result.errlines[0]]
