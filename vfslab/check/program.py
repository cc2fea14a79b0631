"""Programs: an initial tree and a list of operations, replayable on any subject."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from vfslab.check.lockstep import Mismatch
from vfslab.check.ops import Op, show
from vfslab.check.session import Session
from vfslab.check.tree import Layers
from vfslab.model.state import State


class Kept:
    """What a kept program does: JSON on disk (`vfslab replay`), and a regression scenario (kind `program`) in which
    the subject must agree with the model on it. Subclasses are dataclasses with subject, profile, message and
    `to_json()` (with "layers" and "ops"); `model` names the scenario's model ("" for the default, union)."""

    model: ClassVar[str] = ""
    subject: str
    profile: str
    message: str

    def to_json(self) -> dict:
        raise NotImplementedError

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")

    def to_scenario(self, scenario_id: str) -> str:
        data = self.to_json()
        lines = [
            f"# Found by vfslab on {self.subject} held to {self.profile}:",
            *(f"#   {line}" for line in self.message.splitlines()[:6]),
            f"id = {toml_value(scenario_id)}", 'suite = "regressions"',
            *([f"model = {toml_value(self.model)}"] if self.model else []), 'kind = "program"',
            f"subjects = {toml_value([self.subject])}", f"profile = {toml_value(self.profile)}", 'expect = "pass"', "",
            "[[programs]]", f"name = {toml_value(scenario_id)}", f"layers = {toml_value(data['layers'])}",
            f"ops = {toml_value(data['ops'])}",
        ]
        return "\n".join(lines) + "\n"


@dataclass
class Program(Kept):
    layers: Layers
    ops: list[Op]
    subject: str = ""
    profile: str = "overlayfs"
    message: str = ""

    def to_json(self) -> dict:
        return {"subject": self.subject, "profile": self.profile, "message": self.message,
                "layers": self.layers.to_json(), "ops": [op.to_json() for op in self.ops]}

    @classmethod
    def from_json(cls, data: dict) -> Program:
        return cls(Layers.from_json(data["layers"]), [Op.from_json(o) for o in data["ops"]],
                   data.get("subject", ""), data.get("profile", "overlayfs"), data.get("message", ""))

    @classmethod
    def read(cls, path: Path) -> Program:
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise ValueError(f"{path}: not a vfslab program ({e})") from None


@dataclass
class Replay:
    """What happened when a program ran: `failure` is None when every profile check held to the end."""

    trace: list[str] = field(default_factory=list)
    failure: str | None = None
    deviation: str | None = None
    coverage: dict[str, int] = field(default_factory=dict)
    results: list[object] = field(default_factory=list)
    upper: State | None = None  # the upper layer as last seen


def run_program(program: Program, subject, profile: str, scratch: Path, watchdog_seconds: float = 10.0) -> Replay:
    session = Session(subject, profile, program.layers, scratch, watchdog_seconds)
    out = Replay()
    try:
        session.check()
        for op in program.ops:
            result = session.step(op)
            out.results.append(result)
            out.trace.append(f"{op} -> {show(result)}" if result is not None else str(op))
        session.finish()
    except Mismatch as m:
        out.failure = str(m)
    finally:
        out.deviation = session.lock.deviation
        out.coverage = dict(session.lock.coverage)
        out.upper = session.last_upper
        session.close()
    return out


def toml_value(value: object) -> str:
    """A TOML value from JSON-shaped data (inline tables and arrays)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
