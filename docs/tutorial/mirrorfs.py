"""mirrorfs: the tutorial's file system (docs/subjects.md). Not part of vfslab: a small FUSE file system of the kind
you would bring, to show how vfslab checks one it has never seen.

`python mirrorfs.py DIR MNT` serves DIR at MNT (in the foreground), every call passed through to DIR. It runs as
root for everyone (allow_other): the kernel checks permissions (default_permissions), and what a caller creates
is given to the caller. Every path is taken relative to DIR without following a symlink at its last name.
"""

from __future__ import annotations

import errno
import os
import sys

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
import mfusepy


class Mirror(mfusepy.Operations):
    use_ns = True

    def __init__(self, root: str) -> None:
        self.root = root

    def _p(self, path: str) -> str:
        return self.root + path

    def _give(self, path: str) -> None:
        """What a caller creates is the caller's."""
        uid, gid, _ = mfusepy.fuse_get_context()
        os.chown(self._p(path), uid, gid, follow_symlinks=False)

    def getattr(self, path: str, fh: int | None = None) -> dict:
        s = os.fstat(fh) if fh is not None else os.lstat(self._p(path))
        keys = ("st_ino", "st_mode", "st_nlink", "st_uid", "st_gid", "st_size")
        return {k: getattr(s, k) for k in keys} | {"st_atime": s.st_atime_ns, "st_mtime": s.st_mtime_ns,
                                                   "st_ctime": s.st_ctime_ns}

    def readdir(self, path: str, fh: int) -> list[tuple[str, dict, int]]:
        # with use_ino, an entry's inode number is what it is given here: a bare name would be listed with
        # inode 0, which readdir(3) skips
        names = [".", "..", *os.listdir(self._p(path))]
        return [(n, self.getattr(os.path.normpath(f"{path}/{n}")), 0) for n in names]

    def readlink(self, path: str) -> str:
        return os.readlink(self._p(path))

    def open(self, path: str, flags: int) -> int:
        return os.open(self._p(path), flags | os.O_NOFOLLOW)

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        fd = os.open(self._p(path), flags | os.O_CREAT | os.O_NOFOLLOW, mode)
        self._give(path)
        return fd

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._p(path), length)

    def release(self, path: str, fh: int) -> None:
        os.close(fh)

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(self._p(path), mode)
        self._give(path)

    def symlink(self, target: str, source: str) -> None:
        # mfusepy passes (link name, target)
        os.symlink(source, self._p(target))
        self._give(target)

    def link(self, target: str, source: str) -> None:
        os.link(self._p(source), self._p(target), follow_symlinks=False)

    def unlink(self, path: str) -> None:
        os.unlink(self._p(path))

    def rmdir(self, path: str) -> None:
        os.rmdir(self._p(path))

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        if flags:
            raise mfusepy.FuseOSError(errno.EINVAL)  # renameat2's flags are not passed through here
        os.rename(self._p(old), self._p(new))

    def chmod(self, path: str, mode: int, fh: int | None = None) -> None:
        os.chmod(self._p(path), mode, follow_symlinks=False)

    def chown(self, path: str, uid: int, gid: int, fh: int | None = None) -> None:
        os.chown(self._p(path), uid, gid, follow_symlinks=False)

    def utimens(self, path: str, times: tuple[int, int] | None = None, fh: int | None = None) -> None:
        os.utime(self._p(path), ns=times, follow_symlinks=False) if times else os.utime(self._p(path))

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        return os.getxattr(self._p(path), name, follow_symlinks=False)

    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> None:
        os.setxattr(self._p(path), name, value, options, follow_symlinks=False)

    def listxattr(self, path: str) -> list[str]:
        return os.listxattr(self._p(path), follow_symlinks=False)

    def removexattr(self, path: str, name: str) -> None:
        os.removexattr(self._p(path), name, follow_symlinks=False)


if __name__ == "__main__":
    root, mnt = sys.argv[1:3]
    mfusepy.FUSE(Mirror(os.path.abspath(root)), mnt, foreground=True, allow_other=True, default_permissions=True,
                 use_ino=True, attr_timeout=0.0, entry_timeout=0.0, negative_timeout=0.0)
