"""vfslab in a CI: baselines and the gate, GitHub's annotations and step summary, shards merged back into one
run, and a JUnit file that real parsers and the CI servers' schema accept."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import junitparser
import pytest
import xmlschema

from vfslab.baseline import BaselineError, check_spec, load, within
from vfslab.check.results import Results
from vfslab.cli import _parser, main, shard_argv
from vfslab.reports import junit
from vfslab.shard import Shard, side_by_side
from vfslab.suite import default_suite

SUITE = [str(default_suite() / "sim"), str(default_suite() / "union" / "seed-examples.toml")]
SUBJECTS = ["--subject", "sim", "--subject", "model"]
JUNIT_SCHEMA = Path(__file__).parent / "data" / "junit.xsd"


def _run(out: Path, *extra: str) -> Path:
    assert main(["run", *SUITE, *SUBJECTS, "--out", str(out), *extra]) == 0
    return out / "results.json"


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    """A real run: the simulator's suite (deadlocks expected, and found) and the seed's examples on the model."""
    return _run(tmp_path_factory.mktemp("run"))


@pytest.fixture
def baseline(ran, tmp_path) -> Path:
    path = tmp_path / "baseline.toml"
    assert main(["baseline", str(ran), "-o", str(path)]) == 0
    return path


def _edited(ran: Path, tmp_path: Path, change) -> Path:
    """The run's results with `change(records)` applied: a run that went otherwise."""
    data = json.loads(ran.read_text())
    change(data["records"])
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


def _record(records: list[dict], verdict: str) -> dict:
    return next(r for r in records if r["verdict"] == verdict)


def test_the_baseline_holds_each_record_with_its_verdict_and_fired_rules(ran, baseline):
    results, written = Results.read(ran), load(baseline)
    assert {k[:2]: e.verdict for k, e in written.entries.items()} == {
        (r.scenario, r.subject): r.verdict for r in results.records}
    assert any(e.verdict == "deadlock" for e in written.entries.values())
    seed = written.fired[("union-seed-examples", "model", "same")]
    assert "union.unlink.whiteout" in seed
    assert "# vfslab baseline" in baseline.read_text() and 'reason = ""' in baseline.read_text()


def test_the_same_results_pass_the_gate(ran, baseline, capsys):
    assert main(["gate", str(ran), "--baseline", str(baseline), "--coverage", "strict"]) == 0
    assert "as expected" in capsys.readouterr().out


