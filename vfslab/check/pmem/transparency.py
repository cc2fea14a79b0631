"""Transparency: the same program through the router, with a pool mounted at P, and on the kernel, with a plain
directory at P holding the same tree, must see the same results (the seed: "a process should not behave
differently whether some files are provided by pmemfile, or the kernel at the same path").

Each side starts from a fresh copy of the same trees and runs the whole program; results are compared call by
call: values (fd numbers included: both follow the kernel's lowest-free rule), errnos, and stat results as
(type, permission bits, size for non-directories, nlink). Where the design differs on purpose, the difference is
a named deviation and the program stops there (the two sides no longer hold the same tree):

- `exdev`: a rename or link across the mount point is EXDEV through the router (FACTS.md pmemfile 6);
- `empty-path`: an empty path is ENOTDIR through the router, upstream's choice (ENOENT in the kernel);
- `mount-point`: removing or renaming the pool's root, which is a mount point, is EBUSY (the kernel's answer for
  a mount point); at P the kernel side has a plain directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat as st
from dataclasses import dataclass
from pathlib import Path

from vfslab.impl.pmem.fs import PmemFS
from vfslab.impl.pmem.router import Router

#: a call: (name, *args). Paths are relative to the cwd, or absolute with "@" standing for the scratch root.
Call = tuple


@dataclass
class Verdict:
    steps: int
    deviation: str | None = None
    problem: str | None = None


class Kernel:
    """The same calls on the kernel alone, with the same virtual cwd the router keeps."""

    def __init__(self, cwd: str) -> None:
        self.cwd = cwd

    def _abs(self, path: str) -> str:
        if path == "":
            raise OSError(errno.ENOENT, "empty path")
        return path if path.startswith("/") else f"{self.cwd}/{path}"

    def open(self, path, flags, mode=0o777):
        return os.open(self._abs(path), flags, mode)

    def chdir(self, path):
        target = self._abs(path)
        if not st.S_ISDIR(os.stat(target).st_mode):
            raise OSError(errno.ENOTDIR, "not a directory")
        os.stat(target + "/.")  # search permission, as chdir needs
        self.cwd = os.path.realpath(target)

    def getcwd(self):
        return self.cwd

    def stat(self, path):
        return os.stat(self._abs(path))

    def lstat(self, path):
        return os.lstat(self._abs(path))

    def readlink(self, path):
        return os.readlink(self._abs(path))

    def mkdir(self, path, mode=0o777):
        return os.mkdir(self._abs(path), mode)

    def rmdir(self, path):
        return os.rmdir(self._abs(path))

    def unlink(self, path):
        return os.unlink(self._abs(path))

    def symlink(self, target, path):
        return os.symlink(target, self._abs(path))

    def link(self, old, new):
        return os.link(self._abs(old), self._abs(new), follow_symlinks=False)

    def rename(self, old, new):
        return os.rename(self._abs(old), self._abs(new))

    read, write, lseek, fstat, close, dup, dup2 = (staticmethod(f) for f in (os.read, os.write, os.lseek, os.fstat,
                                                                              os.close, os.dup, os.dup2))


def _view(result: object) -> object:
    if isinstance(result, os.stat_result) or hasattr(result, "st_mode"):
        kind = st.S_IFMT(result.st_mode)
        return ("stat", kind, st.S_IMODE(result.st_mode), 0 if kind == st.S_IFDIR else result.st_size,
                result.st_nlink)
    return result


class Side:
    """One side's run: its calls, with `#i` standing for the fd its i-th open (or dup) returned."""

    def __init__(self, impl, root: str) -> None:
        self.impl, self.root = impl, root
        self.fds: list[int] = []  # returned by opens and dups, in order
        self.open: set[int] = set()

    def run(self, call: Call) -> object:
        name, *args = call
        try:
            args = [self._arg(a) for a in args]
            if name == "lseek" and st.S_ISDIR(self.impl.fstat(args[0]).st_mode):
                return ("directory offset",)  # each file system numbers directory positions its own way
            result = getattr(self.impl, name)(*args)
        except OSError as e:
            return ("errno", errno.errorcode.get(e.errno, e.errno))
        except IndexError:  # `#i` names an open that failed on this side
            return ("errno", "EBADF")
        if name in ("open", "dup", "dup2"):
            self.fds.append(result)
            self.open.add(result)
        elif name == "close":
            self.open.discard(args[0])
        return _view(result)

    def _arg(self, a: object) -> object:
        if isinstance(a, str) and a.startswith("#"):
            return self.fds[int(a[1:])]
        return a.replace("@", self.root) if isinstance(a, str) else a

    def close(self) -> None:
        for fd in self.open:
            with contextlib.suppress(OSError):
                self.impl.close(fd)


