"""`program` scenarios: explicit programs (the seed's "What happens when I..." list) with the outcome each
profile expects, written out by hand so the model itself is checked against the text it encodes.

Each program in a scenario file has `layers`, `ops` (short form `["rename", "olddir", "newdir"]`), and
`expect` / `upper` tables keyed by profile name (or `default`): per-op results (`"ok"`, an errno name,
or a value) and the upper layer's entries (`file`, `dir`, `opaque-dir`, `symlink`, `whiteout`,
`fallthru`, `absent`).
"""

from __future__ import annotations

import errno
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vfslab.check.engine.state import show
from vfslab.check.union.program import Program, run_program
from vfslab.model.outcome import Err
from vfslab.model.state import State
from vfslab.model.union import PROFILES
from vfslab.model.union.ops import BENCH_OPS, Op
from vfslab.subjects.model import ModelMount
from vfslab.subjects.placement import SAME
from vfslab.subjects.tree import Layers


@dataclass
class Example:
    name: str
    program: Program
    expect: dict[str, list]
    upper: dict[str, dict[str, str]]

    def for_profile(self, table: dict, profile: str):
        return table.get(profile, table.get("default"))


@dataclass
class ExampleRun:
    problems: list[str] = field(default_factory=list)
    coverage: Counter = field(default_factory=Counter)
    failed: Program | None = None
    deviation: str | None = None


def parse(spec: dict, profile: str) -> Example:
    layers = Layers.from_json(spec.get("layers", [[]]))
    ops = [Op.from_json(o) for o in spec["ops"]]
    return Example(spec["name"], Program(layers, ops, profile=profile), spec.get("expect", {}), spec.get("upper", {}))


def _matches(want: object, got: object) -> bool:
    if isinstance(want, dict):  # some fields of a stat result
        return all(getattr(got, k, None) == v for k, v in want.items())
    if want == "ok":
        return not isinstance(got, Err)
    if isinstance(want, str) and want.startswith("E") and want.isupper():
        return isinstance(got, Err) and got.errno == getattr(errno, want, None)
    if isinstance(got, bytes):
        got = got.decode("latin-1")
    if isinstance(got, tuple):
        got = list(got)
    return want == got


def _upper_kind(state: State, path: str) -> str:
    e = state.get(path)
    if e is None:
        return "absent"
    return "opaque-dir" if e.kind == "dir" and e.opaque else e.kind


def expectations(example: Example, profile: str, results: list[object], upper: State | None) -> list[str]:
    """What of the written expectations for `profile` the results (and upper layer) break."""
    out = []
    want = example.for_profile(example.expect, profile)
    if want is not None:
        for op, w, got in zip(example.program.ops, want, results, strict=False):
            if not _matches(w, got):
                out.append(f"{example.name}: {op} gave {show(got)}, the scenario expects {w} under {profile}")
    layout = example.for_profile(example.upper, profile)
    if layout is not None and upper is not None:
        for path, kind in layout.items():
            if _upper_kind(upper, path) != kind:
                out.append(f"{example.name}: upper layer has {_upper_kind(upper, path)} at {path}, "
                           f"the scenario expects {kind} under {profile}")
    return out


def model_results(example: Example, profile: str, fired: Counter) -> tuple[list[object], State]:
    """Run an example on the model alone: its results and its upper layer; the rules it fired counted in `fired`."""
    mount = ModelMount(example.program.layers, profile)
    driver = mount.driver()
    results: list[object] = []
    for op in example.program.ops:
        if op.name in BENCH_OPS:  # as Lockstep does: the mount goes away with every open file
            fired.update(getattr(mount.model, op.name)().rules)
            driver.release()
            results.append(None)
        else:
            result, outcome = driver.answer(op)
            fired.update(outcome.rules)
            results.append(result)
    return results, mount.model.upper_state()


def check_examples(specs: tuple[dict, ...], subject, profile: str, scratch: Path,
                   placement: str = SAME) -> ExampleRun:
    run = ExampleRun()
    for i, spec in enumerate(specs):
        example = parse(spec, profile)
        example.program.subject, example.program.placement = subject.name, placement
        if subject.capabilities.reference and not PROFILES[profile].observed:
            # the model against the text, under every design profile (observed ones describe a program, not a
            # text, and are checked as any subject is); what fires there counts, so that the seed's own design
            # (fallthrus) shows as reached
            for name in (n for n, p in PROFILES.items() if not p.observed):
                run.problems += expectations(example, name, *model_results(example, name, run.coverage))
        replay = run_program(example.program, subject, profile, scratch / f"p{i}")
        run.coverage.update(replay.coverage)
        run.deviation = run.deviation or replay.deviation
        if replay.failure:
            run.problems.append(f"{example.name}: {replay.failure}")
        else:
            upper = replay.upper if subject.capabilities.overlay_format else None
            run.problems += expectations(example, profile, replay.results, upper)
        if run.problems and run.failed is None:
            example.program.message = run.problems[0]
            run.failed = example.program
    return run

