"""fallocate: the model against the real file systems it was settled on, every mode on each, and union-fuse
against kernel overlayfs on a lower file that must be copied up first."""

from __future__ import annotations

import errno
import itertools
import os
from pathlib import Path

import pytest
from conftest import replayable
from test_union_fuse import _dirs, mount_ours, on_both

from vfslab.check.engine.generated import Budget
from vfslab.check.union.stateful import check_stateful
from vfslab.impl.union.disk import fallocate
from vfslab.model.outcome import Err
from vfslab.model.union import PROFILES, UnionModel
from vfslab.model.union.ops import COLLAPSE, EVERY_KIND, INSERT, KEEP_SIZE, PUNCH, ZERO, FallocSupport
from vfslab.model.union.profiles import TMPFS_FALLOCATE
from vfslab.subjects import mounts
from vfslab.subjects.support import FUSE_KINDS, fallocate_support
from vfslab.subjects.tree import Node

pytestmark = pytest.mark.mounts

BLOCK = 4096
DATA = b"a" * BLOCK + b"b" * BLOCK + b"c" * BLOCK
MODES = (0, KEEP_SIZE, PUNCH, PUNCH | KEEP_SIZE, ZERO, ZERO | KEEP_SIZE, COLLAPSE, INSERT, COLLAPSE | KEEP_SIZE)
#: inside, at and past the end of the three blocks; whole blocks and not; the errors
RANGES = ((0, BLOCK), (BLOCK, BLOCK), (1, 10), (2 * BLOCK, BLOCK), (2 * BLOCK, 2 * BLOCK), (5 * BLOCK, BLOCK),
          (0, 0), (-1, 5))


def real(where: Path, flags: int, mode: int, offset: int, length: int) -> tuple[object, bytes]:
    path = where / "f"
    path.write_bytes(DATA)
    fd = os.open(path, flags)
    try:
        fallocate(fd, mode, offset, length)
        outcome: object = None
    except OSError as e:
        outcome = Err(e.errno)
    finally:
        os.close(fd)
    return outcome, path.read_bytes()


def modelled(profile: str, falloc: FallocSupport, flags: int, mode: int, offset: int,
             length: int) -> tuple[object, bytes]:
    m = UnionModel([[Node("f", "file", 0o644, data=DATA)]], PROFILES[profile], falloc=falloc)
    fd = m.open("f", flags).result
    outcome = m.fallocate(fd, mode, offset, length).result
    m.close(fd)
    read = m.open("f", os.O_RDONLY).result
    return outcome, m.read(read, 1 << 20).result


@pytest.fixture
def tmpfs(scratch: Path):
    where = scratch / "tmpfs"
    where.mkdir()
    mounts.mount_kernel("tmpfs", "size=1m", where)
    try:
        yield where
    finally:
        mounts.unmount(where)


def agree(where: Path, profile: str, falloc: FallocSupport) -> int:
    """Every mode, range and access mode on the real file system and in the model: the same outcome and data.
    How many calls succeeded (so that a file system refusing everything cannot pass for one that agrees)."""
    done = 0
    for mode, (offset, length), flags in itertools.product(MODES, RANGES, (os.O_RDWR, os.O_RDONLY)):
        seen = real(where, flags, mode, offset, length)
        assert modelled(profile, falloc, flags, mode, offset, length) == seen, (hex(mode), offset, length, flags)
        done += seen[0] is None
    return done


def test_the_model_does_what_tmpfs_does(tmpfs):
    assert support_of(tmpfs).kinds == frozenset(TMPFS_FALLOCATE)
    assert agree(tmpfs, "posix", EVERY_KIND) == 18  # 3 kinds x 6 ranges; the profile says them, whatever it is told


def test_the_model_does_what_the_scratch_file_system_does(scratch):
    """The file system the checks' layers are on (ext4 here, where every kind is done)."""
    found = support_of(scratch)
    assert {"allocate", "punch-hole"} <= found.kinds
    assert agree(scratch, "overlayfs", found) >= 18


def support_of(where: Path) -> FallocSupport:
    """What the bench finds a file system does, as it finds it beside an upper layer."""
    return fallocate_support(type("Mounted", (), {"upper": where / "upper", "path": where / "no-mount"})())


