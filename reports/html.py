"""The conformance report as one self-contained HTML page (report.html beside results.json).

It shows the run's metadata, a verdict matrix per suite, each problem with its shrunk program and replay command,
a simulated deadlock's wait-for graph and timeline drawn in SVG, and rule coverage per family. Everything is
inline (CSS, SVG; no script), and a Content-Security-Policy forbids the page any request, so it reads the same
from a CI artefact, a mail attachment or a machine with no network. Every string from the results is escaped.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from html import escape
from itertools import pairwise

from vfslab.check.results import ERROR, PASS, UNAVAILABLE, Counterexample, Record, Results
from vfslab.reports import Format
from vfslab.reports.summary import Summary, blind_lines, exception

#: a verdict cell's background, by the verdict's class (see verdict_class)
COLOURS = {"pass": "#bfe5c6", "deviation": "#ffd866", "fail": "#f4a29a", "error": "#8b1a1a", "unavailable": "#d9d9d9"}

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1d1d1f; background: #fff; margin: 0 auto; max-width: 82rem;
       padding: 0 1rem 3rem; overflow-wrap: break-word; }
h1 { font-size: 1.6rem; margin: 1rem 0 .3rem; }
h2 { font-size: 1.3rem; border-bottom: 1px solid #ccc; margin-top: 2.2rem; }
h3 { font-size: 1.1rem; margin: 1.4rem 0 .4rem; } .problem h3 { margin-top: 0; }
h4 { font-size: 1rem; margin: 1rem 0 .3rem; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: .3rem 0; }
th, td { border: 1px solid #c8c8c8; padding: .25rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #f0f0f0; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9em; }
pre { background: #f5f5f5; border: 1px solid #e2e2e2; padding: .5rem .7rem; white-space: pre-wrap;
      overflow-wrap: anywhere; margin: .3rem 0; }
.matrix td { text-align: center; white-space: nowrap; min-width: 7rem; }
.matrix th { white-space: nowrap; } .matrix th[scope=row] { font-weight: normal; }
.v a { color: inherit; }
.pass { background: var(--pass); } .deviation { background: var(--deviation); } .fail { background: var(--fail); }
.error { background: var(--error); color: #fff; } .unavailable { background: var(--unavailable); color: #555; }
td.unexpected { outline: 3px solid #111; outline-offset: -3px; font-weight: bold; }
.v small { display: block; font-size: .8em; }
.badge { border-radius: .3rem; padding: 0 .4rem; white-space: nowrap; }
.banner { display: inline-block; padding: .3rem .7rem; border-radius: .3rem; font-weight: bold; }
.legend span { display: inline-block; margin: .2rem .6rem .2rem 0; padding: 0 .5rem; border-radius: .2rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; }
dl.meta dt { font-weight: bold; } dl.meta dd { margin: 0; }
.problem { border: 1px solid #ccc; border-left: 6px solid #999; border-radius: .3rem; padding: .8rem 1rem;
           margin: 1rem 0; }
.problem.edge-fail { border-left-color: #c62828; } .problem.edge-deviation { border-left-color: #d9a400; }
.problem.edge-error { border-left-color: var(--error); }
.facts th { background: #f7f7f7; font-weight: normal; white-space: nowrap; }
caption { text-align: left; font-weight: bold; }
summary { cursor: pointer; }
.nowrap { white-space: nowrap; }
ul.rules { columns: 22rem; padding: 0; list-style: none; }
ul.rules li { padding: 0 .3rem; break-inside: avoid; display: flex; justify-content: space-between; gap: 1rem; }
ul.rules li.zero { background: var(--deviation); font-weight: bold; }
ul.rules li small { min-width: 0; overflow-wrap: anywhere; }
svg text { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; }
svg .small { font-size: 10px; fill: #555; }
.caption { color: #555; font-size: .9em; margin: .2rem 0 .8rem; }
"""
STYLE = ":root { " + " ".join(f"--{kind}: {colour};" for kind, colour in COLOURS.items()) + " }" + STYLE

