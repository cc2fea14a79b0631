"""A small ctypes binding of libfuse3's low-level API: what our inode-based file systems need.

mfusepy binds only the high-level (path) API, in which a handler must reply before it returns, so a request
that has to wait holds a worker thread. The low-level API lets a handler keep the request and reply later,
from any thread (`fuse_reply_*`), which is how a file system can make callers wait without running out of
workers. A subclass of `Operations` implements methods named after the requests; each gets the request
handle and replies through the helpers here, or raises OSError (replied with that errno).
"""

from __future__ import annotations

import ctypes
import errno as E
import logging
import os
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_char_p,
    c_double,
    c_int,
    c_int64,
    c_size_t,
    c_uint,
    c_uint32,
    c_uint64,
    c_void_p,
)

from vfslab.impl.mfuse import mfusepy

log = logging.getLogger("vfslab.fuse")
#: libfuse 3.17, which has the tmpfile request (O_TMPFILE), as the Makefile builds it (LIBFUSE_CACHE) beside
#: Debian's 3.14 (whose soname differs: the two load side by side, mfusepy's high-level daemons staying on 3.14)
LIBFUSE_317 = "/var/cache/vfslab/libfuse-3.17.2+vfslab1/lib/x86_64-linux-gnu/libfuse3.so.4"


def _library() -> ctypes.CDLL:
    """The libfuse the low-level daemons use: $VFSLAB_LIBFUSE (a path, or `system` for Debian's), else 3.17 where
    it is built, else Debian's."""
    chosen = os.environ.get("VFSLAB_LIBFUSE", LIBFUSE_317)
    return ctypes.CDLL(chosen) if chosen != "system" and os.path.exists(chosen) else mfusepy._libfuse


lib = _library()
lib.fuse_pkgversion.restype = c_char_p
#: the version of `lib`, e.g. "3.17.2"
VERSION = lib.fuse_pkgversion().decode()
c_stat = mfusepy.c_stat
fuse_file_info = mfusepy.fuse_file_info
req_t, ino_t = c_void_p, c_uint64
ROOT = 1


class fuse_args(ctypes.Structure):
    _fields_ = [("argc", c_int), ("argv", POINTER(c_char_p)), ("allocated", c_int)]


class fuse_entry_param(ctypes.Structure):
    _fields_ = [("ino", ino_t), ("generation", c_uint64), ("attr", c_stat), ("attr_timeout", c_double),
                ("entry_timeout", c_double)]


class fuse_buf(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("flags", c_int), ("mem", c_void_p), ("fd", c_int), ("pos", c_int64)]


class fuse_bufvec(ctypes.Structure):
    _fields_ = [("count", c_size_t), ("idx", c_size_t), ("off", c_size_t), ("buf", fuse_buf * 1)]


#: enum fuse_buf_flags: the buffer is a file descriptor, read at `pos`
BUF_IS_FD, BUF_FD_SEEK = 1 << 1, 1 << 2


class fuse_ctx(ctypes.Structure):
    _fields_ = [("uid", c_uint32), ("gid", c_uint32), ("pid", c_int), ("umask", c_uint32)]


class fuse_conn_info(ctypes.Structure):
    """libfuse 3.14's struct fuse_conn_info: what the kernel offers (`capable`) and what the file system asks for
    (`want`, FUSE_CAP_* bits)."""

    _fields_ = [(name, c_uint) for name in ("proto_major", "proto_minor", "max_write", "max_read", "max_readahead",
                                            "capable", "want", "max_background", "congestion_threshold",
                                            "time_gran")] + [("reserved", c_uint * 22)]


#: capabilities a file system may ask for (fuse_common.h)
CAP_EXPORT_SUPPORT, CAP_DONT_MASK, CAP_POSIX_ACL, CAP_HANDLE_KILLPRIV, CAP_CACHE_SYMLINKS = (
    1 << 4, 1 << 6, 1 << 19, 1 << 20, 1 << 23)
