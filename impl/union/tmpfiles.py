"""Unnamed files made ahead in the work directory, for copy-ups to build in.

A copy-up builds the copy in an unnamed file (`O_TMPFILE`) and links it into place once it is whole, as overlayfs
does: a crash leaves nothing behind. On ext4 here, making one costs about as much as the fsync of the copy (about
160 µs), so a thread makes a few ahead while the daemon waits for requests, and a copy-up takes one that is ready.
An unnamed file nobody takes is freed when its fd is closed, or when the daemon exits.
"""

from __future__ import annotations

import errno as E
import os
import threading
from collections import deque

#: O_TMPFILE is refused: by a file system without it, or (EISDIR) by a kernel that predates it
REFUSED = frozenset({E.EOPNOTSUPP, E.EISDIR})


class TmpFiles:
    """Unnamed files in the directory `dirfd` (duplicated: ours until close), up to `ahead` made before they are
    asked for, once the first one was: the file system may refuse them, and a mount that never copies up pays
    nothing."""

    def __init__(self, dirfd: int, ahead: int = 4) -> None:
        self.dirfd = os.dup(dirfd)
        self.ahead = ahead
        self.refused = False
        self._ready: deque[int] = deque()
        self._changed = threading.Condition()
        self._closed = False
        # started after the first take(): the daemon may fork between here and serving (fuse_daemonize), and a
        # child has no threads but the one that forked
        self._thread = threading.Thread(target=self._fill, name="tmpfiles", daemon=True)

    def _make(self) -> int:
        return os.open(".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o600, dir_fd=self.dirfd)

    def _fill(self) -> None:
        while True:
            with self._changed:
                while not self._closed and len(self._ready) >= self.ahead:
                    self._changed.wait()
                if self._closed:
                    return
            try:
                fd = self._make()
            except OSError:
                return  # take() makes its own from now on, and its error is the caller's
            with self._changed:
                if self._closed:
                    os.close(fd)
                    return
                self._ready.append(fd)

    def take(self) -> int | None:
        """An unnamed file opened for writing (one made ahead if there is one), or None where the file system
        refuses them."""
        if self.refused:
            return None
        with self._changed:
            if self._ready:
                self._changed.notify()
                return self._ready.popleft()
        try:
            fd = self._make()
        except OSError as e:
            if e.errno not in REFUSED:
                raise
            self.refused = True
            return None
        with self._changed:
            if self._thread.ident is None and not self._closed:
                self._thread.start()
        return fd

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
            unused, self._ready = self._ready, deque()
        for fd in unused:
            os.close(fd)
        if self._thread.ident is not None:
            self._thread.join()  # it waits on the condition, or is in one open
        os.close(self.dirfd)
