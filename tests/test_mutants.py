"""bench/mutants.py without running a scenario: sampling, applying and restoring, the quiet lines, the verdicts
read from results.json. Seconds, not minutes: no vfslab run, no mount."""

from __future__ import annotations

import json
from pathlib import Path

import benches
import pytest

ROOT = Path(__file__).resolve().parent.parent
mutants = benches.load("mutants")

SOURCE = '''"""A module docstring."""
import logging

log = logging.getLogger("x")


def size(a, b):
    """A docstring."""
    log.debug("size %d", a + b)
    if a > b:
        return a - b
    return a + b


if __name__ == "__main__":
    print(size(1, 2) * 3)
'''


@pytest.fixture
def module(tmp_path: Path) -> Path:
    (tmp_path / "impl").mkdir()
    path = tmp_path / "impl" / "m.py"
    path.write_text(SOURCE)
    return path


def _mutants(tmp_path: Path, path: Path) -> list:
    return mutants.file_mutants("t", tmp_path, path, mutants.operators())


def test_quiet_lines_are_docstrings_logging_and_the_main_guard():
    quiet = mutants.quiet_lines(SOURCE)
    assert {1, 8, 9, 15, 16} <= quiet
    assert not quiet & {7, 10, 11, 12}


def test_no_mutant_in_an_annotation_that_is_never_evaluated(tmp_path: Path):
    body = "def f(a: int | None, b: int = 1 | 2) -> int | str:\n    x: int | None = a\n    return b\n"
    lazy, eager = tmp_path / "lazy.py", tmp_path / "eager.py"
    lazy.write_text(f"from __future__ import annotations\n\n\n{body}")
    eager.write_text(body)
    bit_or = [m for m in _mutants(tmp_path, lazy) if "BitOr" in m.operator]
    assert bit_or and {m.line for m in bit_or} == {4}
    for m in bit_or:  # only the default's `|` is mutated
        assert "a: int | None, b: int = 1 | 2) -> int | str" not in mutants.mutated_source(m, lazy.read_text())
        assert "a: int | None" in mutants.mutated_source(m, lazy.read_text())
    # evaluated when the function is defined, without the future import: mutants like any other
    assert len([m for m in _mutants(tmp_path, eager) if "BitOr" in m.operator]) > len(bit_or)


def test_no_mutant_on_a_quiet_line_and_every_one_changes_its_own_line(tmp_path: Path, module: Path):
    found = _mutants(tmp_path, module)
    assert found and all(m.line in {10, 11, 12} for m in found)
    for m in found:
        mutated = mutants.mutated_source(m, SOURCE)
        if mutated is None:  # a mutation that changes nothing is passed over, never run
            continue
        changed = [i for i, (a, b) in enumerate(zip(SOURCE.splitlines(), mutated.splitlines(), strict=False), 1)
                   if a != b]
        assert changed == [m.line], m.id


def test_sampling_is_the_seeds_and_one_mutant_a_line(tmp_path: Path, module: Path):
    found = _mutants(tmp_path, module)
    many = [mutants.Mutant("t", f"impl/f{i}.py", m.operator, m.occurrence, m.line) for i in range(20) for m in found]
    first, _ = mutants.sample(many, 15, 0, "t")
    assert first == mutants.sample(list(reversed(many)), 15, 0, "t")[0]  # the draw, not the input's order
    assert first != mutants.sample(many, 15, 1, "t")[0]
    assert first != mutants.sample(many, 15, 0, "other")[0]
    assert len(first) == 15 and len({(m.path, m.line) for m in first}) == 15


def test_sampling_passes_over_what_is_no_mutant(tmp_path: Path, module: Path):
    found = _mutants(tmp_path, module)
    chosen, _ = mutants.sample(found, 2, 0, "t", usable=lambda m: m.operator != found[0].operator)
    assert len(chosen) == 2 and all(m.operator != found[0].operator for m in chosen)
    assert mutants.sample(found, 2, 0, "t", usable=lambda m: False) == ([], len(found))


def test_a_mutant_is_applied_then_restored_also_when_the_run_raises(tmp_path: Path, module: Path):
    m = _mutants(tmp_path, module)[0]
    mutated = mutants.mutated_source(m, SOURCE)
    pyc = module.parent / "__pycache__" / "m.cpython-311.pyc"
    pyc.parent.mkdir()
    pyc.write_bytes(b"stale")
    with mutants.applied(tmp_path, m, mutated):
        assert module.read_text() == mutated
        assert not pyc.exists()  # a stale pyc of the same size and second would run the old code
    assert module.read_text() == SOURCE
    with pytest.raises(KeyboardInterrupt), mutants.applied(tmp_path, m, mutated):
        raise KeyboardInterrupt
    assert module.read_text() == SOURCE


