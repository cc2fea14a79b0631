"""The directions DESIGN.md says must never be broken, checked on the source."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports(folder: str) -> set[tuple[str, str]]:
    """(file, imported module) for every import in the folder's Python files."""
    out = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out |= {(path.name, alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                out.add((path.name, node.module))
    return out


def allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or module.startswith(prefixes)


@pytest.mark.parametrize(("folder", "prefixes"), [
    ("model", ("vfslab.model",)),
    ("reports", ("vfslab.reports", "vfslab.check.results", "rich")),
    ("impl", ("vfslab.impl", "mfusepy")),
    ("sim", ("vfslab.sim", "vfslab.model", "simpy", "networkx", "hypothesis")),
])
def test_each_layer_imports_only_what_it_may(folder, prefixes):
    wrong = sorted((f, m) for f, m in imports(folder) if not allowed(m, prefixes))
    assert not wrong, f"{folder} imports {wrong}"
