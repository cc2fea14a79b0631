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
lib = mfusepy._libfuse
c_stat = mfusepy.c_stat
fuse_file_info = mfusepy.fuse_file_info
req_t, ino_t = c_void_p, c_uint64
ROOT = 1


class fuse_args(ctypes.Structure):
    _fields_ = [("argc", c_int), ("argv", POINTER(c_char_p)), ("allocated", c_int)]


class fuse_entry_param(ctypes.Structure):
    _fields_ = [("ino", ino_t), ("generation", c_uint64), ("attr", c_stat), ("attr_timeout", c_double),
                ("entry_timeout", c_double)]


class fuse_ctx(ctypes.Structure):
    _fields_ = [("uid", c_uint32), ("gid", c_uint32), ("pid", c_int), ("umask", c_uint32)]


FI = POINTER(fuse_file_info)
#: struct fuse_lowlevel_ops up to releasedir, in libfuse's order; libfuse zero-fills the rest (op_size)
PROTOTYPES = {
    "init": CFUNCTYPE(None, c_void_p, c_void_p),
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
}


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
lib.fuse_reply_err.argtypes = [req_t, c_int]
lib.fuse_reply_none.argtypes = [req_t]
lib.fuse_reply_entry.argtypes = [req_t, POINTER(fuse_entry_param)]
lib.fuse_reply_attr.argtypes = [req_t, POINTER(c_stat), c_double]
lib.fuse_reply_readlink.argtypes = [req_t, c_char_p]
lib.fuse_reply_open.argtypes = [req_t, FI]
lib.fuse_reply_write.argtypes = [req_t, c_size_t]
lib.fuse_reply_buf.argtypes = [req_t, c_void_p, c_size_t]
lib.fuse_add_direntry.restype = c_size_t
lib.fuse_add_direntry.argtypes = [req_t, c_void_p, c_size_t, c_char_p, POINTER(c_stat), c_int64]
lib.fuse_req_ctx.restype = POINTER(fuse_ctx)
lib.fuse_req_ctx.argtypes = [req_t]
INTERRUPT = CFUNCTYPE(None, req_t, c_void_p)
lib.fuse_req_interrupt_func.argtypes = [req_t, INTERRUPT, c_void_p]


def stat(mode: int, nlink: int = 1, size: int = 0, ino: int = 0, uid: int = 0, gid: int = 0) -> c_stat:
    s = c_stat()
    s.st_mode, s.st_nlink, s.st_size, s.st_ino, s.st_uid, s.st_gid = mode, nlink, size, ino, uid, gid
    return s


def caller(req: int) -> fuse_ctx:
    return lib.fuse_req_ctx(req).contents


def reply_err(req: int, errno: int) -> None:
    lib.fuse_reply_err(req, errno)


def reply_entry(req: int, ino: int, attr: c_stat, timeout: float = 0.0) -> None:
    e = fuse_entry_param(ino, 0, attr, timeout, timeout)
    lib.fuse_reply_entry(req, ctypes.byref(e))


def reply_attr(req: int, attr: c_stat, timeout: float = 0.0) -> None:
    lib.fuse_reply_attr(req, ctypes.byref(attr), timeout)


def reply_readlink(req: int, target: str) -> None:
    lib.fuse_reply_readlink(req, os.fsencode(target))


def reply_open(req: int, fi) -> None:
    lib.fuse_reply_open(req, fi)


def reply_write(req: int, count: int) -> None:
    lib.fuse_reply_write(req, count)


def reply_buf(req: int, data: bytes) -> None:
    lib.fuse_reply_buf(req, data, len(data))


def reply_dir(req: int, entries: list[tuple[str, int, int]], size: int, off: int) -> None:
    """Reply to readdir with `entries` (name, ino, mode) from index `off`, as many as fit in `size` bytes."""
    buf = ctypes.create_string_buffer(size)
    pos = 0
    for i, (name, ino, mode) in enumerate(entries[off:], start=off + 1):
        s = stat(mode, ino=ino)
        need = lib.fuse_add_direntry(req, ctypes.byref(buf, pos), size - pos, os.fsencode(name), ctypes.byref(s), i)
        if need > size - pos:
            break
        pos += need
    lib.fuse_reply_buf(req, buf, pos)


class Operations:
    """Subclass and define methods named after requests (lookup, getattr, readlink, ...), taking the
    request handle and the request's arguments as libfuse passes them; each replies (now or later)."""

    def forget(self, req: int, ino: int, nlookup: int) -> None:
        lib.fuse_reply_none(req)

    def _callback(self, name: str):
        method = getattr(self, name)

        def call(req, *args):
            try:
                method(req, *args)
            except OSError as e:
                lib.fuse_reply_err(req, e.errno or E.EIO)
            except Exception:
                log.exception("%s%r", name, args)
                lib.fuse_reply_err(req, E.EIO)

        return PROTOTYPES[name](call)

    def table(self) -> fuse_lowlevel_ops:
        ops = fuse_lowlevel_ops()
        self._keep = []  # the callbacks must outlive the session
        for name in PROTOTYPES:
            if name in ("init", "destroy") or not hasattr(self, name):
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
