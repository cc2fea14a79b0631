"""Shards: `vfslab run --shard K/N` runs every N-th job of a run, from the K-th; `vfslab merge` puts the shards'
records back in the order one unsharded run would have made them; `vfslab run --jobs N` runs the N shards of a
run side by side on one machine and merges them.

The jobs (scenario x subject x placement) are listed the same way on every machine, from the scenario files and
the options alone, and a job's checks are derandomised by the run's seed, so shard K of N is the same work
wherever it runs and the merged records are the unsharded run's.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from vfslab.check.results import Results

T = TypeVar("T")
SPEC = re.compile(r"(\d+)/(\d+)")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as written
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, jobs: Sequence[T]) -> list[T]:
        """Round robin: neighbouring jobs (a scenario's subjects, often alike in cost) go to different shards."""
        return list(jobs[self.index - 1::self.count])


WHOLE = Shard(1, 1)


def parse(text: str) -> Shard:
    m = SPEC.fullmatch(text.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return Shard(int(m.group(1)), int(m.group(2)))


def merge(parts: Sequence[tuple[str, Results]]) -> Results:
    """One run's results from its shards (each `(name, results)`, in any order), or from runs of different
    suites (unsharded: their records one after another). Shards must share their count and seed and each come
    once."""
    if not parts:
        raise ValueError("nothing to merge")
    sharded = [(name, r) for name, r in parts if r.meta.shard]
    if sharded and len(sharded) != len(parts):
        name = next(name for name, r in parts if not r.meta.shard)
        raise ValueError(f"{name} is not a shard, and {sharded[0][0]} is: merge the shards of one run")
    for what in ("seed", "git_sha", "vfslab_version"):
        values = {str(getattr(r.meta, what)) for _, r in parts}
        if len(values) > 1:
            raise ValueError(f"the results differ in {what} ({', '.join(sorted(values))}): merge one run's shards")
    first = parts[0][1].meta
    meta = replace(first, shard=[], subjects={}, unavailable={},
                   started=min(r.meta.started for _, r in parts),
                   # shards run side by side: the run took as long as its longest shard
                   seconds=max(r.meta.seconds for _, r in parts) if sharded else sum(r.meta.seconds for _, r in parts))
    for _, r in parts:
        meta.subjects.update(r.meta.subjects)
        meta.unavailable.update(r.meta.unavailable)
    for name in meta.subjects:
        meta.unavailable.pop(name, None)
    if not sharded:
        return Results(meta, [record for _, r in parts for record in r.records])
    count = first.shard[1]
    found: dict[int, str] = {}
    for name, r in sharded:
        k, n = r.meta.shard
        if n != count:
            raise ValueError(f"{name} is shard {k}/{n}, {sharded[0][0]} one of {count}")
        if k in found:
            raise ValueError(f"{name} and {found[k]} are both shard {k}/{count}")
        found[k] = name
    missing = sorted(set(range(1, count + 1)) - set(found))
    if missing:
        raise ValueError(f"shard {', '.join(f'{k}/{count}' for k in missing)} missing")
    # shard k's i-th record was job (k - 1) + i * count of the whole run
    placed = sorted((((k - 1) + i * count, record) for _, r in sharded for k in [r.meta.shard[0]]
                     for i, record in enumerate(r.records)), key=lambda p: p[0])
    return Results(meta, [record for _, record in placed])


#: how long stopped shards have to unmount what they mounted (each mount's own teardown is bounded well below)
STOP_SECONDS = 60


def side_by_side(argv: Callable[[Shard, Path], list[str]], count: int, out: Path, *,
                 ran: tuple[int, ...]) -> Results:
    """Run the `count` shards of one run at once, each a process `argv(shard, its out folder)` writing under
    OUT/shards/K (its log there too), and merge their results; a shard whose exit status is not one of `ran`
    (the run went as a run can, findings or not: the merged run's to judge) ends them all. A mount waits on its
    daemon as often as on the CPU, so shards side by side finish sooner than one after another even on a
    machine of few cores."""
    procs: list[tuple[Shard, Path, subprocess.Popen]] = []
    # a shard's own summary would say a part as if it were the run: the merged run's is said once, by the caller
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY")}
    try:
        for k in range(1, count + 1):
            part, folder = Shard(k, count), out / "shards" / str(k)
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "run.log", "wb") as log:
                # a session of its own: a Ctrl-C reaches us alone, and we pass it on once (a second one could cut
                # short a shard's unmounting)
                procs.append((part, folder, subprocess.Popen(argv(part, folder), stdin=subprocess.DEVNULL,
                                                             stdout=log, stderr=subprocess.STDOUT, env=env,
                                                             start_new_session=True)))
        # each looked at in turn, not waited for in order: a shard that fails ends the run at once
        while True:
            ends = [proc.poll() for _, _, proc in procs]
            for (part, folder, _), end in zip(procs, ends, strict=True):
                if end not in (None, *ran):
                    tail = (folder / "run.log").read_text(errors="replace").strip().splitlines()[-1:]
                    raise RuntimeError(f"shard {part} ended with exit {end}"
                                       f"{': ' + tail[0] if tail else ''} (log: {folder / 'run.log'})")
            if None not in ends:
                break
            time.sleep(0.1)
    finally:
        running = [proc for _, _, proc in procs if proc.poll() is None]  # interrupted, or one shard failed
        for proc in running:
            proc.send_signal(signal.SIGINT)  # as Ctrl-C: it unmounts what it mounted, then ends
        deadline = time.monotonic() + STOP_SECONDS
        for proc in running:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return merge([(str(folder), Results.read(folder / "results.json")) for _, folder, _ in procs])
