"""The posix family: a plain file system (no layers of its own) held to the union model's posix profiles, by the
union checker: its initial tree is one layer, copied in, and nothing is pushed. Its coverage counts the union
rules a plain file system can show (model/union/rules.py's POSIX_RULES), not those about layers."""

from __future__ import annotations

from dataclasses import replace

from vfslab.check.union.family import FAMILY as UNION
from vfslab.model.union.rules import POSIX_RULES

FAMILY = replace(UNION, name="posix", rules=POSIX_RULES, default_profile="posix", default_subject="tmpfs")
