"""A simulated run made readable: its timeline, who holds what and waits for what at the end, the wait-for
graph as a Mermaid diagram, and the run as JSON that `vfslab replay` runs again."""

from __future__ import annotations

import json
import re
from pathlib import Path

from vfslab.sim.explore import Run

FAMILY = "sim"


def timeline(run: Run) -> list[str]:
    """One line per thing a thread did, numbered by the choice it came after."""
    return ["choice thread         action    what", *map(str, run.trace)]


def state(run: Run) -> list[str]:
    """At the end: each thread still there, what it holds and what it waits on."""
    if run.finding is None:
        return []
    world = run.finding.world
    lines = []
    for thread in sorted({*world.blocked(), *world.dead}):
        held = ", ".join(lock.name for lock in world.held.get(thread, ())) or "nothing"
        waits = world.waits.get(thread)
        doing = "cancelled" if thread in world.dead else f"waits for {waits.kind} {waits.name}" if waits else ""
        lines.append(f"{thread}: holds {held}; {doing}")
    return lines


def mermaid(run: Run) -> str:
    """The wait-for graph, for a Markdown report (an edge: waits for / is held by)."""
    if run.finding is None or not run.finding.blocked:
        return ""
    ids: dict[str, str] = {}

    def node(name: str) -> str:
        if name not in ids:
            ids[name] = f"n{len(ids)}"
        return ids[name]

    edges = [f"  {node(a)} --> {node(b)}" for a, b in run.finding.graph.edges]
    labels = [f'  {i}["{re.sub(chr(34), "", name)}"]' for name, i in ids.items()]
    return "\n".join(["```mermaid", "graph LR", *labels, *edges, "```"])


def describe(run: Run) -> str:
    verdict = run.finding.explain() if run.finding else f"{run.verdict}: the run did not end within its steps"
    return f"{verdict}\nparameters: {run.params}\nchoices: {run.choices or 'none (the default schedule)'}"


def save(run: Run, workload: str, path: Path) -> None:
    path.write_text(json.dumps({"family": FAMILY, "workload": workload, "params": run.params,
                                "choices": run.choices, "verdict": run.verdict}, indent=1) + "\n")


def load(data: dict) -> tuple[str, dict, list[int], str]:
    """(workload, params, choices, verdict) from a saved run."""
    try:
        return data["workload"], dict(data["params"]), [int(c) for c in data["choices"]], data["verdict"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a saved simulated run ({e})") from None
