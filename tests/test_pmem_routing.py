"""The routing model (model/pmem) in lockstep with pmemfile's router (`pmem-router`) and with the kernel routing
into a FUSE-mounted pool (`pmem-fuse`)."""

from __future__ import annotations

import errno
import json
import os

import pytest
from conftest import replayable

from vfslab.check.engine.generated import Budget
from vfslab.check.pmem.program import RouteProgram
from vfslab.check.pmem.stateful import POOL_NODES, check_route_stateful, run_route_program
from vfslab.check.results import Results
from vfslab.cli import main
from vfslab.suite import load

pytestmark = pytest.mark.mounts


@pytest.mark.parametrize("name, profile", [("pmem-router", "pmemfile"), ("pmem-fuse", "kernel")])
def test_generated_programs_agree_with_the_routing_model(scratch, need, name, profile):
    """The CI check: 100 generated programs per subject, each held to its profile (seed 20261121)."""
    tally = check_route_stateful(need(name), profile, seed=20261121, budget=Budget(100, 25, 600),
                                 scratch_root=scratch / "check")
    assert tally.failure is None, replayable(tally.failure, scratch)
    assert not tally.error, tally.error
    assert tally.examples >= 100 and not tally.deviations
    for rule in ("pmem.route.enter", "pmem.route.dotdot", "pmem.symlink.absolute", "pmem.xdev", "pmem.fd.dup",
                 "pmem.cwd.virtual", "pmem.route.mount-point"):
        assert tally.coverage[rule] > 0, f"{rule} never decided an outcome"


def test_an_empty_path_tells_the_router_from_the_kernel(scratch, need, tmp_path):
    program = RouteProgram(POOL_NODES, [["chdir", "P/d"], ["open", "b", os.O_RDONLY], ["stat", ""],
                                        ["read", "#0", 100]])
    router = run_route_program(program, need("pmem-router"), "kernel", scratch / "r")
    assert router.failure is None and router.deviation == "pmemfile" and router.coverage["pmem.cwd.virtual"] == 1
    fuse = run_route_program(program, need("pmem-fuse"), "kernel", scratch / "f")
    assert fuse.failure is None and fuse.deviation is None
    program.subject, program.profile = "pmem-router", "pmemfile"
    saved = tmp_path / "p.json"
    program.write(saved)
    assert RouteProgram.from_json(json.loads(saved.read_text())).ops == program.ops
    assert main(["replay", str(saved)]) == 0
    regression = tmp_path / "regression.toml"
    regression.write_text(program.to_scenario("empty-path"))
    assert load(regression).family == "pmem"
    assert main(["run", str(regression), "--out", str(tmp_path / "out")]) == 0
    record, = Results.read(tmp_path / "out" / "results.json").records
    assert (record.subject, record.verdict, record.examples) == ("pmem-router", "pass", 1)
    assert record.coverage["pmem.path.empty"] == 1


def test_a_bad_routing_program_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"family": "pmem", "layers": [[]], "ops": [["frobnicate", "P"]]}))
    assert main(["replay", str(bad), "--subject", "pmem-router"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a routing call" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("name, profile, scenario", [("pmem-router", "pmemfile", "pmem-routing"),
                                                     ("pmem-fuse", "kernel", "pmem-routing-kernel")])
def test_a_quick_run_fires_every_routing_rule_and_reaches_every_edge(scratch, need, name, profile, scenario):
    """What a quick default run draws (QUICK's budget, the scenario's seed) fires every routing rule of the held
    profile, `pmem.fd.dir-offset` included (an lseek on a directory's fd), and reaches every edge of NAME_MAX,
    PATH_MAX and MAXSYMLINKS: through the router, and through the kernel into a FUSE-mounted pool."""
    from vfslab.check.engine.generated import QUICK
    from vfslab.model.limits import edges_of
    from vfslab.model.pmem import LIMITS, PROFILES, RULES
    from vfslab.runner import scenario_seed

    tally = check_route_stateful(need(name), profile, seed=scenario_seed(0, scenario), budget=QUICK,
                                 scratch_root=scratch / "check")
    assert tally.failure is None, replayable(tally.failure, scratch)
    other = {p.empty_rule for p in PROFILES.values()} - {PROFILES[profile].empty_rule}
    rules = [r for r in RULES if not r.startswith("pmem.pool.") and r not in other]
    assert [r for r in rules if not tally.coverage[r]] == []
    routing = tuple(limit for limit in LIMITS if limit.rule in rules)
    assert len(routing) == 3 and [e for e in edges_of(routing) if not tally.coverage[e]] == []


