"""Mount lifecycle shared by every subject: mount, watch, abort and tear down without leaving a mount behind.

Mounts are looked up in /proc/self/mountinfo, never by stat-ing a mount point: a stat on a FUSE mount
whose daemon is stopped or deadlocked hangs the caller. Every mount made here is recorded in a
process-wide registry, and an atexit/SIGTERM handler unmounts whatever is still registered.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from vfslab.subjects import namespace

FUSECTL = Path("/sys/fs/fuse/connections")


class MountError(RuntimeError):
    """A mount or unmount failed; the message is one line a user can act on."""


def is_fuse_type(fstype: str) -> bool:
    """Whether mountinfo's file-system type is a FUSE one (`fuse`, `fuse.NAME`, `fuseblk`)."""
    return fstype.split(".")[0] in ("fuse", "fuseblk")


@dataclass(frozen=True)
class MountInfo:
    """One line of /proc/self/mountinfo."""

    mount_id: int
    major: int
    minor: int
    mount_point: Path
    fstype: str
    source: str

    @property
    def is_fuse(self) -> bool:
        return is_fuse_type(self.fstype)


@dataclass
class LiveMount:
    """A mount this process made and has not unmounted yet."""

    path: Path
    fstype: str
    pid: int | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)


@dataclass
class FuseProcess:
    """A FUSE daemon running in the foreground, mounted at `mnt`: our child (`proc`), or a fork server's."""

    pid: int
    mnt: Path
    log: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def exited(self) -> str | None:
        """None while it runs; else how it ended."""
        if self.proc is not None:
            return None if self.proc.poll() is None else f"exited with status {self.proc.returncode}"
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return "exited"
        return None

    def stderr_tail(self) -> str:
        return _log_tail(self.log)


# ---------------------------------------------------------------------------------------------- mountinfo


