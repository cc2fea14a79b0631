"""The `sim` subject: the simulator itself, which sim scenarios run on (nothing is mounted)."""

from __future__ import annotations

from importlib import metadata

from vfslab.subjects.base import Capabilities


class Simulator:
    name = "sim"
    profiles: tuple[str, ...] = ()
    capabilities = Capabilities(("sim",), max_layers=0, remount=False, push=False)

    def available(self) -> tuple[bool, str]:
        return True, "pure Python"

    def version(self) -> str:
        return f"simpy {metadata.version('simpy')}, networkx {metadata.version('networkx')}"
