"""The vmblock model (seed 001, FACTS.md vmblock 1-11): the tree, blocking readlinks, the control protocol."""

from vfslab.model.block.fs import BANNER, VERSION, Attr, BlockModel, Options, Waiting
from vfslab.model.block.rules import RULES

__all__ = ["BANNER", "RULES", "VERSION", "Attr", "BlockModel", "Options", "Waiting"]
