"""Renderers of results, as a registry of formats: each reads results records and nothing else.

A format is one module with a `FORMAT`; `vfslab report --format NAME` renders one, and `vfslab run` writes each
that names a file into its output folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console

from vfslab.check.results import Results


@dataclass(frozen=True)
class Format:
    name: str
    render: Callable[[Results], str]
    #: the file `vfslab run` writes it to ("": shown, not written)
    file: str = ""
    #: how it is shown on a console, when not as its text
    show: Callable[[Results, Console], None] | None = None


def formats() -> dict[str, Format]:
    from vfslab.reports import html, junit, markdown, terminal

    return {f.name: f for f in (terminal.FORMAT, markdown.FORMAT, junit.FORMAT, html.FORMAT)}
