"""What `vfslab run` and `vfslab gate` tell a CI system beyond their exit code: on GitHub Actions, an `::error`
annotation per finding (with its replay command) and a Markdown summary appended to the job's step summary."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from vfslab.check.results import Results
from vfslab.gate import KINDS, Finding


def on_github() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def annotation(finding: Finding) -> str:
    """A workflow command: `::error title=T::MESSAGE`, escaped as the runner reads it."""
    message = finding.text + (f"\nreplay: {finding.replay}" if finding.replay else "")
    title = f"vfslab {finding.kind}: {finding.label}"
    return f"::error title={_escape(title, in_property=True)}::{_escape(message)}"


def summary(results: Results, findings: list[Finding], failed: list[Finding], headline: str) -> str:
    """The step summary: verdicts counted per suite, then each finding."""
    verdicts = sorted({r.verdict for r in results.records})
    suites = list(dict.fromkeys(r.suite for r in results.records))
    counts = {suite: Counter(r.verdict for r in results.records if r.suite == suite) for suite in suites}
    out = [f"## {headline}", "", f"{len(results.records)} records, seed {results.meta.seed}, vfslab "
           f"{results.meta.vfslab_version} ({results.meta.git_sha or 'no git'}), kernel {results.meta.kernel}.", "",
           "| suite | " + " | ".join(verdicts) + " |", "|---|" + "---:|" * len(verdicts)]
    out += [f"| {suite} | " + " | ".join(str(counts[suite][v] or "") for v in verdicts) + " |" for suite in suites]
    for kind, meaning in KINDS.items():
        these = [f for f in findings if f.kind == kind]
        if these:
            fails = " (fails the gate)" if any(f in failed for f in these) else ""
            out += ["", f"### {kind}: {meaning}{fails}", ""]
            out += [f"- **{f.label}**: {f.text}" + (f"<br>`{f.replay}`" if f.replay else "") for f in these]
    return "\n".join(out) + "\n"


def announce(results: Results, findings: list[Finding], failed: list[Finding], headline: str) -> None:
    """On GitHub Actions: the annotations on stdout, the summary appended to GITHUB_STEP_SUMMARY."""
    if not on_github():
        return
    for finding in failed:
        print(annotation(finding), flush=True)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with Path(step_summary).open("a") as f:
            f.write(summary(results, findings, failed, headline))


def _escape(text: str, in_property: bool = False) -> str:
    # the runner's own escaping (actions/toolkit, command.ts): % first, then the line breaks; `:` and `,` in
    # a property's value
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if in_property else text
