"""mfusepy, loaded on libfuse3, with what our high-level daemons need that it leaves out."""

from __future__ import annotations

import ctypes
import errno as E
import logging
import os
import re
from collections.abc import Callable
from functools import wraps

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # mfusepy loads libfuse2 first otherwise
import mfusepy

__all__ = ["FUSE", "HIDDEN", "libfuse_version", "mfusepy", "serialised"]

#: the name libfuse's high-level API (hard_remove off) renames an open file to when its last name is unlinked,
#: to unlink it at the last close
HIDDEN = re.compile(r"/\.fuse_hidden[0-9a-f]{16}$")


class FUSE(mfusepy.FUSE):
    """mfusepy drops rename's flags and the file handle of chmod, chown, truncate and utimens; pass them on."""

    def _path(self, path: bytes | None) -> str | None:
        return None if path is None else path.decode(self.encoding, self.errors)

    @staticmethod
    def _fh(fip) -> int | None:
        return fip.contents.fh if fip else None

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        return self.operations.rename(self._path(old), self._path(new), flags)

    def chmod_fuse_3(self, path: bytes | None, mode: int, fip) -> int:
        return self.operations.chmod(self._path(path), mode, self._fh(fip))

    def chown_fuse_3(self, path: bytes | None, uid: int, gid: int, fip) -> int:
        # -1 (leave unchanged) arrives as the unsigned maximum
        uid, gid = (-1 if v == 0xFFFFFFFF else v for v in (uid, gid))
        return self.operations.chown(self._path(path), uid, gid, self._fh(fip))

    def truncate_fuse_3(self, path: bytes | None, length: int, fip) -> int:
        return self.operations.truncate(self._path(path), length, self._fh(fip))

    def utimens_fuse_3(self, path: bytes | None, buf, fip) -> int:
        times = None
        if buf:
            times = tuple(mfusepy.time_of_timespec(t, use_ns=True) for t in (buf.contents.actime, buf.contents.modtime))
        return self.operations.utimens(self._path(path), times, self._fh(fip))


def libfuse_version() -> str:
    get = mfusepy._libfuse.fuse_pkgversion
    get.restype = ctypes.c_char_p
    return get().decode()


def serialised(lock_of: Callable, log: logging.Logger) -> Callable[[Callable], Callable]:
    """A decorator for callbacks: each runs under `lock_of(operations)`; an unexpected error becomes EIO (and one
    log line) instead of the EINVAL mfusepy would answer."""

    def decorate(method: Callable) -> Callable:
        @wraps(method)
        def run(self, *args):
            try:
                with lock_of(self):
                    return method(self, *args)
            except OSError:
                raise
            except Exception as e:
                log.error("%s%r: %s: %s", method.__name__, args[:2], type(e).__name__, e)
                raise mfusepy.FuseOSError(E.EIO) from e

        return run

    return decorate
