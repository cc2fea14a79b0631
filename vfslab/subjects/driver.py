"""Apply operations to a real mounted file system, as a given caller, and report what happened.

Paths are resolved relative to an fd on the mount's root, so the bench never walks the path above the
mount, and a non-root caller needs no permission on it. A non-root caller is impersonated per thread
with setfsuid/setfsgid: the kernel then drops the fs capabilities, and FUSE daemons see that uid.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat as st
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vfslab.impl.union.disk import fallocate
from vfslab.model import acl
from vfslab.model.outcome import Err, Outcome
from vfslab.model.state import Entry
from vfslab.model.union import Cred, UnionModel
from vfslab.model.union.ops import FD_OPS, HANDLE_OPS, OPENS, Op

_libc = ctypes.CDLL(None, use_errno=True)
#: the largest file handle a file system may give (MAX_HANDLE_SZ)
MAX_HANDLE = 128
RENAME_NOREPLACE = 1
AT_FDCWD, AT_SYMLINK_FOLLOW = -100, 0x400
UMASK = 0o022  # the model's umask (UnionModel's default)
#: the bench's callers: root, and an ordinary user
USER = 1000
USER_GID = {0: 0}


def caller_gid(uid: int) -> int:
    """Callers are root or an ordinary user whose primary group has the same number as its uid."""
    return USER_GID.get(uid, uid)


@contextmanager
def as_caller(uid: int) -> Iterator[None]:
    if uid == 0:
        yield
        return
    _libc.setfsgid(caller_gid(uid))
    _libc.setfsuid(uid)
    try:
        yield
    finally:
        _libc.setfsuid(0)
        _libc.setfsgid(0)


class _FileHandle(ctypes.Structure):
    """struct file_handle"""

    _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int), ("f", ctypes.c_ubyte * MAX_HANDLE)]


def stat_entry(s: os.stat_result) -> Entry:
    kind = ("dir" if st.S_ISDIR(s.st_mode) else "file" if st.S_ISREG(s.st_mode)
            else "symlink" if st.S_ISLNK(s.st_mode)
            else "whiteout" if st.S_ISCHR(s.st_mode) and s.st_rdev == 0 else "other")
    # (st_dev, st_ino): overlayfs on layers of several file systems numbers inodes per layer, each layer's on a
    # device of its own
    return Entry(kind, st.S_IMODE(s.st_mode), s.st_uid, s.st_gid, s.st_nlink, None if kind == "dir" else s.st_size,
                 None, None, (), (s.st_dev, s.st_ino))


class OsDriver:
    """Runs ops on the tree at `root`. Slots map to real fds, and file handles are kept in the order they were made
    (across remounts: that is what they are for)."""

    def __init__(self, root: Path) -> None:
        # a non-root caller must not get access through root's supplementary groups
        os.setgroups([])
        os.umask(UMASK)
        self.root = root
        self.slots: dict[int, int] = {}
        self.handles: list[_FileHandle] = []
        self._rfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)

    def apply(self, op: Op) -> object:
        """The op's result, or Err(errno). An fd op on a slot this side does not have, or a handle op on a handle it
        never made, is EBADF."""
        args = op.args
        if op.name in FD_OPS:
            if args[0] not in self.slots:
                return Err(errno.EBADF)
            args = (self.slots[args[0]], *args[1:])
        elif op.name in HANDLE_OPS:
            if not 0 <= args[0] < len(self.handles):
                return Err(errno.EBADF)
            args = (self.handles[args[0]], *args[1:])
        try:
            with as_caller(op.uid):
                return getattr(self, op.name)(*args)
        except OSError as e:
            return Err(e.errno)

    def close_all(self) -> None:
        for fd in self.slots.values():
            os.close(fd)
        self.slots.clear()

    def release(self) -> None:
        """Close every fd into the mount, so that it can be unmounted."""
        self.close_all()
        if self._rfd >= 0:
            os.close(self._rfd)
            self._rfd = -1

    def reopen(self) -> None:
        """After the subject was mounted again."""
        self._rfd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)

    def _full(self, path: str) -> str:
        """For calls without a dir_fd form: through our own fd, so a non-root caller needs no permission on the
        directories above the mount (a process may always follow its own /proc/self/fd links)."""
        return f"/proc/self/fd/{self._rfd}/{path}"

    # -- the operations, named as the model's ----------------------------------------------------

    def stat(self, path: str) -> Entry:
        return stat_entry(os.stat(path, dir_fd=self._rfd))

    def lstat(self, path: str) -> Entry:
        return stat_entry(os.stat(path, dir_fd=self._rfd, follow_symlinks=False))

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return self._slot(os.open(path, flags, mode, dir_fd=self._rfd))

    def dup(self, fd: int) -> int:
        return self._slot(os.dup(fd))

    def _slot(self, fd: int) -> int:
        slot = max(self.slots, default=-1) + 1
        self.slots[slot] = fd
        return slot

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        return os.lseek(fd, offset, whence)

    def flink(self, fd: int, path: str) -> None:
        """linkat of the fd's /proc/self/fd link, followed: what an ordinary caller can do (AT_EMPTY_PATH needs
        CAP_DAC_READ_SEARCH)."""
        if _libc.linkat(AT_FDCWD, f"/proc/self/fd/{fd}".encode(), self._rfd, path.encode(), AT_SYMLINK_FOLLOW) != 0:
            raise OSError(ctypes.get_errno(), "linkat")

    def handle(self, path: str) -> int:
        h, mount_id = _FileHandle(MAX_HANDLE), ctypes.c_int()
        if _libc.name_to_handle_at(self._rfd, path.encode(), ctypes.byref(h), ctypes.byref(mount_id), 0) != 0:
            raise OSError(ctypes.get_errno(), "name_to_handle_at")
        self.handles.append(h)
        return len(self.handles) - 1

    def open_handle(self, h: _FileHandle, flags: int) -> int:
        fd = _libc.open_by_handle_at(self._rfd, ctypes.byref(h), flags)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "open_by_handle_at")
        return self._slot(fd)

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def fstat(self, fd: int) -> Entry:
        return stat_entry(os.fstat(fd))

    def fallocate(self, fd: int, mode: int, offset: int, length: int) -> None:
        fallocate(fd, mode, offset, length)

    def fchmod(self, fd: int, mode: int) -> None:
        os.chmod(fd, mode)

    def fchown(self, fd: int, uid: int, gid: int) -> None:
        os.chown(fd, uid, gid)

    def futimens(self, fd: int, times: tuple[int, int]) -> None:
        os.utime(fd, ns=tuple(times))

    def fsetxattr(self, fd: int, name: str, value: bytes) -> None:
        os.setxattr(fd, name, value)

    def fremovexattr(self, fd: int, name: str) -> None:
        os.removexattr(fd, name)

    def close(self, fd: int) -> None:
        slot = next(s for s, f in self.slots.items() if f == fd)
        del self.slots[slot]
        os.close(fd)

    def truncate(self, path: str, length: int) -> None:
        os.truncate(self._full(path), length)

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(path, mode, dir_fd=self._rfd)

    def rmdir(self, path: str) -> None:
        os.rmdir(path, dir_fd=self._rfd)

    def unlink(self, path: str) -> None:
        os.unlink(path, dir_fd=self._rfd)

    def rename(self, old: str, new: str, noreplace: bool = False) -> None:
        if not noreplace:
            os.rename(old, new, src_dir_fd=self._rfd, dst_dir_fd=self._rfd)
            return
        if _libc.renameat2(self._rfd, old.encode(), self._rfd, new.encode(), RENAME_NOREPLACE) != 0:
            raise OSError(ctypes.get_errno(), "renameat2")

    def link(self, old: str, new: str) -> None:
        os.link(old, new, src_dir_fd=self._rfd, dst_dir_fd=self._rfd, follow_symlinks=False)

    def symlink(self, target: str, path: str) -> None:
        os.symlink(target, path, dir_fd=self._rfd)

    def readlink(self, path: str) -> str:
        return os.readlink(path, dir_fd=self._rfd)

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(path, mode, dir_fd=self._rfd)

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.chown(path, uid, gid, dir_fd=self._rfd)

    def utimens(self, path: str, times: tuple[int, int]) -> None:
        os.utime(path, ns=tuple(times), dir_fd=self._rfd)

    def readdir(self, path: str) -> tuple[str, ...]:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY, dir_fd=self._rfd)
        try:
            return tuple(sorted(os.listdir(fd)))
        finally:
            os.close(fd)

    def setxattr(self, path: str, name: str, value: bytes) -> None:
        os.setxattr(self._full(path), name, value)

    def getxattr(self, path: str, name: str) -> bytes:
        return os.getxattr(self._full(path), name)

    def listxattr(self, path: str) -> tuple[str, ...]:
        return tuple(sorted(n for n in os.listxattr(self._full(path)) if n.startswith("user.")))

    def removexattr(self, path: str, name: str) -> None:
        os.removexattr(self._full(path), name)

    def setacl(self, path: str, kind: str, text: str) -> None:
        os.setxattr(self._full(path), acl.KINDS[kind], acl.to_xattr(text))

    def getacl(self, path: str, kind: str) -> str:
        return acl.to_text(os.getxattr(self._full(path), acl.KINDS[kind]))

    def removeacl(self, path: str, kind: str) -> None:
        os.removexattr(self._full(path), acl.KINDS[kind])


class ModelDriver:
    """Runs ops on a UnionModel as OsDriver runs them on a mount: slots map to the model's fds."""

    def __init__(self, model: UnionModel) -> None:
        self.model = model
        self.slots: dict[int, int] = {}

    def call(self, op: Op, slot: int | None = None, refused: Err | None = None) -> Outcome:
        """The model's outcome. A successful open takes `slot` (by default the next one, numbered as OsDriver
        numbers them). `refused` is the subject's error, where it gave one: a handle's open the subject's kernel
        answered ESTALE is the model's to take as the kernel's dropping of an inode (`union.handle.evicted`),
        which no program can see coming."""
        self.model.cred = Cred(op.uid, caller_gid(op.uid))
        args = op.args
        if op.name in FD_OPS:
            if args[0] not in self.slots:
                return Outcome(Err(errno.EBADF), ("union.fd.mode",))
            args = (self.slots[args[0]], *args[1:])
        extra = {"dropped": True} if op.name == "open_handle" and refused == Err(errno.ESTALE) else {}
        outcome = getattr(self.model, op.name)(*args, **extra)
        if not outcome.failed and op.name in OPENS:
            self.slots[max(self.slots, default=-1) + 1 if slot is None else slot] = outcome.result
        elif not outcome.failed and op.name == "close":
            del self.slots[op.args[0]]
        return outcome

    def apply(self, op: Op) -> object:
        return self.answer(op)[0]

    def answer(self, op: Op) -> tuple[object, Outcome]:
        """The op's result as OsDriver gives it (a slot for an open), and the model's outcome."""
        outcome = self.call(op)
        return max(self.slots) if op.name in OPENS and not outcome.failed else outcome.result, outcome

    @property
    def handles(self) -> list:
        """The file handles made so far, numbered as OsDriver numbers them."""
        return self.model.handles

    def release(self) -> None:
        self.slots.clear()

    def reopen(self) -> None:
        """Nothing to reopen."""
