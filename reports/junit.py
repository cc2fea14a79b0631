"""JUnit XML, for CI systems that show test reports (Jenkins, GitLab, GitHub test reporters): a test suite per
vfslab suite, a test case per scenario and subject. An unexpected verdict is a failure (an `error` verdict, an
error) whose text is the difference, the shrunk program and the replay command; an unavailable subject is
skipped with its reason."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from vfslab.check.results import ERROR, UNAVAILABLE, Record, Results
from vfslab.reports import Format


def render(results: Results) -> str:
    records = results.records
    root = ET.Element("testsuites", name="vfslab", **_counts(records), time=f"{results.meta.seconds:g}")
    for suite in dict.fromkeys(r.suite for r in records):
        these = [r for r in records if r.suite == suite]
        element = ET.SubElement(root, "testsuite", name=suite, **_counts(these),
                                time=f"{sum(r.seconds for r in these):g}", timestamp=results.meta.started)
        properties = ET.SubElement(element, "properties")
        m = results.meta
        for name, value in (("seed", m.seed), ("vfslab", m.vfslab_version), ("git", m.git_sha),
                            ("kernel", m.kernel), ("libfuse", m.libfuse)):
            ET.SubElement(properties, "property", name=name, value=str(value))
        for r in these:
            _case(element, r)
    return ET.tostring(root, encoding="unicode") + "\n"


def _counts(records: list[Record]) -> dict[str, str]:
    unexpected = [r for r in records if not r.as_expected]
    errors = sum(r.verdict == ERROR for r in unexpected)
    return {"tests": str(len(records)), "failures": str(len(unexpected) - errors), "errors": str(errors),
            "skipped": str(sum(r.verdict == UNAVAILABLE for r in records))}


def _case(suite: ET.Element, r: Record) -> None:
    case = ET.SubElement(suite, "testcase", classname=f"{r.suite}.{r.scenario}", name=r.label,
                         time=f"{r.seconds:g}")
    if r.verdict == UNAVAILABLE:
        ET.SubElement(case, "skipped", message=r.reason)
        return
    if r.as_expected:
        return
    outcome = ET.SubElement(case, "error" if r.verdict == ERROR else "failure", type=r.verdict,
                            message=f"{r.verdict} (expected {r.expected})" + (f": {r.reason.splitlines()[0]}"
                                                                            if r.reason else ""))
    text = [f"held to profile {r.profile}" if r.profile else "", r.reason]
    cx = r.counterexample
    if cx:
        text += [cx.difference or cx.message, "program:", json.dumps(cx.layers),
                 *map(json.dumps, cx.ops), f"replay: {cx.replay}"]
    outcome.text = "\n".join(filter(None, text))


FORMAT = Format("junit", render, "junit.xml")
