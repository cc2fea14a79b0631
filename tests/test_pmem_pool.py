"""The pmem pool: its format, transactions and recovery, its file system's calls, crashes at every persist point,
and corrupt pools refused with one line."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
from conftest import errno_of
from hypothesis import HealthCheck, given, settings

from vfslab.check.pmem import crash, damage
from vfslab.impl.pmem import fsck
from vfslab.impl.pmem.fs import PER_BLOCK, RENAME_EXCHANGE, RENAME_NOREPLACE, Cred, PmemFS
from vfslab.impl.pmem.pool import Crash, Pool, PoolError

SIZE = 512 * 1024


@pytest.fixture
def pool(tmp_path):
    path = tmp_path / "p.pool"
    PmemFS.mkfs(str(path), SIZE)
    return path


@pytest.fixture
def fs(pool):
    f = PmemFS.open(str(pool))
    yield f
    f.close()


def test_the_core_errnos(fs):
    """docs/facts.md, pmemfile 1 and 9."""
    r = fs.pool.root
    fs.close_file(fs.openat(r, "/f", os.O_CREAT | os.O_WRONLY))
    fs.mkdirat(r, "/d")
    fs.mkdirat(r, "/d/sub")
    fs.mkdirat(r, "/e")
    fs.close_file(fs.openat(r, "/e/x", os.O_CREAT | os.O_WRONLY))
    fs.symlinkat("f", r, "/l")
    cases = {
        "empty path": (lambda: fs.lookup(r, ""), errno.ENOENT),
        "component > 255": (lambda: fs.lookup(r, "/" + "n" * 256), errno.ENAMETOOLONG),
        "path >= PATH_MAX": (lambda: fs.lookup(r, "/a" * 2048), errno.ENAMETOOLONG),
        "O_CREAT|O_EXCL on a symlink": (lambda: fs.openat(r, "/l", os.O_CREAT | os.O_EXCL | os.O_WRONLY),
                                        errno.EEXIST),
        "O_NOFOLLOW on a symlink": (lambda: fs.openat(r, "/l", os.O_RDONLY | os.O_NOFOLLOW), errno.ELOOP),
        "write-open of a directory": (lambda: fs.openat(r, "/d", os.O_WRONLY), errno.EISDIR),
        "unlink of a directory": (lambda: fs.unlinkat(r, "/d"), errno.EISDIR),
        "file/": (lambda: fs.lookup(r, "/f/"), errno.ENOTDIR),
        "rmdir /": (lambda: fs.unlinkat(r, "/", rmdir=True), errno.EBUSY),
        "rmdir .": (lambda: fs.unlinkat(r, "/d/.", rmdir=True), errno.EINVAL),
        "link of a directory": (lambda: fs.linkat(r, "/d", r, "/d2"), errno.EPERM),
        "rename a dir onto a non-empty dir": (lambda: fs.renameat2(r, "/d", r, "/e"), errno.ENOTEMPTY),
        "rename into its own subtree": (lambda: fs.renameat2(r, "/d", r, "/d/sub/in"), errno.EINVAL),
        "RENAME_NOREPLACE onto a name": (lambda: fs.renameat2(r, "/f", r, "/l", RENAME_NOREPLACE), errno.EEXIST),
        "rmdir of a non-empty dir": (lambda: fs.unlinkat(r, "/d", rmdir=True), errno.ENOTEMPTY),
        "symlink loop": (lambda: (fs.symlinkat("loop", r, "/loop"), fs.lookup(r, "/loop")), errno.ELOOP),
    }
    got = {name: errno_of(call) for name, (call, _) in cases.items()}
    assert got == {name: code for name, (_, code) in cases.items()}
    fs.renameat2(r, "/f", r, "/e/x", RENAME_EXCHANGE)
    assert fs.fstatat(r, "/f").st_ino != fs.fstatat(r, "/e/x").st_ino
    assert fs.stat(r).st_nlink == 4 and fs.fstatat(r, "/d").st_nlink == 3, "nlink = 2 + subdirectories"
    assert fsck.check(fs) == []


def test_data_holes_truncate_and_permissions(fs):
    r = fs.pool.root
    assert errno_of(lambda: fs.openat(r, "/f", os.O_CREAT | os.O_RDWR, 0o640, Cred(1000, 1000))) == errno.EACCES
    fs.chmod(r, 0o777)
    f = fs.openat(r, "/f", os.O_CREAT | os.O_RDWR, 0o640, Cred(1000, 1000))
    fs.pwrite(f, b"tail", 100_000)
    assert fs.pread(f, 8, 99_998) == b"\0\0tail" and fs.stat(f.ino).st_size == 100_004
    fs.truncate(f.ino, 10)
    fs.truncate(f.ino, 50)
    assert fs.pread(f, 100, 0) == bytes(50)
    fs.close_file(f)
    assert fs.fstatat(r, "/f").st_uid == 1000
    assert errno_of(lambda: fs.openat(r, "/f", os.O_RDONLY, cred=Cred(1001, 1001))) == errno.EACCES
    assert errno_of(lambda: fs.chmod(fs.lookup(r, "/f"), 0o777, Cred(1001, 1001))) == errno.EPERM
    fs.close_file(fs.openat(r, "/f", os.O_RDONLY, cred=Cred(1001, 1000)))  # the group may read
    assert fsck.check(fs) == []


def test_a_setgid_directory_hands_down_its_group_and_to_directories_its_setgid_bit(fs):
    r = fs.pool.root
    fs.mkdirat(r, "/g", 0o777)
    g = fs.lookup(r, "/g")
    fs.chown(g, 0, 1000)
    fs.chmod(g, 0o2777)
    fs.mkdirat(r, "/g/sub", 0o755, Cred(1001, 1001))
    fs.close_file(fs.openat(r, "/g/f", os.O_CREAT | os.O_WRONLY, 0o644, Cred(1001, 1001)))
    fs.symlinkat("f", r, "/g/l", Cred(1001, 1001))
    sub, f, link = (fs.fstatat(r, p, follow=False) for p in ("/g/sub", "/g/f", "/g/l"))
    assert (sub.st_gid, sub.st_mode & 0o7777) == (1000, 0o2755)
    assert (f.st_gid, f.st_mode & 0o7777) == (1000, 0o644) and link.st_gid == 1000
    fs.chmod(g, 0o777)
    fs.mkdirat(r, "/g/plain", 0o755, Cred(1001, 1001))
    assert fs.fstatat(r, "/g/plain").st_gid == 1001
    assert fsck.check(fs) == []


def test_an_open_unlinked_file_lives_until_its_last_close_or_the_next_open(pool):
    fs = PmemFS.open(str(pool))
    f = fs.openat(fs.pool.root, "/f", os.O_CREAT | os.O_RDWR)
    fs.write(f, b"still here")
    fs.unlinkat(fs.pool.root, "/f")
    assert fs.pread(f, 100, 0) == b"still here" and fs.stat(f.ino).st_nlink == 0
    assert fsck.check(fs) == [], "an open orphan is consistent"
    ino = f.ino
    fs.close()  # a "crash": the file was never closed
    again = PmemFS.open(str(pool))
    try:
        assert again.inode(ino).mode == 0, "reclaimed at the next open"
        assert fsck.check(again) == []
    finally:
        again.close()


def test_a_transaction_cut_short_is_rolled_back_at_open(pool):
    fs = PmemFS.open(str(pool))
    fs.pool.crash_at = fs.pool.persists + 6  # inside the mkdir's commit
    with pytest.raises(Crash):
        fs.mkdirat(fs.pool.root, "/d")
    fs.close()
    assert Pool.open(str(pool)).view != bytearray(), "it opens"
    again = PmemFS.open(str(pool))
    try:
        assert [n for n, _ in again.entries(again.pool.root)] == [] and fsck.check(again) == []
    finally:
        again.close()


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(program=crash.programs)
def test_a_crash_at_any_persist_point_recovers_all_or_nothing(tmp_path_factory, program):
    scratch = tmp_path_factory.mktemp("crash")
    start = scratch / "start.pool"
    PmemFS.mkfs(str(start), SIZE)
    verdict = crash.run(program, start, scratch)
    assert verdict.problem is None, f"{verdict.problem}\nprogram: {program}"


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(done=damage.damages)
def test_a_damaged_pool_is_refused_or_opens_consistent_or_reports_corruption(tmp_path_factory, done):
    assert damage.run(done, tmp_path_factory.mktemp("damage")) is None


def test_a_pool_that_reports_damage_with_an_exception_fails_the_damage_scenario(tmp_path, monkeypatch, capsys):
    from vfslab.cli import main
    from vfslab.impl.pmem import fs as pool_fs
    from vfslab.suite import default_suite

    real = pool_fs.err
    # a file system that meets a damaged inode or directory and says so with a Python exception, not EIO
    monkeypatch.setattr(pool_fs, "err", lambda code, what="": ValueError(what) if code == errno.EIO
                        else real(code, what))
    out = tmp_path / "out"
    assert main(["run", str(default_suite() / "pmem" / "damage.toml"), "--full", "--out", str(out)]) == 1
    assert "ValueError" in capsys.readouterr().out
    program = out / "programs" / "pmem-damaged-pools--pmem-router.json"
    assert main(["replay", str(program)]) == 1, "the replay reproduces it"


def test_not_a_pool_and_mkfs_refusing_to_overwrite(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello" * 20_000)
    with pytest.raises(PoolError, match="not a pmem pool"):
        PmemFS.open(str(other))
    with pytest.raises(PoolError, match="too small"):
        (tmp_path / "tiny").write_bytes(b"x")
        PmemFS.open(str(tmp_path / "tiny"))
    assert not Pool.is_pool(str(other))
    shutil.copy(other, tmp_path / "copy")
    assert (tmp_path / "copy").read_text() == other.read_text()


def test_vfslab_run_reports_a_planted_broken_transaction(tmp_path, monkeypatch, capsys):
    """The crash scenario in `vfslab run`: a pool whose transactions keep no undo log fails it, with a shrunk program
    whose replay reproduces the failure."""
    import json
    from pathlib import Path

    from vfslab.cli import main
    from vfslab.impl.pmem.pool import Pool

    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "pmem" / "crash.toml"
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--out", str(out)]) == 0, "the pool as it is passes"
    monkeypatch.setattr(Pool, "_log", lambda self, offset, old: None)  # stores are no longer undo-logged
    assert main(["run", str(scenario), "--out", str(out)]) == 1
    record = json.loads((out / "results.json").read_text())["records"][0]
    assert record["verdict"] == "fail" and "crash at persist point" in record["counterexample"]["message"]
    assert len(record["counterexample"]["ops"]) <= 3, "shrunk"
    capsys.readouterr()
    assert main(record["counterexample"]["replay"].split()[1:]) == 1
    assert "reproduced on pmem-router" in capsys.readouterr().out


def test_a_directory_of_more_entries_than_a_block_holds_lists_and_finds_them_all(tmp_path):
    PmemFS.mkfs(str(tmp_path / "pool"), 4 << 20)
    fs = PmemFS.open(str(tmp_path / "pool"))
    try:
        r = fs.pool.root
        names = [f"f{i}" for i in range(2 * PER_BLOCK + 3)]  # a block holds PER_BLOCK, then padding
        for name in names:
            fs.close_file(fs.openat(r, f"/{name}", os.O_CREAT | os.O_WRONLY))
        assert sorted(n for n, _ in fs.entries(r)) == sorted(names)
        fs.unlinkat(r, f"/{names[PER_BLOCK]}")
        fs.unlinkat(r, f"/{names[-1]}")
        assert sorted(n for n, _ in fs.entries(r)) == sorted(set(names) - {names[PER_BLOCK], names[-1]})
        assert fsck.check(fs) == []
    finally:
        fs.close()


def test_a_quick_crash_run_crashes_in_renames_of_every_kind_and_at_the_pools_limits(tmp_path):
    """The crash scenario's programs in a quick default run (its seed, QUICK's 30): renames that succeed, of every
    kind (plain, over an existing file, NOREPLACE, EXCHANGE, across directories, of a directory), each crashed at
    every one of its persist points; directories across a block's end and files at a block's and at the direct
    blocks' end."""
    import itertools
    from collections import Counter

    from vfslab.check.engine.generated import QUICK, check_inputs
    from vfslab.model.limits import edges_of
    from vfslab.model.pmem.rules import BLOCK_LIMIT, DIR_BLOCK_LIMIT, DIRECT_LIMIT
    from vfslab.runner import scenario_seed

    start = tmp_path / "start.pool"
    PmemFS.mkfs(str(start), crash.POOL_SIZE)
    renames, fired, count = Counter(), Counter(), itertools.count()

    def check(program):
        scratch = tmp_path / f"ex{next(count)}"
        scratch.mkdir()
        verdict = crash.run(program, start, scratch)
        renames.update(verdict.renames)
        fired.update(verdict.fired)
        shutil.rmtree(scratch)
        assert verdict.problem is None, verdict.problem

    tally = check_inputs(crash.programs, check, seed=scenario_seed(0, "pmem-crash-consistency"), budget=QUICK)
    assert tally.failure is None and not tally.error, tally.error
    assert {kind: renames[kind] > 0 for kind in crash.RENAME_KINDS} == dict.fromkeys(crash.RENAME_KINDS, True)
    edges = edges_of((DIR_BLOCK_LIMIT, BLOCK_LIMIT, DIRECT_LIMIT))
    assert {e: fired[e] > 0 for e in edges} == dict.fromkeys(edges, True)
    assert fired["pmem.pool.dir-block"] and fired["pmem.pool.file-block"], "blocks taken and freed at the limits"


def test_a_rename_in_two_transactions_is_caught_crashed_between_them(tmp_path, monkeypatch):
    """Every persist point of a rename that succeeds is crashed at: a rename made of a link and an unlink (two
    transactions) shows both names after a crash between them."""
    start = tmp_path / "start.pool"
    PmemFS.mkfs(str(start), crash.POOL_SIZE)
    program = [("create", "/a"), ("mkdir", "/d"), ("rename", "/a", "/d/b", 0)]
    verdict = crash.run(program, start, tmp_path)
    assert verdict.problem is None and set(verdict.renames) == {"plain", "across"} and verdict.renames["plain"] > 3
    real = PmemFS.renameat2

    def two_steps(self, start, old, start2, new, flags=0, cred=None, must_be_dir=False):
        if flags or not self.fstatat(start, old, follow=False).st_mode & 0o100000:
            return real(self, start, old, start2, new, flags)
        self.linkat(start, old, start2, new)
        self.unlinkat(start, old)

    monkeypatch.setattr(PmemFS, "renameat2", two_steps)
    verdict = crash.run(program, start, tmp_path)
    assert verdict.problem is not None and "op 3 ('rename'" in verdict.problem, verdict.problem
