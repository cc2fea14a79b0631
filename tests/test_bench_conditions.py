"""The conditions line of bench/bench_union_fs.py: the machine's idle policy and the scratch file system, read from
stand-in /sys and /proc trees."""

from __future__ import annotations

import os
from pathlib import Path

import benches

bench = benches.load("bench_union_fs")


def _sys(root: Path, driver: str | None, poll: str | None) -> Path:
    if driver is not None:
        (root / "devices/system/cpu/cpuidle").mkdir(parents=True)
        (root / "devices/system/cpu/cpuidle/current_driver").write_text(driver + "\n")
    if poll is not None:
        (root / "module/haltpoll/parameters").mkdir(parents=True)
        (root / "module/haltpoll/parameters/guest_halt_poll_ns").write_text(poll + "\n")
    return root


def test_the_idle_policy_says_when_an_idle_vcpu_halts_at_once(tmp_path):
    halts = bench.idle_policy(_sys(tmp_path / "a", "haltpoll", "0"))
    assert halts == "cpuidle haltpoll (guest_halt_poll_ns 0: an idle vCPU halts at once)"
    polls = bench.idle_policy(_sys(tmp_path / "b", "haltpoll", "200000"))
    assert polls == "cpuidle haltpoll (guest_halt_poll_ns 200000)"
    assert bench.idle_policy(_sys(tmp_path / "c", "acpi_idle", None)) == "cpuidle acpi_idle"
    assert bench.idle_policy(_sys(tmp_path / "d", None, None)) == "cpuidle unknown"


def _spelt(path: Path) -> str:
    """A path as mountinfo spells it: space, tab, newline and backslash in octal."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in str(path))


def _proc(root: Path, scratch: Path, fstype: str, journals: list[str], also: Path | None = None) -> Path:
    """A mountinfo where `scratch`'s device is mounted at / as /dev/vdz, again as /dev/vdy at a path that begins as
    `scratch`'s does but does not hold it, and another device's mount at `scratch` itself; and `also`, a mount of
    `scratch`'s device as /dev/vdx."""
    dev = os.stat(scratch).st_dev
    device = f"{os.major(dev)}:{os.minor(dev)}"
    lines = [f"21 1 {device} / / rw,relatime shared:1 - {fstype} /dev/vdz rw",
             f"22 21 {device} / {_spelt(scratch.parent)}/scr rw - ext4 /dev/vdy rw",
             f"23 21 0:99 / {_spelt(scratch)} rw - tmpfs tmpfs rw"]
    if also is not None:
        lines.append(f"24 21 {device} / {_spelt(also)} rw - ext4 /dev/vdx rw")
    (root / "self").mkdir(parents=True)
    (root / "self/mountinfo").write_text("\n".join(lines) + "\n")
    (root / "fs/jbd2").mkdir(parents=True)
    for name in journals:
        (root / "fs/jbd2" / name).mkdir()
    return root


def test_the_scratch_file_system_and_whether_ext4_has_a_journal(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    without = bench.scratch_fs(scratch, _proc(tmp_path / "p1", scratch, "ext4", ["vdy-8"]))
    assert without == "scratch on ext4 without a journal (/dev/vdz)"
    journaled = bench.scratch_fs(scratch, _proc(tmp_path / "p2", scratch, "ext4", ["vdz-8"]))
    assert journaled == "scratch on ext4 with a journal (/dev/vdz)"
    assert bench.scratch_fs(scratch, _proc(tmp_path / "p3", scratch, "xfs", [])) == "scratch on xfs (/dev/vdz)"
    # a scratch not made yet: the file system it will be made on
    later = bench.scratch_fs(scratch / "a" / "b", _proc(tmp_path / "p4", scratch, "ext4", []))
    assert later == "scratch on ext4 without a journal (/dev/vdz)"
    # a mount whose path has a space in it (mountinfo spells it \040) is the one that holds a scratch under it
    spaced = tmp_path / "my scratch"
    (spaced / "in").mkdir(parents=True)
    found = bench.scratch_fs(spaced / "in", _proc(tmp_path / "p5", spaced / "in", "ext4", [], also=spaced))
    assert found == "scratch on ext4 without a journal (/dev/vdx)"
