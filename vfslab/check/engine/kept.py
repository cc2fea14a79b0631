"""Kept programs: what a check saves of a failure or a deviation, and what replaying one found."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar


class Kept(ABC):
    """What a kept program does: JSON on disk (`vfslab replay`), and a regression scenario (kind `program`) in which
    the subject must agree with the model on it. Subclasses are dataclasses with subject, profile, message,
    `to_json()` (with "family", "layers" and "ops") and `from_json()`; `family` names the family that reads it."""

    family: ClassVar[str]
    subject: str
    profile: str
    message: str

    @abstractmethod
    def to_json(self) -> dict:
        """The program as JSON: its family, subject, profile, message, initial tree ("layers") and "ops"."""

    @classmethod
    @abstractmethod
    def from_json(cls, data: dict) -> Kept:
        """The program `to_json` wrote; ValueError (or KeyError, TypeError) when it is not one."""

    @classmethod
    def read(cls, path: Path) -> Kept:
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise ValueError(f"{path}: not a vfslab program ({e})") from None

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")

    def to_scenario(self, scenario_id: str, family: str = "") -> str:
        """A regression scenario (kind `program`) of this program, for `family` (default: its own)."""
        data = self.to_json()
        lines = [
            f"# Found by vfslab on {self.subject} held to {self.profile}:",
            *(f"#   {line}" for line in self.message.splitlines()[:6]),
            f"id = {toml_value(scenario_id)}", 'suite = "regressions"',
            f"family = {toml_value(family or self.family)}", 'kind = "program"',
            f"subjects = {toml_value([self.subject])}", f"profile = {toml_value(self.profile)}", 'expect = "pass"', "",
            "[[programs]]", f"name = {toml_value(scenario_id)}", f"layers = {toml_value(data['layers'])}",
            f"ops = {toml_value(data['ops'])}",
        ]
        return "\n".join(lines) + "\n"


@dataclass
class Replay:
    """What happened when a program ran: `failure` is None when every profile check held to the end."""

    trace: list[str] = field(default_factory=list)
    failure: str | None = None
    deviation: str | None = None
    coverage: dict[str, int] = field(default_factory=dict)
    #: what each step returned, and what the family keeps for itself (the union's last upper layer seen)
    results: list[object] = field(default_factory=list)
    upper: object = None


def toml_value(value: object) -> str:
    """A TOML value from JSON-shaped data (inline tables and arrays)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
