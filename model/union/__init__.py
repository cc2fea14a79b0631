"""The union mount model (seed 003): layers, profiles, rules and the operations."""

from vfslab.model.union.fs import Cred, UnionModel
from vfslab.model.union.profiles import PROFILES, Profile
from vfslab.model.union.rules import RULES

__all__ = ["PROFILES", "RULES", "Cred", "Profile", "UnionModel"]
