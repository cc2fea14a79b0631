"""The routing model (model/pmem), rule by rule: paths across the mount point, calls on it, fds, the cwd."""

from __future__ import annotations

import errno
import os

import pytest

from vfslab.check.pmem.program import KERNEL, POOL_AT
from vfslab.check.pmem.stateful import POOL_NODES
from vfslab.model.outcome import Err
from vfslab.model.pmem import PROFILES, RoutingModel

TAKEN = (0, 1, 2, 3, 4)  # the router's process: stdio and the pool file (mapped)


@pytest.fixture
def model() -> RoutingModel:
    return RoutingModel(KERNEL, {POOL_AT: POOL_NODES}, PROFILES["pmemfile"], TAKEN)


def test_paths_cross_the_mount_point(model):
    assert model.stat("P/lk").result.size == len(b"kernel file\n")
    assert "pmem.symlink.absolute" in model.stat("P/lk").rules, "an absolute target restarts at the kernel root"
    assert "pmem.route.dotdot" in model.stat("P/lp").rules, "`..` at the pool's root leaves it"
    assert model.stat("k/toP/d/up/k/f").result.kind == "file"
    assert model.stat("..").result == model.stat("/").result, "`..` at the kernel's root is the root"
    assert model.stat("P/loop").result == Err(errno.ELOOP)
    assert model.stat("P/" + "n" * 256).result == Err(errno.ENAMETOOLONG)
    assert model.stat("P/a/").result == Err(errno.ENOTDIR)
    assert model.lstat("P/ld/").result.kind == "dir", "a trailing `/` follows the last symlink"


def test_calls_across_file_systems_and_on_the_mount_point(model):
    assert model.rename("P/a", "k/a").result == Err(errno.EXDEV)
    assert model.link("k/f", "P/f").result == Err(errno.EXDEV)
    assert model.link("P/nope", "k/x").result == Err(errno.ENOENT), "the kernel's order: the old name first"
    assert model.rmdir("P").result == Err(errno.EBUSY)
    assert model.rename("P", "k/x").result == Err(errno.EBUSY)
    assert model.rename("k/f", "P").result == Err(errno.EISDIR), "the names' types before the mount point"
    assert model.unlink("P").result == Err(errno.EISDIR)
    assert model.mkdir("P").result == Err(errno.EEXIST)
    assert model.rmdir("P/d/..").result == Err(errno.ENOTEMPTY)
    assert model.rmdir("P/d/.").result == Err(errno.EINVAL)
    assert model.symlink("x", "P/new/").result == Err(errno.ENOENT)
    assert model.unlink("P/a/").result == Err(errno.ENOTDIR)


def test_fds_cwd_and_profiles(model):
    fd = model.open("k/toP/d/b", os.O_RDONLY).result
    assert fd == 5, "the lowest fd the process has free"
    again = model.dup(fd).result
    assert model.read(fd, 2).result == b"be" and model.read(again, 10).result == b"e\n", "dup'ed fds share"
    assert model.dup2(fd, 9).result == 9 and model.close(fd).result is None
    assert model.read(9, 1).result == b"" and model.close(fd).result == Err(errno.EBADF)
    assert model.chdir("P/ld").result is None and model.getcwd().result == "/P/d"
    assert "pmem.cwd.virtual" in model.chdir("../e").rules and model.getcwd().result == "/P/e"
    assert model.chdir("../a").result == Err(errno.ENOTDIR)
    assert model.stat("").result == Err(errno.ENOTDIR)
    kernel = RoutingModel(KERNEL, {POOL_AT: POOL_NODES}, PROFILES["kernel"], TAKEN)
    assert kernel.stat("").result == Err(errno.ENOENT)