#: no script, no request of any kind: only the inline style runs
POLICY = "default-src 'none'; style-src 'unsafe-inline'"

#: a monospace character at 12px, as the SVG pictures' layout counts it (labels are fitted to it with textLength)
CHAR = 7.3


def verdict_class(verdict: str) -> str:
    """pass, deviation, fail (fail, hang, deadlock, potential-deadlock), error or unavailable."""
    kind = verdict.split(":")[0]
    return kind if kind in (PASS, "deviation", ERROR, UNAVAILABLE) else "fail"


def render(results: Results) -> str:
    """The whole page."""
    s = Summary.of(results)
    # a problem's section, by its record (records are not hashable; these are the very objects the matrix shows)
    anchors = {id(r): f"problem-{i}" for i, r in enumerate(s.problems, 1)}
    suites: dict[str, list[Record]] = {}
    for r in results.records:
        suites.setdefault(r.suite, []).append(r)
    return "\n".join([
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>vfslab conformance report</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        _header(results),
        _meta(results),
        '<h2 id="matrix">Verdicts</h2>',
        _legend(),
        *(_matrix(i, suite, records, anchors) for i, (suite, records) in enumerate(suites.items(), 1)),
        f'<h2 id="problems">Problems ({len(s.problems)})</h2>',
        *(_problem(r, anchors[id(r)]) for r in s.problems),
        *([] if s.problems else ["<p>None: every verdict is pass or unavailable.</p>"]),
        '<h2 id="coverage">Rule coverage</h2>',
        _coverage(s),
        "</body>\n</html>\n",
    ])


def _header(results: Results) -> str:
    counts = Counter(r.verdict for r in results.records)
    unexpected = sum(not r.as_expected for r in results.records)
    banner = ('<span class="banner pass">every verdict as expected</span>' if not unexpected else
              f'<span class="banner fail">{unexpected} verdict{"s" * (unexpected != 1)} not as expected</span>')
    chips = " ".join(f'<span class="badge {verdict_class(v)}">{escape(v)} × {n}</span>' for v, n in counts.items())
    return (f"<h1>vfslab conformance report</h1>\n<p>{banner} {len(results.records)} records: {chips}</p>\n"
            '<p><a href="#meta">run</a> · <a href="#matrix">verdicts</a> · <a href="#problems">problems</a> · '
            '<a href="#coverage">rule coverage</a></p>')


def _meta(results: Results) -> str:
    m = results.meta
    facts = [("vfslab", m.vfslab_version), ("git", m.git_sha or "no git"), ("seed", str(m.seed)),
             ("kernel", m.kernel), ("libfuse", m.libfuse or "?"), ("started", m.started), ("seconds", f"{m.seconds:g}")]
    out = ['<h2 id="meta">Run</h2>\n<dl class="meta">',
           *(f"<dt>{name}</dt><dd>{escape(value)}</dd>" for name, value in facts), "</dl>"]
    rows = [f'<tr><td>{escape(name)}</td><td>{escape(version)}</td><td class="pass nowrap">available</td></tr>'
            for name, version in m.subjects.items()]
    rows += [f'<tr><td>{escape(name)}</td><td>{escape(reason)}</td><td class="unavailable nowrap">unavailable</td></tr>'
             for name, reason in m.unavailable.items()]
    if rows:
        out += ['<div class="scroll"><table><thead><tr><th>subject</th><th>version, or why it is unavailable</th>'
                "<th></th></tr></thead><tbody>", *rows, "</tbody></table></div>"]
    return "\n".join(out)


