"""The command line as users script it: exit codes, files written, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vfslab.check.results import Results
from vfslab.cli import main
from vfslab.suite import default_suite

SEED_EXAMPLES = default_suite() / "union" / "seed-examples.toml"


@pytest.mark.mounts
def test_run_writes_results_report_and_junit(need, tmp_path, capsys):
    need("kernel-overlay")
    out = tmp_path / "out"
    code = main(["run", str(SEED_EXAMPLES), "--subject", "model", "--subject", "kernel-overlay", "--out", str(out)])
    assert code == 0, capsys.readouterr()
    results = Results.read(out / "results.json")
    assert {(r.scenario, r.subject, r.verdict) for r in results.records} == {
        ("union-seed-examples", "model", "pass"), ("union-seed-examples", "kernel-overlay", "pass")}
    assert results.meta.kernel and results.meta.subjects["kernel-overlay"]
    assert all(r.coverage["union.unlink.whiteout"] > 0 for r in results.records)
    assert "| union-seed-examples | pass | pass |" in (out / "report.md").read_text()
    assert ET.parse(out / "junit.xml").getroot().get("failures") == "0"
    printed = capsys.readouterr().out
    assert "union-seed-examples" in printed and "results:" in printed


def test_a_failing_scenario_exits_1_and_saves_a_replayable_program(tmp_path, capsys):
    scenario = tmp_path / "wrong.toml"
    scenario.write_text('id = "wrong"\nkind = "program"\nsubjects = ["model"]\n'
                        '[[programs]]\nname = "unlink is not EXDEV"\nlayers = [[{path = "a", kind = "file"}]]\n'
                        'ops = [["unlink", "a"]]\nexpect.default = ["EXDEV"]\n')
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--out", str(out)]) == 1
    record = json.loads((out / "results.json").read_text())["records"][0]
    assert record["verdict"] == "fail" and "EXDEV" in record["reason"]
    program = Path(record["counterexample"]["program_file"])
    assert json.loads(program.read_text())["ops"] == [{"op": "unlink", "args": ["a"]}]
    assert record["counterexample"]["replay"].startswith(f"vfslab replay {program}")
    assert main(["report", str(out / "results.json"), "--format", "markdown"]) == 1
    assert "## wrong on model: fail" in capsys.readouterr().out
    # the program also became a regression scenario: the model agrees with itself on it
    regression = program.with_suffix(".toml")
    assert 'kind = "program"' in regression.read_text()
    assert main(["run", str(regression), "--out", str(tmp_path / "again")]) == 0


@pytest.mark.parametrize(("argv", "text"), [
    (["run", "--subject", "no-such-fs"], "unknown subject 'no-such-fs'"),
    (["run", "/nonexistent.toml"], "no such scenario file"),
    (["run", "--profile", "overlay"], "--profile 'overlay': no family has it (known: fuse-overlayfs, kernel, "),
    (["run", "--jobs", "2", "--shard", "1/2"], "give --shard or --jobs, not both"),
    (["replay", "/nonexistent.json"], "not a vfslab program"),
    (["report", "/nonexistent.json"], "No such file"),
])
def test_usage_errors_are_one_line_and_exit_2(argv, text, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert text in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(("text", "said"), [
    ('id = "x"\nkind = "quantum"\nsubjects = ["model"]\n', "kind 'quantum' is not one of"),
    ('id = "x"\nkind = "program"\nsubjects = ["model"]\n[[programs]]\nname = "p"\n', "missing key 'ops'"),
    ('id = "x"\nkind = "program"\nsubjects = ["model"]\n[[programs]]\nname = "p"\nops = [["chmod"]]\n',
     "bad scenario"),
    ('id = "x"\nkind = "stateful"\nsubjects = ["model"]\n[params]\nops = ["teleport"]\n', "unknown operations"),
    ("id = ", "not TOML"),
])
def test_a_bad_scenario_file_is_one_line(tmp_path, capsys, text, said):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1


def test_subjects_lists_every_subject_with_availability(capsys):
    assert main(["subjects"]) == 0
    out = capsys.readouterr().out
    for name in ("model", "kernel-overlay", "fuse-overlayfs", "unionfs-fuse"):
        assert name in out


def test_python_dash_m_and_help():
    done = subprocess.run([sys.executable, "-m", "vfslab", "run", "--help"], capture_output=True, text=True, check=True)
    assert "--subject" in done.stdout and "--budget" in done.stdout


@pytest.mark.parametrize("command", ["pmem", "storage"])
def test_a_command_with_a_parser_of_its_own_gives_its_help(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0 and f"usage: vfslab {command}" in capsys.readouterr().out
