"""The vmblock model (seed 001; docs/facts.md, vmblock 1-11): the tree, blocking readlinks, the control protocol."""

from vfslab.model.block.fs import DIR_SIZE, VERSION, Attr, BlockModel, Options, Waiting
from vfslab.model.block.profiles import PROFILES, Profile
from vfslab.model.block.rules import BANNER, LIMITS, RULES

__all__ = ["BANNER", "DIR_SIZE", "LIMITS", "PROFILES", "RULES", "VERSION", "Attr", "BlockModel", "Options",
           "Profile", "Waiting"]
