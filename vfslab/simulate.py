"""`vfslab sim` and `vfslab explore`: search a simulated workload's schedules, show and keep what was found."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vfslab.sim import explore, sweep, timeline
from vfslab.sim.detect import PASS
from vfslab.sim.study import Study, conduct
from vfslab.sim.workloads import get


def parse_params(pairs: list[str]) -> dict:
    """`key=value` pairs; values are read as TOML values where they parse (10, true, ["a", "b"]), else text."""
    import tomllib

    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"parameter {pair!r}: write it as key=value")
        try:
            out[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = text
    return out


def show(run: explore.Run, console: Console) -> None:
    console.print(timeline.describe(run), markup=False)
    console.print("\ntimeline:", markup=False)
    for line in timeline.timeline(run):
        console.print(f"  {line}", markup=False)
    end = timeline.state(run)
    if end:
        console.print("\nat the end:", markup=False)
        for line in end:
            console.print(f"  {line}", markup=False)


def keep(run: explore.Run, workload: str, out: Path, name: str) -> Path:
    """The run as JSON (for `vfslab replay`) and as Markdown with its wait-for graph."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    timeline.save(run, workload, path)
    lines = [f"# {name}", "", "```", timeline.describe(run), "```", "", "```", *timeline.timeline(run), "```", "",
             *(f"- {line}" for line in timeline.state(run)), "", timeline.mermaid(run), ""]
    (out / f"{name}.md").write_text("\n".join(lines))
    return path


def sim(workload_name: str, pairs: list[str], strategy: str, seed: int, runs: int, depth: int, bound: int,
        lockdep: bool, out: Path, console: Console) -> str:
    """Search; print what the search covered, and the (minimal) deadlocking run if any; return the verdict."""
    workload = get(workload_name)
    study = Study(workload, workload.params(parse_params(pairs)), strategy, seed, runs, depth, bound, lockdep)
    result = conduct(study)
    colour = "green" if result.verdict == PASS else "bold red"
    console.print(f"[{colour}]{result.verdict}[/]: {workload_name} with {study.params}")
    if result.run is None:
        console.print(result.reason, markup=False)
        return result.verdict
    show(result.run, console)
    path = keep(result.run, workload_name, out, f"{workload_name}-{strategy}-{seed}")
    console.print(f"\nreplay: vfslab replay {path}", markup=False)
    return result.verdict


def explore_plan(path: Path, out: Path, console: Console) -> list[sweep.Row]:
    plan = sweep.Plan.read(path)
    rows = sweep.rows(plan)
    table = Table(*plan.sweep, "verdict", "schedules", "minimal schedule",
                  title=f"{plan.workload}: {plan.strategy} search of {len(rows)} designs")
    saved, notes = [], []
    for i, row in enumerate(rows):
        minimal = ""
        if row.minimal is not None:
            kept = keep(row.minimal, plan.workload, out, f"{path.stem}-{i}")
            minimal = str(row.minimal.choices or "default")
            notes.append(f"{row.design}: {_first_line(row.minimal)}\n  replay: vfslab replay {kept}")
        table.add_row(*map(str, row.design.values()), row.verdict, str(row.schedules), minimal)
        saved.append({"design": row.design, "verdict": row.verdict, "schedules": row.schedules,
                      "search": row.coverage, "choices": row.minimal.choices if row.minimal else None,
                      "explanation": _first_line(row.minimal) if row.minimal else ""})
    console.print(table)
    console.print(f"search: {rows[0].coverage}" if rows else "no designs", markup=False)
    for note in notes:
        console.print(note, markup=False)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{path.stem}.json").write_text(json.dumps({"plan": str(path), "workload": plan.workload,
                                                       "rows": saved}, indent=1) + "\n")
    console.print(f"table: {out / (path.stem + '.json')}", markup=False)
    return rows


def _first_line(run: explore.Run) -> str:
    return timeline.describe(run).splitlines()[0]
