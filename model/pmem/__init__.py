"""The pmemfile routing model: a kernel file system with pools mounted on its directories, one cwd, one fd table."""

from vfslab.model.pmem.profiles import PROFILES, Profile
from vfslab.model.pmem.routing import RoutingModel
from vfslab.model.pmem.rules import RULES

__all__ = ["PROFILES", "RULES", "Profile", "RoutingModel"]
