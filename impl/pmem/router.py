"""pmemfile's syscall routing (seed 000; docs/facts.md, pmemfile 2-8), as a library: os-like calls that go to the
kernel or to a pool mounted at a kernel directory, so that a program cannot tell the two apart.

Resolution walks a path one component at a time. In the kernel each component is lstat'ed; a directory whose
(st_dev, st_ino) is a mount point's enters that pool, and the rest of the path is resolved inside it with the
pool's own lstat and readlink. `..` at a pool's root leaves it (for the mount point's parent). Symlinks are
followed here, 40 at most (ELOOP); an absolute target restarts at the kernel's root, even for a link in a pool.
A pool file's fd is a real kernel fd (a placeholder memfd), so fd numbers follow the kernel's
lowest-free rule; dup and dup2 share one open file. The cwd is virtual: chdir into a pool changes nothing in
the kernel, and getcwd gives the mount point plus the pool path. Paths that are not under a pool, and fds that
are not a pool's, go to the kernel unchanged.
"""

from __future__ import annotations

import errno as E
import os
import stat as st
from dataclasses import dataclass, field

from vfslab.impl.pmem.fs import MAX_SYMLINKS, NAME_MAX, PATH_MAX, ROOT, Cred, File, PmemFS, err


@dataclass(eq=False)
class Pool:
    fs: PmemFS
    mountpoint: str  # absolute, resolved


@dataclass(frozen=True)
class Place:
    """A resolved directory: a kernel path, or a directory inode of a pool (with its pool path)."""

    kernel: str = ""
    pool: Pool | None = None
    ino: int = 0

    def join(self, name: str) -> str:
        return os.path.join(self.kernel, name)


@dataclass(frozen=True)
class Entry:
    """One name looked up: its file type (0: there is none), a symlink's target, a directory's own place, and in a
    pool its inode."""

    kind: int
    target: str = ""
    inside: Place | None = None
    ino: int = 0


@dataclass
class Found:
    """What a path resolved to: its directory, its last name (`/` when the path was only slashes), whether that
    exists, whether the path ended in `/`, and the pool whose mount point the name is (for a call that works on
    the name itself: the others are given the pool's root)."""

    where: Place
    name: str
    exists: bool
    slash: bool = False
    mount: Pool | None = None
    #: a last name over NAME_MAX: the call refuses it when it looks the name up (after the checks before that)
    too_long: bool = False
    #: the pool inode an existing last name was found to be (0: not known), its search permission checked
    ino: int = 0

    @property
    def dots(self) -> bool:
        return self.name in (".", "..", "/")


@dataclass(eq=False)
class Opened:
    """A pool file open through the router (dup'ed fds share it, offset included)."""

    pool: Pool
    file: File
    refs: int = 1


