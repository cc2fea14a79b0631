"""pmemfile's syscall routing as a model (seed 000; docs/facts.md, pmemfile 1-8).

One kernel file system, pools mounted on some of its directories, a cwd and one table of fds. A path is walked
here, one component at a time and across file systems, as the router (and the kernel) walk it; what the call
then does to the name it reached is that file system's business, and the union model held to a plain POSIX
profile says it (`posix` for the kernel's tmpfs, `posix-no-xattr` for a pool), given the name's path from its
file system's root with no symlink left to follow. An outcome cites `pmem.*` rules for the routing and
`union.*` rules for the file system.

A place is a file system (`""` for the kernel, else the kernel path of its mount point) and a path from its root.
The callers are root: permissions inside a file system are the union model's business, checked elsewhere.
"""

from __future__ import annotations

import errno as E
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import wraps

from vfslab.model.outcome import Err, Fires, ModelError, Outcome
from vfslab.model.pmem.profiles import Profile
from vfslab.model.pmem.rules import LINK_LIMIT, NAME_LIMIT, PATH_LIMIT
from vfslab.model.state import State
from vfslab.model.union import PROFILES as FS_PROFILES
from vfslab.model.union import UnionModel

O_CREAT, O_EXCL, O_NOFOLLOW = 0o100, 0o200, 0o400000
KERNEL = ""
#: what lseek on a directory gives, in both the model and a subject's report (pmem.fd.dir-offset)
DIRECTORY_OFFSET = "directory offset"


@dataclass(frozen=True)
class Place:
    fs: str
    path: tuple[str, ...] = ()

    def child(self, name: str) -> Place:
        return Place(self.fs, (*self.path, name))


@dataclass(frozen=True)
class Reached:
    """Where a walk ended: the directory `where` that holds the last component `name`, and the `place` the
    component names. `how` says what the last component was: "name", ".", "..", "/" (the path was only
    slashes) or "mount" (a mount point: `place` is its pool's root)."""

    where: Place
    name: str
    place: Place
    how: str = "name"
    slash: bool = False
    #: a last name over NAME_MAX, which a call working at the name refuses when it looks the name up
    too_long: bool = False

    @property
    def dots(self) -> bool:
        return self.how in (".", "..", "/")


@dataclass
class Description:
    """An open file: its file system and its fd in that file system's model; dup'ed fds share one."""

    fs: str
    inner: int
    refs: int = 1


def operation(method: Callable) -> Callable:
    """Run one routing operation: collect the rules it fires, turn a ModelError into an errno outcome."""

    @wraps(method)
    def run(self: RoutingModel, *args) -> Outcome:
        self._fired = []
        try:
            value = method(self, *args)
        except ModelError as err:
            return Outcome(Err(err.errno), (*self._fired, err.rule), tuple(Err(e) for e in err.also))
        return Outcome(value, tuple(self._fired))

    return run


