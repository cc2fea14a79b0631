"""The vmblock model against the rules it encodes (docs/facts.md, vmblock 1-11, and seed 001)."""

from __future__ import annotations

import errno

import pytest

from vfslab.model.block import BANNER, LIMITS, PROFILES, RULES, VERSION, BlockModel, Options, Waiting
from vfslab.model.outcome import Err

T = "/tmp/VMwareDnD"


@pytest.fixture
def m() -> BlockModel:
    return BlockModel(target_names=("foo", "bar"))


def test_the_tree(m):
    assert m.readdir("/").result == ("blockdir", "dev", "notifydir", "version")
    assert m.readdir("/blockdir").result == ("bar", "foo")
    assert m.readdir("/notifydir").result == ("bar", "foo")
    for d in ("/", "/blockdir", "/notifydir"):
        attr = m.getattr(d).result
        assert (attr.kind, attr.mode, attr.nlink, attr.size) == ("dir", 0o555, 3, 4096)
    dev = m.getattr("/dev").result
    assert (dev.kind, dev.mode, dev.uid) == ("file", 0o600, 0)
    link = m.getattr("/blockdir/foo")
    assert (link.result.kind, link.result.mode, link.result.size) == ("symlink", 0o777, len(f"{T}/foo"))
    assert m.getattr("/blockdir/missing").result == Err(errno.ENOENT)
    assert m.getattr("/notifydir/anything").result.mode == 0o444
    assert m.getattr("/other").result == Err(errno.ENOENT)
    assert m.read_version().result == VERSION
    upstream = BlockModel(PROFILES["vmblock-upstream"].options(T))
    assert upstream.readdir("/").result == ("blockdir", "dev", "notifydir")
    assert upstream.getattr("/version").result == Err(errno.ENOENT)
    assert upstream.read_version().rules == ("vmblock.version.absent",)


def test_readlink_waits_on_exactly_the_blocked_path_until_the_block_goes(m):
    h = m.open_ctl().result
    assert m.write_ctl(h, f"a{T}/foo".encode()).result == len(f"a{T}/foo")
    waiting = m.readlink("/blockdir/foo").result
    assert isinstance(waiting, Waiting) and m.pending() == (waiting.id,)
    assert m.readlink("/blockdir/bar").result == f"{T}/bar"
    assert m.write_ctl(h, f"d{T}//foo/".encode()).result == len(f"d{T}//foo/")
    assert m.woken() == {waiting.id: f"{T}/foo"} and m.pending() == ()


def test_a_missing_target_fails_at_once_even_when_blocked(m):
    h = m.open_ctl().result
    m.write_ctl(h, f"a{T}/gone".encode())
    outcome = m.readlink("/blockdir/gone")
    assert outcome.result == Err(errno.ENOENT) and "vmblock.readlink.missing" in outcome.rules


def test_the_control_protocol_errnos(m):
    h, other = m.open_ctl().result, m.open_ctl().result
    assert m.write_ctl(h, f"a{T}/foo".encode()).result > 0
    assert m.write_ctl(h, f"a{T}/foo".encode()).result == Err(errno.EEXIST)
    assert m.write_ctl(other, f"a{T}//foo/".encode()).result == Err(errno.EEXIST)
    assert m.write_ctl(other, f"d{T}/foo".encode()).result == Err(errno.ENOENT), "only its owner deletes it"
    assert m.write_ctl(h, b"x/whatever").result == Err(errno.EINVAL)
    assert m.write_ctl(h, b"a" + b"/x" * 2048 + b"y").result == Err(errno.ENAMETOOLONG)
    assert m.write_ctl(h, b"l").result == 1
    assert BlockModel(Options(list_op=False)).write_ctl(1, b"l").result == Err(errno.EBADF)
    upstream = BlockModel(PROFILES["vmblock-upstream"].options(T))
    listed = upstream.write_ctl(upstream.open_ctl().result, b"l")
    assert (listed.result, listed.rules[-1]) == (Err(errno.EINVAL), "vmblock.ctl.list.release")
    assert m.read_ctl(h).result == BANNER
    assert m.read_ctl(h, 4).result == Err(errno.EINVAL)


def test_closing_a_handle_removes_its_blocks_only_and_wakes_every_waiter(m):
    h, other = m.open_ctl().result, m.open_ctl().result
    m.write_ctl(h, f"a{T}/foo".encode())
    m.write_ctl(other, f"a{T}/bar".encode())
    waiters = [m.readlink("/blockdir/foo").result.id for _ in range(3)]
    still = m.readlink("/blockdir/bar").result.id
    assert "vmblock.release" in m.close_ctl(h).rules
    assert m.woken() == dict.fromkeys(waiters, f"{T}/foo")
    assert m.pending() == (still,)


def test_notifydir_waits_for_a_readlink_or_the_unblock(m):
    assert m.read_notify("/notifydir/gone").result == Err(errno.EINVAL)
    assert m.read_notify("/notifydir/foo").result == Err(errno.ENOENT)
    h = m.open_ctl().result
    m.write_ctl(h, f"a{T}/foo".encode())
    first = m.read_notify("/notifydir/foo").result.id
    reader = m.readlink("/blockdir/foo").result.id
    assert m.woken() == {first: b""}
    later = m.read_notify("/notifydir/foo")
    assert (later.result, later.rules) == (b"", ("vmblock.notify.accessed",)), "the notification is sticky"
    m.close_ctl(h)
    assert m.woken() == {reader: f"{T}/foo"}
    m.write_ctl(m.open_ctl().result, f"a{T}/foo".encode())
    fresh = m.read_notify("/notifydir/foo").result.id
    m.write_ctl(m.open_ctl().result, f"a{T}/bar".encode())
    m.readlink("/blockdir/bar")
    assert fresh in m.pending(), "a new block starts unaccessed, and only its own path's readlinks count"


