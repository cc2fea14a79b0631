"""A page loaded in Debian's headless Chromium, driven over the DevTools protocol on a pipe, standard library only:
the console errors and uncaught exceptions it raised, every URL it asked for, and a screenshot.

`--remote-debugging-pipe` makes Chromium read protocol messages from fd 3 and write its own to fd 4, each one
JSON ended by a NUL byte, so no port, no websocket and no extra package are needed.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import zlib
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = shutil.which("chromium")
#: what Chromium is told besides its pipe: run as root, never ask or fetch anything of its own accord
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-sync", "--disable-background-networking", "--disable-component-update",
         "--mute-audio", "--hide-scrollbars")


class BrowserError(Exception):
    """Chromium did not answer in time, or answered a command with an error; `pid` is the browser's (and its
    process group's) id."""

    def __init__(self, message: str, pid: int = 0) -> None:
        super().__init__(message)
        self.pid = pid


@dataclass
class Loaded:
    """What a page did while it loaded."""

    #: console.error/console.assert calls, uncaught exceptions and the browser's own error log lines, in order
    errors: list[str] = field(default_factory=list)
    #: every URL the page requested, the page itself first
    requests: list[str] = field(default_factory=list)
    #: a screenshot of the viewport
    png: bytes = b""
    #: what the `evaluate` expression gave
    value: object = None
    #: the browser's process id, its process group's too (stopped by now)
    pid: int = 0


class _Pipe:
    """The protocol: commands out on one pipe, answers and events back on the other, all before `deadline`."""

    def __init__(self, to_browser: int, from_browser: int, deadline: float, pid: int) -> None:
        self.to_browser, self.from_browser, self.deadline, self.pid = to_browser, from_browser, deadline, pid
        self.events: list[dict] = []
        self.answers: dict[int, dict] = {}
        self.buffer = b""
        self.last_id = 0

    def call(self, method: str, session: str = "", **params: object) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params} | ({"sessionId": session} if session else {})
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        answer = self._until(lambda: self.answers.pop(self.last_id, None), method)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}", self.pid)
        return answer["result"]

    def event(self, method: str) -> dict:
        """The first event called `method` (waiting for it if it has not come yet)."""
        return self._until(lambda: next((e for e in self.events if e["method"] == method), None), method)

    def _until(self, found, what: str) -> dict:
        while (got := found()) is None:
            left = self.deadline - time.monotonic()
            waiting = select.poll()  # not select: a test process may hold more than select's 1024 fds
            waiting.register(self.from_browser, select.POLLIN)
            if left <= 0 or not waiting.poll(left * 1000):
                raise BrowserError(f"chromium did not answer {what} in time", self.pid)
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise BrowserError(f"chromium closed its pipe while waiting for {what}", self.pid)
            *messages, self.buffer = (self.buffer + chunk).split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    self.answers[message["id"]] = message
                else:
                    self.events.append(message)
        return got


def load(page: Path, *, width: int = 1280, height: int = 900, evaluate: str = "", timeout: float = 30.0) -> Loaded:
    """Load `page` (a file) at a viewport of `width` x `height`, give it a frame to settle, evaluate `evaluate`
    in it, take a screenshot. Chromium is killed when this returns or raises, and after `timeout` seconds at the
    latest: every wait on it stops at that deadline."""
    if CHROMIUM is None:
        raise BrowserError("chromium is not installed (apt-get install chromium)")
    browser_reads, to_browser = os.pipe()
    from_browser, browser_writes = os.pipe()

    def onto_3_and_4() -> None:  # in the child, before exec: the pipes' ends where Chromium looks for them
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (browser_reads, browser_writes)]  # clear of 3 and 4
        os.dup2(ends[0], 3)
        os.dup2(ends[1], 4)

    with tempfile.TemporaryDirectory(prefix="vfslab-chromium-") as profile:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                # 3 and 4 are the only inheritable fds besides 0-2 (Python opens every other
                                # one non-inheritable), so nothing else leaks into Chromium
                                close_fds=False, preexec_fn=onto_3_and_4, start_new_session=True)
        os.close(browser_reads)
        os.close(browser_writes)
        try:
            pipe = _Pipe(to_browser, from_browser, time.monotonic() + timeout, proc.pid)
            return _load(pipe, page, width, height, evaluate)
        finally:
            os.close(to_browser)
            os.close(from_browser)
            _stop(proc)


