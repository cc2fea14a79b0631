"""The simulator from the command line: vfslab sim, replay, explore, the sim suite, and crosscheck."""

from __future__ import annotations

import json

import pytest

from vfslab.check.results import Results
from vfslab.cli import main
from vfslab.suite import default_suite


def test_sim_finds_shrinks_keeps_and_replays_a_deadlock(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["sim", "vmblock", "-p", "readers=14", "--expect", "deadlock", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "worker-10" in printed and "waits for completion block" in printed and "replay: vfslab replay" in printed
    saved = json.loads((out / "vmblock-shrink-0.json").read_text())
    assert saved["params"]["readers"] == 10 and saved["verdict"] == "deadlock"
    assert "```mermaid" in (out / "vmblock-shrink-0.md").read_text()
    assert main(["replay", str(out / "vmblock-shrink-0.json")]) == 1, "the deadlock reproduces"
    assert "controller" in capsys.readouterr().out


def test_sim_passes_a_fixed_design_and_exits_1_when_not_as_expected(tmp_path, capsys):
    args = ["sim", "vmblock", "-p", "design=deferred", "-p", "readers=11", "--strategy", "bounded", "--out",
            str(tmp_path)]
    assert main([*args, "--expect", "pass"]) == 0
    assert main([*args, "--expect", "deadlock"]) == 1
    assert "every schedule with at most 1 non-default choices" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "text"), [
    (["sim", "vmblock", "-p", "readers"], "write it as key=value"),
    (["sim", "vmblock", "-p", "speed=3"], "unknown parameters speed"),
    (["sim", "nfs"], "unknown workload 'nfs'"),
    (["explore", "/nonexistent.toml"], "cannot read the plan"),
])
def test_bad_input_is_one_line(argv, text, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert text in err and err.count("\n") == 1


def test_explore_sweeps_designs_into_a_table(tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text('workload = "rwlock-cancel"\nstrategy = "bounded"\nbound = 2\n[params]\nhandlers = 2\n'
                    '[sweep]\ncancel = ["anywhere", "while-reading"]\nprefer = ["reader", "writer"]\n')
    assert main(["explore", str(plan), "--out", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "plan.json").read_text())["rows"]
    verdicts = {(r["design"]["cancel"], r["design"]["prefer"]): r["verdict"] for r in rows}
    assert verdicts == {("anywhere", "reader"): "deadlock", ("anywhere", "writer"): "deadlock",
                        ("while-reading", "reader"): "pass", ("while-reading", "writer"): "pass"}
    assert all(r["schedules"] > 1 for r in rows)
    assert "cancelled" in capsys.readouterr().out


def test_the_sim_suite_runs_with_its_expected_verdicts(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(default_suite() / "sim"), "--subject", "sim", "--out", str(out)]) == 0
    records = {r.scenario: r for r in Results.read(out / "results.json").records}
    assert records["sim-union-lockdep"].verdict == "potential-deadlock"
    assert records["sim-vmblock-upstream"].verdict == "deadlock"
    assert records["sim-vmblock-upstream"].counterexample.replay.startswith("vfslab replay")
    assert records["sim-union-global-order"].verdict == "pass"
    report = (out / "report.md").read_text()
    assert "```mermaid" in report and "mutex A:/d" in report, "the report draws the wait-for graph"


@pytest.mark.mounts
def test_crosscheck_agrees_with_real_mounts(need, capsys):
    for name in ("vmblock-fuse", "vmblock-fuse-upstream"):
        need(name)
    assert main(["crosscheck", "--subject", "vmblock-fuse", "--subject", "vmblock-fuse-upstream",
                 "--max-threads", "5"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("deadlock") == 4, "upstream: simulated and real deadlock at N = 5 and 6"