def _unescape(field_: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    if "\\" not in field_:
        return field_
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and field_[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


MOUNTINFO = Path("/proc/self/mountinfo")


def _mountinfo_lines(mountinfo: Path = MOUNTINFO) -> list[str]:
    return mountinfo.read_text().splitlines()


def _mount_point(line: str) -> str:
    return _unescape(line.split(" ", 5)[4])


def _parse_mountinfo(line: str) -> MountInfo:
    pre, _, post = line.partition(" - ")
    fields, post_fields = pre.split(), post.split()
    major, minor = fields[2].split(":")
    return MountInfo(
        mount_id=int(fields[0]),
        major=int(major),
        minor=int(minor),
        mount_point=Path(_unescape(fields[4])),
        fstype=post_fields[0],
        source=_unescape(post_fields[1]) if len(post_fields) > 1 else "",
    )


def read_mountinfo(mountinfo: Path = MOUNTINFO) -> list[MountInfo]:
    """All mounts of this process's namespace (or those a given mountinfo file lists), in mount order (a stacked
    mount comes after what it covers)."""
    return [_parse_mountinfo(line) for line in _mountinfo_lines(mountinfo)]


def _abspath(p: Path) -> Path:
    # abspath, not resolve(): realpath would lstat the mount point, which hangs on a stuck FUSE mount
    return Path(os.path.abspath(p))


def find_mount(mnt: Path) -> MountInfo | None:
    """The topmost mount at exactly `mnt`, or None."""
    return find_mounts([mnt])[0]


def find_mounts(points: list[Path]) -> list[MountInfo | None]:
    """The topmost mount at exactly each of `points` (None where there is none), from one read of mountinfo."""
    # only the lines asked for are parsed: a mount or an unmount looks this up several times
    targets = [os.path.abspath(p) for p in points]
    found: dict[str, str] = {}
    for line in _mountinfo_lines():
        if (point := _mount_point(line)) in targets:
            found[point] = line
    return [_parse_mountinfo(found[t]) if t in found else None for t in targets]


def mounts_under(root: Path) -> list[MountInfo]:
    """Mounts at `root` or below it, in mount order."""
    root = _abspath(root)
    return [m for m in read_mountinfo() if m.mount_point == root or root in m.mount_point.parents]


# ------------------------------------------------------------------------------------------------ registry

_registry: dict[Path, LiveMount] = {}
_registry_lock = threading.Lock()
_handlers_installed = False


def live_mounts() -> list[LiveMount]:
    """Mounts made by this process and not yet unmounted."""
    with _registry_lock:
        return list(_registry.values())


def _register(live: LiveMount) -> None:
    with _registry_lock:
        _registry[live.path] = live
    _install_handlers()


def _unregister(mnt: Path) -> LiveMount | None:
    with _registry_lock:
        return _registry.pop(_abspath(mnt), None)


def teardown_all() -> None:
    """Unmount everything still registered (atexit, SIGTERM, test sessions)."""
    for live in reversed(live_mounts()):
        try:
            unmount(live.path, live.pid)
        except MountError as e:
            print(f"vfslab: {e}", file=sys.stderr)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    teardown_all()
    # then die the way SIGTERM would have killed us, so the parent sees the right status
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(teardown_all)
    # only replace the default disposition: an application's own SIGTERM handler wins; and only the
    # main thread may set handlers
    is_main = threading.current_thread() is threading.main_thread()
    if is_main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


# ---------------------------------------------------------------------------------------------- mounting


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess | None:
    """Run a helper; None if it did not finish within `timeout` (it is killed)."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None
    except FileNotFoundError as e:
        raise MountError(f"{argv[0]} not found: {e.strerror}") from None


def _dmesg_overlay_tail(lines: int = 2) -> str:
    """Recent kernel messages about overlayfs: the kernel says why a mount was refused only there."""
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    hits = [line for line in out.splitlines()[-30:] if "overlayfs" in line]
    return "; ".join(line.split("] ", 1)[-1] for line in hits[-lines:])


_libc = ctypes.CDLL(None, use_errno=True)


#: mount(2) flags (linux/mount.h)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SYNCHRONOUS, MS_REMOUNT, MS_DIRSYNC = 1, 2, 4, 8, 16, 32, 128
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24


@functools.cache
def kernel_filesystems() -> frozenset[str]:
    """The file system types the kernel knows (/proc/filesystems)."""
    return frozenset(line.split()[-1] for line in Path("/proc/filesystems").read_text().splitlines() if line.strip())


#: the generic mount options mount(8) turns into mount(2) flags (linux/mount.h), and what each sets; the rest of the
#: options are the file system's own
GENERIC_FLAGS = {
    "ro": MS_RDONLY, "rw": 0, "nosuid": MS_NOSUID, "suid": 0, "nodev": MS_NODEV, "dev": 0, "noexec": MS_NOEXEC,
    "exec": 0, "sync": MS_SYNCHRONOUS, "async": 0, "dirsync": MS_DIRSYNC, "noatime": MS_NOATIME, "atime": 0,
    "nodiratime": MS_NODIRATIME, "diratime": 0, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME,
}


def mount_flags(options: str) -> tuple[int, str]:
    """Split `-o` options as mount(8) does: the mount(2) flags of the generic ones, and the file system's own."""
    flags, own = 0, []
    for opt in filter(None, options.split(",")):
        if opt in GENERIC_FLAGS:
            flags |= GENERIC_FLAGS[opt]
        else:
            own.append(opt)
    return flags, ",".join(own)


def mount_kernel(fstype: str, options: str, mnt: Path, flags: int = 0) -> None:
    """`mount -t FSTYPE FSTYPE -o OPTIONS MNT` as one mount(2) call (no helper process: the bench mounts
    thousands of times), registered for teardown; generic options (nosuid, noatime, ...) become flags, as mount(8)
    makes them."""
    mnt = _abspath(mnt)
    generic, options = mount_flags(options)
    flags |= generic
    with namespace.copying(exclusive=False):
        failed = _libc.mount(fstype.encode(), os.fsencode(mnt), fstype.encode(), flags, options.encode()) != 0
    if failed:
        reason = os.strerror(ctypes.get_errno())
        kernel = _dmesg_overlay_tail() if fstype == "overlay" else ""  # overlayfs says why only there
        raise MountError(f"mount -t {fstype} on {mnt} failed: {reason}" + (f" (kernel: {kernel})" if kernel else ""))
    _register(LiveMount(mnt, fstype))


def mount_by_command(argv: list[str], mnt: Path, timeout: float = 30) -> None:
    """Mount a kernel file system at `mnt` by running `argv` (a `mount` command, say), registered for teardown."""
    mnt = _abspath(mnt)
    with namespace.copying(exclusive=False):
        done = _run(argv, timeout)
    if done is None or done.returncode != 0:
        why = "timed out" if done is None else f"exit {done.returncode}: {_one_line(done.stderr or done.stdout)}"
        raise MountError(f"{' '.join(argv)}: {why}")
    info = find_mount(mnt)
    if info is None:
        raise MountError(f"{' '.join(argv)} succeeded but nothing is mounted at {mnt}")
    _register(LiveMount(mnt, info.fstype))


def run_quietly(argv: list[str], timeout: float) -> bool:
    """Run a helper (an unmount command, say); whether it succeeded in time."""
    done = _run(argv, timeout)
    return done is not None and done.returncode == 0


def mount_overlay(options: str, mnt: Path) -> None:
    mount_kernel("overlay", options, mnt)


def remount_kernel(mnt: Path) -> None:
    """`mount -o remount MNT`: the file system stays, its mount is made again."""
    if _libc.mount(None, os.fsencode(_abspath(mnt)), None, MS_REMOUNT, None) != 0:
        raise MountError(f"mount -o remount {mnt} failed: {os.strerror(ctypes.get_errno())}")


def _stat_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.stat(path)


def start_fuse_on_fd(argv: list[str], mnt: Path, subtype: str, options: str, log: Path,
                     timeout: float = 10) -> FuseProcess:
    """Mount a FUSE file system at `mnt` ourselves, then start its daemon, which serves our connection:
    `{fd}` in argv becomes `/dev/fd/N` (libfuse 3.3+ takes that for a mount point made by its caller).

    The mount is ours, in our mount namespace, whatever namespace the daemon then runs in. It is registered
    at once, so a daemon that never serves it is torn down like a hung one."""
    mnt = _abspath(mnt)
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    try:
        data = f"fd={fd},rootmode=40000,user_id=0,group_id=0,{options}"
        if _libc.mount(subtype.encode(), os.fsencode(mnt), f"fuse.{subtype}".encode(), MS_NOSUID | MS_NODEV,
                       data.encode()) != 0:
            raise MountError(f"mount -t fuse.{subtype} on {mnt} failed: {os.strerror(ctypes.get_errno())}")
        argv = [a.replace("{fd}", f"/dev/fd/{fd}") for a in argv]
        with open(log, "ab") as out:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                        start_new_session=True, pass_fds=(fd,))
            except OSError as e:
                unmount(mnt)
                raise MountError(f"cannot start {argv[0]}: {e.strerror}") from None
    finally:
        os.close(fd)
    _register(LiveMount(mnt, f"fuse.{subtype}", proc.pid, proc))
    daemon = FuseProcess(proc.pid, mnt, log, proc)
    # the first answer says it serves: a stat of the root waits for it (in a thread, as it may never come)
    served = threading.Thread(target=_stat_quietly, args=(mnt,), daemon=True)
    served.start()
    served.join(timeout)
    if served.is_alive() or daemon.exited() is not None:
        why = daemon.exited() or f"did not serve {mnt} within {timeout:g} s"
        unmount(mnt, proc.pid)
        served.join(5)
        raise MountError(f"{argv[0]} {why}: {daemon.stderr_tail()}")
    return daemon


def _log_tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return _one_line("\n".join(text.strip().splitlines()[-lines:]))


def start_fuse(argv: list[str], mnt: Path, timeout: float = 10, log: Path | None = None,
               spawn: Callable[[list[str], Path], int] | None = None) -> FuseProcess:
    """Start a FUSE daemon in the foreground (argv must keep it there, e.g. `-f`) and wait for its mount.

    The daemon runs in its own process group, so a Ctrl-C meant for us does not kill it before we unmount;
    its stdout and stderr go to `log` (default: `<mnt's parent>/<program>.log`, appended across remounts).
    `spawn(argv, log) -> pid` starts it some other way than as our child (a fork server, say).
    """
    mnt = _abspath(mnt)
    log = log or mnt.parent / f"{Path(argv[0]).name}.log"
    before = find_mount(mnt)
    if spawn is not None:
        daemon = FuseProcess(spawn(argv, log), mnt, log)
    else:
        with open(log, "ab") as out:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
                )
            except OSError as e:
                raise MountError(f"cannot start {argv[0]}: {e.strerror}") from None
        daemon = FuseProcess(proc.pid, mnt, log, proc)
    deadline = time.monotonic() + timeout
    # the kernel flags mountinfo (POLLPRI) at every mount and unmount in our namespace, so we wake when the mount
    # is made, not on an interval; opened before the first look, so nothing made after that look is missed
    with open("/proc/self/mountinfo", "rb", buffering=0) as table:
        changed = select.poll()
        changed.register(table, select.POLLPRI)
        while True:
            now = find_mount(mnt)
            if now is not None and now != before:
                _register(LiveMount(mnt, now.fstype, daemon.pid, daemon.proc))
                return daemon
            ended = daemon.exited()
            if ended is not None:
                raise MountError(f"{argv[0]} {ended} before mounting {mnt}: {daemon.stderr_tail()}")
            if time.monotonic() > deadline:
                _kill_and_reap(daemon.pid, daemon.proc)
                if find_mount(mnt) != before:  # it mounted just as we gave up
                    unmount(mnt)
                raise MountError(f"{argv[0]} did not mount {mnt} within {timeout:g} s: {daemon.stderr_tail()}")
            changed.poll(10)  # at most 10 ms, though: a daemon that exits before mounting changes no mount


