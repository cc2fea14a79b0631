"""`make mutants`: the bench's power, measured by mutation testing of `impl/` (docs/mutants.md).

Each family (area) names the implementation files to mutate and the scenarios and subjects `vfslab run` judges
them by. cosmic-ray enumerates and applies the mutation operators (its library: operators, occurrences, the
mutated source); this driver does the rest, because the test is not a test command but a verdict table: a mutant
is killed when `vfslab run` on its family's scenarios exits 1 with some record's verdict unexpected (read from the
results.json it writes), survives when every verdict is the expected one, times out (a kill, counted apart) when
the run outlives --budget, and is an error when vfslab itself did not finish its table (a crash, a missing subject).

Mutants are applied to a copy of the repository, never to this checkout: a clone of its HEAD in WORK/tree with a
venv of its own, whose `vfslab` (and the fork server and FUSE daemons it starts with its own interpreter) imports
the mutated files. A file is restored after every run, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

MAIN = Path(__file__).resolve().parents[1]
WORK = Path("/var/tmp/vfslab-mutants")
#: operators that need arguments (which variable to replace by which) are left out: we have no such pairs to give
SKIPPED_OPERATORS = ("core/VariableReplacer", "core/VariableInserter")
#: calls whose lines no verdict can see: any call on a logger, and argparse's (the daemons' --help text)
LOGGERS = {"log", "logger", "logging"}
ARGPARSE_CALLS = {"ArgumentParser", "add_argument", "add_parser", "add_subparsers", "add_argument_group",
                  "add_mutually_exclusive_group", "print_help", "print_usage", "set_defaults"}
#: functions no scenario calls: the argparse parser builders, the version a subject reports to `vfslab subjects`
QUIET_FUNCTIONS = {"parser", "build_parser", "version", "libfuse_version", "usage"}
#: the exit status vfslab gives a usage or environment error (one line, no table)
USAGE_ERROR = 2
#: seconds a timed-out run gets after SIGTERM to tear its mounts down before it is killed
TEARDOWN_GRACE = 30


@dataclass(frozen=True)
class Family:
    """An area of impl/: what is mutated, and which scenarios on which subjects judge it."""

    name: str
    sources: tuple[str, ...]  # globs, relative to the repository
    scenarios: tuple[str, ...]
    subjects: tuple[str, ...]
    excluded: tuple[str, ...] = ()  # files matched by `sources` that no scenario of the family reaches


FAMILIES = (
    Family("union", ("impl/union/*.py",), ("scenarios/union",), ("union-fuse",)),
    Family("pmem", ("impl/pmem/*.py",), ("scenarios/pmem", "scenarios/posix/pmem-fuse.toml"),
           ("pmem-router", "pmem-fuse"),
           # the seed's command-line tools (mkfs.pmemfile, pmemfile-ls ...): no scenario runs them
           excluded=("impl/pmem/tools.py",)),
    Family("vmblock", ("impl/block/*.py",), ("scenarios/vmblock",), ("vmblock-fuse", "vmblock-fuse-upstream")),
    Family("storage", ("impl/ovlfs/*.py", "impl/ovlfs/storage/*.py"), ("scenarios/storage",),
           ("storage-dir", "storage-file", "storage-pmem", "ovlfs-dir", "ovlfs-file", "ovlfs-pmem"),
           # loads a user's python:MODULE:CLASS method; the scenarios' subjects are our own three methods
           excluded=("impl/ovlfs/storage/loader.py",)),
)
BY_NAME = {f.name: f for f in FAMILIES}


@dataclass(frozen=True)
class Mutant:
    """One occurrence of one operator in one file: cosmic-ray's (operator, occurrence) within the module."""

    family: str
    path: str  # relative to the repository
    operator: str
    occurrence: int
    line: int

    @property
    def id(self) -> str:
        return f"{self.path}:{self.operator.removeprefix('core/')}:{self.occurrence}"

    @property
    def slug(self) -> str:
        """The id as one file name (its run's folder)."""
        return self.id.replace("/", "_").replace(":", "-")


