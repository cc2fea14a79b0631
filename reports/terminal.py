"""The matrix in a terminal: scenario x subject -> verdict, then what needs reading."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from vfslab.check.results import DEADLOCK, ERROR, FAIL, HANG, PASS, UNAVAILABLE, Results
from vfslab.reports import Format
from vfslab.reports.summary import Summary, cell_text

SHOWN_LINES = 5
STYLE = {PASS: "green", FAIL: "bold red", HANG: "bold red", DEADLOCK: "bold red", ERROR: "red", UNAVAILABLE: "dim"}


def show(results: Results, console: Console) -> None:
    s = Summary.of(results)
    m = results.meta
    table = Table(title=f"vfslab {m.vfslab_version} ({m.git_sha or 'no git'}) seed {m.seed}, kernel {m.kernel}, "
                  f"libfuse {m.libfuse or '?'}")
    table.add_column("scenario")
    for subject in s.subjects:
        table.add_column(subject)
    for scenario in s.scenarios:
        row = []
        for subject in s.subjects:
            r = s.cells.get((scenario, subject))
            style = STYLE.get(r.verdict.split(":")[0], "yellow") if r else "dim"
            row.append(f"[{style}]{cell_text(r)}[/]")
        table.add_row(scenario, *row)
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
    if s.never_fired:
        console.print(f"\n[dim]rules that never fired: {', '.join(s.never_fired)}[/]")


def render(results: Results) -> str:
    """The same as plain text."""
    out = io.StringIO()
    show(results, Console(file=out, width=120, color_system=None))
    return out.getvalue()


FORMAT = Format("terminal", render, show=show)
