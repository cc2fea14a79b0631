"""Run a program in a mount namespace of its own: `python namespace.py SRC DST -- PROGRAM [ARGS...]`.

In the new namespace, directory SRC stands in for DST (a bind mount that never reaches the caller's
namespace), and only what the program needs stays mounted: the root, /proc, /sys, /dev, DST and what it sits
on. Every mount is made private first (recursively, in one call, so nothing propagates either way), then
every copy the program does not need is detached: a copy would pin what it mounts after the caller's
namespace unmounts it (an overlay's upper directory stays "in use", a FUSE connection stays up). The program
reaches nothing of the caller's mounts but through file descriptors it is given (a FUSE connection's, say).
Standard library only: it runs as a script, before anything of vfslab is imported.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 1 << 18
MNT_DETACH = 2
KEEP_UNDER = ("/proc", "/sys", "/dev")
#: held exclusively from unshare until the unneeded copies are detached, and shared by every overlay mount: while
#: a new namespace holds a copy of an overlay, its upper directory is "in use", and an index=on mount of that
#: upper directory (a remount, say) fails with EBUSY
COPYING_LOCK = "/run/vfslab-namespace-copying.lock"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_points() -> list[str]:
    """Every mount point in this namespace, from /proc/self/mountinfo (octal escapes undone)."""
    return [line.split()[4].encode().decode("unicode_escape").encode("latin-1").decode(errors="surrogateescape")
            for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def _needed(point: str, dst: str) -> bool:
    """The root, /proc, /sys, /dev and their submounts, DST, and whatever DST sits on."""
    if point == "/" or any(point == k or point.startswith(k + "/") for k in KEEP_UNDER):
        return True
    return dst == point or dst.startswith(point + "/")


@contextlib.contextmanager
def copying(exclusive: bool) -> Iterator[None]:
    """The lock between making a namespace (exclusive) and mounting an overlay (shared); nothing to hold where the
    lock file cannot be made (not root: neither can happen)."""
    try:
        fd = os.open(COPYING_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def enter(src: str, dst: str) -> None:
    with copying(exclusive=True):
        _check(_libc.unshare(CLONE_NEWNS), "unshare")
        _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        _check(_libc.mount(os.fsencode(src), os.fsencode(dst), None, MS_BIND, None), f"bind {src} on {dst}")
        for point in sorted(set(_mount_points()), key=len, reverse=True):
            if not _needed(point, dst):
                _libc.umount2(os.fsencode(point), MNT_DETACH)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: namespace.py SRC DST -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    try:
        enter(os.path.abspath(argv[0]), os.path.abspath(argv[1]))
        os.execv(argv[3], argv[3:])
    except OSError as e:
        print(f"namespace: {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
