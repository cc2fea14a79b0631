"""A fork server for our own FUSE daemons (and the routing check's program processes): one process that has
imported the daemon forks one per mount.

Starting a Python daemon costs about 0.1 s of imports, and a check mounts thousands of times. The server is
started once (a child of the bench, in its own session), has no threads and no open files but its two pipes
(and one to its spare), so each fork of it is a clean daemon: it gets its own session and log, runs the
program's `main(argv)` in the foreground, and is reaped by the kernel (the server ignores SIGCHLD). The server
keeps one child forked ahead, waiting for the next request, and forks the next spare while the bench goes on.
Requests are JSON lines `{"main": "module:function", "argv": [...], "log": path}`; the answer is the child's
pid, or `error: ...`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path

#: what the server imports before it forks anything (what makes a fork cheap)
PRELOAD = ("vfslab.impl.union.main", "vfslab.impl.union.serve", "vfslab.impl.block.main", "vfslab.impl.block.fs",
           "vfslab.impl.pmem.main", "vfslab.impl.pmem.serve", "vfslab.impl.pmem.router", "vfslab.impl.ovlfs.main",
           "vfslab.impl.ovlfs.serve", "vfslab.impl.ovlfs.storage", "vfslab.subjects.process")


class ForkServer:
    """The bench's side: starts the server on first use (and again if it died)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def spawn(self, main: str, argv: list[str], log: Path) -> int:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = subprocess.Popen([sys.executable, "-c", f"from {__name__} import serve; serve()"],
                                              stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, text=True, start_new_session=True)
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(json.dumps({"main": main, "argv": argv, "log": str(log)}) + "\n")
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline().strip()
        if not answer.isdigit():
            raise OSError(f"fork server: {answer or 'no answer (it died)'}")
        return int(answer)


def _child(request: dict) -> None:
    """In the forked child: become a daemon of its own and run the program; never returns."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(null)
        os.close(out)
        module, _, function = request["main"].partition(":")
        code = getattr(importlib.import_module(module), function)(request["argv"]) or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _spare() -> tuple[int, int]:
    """Fork a child that waits for its request on a pipe of its own: (its pid, the pipe's write end). Forked
    ahead of its request, so that a mount does not wait for the fork."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)  # the server's pipes: the bench must see them close when the server dies
        os.dup2(null, 1)
        os.close(null)
        with os.fdopen(r, "rb") as pipe:
            request = pipe.read()
        if not request:  # the server is gone: nobody wants this child
            os._exit(0)
        _child(json.loads(request))
    os.close(r)
    return pid, w


def _hand(spare: tuple[int, int], request: str) -> int:
    pid, w = spare
    try:
        os.write(w, request.encode())
    finally:
        os.close(w)
    return pid


def serve() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    spare: tuple[int, int] | None = None
    for line in sys.stdin:
        try:
            json.loads(line)
            given, spare = spare or _spare(), None
            try:
                pid = _hand(given, line)
            except BrokenPipeError:  # the spare was killed while it waited
                pid = _hand(_spare(), line)
        except (ValueError, OSError) as e:
            print(f"error: {e}", flush=True)
            continue
        print(pid, flush=True)
        with contextlib.suppress(OSError):  # else forked at the next request, which says why if it fails again
            spare = _spare()


#: the bench's one fork server, shared by every subject that runs our daemons
FORKS = ForkServer()
