"""The pmemfile routing model: a kernel file system with pools mounted on its directories, one cwd, one fd table."""

from vfslab.model.pmem.profiles import PROFILES, Profile
from vfslab.model.pmem.routing import RoutingModel
from vfslab.model.pmem.rules import LIMITS, RULES

__all__ = ["LIMITS", "PROFILES", "RULES", "Profile", "RoutingModel"]