@dataclass
class Router:
    cred: Cred = ROOT
    #: upstream's answer to an empty path (POSIX says ENOENT)
    empty_path: int = E.ENOTDIR
    pools: dict[tuple[int, int], Pool] = field(default_factory=dict)
    fds: dict[int, Opened] = field(default_factory=dict)
    cwd: Place = field(default_factory=lambda: Place(os.getcwd()))

    # ---- mounting ------------------------------------------------------------------------------------

    def mount(self, mountpoint: str, fs: PmemFS) -> None:
        real = os.path.realpath(mountpoint)
        s = os.stat(real)
        if not st.S_ISDIR(s.st_mode):
            raise err(E.ENOTDIR, mountpoint)
        self.pools[(s.st_dev, s.st_ino)] = Pool(fs, real)

    def _pool_at(self, path: str) -> Pool | None:
        try:
            s = os.stat(path)
        except OSError:
            return None
        return self.pools.get((s.st_dev, s.st_ino))

    # ---- resolution ----------------------------------------------------------------------------------

    def resolve(self, path: str, follow: bool, start: Place | None = None, at_name: bool = False) -> Found:
        """Walk `path`. Symlinks before the last name are followed; the last one if `follow`, or if a trailing `/`
        asks for a directory, unless the call works `at_name` (it makes or removes the name: mkdir, rmdir,
        unlink, rename, symlink, link's new name), which never follows it and judges the `/` itself."""
        if path == "":
            raise err(self.empty_path)
        if len(path.encode(errors="surrogateescape")) >= PATH_MAX:  # PATH_MAX counts the terminating NUL
            raise err(E.ENAMETOOLONG)
        links = 0
        here = Place("/") if path.startswith("/") else (start or self.cwd)
        todo = [p for p in path.split("/") if p]
        trailing = path.endswith("/")
        if not todo:
            return Found(here, "/", True)
        while todo:
            part = todo.pop(0)
            last = not todo
            if len(part.encode(errors="surrogateescape")) > NAME_MAX:
                if last and at_name:
                    return Found(here, part, False, trailing, too_long=True)
                raise err(E.ENAMETOOLONG)
            if part == ".":
                if last:
                    return Found(here, ".", True)
                continue
            if part == "..":
                if last:  # the call sees the `..` itself (rmdir of `x/..` is ENOTEMPTY, not EINVAL)
                    if not at_name and here.pool is not None and here.ino == here.pool.fs.pool.root:
                        return Found(Place(here.pool.mountpoint), "..", True)
                    return Found(here, "..", True)
                here = self._parent(here)
                continue
            entry = self._look(here, part)
            if not entry.kind:
                if last:
                    return Found(here, part, False, trailing)
                raise err(E.ENOENT)
            if entry.kind == st.S_IFLNK and (not last or ((follow or trailing) and not at_name)):
                links += 1
                if links > MAX_SYMLINKS:
                    raise err(E.ELOOP)
                todo = [p for p in entry.target.split("/") if p] + todo
                if entry.target.startswith("/"):
                    here = Place("/")
                if not todo:  # a link to "/" or "."
                    return Found(here, ".", True)
                continue
            if last:
                if trailing and entry.kind != st.S_IFDIR and not at_name:
                    raise err(E.ENOTDIR)
                mount = entry.inside.pool if here.pool is None and entry.inside is not None else None
                if mount is not None and not at_name:
                    return Found(entry.inside, ".", True)  # a mount point: the pool's root
                return Found(here, part, True, trailing, mount, ino=entry.ino)
            if entry.inside is None:
                raise err(E.ENOTDIR)
            here = entry.inside
        raise AssertionError("unreachable")

    def _look(self, here: Place, part: str) -> Entry:
        """`part` in `here`, with one lstat (or one pool lookup): a kernel directory whose (st_dev, st_ino) is a
        mount point's is entered as its pool's root."""
        if here.pool is None:
            p = here.join(part)
            try:
                s = os.lstat(p)
            except FileNotFoundError:
                return Entry(0)
            kind = st.S_IFMT(s.st_mode)
            if kind == st.S_IFLNK:
                return Entry(kind, os.readlink(p))
            if kind != st.S_IFDIR:
                return Entry(kind)
            pool = self.pools.get((s.st_dev, s.st_ino))
            return Entry(kind, inside=Place(pool=pool, ino=pool.fs.pool.root) if pool else Place(p))
        fs = here.pool.fs
        _, _, ino = fs.resolve(here.ino, part, self.cred, follow=False)
        if not ino:
            return Entry(0)
        kind = st.S_IFMT(fs.inode(ino).mode)
        if kind == st.S_IFLNK:
            return Entry(kind, fs.readlinkat(here.ino, part, self.cred))
        return Entry(kind, inside=Place(pool=here.pool, ino=ino) if kind == st.S_IFDIR else None, ino=ino)

    def _parent(self, here: Place) -> Place:
        if here.pool is None:
            return Place(os.path.dirname(here.kernel) or "/")
        fs = here.pool.fs
        if here.ino == fs.pool.root:
            return Place(os.path.dirname(here.pool.mountpoint) or "/")
        return Place(pool=here.pool, ino=fs._parent(here.ino))

    def _place_of(self, dirfd: int | None) -> Place | None:
        if dirfd is None:
            return None
        if dirfd in self.fds:
            o = self.fds[dirfd]
            if not st.S_ISDIR(o.pool.fs.inode(o.file.ino).mode):
                raise err(E.ENOTDIR)
            return Place(pool=o.pool, ino=o.file.ino)
        return Place(os.readlink(f"/proc/self/fd/{dirfd}"))

    # ---- file descriptors ----------------------------------------------------------------------------

    def _placeholder(self, opened: Opened, at_least: int = 0) -> int:
        fd = os.memfd_create("pmemfile", os.MFD_CLOEXEC)  # needs no file system: a chroot has no /dev/null
        if at_least and fd != at_least:
            os.dup2(fd, at_least, inheritable=False)
            os.close(fd)
            fd = at_least
        self.fds[fd] = opened
        return fd

    def open(self, path: str, flags: int, mode: int = 0o777, dir_fd: int | None = None) -> int:
        # docs/facts.md, pmemfile 5 lists O_CREAT among the calls that do not follow the last name; a symlink there
        # would then be created over or refused, which no program expects: as the kernel, only O_CREAT|O_EXCL
        # and O_NOFOLLOW stop at it
        exclusive = flags & os.O_CREAT and flags & os.O_EXCL
        start = self._place_of(dir_fd)
        if flags & os.O_CREAT and _slash(path):  # as Linux: the parents' errors first, then EISDIR
            self.resolve(path, follow=False, start=start, at_name=True)
            raise err(E.EISDIR)
        found = self.resolve(path, follow=not (flags & os.O_NOFOLLOW or exclusive), start=start)
        where = found.where
        if where.pool is None:
            return os.open(where.join(found.name), flags, mode)
        file = where.pool.fs.openat(where.ino, found.name, flags, mode & ~_umask(), self.cred)
        return self._placeholder(Opened(where.pool, file))

    def close(self, fd: int) -> None:
        opened = self.fds.pop(fd, None)
        os.close(fd)
        if opened is not None:
            opened.refs -= 1
            if not opened.refs:
                opened.pool.fs.close_file(opened.file)

    def dup(self, fd: int) -> int:
        if fd not in self.fds:
            return os.dup(fd)
        self.fds[fd].refs += 1
        return self._placeholder(self.fds[fd])

    def dup2(self, fd: int, fd2: int) -> int:
        if fd2 < 0:
            raise err(E.EBADF)
        os.fstat(fd)  # a closed fd is EBADF before fd2 is touched
        if fd == fd2:
            return fd2
        if fd2 in self.fds:
            self.close(fd2)
        if fd not in self.fds:
            return os.dup2(fd, fd2)
        self.fds[fd].refs += 1
        return self._placeholder(self.fds[fd], fd2)

    def read(self, fd: int, n: int) -> bytes:
        if fd not in self.fds:
            return os.read(fd, n)
        o = self.fds[fd]
        return o.pool.fs.read(o.file, n)

    def write(self, fd: int, data: bytes) -> int:
        if fd not in self.fds:
            return os.write(fd, data)
        o = self.fds[fd]
        return o.pool.fs.write(o.file, data)

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        if fd not in self.fds:
            return os.lseek(fd, offset, whence)
        o = self.fds[fd]
        return o.pool.fs.lseek(o.file, offset, whence)

    def fstat(self, fd: int):
        if fd not in self.fds:
            return os.fstat(fd)
        o = self.fds[fd]
        return o.pool.fs.stat(o.file.ino)

    # ---- paths ---------------------------------------------------------------------------------------

    def stat(self, path: str, follow: bool = True):
        found = self.resolve(path, follow)
        where = found.where
        if where.pool is None:  # symlinks are resolved already: what is left is the last name itself
            return os.lstat(where.join(found.name))
        if not found.exists:
            raise err(E.ENOENT)
        # the walk found the last name's inode, unless that name is `.`, `..` or a mount point
        return where.pool.fs.stat(found.ino or where.pool.fs.lookup(where.ino, found.name, self.cred, follow=False))

    def lstat(self, path: str):
        return self.stat(path, follow=False)

    def readlink(self, path: str) -> str:
        found = self.resolve(path, follow=False)
        if found.where.pool is None:
            return os.readlink(found.where.join(found.name))
        return found.where.pool.fs.readlinkat(found.where.ino, found.name, self.cred)

    def readdir(self, path: str) -> list[str]:
        """The names in a directory (getdents without `.` and `..`), in no particular order."""
        found = self.resolve(path, follow=True)
        where = found.where
        if where.pool is None:
            return os.listdir(where.join(found.name))
        ino = found.ino or where.pool.fs.lookup(where.ino, found.name, self.cred)
        return [name for name, _, _ in where.pool.fs.getdents(ino)[2:]]

    # calls that make or remove a name answer as the kernel for `.`, `..`, `/` and a mount point, and judge a
    # trailing `/` themselves

    def _kind(self, found: Found) -> int:
        """The file type of a found name (0: there is none)."""
        return self._look(found.where, found.name).kind if found.exists else 0

    def _new_name(self, path: str) -> Found:
        found = self.resolve(path, follow=False, at_name=True)
        if found.dots or found.mount or found.exists:
            raise err(E.EEXIST)
        return _looked_up(found)

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        found = self._new_name(path)  # a new directory may be named `d/`
        if found.where.pool is None:
            return os.mkdir(found.where.join(found.name), mode)
        found.where.pool.fs.mkdirat(found.where.ino, found.name, mode & ~_umask(), self.cred)

    def rmdir(self, path: str) -> None:
        found = self.resolve(path, follow=False, at_name=True)
        if found.dots:
            raise err({".": E.EINVAL, "..": E.ENOTEMPTY, "/": E.EBUSY}[found.name])
        if _looked_up(found).mount:
            raise err(E.EBUSY)
        if found.where.pool is None:
            return os.rmdir(found.where.join(found.name))
        found.where.pool.fs.unlinkat(found.where.ino, found.name, rmdir=True, cred=self.cred)

    def unlink(self, path: str) -> None:
        found = self.resolve(path, follow=False, at_name=True)
        if found.dots or found.mount:
            raise err(E.EISDIR)
        if _looked_up(found).slash:
            kind = self._kind(found)
            raise err(E.ENOENT if not kind else E.EISDIR if kind == st.S_IFDIR else E.ENOTDIR)
        if found.where.pool is None:
            return os.unlink(found.where.join(found.name))
        found.where.pool.fs.unlinkat(found.where.ino, found.name, cred=self.cred)

    def symlink(self, target: str, path: str) -> None:
        found = self._new_name(path)
        if found.slash:
            raise err(E.ENOENT)
        if found.where.pool is None:
            return os.symlink(target, found.where.join(found.name))
        found.where.pool.fs.symlinkat(target, found.where.ino, found.name, self.cred)

    def link(self, old: str, new: str) -> None:
        """As the kernel: the old name must exist and the new one not, before the file systems are compared."""
        a = self.resolve(old, follow=False)
        if not a.exists:
            raise err(E.ENOENT)
        b = self._new_name(new)
        if b.slash:
            raise err(E.ENOENT)
        if a.where.pool is not b.where.pool:
            raise err(E.EXDEV)
        if a.where.pool is None:
            return os.link(a.where.join(a.name), b.where.join(b.name), follow_symlinks=False)
        a.where.pool.fs.linkat(a.where.ino, a.name, b.where.ino, b.name, self.cred)

    def rename(self, old: str, new: str) -> None:
        """As the kernel: the parents' file systems are compared before either name is looked up; `.`, `..` and
        `/` are refused next; then the old name and the new one are looked up; a `/` after either asks the old one
        to be a directory; a mount point is refused after the checks of the names' types."""
        a = self.resolve(old, follow=False, at_name=True)
        b = self.resolve(new, follow=False, at_name=True)
        if a.where.pool is not b.where.pool:
            raise err(E.EXDEV)
        if a.dots or b.dots:
            raise err(E.EBUSY)
        if not _looked_up(a).exists:
            raise err(E.ENOENT)
        _looked_up(b)
        if a.mount or b.mount:
            if (a.slash or b.slash) and self._kind(a) != st.S_IFDIR:  # as Linux: before the types and EBUSY
                raise err(E.ENOTDIR)
            if a.where == b.where and a.name == b.name:
                return
            ka, kb = self._kind(a), self._kind(b)
            if kb and (ka == st.S_IFDIR) != (kb == st.S_IFDIR):
                raise err(E.ENOTDIR if ka == st.S_IFDIR else E.EISDIR)
            raise err(E.EBUSY)
        if a.where.pool is None:
            return os.rename(a.where.join(a.name) + "/" * a.slash, b.where.join(b.name) + "/" * b.slash)
        a.where.pool.fs.renameat2(a.where.ino, a.name, b.where.ino, b.name, 0, self.cred,
                                  must_be_dir=a.slash or b.slash)

    def chdir(self, path: str) -> None:
        found = self.resolve(path, follow=True)
        where = found.where
        if where.pool is None:
            target = os.path.normpath(where.join(found.name))
            if not st.S_ISDIR(os.stat(target).st_mode):
                raise err(E.ENOTDIR)
            pool = self._pool_at(target)
            self.cwd = Place(pool=pool, ino=pool.fs.pool.root) if pool else Place(target)
            return
        ino = where.pool.fs.lookup(where.ino, found.name, self.cred)
        if not st.S_ISDIR(where.pool.fs.inode(ino).mode):
            raise err(E.ENOTDIR)
        where.pool.fs.access(ino, ".", os.X_OK, self.cred)
        self.cwd = Place(pool=where.pool, ino=ino)

    def getcwd(self) -> str:
        if self.cwd.pool is None:
            return self.cwd.kernel
        inner = self.cwd.pool.fs.path_of(self.cwd.ino)
        return self.cwd.pool.mountpoint + ("" if inner == "/" else inner)

    def close_all(self) -> None:
        for fd in list(self.fds):
            self.close(fd)


def _looked_up(found: Found) -> Found:
    """`found`, once the call has looked its last name up: ENAMETOOLONG for a name over NAME_MAX."""
    if found.too_long:
        raise err(E.ENAMETOOLONG)
    return found


def _slash(path: str) -> str:
    """The trailing `/` a path had, if any."""
    return "/" if len(path) > 1 and path.endswith("/") else ""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