FI = POINTER(fuse_file_info)
#: struct fuse_lowlevel_ops, in libfuse's order; the requests nobody here serves are opaque slots left NULL
PROTOTYPES = {
    "init": CFUNCTYPE(None, c_void_p, POINTER(fuse_conn_info)),
    "destroy": CFUNCTYPE(None, c_void_p),
    "lookup": CFUNCTYPE(None, req_t, ino_t, c_char_p),
    "forget": CFUNCTYPE(None, req_t, ino_t, c_uint64),
    "getattr": CFUNCTYPE(None, req_t, ino_t, FI),
    "setattr": CFUNCTYPE(None, req_t, ino_t, POINTER(c_stat), c_int, FI),
    "readlink": CFUNCTYPE(None, req_t, ino_t),
    "mknod": CFUNCTYPE(None, req_t, ino_t, c_char_p, c_uint32, c_uint64),
    "mkdir": CFUNCTYPE(None, req_t, ino_t, c_char_p, c_uint32),
    "unlink": CFUNCTYPE(None, req_t, ino_t, c_char_p),
    "rmdir": CFUNCTYPE(None, req_t, ino_t, c_char_p),
    "symlink": CFUNCTYPE(None, req_t, c_char_p, ino_t, c_char_p),
    "rename": CFUNCTYPE(None, req_t, ino_t, c_char_p, ino_t, c_char_p, c_uint),
    "link": CFUNCTYPE(None, req_t, ino_t, ino_t, c_char_p),
    "open": CFUNCTYPE(None, req_t, ino_t, FI),
    "read": CFUNCTYPE(None, req_t, ino_t, c_size_t, c_int64, FI),
    "write": CFUNCTYPE(None, req_t, ino_t, c_void_p, c_size_t, c_int64, FI),
    "flush": CFUNCTYPE(None, req_t, ino_t, FI),
    "release": CFUNCTYPE(None, req_t, ino_t, FI),
    "fsync": CFUNCTYPE(None, req_t, ino_t, c_int, FI),
    "opendir": CFUNCTYPE(None, req_t, ino_t, FI),
    "readdir": CFUNCTYPE(None, req_t, ino_t, c_size_t, c_int64, FI),
    "releasedir": CFUNCTYPE(None, req_t, ino_t, FI),
    "fsyncdir": CFUNCTYPE(None, req_t, ino_t, c_int, FI),
    "statfs": CFUNCTYPE(None, req_t, ino_t),
    "setxattr": CFUNCTYPE(None, req_t, ino_t, c_char_p, c_void_p, c_size_t, c_int),
    "getxattr": CFUNCTYPE(None, req_t, ino_t, c_char_p, c_size_t),
    "listxattr": CFUNCTYPE(None, req_t, ino_t, c_size_t),
    "removexattr": CFUNCTYPE(None, req_t, ino_t, c_char_p),
    "access": CFUNCTYPE(None, req_t, ino_t, c_int),
    "create": CFUNCTYPE(None, req_t, ino_t, c_char_p, c_uint32, FI),
    "getlk": c_void_p,
    "setlk": c_void_p,
    "bmap": c_void_p,
    "ioctl": c_void_p,
    "poll": c_void_p,
    "write_buf": c_void_p,
    "retrieve_reply": c_void_p,
    "forget_multi": c_void_p,
    "flock": c_void_p,
    "fallocate": CFUNCTYPE(None, req_t, ino_t, c_int, c_int64, c_int64, FI),
    "readdirplus": CFUNCTYPE(None, req_t, ino_t, c_size_t, c_int64, FI),
}
if tuple(int(part) for part in VERSION.split(".")[:2]) >= (3, 17):
    PROTOTYPES |= {"copy_file_range": c_void_p, "lseek": c_void_p,
                   "tmpfile": CFUNCTYPE(None, req_t, ino_t, c_uint32, FI)}
SERVED = [name for name, kind in PROTOTYPES.items() if kind is not c_void_p and name not in ("init", "destroy")]


class fuse_lowlevel_ops(ctypes.Structure):
    _fields_ = list(PROTOTYPES.items())


lib.fuse_session_new.restype = c_void_p
lib.fuse_session_new.argtypes = [POINTER(fuse_args), POINTER(fuse_lowlevel_ops), c_size_t, c_void_p]
lib.fuse_session_mount.argtypes = [c_void_p, c_char_p]
for name in ("fuse_session_unmount", "fuse_session_destroy", "fuse_session_loop", "fuse_set_signal_handlers",
             "fuse_remove_signal_handlers", "fuse_session_exit"):
    getattr(lib, name).argtypes = [c_void_p]
