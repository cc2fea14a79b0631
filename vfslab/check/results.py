"""Results records: what a run produced, as plain dataclasses that reports read and results.json stores."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: 2: records name their `family`, their `placement` and what the engine `skipped`; a counterexample keeps the
#: held profile's `difference` apart from its whole message. 3: a simulated deadlock's counterexample carries its
#: wait-for graph and timeline as data (`wait_for`, `wait_for_threads`, `wait_for_cycle`, `timeline`) for reports
#: to draw. 4: a record counts the `edges` of its family's limits it reached. Files of schema 1 to 3 are still read:
#: what they lack is left at its default.
SCHEMA_VERSION = 4
READS = (1, 2, 3, 4)

PASS = "pass"
FAIL = "fail"
HANG = "hang"
DEADLOCK = "deadlock"
ERROR = "error"
UNAVAILABLE = "unavailable"


def deviation(name: str) -> str:
    return f"deviation:{name}"


def label(subject: str, placement: str) -> str:
    """A subject as reports and test ids name it: with where its layers lived, unless that is the usual place."""
    return subject if placement == "same" else f"{subject}@{placement}"


@dataclass
class Counterexample:
    """A shrunk failing program: the initial layers, the operations, what differed, how to replay it."""

    layers: list
    ops: list[dict]
    message: str
    replay: str
    program_file: str = ""
    #: a simulated deadlock's wait-for graph (Mermaid), for reports to draw
    graph: str = ""
    #: the held profile's first difference (`message` goes on with what the other profiles said)
    difference: str = ""
    #: a simulated deadlock's wait-for graph as its edges [from, to]: a thread points at what it waits on, a
    #: resource at whoever holds it
    wait_for: list[list[str]] = field(default_factory=list)
    #: which of the wait-for graph's nodes are threads (the others are resources)
    wait_for_threads: list[str] = field(default_factory=list)
    #: the wait-for graph's cycle, its nodes in order (empty when the threads wait on a cancelled one instead)
    wait_for_cycle: list[str] = field(default_factory=list)
    #: a simulated run's trace, a step each: {"choice", "thread", "action", "what"}
    timeline: list[dict] = field(default_factory=list)


@dataclass
class Record:
    """One scenario run against one subject."""

    scenario: str
    suite: str
    kind: str
    subject: str
    profile: str
    expected: str
    verdict: str
    seconds: float = 0.0
    examples: int = 0
    steps: int = 0
    coverage: dict[str, int] = field(default_factory=dict)
    #: every edge of the family's limits (`RULE@LIMIT-1`, `@LIMIT`, `@LIMIT+1`, `@0`) with how often it was reached
    edges: dict[str, int] = field(default_factory=dict)
    deviations: list[str] = field(default_factory=list)
    reason: str = ""
    counterexample: Counterexample | None = None
    family: str = ""
    #: what the subject does not support and the engine therefore left out, one note each
    skipped: list[str] = field(default_factory=list)
    #: where the layers lived (union checks): same, fs-per-layer or ro-image
    placement: str = "same"

    @property
    def label(self) -> str:
        return label(self.subject, self.placement)

    @property
    def as_expected(self) -> bool:
        return self.verdict == UNAVAILABLE or self.verdict == self.expected


@dataclass
class RunMeta:
    vfslab_version: str
    git_sha: str
    seed: int
    kernel: str
    libfuse: str
    started: str
    seconds: float = 0.0
    subjects: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    #: [K, N] for shard K of N (`vfslab run --shard`), empty for a whole run
    shard: list[int] = field(default_factory=list)


@dataclass
class Results:
    meta: RunMeta
    records: list[Record] = field(default_factory=list)

    @property
    def as_expected(self) -> bool:
        return all(r.as_expected for r in self.records)

    def to_json(self) -> dict:
        return {"schema": SCHEMA_VERSION, "meta": asdict(self.meta), "records": [asdict(r) for r in self.records]}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n")

    @classmethod
    def read(cls, path: Path) -> Results:
        data = json.loads(path.read_text())
        if data.get("schema") not in READS:
            raise ValueError(f"{path}: results schema {data.get('schema')!r}, this vfslab reads "
                             f"{', '.join(map(str, READS))}")
        records = []
        for r in data["records"]:
            cx = r.pop("counterexample", None)
            records.append(Record(**r, counterexample=Counterexample(**cx) if cx else None))
        return cls(meta=RunMeta(**data["meta"]), records=records)
