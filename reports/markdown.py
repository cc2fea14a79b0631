"""The conformance report as Markdown (report.md beside results.json)."""

from __future__ import annotations

from vfslab.check.results import Results
from vfslab.reports import Format
from vfslab.reports.summary import Summary, cell_text


def render(results: Results) -> str:
    s = Summary.of(results)
    m = results.meta
    out = [
        "# vfslab conformance report",
        "",
        f"vfslab {m.vfslab_version} ({m.git_sha or 'no git'}), seed {m.seed}, kernel {m.kernel}, "
        f"libfuse {m.libfuse or '?'}, started {m.started}, {m.seconds:g} s.",
        "",
        "Subjects: " + ", ".join(f"{k} {v}" for k, v in m.subjects.items()),
        "",
        "| scenario | " + " | ".join(s.subjects) + " |",
        "|---|" + "---|" * len(s.subjects),
    ]
    for scenario in s.scenarios:
        out.append(f"| {scenario} | " + " | ".join(cell_text(s.cells.get((scenario, subj))) for subj in s.subjects)
                   + " |")
    for name, reason in m.unavailable.items():
        out += ["", f"{name} unavailable: {reason}"]
    for r in s.problems:
        held = f"Held to profile `{r.profile}`; " if r.profile else ""
        out += ["", f"## {r.scenario} on {r.label}: {r.verdict}", "",
                f"{held}{r.examples} examples, {r.steps} steps, {r.seconds:g} s."]
        if r.reason:
            out += ["", r.reason]
        if r.counterexample:
            cx = r.counterexample
            out += ["", "```", cx.message, "```", "", "Program:", "", "```json", str(cx.layers)]
            out += [str(op) for op in cx.ops]
            out += ["```", "", f"Replay: `{cx.replay}`"]
            if cx.graph:
                out += ["", "Wait-for graph (a thread points at what it waits for; a resource at who holds it):", "",
                        cx.graph]
    if s.never_fired:
        out += ["", "## Rules that never fired", "", ", ".join(f"`{r}`" for r in s.never_fired)]
    return "\n".join(out) + "\n"


FORMAT = Format("markdown", render, "report.md")