lib.fuse_loop_cfg_create.restype = c_void_p
lib.fuse_loop_cfg_set_max_threads.argtypes = [c_void_p, c_uint]
lib.fuse_loop_cfg_destroy.argtypes = [c_void_p]
lib.fuse_session_loop_mt_312.argtypes = [c_void_p, c_void_p]
#: the calls that only write a reply or a notification to /dev/fuse (or fill a buffer), bound so they keep the GIL.
#: A reply that let go of it let the worker of the next request take it between the reply and the end of the
#: callback, and the two threads then passed the GIL back and forth on every request: twice a create's time,
#: measured (docs/union-fuse.md). Calls that may wait (the loop, mount, reading a file for a reply) stay on `lib`.
held = ctypes.PyDLL(lib._name)
for _name, _restype, _argtypes in (
    ("fuse_reply_err", c_int, [req_t, c_int]),
    ("fuse_reply_none", None, [req_t]),
    ("fuse_reply_entry", c_int, [req_t, POINTER(fuse_entry_param)]),
    ("fuse_reply_attr", c_int, [req_t, POINTER(c_stat), c_double]),
    ("fuse_reply_readlink", c_int, [req_t, c_char_p]),
    ("fuse_reply_open", c_int, [req_t, FI]),
    ("fuse_reply_write", c_int, [req_t, c_size_t]),
    ("fuse_reply_buf", c_int, [req_t, c_void_p, c_size_t]),
    ("fuse_reply_create", c_int, [req_t, POINTER(fuse_entry_param), FI]),
    ("fuse_reply_statfs", c_int, [req_t, POINTER(mfusepy.c_statvfs)]),
    ("fuse_reply_xattr", c_int, [req_t, c_size_t]),
    ("fuse_add_direntry", c_size_t, [req_t, c_void_p, c_size_t, c_char_p, POINTER(c_stat), c_int64]),
    ("fuse_add_direntry_plus", c_size_t, [req_t, c_void_p, c_size_t, c_char_p, POINTER(fuse_entry_param), c_int64]),
    ("fuse_req_ctx", POINTER(fuse_ctx), [req_t]),
    ("fuse_req_getgroups", c_int, [req_t, c_int, POINTER(c_uint32)]),
    ("fuse_lowlevel_notify_inval_inode", c_int, [c_void_p, ino_t, c_int64, c_int64]),
):
    getattr(held, _name).restype, getattr(held, _name).argtypes = _restype, _argtypes
lib.fuse_reply_data.argtypes = [req_t, POINTER(fuse_bufvec), c_int]
INTERRUPT = CFUNCTYPE(None, req_t, c_void_p)
lib.fuse_req_interrupt_func.argtypes = [req_t, INTERRUPT, c_void_p]
lib.fuse_lowlevel_notify_inval_entry.argtypes = [c_void_p, ino_t, c_char_p, c_size_t]


def stat(mode: int, nlink: int = 1, size: int = 0, ino: int = 0, uid: int = 0, gid: int = 0) -> c_stat:
    s = c_stat()
    s.st_mode, s.st_nlink, s.st_size, s.st_ino, s.st_uid, s.st_gid = mode, nlink, size, ino, uid, gid
    return s


def attr(s: os.stat_result, ino: int, nlink: int) -> c_stat:
    """The attributes a reply carries: a real file's lstat, shown under inode number `ino` with `nlink` links."""
    a = c_stat()
    a.st_mode, a.st_ino, a.st_nlink, a.st_uid, a.st_gid = s.st_mode, ino, nlink, s.st_uid, s.st_gid
    a.st_size, a.st_rdev, a.st_blocks, a.st_blksize = s.st_size, s.st_rdev, s.st_blocks, s.st_blksize
    for field, ns in (("st_atimespec", s.st_atime_ns), ("st_mtimespec", s.st_mtime_ns),
                      ("st_ctimespec", s.st_ctime_ns)):
        t = getattr(a, field)
        t.tv_sec, t.tv_nsec = divmod(ns, 1_000_000_000)
    return a


def caller(req: int) -> fuse_ctx:
    return held.fuse_req_ctx(req).contents


def groups(req: int) -> list[int]:
    """The caller's supplementary groups (libfuse reads them from /proc; [] if it cannot)."""
    size = 32
    while True:
        found = (c_uint32 * size)()
        n = held.fuse_req_getgroups(req, size, found)
        if n < 0:
            return []
        if n <= size:
            return list(found[:n])
        size = n


