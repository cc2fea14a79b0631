"""The router: the same generated programs through the router (a pool at /P) and on the kernel (a plain directory
at /P), each in a chrooted process of its own, see the same results, except the named deviations; and the router's
own rules, one by one, in this process."""

from __future__ import annotations

import errno
import os

import pytest
from conftest import errno_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vfslab.check.pmem import transparency
from vfslab.check.pmem.program import KERNEL
from vfslab.check.pmem.stateful import POOL_NODES, alike_steps, pool_trees, resolve
from vfslab.impl.pmem.fs import PmemFS
from vfslab.impl.pmem.router import Router
from vfslab.subjects.pmem import fill_pool
from vfslab.subjects.tree import build_layer


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(pool=pool_trees, program=st.lists(alike_steps, min_size=1, max_size=10))
def test_the_router_is_transparent_but_for_named_deviations(tmp_path_factory, pool, program):
    """The CI profile: 500 programs (relative and absolute paths, symlinks into and out of the pool, `..` across
    the mount point, the cwd inside and outside it, dup'ed fds, what two fds share, names, paths and symlink
    chains at NAME_MAX, PATH_MAX and MAXSYMLINKS), on generated pool trees."""
    program = resolve([call for step in program for call in step], 0, 4)
    verdict = transparency.run(program, pool, tmp_path_factory.mktemp("t"))
    assert verdict.problem is None, f"{verdict.problem}\npool: {[n.path for n in pool]}\nprogram: {program}"
    assert verdict.deviation in (None, "exdev", "empty-path", "mount-point")


@pytest.fixture
def routed(tmp_path):
    build_layer(KERNEL, tmp_path)
    PmemFS.mkfs(str(tmp_path / "tree.pool"), 1 << 20)
    fs = PmemFS.open(str(tmp_path / "tree.pool"))
    fill_pool(fs, POOL_NODES)
    router = Router()
    router.mount(str(tmp_path / "P"), fs)
    router.chdir(str(tmp_path))
    yield router, tmp_path
    router.close_all()
    fs.close()


def test_the_routing_rules(routed):
    router, root = routed
    assert router.readlink("P/lk") == "/k/f"
    router.symlink(f"{root}/k/f", "P/abs")
    assert router.stat("P/abs").st_size == len("kernel file\n"), "an absolute target restarts at the kernel root"
    assert router.stat("P/lp").st_size == len("kernel file\n"), "`..` at the pool's root leaves it"
    assert errno_of(lambda: router.stat("P/loop")) == errno.ELOOP
    assert errno_of(lambda: router.stat("")) == errno.ENOTDIR, "upstream's empty path"
    assert errno_of(lambda: router.rename("P/a", "k/a")) == errno.EXDEV
    assert errno_of(lambda: router.link("k/f", "P/f")) == errno.EXDEV
    router.chdir("k/toP/d")
    assert router.getcwd() == f"{root}/P/d" and os.getcwd() != f"{root}/P/d", "the cwd in a pool is virtual"
    fd = router.open("b", os.O_RDONLY)
    kernel_fd = os.open(os.devnull, os.O_RDONLY)
    assert kernel_fd == fd + 1, "a pool fd is a real kernel fd: numbers follow the lowest-free rule"
    os.close(kernel_fd)
    again = router.dup(fd)
    assert router.read(fd, 2) == b"be" and router.read(again, 10) == b"e\n", "dup'ed fds share the offset"
    router.close(fd)
    assert router.read(again, 1) == b"" and router.fstat(again).st_size == 4
    router.close(again)
    assert router.fds == {}


def test_the_router_and_the_pool_count_a_path_in_bytes_at_its_limits(routed):
    """PATH_MAX counts bytes and the terminating NUL: 4095 bytes pass, 4096 are ENAMETOOLONG, however few
    characters they are; 40 symlinks are followed, the 41st is ELOOP; a name may have 255 bytes."""
    from vfslab.check.pmem.stateful import pad

    router, _ = routed
    assert router.stat(pad("P/a", 4095)).st_size == len(b"hello\n")
    assert errno_of(lambda: router.stat(pad("P/a", 4096))) == errno.ENAMETOOLONG
    wide = "P/" + "é/" * 1365  # 2732 characters, 4097 bytes
    assert errno_of(lambda: router.stat(wide)) == errno.ENAMETOOLONG
    fs = router.pools[next(iter(router.pools))].fs
    assert errno_of(lambda: fs.lookup(fs.pool.root, wide[1:])) == errno.ENAMETOOLONG, "the pool's own walk too"
    router.symlink(".", "P/dot")
    assert router.stat("P/" + "dot/" * 40 + "a").st_size == len(b"hello\n")
    assert errno_of(lambda: router.stat("P/" + "dot/" * 41 + "a")) == errno.ELOOP
    router.mkdir("P/" + "m" * 255)
    assert errno_of(lambda: router.mkdir("P/" + "m" * 256)) == errno.ENAMETOOLONG


def test_the_router_is_the_kernel_at_the_limits(tmp_path):
    """The same calls at NAME_MAX, PATH_MAX and MAXSYMLINKS (and a path long in bytes, short in characters)
    through the router and on the kernel: the same answers."""
    from vfslab.check.pmem.stateful import pad

    program = [["symlink", ".", "/P/dot"], ["symlink", ".", "/k/dot"],
               *(["stat", f"/{where}/" + "dot/" * n + name] for n in (39, 40, 41) for where, name in
                 (("P", "a"), ("k", "f"))),
               *([call, pad(path, n)] for n in (4094, 4095, 4096) for path in ("/P/a", "P/d/b", "/k/f")
                 for call in ("stat", "lstat")),
               *(["mkdir", f"/{where}/" + "m" * n] for n in (254, 255, 256) for where in ("P", "k")),
               ["stat", "P/" + "é/" * 1365], ["stat", "k/" + "é/" * 1365], ["stat", "P/" + "é/" * 1364]]
    verdict = transparency.run(program, POOL_NODES, tmp_path)
    assert verdict.problem is None and verdict.deviation is None, verdict.problem


def test_a_quick_transparency_run_counts_what_it_compared(tmp_path):
    """The transparency scenario in a quick default run counts the rules and edges of the calls it compared (as the
    routing model decides them; it counted none before): the limits' edges among them, each answered alike by the
    router and the kernel. scenarios/pmem/edges.toml compares every edge in every run."""
    from pathlib import Path

    from vfslab.check.results import Results
    from vfslab.cli import main

    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "pmem" / "transparency.toml"
    assert main(["run", str(scenario), "--out", str(tmp_path / "out")]) == 0
    (record,) = Results.read(tmp_path / "out" / "results.json").records
    routing = {e: n for e, n in record.edges.items() if not e.startswith("pmem.pool.")}
    assert len(routing) == 9 and sum(1 for n in routing.values() if n) >= 6, routing
    assert record.coverage["pmem.route.enter"] and record.coverage["pmem.symlink.follow"]

def test_a_rename_onto_the_mount_point_with_a_slash_is_the_kernels(tmp_path):
    """rename(file, "P/") is ENOTDIR through the router as on the kernel (it was EISDIR: the names' types were
    looked at first); the kernel's side has a plain directory at /P, so a rename that moves it is the named
    `mount-point` deviation, the last step here."""
    program = [["rename", "/k/f", "P/"], ["rename", "/k/toP/", "P/"], ["rename", "/k/f/", "/P"],
               ["rename", "/k/f", "P"], ["rename", "/k", "P/"]]
    verdict = transparency.run(program, (), tmp_path)
    assert verdict.problem is None and (verdict.steps, verdict.deviation) == (5, "mount-point"), verdict
