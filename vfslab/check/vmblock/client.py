"""The real side of a vmblock check: operations applied to a mounted vmblock by concurrent clients.

A readlink or notify read may wait for as long as a block stays, so each runs in a thread of its own and is
looked at later. Two facts from the kernel say where a request is, without asking the daemon:
`/proc/self/task/TID/wchan` is `request_wait_answer` while a thread waits for a FUSE reply, and fusectl's
`waiting` counts the connection's requests not yet answered (releases, which close sends in the
background, included).
"""

from __future__ import annotations

import os
import re
import stat as st
import threading
import time
from pathlib import Path

from vfslab.check.vmblock.program import BlockOp
from vfslab.model.block import Attr
from vfslab.model.outcome import Err
from vfslab.subjects import mounts
from vfslab.subjects.driver import as_caller
from vfslab.subjects.vmblock import BlockMount

#: how long a call the model says returns may take to return (a slow machine, a busy daemon)
RETURN_SECONDS = 5.0
#: how long requests may take to settle after a step
SETTLE_SECONDS = 2.0
#: in a text written to /dev: as many `/` as make the whole write N bytes long
SLASHES = re.compile(rb"\{slashes:(\d+)\}")


class Blocked:
    """The result of a call that has not returned."""

    def __repr__(self) -> str:
        return "still waiting"


BLOCKED = Blocked()


def _attr(s: os.stat_result) -> Attr:
    kind = "dir" if st.S_ISDIR(s.st_mode) else "symlink" if st.S_ISLNK(s.st_mode) else "file"
    return Attr(kind, st.S_IMODE(s.st_mode), s.st_nlink, s.st_size, s.st_uid)


def _outcome(call) -> object:
    try:
        return call()
    except OSError as e:
        return Err(e.errno)