def reply_none(req: int) -> None:
    held.fuse_reply_none(req)


def reply_err(req: int, errno: int) -> None:
    held.fuse_reply_err(req, errno)


def reply_entry(req: int, ino: int, attr: c_stat, timeout: float = 0.0, generation: int = 0) -> None:
    """A lookup's answer; inode 0 is a negative entry (no such name), cached for `timeout` seconds. The node id
    and `generation` together are what a file handle of it holds."""
    e = fuse_entry_param(ino, generation, attr, timeout, timeout)
    held.fuse_reply_entry(req, ctypes.byref(e))


def reply_create(req: int, ino: int, attr: c_stat, timeout: float, fi, generation: int = 0) -> None:
    e = fuse_entry_param(ino, generation, attr, timeout, timeout)
    held.fuse_reply_create(req, ctypes.byref(e), fi)


def reply_statfs(req: int, s: os.statvfs_result) -> None:
    out = mfusepy.c_statvfs()
    for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail",
                 "f_namemax"):
        setattr(out, name, getattr(s, name))
    held.fuse_reply_statfs(req, ctypes.byref(out))


def reply_xattr(req: int, value: bytes, size: int) -> None:
    """getxattr and listxattr: the value's size when asked for 0 bytes, else the value if it fits."""
    if size == 0:
        held.fuse_reply_xattr(req, len(value))
    elif len(value) > size:
        held.fuse_reply_err(req, E.ERANGE)
    else:
        held.fuse_reply_buf(req, value, len(value))


def notify_inval_attr(session: int, ino: int) -> None:
    """Tell the kernel its cached attributes of `ino` are stale (pages and entries stay). This takes no kernel
    lock, so it is safe from inside a request's handler, before its reply."""
    held.fuse_lowlevel_notify_inval_inode(session, ino, -1, 0)


def notify_inval_entry(session: int, parent: int, name: str) -> None:
    """Tell the kernel to drop its entry for `name` in `parent` (what is open through it stays open). The kernel
    takes the directory's lock for it, so this is sent after a reply, never before one that a caller holding that
    lock waits for; through `lib`, which lets go of the GIL while the kernel waits for the lock."""
    raw = os.fsencode(name)
    lib.fuse_lowlevel_notify_inval_entry(session, parent, raw, len(raw))


def reply_attr(req: int, attr: c_stat, timeout: float = 0.0) -> None:
    held.fuse_reply_attr(req, ctypes.byref(attr), timeout)


def reply_readlink(req: int, target: str) -> None:
    held.fuse_reply_readlink(req, os.fsencode(target))


def reply_open(req: int, fi) -> None:
    held.fuse_reply_open(req, fi)


def reply_read(req: int, fd: int, size: int, off: int) -> None:
    """Answer a read with up to `size` bytes of `fd` at `off`: libfuse reads (or splices) them itself, without the
    GIL and without a copy through Python; a read error is the reply."""
    bufv = fuse_bufvec(1, 0, 0)
    bufv.buf[0] = fuse_buf(size, BUF_IS_FD | BUF_FD_SEEK, None, fd, off)
    lib.fuse_reply_data(req, ctypes.byref(bufv), 0)


def reply_write(req: int, count: int) -> None:
    held.fuse_reply_write(req, count)


def reply_buf(req: int, data: bytes) -> None:
    held.fuse_reply_buf(req, data, len(data))


def reply_dir(req: int, entries: list[tuple[str, int, int]], size: int, off: int) -> None:
    """Reply to readdir with `entries` (name, ino, mode) from index `off`, as many as fit in `size` bytes."""
    buf = ctypes.create_string_buffer(size)
    pos = 0
    for i, (name, ino, mode) in enumerate(entries[off:], start=off + 1):
        s = stat(mode, ino=ino)
        need = held.fuse_add_direntry(req, ctypes.byref(buf, pos), size - pos, os.fsencode(name), ctypes.byref(s), i)
        if need > size - pos:
            break
        pos += need
    held.fuse_reply_buf(req, buf, pos)


