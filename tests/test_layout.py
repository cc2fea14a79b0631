"""The directions docs/design.md says must never be broken, checked on the source."""

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
    # reports read results, and which rules a run may leave unfired
    ("reports", ("vfslab.reports", "vfslab.check.results", "vfslab.check.reach", "rich")),
    ("impl", ("vfslab.impl", "mfusepy")),
    ("sim", ("vfslab.sim", "vfslab.model", "simpy", "networkx", "hypothesis")),
    # subjects drive systems under test; the checking engine is built on them, never the other way
    # (tomlfile reads users' TOML files and imports nothing of vfslab)
    ("vfslab/subjects", ("vfslab.subjects", "vfslab.model", "vfslab.impl", "vfslab.tomlfile")),
    # the engine is what every family shares: it knows no family
    ("vfslab/check/engine", ("vfslab.check.engine", "vfslab.check.results", "vfslab.subjects", "vfslab.model",
                             "vfslab.suite", "hypothesis")),
])
def test_each_layer_imports_only_what_it_may(folder, prefixes):
    wrong = sorted((f, m) for f, m in imports(folder) if not allowed(m, prefixes))
    assert not wrong, f"{folder} imports {wrong}"


FAMILY_NAMES = ("union", "posix", "vmblock", "pmem", "sim", "storage")


def _switches_on_a_family(path: Path) -> list[str]:
    """Places in `path` that compare with, index by or key a dict on a family's name written as a string."""
    def named(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and node.value in FAMILY_NAMES

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            left = node.left
            # `args.command == "sim"` picks a subcommand, not a family
            if isinstance(left, ast.Attribute) and left.attr == "command":
                continue
            operands = [left, *node.comparators]
            operands += [e for o in operands if isinstance(o, ast.Tuple | ast.List | ast.Set) for e in o.elts]
            hits = [o for o in operands if named(o)]
        elif isinstance(node, ast.Dict):
            hits = [k for k in node.keys if named(k)]
        elif isinstance(node, ast.Subscript):
            hits = [node.slice] if named(node.slice) else []
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            hits = [a for a in node.args if named(a)]
        else:
            continue
        found += [f"{path.name}:{h.lineno}: {h.value!r}" for h in hits]
    return found


def test_no_family_is_switched_on_by_name_in_suite_runner_or_cli():
    """The suite loader, the runner and the command line go through the family registry."""
    from vfslab.check.families import FAMILIES

    assert set(FAMILIES) == set(FAMILY_NAMES), "FAMILY_NAMES here lists the registry's families"
    found = [hit for name in ("suite.py", "runner.py", "cli.py")
             for hit in _switches_on_a_family(ROOT / "vfslab" / name)]
    assert not found, found


def test_the_switch_finder_finds_a_switch(tmp_path):
    """The guard above can fail: it sees the forms a switch takes."""
    sample = tmp_path / "sample.py"
    sample.write_text('if kind == "union":\n    pass\nrun = {"vmblock": 1}[kind]\nx = f.get("pmem")\n'
                      'y = kind in ("sim", "other")\n')
    assert len(_switches_on_a_family(sample)) == 4


def test_every_citation_points_into_the_repository():
    """Code and docs cite docs/ of this repository, never files outside it."""
    import re

    cite = re.compile(r"\.\./shared|(^|[^/a-z])(FACTS|DESIGN)\.md|(^|[^a-z/])seeds/")
    wrong = [f"{p.relative_to(ROOT)}:{i}" for p in ROOT.rglob("*") if p.suffix in (".py", ".md", ".toml")
             and ".venv" not in p.parts and p.name != Path(__file__).name
             for i, line in enumerate(p.read_text().splitlines(), 1) if cite.search(line)]
    assert not wrong, wrong
    for doc in ("design.md", "facts.md", "seeds.md"):
        assert (ROOT / "docs" / doc).is_file(), doc