@dataclass
class Outcome:
    """What one run of a family's scenarios came to."""

    status: str  # killed, survived, timeout, error
    detail: str  # the unexpected records, or what went wrong
    seconds: float = 0.0
    records: list[dict] = field(default_factory=list)


# --- enumerating: cosmic-ray's operators over our files, minus the lines no verdict can see -----------------------


def quiet_lines(source: str) -> set[int]:
    """Lines a mutation of which no scenario could notice: docstrings, logging and argparse calls, the bodies of
    the parser builders and version functions, `if __name__ == "__main__":` blocks."""
    quiet: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if _docstring(node) or _quiet_node(node):
            quiet.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return quiet


Span = tuple[tuple[int, int], tuple[int, int]]  # ((line, column), (line, column)), the end exclusive


def annotation_spans(source: str) -> list[Span]:
    """Where the type annotations are, in a module that never evaluates them (`from __future__ import
    annotations`): a mutation there (`str | None` made `str - None`) is equivalent by construction."""
    tree = ast.parse(source)
    lazy = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations"
               for a in n.names) for n in tree.body)
    if not lazy:
        return []
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *(p for p in (a.vararg, a.kwarg) if p)]
            found += [p.annotation for p in params if p.annotation] + ([node.returns] if node.returns else [])
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
    return [((e.lineno, e.col_offset), (e.end_lineno or e.lineno, e.end_col_offset or 0)) for e in found]


def _in_spans(position: tuple[int, int], spans: list[Span]) -> bool:
    return any(start <= position < end for start, end in spans)


def _docstring(node: ast.AST) -> bool:
    """A string statement: a docstring (module, class, function) or a string left as a comment."""
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _quiet_node(node: ast.AST) -> bool:
    if isinstance(node, ast.FunctionDef):
        return node.name in QUIET_FUNCTIONS
    if isinstance(node, ast.Call):
        return _quiet_call(node.func)
    return isinstance(node, ast.If) and _is_main_guard(node.test)


def _quiet_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        logger = isinstance(func.value, ast.Name) and func.value.id in LOGGERS
        return logger or func.attr in ARGPARSE_CALLS
    return isinstance(func, ast.Name) and func.id in ARGPARSE_CALLS


def _is_main_guard(test: ast.expr) -> bool:
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators))


def family_files(family: Family, root: Path) -> list[Path]:
    found = {p for pattern in family.sources for p in root.glob(pattern) if p.name != "__init__.py" or
             p.stat().st_size > 200}  # a package's two-line __init__ holds nothing to mutate
    return sorted(p for p in found if str(p.relative_to(root)) not in family.excluded)


def operators() -> list[tuple[str, object]]:
    """cosmic-ray's core operators (name, instance), those that take no arguments."""
    from cosmic_ray.plugins import get_operator, operator_names

    return [(name, get_operator(name)()) for name in sorted(operator_names()) if name not in SKIPPED_OPERATORS]


def file_mutants(family: str, root: Path, path: Path, ops: list[tuple[str, object]]) -> list[Mutant]:
    """Every (operator, occurrence) cosmic-ray would apply to `path`, counted as its own MutationVisitor counts
    them (pre-order over the parso tree), kept where the line is not quiet and the place not an annotation."""
    from cosmic_ray.ast import ast_nodes, get_ast

    source = path.read_text()
    quiet = quiet_lines(source)
    annotations = annotation_spans(source)
    nodes = list(ast_nodes(get_ast(source)))
    rel = str(path.relative_to(root))
    found = []
    for name, op in ops:
        occurrence = 0
        for node in nodes:
            for start, _end in op.mutation_positions(node):
                if start[0] not in quiet and not _in_spans(start, annotations):
                    found.append(Mutant(family, rel, name, occurrence, start[0]))
                occurrence += 1
    return found


def enumerate_family(family: Family, root: Path) -> list[Mutant]:
    ops = operators()
    return [m for path in family_files(family, root) for m in file_mutants(family.name, root, path, ops)]


# --- applying ----------------------------------------------------------------------------------------------------


