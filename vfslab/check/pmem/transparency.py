"""Transparency: the same program through the router, with a pool mounted at /P, and on the kernel, with a plain
directory at /P holding the same tree, must see the same results (the seed: "a process should not behave
differently whether some files are provided by pmemfile, or the kernel at the same path").

Each side is a program process of its own (`process.py`), chrooted into a fresh tmpfs holding the same kernel
tree; the kernel's side holds as many extra fds as the router's pool takes, so fd numbers can be compared. Results
are compared call by call (values, fd numbers, errnos, stat as type, mode, nlink and a non-directory's size), and
at the end the whole trees. Where the design differs on purpose, the difference is a named deviation and the
program stops there (the two sides no longer hold the same tree), but at an empty path:

- `exdev`: a rename or link across the mount point is EXDEV through the router (docs/facts.md, pmemfile 6);
- `empty-path`: an empty path is ENOTDIR through the router, upstream's choice (ENOENT in the kernel); it changes
  nothing on either side, so the comparison goes on past it;
- `mount-point`: removing or renaming the pool's root, which is a mount point, is EBUSY (the kernel's answer for
  a mount point); at /P the kernel's side has a plain directory.
"""

from __future__ import annotations

import errno as E
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from vfslab.check.engine.kept import Replay
from vfslab.check.engine.race import RECOUNTS
from vfslab.check.pmem.program import KERNEL, POOL_AT, RouteProgram, show_call
from vfslab.model.pmem import PROFILES, RoutingModel
from vfslab.model.pmem.calls import FD_CALLS
from vfslab.subjects.mounts import WATCHDOG_SECONDS
from vfslab.subjects.pmem import Routed
from vfslab.subjects.process import Gone
from vfslab.subjects.tree import Node


@dataclass
class Verdict:
    steps: int
    deviation: str | None = None
    problem: str | None = None


class Side:
    """One side's run: its calls, with `#i` standing for the fd its i-th open or dup returned."""

    def __init__(self, routed: Routed) -> None:
        self.routed = routed
        self.fds: list[int] = []

    def _arg(self, a: object) -> object:
        if isinstance(a, str) and a.startswith("#"):
            i = int(a[1:])
            return self.fds[i] if i < len(self.fds) else -1
        return a

    def run(self, call: list) -> dict:
        name, *args = call
        args = [self._arg(a) for a in args]
        if name == "write":
            args[1] = {"bytes": args[1]}
        answer = self.routed.process.call([name, *args])
        if name in ("open", "dup", "dup2") and "value" in answer:
            self.fds.append(answer["value"])
        return answer


def run(program: list[list], pool: tuple[Node, ...], scratch: Path, timeout: float = WATCHDOG_SECONDS) -> Verdict:
    router = Routed.prepare(scratch / "router", KERNEL, pool, POOL_AT)
    router.start(routed=True, timeout=timeout)
    try:
        kernel = Routed.prepare(scratch / "kernel", KERNEL, pool, POOL_AT, plain=True)
        kernel.start(routed=False, fds=len(router.process.taken), timeout=timeout)
        try:
            return _compare(program, Side(router), Side(kernel))
        finally:
            kernel.teardown()
    finally:
        router.teardown()


def _compare(program: list[list], a: Side, b: Side) -> Verdict:
    empty = None  # an empty path changes nothing on either side: the comparison goes on past it
    try:
        for i, call in enumerate(program):
            ra, rb = a.run(call), b.run(call)
            for _ in range(RECOUNTS):  # the kernel's recount of a restarted lookup's symlinks (engine/race.py)
                if ra == rb or {"errno": E.ELOOP} not in (ra, rb):
                    break
                ra, rb = (a.run(call), rb) if ra == {"errno": E.ELOOP} else (ra, b.run(call))
            if ra == rb:
                continue
            name, *args = call
            if ra == {"errno": E.EXDEV} and name in ("rename", "link"):
                return Verdict(i + 1, deviation="exdev")
            if ra == {"errno": E.ENOTDIR} and rb == {"errno": E.ENOENT} and "" in args:
                empty = empty or "empty-path"
                continue
            if ra == {"errno": E.EBUSY} and name in ("rmdir", "rename"):
                return Verdict(i + 1, deviation="mount-point")
            return Verdict(i + 1, problem=f"step {i + 1} {show_call(call)}: through the router {ra}, "
                                          f"on the kernel {rb}")
        ta, tb = a.run(["state"]), b.run(["state"])
    except Gone as e:
        return Verdict(len(program), problem=str(e))
    if ta != tb:
        differ = [x for x in map(tuple, ta.get("value", [])) if list(x) not in tb.get("value", [])]
        return Verdict(len(program), problem=f"the trees differ at the end: through the router {differ[:3]}")
    return Verdict(len(program), deviation=empty)


def met(program: list[list], pool: tuple[Node, ...], taken: int = 3) -> Counter:
    """The rules and edges `program`'s calls meet, as the routing model (held to `pmemfile`, the router's profile)
    decides them: what a transparency check compared, counted in its record (the router and the kernel answer the
    same calls; the model only counts)."""
    model = RoutingModel(KERNEL, {POOL_AT: pool}, PROFILES["pmemfile"], range(taken))
    fired: Counter = Counter()
    returned: list[int] = []
    for name, *args in program:
        args = [(returned[int(a[1:])] if int(a[1:]) < len(returned) else -1)
                if isinstance(a, str) and a.startswith("#") and a[1:].isdigit() else a for a in args]
        if name == "write":
            args[1] = args[1].encode()
        done = getattr(model, name)(*args)
        fired.update(done.rules)
        if name in FD_CALLS and isinstance(done.result, int):
            returned.append(done.result)
    return fired


def replay(program: RouteProgram, scratch: Path) -> Replay:
    """Run a kept program through the router and on the kernel again."""
    verdict = run(program.ops, program.pool, scratch)
    named = [f"named deviation: {verdict.deviation}"] if verdict.deviation else []
    return Replay(trace=[show_call(c) for c in program.ops] + named, failure=verdict.problem,
                  coverage=dict(met(program.ops[:verdict.steps], program.pool)))