def test_the_edges_scenario_replays_every_edge_on_both_subjects(tmp_path):
    """scenarios/pmem/edges.toml: names, paths and symlink chains at each edge of NAME_MAX, PATH_MAX and
    MAXSYMLINKS, in lockstep with the model on the router and on pmem-fuse, and the router beside the kernel."""
    from pathlib import Path

    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "pmem" / "edges.toml"
    assert main(["run", str(scenario), "--out", str(tmp_path / "out")]) == 0
    records = Results.read(tmp_path / "out" / "results.json").records
    assert {r.subject for r in records} == {"pmem-router", "pmem-fuse"}
    for record in records:
        routing = {e: n for e, n in record.edges.items() if not e.startswith("pmem.pool.")}
        assert len(routing) == 9 and all(routing.values()), (record.subject, routing)


def test_an_eloop_from_the_kernels_recount_is_asked_again_and_a_steady_one_fails(tmp_path):
    """The kernel counts again the symlinks a lookup followed before it restarted (an RCU walk that could not finish:
    a mount made anywhere meanwhile), so a lookup of 30 symlinks is now and then ELOOP. The lockstep and the
    transparency check ask such a call again; a subject whose ELOOP is no accident still fails."""
    from vfslab.check.engine.race import Mismatch
    from vfslab.check.pmem import transparency
    from vfslab.check.pmem.lockstep import RouteLockstep
    from vfslab.check.pmem.program import KERNEL
    from vfslab.impl.pmem.fs import PmemFS
    from vfslab.impl.pmem.router import Router
    from vfslab.subjects import process
    from vfslab.subjects.pmem import fill_pool
    from vfslab.subjects.tree import SYMLINK, Node, build_layer

    pool = (*POOL_NODES[:3], Node("dot", SYMLINK, 0o777, target="."))
    build_layer(KERNEL, tmp_path)
    PmemFS.mkfs(str(tmp_path / "tree.pool"), 1 << 20)
    fs = PmemFS.open(str(tmp_path / "tree.pool"))
    fill_pool(fs, pool)
    router = Router()
    router.mount(str(tmp_path / "P"), fs)
    router.chdir(str(tmp_path))

    class Flaky:
        """The program's process, in this one: its first `loops` answers to a stat are ELOOP (only stats are asked:
        nothing changes a tree)."""

        taken = (0, 1, 2)

        def __init__(self, loops):
            self.loops, self.asked = loops, 0

        def call(self, call):
            self.asked += 1
            if call == ["state"]:  # the trees are another test's business: not a walk of this machine's /
                return {"value": []}
            if call[0] == "stat" and self.loops:
                self.loops -= 1
                return {"errno": errno.ELOOP}
            return process.run(router, call)

    class Routed:
        def __init__(self, loops):
            self.process = Flaky(loops)

        def teardown(self):
            pass

    chain = "P/" + "dot/" * 30 + "a"
    once = RouteLockstep(Routed(1), "kernel", pool)
    assert once.step(["stat", chain])[:2] == ("stat", "file") and once.routed.process.asked == 2
    steady = RouteLockstep(Routed(99), "kernel", pool)
    with pytest.raises(Mismatch, match="ELOOP"):
        steady.step(["stat", chain])
    kernel_side, router_side = transparency.Side(Routed(1)), transparency.Side(Routed(0))
    assert transparency._compare([["stat", chain]], router_side, kernel_side).problem is None
    assert transparency._compare([["stat", chain]], transparency.Side(Routed(0)), transparency.Side(Routed(99))
                                 ).problem is not None
    router.close_all()
    fs.close()
