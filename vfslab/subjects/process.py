"""A program's own process: chrooted into its scratch root, it runs calls sent as JSON lines and answers each.

So the program's absolute paths, fd numbers and cwd are its own, exactly as the model has them: `/` is the
scratch root (a symlink to `/k/f` means the same to both), the fds open at the start are reported once
(`taken`), and nothing else in the bench opens or closes an fd in between. The calls go to pmemfile's router,
with the pool mounted at `--pool-at` (subject `pmem-router`), or straight to the kernel (any file system the
kernel mounts there, `pmem-fuse` say). The bench's fork server starts it (a Python start costs more than a
short program); it connects back to the bench over an abstract Unix socket, then chroots. The bench's side is
`Process`.

A call is `[name, *args]`; its answer `{"value": ...}` or `{"errno": N}`. Bytes travel as `{"bytes": latin-1}`,
a stat result as `["stat", kind, mode, nlink, size]` (size None for a directory), a listing sorted, lseek on a
directory as its marker (each file system numbers directory positions its own way). `["state"]` answers the
whole tree, walked through the same calls.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import stat as st
import uuid
from pathlib import Path

from vfslab.model.pmem.calls import BY_NAME
from vfslab.model.state import Entry, digest

UMASK = 0o022
#: lseek's answer on a directory (the routing model's is `DIRECTORY_OFFSET`: this process imports no model, to
#: start fast)
DIRECTORY = "directory offset"
#: fds below this are looked at for `taken`
FD_SCAN = 256


class Kernel:
    """The calls, on the kernel (the process's own cwd is the program's)."""

    open, close, dup, dup2 = os.open, os.close, os.dup, os.dup2
    read, write, lseek, fstat = os.read, os.write, os.lseek, os.fstat
    stat, lstat, readlink, readdir = os.stat, os.lstat, os.readlink, os.listdir
    mkdir, rmdir, unlink, symlink, rename, chdir, getcwd = (os.mkdir, os.rmdir, os.unlink, os.symlink, os.rename,
                                                           os.chdir, os.getcwd)

    @staticmethod
    def link(old: str, new: str) -> None:
        os.link(old, new, follow_symlinks=False)


def kind_of(mode: int) -> str:
    return ("dir" if st.S_ISDIR(mode) else "file" if st.S_ISREG(mode) else "symlink" if st.S_ISLNK(mode)
            else "other")


def _encode(value: object) -> object:
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    if hasattr(value, "st_mode"):
        kind = kind_of(value.st_mode)
        return ["stat", kind, st.S_IMODE(value.st_mode), value.st_nlink, None if kind == "dir" else value.st_size]
    if isinstance(value, list):
        return sorted(value)
    return value


def _decode_arg(value: object) -> object:
    return value["bytes"].encode("latin-1") if isinstance(value, dict) else value


def run(calls, call: list) -> dict:
    name, *args = call
    try:
        if name == "state":
            return {"value": walk(calls)}
        if name not in BY_NAME:
            raise ValueError(f"unknown call {name!r}")
        args = [_decode_arg(a) for a in args]
        if name == "lseek" and st.S_ISDIR(calls.fstat(args[0]).st_mode):
            return {"value": DIRECTORY}
        return {"value": _encode(getattr(calls, name)(*args))}
    except OSError as e:
        return {"errno": e.errno}


def walk(calls) -> list[list]:
    """[path, kind, mode, uid, gid, nlink, size, digest, target] for `/` (as ".") and everything under it."""
    out = []

    def entry(path: str, rel: str) -> None:
        s = calls.lstat(path)
        kind = kind_of(s.st_mode)
        data = target = None
        if kind == "file":
            fd = calls.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                chunks = []
                while chunk := calls.read(fd, 1 << 16):
                    chunks.append(chunk)
            finally:
                calls.close(fd)
            data = digest(b"".join(chunks))
        elif kind == "symlink":
            target = calls.readlink(path)
        out.append([rel, kind, st.S_IMODE(s.st_mode), s.st_uid, s.st_gid, s.st_nlink,
                    None if kind == "dir" else s.st_size, data, target])
        if kind == "dir":
            for name in sorted(calls.readdir(path)):
                entry(f"{path.rstrip('/')}/{name}", f"{rel}/{name}" if rel != "." else name)

    entry("/", ".")
    return out


def _open_fds() -> list[int]:
    taken = []
    for fd in range(FD_SCAN):
        try:
            os.fstat(fd)
        except OSError:
            continue
        taken.append(fd)
    return taken


def main(argv: list[str]) -> None:
    """The process itself (forked by the bench's fork server): connect, open the pool, chroot, serve."""
    parser = argparse.ArgumentParser(prog="vfslab.subjects.process")
    parser.add_argument("socket", help="the bench's abstract Unix socket, to connect to")
    parser.add_argument("root", help="the scratch root: becomes the process's /")
    parser.add_argument("--pool", help="a pool file, served by the router")
    parser.add_argument("--pool-at", default="/P", help="where the router mounts the pool (inside ROOT)")
    parser.add_argument("--fds", type=int, default=0, help="hold fds open until this many are")
    args = parser.parse_args(argv)
    bench = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bench.connect("\0" + args.socket)
    calls: object = Kernel
    if args.pool:
        from vfslab.impl.pmem.fs import PmemFS
        from vfslab.impl.pmem.router import Router

        fs = PmemFS.open(args.pool)  # before the chroot: the pool file lies outside the root
    os.chroot(args.root)
    os.chdir("/")
    os.umask(UMASK)
    if args.pool:
        calls = Router()
        calls.mount(args.pool_at, fs)
    while len(_open_fds()) < args.fds:  # as many as another side's pool takes: fd numbers then compare
        os.memfd_create("held")
    with bench.makefile("rw") as wire:
        print(json.dumps({"taken": _open_fds()}), file=wire, flush=True)
        for line in wire:
            print(json.dumps(run(calls, json.loads(line))), file=wire, flush=True)


class Gone(Exception):
    """The program's process died, or did not answer in time (`hung`)."""

    def __init__(self, message: str, hung: bool) -> None:
        super().__init__(message)
        self.hung = hung


class Process:
    """The bench's side: have the fork server start the process, send it calls, read their answers (each
    within `timeout`)."""

    def __init__(self, root: Path, log: Path, timeout: float, pool: Path | None = None, pool_at: str = "/P",
                 fds: int = 0) -> None:
        from vfslab.subjects.forkserver import FORKS  # here: the subjects import this module

        self.timeout, self.log = timeout, log
        name = f"vfslab-pmem-{uuid.uuid4().hex}"  # abstract: no path to outgrow or to reach from the chroot
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind("\0" + name)
            listener.listen(1)
            listener.settimeout(timeout)
            argv = [name, str(root), "--fds", str(fds),
                    *(["--pool", str(pool), "--pool-at", pool_at] if pool is not None else [])]
            self.pid: int | None = FORKS.spawn(f"{__name__}:main", argv, log)
            try:
                self.conn, _ = listener.accept()
            except TimeoutError:
                self.stop()
                raise Gone(f"the program's process did not start in {timeout:g} s{self._last_words()}",
                           hung=True) from None
        self.conn.settimeout(None)
        self.wire = self.conn.makefile("rw")
        self.taken: list[int] = self._answer()["taken"]

    def _last_words(self) -> str:
        tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] if self.log.exists() else []
        return f": {tail[0]}" if tail else ""

    def _answer(self) -> dict:
        # poll, not select: the bench's own process may hold more than select's 1024 fds
        waiting = select.poll()
        waiting.register(self.conn, select.POLLIN)
        ready = bool(waiting.poll(self.timeout * 1000))
        line = self.wire.readline() if ready else ""
        if not line:
            why = "died" if ready else f"gave no answer in {self.timeout:g} s"
            raise Gone(f"the program's process {why}{self._last_words()}", hung=not ready)
        return json.loads(line)

    def call(self, call: list) -> dict:
        with contextlib.suppress(BrokenPipeError):  # a dead process: the answer says so
            self.wire.write(json.dumps(call) + "\n")
            self.wire.flush()
        return self._answer()

    def stop(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # the fork server reaps it
            self.pid = None
        if hasattr(self, "wire"):
            with contextlib.suppress(OSError):
                self.wire.close()
            self.conn.close()


def entries(rows: list[list]) -> dict[str, Entry]:
    """A `state` answer as the abstract state the models give."""
    return {r[0]: Entry(*r[1:]) for r in rows}


