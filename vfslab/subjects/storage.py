"""Storage methods as subjects: ours (`storage-dir`, `storage-file`, `storage-pmem`) and a user's
(`python:MODULE:CLASS`), each checked on fresh storage the check makes in its scratch folder.

A method is named by its spec without the location (`dir`, `python:mymod:MyMethod`); the checker asks its subject
for a location in a scratch folder, formats storage there (`mkfs`, forced: it is the check's own) and opens the
method on it (`open`: not initialised). `storage-python` is the subject of a user's method, bound to one by
`vfslab storage check` or to the one a saved program names (`bound`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from vfslab.subjects.base import Capabilities

#: what pmem storage is made with: a small pool, formatted per program
POOL = "?size=1M"
#: a storage method is driven in-process, never mounted
CAPABILITIES = Capabilities(("storage",), max_layers=0, remount=True, push=False)


@dataclass(frozen=True)
class StorageSubject:
    name: str
    #: the spec without its location ("" for `storage-python` until it is bound to a method)
    method: str
    #: what a location is followed by in a spec (pmem's pool size)
    options: str = ""
    profiles: tuple[str, ...] = ("ovlfs",)
    capabilities: Capabilities = CAPABILITIES

    def available(self) -> tuple[bool, str]:
        if not self.method:  # a user's: whatever method a check or a saved program binds it to
            return True, "a user's method: vfslab storage check python:MODULE:CLASS"
        try:
            self.cls()
        except (ImportError, ValueError) as e:
            return False, str(e)
        return True, "pure Python"

    def version(self) -> str:
        return metadata.version("vfslab")  # the methods are vfslab's own (a user's: whatever vfslab runs it)

    def bound(self, method: str) -> StorageSubject:
        """This subject, for the method `method` (a user's subject takes the one a program names)."""
        if self.method:
            return self
        return StorageSubject(self.name, method)

    def spec(self, location: str) -> str:
        return f"{self.method}:{location}{self.options}"

    def cls(self) -> type:
        from vfslab.impl.ovlfs.storage import method_class

        if not self.method:
            raise ValueError(f"{self.name} names no method: vfslab storage check python:MODULE:CLASS")
        return method_class(self.spec("-"))[0]  # a location only to name the class by

    def location(self, scratch: Path) -> str:
        """Where fresh storage goes in `scratch`: a name not taken yet, which mkfs makes a directory or a file."""
        scratch.mkdir(parents=True, exist_ok=True)
        return str(scratch.resolve() / "storage")

    def mkfs(self, location: str) -> None:
        """Format storage at `location` (a method with no mkfs makes its own at Init, as the seed allows)."""
        from vfslab.impl.ovlfs.storage import mkfs

        if callable(getattr(self.cls(), "mkfs", None)):
            mkfs(self.spec(location), force=True)

    def open(self, location: str) -> object:
        from vfslab.impl.ovlfs.storage import open_method

        return open_method(self.spec(location))

    @functools.cached_property
    def operations(self) -> frozenset[str]:
        from vfslab.impl.ovlfs.storage.method import operations

        return operations(self.cls())


def user(method: str) -> StorageSubject:
    """The subject of a user's method, `python:MODULE:CLASS` (a location after it is the user's, not the check's:
    it is dropped)."""
    scheme, module, name, *_ = [*method.split(":", 3), "", ""]
    if scheme != "python" or not module or not name:
        raise ValueError(f"{method!r}: a user's method is python:MODULE:CLASS")
    return PYTHON.bound(f"python:{module}:{name}")


DIR = StorageSubject("storage-dir", "dir")
PYTHON = StorageSubject("storage-python", "")
SUBJECTS = (DIR, StorageSubject("storage-file", "file"), StorageSubject("storage-pmem", "pmem", POOL), PYTHON)
