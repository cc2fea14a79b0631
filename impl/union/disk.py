"""Layers as they lie on disk, in kernel overlayfs's format, reached without following any symlink.

A layer is a directory fd. Every real entry is named by (layer, path inside the layer); its parent
directory is opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so no symlink and no `..` in a
layer can take the daemon outside it, and the entry itself is touched with the *at calls without following
it. Extended attributes go through `/proc/self/fd/<dirfd>/<name>` with l*xattr: the magic link is the
directory we opened, and the last component is not followed.

The format (docs/facts.md, overlayfs 1 and 7): a whiteout is a character device 0:0; `trusted.overlay.opaque=y` marks an
opaque directory, `trusted.overlay.redirect` a renamed one, `trusted.overlay.origin` the lower inode a copy-up came from
(an overlayfs file handle, struct ovl_fb), and with index=on `work/index/<hex of that handle>` is a hard link to the one
upper inode all names of a lower hard-link group share, whose union link count is kept in `trusted.overlay.nlink` as
`U<delta>` from the index inode's own.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import stat as st
import struct
import threading
from collections import OrderedDict

PREFIX = "trusted.overlay."
OPAQUE = PREFIX + "opaque"
REDIRECT = PREFIX + "redirect"
ORIGIN = PREFIX + "origin"
NLINK = PREFIX + "nlink"

Rel = tuple[str, ...]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_SYS_OPENAT2 = 437  # x86_64 and every other architecture since 5.6
RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x02, 0x04, 0x08
AT_EMPTY_PATH = 0x1000
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
MAX_HANDLE_SZ = 128


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _check(ret: int) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def openat2_beneath(dirfd: int, path: str, flags: int) -> int:
    """Open `path` below `dirfd`, refusing symlinks, magic links and any escape (ELOOP / EXDEV)."""
    how = _OpenHow(flags, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
    return _check(_libc.syscall(_SYS_OPENAT2, dirfd, path.encode(), ctypes.byref(how), ctypes.sizeof(how)))


def renameat2(olddirfd: int, old: str, newdirfd: int, new: str, flags: int = 0) -> None:
    _check(_libc.renameat2(olddirfd, old.encode(), newdirfd, new.encode(), flags))


def linkat_fd(fd: int, newdirfd: int, new: str) -> None:
    """A name for the file an fd is open on (AT_EMPTY_PATH: the daemon runs as root, CAP_DAC_READ_SEARCH)."""
    _check(_libc.linkat(fd, b"", newdirfd, new.encode(), AT_EMPTY_PATH))


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2) with its mode (os.posix_fallocate has none)."""
    _check(_libc.fallocate(fd, mode, offset, length))


def is_whiteout(s: os.stat_result) -> bool:
    return st.S_ISCHR(s.st_mode) and s.st_rdev == 0


def proc(dirfd: int, name: str = "") -> str:
    """A path that reaches `name` in the directory we hold open, without walking any name above it."""
    return f"/proc/self/fd/{dirfd}/{name}" if name else f"/proc/self/fd/{dirfd}"


# ---- file handles: the overlayfs origin format ---------------------------------------------------------

class _Handle(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int), ("f", ctypes.c_ubyte * MAX_HANDLE_SZ)]


OVL_FH_VERSION, OVL_FH_MAGIC = 0, 0xFB
_FB_HEADER = struct.Struct("<BBBBB16s")  # version, magic, len, flags, type, uuid


