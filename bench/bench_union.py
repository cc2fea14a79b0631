"""`make bench`: how fast the union model runs, and how fast the engine checks a real mount.

Figures: model operations per second (goal >= 20,000/s); checked steps per second against kernel-overlay,
both inside Hypothesis (generation, a mount per example, every outcome compared and the whole state after every
call that changed something, docs/union.md) and for one long program replayed in lockstep (goal >= 1,000/s
each). Every random choice comes from --seed. The stateful check runs --runs times, the same steps each time,
and its figure is the best run, with every run's printed: this machine's speed swings by 2x from minute to minute
(a mount and its teardown took 1.45 ms in one run and 10.4 ms in the next), as `bench_union_fs.py` takes each
subject's best round.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from vfslab.check.engine.generated import Budget
from vfslab.check.union.gen import NAMES
from vfslab.check.union.program import Program, run_program
from vfslab.check.union.stateful import check_stateful
from vfslab.model.union import PROFILES, UnionModel
from vfslab.model.union.ops import Op
from vfslab.subjects import get
from vfslab.subjects.tree import Layers, Node

TREE = Layers((
    (Node("a", "dir", 0o755), Node("a/b", "file", data=b"hello"), Node("a/c", "symlink", target="b"),
     Node("b", "file", data=b"x" * 100), Node("c", "hardlink", target="b")),
    (Node("a", "dir", 0o755), Node("a/a", "file", data=b"lower"), Node("b", "dir", 0o700)),
))


def random_ops(rng: random.Random, count: int) -> list[Op]:
    """A program of path operations over the tiny name alphabet, with opens, writes and closes."""

    def path() -> str:
        return "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3)))

    makers = [
        lambda: Op("stat", (path(),)), lambda: Op("lstat", (path(),)), lambda: Op("readdir", (rng.choice([".", "a"]),)),
        lambda: Op("mkdir", (path(), 0o755)), lambda: Op("rmdir", (path(),)), lambda: Op("unlink", (path(),)),
        lambda: Op("rename", (path(), path(), False)), lambda: Op("link", (path(), path())),
        lambda: Op("symlink", (rng.choice(NAMES), path())), lambda: Op("chmod", (path(), 0o644)),
        lambda: Op("truncate", (path(), 3)), lambda: Op("setxattr", (path(), "user.k", b"v")),
        lambda: Op("open", (path(), os.O_RDWR | os.O_CREAT, 0o644)),
    ]
    ops, open_slots = [], 0
    for _ in range(count):
        if open_slots and rng.random() < 0.2:
            open_slots -= 1
            ops.append(Op("write", (0, b"w")))
            ops.append(Op("close", (0,)))
            continue
        op = rng.choice(makers)()
        ops.append(op)
    return ops


def bench_model(seed: int, count: int) -> float:
    rng = random.Random(seed)
    programs = [random_ops(rng, 100) for _ in range(count // 100)]
    done = 0
    started = time.perf_counter()
    for ops in programs:
        model = UnionModel(TREE.lowers, PROFILES["overlayfs"])
        fds: list[int] = []
        for op in ops:
            if op.name == "open":
                out = model.open(*op.args)
                if not out.failed:
                    fds.append(out.result)
            elif op.name in ("write", "close"):
                if not fds:
                    continue
                getattr(model, op.name)(fds[0], *op.args[1:])
                if op.name == "close":
                    fds.pop(0)
            else:
                getattr(model, op.name)(*op.args)
            done += 1
    return done / (time.perf_counter() - started)


def bench_stateful(seed: int, examples: int) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory(prefix="vfslab-bench-") as tmp:
        started = time.perf_counter()
        tally = check_stateful(get("kernel-overlay"), "overlayfs", seed=seed, budget=Budget(examples, 25, 600),
                               scratch_root=Path(tmp))
        seconds = time.perf_counter() - started
    if tally.failure is not None:
        raise SystemExit(f"bench: kernel-overlay disagreed with the model:\n{tally.failure.message}")
    return tally.steps / seconds, tally.steps, seconds


def bench_lockstep(seed: int, count: int) -> float:
    rng = random.Random(seed)
    ops = [op for op in random_ops(rng, count) if op.name not in ("write", "close")]
    with tempfile.TemporaryDirectory(prefix="vfslab-bench-") as tmp:
        started = time.perf_counter()
        replay = run_program(Program(TREE, ops), get("kernel-overlay"), "overlayfs", Path(tmp) / "s")
        seconds = time.perf_counter() - started
    if replay.failure:
        raise SystemExit(f"bench: kernel-overlay disagreed with the model:\n{replay.failure}")
    return len(ops) / seconds


def bench_costs(repeat: int = 200) -> tuple[float, float, float]:
    """Milliseconds for the fixed parts of a checked step and an example: walking the mount (and its upper
    layer), computing the model's state, and a mount with its teardown."""
    with tempfile.TemporaryDirectory(prefix="vfslab-bench-") as tmp:
        started = time.perf_counter()
        for i in range(repeat // 10):
            get("kernel-overlay").setup(TREE, Path(tmp) / f"m{i}", "overlayfs").teardown()
        mount = (time.perf_counter() - started) / (repeat // 10)
        mounted = get("kernel-overlay").setup(TREE, Path(tmp) / "walk", "overlayfs")
        try:
            started = time.perf_counter()
            for _ in range(repeat):
                mounted.observe()
            walk = (time.perf_counter() - started) / repeat
        finally:
            mounted.teardown()
    started = time.perf_counter()
    for _ in range(repeat):
        UnionModel(TREE.lowers, PROFILES["overlayfs"]).state()
    model = (time.perf_counter() - started) / repeat
    return walk * 1e3, model * 1e3, mount * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model-ops", type=int, default=50_000)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3, help="runs of the stateful check; its figure is the best")
    parser.add_argument("--program-ops", type=int, default=2_000)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    print(f"model (overlayfs profile): {bench_model(args.seed, args.model_ops):,.0f} operations/s (goal >= 20,000)")
    ok, why = get("kernel-overlay").available()
    if not ok:
        print(f"kernel-overlay unavailable ({why}): no checked-steps figures")
        return 0
    runs = [bench_stateful(args.seed, args.examples) for _ in range(args.runs)]
    rate, steps, seconds = max(runs)
    print(f"checked against kernel-overlay, stateful: {rate:,.0f} steps/s (goal >= 1,000) ({steps} steps, "
          f"{args.examples} examples, {seconds:.1f} s; a mount per example, the whole state compared after every "
          "call that changed something)")
    print(f"  the best of {len(runs)} runs: " + ", ".join(f"{r:,.0f}" for r, _, _ in runs) + " steps/s")
    print(f"checked against kernel-overlay, one long program: {bench_lockstep(args.seed, args.program_ops):,.0f} "
          "steps/s (goal >= 1,000)")
    walk, model, mount = bench_costs()
    print(f"fixed costs on a {sum(map(len, TREE.lowers))}-node tree: walking the mount and its upper layer "
          f"{walk:.2f} ms, the model's state {model:.2f} ms, mount + teardown {mount:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
