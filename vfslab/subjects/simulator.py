"""The `sim` subject: the simulator itself, which sim scenarios run on (nothing is mounted)."""

from __future__ import annotations

from importlib import metadata


class Simulator:
    name = "sim"
    profiles: tuple[str, ...] = ()
    claims_overlay_format = False
    can_hang = False

    def available(self) -> tuple[bool, str]:
        return True, "pure Python"

    def version(self) -> str:
        return f"simpy {metadata.version('simpy')}, networkx {metadata.version('networkx')}"