def test_the_tree_puts_the_pool_at_its_mount_point(model):
    assert model.mkdir("P/d/new").result is None and model.open("k/g", os.O_CREAT | os.O_WRONLY).result == 5
    tree = model.state()
    assert tree["P"].nlink == 2 + 2, "the pool's root, whose subdirectories are d and e"
    assert {"P/d/new", "k/g", "P/lk", "k/toP"} <= set(tree)
    assert tree["P/lk"].target == "/k/f" and tree["k/f"].digest is not None


def test_the_walk_counts_the_edges_of_its_limits(model):
    """PATH_MAX counts the terminating NUL (4095 bytes are allowed, 4096 are not), a component may have NAME_MAX
    bytes, a lookup may follow MAXSYMLINKS symlinks; each outcome fires the edge its number is at, and a symlink
    count only at the lookup's end (its total), not each count on the way."""
    from vfslab.check.pmem.stateful import pad

    at = "pmem.path.enametoolong@"
    for size, edge, result in ((4094, "PATH_MAX-1", "file"), (4095, "PATH_MAX", "file"), (4096, "PATH_MAX+1", None)):
        done = model.stat(pad("/P/a", size))
        assert f"{at}{edge}" in done.rules and (done.result.kind if result else done.result) == (
            result or Err(errno.ENAMETOOLONG)), size
    assert model.stat("/P/" + "é" * 2048).result == Err(errno.ENAMETOOLONG), "bytes are counted, not characters"
    for n, edge in ((254, "NAME_MAX-1"), (255, "NAME_MAX"), (256, "NAME_MAX+1")):
        made = model.mkdir("/P/" + "m" * n)
        assert f"{at}{edge}" in made.rules
        assert made.result == (Err(errno.ENAMETOOLONG) if n > 255 else None)
    assert model.symlink(".", "/P/dot").result is None
    for n, edge in ((39, "MAXSYMLINKS-1"), (40, "MAXSYMLINKS"), (41, "MAXSYMLINKS+1")):
        done = model.stat("/P/" + "dot/" * n + "a")
        fired = [r for r in done.rules if r.startswith("pmem.symlink.follow@")]
        assert fired == [f"pmem.symlink.follow@{edge}"], (n, fired)
        assert done.result == Err(errno.ELOOP) if n > 40 else done.result.kind == "file"
    assert not [r for r in model.lstat("/P/" + "dot/" * 38 + "dot").rules if "@" in r], \
        "lstat leaves the last one: 38 followed, no edge"


def test_the_numbers_of_the_pool_rules_are_the_pools():
    """model/pmem/rules.py writes the pool's format again (impl never imports a model): it must be the same."""
    from vfslab.check.pmem.family import FAMILY
    from vfslab.impl.pmem import fs, pool
    from vfslab.model.pmem import LIMITS, RULES
    from vfslab.model.pmem import rules as pmem_rules

    model = (pmem_rules.BLOCK, pmem_rules.DIRENT, pmem_rules.DIR_BLOCK, pmem_rules.DIRECT)
    assert model == (pool.BLOCK, fs.DIRENT.size, fs.PER_BLOCK, fs.DIRECT)
    limits = tuple(limit.value for limit in LIMITS[:3])
    assert limits == (fs.NAME_MAX, fs.PATH_MAX, fs.MAX_SYMLINKS)
    assert FAMILY.limits == LIMITS and all(limit.rule in RULES for limit in LIMITS)


def test_a_slash_after_a_rename_onto_the_mount_point_asks_for_a_directory(model):
    """As the kernel: a `/` after either name of a rename asks the old one to be a directory (ENOTDIR), before the
    names' types (EISDIR) and the mount point (EBUSY) are looked at (found by the mount-point sequences)."""
    assert model.rename("/k/f", "P/").result == Err(errno.ENOTDIR)
    assert model.rename("k/toP/", "P").result == Err(errno.ENOTDIR), "a symlink, not followed, is no directory"
    assert model.rename("/k/f", "P").result == Err(errno.EISDIR)
    assert model.rename("/k", "P/").result == Err(errno.EBUSY)
