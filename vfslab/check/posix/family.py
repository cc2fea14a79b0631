"""The posix family: a plain file system (no layers of its own) held to the union model's posix profiles, by the
union checker: its initial tree is one layer, copied in, and nothing is pushed."""

from __future__ import annotations

from dataclasses import replace

from vfslab.check.union.family import FAMILY as UNION

FAMILY = replace(UNION, name="posix", default_profile="posix", default_subject="tmpfs")
