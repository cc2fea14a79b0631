"""Profiles: what a storage method may be held to. The seed describes one contract, with no variants among
methods; vfslab's choices where it is silent are rules of that one profile (`storage.silent.*`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    description: str


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("ovlfs", "the seed's storage method contract, with vfslab's choices where the seed is silent"),
)}