def _legend() -> str:
    shown = [("pass", "pass"), ("deviation", "deviation:<profile>"), ("fail", "fail, hang, deadlock, "
             "potential-deadlock"), ("error", "error"), ("unavailable", "unavailable")]
    return ('<p class="legend">' + "".join(f'<span class="{kind}">{escape(text)}</span>' for kind, text in shown)
            + '<span class="mono">outlined: not the expected verdict</span></p>')


def _matrix(number: int, suite: str, records: list[Record], anchors: dict[int, str]) -> str:
    """The suite's scenarios (rows) by the subjects that ran it (columns), a cell per verdict."""
    scenarios = list(dict.fromkeys(r.scenario for r in records))
    labels = list(dict.fromkeys(r.label for r in records))
    cells = {(r.scenario, r.label): r for r in records}
    out = [f'<h3 id="suite-{number}">Suite {escape(suite)}</h3>', '<div class="scroll"><table class="matrix">',
           "<thead><tr><th>scenario</th>" + "".join(f"<th>{escape(label)}</th>" for label in labels) + "</tr></thead>",
           "<tbody>"]
    for scenario in scenarios:
        row = [f'<tr><th scope="row">{escape(scenario)}</th>']
        for label in labels:
            r = cells.get((scenario, label))
            row.append("<td>–</td>" if r is None else _cell(r, anchors.get(id(r))))
        out.append("".join(row) + "</tr>")
    return "\n".join([*out, "</tbody></table></div>"])


def _cell(r: Record, anchor: str | None) -> str:
    verdict = escape(r.verdict)
    text = f'<a href="#{anchor}">{verdict}</a>' if anchor else verdict
    expected = "" if r.as_expected else f"<small>expected {escape(r.expected)}</small>"
    unexpected = "" if r.as_expected else " unexpected"
    title = escape(f"{r.scenario} on {r.label}: {r.verdict}" + ("" if r.as_expected else f", expected {r.expected}"))
    return f'<td class="v {verdict_class(r.verdict)}{unexpected}" title="{title}">{text}{expected}</td>'


def _problem(r: Record, anchor: str) -> str:
    kind = verdict_class(r.verdict)
    facts = [("scenario", r.scenario), ("subject", r.label), ("family, kind", f"{r.family or '?'}, {r.kind}"),
             ("profile held to", r.profile or "none"),
             ("verdict", f"{r.verdict}, expected {r.expected}" + (" (as expected)" if r.as_expected else
                                                                  " (NOT as expected)")),
             ("ran", f"{r.examples} examples, {r.steps} steps, {r.seconds:g} s")]
    facts += [("skipped", "; ".join(r.skipped))] if r.skipped else []
    out = [f'<article class="problem edge-{kind}" id="{anchor}">',
           f'<h3><span class="badge {kind}">{escape(r.verdict)}</span> {escape(r.scenario)} on {escape(r.label)}</h3>',
           '<div class="scroll"><table class="facts">',
           *(f"<tr><th>{name}</th><td>{escape(value)}</td></tr>" for name, value in facts), "</table></div>"]
    if r.reason and not (r.counterexample and r.reason == r.counterexample.difference):  # said just below
        out.append(f"<h4>Reason</h4>\n<p>{escape(r.reason)}</p>")
    if r.counterexample:
        out.append(_counterexample(r.counterexample, anchor))
    return "\n".join([*out, "</article>"])