def encode_origin(dirfd: int, name: str) -> bytes:
    """The overlayfs file handle (struct ovl_fb) of `name` in `dirfd`, as the kernel stores it in
    trusted.overlay.origin. The uuid is left null, as kernel overlayfs here writes it when all layers share
    one file system."""
    h = _Handle(MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    _check(_libc.name_to_handle_at(dirfd, name.encode(), ctypes.byref(h), ctypes.byref(mount_id), 0))
    fid = bytes(h.f[: h.bytes])
    return _FB_HEADER.pack(OVL_FH_VERSION, OVL_FH_MAGIC, _FB_HEADER.size + len(fid), 0, h.type, bytes(16)) + fid


def origin_fid(fb: bytes) -> bytes:
    """The part of an origin handle its file system made (what name_to_handle_at gave), the header aside."""
    return fb[_FB_HEADER.size:]


def decode_origin(mount_fd: int, fb: bytes) -> os.stat_result | None:
    """fstat of the inode an origin handle names on the file system of `mount_fd`; None if it names none.
    Only its attributes are read: the handle might name an inode outside the layers."""
    if len(fb) < _FB_HEADER.size:
        return None
    version, magic, length, _flags, ftype, _uuid = _FB_HEADER.unpack_from(fb)
    fid = fb[_FB_HEADER.size : length]
    if version != OVL_FH_VERSION or magic != OVL_FH_MAGIC or length != len(fb) or not fid:
        return None
    h = _Handle(len(fid), ftype)
    ctypes.memmove(h.f, fid, len(fid))
    fd = _libc.open_by_handle_at(mount_fd, ctypes.byref(h), os.O_PATH | os.O_CLOEXEC)
    if fd < 0:
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def fs_type(fd: int) -> str:
    """The type of the file system an fd is on, found by its device in /proc/self/mountinfo ("" if none is)."""
    dev = os.fstat(fd).st_dev
    want = f"{os.major(dev)}:{os.minor(dev)}"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if pre.split()[2] == want:
                return post.split()[0]
    return ""


# ---- one layer --------------------------------------------------------------------------------------

class Layer:
    """A layer directory, and a small cache of O_PATH fds on the directories in it."""

    CACHE = 512

    def __init__(self, path: str, index: int) -> None:
        self.path = path
        self.index = index
        # readable, not O_PATH: open_by_handle_at takes it as its mount fd
        self.root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._dirs: OrderedDict[Rel, int] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Layer({self.index}: {self.path})"

    @functools.cached_property
    def fstype(self) -> str:
        """Its file system's type: asked only by an ACL change on a lower file, not at every mount."""
        return fs_type(self.root)

    def dirfd(self, rel: Rel) -> int:
        """An O_PATH fd on the directory `rel` (ENOENT, ENOTDIR, or ELOOP for a symlink on the way)."""
        if not rel:
            return self.root
        with self._lock:
            fd = self._dirs.get(rel)
            if fd is not None:
                self._dirs.move_to_end(rel)
                return fd
        fd = openat2_beneath(self.root, "/".join(rel), O_PATH_DIR | os.O_NOFOLLOW)
        with self._lock:
            self._dirs[rel] = fd
            while len(self._dirs) > self.CACHE:
                os.close(self._dirs.popitem(last=False)[1])
        return fd

    def forget(self) -> None:
        """Drop the cached directory fds: a directory was renamed or removed, so paths may name others now."""
        with self._lock:
            for fd in self._dirs.values():
                os.close(fd)
            self._dirs.clear()

    def lstat(self, rel: Rel) -> os.stat_result | None:
        """The entry at `rel`, or None if there is none (or a symlink or file stands where a directory would)."""
        try:
            return os.stat(rel[-1], dir_fd=self.dirfd(rel[:-1]), follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None
            raise

    def at(self, rel: Rel) -> tuple[int, str]:
        """(parent dir fd, name): what the *at calls take."""
        return self.dirfd(rel[:-1]), rel[-1]

    def xpath(self, rel: Rel) -> str:
        # the root by `<fd>/.`: l*xattr calls on the bare magic link would act on the link itself
        return proc(self.dirfd(rel[:-1]), rel[-1]) if rel else proc(self.root, ".")

    def getxattr(self, rel: Rel, name: str) -> bytes | None:
        try:
            return os.getxattr(self.xpath(rel), name, follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.EOPNOTSUPP, errno.EPERM):
                return None
            raise

    def close(self) -> None:
        self.forget()
        os.close(self.root)