def reply_dir_plus(req: int, entries: list[tuple[str, int, int, c_stat]], size: int, off: int,
                   timeout: float) -> int:
    """Reply to readdirplus with `entries` (name, node id, generation, attributes), the directory's from index
    `off` on, as many as fit in `size` bytes; the number replied. The kernel takes each with a node id as a
    lookup."""
    buf = ctypes.create_string_buffer(size)
    pos = done = 0
    for i, (name, ino, generation, a) in enumerate(entries, start=off + 1):
        e = fuse_entry_param(ino, generation, a, timeout, timeout)
        need = held.fuse_add_direntry_plus(req, ctypes.byref(buf, pos), size - pos, os.fsencode(name),
                                          ctypes.byref(e), i)
        if need > size - pos:
            break
        pos += need
        done += 1
    held.fuse_reply_buf(req, buf, pos)
    return done


_worker = threading.local()
lib_python = ctypes.pythonapi
lib_python.PyGILState_Ensure.restype = ctypes.c_int


def _keep_thread_state() -> None:
    """Give a libfuse worker thread a Python thread state for good. ctypes makes one for each callback from a
    thread Python did not start and drops it on return, which doubled the cost of a request; libfuse keeps its
    idle workers (3.12 on), so what is kept here is one thread state per worker, until the daemon exits."""
    lib_python.PyGILState_Ensure()
    _worker.python = True


class Operations:
    """Subclass and define methods named after requests (lookup, getattr, readlink, ...), taking the
    request handle and the request's arguments as libfuse passes them; each replies (now or later).
    `session` is the libfuse session once mounted, for notifications to the kernel."""

    session: int = 0
    #: FUSE_CAP_* capabilities to ask the kernel for, where it offers them
    want: int = 0

    def forget(self, req: int, ino: int, nlookup: int) -> None:
        held.fuse_reply_none(req)

    def _callback(self, name: str):
        method = getattr(self, name)

        def call(req, *args):
            if not getattr(_worker, "python", False):
                _keep_thread_state()
            try:
                method(req, *args)
            except OSError as e:
                held.fuse_reply_err(req, e.errno or E.EIO)
            except Exception:
                log.exception("%s%r", name, args)
                held.fuse_reply_err(req, E.EIO)

        return PROTOTYPES[name](call)

    def _init(self, userdata: int, conn) -> None:
        conn.contents.want |= self.want & conn.contents.capable

    def table(self) -> fuse_lowlevel_ops:
        ops = fuse_lowlevel_ops()
        self._keep = []  # the callbacks must outlive the session
        if self.want:
            self._keep.append(PROTOTYPES["init"](self._init))
            ops.init = self._keep[-1]
        for name in SERVED:
            if not hasattr(self, name):
                continue
            cb = self._callback(name)
            self._keep.append(cb)
            setattr(ops, name, cb)
        return ops


def serve(ops: Operations, mountpoint: str, options: list[str], foreground: bool, max_threads: int) -> None:
    """Mount `ops` at `mountpoint` with FUSE `options` and serve it until it is unmounted (daemonized
    unless `foreground`); `max_threads` libfuse workers at most (1: the single-threaded loop)."""
    argv = [b"vfslab", b"-o", ",".join(options).encode()]
    args = fuse_args(len(argv), (c_char_p * len(argv))(*argv), 0)
    table = ops.table()
    se = lib.fuse_session_new(ctypes.byref(args), ctypes.byref(table), ctypes.sizeof(table), None)
    if not se:
        raise OSError(E.EINVAL, "fuse_session_new failed (bad options?)")
    ops.session = se
    try:
        if lib.fuse_set_signal_handlers(se) != 0:
            raise OSError(E.EIO, "cannot set signal handlers")
        if lib.fuse_session_mount(se, os.fsencode(mountpoint)) != 0:
            raise OSError(E.EIO, f"cannot mount {mountpoint}")
        try:
            lib.fuse_daemonize(int(foreground))
            if max_threads == 1:
                lib.fuse_session_loop(se)
            else:
                cfg = lib.fuse_loop_cfg_create()
                lib.fuse_loop_cfg_set_max_threads(cfg, max_threads)
                try:
                    lib.fuse_session_loop_mt_312(se, cfg)
                finally:
                    lib.fuse_loop_cfg_destroy(cfg)
        finally:
            lib.fuse_session_unmount(se)
            lib.fuse_remove_signal_handlers(se)
    finally:
        lib.fuse_session_destroy(se)
