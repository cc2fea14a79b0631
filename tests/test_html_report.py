"""report.html: escaped, readable from older results, its pictures laid out without overlap, and, for a real run
loaded in headless Chromium, free of console errors and requests, drawn in the verdicts' colours."""

from __future__ import annotations

import json
import re
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import browser
import pytest

from vfslab import runner
from vfslab.check.results import SCHEMA_VERSION, Counterexample, Record, Results, RunMeta
from vfslab.cli import main
from vfslab.reports import formats, html
from vfslab.reports.summary import Summary
from vfslab.suite import collect, default_suite

SIM = default_suite() / "sim"
UNION = default_suite() / "union"
#: a scenario whose expectation is wrong, so that a cell is marked "expected pass"
WRONG = ('id = "wrong"\nkind = "program"\nsubjects = ["model"]\n[[programs]]\nname = "unlink is not EXDEV"\n'
         'layers = [[{path = "a", kind = "file"}]]\nops = [["unlink", "a"]]\nexpect.default = ["EXDEV"]\n')
HOSTILE = '<script>alert("x")</script>'


class Tags(HTMLParser):
    """Every tag a page has, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(page)
    return parser.tags


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def test_the_format_is_registered_and_written_to_report_html():
    assert formats()["html"].file == "report.html"


def test_strings_from_results_are_escaped_everywhere():
    cx = Counterexample([[{"path": HOSTILE, "kind": "file"}]], [{"op": "unlink", "args": [HOSTILE]}],
                        f"message {HOSTILE}", f"vfslab replay {HOSTILE}", difference=f"difference {HOSTILE}",
                        wait_for=[[HOSTILE, "lock <b>"], ["lock <b>", HOSTILE]], wait_for_threads=[HOSTILE],
                        wait_for_cycle=[HOSTILE, "lock <b>"],
                        timeline=[{"choice": 0, "thread": HOSTILE, "action": "waits", "what": "<i>"}])
    meta = RunMeta(HOSTILE, HOSTILE, 0, HOSTILE, HOSTILE, HOSTILE, subjects={HOSTILE: HOSTILE},
                   unavailable={"x": HOSTILE})
    record = Record(HOSTILE, HOSTILE, "program", HOSTILE, HOSTILE, "pass", "fail", reason=HOSTILE,
                    coverage={HOSTILE: 0}, family=HOSTILE, counterexample=cx, skipped=[HOSTILE])
    page = html.render(Results(meta, [record]))
    found = tags(page)
    assert not [t for t, _ in found if t in ("script", "b", "i", "img", "iframe")], "a string became markup"
    assert not [a for _, attrs in found for a in attrs if a.startswith("on")]
    assert "<script" not in page and escape(HOSTILE) in page
    assert page.count(escape(HOSTILE)) >= 15, "every field is shown, escaped"


def test_a_schema_2_file_renders_with_its_mermaid_graph(tmp_path):
    sim = {"scenario": "sim-vmblock-upstream", "suite": "sim", "kind": "sim", "subject": "sim", "profile": "",
           "expected": "deadlock", "verdict": "deadlock", "family": "sim", "reason": "deadlock: a -> b -> a",
           "counterexample": {"layers": [], "ops": [{"params": {"readers": 2}, "choices": []}],
                              "message": "deadlock: a -> b -> a", "replay": "vfslab replay out/sim/x.json",
                              "program_file": "out/sim/x.json", "graph": "```mermaid\ngraph LR\n  n0 --> n1\n```",
                              "difference": "deadlock: a -> b -> a"}}
    union = {"scenario": "union-seed-examples", "suite": "union", "kind": "program", "subject": "unionfs-fuse",
             "profile": "overlayfs", "expected": "fail", "verdict": "fail", "coverage": {"union.lookup.opaque": 0}}
    meta = {"vfslab_version": "0.2.0", "git_sha": "abc", "seed": 0, "kernel": "6.1", "libfuse": "3.14",
            "started": "now"}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": 2, "meta": meta, "records": [sim, union]}))
    results = Results.read(path)
    assert results.records[0].counterexample.wait_for == []
    page = html.render(results)
    assert "graph LR\n  n0 --&gt; n1" in page and '<svg class="wait-for"' not in page
    assert "vfslab replay out/sim/x.json" in page and "union.lookup.opaque" in page


def boxes(svg: str) -> list[tuple[float, float, float, float]]:
    return [tuple(float(m[k]) for k in ("x", "y", "width", "height"))
            for m in (dict(re.findall(r'([\w-]+)="([^"]*)"', rect)) for rect in re.findall(r"<rect [^>]*>", svg))]


def test_the_shipped_deadlocks_graphs_have_no_overlapping_boxes_and_every_label_fits(tmp_path):
    scenarios = collect([SIM / "vmblock-upstream.toml", SIM / "rwlock-cancel-anywhere.toml",
                         SIM / "union-top-down.toml"])
    results = runner.run(scenarios, runner.Options(subjects=("sim",), out=tmp_path))
    assert [r.verdict for r in results.records] == ["deadlock"] * 3
    page = html.render(results)
    svgs = re.findall(r'<svg class="wait-for".*?</svg>', page, re.S)
    assert len(svgs) == 3
    for svg, record in zip(svgs, results.records, strict=True):
        found = boxes(svg)
        assert len(found) == len({n for edge in record.counterexample.wait_for for n in edge})
        for i, (x1, y1, w1, h1) in enumerate(found):
            for x2, y2, w2, h2 in found[i + 1:]:
                assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1, "boxes overlap"
        widths = [float(w) for w in re.findall(r'textLength="([\d.]+)"', svg)]
        assert all(text < box[2] for text, box in zip(widths, found, strict=True)), "a label is wider than its box"


@pytest.mark.mounts
def test_a_real_runs_report_loads_in_chromium_without_errors_or_requests(need, scratch):
    need("unionfs-fuse")
    (scratch / "wrong.toml").write_text(WRONG)
    out = scratch / "out"
    code = main(["run", str(SIM / "vmblock-upstream.toml"), str(UNION / "seed-examples.toml"),
                 str(UNION / "safety.toml"), str(scratch / "wrong.toml"),
                 "--subject", "sim", "--subject", "model", "--subject", "unionfs-fuse", "--out", str(out)])
    assert code == 1, "the wrong scenario is not as expected"
    results = Results.read(out / "results.json")
    assert json.loads((out / "results.json").read_text())["schema"] == SCHEMA_VERSION
    verdicts = {(r.scenario, r.subject): r.verdict for r in results.records}
    assert verdicts[("sim-vmblock-upstream", "sim")] == "deadlock"
    assert verdicts[("union-seed-examples", "unionfs-fuse")] == "fail"
    assert verdicts[("union-seed-examples", "model")] == "pass"
    page_file = out / "report.html"
    page = page_file.read_text()

    # the deadlock's wait-for graph names its threads, the cycle is drawn, and the timeline is there
    deadlock = next(r for r in results.records if r.verdict == "deadlock").counterexample
    assert deadlock.wait_for and deadlock.wait_for_cycle and deadlock.timeline
    graph = re.search(r'<svg class="wait-for".*?</svg>', page, re.S).group(0)
    for thread in deadlock.wait_for_threads:
        assert f">{escape(thread)}</text>" in graph, thread
    assert "#c62828" in graph and '<svg class="timeline"' in page
    # every problem: its replay command, and a matrix cell that links to its section
    problems = Summary.of(results).problems
    assert len(problems) == 4
    for r in problems:
        assert f"<code>{escape(r.counterexample.replay)}</code>" in page, r.scenario
    links = [a["href"] for t, a in tags(page) if t == "a"]
    ids = {a["id"] for _, a in tags(page) if "id" in a}
    assert {f"problem-{i}" for i in range(1, 5)} <= {href[1:] for href in links}
    assert all(href.startswith("#") and href[1:] in ids for href in links)
    assert "<small>expected pass</small>" in page
    # no reference to anything outside the page
    assert not [a for _, attrs in tags(page) for name, a in attrs.items()
                if name in ("src", "href") and re.match(r"\s*(https?:)?//", a or "")]
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*https?://", page)
    # the rules that never fired, and the edges no program reached, are the highlighted ones
    highlighted = re.findall(r'<li class="zero"><code>([^<]*)</code>', page)
    summary = Summary.of(results)
    unreached = {edge for edges in summary.edges.values() for edge, n in edges.items() if not n}
    assert highlighted and set(highlighted) == set(summary.never_fired) | unreached

    wide = browser.load(page_file, width=1280, height=900)
    assert wide.errors == []
    assert wide.requests == [page_file.resolve().as_uri()], "the page asked for nothing but itself"
    seen = browser.colours(wide.png)
    assert len(seen) >= 20, f"a blank screenshot: {len(seen)} colours"
    for verdict in ("pass", "fail"):
        assert seen[rgb(html.COLOURS[verdict])] >= 500, f"no {verdict} cells in the screenshot"
    (scratch / "report.png").write_bytes(wide.png)

    narrow = browser.load(page_file, width=400, height=900, evaluate="document.documentElement.scrollWidth")
    assert narrow.errors == []
    assert narrow.value <= 400, "the page is wider than a narrow window: a table or picture does not scroll"


def test_the_browser_check_catches_errors_and_requests_and_reads_colours(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><body style="background:#bfe5c6"><img src="http://127.0.0.1:9/x.png">'
                   '<script>console.error("said"); throw new Error("thrown")</script></body>')
    loaded = browser.load(bad, width=200, height=100)
    assert any("console.error: said" in e for e in loaded.errors), loaded.errors
    assert any("uncaught: Error: thrown" in e for e in loaded.errors), loaded.errors
    assert "http://127.0.0.1:9/x.png" in loaded.requests
    assert browser.colours(loaded.png).most_common(1)[0][0] == (0xBF, 0xE5, 0xC6)
    assert alive(loaded.pid) == [], "Chromium was not stopped"
    clean = tmp_path / "clean.html"
    clean.write_text("<!DOCTYPE html><p>nothing wrong</p>")
    assert browser.load(clean, width=200, height=100).errors == []


def test_an_unanswered_browser_is_stopped_at_its_deadline(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<!DOCTYPE html><p>x</p>")
    with pytest.raises(browser.BrowserError, match="in time") as e:
        browser.load(page, timeout=0.01)
    assert alive(e.value.pid) == []


def test_vfslab_report_prints_the_page(tmp_path, capsys):
    meta = RunMeta("0.3.0", "abc", 0, "6.1", "3.14", "now")
    Results(meta, [Record("s", "union", "program", "model", "overlayfs", "pass", "pass")]).write(
        tmp_path / "results.json")
    assert main(["report", str(tmp_path / "results.json"), "--format", "html"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


def alive(group: int) -> list[str]:
    """The processes of a process group that are still running (a zombie is not)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text() if proc.name.isdigit() else ""
        except OSError:  # it ended meanwhile
            continue
        if not stat:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(stat[:stat.rindex(")") + 1])
    return found