class RoutingModel(Fires):
    """The kernel's tree `kernel` with the pools `pools` (mount point's kernel path -> its tree) mounted, for a
    process whose fds `taken` are open already; trees are iterables of nodes as `UnionModel` reads them."""

    def __init__(self, kernel: Iterable, pools: Mapping[str, Iterable], profile: Profile,
                 taken: Iterable[int] = (0, 1, 2), umask: int = 0o022) -> None:
        self.profile = profile
        self.fs: dict[str, UnionModel] = {KERNEL: UnionModel([kernel], FS_PROFILES[profile.kernel_fs], umask)}
        for mount_point, tree in pools.items():
            self.fs[mount_point] = UnionModel([tree], FS_PROFILES[profile.pool_fs], umask)
        self.taken = frozenset(taken)
        self.fds: dict[int, Description] = {}
        self.cwd = Place(KERNEL)
        self._fired: list[str] = []

    # ---- rules machinery -------------------------------------------------------------------------

    def _call(self, place: Place, name: str, *args: object) -> object:
        """One operation of the file system holding `place`, on its path there (or on an fd of it)."""
        fs = self.fs[place.fs]
        done = getattr(fs, name)("/".join(place.path), *args)
        return self._settle(done)

    def _on_fd(self, d: Description, name: str, *args: object) -> object:
        return self._settle(getattr(self.fs[d.fs], name)(d.inner, *args))

    def _settle(self, done: Outcome) -> object:
        if done.failed:
            *rules, last = done.rules
            for rule in rules:
                self._fire(rule)
            raise ModelError(done.result.errno, last, tuple(e.errno for e in done.also))
        for rule in done.rules:
            self._fire(rule)
        return done.result

    # ---- the walk --------------------------------------------------------------------------------

    def _kind(self, place: Place) -> tuple[str | None, str]:
        """What is at `place`: its kind (None: nothing) and a symlink's target."""
        seen = self.fs[place.fs].lstat("/".join(place.path))
        if seen.failed:
            return None, ""
        if seen.result.kind == "symlink":
            return "symlink", self.fs[place.fs].readlink("/".join(place.path)).result
        return seen.result.kind, ""

    def _mounted(self, place: Place) -> Place:
        """A kernel directory that is a mount point is entered as its pool's root."""
        key = "/".join(place.path)
        if place.fs == KERNEL and key in self.fs and key != KERNEL:
            self._fire("pmem.route.enter")
            return Place(key)
        return place

    def _up(self, here: Place) -> Place:
        if here.path:
            return Place(here.fs, here.path[:-1])
        if here.fs == KERNEL:
            self._fire("pmem.path.root-dotdot")
            return here
        self._fire("pmem.route.dotdot")
        return Place(KERNEL, tuple(here.fs.split("/")[:-1]))

    def _walk(self, path: str, follow: bool, at_name: bool = False) -> Reached:
        """Walk `path` from the cwd (or the kernel's root). Symlinks before the last component are followed; the
        last one if `follow`, or if a trailing `/` asks for a directory, unless the call works `at_name` (mkdir,
        rmdir, unlink, rename, symlink, link's new path), which never follows it, judges the `/` itself, and
        refuses a last name over NAME_MAX when it looks it up (`too_long`: the kernel leaves that to the file
        system's lookup, after the checks that come first)."""
        if path == "":
            raise ModelError(self.profile.empty_path, self.profile.empty_rule)
        self._measure(PATH_LIMIT, len(path.encode()) + 1, E.ENAMETOOLONG)
        here = Place(KERNEL) if path.startswith("/") else self.cwd
        todo = deque(c for c in path.split("/") if c)
        slash = path.endswith("/") and bool(todo)
        if not todo:
            return Reached(here, "", here, "/")
        links = 0
        try:
            while todo:
                comp = todo.popleft()
                last = not todo
                size = len(comp.encode())
                self._edge(NAME_LIMIT, size)
                if NAME_LIMIT.over(size):
                    if last and at_name:
                        return Reached(here, comp, here.child(comp), slash=slash, too_long=True)
                    raise ModelError(E.ENAMETOOLONG, NAME_LIMIT.rule)
                if comp in (".", ".."):
                    there = here if comp == "." else self._up(here)
                    if last:
                        return Reached(here, "", there, comp, slash)
                    here = there
                    continue
                kind, target = self._kind(here.child(comp))
                if kind is None:
                    if last:
                        return Reached(here, comp, here.child(comp), slash=slash)
                    raise ModelError(E.ENOENT, "pmem.path.walk")
                if kind == "symlink" and (not last or ((follow or slash) and not at_name)):
                    links += 1
                    if LINK_LIMIT.over(links):
                        raise ModelError(E.ELOOP, LINK_LIMIT.rule)
                    self._fire("pmem.symlink.follow")
                    if target.startswith("/"):
                        if here.fs != KERNEL:
                            self._fire("pmem.symlink.absolute")
                        here = Place(KERNEL)
                    todo.extendleft(reversed([c for c in target.split("/") if c] or ["."]))
                    continue
                if last:
                    if slash and kind != "dir" and not at_name:
                        raise ModelError(E.ENOTDIR, "pmem.path.trailing-slash")
                    place = self._mounted(here.child(comp)) if kind == "dir" else here.child(comp)
                    return Reached(here, comp, place, "mount" if place.fs != here.fs else "name", slash)
                if kind != "dir":
                    raise ModelError(E.ENOTDIR, "pmem.path.walk")
                here = self._mounted(here.child(comp))
        finally:
            self._edge(LINK_LIMIT, links)  # the lookup's total, not each count on the way
        raise AssertionError("unreachable")

    def _exists(self, reached: Reached) -> bool:
        return reached.how != "name" or self._kind(reached.place)[0] is not None

    def _new_name(self, path: str) -> Reached:
        """The last name of `path`, for a call that makes it (mkdir, symlink, link): EEXIST for `.`, `..`, `/` or a
        mount point; a trailing `/` is a directory's only (pmem.path.trailing-slash)."""
        reached = self._walk(path, follow=False, at_name=True)
        if reached.how != "name":
            raise ModelError(E.EEXIST, "pmem.route.mount-point" if reached.how == "mount" else "pmem.path.dot-last")
        self._looked_up(reached)
        return reached

    def _looked_up(self, reached: Reached) -> None:
        if reached.too_long:
            raise ModelError(E.ENAMETOOLONG, NAME_LIMIT.rule)

    # ---- file descriptors ------------------------------------------------------------------------

    def _lowest(self) -> int:
        self._fire("pmem.fd.lowest")
        fd = 0
        while fd in self.taken or fd in self.fds:
            fd += 1
        return fd

    def _fd(self, fd: int) -> Description:
        if fd not in self.fds:
            raise ModelError(E.EBADF, "pmem.fd.close")
        return self.fds[fd]

    @operation
    def open(self, path: str, flags: int, mode: int = 0o777) -> int:
        if flags & O_CREAT and path.endswith("/"):  # the kernel walks to the parent, then refuses
            self._walk(path, follow=False, at_name=True)
            raise ModelError(E.EISDIR, "pmem.path.trailing-slash")
        exclusive = flags & O_CREAT and flags & O_EXCL
        reached = self._walk(path, follow=not (flags & O_NOFOLLOW or exclusive))
        self._fire("pmem.symlink.last")
        inner = self._call(reached.place, "open", flags, mode)
        fd = self._lowest()
        self.fds[fd] = Description(reached.place.fs, inner)
        return fd

    @operation
    def close(self, fd: int) -> None:
        d = self._fd(fd)
        self._fire("pmem.fd.close")
        del self.fds[fd]
        d.refs -= 1
        if not d.refs:
            self._on_fd(d, "close")

    @operation
    def dup(self, fd: int) -> int:
        d = self._fd(fd)
        self._fire("pmem.fd.dup")
        new = self._lowest()
        self.fds[new] = d
        d.refs += 1
        return new

    @operation
    def dup2(self, fd: int, fd2: int) -> int:
        d = self._fd(fd)
        self._fire("pmem.fd.dup")
        if fd2 < 0:
            raise ModelError(E.EBADF, "pmem.fd.dup")
        if fd == fd2:
            return fd2
        if fd2 in self.fds:
            old = self.fds.pop(fd2)
            old.refs -= 1
            if not old.refs:
                self._on_fd(old, "close")
        self.fds[fd2] = d
        d.refs += 1
        return fd2

    @operation
    def read(self, fd: int, size: int) -> bytes:
        return self._on_fd(self._fd(fd), "read", size)

    @operation
    def write(self, fd: int, data: bytes) -> int:
        return self._on_fd(self._fd(fd), "write", data)

    @operation
    def fstat(self, fd: int) -> object:
        return self._on_fd(self._fd(fd), "fstat")

    @operation
    def lseek(self, fd: int, offset: int, whence: int) -> object:
        d = self._fd(fd)
        if self._on_fd(d, "fstat").kind == "dir":
            self._fire("pmem.fd.dir-offset")
            return DIRECTORY_OFFSET
        return self._on_fd(d, "lseek", offset, whence)

    # ---- paths -----------------------------------------------------------------------------------

    @operation
    def stat(self, path: str) -> object:
        return self._call(self._walk(path, follow=True).place, "lstat")

    @operation
    def lstat(self, path: str) -> object:
        self._fire("pmem.symlink.last")
        return self._call(self._walk(path, follow=False).place, "lstat")

    @operation
    def readlink(self, path: str) -> str:
        return self._call(self._walk(path, follow=False).place, "readlink")

    @operation
    def readdir(self, path: str) -> list[str]:
        return list(self._call(self._walk(path, follow=True).place, "readdir"))

    @operation
    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self._call(self._new_name(path).place, "mkdir", mode)

    @operation
    def symlink(self, target: str, path: str) -> None:
        reached = self._new_name(path)
        if reached.slash:
            raise ModelError(E.EEXIST if self._exists(reached) else E.ENOENT, "pmem.path.trailing-slash")
        self._settle(self.fs[reached.place.fs].symlink(target, "/".join(reached.place.path)))

    @operation
    def link(self, old: str, new: str) -> None:
        """As the kernel: the old name must exist and the new one not, before the file systems are compared."""
        src = self._walk(old, follow=False)
        if not self._exists(src):
            raise ModelError(E.ENOENT, "pmem.path.walk")
        dst = self._new_name(new)
        if self._exists(dst):
            raise ModelError(E.EEXIST, "union.link.exists")
        if dst.slash:
            raise ModelError(E.ENOENT, "pmem.path.trailing-slash")
        if src.place.fs != dst.where.fs:
            raise ModelError(E.EXDEV, "pmem.xdev")
        fs = self.fs[src.place.fs]
        self._settle(fs.link("/".join(src.place.path), "/".join(dst.place.path)))

    @operation
    def unlink(self, path: str) -> None:
        reached = self._walk(path, follow=False, at_name=True)
        if reached.how != "name":
            raise ModelError(E.EISDIR, "pmem.route.mount-point" if reached.how == "mount" else "pmem.path.dot-last")
        self._looked_up(reached)
        if reached.slash:
            kind = self._kind(reached.place)[0]
            raise ModelError(E.ENOENT if kind is None else E.EISDIR if kind == "dir" else E.ENOTDIR,
                             "pmem.path.trailing-slash")
        self._call(reached.place, "unlink")

    @operation
    def rmdir(self, path: str) -> None:
        reached = self._walk(path, follow=False, at_name=True)
        if reached.dots:
            raise ModelError({".": E.EINVAL, "..": E.ENOTEMPTY, "/": E.EBUSY}[reached.how], "pmem.path.dot-last")
        if reached.how == "mount":
            raise ModelError(E.EBUSY, "pmem.route.mount-point")
        self._looked_up(reached)
        self._call(reached.place, "rmdir")

    @operation
    def rename(self, old: str, new: str) -> None:
        """As the kernel: both parents are walked and their file systems compared before either name is looked
        up; `.`, `..` and `/` are refused next; then the old name, then the new one, is looked up; a `/` after
        either asks the old one to be a directory; a mount point is refused after the checks of the names'
        types."""
        src = self._walk(old, follow=False, at_name=True)
        dst = self._walk(new, follow=False, at_name=True)
        if src.where.fs != dst.where.fs:
            raise ModelError(E.EXDEV, "pmem.xdev")
        if src.dots or dst.dots:
            raise ModelError(E.EBUSY, "pmem.path.dot-last")
        self._looked_up(src)
        if not self._exists(src):
            raise ModelError(E.ENOENT, "pmem.path.walk")
        self._looked_up(dst)
        if (src.slash or dst.slash) and self._kind(src.place)[0] != "dir":  # before the types and the mount point
            raise ModelError(E.ENOTDIR, "pmem.path.trailing-slash")
        if "mount" not in (src.how, dst.how):
            fs = self.fs[src.where.fs]
            self._settle(fs.rename("/".join(src.place.path), "/".join(dst.place.path)))
            return
        kinds = [self._kind(r.where.child(r.name))[0] for r in (src, dst)]
        if src.where == dst.where and src.name == dst.name:
            return
        if kinds[1] is not None and (kinds[0] == "dir") != (kinds[1] == "dir"):
            raise ModelError(E.ENOTDIR if kinds[0] == "dir" else E.EISDIR, "union.rename.types")
        raise ModelError(E.EBUSY, "pmem.route.mount-point")

    @operation
    def chdir(self, path: str) -> None:
        reached = self._walk(path, follow=True)
        kind = self._kind(reached.place)[0]
        if kind is None:
            raise ModelError(E.ENOENT, "pmem.path.walk")
        if kind != "dir":
            raise ModelError(E.ENOTDIR, "pmem.cwd.notdir")
        if reached.place.fs != KERNEL:
            self._fire("pmem.cwd.virtual")
        self.cwd = reached.place

    @operation
    def getcwd(self) -> str:
        return "/" + "/".join(p for p in (self.cwd.fs, *self.cwd.path) if p)

    # ---- the whole tree --------------------------------------------------------------------------

    def state(self) -> State:
        """The tree a walk from the kernel's root sees: each pool in place of its mount point."""
        mounts = [m for m in self.fs if m != KERNEL]
        out: State = {path: e for path, e in self.fs[KERNEL].state().items()
                      if not any(path == m or path.startswith(m + "/") for m in mounts)}
        for m in mounts:
            for path, e in self.fs[m].state().items():
                out[m if path == "." else f"{m}/{path}"] = e
        return out
