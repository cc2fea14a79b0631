"""The terminal report: a table per suite, readable at 80 columns, no name cut."""

from __future__ import annotations

import io

from rich.console import Console

from vfslab.check.results import Record, Results, RunMeta
from vfslab.reports import terminal


def test_each_suite_has_its_table_and_nothing_is_cut_at_80_columns():
    meta = RunMeta("0.2.0", "abc", 0, "6.18", "3.14", "now")
    records = [Record("union-stateful-overlayfs-redirect-index", "union", "stateful", "kernel-overlay",
                      "overlayfs-redirect-index", "pass", "pass", placement="fs-per-layer"),
               Record("union-stateful-overlayfs-redirect-index", "union", "stateful", "fuse-overlayfs",
                      "overlayfs-redirect-index", "pass", "deviation:fuse-overlayfs"),
               Record("sim-rwlock-cancel-while-reading", "sim", "sim", "sim", "", "pass", "pass")]
    out = io.StringIO()
    terminal.show(Results(meta, records), Console(file=out, width=80, color_system=None))
    text = out.getvalue()
    assert max(map(len, text.splitlines())) <= 80
    for name in ("union-stateful-overlayfs-redirect-index", "kernel-overlay@fs-per-layer", "fuse-overlayfs",
                 "sim-rwlock-cancel-while-reading", "deviation:fuse-overlayfs"):
        assert name in text, name
    union, sim = text.split("suite sim")
    assert "suite union" in union and "kernel-overlay" not in sim, "a suite's table holds only its subjects"