def test_a_fuse_mount_is_held_to_what_fuse_passes_on(need, scratch):
    """union-fuse's mount: the kinds of its upper layer's file system that the kernel's FUSE client passes on."""
    need("union-fuse")
    lower, upper, work, mnt = _dirs(scratch, "lower", "upper", "work", "mnt")
    pid = mount_ours([lower], upper, work, mnt)
    try:
        found = fallocate_support(type("Mounted", (), {"upper": upper, "path": mnt})())
    finally:
        mounts.unmount(mnt, pid)
    assert found.kinds == support_of(scratch).kinds & FUSE_KINDS
    assert "collapse-range" not in found.kinds and "punch-hole" in found.kinds


def punch_a_copied_up_file(mnt: Path) -> tuple:
    """Open a lower file for writing (its copy-up), punch its middle block out, zero the last, grow it by
    allocation, and refuse what FUSE and overlayfs refuse alike."""
    path = mnt / "dir" / "big"
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, PUNCH | KEEP_SIZE, BLOCK, BLOCK)
        fallocate(fd, ZERO | KEEP_SIZE, 2 * BLOCK, BLOCK // 2)
        fallocate(fd, 0, 3 * BLOCK, BLOCK)
        refused = []
        for mode, offset, length in ((PUNCH, 0, BLOCK), (0, 0, 0)):
            try:
                fallocate(fd, mode, offset, length)
            except OSError as e:
                refused.append(e.errno)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return path.read_bytes(), st.st_size, refused


def test_punching_a_lower_file_copies_it_up_first_as_the_kernel_does(need, scratch, monkeypatch):
    import test_union_fuse
    monkeypatch.setattr(test_union_fuse, "LOWER", (*test_union_fuse.LOWER, Node("dir/big", "file", data=DATA)))
    seen, uppers = {}, {}
    for who, (lowers, upper, _work, _mnt), result in on_both(need, scratch, "", punch_a_copied_up_file):
        seen[who], uppers[who] = result, upper
        assert (lowers[0] / "dir" / "big").read_bytes() == DATA  # the lower file is untouched
    data, size, refused = seen["kernel"]
    assert data == b"a" * BLOCK + bytes(BLOCK) + bytes(BLOCK // 2) + b"c" * (BLOCK // 2) + bytes(BLOCK)
    assert size == 4 * BLOCK and refused == [errno.EOPNOTSUPP, errno.EINVAL]
    assert seen["ours"] == seen["kernel"]
    # the hole is a hole on disk in both upper layers, not a block of zeros
    for who, upper in uppers.items():
        fd = os.open(upper / "dir" / "big", os.O_RDONLY)
        try:
            assert os.lseek(fd, 0, os.SEEK_HOLE) == BLOCK, who
        finally:
            os.close(fd)


#: the calls on open files, with fallocate among them in every program's draw
FILE_CALLS = ("open", "fallocate", "read", "write", "fstat", "close")


@pytest.mark.parametrize(("name", "profile", "programs"), [
    ("kernel-overlay", "overlayfs-redirect-index", 300), ("union-fuse", "overlayfs-redirect-index", 300),
    ("tmpfs", "posix", 300), ("pmem-fuse", "posix-no-xattr", 150),  # a pool is mounted per program, slowly
])
def test_generated_programs_with_fallocate_agree_with_the_model(need, tmp_path, name, profile, programs):
    """The CI check of fallocate: generated programs of calls on open files, fallocate in each program's choice
    of calls, non-root callers included, and remounts of the unions (a plain file system's is slow: a pool's, or
    tmpfs's, which keeps nothing)."""
    ops = FILE_CALLS + (("remount",) if profile.startswith("overlayfs") else ())
    tally = check_stateful(need(name), profile, seed=20261202, budget=Budget(programs, 25, 900),
                           scratch_root=tmp_path, ops=ops)
    assert tally.failure is None, replayable(tally.failure, tmp_path)
    assert not tally.error and not tally.deviations
    assert tally.examples >= programs
    for rule in ("union.fd.fallocate", "union.fd.fallocate-args"):
        assert tally.coverage[rule], f"{rule} never fired"
    # each subject refuses some kind: tmpfs and pmem zero no ranges, FUSE passes on no collapse; the kernel on ext4
    # refuses a collapse or an insert out of whole blocks
    assert tally.coverage["union.fd.fallocate-unsupported"] or tally.coverage["union.fd.fallocate-range"]
