"""The ovlfs storage method's contract (seed 002; docs/facts.md, ovlfs storage 1-7; docs/storage.md)."""

from vfslab.model.storage.contract import (
    BARE_MINIMUM,
    BASE,
    FILE_SYSTEMS,
    LOOKS,
    NO_BASE_REF,
    OPERATIONS,
    OPTIONAL,
    RELINK,
    REQUIRED,
    ROOT_INO,
    STORAGE,
    UNLINKED,
    Attrs,
    Breach,
    Entry,
    Err,
    Outcome,
    Space,
    State,
    StorageModel,
)
from vfslab.model.storage.profiles import PROFILES, Profile
from vfslab.model.storage.rules import LIMITS, RULES

__all__ = ["BARE_MINIMUM", "BASE", "FILE_SYSTEMS", "LIMITS", "LOOKS", "NO_BASE_REF", "OPERATIONS", "OPTIONAL",
           "PROFILES", "RELINK", "REQUIRED", "ROOT_INO", "RULES", "STORAGE", "UNLINKED", "Attrs", "Breach", "Entry",
           "Err", "Outcome", "Profile", "Space", "State", "StorageModel"]
