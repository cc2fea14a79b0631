"""`vfslab storage`: format storage for a method (`mkfs`), and check a method against the contract (`check`).

    vfslab storage mkfs METHOD [--force]
    vfslab storage check METHOD [--examples N] [--steps N] [--seed S] [--out DIR]

METHOD is a spec: `dir:PATH`, `file:PATH`, `pmem:POOL[?size=N]` or `python:MODULE:CLASS[:LOCATION]`. A check never
touches the storage a spec names: it formats storage of its own for every program, in a scratch folder. Exit 0 when
every check passes, 1 when one fails, 2 for a usage error (one line).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from vfslab.check.engine.generated import Budget
from vfslab.check.results import PASS
from vfslab.check.storage.checker import which_check
from vfslab.check.storage.family import FAMILY
from vfslab.runner import Options, run_one
from vfslab.subjects.storage import SUBJECTS, StorageSubject, user
from vfslab.suite import Scenario

PASSED, FAILED = 0, 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vfslab storage", description="ovlfs storage methods: format storage, and "
                                "check a method against seed 002's contract (docs/storage.md).")
    sub = p.add_subparsers(dest="action", required=True)
    mk = sub.add_parser("mkfs", help="format storage for a method")
    mk.add_argument("method", help="dir:PATH, file:PATH, pmem:POOL[?size=N] or python:MODULE:CLASS:LOCATION")
    mk.add_argument("--force", action="store_true", help="format over storage that is there already")
    ck = sub.add_parser("check", help="check a method against the contract, on storage of its own",
                        description="Generated programs of storage operations on the method and the model in "
                        "lockstep (and, for a method with the crash hook, crashed at every persist point); a "
                        "failure is shrunk, saved and printed with its replay command.")
    ck.add_argument("method", help="dir, file, pmem (a location after them is ignored) or python:MODULE:CLASS")
    ck.add_argument("--examples", type=int, default=200, help="programs per check (default 200)")
    ck.add_argument("--steps", type=int, default=25, help="steps per program at most (default 25)")
    ck.add_argument("--seed", type=int, default=0)
    ck.add_argument("--out", type=Path, default=Path("out/storage"), help="where a failing program is saved "
                    "(default out/storage)")
    return p


def subject_of(method: str) -> StorageSubject:
    """The subject a spec names: one of ours by its scheme, or a user's class."""
    scheme = method.partition(":")[0]
    ours = {s.method: s for s in SUBJECTS if s.method}
    return ours[scheme] if scheme in ours else user(method)


def check(method: str, examples: int, steps: int, seed: int, out: Path) -> int:
    subject = subject_of(method)
    ops = subject.operations
    kinds = ["contract"] + (["crash"] if hasattr(subject.cls(), "crash_at") else [])
    print(f"{subject.method}: {which_check(ops)} check ({', '.join(sorted(ops))})")
    scheme, _, location = method.partition(":")
    if location and subject.method == scheme:
        print(f"  ({location} is left alone: the check formats storage of its own for every program)")
    worst = PASSED
    with tempfile.TemporaryDirectory(prefix="vfslab-storage-") as scratch:
        for kind in kinds:
            if worst == FAILED:  # a crash check of a method that fails the contract would find the same
                print(f"{kind}: not run (the contract fails)")
                continue
            scenario = Scenario(f"storage-{kind}", "storage", FAMILY.name, kind, (subject.name,), "ovlfs", PASS,
                                budget=Budget(examples, steps, 600.0))
            record = run_one(scenario, subject, Options(seed=seed, out=out), Path(scratch) / kind)
            print(f"{kind}: {record.verdict} ({record.examples} programs, {record.steps} steps, {record.seconds} s)"
                  + (f": {record.reason}" if record.reason else ""))
            if record.verdict == PASS:
                continue
            worst = FAILED
            found = record.counterexample
            if found is not None:
                print(f"  shrunk to {len(found.ops)} steps:")
                print("\n".join(f"    {op}" for op in found.ops))
                print("  " + found.message.replace("\n", "\n  "))
                print(f"  replay: {found.replay}")
    return worst


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.action == "mkfs":
        from vfslab.impl.ovlfs.storage import mkfs

        mkfs(args.method, force=args.force)
        print(f"{args.method}: formatted")
        return PASSED
    if args.examples < 1 or args.steps < 1:
        raise ValueError("--examples and --steps must be at least 1")
    return check(args.method, args.examples, args.steps, args.seed, args.out)
