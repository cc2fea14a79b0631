"""The registry of families: one line each. Everything that runs, loads or replays goes through it."""

from __future__ import annotations

from vfslab.check.engine.family import Family
from vfslab.check.pmem.family import FAMILY as PMEM
from vfslab.check.posix.family import FAMILY as POSIX
from vfslab.check.sim.family import FAMILY as SIM
from vfslab.check.storage.family import FAMILY as STORAGE
from vfslab.check.union.family import FAMILY as UNION
from vfslab.check.vmblock.family import FAMILY as VMBLOCK

FAMILIES: dict[str, Family] = {f.name: f for f in (UNION, POSIX, VMBLOCK, PMEM, SIM, STORAGE)}
#: the family of a scenario file or saved program that names none (written before families had a key)
DEFAULT = UNION.name


def get(name: str) -> Family:
    """The family called `name`; ValueError naming the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r} (known: {', '.join(FAMILIES)})") from None
