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
from vfslab.check.pmem.stateful import POOL_NODES, Pick, calls, pool_trees
from vfslab.impl.pmem.fs import PmemFS
from vfslab.impl.pmem.router import Router
from vfslab.subjects.pmem import fill_pool
from vfslab.subjects.tree import build_layer


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(pool=pool_trees, program=st.lists(calls, min_size=1, max_size=12))
def test_the_router_is_transparent_but_for_named_deviations(tmp_path_factory, pool, program):
    """The CI profile: 500 programs (relative and absolute paths, symlinks into and out of the pool, `..` across
    the mount point, the cwd inside and outside it, dup'ed fds), on generated pool trees."""
    program = [[f"#{a.n % 4}" if isinstance(a, Pick) else a for a in call] for call in program]
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
