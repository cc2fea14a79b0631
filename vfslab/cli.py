"""The `vfslab` command. Exit codes: 0 all as expected, 1 a verdict differs from expected, 2 usage or
environment error (one clear line, no traceback)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from vfslab.baseline import Baseline
    from vfslab.check.results import Results

from vfslab import __version__, ci, gate, shard
from vfslab.check.engine.generated import QUICK, QUICK_SHRINK
from vfslab.impl import MOUNTS

EXPECTED, UNEXPECTED, USAGE = 0, 1, 2


def _families_help() -> str:
    from vfslab.check.families import FAMILIES

    return "Families (a scenario's `family`), with their kinds and operations: " + "; ".join(
        f"{f.name}: kinds {', '.join(f.kinds)}" + (f", operations {' '.join(f.operations)}" if f.operations else "")
        for f in FAMILIES.values()) + "."


def _subject_file_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subject-file", action="append", default=[], type=Path, metavar="FILE",
                   help="a subject file (TOML, docs/subjects.md) describing your own file system; it runs every "
                   "scenario of its family it can be held to (repeatable)")
    p.add_argument("--subjects", action="append", default=[], type=Path, metavar="DIR", dest="subject_dirs",
                   help="a folder of subject files (repeatable)")


def _subject_files(args: argparse.Namespace):
    """The subjects of --subject-file and --subjects, known while the command runs (a context: their names)."""
    from vfslab.subjects import registered
    from vfslab.subjects.files import load_all

    return registered(load_all(args.subject_file, args.subject_dirs))


def _parser() -> argparse.ArgumentParser:
    from vfslab.reports import formats

    p = argparse.ArgumentParser(prog="vfslab", description="Model-checking test bench for union, FUSE and "
                                "user-space file systems.")
    p.add_argument("--version", action="version", version=f"vfslab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run scenario suites against subjects and write results.json",
                       description="Run scenarios (default: every suite shipped: union, posix, vmblock, pmem, storage, "
                       "sim) against every available subject, or those named or given as subject files, print a "
                       "table of verdicts per suite and write results.json, report.md, report.html and junit.xml "
                       "into --out. Failing programs are saved under OUT/programs with a replay command. Quick by "
                       "default (each scenario's budget capped); --full for each scenario's own.",
                       epilog=_families_help())
    r.add_argument("paths", nargs="*", type=Path, help="scenario files or folders (default: every suite shipped)")
    r.add_argument("--subject", action="append", default=[], help="a subject to run (repeatable; default: all)")
    _subject_file_options(r)
    r.add_argument("--placement", action="append", default=[], metavar="NAME",
                   help="where a union check's layers live: same (one file system, the default), fs-per-layer, "
                   "ro-image (the bottom lower layer a read-only image), or all (repeatable); a scenario's own "
                   "`placement` key pins it")
    r.add_argument("--profile", help="hold every subject to this profile instead of the scenarios' own")
    r.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    r.add_argument("--budget", type=float, help="seconds per scenario and subject (default: the scenario's)")
    r.add_argument("--examples", type=int, help="generated programs per stateful scenario (default: the scenario's)")
    r.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out)")
    r.add_argument("--full", action="store_true", help="give each scenario its own budget (default: a quick run, "
                   f"each scenario capped at {QUICK.examples} programs and {QUICK.seconds:g} s, and a failure the "
                   f"scenario expects shrunk through {QUICK_SHRINK} programs at most)")
    r.add_argument("--baseline", type=Path, metavar="FILE", help="hold each verdict to this baseline "
                   "(`vfslab gate`'s, entries for jobs not run aside) instead of the scenarios' expectations: the "
                   "exit code and CI annotations then speak only of what is new")
    r.add_argument("--shard", type=shard.parse, default=shard.WHOLE, metavar="K/N",
                   help="run the K-th of N equal shares of the scenario x subject jobs (merge the shards' "
                   "results.json with `vfslab merge`)")
    r.add_argument("--jobs", type=_jobs, default=1, metavar="N",
                   help="run the N shards of the run side by side, each a process writing under OUT/shards/K, "
                   "and merge them: the same records as one process makes (default 1)")

    b = sub.add_parser("baseline", help="write a run's verdicts as a baseline of expectations",
                       description="Write each record of RESULTS as an expected verdict (with a reason to fill "
                       "in, an optional scope and strictness) and the rules that fired, for `vfslab gate`.")
    b.add_argument("results", type=Path)
    b.add_argument("-o", "--output", type=Path, default=Path("baseline.toml"), help="default: baseline.toml")
    b.add_argument("--update", action="store_true", help="the output exists: keep the reason, scope and "
                   "strictness of each entry whose verdict is unchanged, and the entries this run did not cover")

    g = sub.add_parser("gate", help="check a run's results against a baseline (exit 1 on anything new)",
                       description="Hold each record of RESULTS to its baseline entry (or, without one or out of "
                       "its scope, to its scenario's expected verdict). Exit 0 when all match; 1 listing "
                       "regressions, strict fixes, entries missing from the results, entries out of scope and "
                       "rules gone blind; 2 for a malformed baseline or results.")
    g.add_argument("results", type=Path)
    g.add_argument("--baseline", type=Path, required=True)
    g.add_argument("--coverage", choices=("report", "strict"), default="report",
                   help="rules that fired in the baseline run and not now: listed (report, the default) or "
                   "failing the gate (strict)")

    mg = sub.add_parser("merge", help="join shards' (or suites') results.json into one",
                        description="Join the results of `vfslab run --shard K/N` for every K (any order) into "
                        "the records one unsharded run makes; or the results of separate runs, one after another.")
    mg.add_argument("results", type=Path, nargs="+")
    mg.add_argument("-o", "--output", type=Path, required=True)

    _subject_file_options(sub.add_parser("subjects", help="list the subjects, their versions and availability"))

    rp = sub.add_parser("replay", help="re-run a saved program on a subject",
                        description="Re-run a program (a JSON file written by `vfslab run`) on a subject, held to "
                        "a profile, comparing with the model step by step. Exit 1 if the difference reproduces.")
    rp.add_argument("file", type=Path)
    rp.add_argument("--subject", help="subject to run it on (default: the one it was found on)")
    rp.add_argument("--profile", help="profile to hold it to (default: the program's)")
    _subject_file_options(rp)

    mnt = sub.add_parser("mount", help="mount one of our file systems (union, vmblock, pmem)", add_help=False,
                         description="Mount one of vfslab's own FUSE file systems: `vfslab mount union -o "
                         "lowerdir=L1:L2,upperdir=U,workdir=W MOUNTPOINT`, `vfslab mount vmblock --target DIR "
                         "MOUNTPOINT`, `vfslab mount pmem POOL MOUNTPOINT`; `vfslab mount KIND --help` for more.")
    mnt.add_argument("kind", choices=tuple(MOUNTS))
    mnt.add_argument("args", nargs=argparse.REMAINDER)

    sm = sub.add_parser("sim", help="search a simulated workload's schedules for deadlocks",
                        description="Simulate a workload (vmblock, rwlock-cancel, union-locks) under a locking "
                        "design and search its schedules for deadlocks; a deadlock is shown as a timeline with "
                        "who holds and waits for what, and saved for `vfslab replay`. Exit 1 when the verdict is "
                        "not --expect.")
    sm.add_argument("workload")
    sm.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="a workload or design parameter, e.g. readers=11 design=deferred max_threads=5 "
                    "libfuse=2.6 cancel=anywhere order=global (repeatable)")
    sm.add_argument("--strategy", choices=("shrink", "random", "pct", "bounded"), default="shrink",
                    help="shrink (default: Hypothesis finds and minimises), random, pct, or bounded (every "
                    "schedule with at most --bound non-default choices)")
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--runs", type=int, default=2000, help="runs at most (random, pct; shrink: examples)")
    sm.add_argument("--depth", type=int, default=2, help="pct: bug depth (default 2)")
    sm.add_argument("--bound", type=int, default=1, help="bounded: non-default choices at most (default 1)")
    sm.add_argument("--lockdep", action="store_true", help="instead: --runs random runs, reporting a cycle in "
                    "the order locks were taken in (potential-deadlock) even when no run deadlocks")
    sm.add_argument("--expect", choices=("pass", "deadlock", "potential-deadlock"),
                    help="exit 1 unless this is the verdict")
    sm.add_argument("--out", type=Path, default=Path("out/sim"), help="where found runs are kept (default "
                    "out/sim)")

    ex = sub.add_parser("explore", help="sweep locking designs against a workload (a TOML plan)",
                        description="Sweep a plan's design parameters against its workload and print and save "
                        "a table: design -> verdict, minimal deadlocking schedule, schedules explored.")
    ex.add_argument("plan", type=Path)
    ex.add_argument("--out", type=Path, default=Path("out/explore"), help="output folder (default out/explore)")

    cc = sub.add_parser("crosscheck", help="simulated vs real verdicts for the vmblock deadlock",
                        description="For N = cap-1, cap, cap+1 blocked readlinks, compare the simulator's verdict "
                        "with a real mount's, for each vmblock subject (ours per design, and vmware-vmblock). "
                        "Exit 1 if any disagree.")
    cc.add_argument("--subject", action="append", default=[], help="a vmblock subject (repeatable; default: all)")
    cc.add_argument("--max-threads", type=int, default=10, help="the worker cap (default 10)")

    pm = sub.add_parser("pmem", help="make and inspect pmem pools (mkfs, ls, cat, stat)", add_help=False)
    pm.add_argument("args", nargs=argparse.REMAINDER)

    st = sub.add_parser("storage", help="ovlfs storage methods: mkfs, and check one against the contract",
                        add_help=False, description="`vfslab storage mkfs METHOD [--force]`, `vfslab storage check "
                        "METHOD [--examples N] [--seed S] [--out DIR]`; `vfslab storage check -h` for more.")
    st.add_argument("args", nargs=argparse.REMAINDER)

    rep = sub.add_parser("report", help="render a results.json")
    rep.add_argument("results", type=Path)
    rep.add_argument("--format", choices=tuple(formats()), default="terminal")
    return p


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes, at least 1, not {text!r}")
    return int(text)


def shard_argv(args: argparse.Namespace, part: shard.Shard, out: Path) -> list[str]:
    """The command line of one shard of the run `args` asks for (`--jobs`): the same run, its `part`, into `out`,
    ungated (the merged run is held to the baseline)."""
    argv = [sys.executable, "-m", "vfslab", "run", *map(str, args.paths), *(f"--subject={s}" for s in args.subject),
            *(f"--subject-file={f}" for f in args.subject_file), *(f"--subjects={d}" for d in args.subject_dirs),
            *(f"--placement={p}" for p in args.placement), f"--seed={args.seed}", f"--out={out}", f"--shard={part}"]
    for option in ("profile", "budget", "examples"):
        if getattr(args, option) is not None:
            argv.append(f"--{option}={getattr(args, option)}")
    return argv + (["--full"] if args.full else [])


def _run(args: argparse.Namespace, console: Console) -> int:
    from vfslab import runner, subjects, suite
    from vfslab.baseline import load
    from vfslab.subjects import placement

    baseline = load(args.baseline) if args.baseline else None  # a bad one is said before the run, not after
    if args.jobs > 1 and args.shard != shard.WHOLE:
        raise ValueError("--jobs runs every shard of the run: give --shard or --jobs, not both")
    if args.profile is not None:
        from vfslab.check.families import FAMILIES

        known = sorted({p for family in FAMILIES.values() for p in family.profiles})
        if args.profile not in known:  # else no subject could be held to it, and the run would run nothing
            raise ValueError(f"--profile {args.profile!r}: no family has it (known: {', '.join(known)})")
    with _subject_files(args) as added:
        for name in args.subject:
            subjects.get(name)
        scenarios = suite.collect(args.paths or [suite.default_suite()])
        if args.jobs > 1:
            with console.status(f"{args.jobs} shards side by side (logs: {args.out / 'shards'})"):
                results = shard.side_by_side(lambda part, out: shard_argv(args, part, out), args.jobs, args.out,
                                             ran=(EXPECTED, UNEXPECTED))
            return _said(results, args, baseline, console)
        options = runner.Options(tuple(args.subject), args.profile, args.seed, args.budget, args.examples, args.out,
                                 added, placement.parse(args.placement) if args.placement else (placement.SAME,),
                                 quick=not args.full, shard=args.shard)
        results = runner.run(scenarios, options)
    return _said(results, args, baseline, console)


def _said(results: Results, args: argparse.Namespace, baseline: Baseline | None, console: Console) -> int:
    """A run's results written into --out as results.json and every report, shown, and announced to CI; the
    exit code: its verdicts held to the scenarios' expectations or to the baseline."""
    from vfslab.reports import formats

    results.write(args.out / "results.json")
    shown = formats()
    for fmt in shown.values():
        if fmt.file:
            (args.out / fmt.file).write_text(fmt.render(results))
    shown["terminal"].show(results, console)
    console.print(f"\nresults: {args.out / 'results.json'}  reports: {args.out / 'report.md'}, "
                  f"{args.out / 'report.html'}", soft_wrap=True)
    headline = "vfslab run" + (f", shard {args.shard}" if args.shard != shard.WHOLE else "")
    if baseline is None:
        found = gate.unexpected(results)
        ci.announce(results, found, found, headline)
        return EXPECTED if results.as_expected else UNEXPECTED
    held = gate.gate(results, baseline, partial=True)
    _print_findings(held, console)
    ci.announce(results, held.findings, held.failed, f"{headline} against {args.baseline}")
    return UNEXPECTED if held.failed else EXPECTED


