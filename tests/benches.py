"""The bench scripts (bench/*.py are scripts, not a package), loaded as modules for their tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(script: str) -> ModuleType:
    """bench/<script>.py as the module `bench_<script>` (without its `bench_` prefix doubled)."""
    name = script if script.startswith("bench_") else f"bench_{script}"
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module