def test_sigterm_interrupts_so_the_file_is_restored(tmp_path: Path, module: Path):
    import os
    import signal

    m = _mutants(tmp_path, module)[0]
    with pytest.raises(KeyboardInterrupt), mutants.terminations_as_interrupts(), \
            mutants.applied(tmp_path, m, mutants.mutated_source(m, SOURCE)):
        os.kill(os.getpid(), signal.SIGTERM)
    assert module.read_text() == SOURCE


def test_the_probes_touch_union_fuse_getattr_only():
    source = (ROOT / mutants.PROBE_FILE).read_text()
    (fatal, no_op) = mutants.probe_mutants(ROOT)
    for probe in (fatal, no_op):
        diff = mutants.unified_diff(probe.path, source, mutants.mutated_source(probe, source))
        assert "def getattr" in diff and sum(line.startswith("+") for line in diff.splitlines()) == 2
    assert "raise SystemExit" in mutants.mutated_source(fatal, source)


def _results(tmp_path: Path, *records: tuple[str, str, str]) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": 3, "meta": {}, "records": [
        {"scenario": s, "subject": subject, "placement": "same", "expected": expected, "verdict": verdict,
         "reason": ""} for s, subject, expected, verdict in
        ((f"s{i}", r[0], r[1], r[2]) for i, r in enumerate(records))]}))
    return path


def test_classification_from_results_json(tmp_path: Path):
    ok = _results(tmp_path, ("union-fuse", "pass", "pass"), ("union-fuse", "fail", "fail"))
    jobs = {("s0", "union-fuse", "same"), ("s1", "union-fuse", "same")}
    assert mutants.classify(0, ok, jobs).status == "survived"
    assert mutants.classify(None, ok, jobs).status == "timeout"
    assert mutants.classify(1, ok, jobs).status == "error"  # exit 1 with nothing unexpected: not a kill
    assert mutants.classify(2, tmp_path / "missing.json", jobs).status == "error"  # vfslab crashed
    assert mutants.classify(0, ok, {("s0", "union-fuse", "same")}).status == "error"  # not the baseline's jobs

    bad = _results(tmp_path, ("union-fuse", "pass", "fail"), ("union-fuse", "fail", "fail"))
    killed = mutants.classify(1, bad, jobs)
    assert killed.status == "killed" and "s0 on union-fuse: fail (expected pass)" in killed.detail
    assert mutants.classify(0, bad, jobs).status == "error"  # an unexpected verdict vfslab did not exit 1 for

    gone = _results(tmp_path, ("union-fuse", "pass", "unavailable"), ("union-fuse", "fail", "fail"))
    assert mutants.classify(1, gone, jobs).status == "error"  # a missing subject judged nothing


def test_the_kill_rate_counts_timeouts_as_kills_and_leaves_errors_out():
    m = mutants.Mutant("t", "impl/x.py", "core/AddNot", 0, 1)
    t = mutants.Tally("t", 10, [m] * 4)
    t.results = [mutants.Result(m, mutants.Outcome(s, ""), "") for s in ("killed", "timeout", "survived", "error")]
    assert t.kill_rate == pytest.approx(2 / 3)


def test_the_vfslab_command_is_the_trees_own_with_the_seed(tmp_path: Path):
    command = mutants.vfslab_command(tmp_path, mutants.BY_NAME["pmem"], 7, tmp_path / "out")
    assert command[0] == str(tmp_path / ".venv/bin/vfslab") and command[1] == "run"
    assert command[command.index("--seed") + 1] == "7"
    assert [command[i + 1] for i, a in enumerate(command) if a == "--subject"] == ["pmem-router", "pmem-fuse"]


def test_every_family_names_files_scenarios_and_subjects_that_exist():
    from vfslab.subjects import SUBJECTS

    for f in mutants.FAMILIES:
        assert mutants.family_files(f, ROOT), f.name
        assert all((ROOT / s).exists() for s in f.scenarios), f.name
        assert all(s in SUBJECTS for s in f.subjects), f.name
        assert all((ROOT / e).exists() for e in f.excluded), f.name