def _baseline(args: argparse.Namespace, console: Console) -> int:
    from vfslab.baseline import Baseline, load
    from vfslab.check.results import Results

    made = Baseline.of(Results.read(args.results))
    if args.output.exists() and not args.update:
        raise ValueError(f"{args.output} exists: --update keeps its reasons, or write elsewhere with -o")
    if args.update:
        made = load(args.output).updated(made) if args.output.exists() else made
    args.output.write_text(made.to_toml())
    console.print(f"{args.output}: {len(made.entries)} entries; fill in each reason", markup=False, soft_wrap=True)
    return EXPECTED


def _gate(args: argparse.Namespace, console: Console) -> int:
    from vfslab.baseline import load
    from vfslab.check.results import Results

    baseline = load(args.baseline)
    results = Results.read(args.results)
    held = gate.gate(results, baseline, coverage_strict=args.coverage == "strict")
    failed = held.failed
    headline = (f"vfslab gate: {held.checked} records against {args.baseline}: "
                + (f"{len(failed)} failing" if failed else "as expected"))
    # whole lines: paths and labels are what a user greps for
    console.print(headline, style="bold red" if failed else "bold green", markup=False, soft_wrap=True)
    _print_findings(held, console)
    ci.announce(results, held.findings, failed, headline)
    return UNEXPECTED if failed else EXPECTED