class Background:
    """One call running in its own thread, or in a child process of its own that the thread waits for (`keep`: the
    descriptors the child keeps; every other is closed, so that it holds no control file open)."""

    def __init__(self, op: BlockOp, call, keep: tuple[int, ...] | None = None) -> None:
        self.op = op
        self._result: object = BLOCKED
        self._done = threading.Event()
        self._wchan = ""  # where the kernel says what the calling task waits in
        self._started = threading.Event()
        run, args = (self._run, (call,)) if keep is None else (self._forked, (call, keep))
        threading.Thread(target=run, args=args, daemon=True, name=str(op)).start()
        self._started.wait()

    def _run(self, call) -> None:
        self._wchan = f"/proc/self/task/{threading.get_native_id()}/wchan"
        self._started.set()
        self._result = _outcome(call)
        self._done.set()

    def _forked(self, call, keep: tuple[int, ...]) -> None:
        """The call in a child: it makes the one system call and writes what it got into a pipe, nothing else (a
        child of a process with threads may take no lock another thread held)."""
        r, w = os.pipe()
        try:
            pid = os.fork()
        except OSError as e:  # no child to be had: the call's result is why
            os.close(r)
            os.close(w)
            self._result = Err(e.errno)
            self._started.set()
            self._done.set()
            return
        if pid == 0:  # pragma: no cover (the child)
            try:
                low = 3
                for fd in sorted({*keep, w}):
                    os.closerange(low, fd)
                    low = fd + 1
                os.closerange(low, os.sysconf("SC_OPEN_MAX"))
                got = _outcome(call)
                kind = b"e" if isinstance(got, Err) else b"s" if isinstance(got, str) else b"b"
                body = str(got.errno).encode() if isinstance(got, Err) else os.fsencode(got) if kind == b"s" else got
                os.write(w, kind + body)
            finally:
                os._exit(0)
        os.close(w)
        self._wchan = f"/proc/{pid}/wchan"
        self._started.set()
        with os.fdopen(r, "rb") as pipe:
            said = pipe.read()
        os.waitpid(pid, 0)
        kind, body = said[:1], said[1:]
        self._result = (Err(int(body)) if kind == b"e" else os.fsdecode(body) if kind == b"s" else body if kind
                        else Err(0))  # a child that said nothing (it died): no errno
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def result(self, seconds: float = 0.0) -> object:
        """What it returned, waiting up to `seconds` for it; BLOCKED if it has not."""
        self._done.wait(seconds)
        return self._result

    def settle(self) -> None:
        """Wait until it has returned or waits in the daemon (a little longer: its lookup waits there too)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        seen = 0
        while not self.done and seen < 3 and time.monotonic() < deadline:
            try:
                waits = Path(self._wchan).read_text() == "request_wait_answer"
            except OSError:  # it has just ended
                waits = False
            seen = seen + 1 if waits else 0
            time.sleep(0.01)


class Client:
    """Applies operations to `mount` and says what they returned."""

    def __init__(self, mount: BlockMount) -> None:
        self.mount = mount
        mounts.ensure_fusectl()
        self.fds: dict[int, int] = {}  # slot -> fd of /dev
        self.calls: list[Background] = []
        # the mount through our own fd: another caller needs no permission on the directories above it (a process
        # may always follow its own /proc/self/fd links)
        self._root = os.open(mount.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def _path(self, rel: str) -> str:
        """`rel` in the mount; the root itself with a trailing `/` (the fd's link, followed)."""
        return f"/proc/self/fd/{self._root}/{rel}"

    def data(self, text: str) -> bytes:
        """What `text` writes: `{target}` the target directory, `{slashes:N}` padding to N bytes in all."""
        raw = text.replace("{target}", str(self.mount.target)).encode(errors="surrogateescape")
        pad = SLASHES.search(raw)
        if pad is None:
            return raw
        rest = raw[:pad.start()] + raw[pad.end():]
        return rest[:pad.start()] + b"/" * max(0, int(pad[1]) - len(rest)) + rest[pad.start():]

    def apply(self, op: BlockOp) -> object:
        """A call that does not wait: its result, or an Err."""
        return _outcome(lambda: self._call(op))

    def start(self, op: BlockOp) -> Background:
        call = Background(op, lambda: self._call(op), (self._root,) if op.forked else None)
        self.calls.append(call)
        return call

    def _call(self, op: BlockOp) -> object:
        with as_caller(op.uid):  # per thread: a background call takes its caller into its own
            return self._as_caller(op)

    def _as_caller(self, op: BlockOp) -> object:
        a = op.args
        if op.name == "open":
            self.fds[len(self.fds)] = os.open(self._path("dev"), os.O_RDWR | os.O_CLOEXEC)
            return None
        if op.name == "dup":
            self.fds[len(self.fds)] = os.dup(self.fds[a[0]])
            return None
        if op.name == "close":
            fd = self.fds[a[0]]
            self.fds[a[0]] = -1
            return os.close(fd)
        if op.name == "write":
            return os.write(self.fds[a[0]], self.data(a[1]))
        if op.name == "read":
            return os.read(self.fds[a[0]], a[1])
        if op.name == "touch":
            fd = os.open(self.mount.entries / a[0], os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            return os.close(fd)
        if op.name == "rm":
            return os.unlink(self.mount.entries / a[0])
        if op.name == "readlink":
            return os.readlink(self._path(f"blockdir/{a[0]}"))
        if op.name == "notify":
            return Path(self._path(f"notifydir/{a[0]}")).read_bytes()
        if op.name == "lstat":
            return _attr(os.lstat(self._path(a[0])))
        if op.name == "readdir":
            return tuple(sorted(os.listdir(self._path(a[0]))))
        if op.name == "version":
            return Path(self._path("version")).read_bytes()
        raise ValueError(f"unknown vmblock operation {op.name!r}")

    def open_slots(self) -> list[int]:
        return [slot for slot, fd in self.fds.items() if fd >= 0]

    def quiesce(self) -> None:
        """Wait (boundedly) until the daemon has answered every request but those of calls still waiting."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            waiting = self.mount.waiting()
            if waiting is None or waiting <= sum(not c.done for c in self.calls):
                return
            time.sleep(0.002)

    def close(self) -> None:
        """Close whatever is still open (the mount is being torn down)."""
        for slot in self.open_slots():
            os.close(self.fds.pop(slot))
        if self._root >= 0:
            os.close(self._root)
            self._root = -1