# --------------------------------------------------------------------------------------------- unmounting


def ensure_fusectl() -> None:
    if any(m.fstype == "fusectl" for m in read_mountinfo()):
        return
    done = _run(["mount", "-t", "fusectl", "fusectl", str(FUSECTL)], 5)
    if done is None or done.returncode != 0:
        raise MountError(
            f"cannot mount fusectl at {FUSECTL}: {_one_line(done.stderr) if done else 'timed out'}"
        )


def _abort_connection(info: MountInfo) -> None:
    """Fail every pending and future request of this FUSE connection (they return ECONNABORTED/ENOTCONN)."""
    ensure_fusectl()
    with contextlib.suppress(FileNotFoundError):  # the connection is already gone
        (FUSECTL / str(info.minor) / "abort").write_text("1")


def _kill(pid: int) -> None:
    """SIGKILL the daemon, and its process group when it leads one (start_fuse makes it so)."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def _reap(pid: int, proc: subprocess.Popen | None, timeout: float) -> bool:
    """Wait for our child to exit; True when it has (or is not ours to wait for)."""
    if proc is not None:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: nothing to reap
            return True
        if done:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _kill_and_reap(pid: int, proc: subprocess.Popen | None) -> None:
    _kill(pid)
    _reap(pid, proc, 5)


def abort(mnt: Path, pid: int | None) -> None:
    """Abort the FUSE connection at `mnt` and SIGKILL its daemon: what a watchdog does to a hung mount.

    The mount stays (dead: "Transport endpoint is not connected") until `unmount`."""
    info = find_mount(mnt)
    if info is not None and info.is_fuse:
        _abort_connection(info)
    if pid is not None:
        _kill(pid)


def _ok(done: subprocess.CompletedProcess | None) -> bool:
    return done is not None and done.returncode == 0


def _force_unmount(info: MountInfo, pid: int | None, timeout: float) -> None:
    """The path that cannot hang: once aborted, every request fails at once; nothing waits on the daemon."""
    mnt = str(info.mount_point)
    if info.is_fuse:
        _abort_connection(info)
        if pid is not None:
            _kill(pid)
        if _ok(_run(["fusermount3", "-uz", mnt], timeout)):
            return
    _run(["umount", "-l", "-c", mnt], timeout)


def _unmount_fuse(mnt: Path, timeout: float) -> bool:
    """`fusermount3 -u MNT`: True if it unmounted within `timeout`.

    For root that is one umount2(2), made here without starting a process (a check unmounts thousands of
    times), in a thread: unmounting a FUSE mount can wait on its daemon (flushing a writeback cache, say). One
    that does not return is released by the connection abort that follows it."""
    if os.geteuid() != 0:  # only fusermount3, setuid, may unmount for an ordinary user
        return _ok(_run(["fusermount3", "-u", str(mnt)], timeout))
    done: list[bool] = []
    umount = threading.Thread(target=lambda: done.append(_libc.umount2(os.fsencode(mnt), 0) == 0), daemon=True)
    umount.start()
    umount.join(timeout)
    return done == [True]


def unmount(mnt: Path, pid: int | None = None, timeout: float = 5) -> None:
    """Unmount whatever is mounted at `mnt` (every stacked layer), then reap the daemon `pid`.

    Gentle first (`fusermount3 -u` / `umount`); if that fails or hangs, abort the FUSE connection, SIGKILL the
    daemon and detach lazily. Idempotent; raises MountError only if a mount is still there at the end."""
    mnt = _abspath(mnt)
    live = _unregister(mnt)
    proc = live.proc if live else None
    pid = pid if pid is not None else (live.pid if live else None)
    forced = False
    try:
        # what we mounted there, as we registered it (a look at mountinfo where we did not)
        fstype = live.fstype if live else getattr(find_mount(mnt), "fstype", None)
        if fstype is not None:
            # a kernel mount cannot hang in umount; a FUSE one can
            clean = _unmount_fuse(mnt, timeout) if is_fuse_type(fstype) else _libc.umount2(os.fsencode(mnt), 0) == 0
            if not clean and (info := find_mount(mnt)) is not None:  # else it was gone already
                forced = True
                _force_unmount(info, pid, timeout)
        for _ in range(16):  # something else may be stacked below what we just removed
            info = find_mount(mnt)
            if info is None:
                break
            forced = True
            _force_unmount(info, pid, timeout)
        else:
            info = find_mount(mnt)
        if info is not None:
            # keep it registered so the exit handler tries again; the daemon is reaped below, so no pid
            _register(LiveMount(mnt, info.fstype))
            raise MountError(f"could not unmount {mnt}: still listed in /proc/self/mountinfo")
    finally:
        if pid is not None:
            if not forced:
                # after a clean unmount the daemon exits by itself (a stopped one once continued); give it
                # the chance to flush, then insist
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                forced = not _reap(pid, proc, timeout)
            if forced:
                _kill_and_reap(pid, proc)


# ----------------------------------------------------------------------------------------------- watchdog


class _Clock:
    """The one thread that times every watchdog. A thread per watchdog (threading.Timer) cost ~1 ms to start and
    join, and a check guards every step and every state walk with one; watchdogs that fire are rare, so each
    fires in a thread of its own, and a slow abort does not delay another's."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[Watchdog, float] = {}  # watchdog -> its deadline (time.monotonic)
        self._wake_at = math.inf  # the deadline the clock sleeps towards
        self._thread: threading.Thread | None = None

    def arm(self, dog: Watchdog, deadline: float) -> None:
        with self._cond:
            self._armed[dog] = deadline
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="vfslab-watchdog", daemon=True)
                self._thread.start()
            elif deadline < self._wake_at:
                self._cond.notify()

    def disarm(self, dog: Watchdog) -> threading.Thread | None:
        """Stop timing `dog`; the thread running its `on_fire`, if it has fired."""
        with self._cond:
            self._armed.pop(dog, None)
            return dog._firing

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for dog in [d for d, deadline in self._armed.items() if deadline <= now]:
                    del self._armed[dog]
                    dog._firing = threading.Thread(target=dog._fire, name="vfslab-watchdog-fire", daemon=True)
                    dog._firing.start()
                # a disarmed watchdog's deadline is not waited for again: the clock wakes then, for nothing, once
                self._wake_at = min(self._armed.values(), default=math.inf)
                self._cond.wait(None if self._wake_at == math.inf else self._wake_at - now)


_CLOCK = _Clock()


class Watchdog:
    """Calls `on_fire` (e.g. an abort of the mount) if the `with` body runs longer than `seconds`.

    The body's blocked system call then returns an error instead of hanging the process; `fired` tells the
    caller to report a hang rather than that error."""

    def __init__(self, seconds: float, on_fire: Callable[[], None]) -> None:
        self.seconds = seconds
        self.on_fire = on_fire
        self.fired = False
        self._firing: threading.Thread | None = None

    def _fire(self) -> None:
        self.fired = True
        self.on_fire()

    def __enter__(self) -> Watchdog:
        _CLOCK.arm(self, time.monotonic() + self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        firing = _CLOCK.disarm(self)
        if firing is not None:
            # it is firing, or has fired: let the abort finish before the caller tears down
            firing.join()


#: seconds an operation on a subject that can hang may take before the connection is aborted
WATCHDOG_SECONDS = 10.0


def watchdog(seconds: float, on_fire: Callable[[], None]) -> Watchdog:
    """`with watchdog(5, mounted.abort) as wd: ...` then `wd.fired`."""
    return Watchdog(seconds, on_fire)
