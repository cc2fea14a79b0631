"""The router: the same generated programs through the router (a pool at P) and on the kernel (a plain directory
at P) see the same results, except the named deviations; and the router's own rules, one by one."""

from __future__ import annotations

import errno
import os

import pytest
from conftest import errno_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vfslab.check.pmem import transparency
from vfslab.impl.pmem.fs import PmemFS
from vfslab.impl.pmem.router import Router

TREE = {"a": "file:hello\n", "d": "dir", "d/b": "file:bee\n", "lk": "link:@/k/f", "lp": "link:../k/f",
        "ld": "link:d", "loop": "link:loop"}
PATHS = st.sampled_from(["P/a", "P/d", "P/d/b", "P/d/..", "P/../k/f", "k/toP/a", "@/P/d/b", "P/lk", "P/lp",
                         "P/ld/b", "P/loop", "P/new", "P/d/new", "k/new", "k/f", "P", "P/", "P/a/", "", "nope",
                         "P/d/../../k", ".."])
TARGETS = st.sampled_from(["a", "../k/f", "@/k/f", "@/P/a", "d", "nowhere"])
FLAGS = st.sampled_from([os.O_RDONLY, os.O_WRONLY | os.O_CREAT, os.O_RDWR | os.O_CREAT | os.O_EXCL,
                         os.O_RDONLY | os.O_DIRECTORY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                         os.O_RDONLY | os.O_NOFOLLOW, os.O_RDWR])
FD = st.integers(0, 3).map(lambda i: f"#{i}")
CALLS = st.one_of(
    st.tuples(st.just("open"), PATHS, FLAGS), st.tuples(st.just("close"), FD),
    st.tuples(st.just("read"), FD, st.sampled_from([1, 100])), st.tuples(st.just("write"), FD, st.just(b"data")),
    st.tuples(st.just("lseek"), FD, st.sampled_from([0, 2]), st.sampled_from([os.SEEK_SET, os.SEEK_END])),
    st.tuples(st.just("fstat"), FD), st.tuples(st.just("dup"), FD), st.tuples(st.just("dup2"), FD, FD),
    st.tuples(st.just("stat"), PATHS), st.tuples(st.just("lstat"), PATHS), st.tuples(st.just("readlink"), PATHS),
    st.tuples(st.just("mkdir"), PATHS), st.tuples(st.just("rmdir"), PATHS), st.tuples(st.just("unlink"), PATHS),
    st.tuples(st.just("rename"), PATHS, PATHS), st.tuples(st.just("link"), PATHS, PATHS),
    st.tuples(st.just("symlink"), TARGETS, PATHS), st.tuples(st.just("chdir"), PATHS),
    st.tuples(st.just("getcwd")),
)


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(program=st.lists(CALLS, min_size=1, max_size=12))
def test_the_router_is_transparent_but_for_named_deviations(tmp_path_factory, program):
    """The CI profile: 500 programs (relative and absolute paths, symlinks into and out of the pool, `..` across
    the mount point, the cwd inside and outside it, dup'ed fds)."""
    verdict = transparency.run(program, TREE, tmp_path_factory.mktemp("t"))
    assert verdict.problem is None, f"{verdict.problem}\nprogram: {program}"
    assert verdict.deviation in (None, "exdev", "empty-path", "mount-point")


@pytest.fixture
def routed(tmp_path):
    transparency.build(tmp_path, tmp_path / "tree.pool", TREE)
    fs = PmemFS.open(str(tmp_path / "tree.pool"))
    router = Router()
    router.mount(str(tmp_path / "P"), fs)
    router.chdir(str(tmp_path))
    yield router, tmp_path
    router.close_all()
    fs.close()


def test_the_routing_rules(routed):
    router, root = routed
    assert router.readlink("P/lk") == f"{root}/k/f"
    assert router.stat("P/lk").st_size == len("kernel file\n"), "an absolute target restarts at the kernel root"
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