def mutated_source(mutant: Mutant, source: str) -> str | None:
    """The file with the mutation applied, or None when it changes nothing or does not compile (not a mutant)."""
    if mutant.operator in PROBES:
        mutated = PROBES[mutant.operator](source)
    else:
        from cosmic_ray.mutating import mutate_code
        from cosmic_ray.plugins import get_operator

        mutated = mutate_code(source, get_operator(mutant.operator)(), mutant.occurrence)
    if mutated is None or mutated == source:
        return None
    try:
        with warnings.catch_warnings():  # a mutant's `x is not 0` warns; it is still a mutant
            warnings.simplefilter("ignore")
            compile(mutated, mutant.path, "exec")
    except SyntaxError:
        return None
    return mutated


def unified_diff(path: str, before: str, after: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        f"a/{path}", f"b/{path}", n=2))


def _forget_bytecode(path: Path) -> None:
    """Drop the module's cached bytecode: a pyc records the source's mtime in whole seconds and its size, so a
    mutant of the same size written within the second would otherwise run the previous code."""
    for pyc in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        pyc.unlink(missing_ok=True)


@contextlib.contextmanager
def applied(root: Path, mutant: Mutant, mutated: str) -> Iterator[None]:
    """The mutant written into `root` for the block; the original back afterwards, whatever happens in it."""
    path = root / mutant.path
    original = path.read_bytes()
    try:
        path.write_text(mutated)
        _forget_bytecode(path)
        yield
    finally:
        path.write_bytes(original)
        _forget_bytecode(path)


@contextlib.contextmanager
def terminations_as_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt as Ctrl-C does, so `applied` restores the file on either."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _probed_statement(source: str) -> ast.stmt:
    """The first statement of UnionOps.getattr in impl/union/serve.py: every lookup of the mount runs it, and
    only the daemon does (the bench never calls it in its own process)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == "getattr":
            return node.body[0]
    raise LookupError("no getattr in the probed file")


def _probe_insert(statement: str) -> Callable[[str], str]:
    """A probe: `statement` inserted before the probed statement, at its indentation."""

    def insert(source: str) -> str:
        first = _probed_statement(source)
        lines = source.splitlines(keepends=True)
        lines.insert(first.lineno - 1, f"{' ' * first.col_offset}{statement}\n")
        return "".join(lines)

    return insert


#: hand-made mutants that show a mutation is live in the daemons: the fatal one must be killed, the no-op survive
PROBES: dict[str, Callable[[str], str]] = {
    "probe/fatal": _probe_insert('raise SystemExit("mutant probe: fatal")'),
    "probe/no-op": _probe_insert("_probe = None  # mutant probe: changes nothing"),
}
PROBE_FILE = "impl/union/serve.py"


def probe_mutants(root: Path) -> list[Mutant]:
    line = _probed_statement((root / PROBE_FILE).read_text()).lineno
    return [Mutant("union", PROBE_FILE, name, 0, line) for name in PROBES]


# --- sampling ----------------------------------------------------------------------------------------------------


def sample(mutants: list[Mutant], n: int, seed: int, family: str,
           usable: Callable[[Mutant], bool] = lambda _: True) -> tuple[list[Mutant], int]:
    """`n` mutants drawn with random.Random of (seed, family), in the drawn order, at most one per line (each
    binary operator has ten replacements: a sample of near-twins would say little about the rest), passing over
    those `usable` rejects (a mutation that changes nothing or does not compile); also how many were passed over.
    The family is in the seed so one family's sample does not depend on which others are run."""
    order = sorted(mutants, key=lambda m: (m.path, m.operator, m.occurrence))
    random.Random(f"{seed}/{family}").shuffle(order)
    chosen: list[Mutant] = []
    lines: set[tuple[str, int]] = set()
    passed = 0
    for m in order:
        if len(chosen) == n:
            break
        if (m.path, m.line) in lines:
            continue
        if usable(m):
            chosen.append(m)
            lines.add((m.path, m.line))
        else:
            passed += 1
    return chosen, passed


# --- running and judging -----------------------------------------------------------------------------------------


