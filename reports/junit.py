"""JUnit XML, for CI systems that show test reports: one test case per scenario and subject."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from vfslab.check.results import UNAVAILABLE, Results
from vfslab.reports import Format


def render(results: Results) -> str:
    suite = ET.Element("testsuite", name="vfslab", tests=str(len(results.records)),
                       failures=str(sum(not r.as_expected for r in results.records)),
                       skipped=str(sum(r.verdict == UNAVAILABLE for r in results.records)),
                       time=f"{results.meta.seconds:g}")
    for r in results.records:
        case = ET.SubElement(suite, "testcase", classname=f"{r.suite}.{r.scenario}", name=r.label,
                             time=f"{r.seconds:g}")
        if r.verdict == UNAVAILABLE:
            ET.SubElement(case, "skipped", message=r.reason)
        elif not r.as_expected:
            fail = ET.SubElement(case, "failure", message=f"{r.verdict} (expected {r.expected})")
            fail.text = "\n".join(filter(None, [r.reason, r.counterexample and r.counterexample.message,
                                                r.counterexample and r.counterexample.replay]))
    return ET.tostring(suite, encoding="unicode") + "\n"


FORMAT = Format("junit", render, "junit.xml")
