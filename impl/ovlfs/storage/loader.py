"""`python:MODULE:CLASS[:LOCATION]`: a storage method of the user's own, as the seed's goal 1 wants ("additional
storage methods ... with minimal or no modification to the overlay filesystem").

MODULE is a module name, or the path of a .py file; CLASS is taken from it and, like ours, constructed with
LOCATION (everything after the third colon, colons included; "" when not given). A class that lacks an operation
of the seed's bare minimum (requirement 2: Init, Read Inode, Map Lookup, Read Directory) is refused, naming what it
lacks. Its `mkfs(location, force)` classmethod, if it has one, is what `mkfs` runs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from types import ModuleType

from vfslab.impl.ovlfs.storage.method import BARE_MINIMUM, missing

USAGE = "python:MODULE:CLASS[:LOCATION] (MODULE a module name or a .py file's path)"


def load_class(rest: str) -> tuple[type, str]:
    """(class, location) named by what follows `python:`; ValueError, one line, when there is none such."""
    module, _, rest = rest.partition(":")
    name, _, location = rest.partition(":")
    if not module or not name:
        raise ValueError(f"python:{module}: a user's storage is {USAGE}")
    cls = getattr(_import(module), name, None)
    if not isinstance(cls, type):
        raise ValueError(f"python:{module}:{name}: no class {name} in {module}")
    lacking = missing(cls, BARE_MINIMUM)
    if lacking:
        raise ValueError(f"python:{module}:{name}: not a storage method: it lacks {', '.join(lacking)} "
                         f"(the bare minimum is {', '.join(BARE_MINIMUM)})")
    return cls, location


def _import(module: str) -> ModuleType:
    try:
        if not module.endswith(".py") and os.sep not in module:
            return importlib.import_module(module)
        path = os.path.abspath(module)
        # a name of its own per file, so two files called storage.py do not replace each other
        key = f"_ovlfs_storage_{hashlib.sha1(path.encode()).hexdigest()[:12]}"
        if key in sys.modules:
            return sys.modules[key]
        spec = importlib.util.spec_from_file_location(key, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"not a Python file: {path}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod  # before running it, as an import does (dataclasses look themselves up there)
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[key]
            raise
        return mod
    except Exception as e:  # whatever importing the user's code raised, said in one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"python:{module}: cannot import it ({type(e).__name__}: {first})") from None