def vfslab_command(tree: Path, family: Family, seed: int, out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """The tree's own vfslab, on the family's scenarios and subjects (the quick run unless `extra` says more)."""
    subjects = [arg for s in family.subjects for arg in ("--subject", s)]
    return [str(tree / ".venv/bin/vfslab"), "run", *family.scenarios, *subjects, "--seed", str(seed),
            "--out", str(out), *extra]


def vfslab_extra(args: argparse.Namespace) -> tuple[str, ...]:
    """More than the quick run, when asked: to tell a survivor of the budget from one no program reaches."""
    return ((("--examples", str(args.examples)) if args.examples else ())
            + (("--budget", f"{args.scenario_seconds:g}") if args.scenario_seconds else ()))


def _environment(tree: Path, run_id: str, tmp: Path) -> dict[str, str]:
    """The tree's venv first on PATH (its vfslab-union and pmem tools), no bytecode written for mutated modules,
    temporary files (the run's scratch and mount points) in a folder of the run's own, and a marker by which
    the run's leftover processes are found."""
    env = dict(os.environ)
    env["PATH"] = f"{tree / '.venv/bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["TMPDIR"] = str(tmp)
    env["VFSLAB_MUTANT_RUN"] = run_id
    env.pop("VIRTUAL_ENV", None)
    return env


def _marked_pids(run_id: str) -> list[int]:
    """The processes this run started that are still alive (the fork server and daemons leave our session)."""
    marker = f"VFSLAB_MUTANT_RUN={run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _clean_up(run_id: str, tmp: Path) -> None:
    """What a killed run may leave: its processes (by pid, found by the run's marker) and mounts under its
    temporary folder (lazily unmounted once their daemons are gone)."""
    for pid in _marked_pids(run_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    prefix = str(tmp) + "/"
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(tmp, ignore_errors=True)


def run_family(tree: Path, family: Family, seed: int, budget: float, out: Path,
               extra: tuple[str, ...] = ()) -> tuple[int | None, float]:
    """Run the family's scenarios on `tree` into `out`: (exit code or None when timed out, seconds)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run_id = f"{out.name}-{os.getpid()}-{time.monotonic_ns()}"
    tmp = WORK / "tmp" / run_id
    tmp.mkdir(parents=True)
    started = time.monotonic()
    with open(out / "vfslab.log", "w") as log:
        proc = subprocess.Popen(vfslab_command(tree, family, seed, out, extra), cwd=tree, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=_environment(tree, run_id, tmp),
                                start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            if proc.poll() is None:  # timed out, or we were interrupted: let vfslab unmount, then make sure
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=TEARDOWN_GRACE)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            _clean_up(run_id, tmp)
    return code, round(time.monotonic() - started, 1)


def _job(record: dict) -> tuple[str, str, str]:
    return record["scenario"], record["subject"], record.get("placement", "same")


def classify(code: int | None, results: Path, jobs: set[tuple[str, str, str]] | None = None) -> Outcome:
    """A run's outcome from its exit code and results.json (`jobs`: the records the baseline run had)."""
    if code is None:
        return Outcome("timeout", "the run outlived the budget")
    try:
        records = json.loads(results.read_text())["records"]
    except (OSError, ValueError, KeyError) as e:
        return Outcome("error", f"exit {code}, no results.json to read ({type(e).__name__})")
    unavailable = [r for r in records if r["verdict"] == "unavailable"]
    if unavailable:
        return Outcome("error", f"subject unavailable: {unavailable[0]['subject']}: {unavailable[0].get('reason')}",
                       records=records)
    if jobs is not None and {_job(r) for r in records} != jobs:
        return Outcome("error", "the run's records are not the baseline's", records=records)
    unexpected = [r for r in records if r["verdict"] != r["expected"]]
    if code == 0 and not unexpected:
        return Outcome("survived", "every verdict as expected", records=records)
    if code == 1 and unexpected:
        detail = "; ".join(f"{r['scenario']} on {r['subject']}: {r['verdict']} (expected {r['expected']})"
                           for r in unexpected)
        return Outcome("killed", detail, records=records)
    return Outcome("error", f"exit {code} with {len(unexpected)} unexpected verdict(s)", records=records)


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


# --- the tree the mutants live in --------------------------------------------------------------------------------


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def prepare_tree(main: Path, tree: Path, rev: str, console: Console) -> str:
    """`tree` at `main`'s commit `rev`, clean, with its own venv (vfslab installed editable from the tree): the
    commit. Committed files only: what this checkout has not committed is not measured."""
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}", cwd=main)
    if not (tree / ".git").exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(main), str(tree)], check=True)
    _git("fetch", "--quiet", str(main), commit, cwd=tree)
    _git("checkout", "--quiet", "--force", "--detach", commit, cwd=tree)
    _git("clean", "--quiet", "-fd", cwd=tree)  # ignored files (the venv, caches) stay
    stamp = tree / ".venv/.installed"
    wanted = hashlib.sha256((tree / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        console.print(f"[dim]making the mutants' venv in {tree / '.venv'}[/dim]")
        subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", "--clear", str(tree / ".venv")],
                       check=True)
        pip = [str(tree / ".venv/bin/pip"), "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", ".[dev]"], cwd=tree, check=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore:Editable installation"})
        stamp.write_text(wanted)
    return commit


# --- the report --------------------------------------------------------------------------------------------------


@dataclass
class Result:
    mutant: Mutant
    outcome: Outcome
    diff: str


@dataclass
class Tally:
    """A family's count: every mutant enumerated, those drawn (`pending`, run in order) and their results."""

    family: str
    total: int
    pending: list[Mutant] = field(default_factory=list)
    passed_over: int = 0  # drawn but no mutant: the mutation changed nothing or did not compile
    results: list[Result] = field(default_factory=list)

    @property
    def sampled(self) -> int:
        return len(self.pending)

    def count(self, status: str) -> int:
        return sum(r.outcome.status == status for r in self.results)

    @property
    def kill_rate(self) -> float | None:
        """Killed and timed out over every mutant that got a verdict (errors are left out: they judged nothing)."""
        judged = self.count("killed") + self.count("timeout") + self.count("survived")
        return (self.count("killed") + self.count("timeout")) / judged if judged else None


def _rate(t: Tally) -> str:
    return "-" if t.kill_rate is None else f"{100 * t.kill_rate:.0f}%"


def table(tallies: list[Tally]) -> Table:
    t = Table(title="mutants: kill rates per family")
    for column in ("family", "mutants", "sampled", "killed", "timeout", "survived", "error", "kill rate"):
        t.add_column(column, justify="left" if column == "family" else "right")
    for f in tallies:
        t.add_row(f.family, str(f.total), str(f.sampled), str(f.count("killed")), str(f.count("timeout")),
                  str(f.count("survived")), str(f.count("error")), _rate(f))
    return t


def rerun_command(mutant: Mutant, args: argparse.Namespace) -> str:
    """The command that runs `mutant` again, into a folder of its own (not over this run's report)."""
    more = "".join(f" --{k.replace('_', '-')} {v:g}" for k, v in (("examples", args.examples),
                                                                  ("scenario_seconds", args.scenario_seconds)) if v)
    return (f"python bench/mutants.py --only {mutant.id} --seed {args.seed} --budget {args.budget:g}{more}"
            f" --out {args.out / 'rerun'}")


def write_report(out: Path, tallies: list[Tally], meta: dict, args: argparse.Namespace) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "families": [
        {"family": t.family, "mutants": t.total, "sampled": t.sampled, "passed_over": t.passed_over,
         **{s: t.count(s) for s in ("killed", "timeout", "survived", "error")}, "kill_rate": t.kill_rate,
         "results": [{"id": r.mutant.id, **asdict(r.mutant), "status": r.outcome.status,
                      "detail": r.outcome.detail, "seconds": r.outcome.seconds, "diff": r.diff,
                      "rerun": rerun_command(r.mutant, args)} for r in t.results]}
        for t in tallies]}
    (out / "mutants.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "report.md").write_text(markdown(tallies, meta, args))


def markdown(tallies: list[Tally], meta: dict, args: argparse.Namespace) -> str:
    lines = [f"# Mutants: commit {meta['commit'][:12]}, seed {meta['seed']}, sample {meta['sample']} per family, "
             f"budget {meta['budget']:g} s", "",
             "| family | mutants | sampled | killed | timeout | survived | error | kill rate |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {t.family} | {t.total} | {t.sampled} | {t.count('killed')} | {t.count('timeout')} | "
              f"{t.count('survived')} | {t.count('error')} | {_rate(t)} |" for t in tallies]
    lines += ["", f"{meta['seconds']:.0f} s in all.", ""]
    for t in tallies:
        survivors = [r for r in t.results if r.outcome.status == "survived"]
        if survivors:
            lines += [f"## {t.family}: survivors", ""]
            for r in survivors:
                lines += [f"### {r.mutant.path}:{r.mutant.line} ({r.mutant.operator})", "",
                          f"`{r.mutant.id}`", "", "```diff", r.diff.rstrip("\n"), "```", ""]
        others = [r for r in t.results if r.outcome.status in ("error", "timeout")]
        if others:
            lines += [f"## {t.family}: errors and timeouts", ""]
            lines += [f"- `{r.mutant.id}` ({r.mutant.path}:{r.mutant.line}): {r.outcome.status}, "
                      f"{r.outcome.detail}; rerun: `{rerun_command(r.mutant, args)}`" for r in others]
            lines.append("")
    return "\n".join(lines)


# --- the command -------------------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/mutants.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and of every vfslab run (default 0)")
    p.add_argument("--sample", type=int, default=10, help="mutants drawn per family (default 10)")
    p.add_argument("--budget", type=float, default=300,
                   help="seconds one mutant's vfslab run may take before it is killed: a timeout (default 300)")
    p.add_argument("--examples", type=int, help="generated programs per stateful scenario, for vfslab run "
                   "(default: the quick run's 30)")
    p.add_argument("--scenario-seconds", type=float, help="seconds per scenario and subject, for vfslab run "
                   "(default: the quick run's 15)")
    p.add_argument("--family", action="append", choices=[f.name for f in FAMILIES],
                   help="a family to run (repeatable; default: all)")
    p.add_argument("--only", action="append", metavar="ID", help="run this mutant only (repeatable; its id as the "
                   "report gives it, e.g. impl/union/union.py:ReplaceTrueWithFalse:3)")
    p.add_argument("--probe", action="store_true", help="run the two probes instead: a fatal mutation of "
                   "union-fuse's getattr (must be killed) and a no-op one (must survive)")
    p.add_argument("--list", action="store_true", help="enumerate and sample only: print the sample, run nothing")
    p.add_argument("--commit", default="HEAD", help="the commit of this checkout to measure (default HEAD)")
    p.add_argument("--out", type=Path, default=Path("out/mutants"), help="output folder (default out/mutants)")
    p.add_argument("--work", type=Path, default=WORK, help=f"where the mutated copy lives (default {WORK})")
    return p.parse_args(argv)


def _by_id(ids: list[str], root: Path) -> dict[str, list[Mutant]]:
    """The mutants named by id, by family (the family is the one whose sources hold the file)."""
    wanted: dict[str, list[Mutant]] = {}
    for mid in ids:
        path, _, rest = mid.partition(":")
        op, _, occ = rest.rpartition(":")
        family = next((f for f in FAMILIES if root / path in family_files(f, root)), None)
        if family is None or not occ.isdigit():
            raise SystemExit(f"mutants: not a mutant id: {mid}")
        operator = op if op.startswith("probe/") else f"core/{op}"
        mutant = next((m for m in enumerate_family(family, root) if m.path == path and m.operator == operator
                       and m.occurrence == int(occ)), None) or (
            next((m for m in probe_mutants(root) if m.operator == operator), None))
        if mutant is None:
            raise SystemExit(f"mutants: no such mutant in {path}: {mid}")
        wanted.setdefault(family.name, []).append(mutant)
    return wanted


def _usable(root: Path) -> Callable[[Mutant], bool]:
    return lambda m: mutated_source(m, (root / m.path).read_text()) is not None


def plan(args: argparse.Namespace, root: Path) -> list[Tally]:
    """Each family's tally with the mutants to run."""
    if args.probe:
        return [Tally("union", len(PROBES), probe_mutants(root))]
    if args.only:
        return [Tally(name, len(ms), ms) for name, ms in _by_id(args.only, root).items()]
    tallies = []
    for f in FAMILIES:
        if not args.family or f.name in args.family:
            every = enumerate_family(f, root)
            chosen, passed = sample(every, args.sample, args.seed, f.name, _usable(root))
            tallies.append(Tally(f.name, len(every), chosen, passed))
    return tallies


def run_mutant(tree: Path, mutant: Mutant, args: argparse.Namespace, jobs: set) -> Result:
    source = (tree / mutant.path).read_text()
    mutated = mutated_source(mutant, source)
    if mutated is None:
        return Result(mutant, Outcome("error", "the mutation changes nothing or does not compile"), "")
    out = args.out.resolve() / "runs" / mutant.slug
    with applied(tree, mutant, mutated):
        code, seconds = run_family(tree, BY_NAME[mutant.family], args.seed, args.budget, out, vfslab_extra(args))
    outcome = classify(code, out / "results.json", jobs)
    if outcome.status == "error" and code not in (0, 1, None):
        outcome.detail += f": {_last_line(out / 'vfslab.log')}"
    outcome.seconds = seconds
    return Result(mutant, outcome, unified_diff(mutant.path, source, mutated))


def baseline(tree: Path, family: Family, args: argparse.Namespace, console: Console) -> set:
    """Run the unmutated tree: every verdict must be the expected one, or no kill rate means anything."""
    out = args.out.resolve() / "runs" / f"baseline-{family.name}"
    code, seconds = run_family(tree, family, args.seed, max(args.budget, 600), out, vfslab_extra(args))
    outcome = classify(code, out / "results.json")
    if outcome.status != "survived":
        raise SystemExit(f"mutants: the unmutated tree is not all as expected for {family.name} ({outcome.status}: "
                         f"{outcome.detail}); see {out / 'report.md'}")
    console.print(f"baseline {family.name}: every verdict as expected ({len(outcome.records)} records, {seconds} s)")
    return {_job(r) for r in outcome.records}


STYLE = {"killed": "green", "timeout": "yellow", "survived": "red", "error": "magenta"}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    console = Console()
    tree = args.work / "tree"
    started = time.monotonic()
    commit = prepare_tree(MAIN, tree, args.commit, console)
    tallies = plan(args, tree)
    if args.list:
        for t in tallies:
            console.print(f"{t.family}: {t.total} mutants, sampled {t.sampled} (passed over {t.passed_over})")
            for m in t.pending:
                console.print(f"  {m.id}  (line {m.line})")
        return 0
    meta = {"commit": commit, "seed": args.seed, "sample": args.sample, "budget": args.budget,
            "vfslab_run": list(vfslab_extra(args)) or ["quick"],
            "families": [t.family for t in tallies], "seconds": 0.0}
    with terminations_as_interrupts():
        try:
            for t in tallies:
                jobs = baseline(tree, BY_NAME[t.family], args, console)
                for i, m in enumerate(t.pending, 1):
                    console.print(f"[dim]{t.family} {i}/{t.sampled}: {m.id} (line {m.line})[/dim]")
                    r = run_mutant(tree, m, args, jobs)
                    t.results.append(r)
                    style = STYLE[r.outcome.status]
                    console.print(f"  [{style}]{r.outcome.status}[/{style}] in {r.outcome.seconds} s: "
                                  f"{r.outcome.detail[:160]}")
                    if r.outcome.status in ("error", "timeout"):
                        console.print(f"  rerun: {rerun_command(m, args)}")
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: the tree is restored; the report holds what ran[/yellow]")
        finally:
            meta["seconds"] = round(time.monotonic() - started, 1)
            write_report(args.out, tallies, meta, args)
    console.print(table(tallies))
    for t in tallies:
        for r in t.results:
            if r.outcome.status == "survived":
                console.print(f"[red]survived[/red] {r.mutant.path}:{r.mutant.line} {r.mutant.operator}")
                console.print(r.diff.rstrip("\n"), markup=False, highlight=False)
    console.print(f"report: {args.out / 'report.md'}, {args.out / 'mutants.json'}")
    if args.probe:
        return 0 if [r.outcome.status for r in tallies[0].results] == ["killed", "survived"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