def test_only_root_may_block_unless_unprivileged(m):
    assert m.open_ctl(uid=1000).result == Err(errno.EACCES)
    u = BlockModel(Options(unprivileged=True), ("foo",))
    assert u.getattr("/dev").result.mode == 0o666
    alice, bob = u.open_ctl(uid=1000).result, u.open_ctl(uid=1001).result
    u.write_ctl(alice, f"a{T}/foo".encode())
    assert u.write_ctl(bob, f"a{T}/foo".encode()).result > 0, "blocks are per user"
    u.write_ctl(bob, f"d{T}/foo".encode())
    assert u.readlink("/blockdir/foo", uid=1001).result == f"{T}/foo"
    assert u.readlink("/blockdir/foo", uid=0).result == f"{T}/foo"
    assert isinstance(u.readlink("/blockdir/foo", uid=1000).result, Waiting)


def test_every_rule_fires_somewhere(m):
    fired: set[str] = set()
    u = BlockModel(Options(unprivileged=True), ("foo",))
    upstream = BlockModel(PROFILES["vmblock-upstream"].options(T), ("foo",))
    for model, uid in ((m, 0), (u, 1000), (upstream, 0)):
        for outcome in (model.readdir("/"), model.getattr("/"), model.getattr("/blockdir/foo"),
                        model.getattr("/notifydir/foo"), model.getattr("/nope"), model.read_version()):
            fired.update(outcome.rules)
        opened = model.open_ctl(uid)
        fired.update(opened.rules)
        h = opened.result
        for data in (f"a{T}//foo/", f"a{T}/foo", f"d{T}/nope", "x", "l", "a" + "/" * 5000):
            fired.update(model.write_ctl(h, data.encode()).rules)
        fired.update(model.read_ctl(h).rules)
        fired.update(model.close_ctl(model.dup_ctl(h).result).rules)
        fired.update(model.read_notify("/notifydir/foo", uid).rules)
        fired.update(model.readlink("/blockdir/foo", uid).rules)
        fired.update(model.readlink("/blockdir/gone", uid).rules)
        fired.update(model.read_notify("/notifydir/foo", uid).rules)
        fired.update(model.read_notify("/notifydir/gone", uid).rules)
        fired.update(model.close_ctl(h).rules)
        fired.update(model.read_notify("/notifydir/foo", uid).rules)
        fired.update(model.readlink("/blockdir/foo", uid).rules)
    fired.update(m.open_ctl(uid=1000).rules)
    fired.update(m.target_remove("never-there").rules)
    upstream.target_remove("foo")
    fired.update(upstream.getattr("/blockdir/foo").rules)
    assert set(RULES) - fired == set()


def test_upstream_lets_the_kernel_keep_a_looked_up_entry_for_a_while():
    upstream = BlockModel(PROFILES["vmblock-upstream"].options(T), ("foo", "bar"))
    link = upstream.getattr("/blockdir/foo").result
    upstream.target_remove("foo")
    upstream.target_remove("bar")
    stale = upstream.getattr("/blockdir/foo")
    assert stale.result == Err(errno.ENOENT) and stale.allows(link) and stale.rules == ("vmblock.cache.entry",)
    assert not upstream.getattr("/blockdir/bar").allows(link), "never looked up: nothing cached"
    assert not BlockModel(Options(), ("foo",)).getattr("/blockdir/nope").also


def test_the_control_files_limits_are_edges_each_outcome_names():
    """A write of PATH_MAX bytes (the operation and the path) is taken, one more is ENAMETOOLONG (as
    vmware-vmblock-fuse does: `size > PATH_MAX`); a read of the banner's 18 bytes is answered, one fewer is
    EINVAL. Each outcome names the edge it was decided at."""
    path_max, banner = LIMITS
    assert (path_max.value, banner.value) == (4096, len(BANNER)) == (4096, 18)
    m = BlockModel(target_names=("foo",))
    h = m.open_ctl().result
    for n, taken in ((4095, True), (4096, True), (4097, False)):
        data = f"a{T}".encode() + b"/" * (n - len(T) - 4) + b"foo"
        written = m.write_ctl(h, data)
        assert len(data) == n and written.result == (n if taken else Err(errno.ENAMETOOLONG))
        assert path_max.edge(n) in written.rules
        waits = isinstance(m.readlink("/blockdir/foo").result, Waiting)
        assert waits == taken, "the slashes collapse: a write taken blocks foo itself"
        assert m.write_ctl(h, f"d{T}/foo".encode()).failed != taken
        m.woken()
    for n, result in ((17, Err(errno.EINVAL)), (18, BANNER), (19, BANNER)):
        read = m.read_ctl(h, n)
        assert read.result == result and banner.edge(n) in read.rules and "vmblock.ctl.read" in read.rules


def test_a_duplicated_descriptor_is_the_same_blocker_until_the_last_close():
    m = BlockModel(target_names=("foo",))
    h = m.open_ctl().result
    m.write_ctl(h, f"a{T}/foo".encode())
    assert m.dup_ctl(h).result == h
    waiting = m.readlink("/blockdir/foo").result.id
    assert m.close_ctl(h).rules == ("vmblock.ctl.shared",) and m.pending() == (waiting,), "one descriptor is left"
    assert m.write_ctl(h, f"d{T}/foo".encode()).result > 0, "deleted through the other: the same handle"
    assert m.woken() == {waiting: f"{T}/foo"}
    m.write_ctl(h, f"a{T}/foo".encode())
    again = m.readlink("/blockdir/foo").result.id
    assert "vmblock.release" in m.close_ctl(h).rules and m.woken() == {again: f"{T}/foo"}
    assert m.close_ctl(h).result == Err(errno.EBADF)
