"""Programs: an initial tree and a list of operations, replayable on any subject."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vfslab.check.engine.kept import Kept, Replay
from vfslab.check.engine.race import WATCHDOG_SECONDS, Mismatch
from vfslab.check.engine.state import show
from vfslab.check.union.session import Session
from vfslab.model.union.ops import Op
from vfslab.subjects.placement import SAME
from vfslab.subjects.placement import check as check_placement
from vfslab.subjects.tree import Layers

FAMILY = "union"


@dataclass
class Program(Kept):
    family = FAMILY

    layers: Layers
    ops: list[Op]
    subject: str = ""
    profile: str = "overlayfs"
    message: str = ""
    #: where the layers lived (subjects/placement.py)
    placement: str = SAME

    def to_json(self) -> dict:
        return {"family": FAMILY, "subject": self.subject, "profile": self.profile, "message": self.message,
                "placement": self.placement, "layers": self.layers.to_json(),
                "ops": [op.to_json() for op in self.ops]}

    @classmethod
    def from_json(cls, data: dict) -> Program:
        return cls(Layers.from_json(data["layers"]), [Op.from_json(o) for o in data["ops"]],
                   data.get("subject", ""), data.get("profile", "overlayfs"), data.get("message", ""),
                   check_placement(data.get("placement", SAME)))


def run_program(program: Program, subject, profile: str, scratch: Path,
                watchdog_seconds: float = WATCHDOG_SECONDS) -> Replay:
    session = Session(subject, profile, program.layers, scratch, watchdog_seconds, program.placement)
    out = Replay()
    try:
        session.begin()
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