def _print_findings(held: gate.Gate, console: Console) -> None:
    for kind, meaning in gate.KINDS.items():
        these = [f for f in held.findings if f.kind == kind]
        if these:
            console.print(f"\n{kind} ({meaning}):", style="bold", markup=False, soft_wrap=True)
        for f in these:
            console.print(f"  {f.label}: {f.text}", markup=False, soft_wrap=True)
            if f.replay:
                console.print(f"    replay: {f.replay}", markup=False, soft_wrap=True)


def _merge(args: argparse.Namespace, console: Console) -> int:
    from vfslab.check.results import Results

    merged = shard.merge([(str(p), Results.read(p)) for p in args.results])
    merged.write(args.output)
    console.print(f"{args.output}: {len(merged.records)} records from {len(args.results)} results", markup=False,
                  soft_wrap=True)
    return EXPECTED


def _subjects(args: argparse.Namespace, console: Console) -> int:
    from rich import box
    from rich.table import Table

    from vfslab.subjects import SUBJECTS

    # readable at 80 columns: names and profiles (a line each) whole, versions and reasons folded beside them
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("subject", no_wrap=True)
    table.add_column("version", overflow="fold", ratio=1)
    table.add_column("profiles", no_wrap=True)
    table.add_column("available", overflow="fold", ratio=1)
    with _subject_files(args) as added:
        for name, s in SUBJECTS.items():
            if added and name not in added:
                continue
            ok, reason = s.available()
            table.add_row(name, s.version() if ok else "-", "\n".join(s.profiles),
                          "[green]yes[/]" if ok else f"[red]no[/]: {reason}")
    console.print(table)
    return EXPECTED