def test_a_verdict_made_worse_is_a_regression_named(ran, baseline, tmp_path, capsys):
    worse = _edited(ran, tmp_path, lambda rs: _record(rs, "pass").update(verdict="fail"))
    name = _record(json.loads(ran.read_text())["records"], "pass")["scenario"]
    assert main(["gate", str(worse), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "regression" in out and f"{name} on" in out and "fail, expected pass" in out


def test_a_strict_expected_failure_now_passing_fails_until_the_baseline_says_so(ran, baseline, tmp_path, capsys):
    fixed = _edited(ran, tmp_path, lambda rs: _record(rs, "deadlock").update(verdict="pass"))
    assert main(["gate", str(fixed), "--baseline", str(baseline)]) == 1
    assert "pass, expected deadlock" in capsys.readouterr().out
    lenient = tmp_path / "lenient.toml"
    lenient.write_text(baseline.read_text().replace('verdict = "deadlock"', 'verdict = "deadlock"\nstrict = false'))
    assert main(["gate", str(fixed), "--baseline", str(lenient)]) == 0


def test_an_entry_with_no_record_is_missing(ran, baseline, tmp_path, capsys):
    fewer = _edited(ran, tmp_path, lambda rs: rs.pop())
    assert main(["gate", str(fewer), "--baseline", str(baseline)]) == 1
    assert "not in the results" in capsys.readouterr().out


def test_an_entry_out_of_its_scope_is_listed_and_its_record_held_to_the_scenario(ran, baseline, tmp_path, capsys):
    scoped = tmp_path / "scoped.toml"
    # the deadlock is only known on kernels before 1.0: here it is held to the scenario, which expects it too
    scoped.write_text(baseline.read_text().replace('verdict = "deadlock"',
                                                   'verdict = "deadlock"\nscope = { kernel = "<1.0" }'))
    assert main(["gate", str(ran), "--baseline", str(scoped)]) == 0
    assert "out of scope" in capsys.readouterr().out
    # and a known failure seen outside its scope is new here
    wrong = _edited(ran, tmp_path, lambda rs: _record(rs, "pass").update(verdict="fail"))
    failing = tmp_path / "known-elsewhere.toml"
    failing.write_text(Path(baseline).read_text().replace('verdict = "pass"', 'verdict = "fail"\nscope = { '
                                                          'kernel = "<1.0" }', 1))
    assert main(["gate", str(wrong), "--baseline", str(failing)]) == 1


def test_a_rule_that_no_longer_fires_is_a_blind_check_failing_only_when_strict(ran, baseline, tmp_path, capsys):
    def blind(records):
        seed = next(r for r in records if r["scenario"] == "union-seed-examples")
        seed["coverage"]["union.unlink.whiteout"] = 0

    blinded = _edited(ran, tmp_path, blind)
    assert main(["gate", str(blinded), "--baseline", str(baseline)]) == 0
    assert "union.unlink.whiteout" in capsys.readouterr().out
    assert main(["gate", str(blinded), "--baseline", str(baseline), "--coverage", "strict"]) == 1


@pytest.mark.parametrize("text, problem", [
    ("version = 1\n[[expect]]\nscenario = \"s\"\nsubject = \"x\"\n", "entry 1 (s on x): missing verdict"),
    ("version = 1\n[[expect]]\nscenario = \"s\"\nsubject = \"x\"\nverdict = \"bad\"\n", "is not one of"),
    ("version = 1\n[[expect]]\nscenario = \"s\"\nsubject = \"x\"\nverdict = \"pass\"\nscope = { kernel = \"6\" }\n",
     "scope kernel: '6' is not a comparison"),
    ("version = 1\n[[expect]]\nscenario = \"s\"\nsubject = \"x\"\nverdict = \"pass\"\nreasons = \"\"\n",
     "unknown key reasons"),
    ("version = 2\n", "baseline version 2"),
    ("version = [", "not TOML"),
])
def test_a_malformed_baseline_exits_2_with_one_line(ran, tmp_path, capsys, text, problem):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    assert main(["gate", str(ran), "--baseline", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and problem in err, err


def test_update_keeps_what_the_user_wrote(ran, baseline, capsys):
    assert main(["baseline", str(ran), "-o", str(baseline)]) == 2, "an existing baseline is not overwritten"
    assert "--update" in capsys.readouterr().err
    baseline.write_text(baseline.read_text().replace('reason = ""', 'reason = "known: upstream issue 42"', 1))
    assert main(["baseline", str(ran), "-o", str(baseline), "--update"]) == 0
    assert "known: upstream issue 42" in baseline.read_text()


def test_versions_compare_by_their_leading_number():
    assert within("6.1.0-28-amd64", ">=6.1, <6.2") and not within("6.12.3", "<6.2")
    assert within("1.10", ">1.9") and within("6.1", "==6.1.0") and not within("", ">=1")
    with pytest.raises(ValueError, match="not a comparison"):
        check_spec(">= 6, 7")
    assert issubclass(BaselineError, ValueError), "the CLI's one-line error, exit 2"


def test_on_github_the_gate_annotates_and_writes_the_step_summary(ran, baseline, tmp_path, capsys, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    worse = _edited(ran, tmp_path, lambda rs: _record(rs, "deadlock").update(verdict="hang"))
    assert main(["gate", str(worse), "--baseline", str(baseline)]) == 1
    annotations = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::error ")]
    assert len(annotations) == 1
    title, message = annotations[0].removeprefix("::error title=").split("::", 1)
    assert title.startswith("vfslab regression%3A ") and "hang, expected deadlock" in message
    assert "%0Areplay: vfslab replay " in message, "the replay command rides in the annotation"
    written = summary.read_text()
    assert written.startswith("## vfslab gate") and "### regression" in written and "| sim |" in written


def test_shards_merged_are_the_unsharded_run(ran, tmp_path, capsys):
    shards = [_run(tmp_path / f"shard{k}", "--shard", f"{k}/2") for k in (2, 1)]
    assert len(Results.read(shards[0]).records) + len(Results.read(shards[1]).records) == len(
        Results.read(ran).records)
    merged = tmp_path / "merged.json"
    assert main(["merge", *map(str, shards), "-o", str(merged)]) == 0

    def essence(path: Path) -> list[dict]:
        # all but the timings
        return [{k: v for k, v in r.items() if k != "seconds"} | {"counterexample": None}
                for r in json.loads(path.read_text())["records"]]

    assert essence(merged) == essence(ran)
    verdicts = [(r.scenario, r.subject, r.verdict, r.examples) for r in Results.read(merged).records]
    assert verdicts == [(r.scenario, r.subject, r.verdict, r.examples) for r in Results.read(ran).records]
    assert main(["merge", str(shards[0]), "-o", str(merged)]) == 2
    assert "shard 1/2 missing" in capsys.readouterr().err


def test_jobs_side_by_side_make_the_records_one_process_makes(ran, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    out = tmp_path / "jobs"
    assert main(["run", *SUITE, *SUBJECTS, "--out", str(out), "--jobs", "3"]) == 0
    verdicts = [(r.scenario, r.subject, r.verdict, r.examples) for r in Results.read(out / "results.json").records]
    assert verdicts == [(r.scenario, r.subject, r.verdict, r.examples) for r in Results.read(ran).records]
    assert not Results.read(out / "results.json").meta.shard, "the merged run is whole"
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["1", "2", "3"]
    assert (out / "report.md").exists() and (out / "junit.xml").exists()
    assert (tmp_path / "summary.md").read_text().count("## vfslab run") == 1, "the run is summed up once, not per shard"
    with pytest.raises(SystemExit):
        main(["run", *SUITE, "--jobs", "0"])
    assert "--jobs: expected a number of processes, at least 1, not '0'" in capsys.readouterr().err


def test_a_shard_that_fails_fails_the_run_and_stops_the_others(tmp_path):
    started = time.monotonic()

    def argv(part: Shard, out: Path) -> list[str]:
        began = out.parent / "1" / "began"
        if part.index == 2:  # fails once shard 1 is under way
            return [sys.executable, "-c", f"import os, sys, time\nwhile not os.path.exists({str(began)!r}):\n"
                    "    time.sleep(0.01)\nprint('cannot mount')\nsys.exit(2)"]
        # as a shard's run does, it cleans up when interrupted (here: says so)
        return [sys.executable, "-c", f"import time\ntry:\n    open({str(began)!r}, 'w').close()\n"
                f"    time.sleep(600)\nexcept KeyboardInterrupt:\n    open({str(out / 'stopped')!r}, 'w')"]

    with pytest.raises(RuntimeError, match=r"shard 2/2 ended with exit 2: cannot mount \(log: .*shards/2/run.log\)"):
        side_by_side(argv, 2, tmp_path, ran=(0, 1))
    assert (tmp_path / "shards" / "1" / "stopped").exists(), "stopped as by Ctrl-C, so it could unmount"
    assert time.monotonic() - started < 60, "the sleeping shard was stopped, not waited out"


def test_a_shard_is_the_run_asked_for_but_its_share_and_folder():
    argv = ["run", "a.toml", "b", "--subject", "sim", "--subject-file", "f.toml", "--subjects", "d",
            "--placement", "all", "--profile", "overlayfs", "--seed", "7", "--budget", "2.5", "--examples", "9",
            "--full", "--out", "o", "--baseline", "base.toml", "--jobs", "4"]
    args = _parser().parse_args(argv)
    child = _parser().parse_args(shard_argv(args, Shard(3, 4), Path("o/shards/3"))[3:])
    assert (child.shard, child.out, child.jobs, child.baseline) == (Shard(3, 4), Path("o/shards/3"), 1, None)
    for option in set(vars(args)) - {"shard", "out", "jobs", "baseline"}:
        assert getattr(child, option) == getattr(args, option), f"--{option} reaches the shards"


def test_junit_reads_in_a_real_parser_and_meets_the_ci_servers_schema(ran, tmp_path):
    failing = _edited(ran, tmp_path, lambda rs: _record(rs, "deadlock").update(verdict="pass"))
    for results in (ran, failing):
        xml = tmp_path / "junit.xml"
        xml.write_text(junit.render(Results.read(results)))
        xmlschema.XMLSchema(str(JUNIT_SCHEMA)).validate(str(xml))
        parsed = junitparser.JUnitXml.fromfile(str(xml))
        cases = [case for suite in parsed for case in suite]
        assert len(cases) == len(Results.read(results).records)
    failures = [(case, r) for suite in parsed for case in suite for r in case.result
                if isinstance(r, junitparser.Failure)]
    assert len(failures) == 1
    _, failure = failures[0]
    assert failure.type == "pass" and "expected deadlock" in failure.message
    assert "replay: vfslab replay" in failure.text and "choices" in failure.text, "the program and its replay"


def test_run_against_a_baseline_speaks_only_of_what_is_new(baseline, tmp_path, capsys):
    # a shard's run: the entries of the other jobs are not missing; a known deadlock is not news
    out = tmp_path / "shard"
    assert main(["run", *SUITE, *SUBJECTS, "--out", str(out), "--shard", "1/2", "--baseline", str(baseline)]) == 0
    known = tmp_path / "known.toml"
    known.write_text(baseline.read_text().replace('verdict = "pass"', 'verdict = "deadlock"', 1))
    assert main(["run", *SUITE, *SUBJECTS, "--out", str(out), "--baseline", str(known)]) == 1
    assert "pass, expected deadlock" in capsys.readouterr().out
