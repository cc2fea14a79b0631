"""`make bench`: how fast our union file system is next to fuse-overlayfs, unionfs-fuse and kernel overlayfs.

Every subject is mounted at once, each over a lower layer holding one big file and, per round, a directory of
4 KiB files, and four workloads are timed (wall clock) through each mount:

- copy-up: append one byte to each of the round's small lower files (each is copied up first);
- create+stat+unlink: in a fresh directory, create an empty file, stat it and unlink it, N times (all in the
  upper layer: the cost of metadata round trips);
- sequential read, cold: read the big lower file in 1 MiB reads after `sync` and dropping every cache;
- sequential read, warm: read it again at once, with the page cache warm.

The workloads run in that order, each through all its rounds before the next; a round runs the workload on every
subject in turn, in an order of subjects that rotates from round to round, so a minute of other load on the
machine falls on every subject alike; each figure is a subject's best round, and union-fuse's ratio is also
printed round by round. Copy-ups come first because they free no inode: on an ext4 without a journal (this
machine's), making an inode skips, one buffer lookup each, every inode of its block group freed in the last 60 s
or more (docs/facts.md, overlayfs 15), and copy-ups made after create+stat+unlink's 5,000 unlinks measured that
scan (0.5 to 1 ms of CPU per inode made) as much as the copy-up. The table gives seconds per workload and
subject, and each subject's time as a multiple of fuse-overlayfs's. The goal: union-fuse takes at most 1.5x
fuse-overlayfs's time on every workload. union-fuse runs twice: as a user gets it (each copy-up fsync'ed before
it is linked in, as kernel overlayfs does) and with `volatile`, like for like with fuse-overlayfs, which fsyncs
nothing. The last line gives the conditions that move the ratios most on a VM like this one: how its CPUs idle (a
vCPU that halts at once makes each FUSE round trip pay two wake-ups: docs/facts.md, FUSE 16) and whether the
scratch file system is ext4 without a journal. Needs root (to mount and to drop caches).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vfslab.subjects import get
from vfslab.subjects.mounts import MountError, read_mountinfo, watchdog
from vfslab.subjects.overlayfs import UnionFuse, UnionMount, UnionSubject
from vfslab.subjects.tree import Layers


class Volatile(UnionFuse):
    """union-fuse with `volatile`: no fsync of a copy-up, like for like with fuse-overlayfs, which makes none
    (kernel overlayfs fsyncs each one, as union-fuse does by default)."""

    name = "union-fuse-volatile"

    def argv(self, m: UnionMount) -> list[str]:
        argv = super().argv(m)
        argv[argv.index("-o") + 1] += ",volatile"
        return argv


#: subject -> the profile it is mounted with, in table order
SUBJECTS = {
    "union-fuse": "overlayfs-redirect-index",
    Volatile.name: "overlayfs-redirect-index",
    "fuse-overlayfs": "overlayfs",
    "unionfs-fuse": "overlayfs",
    "kernel-overlay": "overlayfs",
}


def subject(name: str) -> UnionSubject:
    found = Volatile() if name == Volatile.name else get(name)
    assert isinstance(found, UnionSubject)
    return found


REFERENCE = "fuse-overlayfs"
GOAL = 1.5  # union-fuse's time at most this multiple of the reference's
MiB = 1 << 20
SMALL_FILE = 4096
HANG_SECONDS = 600  # a workload still running after this long is taken as hung: its mount is aborted
BIG, SMALL, CREATES = "big", "small", "creates"  # names in the union


@dataclass(frozen=True)
class Sizes:
    creates: int
    read_bytes: int
    copy_ups: int


FULL = Sizes(creates=5000, read_bytes=256 * MiB, copy_ups=1000)
QUICK = Sizes(creates=500, read_bytes=32 * MiB, copy_ups=100)


class SubjectFailed(Exception):
    """A subject did something wrong (or hung) in a workload; the message is one line."""


@dataclass(frozen=True)
class Workload:
    label: str
    run: Callable[[Path, int], float]  # (the mount point, the round) -> seconds taken
    read_bytes: int = 0  # bytes it reads, for a throughput figure
    follows: bool = False  # runs right after the workload before it, on the same subject in the same round


@dataclass
class Outcome:
    rounds: dict[str, list[float]] = field(default_factory=dict)  # by workload label: seconds, round by round
    error: str | None = None

    @property
    def seconds(self) -> dict[str, float]:
        """By workload label: the best round."""
        return {label: min(times) for label, times in self.rounds.items()}

    def took(self, label: str, seconds: float) -> None:
        self.rounds.setdefault(label, []).append(seconds)


def create_stat_unlink(mnt: Path, round_: int, count: int) -> float:
    where = mnt / f"{CREATES}{round_}"
    where.mkdir()
    started = time.perf_counter()
    for i in range(count):
        path = where / f"f{i}"
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        os.stat(path)
        os.unlink(path)
    return time.perf_counter() - started


def drop_caches() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as e:
        raise SystemExit(f"bench: cannot drop the page cache: {e.strerror} (needs root, and /proc/sys writable)") \
            from None


def sequential_read(mnt: Path, round_: int, size: int, cold: bool) -> float:
    if cold:
        drop_caches()
    read = 0
    started = time.perf_counter()
    fd = os.open(mnt / BIG, os.O_RDONLY)
    try:
        while chunk := os.read(fd, MiB):
            read += len(chunk)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    if read != size:
        raise SubjectFailed(f"read {read} bytes of a {size}-byte file")
    return seconds


def copy_up(mnt: Path, round_: int, count: int) -> float:
    paths = [mnt / f"{SMALL}{round_}" / f"f{i}" for i in range(count)]
    started = time.perf_counter()
    for path in paths:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"+")
        finally:
            os.close(fd)
    seconds = time.perf_counter() - started
    wrong = [p.name for p in paths if p.stat().st_size != SMALL_FILE + 1]
    if wrong:
        raise SubjectFailed(f"{len(wrong)} files are not {SMALL_FILE + 1} bytes long after the append "
                            f"(the first: {wrong[0]})")
    return seconds


def workloads(sizes: Sizes) -> list[Workload]:
    mib = sizes.read_bytes // MiB
    return [
        Workload(f"copy-up of {sizes.copy_ups} small files", partial(copy_up, count=sizes.copy_ups)),
        Workload(f"create+stat+unlink x{sizes.creates}", partial(create_stat_unlink, count=sizes.creates)),
        Workload(f"{mib} MiB sequential read, cold", partial(sequential_read, size=sizes.read_bytes, cold=True),
                 sizes.read_bytes),
        Workload(f"{mib} MiB sequential read, warm", partial(sequential_read, size=sizes.read_bytes, cold=False),
                 sizes.read_bytes, follows=True),
    ]


def phases(sizes: Sizes) -> list[list[Workload]]:
    """The workloads in the order they run, each with those that follow it."""
    grouped: list[list[Workload]] = []
    for workload in workloads(sizes):
        if workload.follows:
            grouped[-1].append(workload)
        else:
            grouped.append([workload])
    return grouped


def fill_lower(lower: Path, sizes: Sizes, rounds: int) -> None:
    """The big file (random bytes, so nothing can shortcut reading it) and each round's small files, on disk."""
    chunk = os.urandom(MiB)
    with open(lower / BIG, "wb") as f:
        for _ in range(sizes.read_bytes // MiB):
            f.write(chunk)
    for r in range(rounds):
        (lower / f"{SMALL}{r}").mkdir(mode=0o755)
        for i in range(sizes.copy_ups):
            (lower / f"{SMALL}{r}" / f"f{i}").write_bytes(b"s" * SMALL_FILE)
    os.sync()  # so writeback does not run during the first workload


def mount_subject(name: str, scratch: Path, sizes: Sizes, rounds: int) -> UnionMount:
    """Mount the subject in `scratch` (made here) over a filled lower layer."""
    scratch.mkdir(parents=True)  # not exist_ok: what is removed at the end must be ours
    mounted = subject(name).setup(Layers(), scratch, SUBJECTS[name])
    # a union's lower layer must not change under it: fill it while unmounted
    mounted.teardown()
    fill_lower(mounted.lowers[0], sizes, rounds)
    mounted.mount()
    return mounted


def run_workload(name: str, mounted: UnionMount, workload: Workload, round_: int, console: Console) -> float:
    with console.status(f"round {round_ + 1}: {name}: {workload.label}"), \
            watchdog(HANG_SECONDS, mounted.abort) as dog:
        try:
            return workload.run(mounted.path, round_)
        except (OSError, SubjectFailed) as e:
            if dog.fired:
                raise SubjectFailed(f"{workload.label}: hung, aborted after {HANG_SECONDS} s") from None
            raise SubjectFailed(f"{workload.label}: {e}") from None


def run_rounds(names: list[str], scratch: Path, sizes: Sizes, rounds: int, console: Console) -> dict[str, Outcome]:
    """Mount every subject, run the rounds, and unmount them all (removing what was made)."""
    outcomes = {name: Outcome() for name in names}
    mounted: dict[str, UnionMount] = {}
    try:
        for name in names:
            try:
                mounted[name] = mount_subject(name, scratch / name, sizes, rounds)
            except (OSError, MountError) as e:
                outcomes[name].error = str(e)
        for phase in phases(sizes):
            for r in range(rounds):
                for name in names[r % len(names):] + names[: r % len(names)]:
                    try:
                        for workload in phase:
                            if not outcomes[name].error:
                                outcomes[name].took(workload.label, run_workload(name, mounted[name], workload, r,
                                                                                 console))
                    except (OSError, MountError, SubjectFailed) as e:
                        outcomes[name].error = str(e)
    finally:
        for name, m in mounted.items():
            m.teardown()  # raises MountError if a mount is left: then the files under it stay
            shutil.rmtree(scratch / name)
    return outcomes


def table(outcomes: dict[str, Outcome], sizes: Sizes) -> Table:
    reference = outcomes.get(REFERENCE)
    others = [name for name in outcomes if name != REFERENCE] if reference else []
    grid = Table(title="seconds (and MB/s for reads)" + (f"; xN = time / {REFERENCE}'s" if others else ""))
    grid.add_column("workload")
    for name in outcomes:
        grid.add_column(name, justify="right")
    for name in others:
        grid.add_column(f"{name}\nx {REFERENCE}", justify="right")
    for workload in workloads(sizes):
        cells = []
        for outcome in outcomes.values():
            seconds = outcome.seconds.get(workload.label)
            cell = "-" if seconds is None else f"{seconds:.3f}"
            if seconds is not None and workload.read_bytes:
                cell += f" ({workload.read_bytes / seconds / 1e6:,.0f} MB/s)"
            cells.append(cell)
        for name in others:
            assert reference is not None
            mine, theirs = outcomes[name].seconds.get(workload.label), reference.seconds.get(workload.label)
            if mine is None or theirs is None:
                cells.append("-")
                continue
            ratio = mine / theirs
            cell = f"{ratio:.2f}x"
            if name == "union-fuse":
                cell = f"[{'green' if ratio <= GOAL else 'red'}]{cell}[/]"
            cells.append(cell)
        grid.add_row(workload.label, *cells)
    return grid


def goal(outcomes: dict[str, Outcome], sizes: Sizes) -> str:
    """Whether union-fuse met the goal on every workload, or on which it did not."""
    if "union-fuse" not in outcomes or REFERENCE not in outcomes:
        return f"goal: not judged (needs union-fuse and {REFERENCE})"
    ours, theirs = outcomes["union-fuse"].seconds, outcomes[REFERENCE].seconds
    labels = [w.label for w in workloads(sizes)]
    missed = [f"{label} ({ours[label] / theirs[label]:.2f}x)" for label in labels
              if label in ours and label in theirs and ours[label] > GOAL * theirs[label]]
    unjudged = [label for label in labels if label not in ours or label not in theirs]
    if missed:
        verdict = f"[red]missed[/] on {', '.join(missed)}"
    elif unjudged:
        verdict = "not missed"
    else:
        verdict = "[green]met[/]"
    if unjudged:
        verdict += f"; not measured: {', '.join(unjudged)}"
    return f"goal (union-fuse <= {GOAL}x {REFERENCE}'s time): {verdict}"


def by_round(outcomes: dict[str, Outcome], sizes: Sizes) -> list[str]:
    """union-fuse's ratio to the reference in each round, where both ran it: this machine's FUSE round trips are
    fast in some minutes and slow in others, and a best-of figure hides which minute a ratio came from."""
    if "union-fuse" not in outcomes or REFERENCE not in outcomes:
        return []
    ours, theirs = outcomes["union-fuse"].rounds, outcomes[REFERENCE].rounds
    lines = []
    for label in (w.label for w in workloads(sizes)):
        pairs = list(zip(ours.get(label, []), theirs.get(label, []), strict=False))  # a failed subject stops early
        if len(pairs) > 1:
            lines.append(f"{label}: " + ", ".join(f"{mine / ref:.2f}x" for mine, ref in pairs) + " by round")
    return lines


def idle_policy(sys_root: Path = Path("/sys")) -> str:
    """How this machine's CPUs idle: a vCPU that halts at once (haltpoll, guest_halt_poll_ns 0) makes every FUSE
    round trip pay for waking the daemon's vCPU and then the caller's, which weighs most on daemons whose requests
    are cheap (docs/facts.md, FUSE 16)."""
    try:
        driver = (sys_root / "devices/system/cpu/cpuidle/current_driver").read_text().strip()
    except OSError:
        return "cpuidle unknown"
    try:
        poll = (sys_root / "module/haltpoll/parameters/guest_halt_poll_ns").read_text().strip()
    except OSError:
        return f"cpuidle {driver}"
    return f"cpuidle {driver} (guest_halt_poll_ns {poll}{': an idle vCPU halts at once' if poll == '0' else ''})"


def scratch_fs(scratch: Path, proc_root: Path = Path("/proc")) -> str:
    """The file system `scratch` is on, and for ext4 whether it has a journal: without one, making an inode after
    many were freed scans them (docs/facts.md, overlayfs 15). A scratch not made yet is on its nearest parent's."""
    scratch = scratch.resolve()
    while not scratch.exists():
        scratch = scratch.parent
    dev, best = os.stat(scratch).st_dev, None
    for m in read_mountinfo(proc_root / "self/mountinfo"):
        inside = m.mount_point == scratch or m.mount_point in scratch.parents
        if os.makedev(m.major, m.minor) == dev and inside and (best is None or len(m.mount_point.parts) >= len(
                best.mount_point.parts)):
            best = m
    if best is None:
        return "scratch file system unknown"
    fstype, source = best.fstype, best.source
    if fstype != "ext4":
        return f"scratch on {fstype} ({source})"
    try:
        journals = os.listdir(proc_root / "fs/jbd2")
    except OSError:
        journals = []
    journal = any(name.startswith(os.path.basename(source) + "-") for name in journals)
    return f"scratch on ext4 {'with' if journal else 'without'} a journal ({source})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smaller sizes for a smoke run ({QUICK.creates} creates, {QUICK.read_bytes // MiB} "
                        f"MiB, {QUICK.copy_ups} files)")
    parser.add_argument("--subject", action="append", choices=list(SUBJECTS),
                        help="a subject to run (repeatable; default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every workload on every subject; each "
                        "figure is the subject's best (default 3)")
    parser.add_argument("--scratch", type=Path,
                        help="where the layers go, a directory per subject (default: a fresh directory under "
                        "/tmp); the bench removes the directories it makes")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    sizes = QUICK if args.quick else FULL
    console = Console()
    skipped = {name: subject(name).available()[1] for name in SUBJECTS
               if (not args.subject or name in args.subject) and not subject(name).available()[0]}
    names = [name for name in SUBJECTS if (not args.subject or name in args.subject) and name not in skipped]
    scratch = Path(tempfile.mkdtemp(prefix="vfslab-bench-")) if args.scratch is None else args.scratch
    try:
        machine = f"conditions: {idle_policy()}; {scratch_fs(scratch)}"
        outcomes = run_rounds(names, scratch, sizes, args.rounds, console) if names else {}
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except (MountError, OSError, ValueError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        if args.scratch is None:
            with contextlib.suppress(OSError):  # not empty if a mount could not be removed: its files stay
                scratch.rmdir()
    for name, why in skipped.items():
        console.print(f"{name}: skipped ({why})", highlight=False)
    if not outcomes:
        print("bench: no subject available", file=sys.stderr)
        return 1
    grid = table(outcomes, sizes)
    natural = console.measure(grid, options=console.options.update_width(1000)).maximum
    console.width = max(console.width, natural)  # the terminal may wrap lines, but no cell is squeezed
    console.print(grid)
    for name, outcome in outcomes.items():
        if outcome.error:
            console.print(f"[red]{name} failed[/]: {outcome.error}", highlight=False)
    for line in by_round(outcomes, sizes):
        console.print(f"union-fuse x {REFERENCE}, {line}", highlight=False)
    console.print(goal(outcomes, sizes), highlight=False)
    console.print(machine, highlight=False)
    return 1 if any(outcome.error for outcome in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
