"""Scenario files (TOML) and suites: what `vfslab run` runs.

A scenario names its id, suite, the family it checks (`family`: one of the registry's; `union` when left out),
its kind (one the family runs), the subjects it applies to, the profile they are held to, a budget, parameters
(read by the family), explicit programs, and the expected verdict (per subject where subjects are known to
differ). A suite is a folder of scenario files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from vfslab.check.engine.generated import Budget
from vfslab.check.families import DEFAULT, get
from vfslab.subjects import placement
from vfslab.tomlfile import read_toml

#: what scenario files called `family` before results schema 2; still read
OLD_FAMILY_KEY = "model"
DEFAULTS = Budget()


@dataclass(frozen=True)
class Scenario:
    id: str
    suite: str
    family: str
    kind: str
    subjects: tuple[str, ...]
    profile: str
    expect: str
    expect_by_subject: dict[str, str] = field(default_factory=dict)
    #: a subject held to a profile of its own instead of `profile`
    profile_by_subject: dict[str, str] = field(default_factory=dict)
    budget: Budget = DEFAULTS
    programs: tuple[dict, ...] = ()
    #: the [params] table as written
    params: dict = field(default_factory=dict)
    #: what the family made of the params and programs (its kinds read it)
    settings: object = None
    #: where a union check's layers live, when the scenario pins it (else the command line's, default `same`)
    placements: tuple[str, ...] | None = None
    source: str = ""

    def expected(self, subject: str) -> str:
        return self.expect_by_subject.get(subject, self.expect)

    def profile_for(self, subject: str) -> str:
        return self.profile_by_subject.get(subject, self.profile)


def default_suite() -> Path:
    """Every suite shipped with vfslab."""
    return Path(str(resources.files("vfslab.scenarios")))


def load(path: Path) -> Scenario:
    data = read_toml(path, "scenario")
    try:
        family = get(data.get("family", data.get(OLD_FAMILY_KEY, DEFAULT)))
        kind = data["kind"]
        if kind not in family.kinds:
            raise ValueError(f"kind {kind!r} is not one of {', '.join(family.kinds)} for family {family.name}")
        profile = data.get("profile", family.default_profile)
        by_subject = dict(data.get("profile_by_subject", {}))
        for named in (profile, *by_subject.values()):
            if family.profiles and named not in family.profiles:
                raise ValueError(f"profile {named!r} is not one of {', '.join(family.profiles)}")
        budget = data.get("budget", {})
        params = dict(data.get("params", {}))
        programs = tuple(data.get("programs", ()))
        return Scenario(
            id=data["id"],
            suite=data.get("suite", path.parent.name),
            family=family.name,
            kind=kind,
            subjects=tuple(data["subjects"]),
            profile=profile,
            expect=data.get("expect", "pass"),
            expect_by_subject=dict(data.get("expect_by_subject", {})),
            profile_by_subject=by_subject,
            budget=Budget(int(budget.get("examples", DEFAULTS.examples)), int(budget.get("steps", DEFAULTS.steps)),
                          float(budget.get("seconds", DEFAULTS.seconds))),
            programs=programs,
            params=params,
            # a bad parameter or a program that cannot be read is the scenario file's error, not the run's
            settings=family.settings(kind, params, programs, profile),
            placements=placement.parse(data["placement"]) if "placement" in data else None,
            source=str(path),
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        what = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{path}: bad scenario: {what}") from None


def collect(paths: list[Path]) -> list[Scenario]:
    """Every scenario in the given files and folders (recursively), in path order."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(p.rglob("*.toml"))
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"{p}: no such scenario file or folder")
    if not files:
        raise ValueError(f"no scenario files in {', '.join(map(str, paths))}")
    return [load(f) for f in files]

