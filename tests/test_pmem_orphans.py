"""Orphan reclaim at reopen as a scenario kind: files held open and unlinked through pmem-fuse (its daemon then
SIGKILLed) and through the router (the program's process SIGKILLed with the pool mapped), the pool reopened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfslab.check.pmem import orphans
from vfslab.cli import main
from vfslab.impl.pmem.fs import PmemFS

pytestmark = pytest.mark.mounts
SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "pmem" / "orphans.toml"


@pytest.mark.parametrize("name", ["pmem-fuse", "pmem-router"])
def test_orphans_left_by_a_killed_subject_are_reclaimed_at_reopen(need, scratch, name):
    """One program by hand: a file held and unlinked, another renamed over a held one and written through it."""
    program = [("create", "/a", 5000), ("hold", "/a"), ("unlink", "/a"), ("create", "/b", 1), ("hold", "/b"),
               ("create", "/c", 4097), ("rename", "/c", "/b"), ("write", -1, 4097), ("create", "/a", 3)]
    verdict = orphans.run(program, need(name), scratch)
    assert verdict.problem is None, verdict.problem
    assert verdict.fired[orphans.RULE] == 2, "two orphans were left to the reopen"


def test_vfslab_run_reports_an_orphan_reclaim_that_does_nothing(tmp_path, monkeypatch, capsys, need):
    """The scenario passes on the pool as it is; a pool that reclaims no orphan at reopen fails it on both subjects,
    with a shrunk program whose replay reproduces the failure."""
    need("pmem-fuse")
    out = tmp_path / "out"
    assert main(["run", str(SCENARIO), "--out", str(out)]) == 0, "the pool as it is passes"
    monkeypatch.setattr(PmemFS, "_reclaim_orphans", lambda self: None)  # in this process: where the pool reopens
    assert main(["run", str(SCENARIO), "--out", str(out)]) == 1
    records = json.loads((out / "results.json").read_text())["records"]
    assert {r["subject"]: r["verdict"] for r in records} == {"pmem-fuse": "fail", "pmem-router": "fail"}
    for record in records:
        found = record["counterexample"]
        assert "allocated but unreachable" in found["message"] and "SIGKILLed" in found["message"]
        assert len(found["ops"]) <= 3, "shrunk: a file made, held and unlinked"
        assert Path(found["program_file"]).exists()
        capsys.readouterr()
        assert main(found["replay"].split()[1:]) == 1
        assert f"reproduced on {record['subject']}" in capsys.readouterr().out


def test_a_reclaim_that_leaks_a_block_fails_the_check(need, scratch, monkeypatch):
    """A reopen that frees an orphan's inode but keeps one of its blocks in use is caught (the block is leaked)."""
    real = PmemFS._reclaim_orphans

    def leaky(self):
        kept = [self.inode(ino).direct[0] for ino in range(1, self.pool.inodes + 1)
                if self.inode(ino).mode and not self.inode(ino).nlink]
        real(self)
        with self.pool.transaction():
            for block in filter(None, kept):
                self.pool._mark(block, True)

    monkeypatch.setattr(PmemFS, "_reclaim_orphans", leaky)
    verdict = orphans.run([("create", "/a", 100), ("hold", "/a"), ("unlink", "/a")], need("pmem-router"), scratch)
    assert verdict.problem is not None and "leaked" in verdict.problem, verdict.problem
