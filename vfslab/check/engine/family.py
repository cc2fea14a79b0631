"""What a family is, the job a runner hands it, and how what a check found becomes a record's verdict.

A family is one kind of semantics with its model, rules, profiles, scenario kinds and checker (union, vmblock,
pmem routing, sim). It is one `Family` value, listed once in `vfslab/check/families.py`; the suite loader, the
runner, `vfslab replay` and the reports go through that registry and never name a family themselves.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vfslab.check.engine.generated import Budget, Tally
from vfslab.check.engine.kept import Kept, Replay
from vfslab.check.engine.race import held_difference
from vfslab.check.results import FAIL, HANG, PASS, Counterexample, Record, deviation
from vfslab.model.limits import Limit, edges_of
from vfslab.subjects.files import replay_options
from vfslab.subjects.placement import SAME

if TYPE_CHECKING:
    from vfslab.suite import Scenario

#: replay a kept program on a subject held to a profile, in a scratch directory
Replayer = Callable[[Kept, Any, str, Path], Replay]


@dataclass(frozen=True)
class Family:
    #: the one name: scenario files' `family`, results.json, saved programs, the CLI and reports
    name: str
    #: rule id -> what it says (coverage is counted over these)
    rules: Mapping[str, str]
    #: profile name -> profile (with a `description`)
    profiles: Mapping[str, Any]
    default_profile: str
    #: scenario kind -> what runs one on a subject (fills `job.record`)
    kinds: Mapping[str, Callable[[Job], None]]
    #: a scenario's [params] and programs, checked when it is loaded: returns what the family's kinds read as
    #: `scenario.settings`; raises ValueError naming what is wrong
    settings: Callable[[str, dict, tuple[dict, ...], str], object]
    #: what reads the programs it saves (`from_json(data) -> Kept`: a Kept class, or one that picks among several),
    #: and how such a program is run again (None: the family keeps its own files)
    program: Any = None
    replay: Replayer | None = None
    #: replays a saved file itself (no subject to set up): the simulator's runs
    replay_file: Callable[[dict], Replay] | None = None
    #: the operations its programs are made of, for --help and docs
    operations: tuple[str, ...] = ()
    #: the subject a saved program replays on when none is named
    default_subject: str = ""
    #: its checks run with the layers placed as asked (subjects/placement.py); the others' once, as they are
    placed: bool = False
    #: the numbers in its rules (model/limits.py), whose edges its checks count
    limits: tuple[Limit, ...] = ()


@dataclass
class Job:
    """One scenario run against one subject: what a family's kind is handed, and the record it fills."""

    scenario: Scenario
    subject: Any
    profile: str
    seed: int
    budget: Budget
    scratch: Path
    out: Path
    record: Record
    family: Family = field(repr=False)
    placement: str = SAME

    @property
    def name(self) -> str:
        return f"{self.scenario.id}--{self.record.label}"

    @property
    def database(self) -> Path:
        """Hypothesis's example database, kept in the output folder so failures replay."""
        return self.out / "hypothesis"

    def keep(self, program: Kept) -> Counterexample:
        """Save a program as JSON (for `vfslab replay`) and as a regression scenario; the counterexample citing it."""
        folder = self.out / "programs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        # saved under the family that found it: the posix family keeps union programs
        data = program.to_json() | {"family": self.family.name}
        path.write_text(json.dumps(data, indent=1) + "\n")
        (folder / f"{self.name}.toml").write_text(program.to_scenario(self.name, self.family.name))
        return Counterexample(data["layers"], data["ops"], program.message,
                              replay_command(path, program.subject, program.profile)
                              + replay_options(self.subject), str(path),
                              difference=held_difference(program.message))

    def count(self, fired: Mapping[str, int]) -> None:
        """The record's coverage: every rule of the family with how often it decided an outcome (a rule at 0
        never fired here), and every edge of its limits with how often an outcome was decided at it."""
        r = self.record
        r.coverage = {rule: fired.get(rule, 0) for rule in self.family.rules}
        r.edges = {edge: fired.get(edge, 0) for edge in edges_of(self.family.limits)}

    def deviates(self, profiles: list[str], differences: Counter | None = None) -> None:
        r = self.record
        r.deviations = profiles
        r.verdict = deviation(profiles[0])
        r.reason = f"allowed under {profiles[0]}: {self.family.profiles[profiles[0]].description}"
        if differences:
            r.reason += "; differences seen: " + ", ".join(f"{rule} x{n}" for rule, n in differences.most_common())

    def from_tally(self, tally: Tally) -> None:
        """The verdict of a generated check."""
        r = self.record
        r.examples, r.steps = tally.examples, tally.steps
        self.count(tally.coverage)
        if tally.failure is not None:
            r.verdict = HANG if tally.hang else FAIL
            r.counterexample = self.keep(tally.failure)
        elif tally.error:
            r.reason = tally.error
        elif tally.deviations:
            self.deviates(sorted(tally.deviations), tally.differences)
            r.counterexample = self.keep(tally.deviations[r.deviations[0]])
        else:
            r.verdict = PASS
        if tally.shrink_cut:
            r.reason = "; ".join(filter(None, [r.reason, f"shrunk through {self.budget.shrink} programs only: a "
                                               "quick run's cap for a failure the scenario expects (--full: to the "
                                               "end)"]))
        if tally.spent and tally.failure is None:
            r.reason = "; ".join(filter(None, [r.reason, f"the {self.budget.seconds:g} s budget ended the search "
                                               f"after {tally.examples} of {self.budget.examples} programs"]))

    def run_programs(self, programs: Iterable[dict] | None = None) -> None:
        """A `program` scenario: each of its programs (or of `programs`, saved programs' JSON) replayed in lockstep
        with the model; the first failure ends it."""
        family, r = self.family, self.record
        fired: Counter = Counter()
        r.verdict = PASS
        for i, spec in enumerate(self.scenario.programs if programs is None else programs):
            program = family.program.from_json(spec)
            replay = family.replay(program, self.subject, self.profile, self.scratch / f"p{i}")
            fired.update(replay.coverage)
            r.examples += 1
            if replay.failure or replay.deviation:
                program.subject, program.profile = self.subject.name, self.profile
                program.message = replay.failure or replay.deviation
                r.counterexample = self.keep(program)
                if replay.failure:
                    r.verdict, r.reason = FAIL, replay.failure.splitlines()[0]
                    break
                self.deviates([replay.deviation])
        self.count(fired)


def replay_command(path: Path, subject: str, profile: str) -> str:
    return f"vfslab replay {path} --subject {subject} --profile {profile}"
