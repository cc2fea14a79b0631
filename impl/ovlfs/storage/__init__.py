"""Storage methods by name: `dir:PATH`, `file:PATH`, `pmem:POOL`, and a user's own, `python:MODULE:CLASS[:LOCATION]`.

`open_method(spec)` makes the method a `--storage` argument names (not yet initialised: its `init()` reads and
verifies the storage); `mkfs(spec)` prepares storage for it, as the seed advises: a separate program, so that
mounting the wrong device cannot destroy what is on it. `dump(method)` is a JSON-able picture of a method's whole
storage (`base.TablesMethod.dump`), for reports and for comparing states.

Ours keep the same tables (`tables.py`, where the rules are) and differ in where they put them (`dir.py`,
`file.py`, `pmem.py`).
"""

from __future__ import annotations

from typing import Any

from vfslab.impl.ovlfs.storage.dir import DirMethod
from vfslab.impl.ovlfs.storage.file import FileMethod
from vfslab.impl.ovlfs.storage.loader import USAGE as PYTHON_USAGE
from vfslab.impl.ovlfs.storage.loader import load_class
from vfslab.impl.ovlfs.storage.method import StorageMethod
from vfslab.impl.ovlfs.storage.pmem import PmemMethod

#: our methods, by scheme; `python:` loads a user's class (loader.py)
SCHEMES: dict[str, type[StorageMethod]] = {cls.scheme: cls for cls in (DirMethod, FileMethod, PmemMethod)}
USAGE = "a storage is dir:PATH, file:PATH, pmem:POOL[?size=N] or " + PYTHON_USAGE


def method_class(spec: str) -> tuple[type, str]:
    """The class a spec names and the location it is given; ValueError (one line) for a spec that names none."""
    scheme, _, location = spec.partition(":")
    if scheme == "python":
        return load_class(location)
    if scheme not in SCHEMES or not location:
        raise ValueError(f"{spec!r}: {USAGE}")
    return SCHEMES[scheme], location


def open_method(spec: str) -> StorageMethod:
    cls, location = method_class(spec)
    return cls(location)


def mkfs(spec: str, force: bool = False) -> None:
    """Fresh storage: the format header and an empty root directory. Existing storage of any kind is refused
    (a one-line OSError) unless `force`."""
    cls, location = method_class(spec)
    if not callable(getattr(cls, "mkfs", None)):
        raise ValueError(f"{spec!r}: {cls.__name__} has no mkfs")
    cls.mkfs(location, force)


def dump(method: StorageMethod) -> dict[str, Any]:
    """The method's whole storage as JSON-able data (ours: `base.TablesMethod.dump`)."""
    if not callable(getattr(method, "dump", None)):
        raise ValueError(f"{type(method).__name__} has no dump")
    return method.dump()
