"""Results in a terminal: a table per suite (scenario, subject, verdict: readable at 80 columns, no name cut), then
what needs reading."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table

from vfslab.check.results import DEADLOCK, ERROR, FAIL, HANG, PASS, UNAVAILABLE, Results
from vfslab.reports import Format
from vfslab.reports.summary import Summary, blind_lines, cell_text

SHOWN_LINES = 5
STYLE = {PASS: "green", FAIL: "bold red", HANG: "bold red", DEADLOCK: "bold red", ERROR: "red", UNAVAILABLE: "dim"}


def show(results: Results, console: Console) -> None:
    s = Summary.of(results)
    m = results.meta
    console.print(f"vfslab {m.vfslab_version} ({m.git_sha or 'no git'}), seed {m.seed}, kernel {m.kernel}, "
                  f"libfuse {m.libfuse or '?'}", markup=False)
    for table in _suite_tables(results):
        console.print(table)
    for name, reason in m.unavailable.items():
        console.print(f"[dim]{name} unavailable: {reason}[/]")
    for r in s.problems:
        held = f" ({r.profile})" if r.profile else ""
        console.print(f"\n[bold]{r.scenario} on {r.label}[/]{held}: {r.verdict}")
        if r.reason and (r.deviations or not r.counterexample):
            console.print(f"  {r.reason}", markup=False)
        if r.counterexample:
            cx = r.counterexample
            # the held profile's difference; what the other profiles said is in report.md
            shown = (cx.difference or cx.message).splitlines()
            for line in shown[:SHOWN_LINES] + ([f"... ({len(shown) - SHOWN_LINES} more)"] if len(shown) > SHOWN_LINES
                                                 else []):
                console.print(f"  {line}", markup=False)
            console.print(f"  program ({len(cx.ops)} ops): {cx.program_file}", markup=False)
            console.print(f"  replay: {cx.replay}", markup=False)
    for line in blind_lines(s.blind):
        console.print(f"\n[dim]{line}[/]", markup=True, highlight=False)


def _suite_tables(results: Results) -> list[Table]:
    """One table per suite, holding only the subjects that ran it: each scenario a line of its own with its subjects
    under it, so that no name is cut at 80 columns."""
    suites: dict[str, list] = {}
    for r in results.records:
        suites.setdefault(r.suite, []).append(r)
    tables = []
    for suite, records in suites.items():
        table = Table(title=f"suite {suite}", title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("scenario / subject", no_wrap=True)
        table.add_column("verdict", overflow="fold")
        for scenario in dict.fromkeys(r.scenario for r in records):
            table.add_row(f"[bold]{scenario}[/]", "")
            for r in (r for r in records if r.scenario == scenario):
                style = STYLE.get(r.verdict.split(":")[0], "yellow")
                table.add_row(f"  {r.label}", f"[{style}]{cell_text(r)}[/]")
        tables.append(table)
    return tables


def render(results: Results) -> str:
    """The same as plain text."""
    out = io.StringIO()
    show(results, Console(file=out, width=120, color_system=None))
    return out.getvalue()


FORMAT = Format("terminal", render, show=show)