def build(root: Path, pool_tree: Path | None, tree: dict[str, str]) -> None:
    """The kernel side of the scratch root: `k/` (kernel only) and `P/`; `tree` (path -> "dir", "file:DATA" or
    "link:TARGET") goes into P (a plain directory), or, with `pool_tree`, into a pool file made there."""
    (root / "k").mkdir(parents=True)
    (root / "k" / "f").write_text("kernel file\n")
    os.symlink("../P", root / "k" / "toP")
    (root / "P").mkdir()
    if pool_tree is None:
        for path, what in sorted(tree.items()):
            p = root / "P" / path
            if what == "dir":
                p.mkdir()
            elif what.startswith("file:"):
                p.write_text(what[5:])
            else:
                os.symlink(what[5:].replace("@", str(root)), p)
        return
    PmemFS.mkfs(str(pool_tree), 1 << 20)
    fs = PmemFS.open(str(pool_tree))
    try:
        for path, what in sorted(tree.items()):
            if what == "dir":
                fs.mkdirat(fs.pool.root, "/" + path, 0o755)
            elif what.startswith("file:"):
                f = fs.openat(fs.pool.root, "/" + path, os.O_CREAT | os.O_WRONLY, 0o644)
                fs.write(f, what[5:].encode())
                fs.close_file(f)
            else:
                fs.symlinkat(what[5:].replace("@", str(root)), fs.pool.root, "/" + path)
    finally:
        fs.close()


def run(program: list[Call], tree: dict[str, str], scratch: Path) -> Verdict:
    # roots of one length: an absolute symlink target names its root, and its size must not tell them apart
    a_root, b_root = scratch / "side-a", scratch / "side-b"
    for r in (a_root, b_root):
        shutil.rmtree(r, ignore_errors=True)
    pool_file = scratch / "tree.pool"
    build(a_root, pool_file, tree)
    build(b_root, None, tree)
    router = Router()
    before = len(os.listdir("/proc/self/fd"))
    fs = PmemFS.open(str(pool_file))
    pool_fds = len(os.listdir("/proc/self/fd")) - before
    router.mount(str(a_root / "P"), fs)
    router.chdir(str(a_root))
    a_side = Side(router, str(a_root))
    try:
        a = [a_side.run(call) for call in program]
    finally:
        a_side.close()
        router.close_all()
        fs.close()
    b_side = Side(Kernel(str(b_root.resolve())), str(b_root.resolve()))
    # the pool's own fds (its file, and mmap's copy) were open on the router's side: hold as many here
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(pool_fds)]
    try:
        b = [b_side.run(call) for call in program]
    finally:
        b_side.close()
        for fd in held:
            os.close(fd)
    for i, (call, ra, rb) in enumerate(zip(program, a, b, strict=True)):
        ra, rb = _relative(ra, str(a_root)), _relative(rb, str(b_root.resolve()))
        if ra == rb:
            continue
        if ra == ("errno", "EXDEV") and call[0] in ("rename", "link"):
            return Verdict(i + 1, deviation="exdev")
        if ra == ("errno", "ENOTDIR") and rb == ("errno", "ENOENT") and "" in call[1:]:
            return Verdict(i + 1, deviation="empty-path")
        if ra == ("errno", "EBUSY") and call[0] in ("rmdir", "rename"):
            return Verdict(i + 1, deviation="mount-point")
        return Verdict(i + 1, problem=f"step {i + 1} {call}: through the router {ra!r}, on the kernel {rb!r}")
    return Verdict(len(program))


def _relative(result: object, root: str) -> object:
    return result.replace(root, "@") if isinstance(result, str) else result
