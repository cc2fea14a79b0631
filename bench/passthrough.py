"""A plain mfusepy passthrough (`python bench/passthrough.py ROOT MNT`): what pmem-fuse is timed against, on the
same binding, libfuse and options, so that the difference is the pool's own cost."""

from __future__ import annotations

import os
import sys

from vfslab.impl.mfuse import FUSE, mfusepy


class Passthrough(mfusepy.Operations):
    use_ns = True

    def __init__(self, root: str) -> None:
        self.root = root

    def init_with_config(self, conn, config) -> None:
        if config is not None:  # the caching pmem-fuse asks for, so that both pay for the same requests
            config.use_ino = 1
            config.entry_timeout = 1.0
            config.attr_timeout = 0.0
            config.negative_timeout = 0.0

    def _p(self, path: str) -> str:
        return self.root + path

    def getattr(self, path: str, fh: int | None = None) -> dict:
        s = os.fstat(fh) if fh is not None else os.lstat(self._p(path))
        return {k: getattr(s, k) for k in ("st_ino", "st_mode", "st_nlink", "st_uid", "st_gid", "st_size")} | {
            "st_atime": s.st_atime_ns, "st_mtime": s.st_mtime_ns, "st_ctime": s.st_ctime_ns}

    def readdir(self, path: str, fh: int) -> list[tuple[str, dict, int]]:
        # with use_ino, a bare name would be listed with inode 0, which readdir(3) skips
        return [(n, self.getattr(os.path.normpath(f"{path}/{n}")), 0) for n in (".", "..", *os.listdir(self._p(path)))]

    def open(self, path: str, flags: int) -> int:
        return os.open(self._p(path), flags)

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        return os.open(self._p(path), flags | os.O_CREAT, mode)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    def release(self, path: str, fh: int) -> None:
        os.close(fh)

    def unlink(self, path: str) -> None:
        os.unlink(self._p(path))

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(self._p(path), mode)

    def rmdir(self, path: str) -> None:
        os.rmdir(self._p(path))


if __name__ == "__main__":
    root, mnt = sys.argv[1:3]
    FUSE(Passthrough(os.path.abspath(root)), mnt, foreground=True, default_permissions=True, max_threads=10)