def _replay(args: argparse.Namespace, console: Console) -> int:
    with _subject_files(args):
        return _replay_with(args, console)


def _replay_with(args: argparse.Namespace, console: Console) -> int:
    import json

    from vfslab.check.families import DEFAULT
    from vfslab.check.families import get as family_of
    from vfslab.subjects import get

    try:
        data = json.loads(args.file.read_text())
        family = family_of(data.get("family", DEFAULT))  # programs saved before schema 2 are the union's
        program = family.program.from_json(data) if family.program else None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{args.file}: not a vfslab program ({e})") from None
    if program is None:
        replay, on = family.replay_file(data), family.default_subject
    else:
        subject = get(args.subject or program.subject or family.default_subject)
        profile = on = args.profile or program.profile
        if profile not in subject.profiles:
            raise ValueError(f"subject {subject.name} cannot be held to profile {profile!r} "
                             f"(it offers {', '.join(subject.profiles)})")
        ok, reason = subject.available()
        if not ok:
            raise RuntimeError(f"subject {subject.name} is unavailable: {reason}")
        replay = family.replay(program, subject, profile, Path(tempfile.mkdtemp(prefix="vfslab-replay-")))
        on = f"{subject.name} ({profile})"
    for line in replay.trace:
        console.print(f"  {line}", markup=False)
    if replay.failure:
        console.print(f"[bold red]reproduced on {on}:[/]")
        console.print(replay.failure, markup=False)
        return UNEXPECTED
    if replay.deviation:
        console.print(f"[yellow]deviation:{replay.deviation}[/] on {on}: allowed only under {replay.deviation}")
        return UNEXPECTED
    console.print(f"[green]pass[/] on {on}: every outcome and state as the model says")
    return EXPECTED