def _load(pipe: _Pipe, page: Path, width: int, height: int, evaluate: str) -> Loaded:
    target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
    session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.call(f"{domain}.enable", session)
    pipe.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height, deviceScaleFactor=1,
              mobile=False)
    pipe.events.clear()  # about:blank's
    pipe.call("Page.navigate", session, url=page.resolve().as_uri())
    pipe.event("Page.loadEventFired")
    pipe.call("Runtime.evaluate", session, awaitPromise=True,
              expression="new Promise(done => requestAnimationFrame(() => setTimeout(done, 50)))")
    out = Loaded(pid=pipe.pid)
    if evaluate:
        out.value = pipe.call("Runtime.evaluate", session, expression=evaluate, returnByValue=True)["result"].get(
            "value")
    out.png = base64.b64decode(pipe.call("Page.captureScreenshot", session, format="png")["data"])
    for e in pipe.events:
        out.errors += _error(e["method"], e["params"])
        if e["method"] == "Network.requestWillBeSent":
            out.requests.append(e["params"]["request"]["url"])
    with contextlib.suppress(BrowserError):  # it may close its pipe before it answers: it is stopped either way
        pipe.call("Browser.close")
    return out


def _error(method: str, params: dict) -> list[str]:
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return [f"uncaught: {details.get('exception', {}).get('description') or details['text']}"]
    if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        return ["console." + params["type"] + ": " + " ".join(str(a.get("value", a.get("description", "")))
                                                               for a in params["args"])]
    if method == "Log.entryAdded" and params["entry"]["level"] == "error":
        return [f"log: {params['entry']['text']} {params['entry'].get('url', '')}".rstrip()]
    return []


def _stop(proc: subprocess.Popen) -> None:
    """Wait a little for Chromium to exit, then kill what is left of its process group (the renderers too)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def colours(png: bytes) -> Counter[tuple[int, int, int]]:
    """How many pixels of each colour a PNG has (8-bit RGB or RGBA, not interlaced: what Chromium writes)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, data = 8, bytearray()
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        chunk = png[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            if depth != 8 or colour_type not in (2, 6) or interlace:
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}, interlace {interlace}")
        elif kind == b"IDAT":
            data += chunk
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(bytes(data)), width * bpp
    counts: Counter[tuple[int, int, int]] = Counter()
    above = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1:start + 1 + stride]), above, bpp)
        rgba = line if bpp == 4 else bytearray(b"".join(line[i:i + 3] + b"\xff" for i in range(0, stride, 3)))
        counts.update(array("I", rgba))
        above = line
    return Counter({(v & 0xFF, v >> 8 & 0xFF, v >> 16 & 0xFF): n for v, n in counts.items()})


def _unfilter(kind: int, line: bytearray, above: bytearray, bpp: int) -> bytearray:
    """A scanline as it was before PNG's filter `kind` (0 none, 1 sub, 2 up, 3 average, 4 Paeth)."""
    if kind == 2:
        return bytearray((a + b) & 0xFF for a, b in zip(line, above, strict=True))
    if kind in (1, 3, 4):
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + above[i]) // 2) & 0xFF
            else:
                up_left = above[i - bpp] if i >= bpp else 0
                p = left + above[i] - up_left
                pa, pb, pc = abs(p - left), abs(p - above[i]), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else above[i] if pb <= pc else up_left)) & 0xFF
    return line