def _counterexample(cx: Counterexample, anchor: str) -> str:
    out = ["<h4>Difference under the held profile</h4>", f"<pre>{escape(cx.difference or cx.message)}</pre>",
           f"<details><summary>The whole message</summary><pre>{escape(cx.message)}</pre></details>",
           "<h4>Shrunk program</h4>", _layers(cx.layers), _ops(cx.ops),
           "<h4>Replay</h4>", f"<pre><code>{escape(cx.replay)}</code></pre>"]
    if cx.program_file:
        out.append(f'<p class="caption">Saved as <code>{escape(cx.program_file)}</code>.</p>')
    if cx.wait_for:
        out += ["<h4>Wait-for graph</h4>", f'<div class="scroll">{wait_for_svg(cx, anchor)}</div>',
                '<p class="caption">An arrow: a thread waits on a resource, a resource is held by a thread. Rounded: '
                "a thread (dashed: cancelled); square: a resource; red: the cycle.</p>"]
    elif cx.graph:  # results from before schema 3 carry the graph as Mermaid text only
        out += ["<h4>Wait-for graph (Mermaid)</h4>", f"<pre>{escape(cx.graph)}</pre>"]
    if cx.timeline:
        out += ["<h4>Timeline</h4>", f'<div class="scroll">{timeline_svg(cx)}</div>',
                '<p class="caption">A lane per thread, a mark per step, numbered above by the scheduling choice it '
                "came after (hover a mark for what it did). Amber square: waits; red diamond: cancelled; dashed red: "
                "blocked for good.</p>", _timeline_table(cx.timeline)]
    return "\n".join(out)


def _layers(layers: list) -> str:
    if not layers:
        return ""
    out = ['<p class="caption">Initial layers, in the program\'s order (a union program lists its lower layers '
           "topmost first):</p>"]
    for i, layer in enumerate(layers, 1):
        if not isinstance(layer, list):
            out.append(f"<p>{i}. <code>{escape(_text(layer))}</code></p>")
        elif not layer:
            out.append(f"<p>layer {i}: empty</p>")
        else:
            keys = list(dict.fromkeys(k for node in layer if isinstance(node, dict) for k in node)) or [""]
            rows = ["<tr>" + "".join(f"<td>{escape(_short(_text(node.get(k, ''))))}</td>" for k in keys) + "</tr>"
                    if isinstance(node, dict) else f'<tr><td colspan="{len(keys)}">{escape(_text(node))}</td></tr>'
                    for node in layer]
            out += [f'<div class="scroll"><table class="mono"><caption>layer {i}</caption><thead><tr>'
                    + "".join(f"<th>{escape(k)}</th>" for k in keys) + "</tr></thead><tbody>", *rows,
                    "</tbody></table></div>"]
    return "\n".join(out)


def _ops(ops: list) -> str:
    return ('<p class="caption">Operations:</p>\n<ol class="mono">'
            + "".join(f"<li>{escape(_call(op))}</li>" for op in ops) + "</ol>")


def _call(op: object) -> str:
    """An operation as it reads: `mkdir("newdir", 493)`, with any further keys after it."""
    if isinstance(op, dict) and "op" in op:
        rest = " ".join(f"{k}={_value(v)}" for k, v in op.items() if k not in ("op", "args"))
        return f"{op['op']}({', '.join(map(_value, op.get('args', ())))})" + (f" {rest}" if rest else "")
    if isinstance(op, list) and op and isinstance(op[0], str):
        return f"{op[0]}({', '.join(map(_value, op[1:]))})"
    if isinstance(op, dict):
        return "; ".join(f"{k}: {_value(v)}" for k, v in op.items())
    return _text(op)


def _value(v: object) -> str:
    """An argument as the program's JSON writes it (a long one cut: the saved program has it whole)."""
    return _short(json.dumps(v, ensure_ascii=False), 200)


def _text(v: object) -> str:
    """A layer's entry's field: a string as it is, anything else as JSON."""
    return v if isinstance(v, str) else _value(v)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


# ---- the wait-for graph ---------------------------------------------------------------------------------------