def _crosscheck(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from vfslab.crosscheck import DESIGN_OF, crosscheck
    from vfslab.subjects import get

    if args.max_threads < 2:
        raise ValueError("--max-threads must be at least 2 (N = cap - 1 readers must be at least 1)")
    table = Table("subject", "design", "waiters", "max_threads", "simulated", "real", "agree")
    agree = True
    for name in args.subject or list(DESIGN_OF):
        if name not in DESIGN_OF:
            raise ValueError(f"{name} is not a vmblock subject (known: {', '.join(DESIGN_OF)})")
        subject = get(name)
        ok, reason = subject.available()
        if not ok:
            console.print(f"{name}: unavailable: {reason}", markup=False)
            continue
        with tempfile.TemporaryDirectory(prefix="vfslab-crosscheck-") as scratch:
            rows = crosscheck(subject, Path(scratch), args.max_threads)
        for row in rows:
            agree &= row.agree
            table.add_row(name, DESIGN_OF[name], str(row.waiters), str(row.max_threads), row.simulated, row.real,
                          "[green]yes[/]" if row.agree else "[red]no[/]")
    console.print(table)
    return EXPECTED if agree else UNEXPECTED


def _report(args: argparse.Namespace, console: Console) -> int:
    from vfslab.check.results import Results
    from vfslab.reports import formats

    results = Results.read(args.results)
    fmt = formats()[args.format]
    if fmt.show:
        fmt.show(results, console)
    else:
        sys.stdout.write(fmt.render(results))
    return EXPECTED if results.as_expected else UNEXPECTED


#: commands that hand their arguments to a parser of their own (`vfslab pmem --help` is the pmem tools' help)
DELEGATED = ("mount", "pmem", "storage")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # argparse leaves an option that starts a REMAINDER unparsed: it belongs to the delegated parser
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command not in DELEGATED:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if unknown:
        args.args = [*unknown, *args.args]
    console = Console()
    try:
        if args.command == "run":
            return _run(args, console)
        if args.command == "subjects":
            return _subjects(args, console)
        if args.command == "baseline":
            return _baseline(args, console)
        if args.command == "gate":
            return _gate(args, console)
        if args.command == "merge":
            return _merge(args, console)
        if args.command == "replay":
            return _replay(args, console)
        if args.command == "sim":
            from vfslab.simulate import sim

            verdict = sim(args.workload, args.param, args.strategy, args.seed, args.runs, args.depth, args.bound,
                          args.lockdep, args.out, console)
            return UNEXPECTED if args.expect and verdict != args.expect else EXPECTED
        if args.command == "explore":
            from vfslab.simulate import explore_plan

            explore_plan(args.plan, args.out, console)
            return EXPECTED
        if args.command == "crosscheck":
            return _crosscheck(args, console)
        if args.command == "mount":
            import importlib

            module, _, function = MOUNTS[args.kind].partition(":")
            mount = getattr(importlib.import_module(module), function)
            return mount(args.args, prog=f"vfslab mount {args.kind}")
        if args.command == "pmem":
            from vfslab.impl.pmem.tools import main as pmem_tools

            return pmem_tools(args.args)
        if args.command == "storage":
            from vfslab.check.storage.command import main as storage

            return storage(args.args)
        return _report(args, console)
    except KeyboardInterrupt:
        print("vfslab: interrupted", file=sys.stderr)
        return USAGE
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"vfslab: error: {message}", file=sys.stderr)
        return USAGE
