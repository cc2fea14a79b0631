"""The conformance report as Markdown (report.md beside results.json)."""

from __future__ import annotations

from vfslab.check.results import Results
from vfslab.reports import Format
from vfslab.reports.summary import Summary, blind_lines, cell_text, exception


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
    out += _coverage(s)
    return "\n".join(out) + "\n"


def _coverage(s: Summary) -> list[str]:
    """Per family, each rule and edge with how often it fired, rarest first; then what the run left blind."""
    out = ["", "## Rule coverage", "", "How often each rule decided an outcome over all records, rarest first; an edge "
           "(`RULE@LIMIT-1`, `@LIMIT`, `@LIMIT+1`) counts outcomes decided at it."]
    for family, rules in s.fired.items():
        counted = rules | s.edges.get(family, {})
        if not counted:
            continue
        out += ["", f"### {family or '(no family named)'}", "", "| rule or edge | fired | note |", "|---|---|---|"]
        out += [f"| `{key}` | {n} | {exception(key) if not n else ''} |"
                for key, n in sorted(counted.items(), key=lambda kv: (kv[1], kv[0]))]
    lines = blind_lines(s.blind)
    if lines:
        out += ["", "## Not reached", "", *(f"- {line}" for line in lines)]
    return out


FORMAT = Format("markdown", render, "report.md")