def _columns(nodes: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """The nodes in columns by their distance from the sources (nodes nothing points at; a cycle nothing points
    into starts at its first node), each column ordered by where its nodes' predecessors stand, which keeps the
    arrows between columns from crossing."""
    successors: dict[str, list[str]] = {n: [] for n in nodes}
    predecessors: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        successors[a].append(b)
        predecessors[b].append(a)
    depth: dict[str, int] = {}
    while len(depth) < len(nodes):
        frontier = [n for n in nodes if not predecessors[n] and n not in depth] or [
            next(n for n in nodes if n not in depth)]
        level = 0
        while frontier:
            depth.update((n, level) for n in frontier)
            frontier = list(dict.fromkeys(m for n in frontier for m in successors[n] if m not in depth))
            level += 1
    columns: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for n in nodes:
        columns[depth[n]].append(n)
    for left, column in pairwise(columns):
        place = {n: i for i, n in enumerate(left)}
        where: dict[str, float] = {}
        for i, n in enumerate(column):
            before = [place[p] for p in predecessors[n] if p in place]
            where[n] = sum(before) / len(before) if before else i
        column.sort(key=where.__getitem__)
    return columns


@dataclass
class _Box:
    """A node of a picture: its centre, half its width, its column."""

    x: float
    y: float
    half: float
    column: int


RED, GREY = "#c62828", "#8a8a8a"
#: (fill, border) of the wait-for graph's boxes
NODE_COLOURS = {"thread": ("#dce8fb", "#2f5fa7"), "cancelled": ("#fde2e2", "#b3261e"),
                "resource": ("#f4efe2", "#7a6a3a")}
DASHED = ' stroke-dasharray="4 3"'
#: the wait-for picture's measures: between columns, between rows, a box's height, around it all
GAP, PITCH, HEIGHT, MARGIN = 70, 36, 24, 16


def _box_width(label: str) -> float:
    return len(label) * CHAR + 18


def _place(columns: list[list[str]]) -> tuple[dict[str, _Box], float, float]:
    """Each node's box (columns side by side, each centred vertically), and the picture's width and height."""
    tallest = max(map(len, columns))
    boxes: dict[str, _Box] = {}
    x = MARGIN
    for number, column in enumerate(columns):
        width = max(map(_box_width, column))
        top = MARGIN + (tallest - len(column)) * PITCH / 2
        for row, n in enumerate(column):
            boxes[n] = _Box(x + width / 2, top + row * PITCH + HEIGHT / 2, _box_width(n) / 2, number)
        x += width + GAP
    # room on the right for arrows within the last column, below for arches under the bottom row
    return boxes, x - GAP + MARGIN + 40, MARGIN * 2 + tallest * PITCH + 30


def _edge(a: _Box, b: _Box) -> str:
    """The path of an arrow from a to b (the arrowhead stops 2 px short, at b's border)."""
    low = HEIGHT / 2
    if b.column > a.column:  # forward: out of a's right side into b's left, an S-curve
        x1, x2 = a.x + a.half, b.x - b.half - 2
        mid = (x1 + x2) / 2
        return f"M{x1:.1f},{a.y:.1f} C{mid:.1f},{a.y:.1f} {mid:.1f},{b.y:.1f} {x2:.1f},{b.y:.1f}"
    if b.column < a.column and abs(a.y - b.y) < PITCH / 2:  # back along a row: an arch under the boxes between
        under = a.y + low + 18 + 0.05 * (a.x - b.x)
        return f"M{a.x:.1f},{a.y + low:.1f} C{a.x:.1f},{under:.1f} {b.x:.1f},{under:.1f} {b.x:.1f},{b.y + low + 2:.1f}"
    if b.column < a.column:  # back to another row: out of a's left side into b's right, low on both
        x1, x2, y1, y2 = a.x - a.half, b.x + b.half + 2, a.y + 6, b.y + 6
        return f"M{x1:.1f},{y1:.1f} C{x1 - 40:.1f},{y2:.1f} {x2 + 40:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    x1, x2 = a.x + a.half, b.x + b.half + 2  # within a column: a bulge to the right
    bulge = max(x1, x2) + 36
    return f"M{x1:.1f},{a.y:.1f} C{bulge:.1f},{a.y:.1f} {bulge:.1f},{b.y:.1f} {x2:.1f},{b.y:.1f}"


def wait_for_svg(cx: Counterexample, key: str) -> str:
    """The wait-for graph: threads and resources as labelled boxes in columns, arrows between them, the cycle red.
    `key` makes the arrowheads' ids unique in the page."""
    edges = [(a, b) for a, b in cx.wait_for]
    nodes = list(dict.fromkeys(n for edge in edges for n in edge))
    threads = set(cx.wait_for_threads)
    cycle = cx.wait_for_cycle
    on_cycle = set(zip(cycle, cycle[1:] + cycle[:1], strict=True))
    place, w, h = _place(_columns(nodes, edges))
    lines = []
    for a, b in sorted(edges, key=lambda e: e in on_cycle):  # the cycle drawn last, over the rest
        red = (a, b) in on_cycle
        stroke = f'stroke="{RED}" stroke-width="2.4"' if red else f'stroke="{GREY}" stroke-width="1.2"'
        lines.append(f'<path d="{_edge(place[a], place[b])}" fill="none" {stroke} '
                     f'marker-end="url(#{key}-{"cycle" if red else "arrow"})"><title>{escape(a)} → {escape(b)}</title>'
                     "</path>")
    boxes = []
    for n in nodes:
        box, thread = place[n], n in threads
        cancelled = thread and n.endswith("(cancelled)")
        fill, stroke = NODE_COLOURS["cancelled" if cancelled else "thread" if thread else "resource"]
        boxes.append(
            f'<g><title>{"thread" if thread else "resource"} {escape(n)}</title>'
            f'<rect x="{box.x - box.half:.1f}" y="{box.y - HEIGHT / 2:.1f}" width="{2 * box.half:.1f}" '
            f'height="{HEIGHT}" rx="{12 if thread else 2}" fill="{fill}" stroke="{RED if n in cycle else stroke}" '
            f'stroke-width="{2.4 if n in cycle else 1.2}"{DASHED if cancelled else ""}/>'
            f'<text x="{box.x:.1f}" y="{box.y:.1f}" text-anchor="middle" dominant-baseline="central" '
            f'textLength="{len(n) * CHAR:.1f}" lengthAdjust="spacingAndGlyphs">{escape(n)}</text></g>')
    markers = "".join(
        f'<marker id="{key}-{name}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        f'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        for name, colour in (("arrow", GREY), ("cycle", RED)))
    return (f'<svg class="wait-for" width="{w:.0f}" height="{h:.0f}" '
            f'viewBox="0 0 {w:.0f} {h:.0f}" role="img" aria-label="wait-for graph"><defs>{markers}</defs>'
            + "".join(lines) + "".join(boxes) + "</svg>")


# ---- the timeline ---------------------------------------------------------------------------------------------

def timeline_svg(cx: Counterexample) -> str:
    """A lane per thread, a mark per step along x; waits and cancellations stand out, and a thread blocked for
    good at the end has a dashed red tail."""
    steps = cx.timeline
    # the threads blocked at the end: a cancelled one's node is named "... (cancelled)", so no lane matches it
    blocked = [t for t in cx.wait_for_threads if not t.endswith("(cancelled)")]
    lanes = {t: i for i, t in enumerate(dict.fromkeys([*(s["thread"] for s in steps), *blocked]))}
    last = {s["thread"]: i for i, s in enumerate(steps)}
    pitch, row, top = 18, 22, 30
    left = max(map(len, lanes)) * CHAR + 20
    w, h = left + (len(steps) + 2) * pitch, top + len(lanes) * row + 10
    end = w - pitch

    def x(i: int) -> float:
        return left + pitch * (i + 0.5)

    def y(thread: str) -> float:
        return top + lanes[thread] * row + row / 2

    out = [f'<text class="small" x="{left - 8:.0f}" y="14" text-anchor="end">choice</text>']
    shown = -100.0
    for i, s in enumerate(steps):  # the choice number where it changes, where there is room for it
        if (i == 0 or s["choice"] != steps[i - 1]["choice"]) and x(i) - shown >= 26:
            out.append(f'<text class="small" x="{x(i):.1f}" y="14" text-anchor="middle">{s["choice"]}</text>')
            shown = x(i)
    for t in lanes:
        bold = f' fill="{RED}" font-weight="bold"' if t in blocked else ""
        out.append(f'<text x="{left - 8:.0f}" y="{y(t):.1f}" text-anchor="end" dominant-baseline="central"{bold}>'
                   f'{escape(t)}</text><line x1="{left:.0f}" x2="{end:.0f}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                   'stroke="#e4e4e4"/>')
        if t in blocked:
            out.append(f'<line x1="{x(last[t]) if t in last else left:.1f}" x2="{end:.0f}" y1="{y(t):.1f}" '
                       f'y2="{y(t):.1f}" stroke="{RED}" stroke-width="2" stroke-dasharray="5 3">'
                       f"<title>{escape(t)} is blocked for good</title></line>")
    for i, s in enumerate(steps):
        px, py = x(i), y(s["thread"])
        if s["action"] == "waits":
            mark = f'<rect x="{px - 5:.1f}" y="{py - 5:.1f}" width="10" height="10" fill="#f2a900" stroke="#5a4000"/>'
        elif s["action"] == "cancelled":
            mark = f'<path d="M{px:.1f},{py - 7:.1f} l7,7 l-7,7 l-7,-7 z" fill="{RED}" stroke="#5a0000"/>'
        else:
            mark = f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4.5" fill="#2f5fa7"/>'
        title = f"choice {s['choice']}: {s['thread']} {s['action']} {s['what']}".rstrip()
        out.append(f"<g><title>{escape(title)}</title>{mark}</g>")
    return (f'<svg class="timeline" width="{w:.0f}" height="{h:.0f}" viewBox="0 0 {w:.0f} {h:.0f}" role="img" '
            'aria-label="timeline">' + "".join(out) + "</svg>")


def _timeline_table(steps: list[dict]) -> str:
    rows = "".join(f"<tr><td>{escape(str(s['choice']))}</td><td>{escape(s['thread'])}</td><td>{escape(s['action'])}"
                   f"</td><td>{escape(s['what'])}</td></tr>" for s in steps)
    return ('<details><summary>The timeline as text</summary><div class="scroll"><table class="mono"><thead><tr>'
            f"<th>choice</th><th>thread</th><th>action</th><th>what</th></tr></thead><tbody>{rows}</tbody></table>"
            "</div></details>")


# ---- rule coverage --------------------------------------------------------------------------------------------

ZERO = ' class="zero"'


def _coverage(s: Summary) -> str:
    """Per family, each rule and edge of its limits with how often it decided an outcome over all records; those
    at 0 stand out, with the reason when vfslab/check/reach.py excuses them."""
    out = []
    for family, rules in s.fired.items():
        name = escape(family or "(no family named)")
        if not rules:
            out.append(f"<h3>{name}</h3>\n<p>This family counts no rules.</p>")
            continue
        counted = rules | s.edges.get(family, {})
        zero = sum(n == 0 for n in counted.values())
        out += [f"<h3>{name}</h3>", f'<p class="caption">{len(counted) - zero} of {len(counted)} rules and edges '
                f"fired; the {zero} that never did are highlighted.</p>", '<ul class="rules">',
                *(f'<li{ZERO if n == 0 else ""}><code>{escape(key)}</code><span>{n}</span>'
                  + (f"<small>{escape(why)}</small>" if not n and (why := exception(key)) else "") + "</li>"
                  for key, n in counted.items()), "</ul>"]
    out += [f'<p class="caption">{escape(line)}</p>' for line in blind_lines(s.blind)]
    return "\n".join(out) or "<p>No rules counted.</p>"


FORMAT = Format("html", render, "report.html")
