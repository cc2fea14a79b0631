"""The matrix in a terminal: scenario x subject -> verdict, then what needs reading."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from vfslab.check.results import Results
from vfslab.reports.summary import Summary, cell_text

SHOWN_LINES = 5
STYLE = {"pass": "green", "fail": "bold red", "hang": "bold red", "deadlock": "bold red", "error": "red",
         "unavailable": "dim"}


def render(results: Results, console: Console) -> None:
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
        console.print(f"\n[bold]{r.scenario} on {r.subject}[/]{held}: {r.verdict}")
        if r.reason and (r.verdict.startswith("deviation:") or not r.counterexample):
            console.print(f"  {r.reason}", markup=False)
        if r.counterexample:
            cx = r.counterexample
            # the held profile's difference; what the other profiles said is in report.md
            shown = cx.message.split("\nno other profile")[0].splitlines()
            for line in shown[:SHOWN_LINES] + ([f"... ({len(shown) - SHOWN_LINES} more)"] if len(shown) > SHOWN_LINES
                                                 else []):
                console.print(f"  {line}", markup=False)
            console.print(f"  program ({len(cx.ops)} ops): {cx.program_file}", markup=False)
            console.print(f"  replay: {cx.replay}", markup=False)
    if s.never_fired:
        console.print(f"\n[dim]rules that never fired: {', '.join(s.never_fired)}[/]")
