"""The simulator: the seeds' three deadlocks found and shrunk, the fixed designs cleared by bounded search, the
lock-order check, and the parts (schedulers, locks, worker pools) each doing what it says."""

from __future__ import annotations

import pytest

from vfslab.sim.detect import DEADLOCK, PASS
from vfslab.sim.explore import bounded_search, pct_search, random_search, replay, shrink, simulate
from vfslab.sim.fuse import Design
from vfslab.sim.schedule import Chooser, RandomChooser
from vfslab.sim.sync import Condition, LockOrder, Mutex, Refcount, RWLock
from vfslab.sim.workloads import get
from vfslab.sim.world import World


def verdict(workload: str, **params) -> str:
    w = get(workload)
    return simulate(w, w.params(params), Chooser()).verdict


@pytest.mark.parametrize("cap", [5, 10, 20])
def test_vmblock_upstream_deadlocks_exactly_at_the_worker_cap(cap):
    for readers, expected in ((cap - 1, PASS), (cap, DEADLOCK), (cap + 1, DEADLOCK)):
        assert verdict("vmblock", readers=readers, max_threads=cap) == expected, (readers, cap)
        assert verdict("vmblock", readers=readers, max_threads=cap, design="deferred") == PASS


def test_the_libfuse_version_sets_the_cap():
    assert verdict("vmblock", readers=10, libfuse="2.5", max_threads=50) == DEADLOCK, "2.5: 10 workers at most"
    assert verdict("vmblock", readers=60, libfuse="2.6") == PASS, "2.6 to 3.11: a worker for every request"
    assert Design("3.12", 7).cap == 7 and Design("2.6").cap is None


def test_the_vmblock_deadlock_is_found_and_shrunk_to_max_threads_readers_and_the_unblock():
    w = get("vmblock")
    run = shrink(w, w.params({"readers": 17, "max_threads": 10}), seed=20261121)
    assert run is not None and run.verdict == DEADLOCK
    assert run.params["readers"] == 10 and run.choices == [], "minimal: exactly max_threads readers, no surprises"
    cycle = " -> ".join(run.finding.cycle)
    assert "completion block" in cycle and "request delete" in cycle and "worker pool" in cycle
    assert [s.action for s in run.trace].count("takes") == 11, "the add, then one readlink per worker"


def test_the_rwlock_cancel_deadlock_is_two_handlers_and_an_unmount():
    w = get("rwlock-cancel")
    run = shrink(w, w.params({"handlers": 4}), seed=1)
    assert run is not None and run.params["handlers"] == 2
    assert sum(1 for c in run.choices if c) <= 1, "at most one surprise: the unmount lands while the lock is held"
    assert "worker-1 (cancelled)" in run.finding.explain() and "unmount" in run.finding.blocked
    cancelled = next(s for s in run.trace if s.action == "cancelled")
    assert "holding cache" in cancelled.what


def test_the_union_deadlock_is_two_operations_across_a_and_b():
    w = get("union-locks")
    run = shrink(w, w.params({}), seed=1)
    assert run is not None and len(run.params["ops"]) == 2
    assert {"mutex A:/d", "mutex B:/d"} <= set(run.finding.cycle)


@pytest.mark.parametrize(("workload", "params", "bound"), [
    ("vmblock", {"design": "deferred", "readers": 11}, 1),
    ("rwlock-cancel", {"cancel": "while-reading"}, 2),
    ("rwlock-cancel", {"cancel": "while-reading", "handlers": 3, "prefer": "writer"}, 2),
    ("union-locks", {"order": "global", "ops": ["lookup A/B", "lookup B/A", "copyup B/A", "rename A/B"]}, 2),
])
def test_the_fixed_designs_are_deadlock_free_under_bounded_search(workload, params, bound):
    w = get(workload)
    search = bounded_search(w, w.params(params), bound)
    assert search.complete and search.found is None, search.found and search.found.finding.explain()
    assert search.runs > 1


@pytest.mark.parametrize(("workload", "params"), [
    ("vmblock", {"readers": 10}), ("rwlock-cancel", {}), ("union-locks", {"ops": ["rename A/B", "copyup B/A"]}),
])
def test_the_broken_designs_fall_to_bounded_search_too(workload, params):
    w = get(workload)
    search = bounded_search(w, w.params(params), 1)
    assert search.found is not None and search.found.verdict == DEADLOCK


def test_the_lock_order_inversion_is_reported_from_runs_that_did_not_deadlock():
    w = get("union-locks")
    order = LockOrder()
    for seed in range(20):
        assert simulate(w, w.params({"sequential": True}), RandomChooser(seed), order).verdict == PASS
    assert order.inversions() == [["A.i_mutex", "B.i_mutex"]]
    assert order.witness("A.i_mutex", "B.i_mutex").startswith("op-1")
    fixed = LockOrder()
    simulate(w, w.params({"sequential": True, "order": "global"}), Chooser(), fixed)
    assert fixed.inversions() == []


def test_random_and_pct_find_the_union_deadlock_and_pct_states_its_bound():
    w = get("union-locks")
    params = w.params({"ops": ["lookup A/B", "lookup B/A"]})
    assert random_search(w, params, seed=3, runs=50).found is not None
    pct = pct_search(w, params, seed=3, runs=50, depth=2)
    assert pct.found is not None and "probability >=" in pct.bound


def test_a_run_is_its_choices():
    w = get("vmblock")
    params = w.params({"readers": 12, "design": "deferred"})
    first = simulate(w, params, RandomChooser(7), tracing=True)
    again = replay(w, params, first.choices)
    assert again.trace == first.trace and again.choices == first.choices and len(first.choices) > 10


def test_locks_grant_in_order_and_readers_may_barge_only_with_reader_preference():
    world = World(Chooser())
    m = Mutex(world, "m")
    assert m.acquire("a").triggered and not m.acquire("b").triggered and world.waits["b"] is m
    m.release("a")
    assert m.holders() == ("b",) and "b" not in world.waits
    for prefer, barges in (("reader", True), ("writer", False)):
        rw = RWLock(world, f"rw-{prefer}", prefer=prefer)
        rw.acquire("r1", write=False)
        rw.acquire("w", write=True)
        assert rw.acquire("r2", write=False).triggered == barges
        rw.release("r1")
        assert rw.holders() == (("r2",) if barges else ("w",))


def test_bad_parameters_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown parameters nope"):
        get("vmblock").params({"nope": 1})
    with pytest.raises(ValueError, match="readers = '3' should be a int"):
        get("vmblock").params({"readers": "3"})
    with pytest.raises(ValueError, match="unknown workload"):
        get("nfs")
    with pytest.raises(ValueError, match=r"libfuse '4\.0'"):
        Design("4.0")
    with pytest.raises(ValueError, match="write it as"):
        verdict("union-locks", ops=["lookup"])


def test_condition_and_refcount_wait_and_wake():
    world = World(Chooser())
    m, cond, refs = Mutex(world, "m"), Condition(world, "ready", owner="b"), Refcount(world, "block")
    woke: list[str] = []

    def waiter():
        yield m.acquire("a")
        yield from cond.wait("a", m)
        woke.append("a")
        m.release("a")

    def notifier():
        yield m.acquire("b")
        cond.notify("b")
        m.release("b")

    refs.get("r1")
    world.spawn("a", waiter())
    world.run_all()
    assert world.waits["a"] is cond and m.holders() == () and woke == [], "it waits without the mutex"
    zero = refs.wait_zero("u")
    assert not zero.triggered and refs.holders() == ("r1",)
    world.spawn("b", notifier())
    world.run_all()
    refs.put("r1")
    assert woke == ["a"] and zero.triggered


def test_the_lock_kind_and_io_jitter_are_design_parameters():
    w = get("rwlock-cancel")
    assert simulate(w, w.params({"lock": "mutex"}), Chooser()).verdict == DEADLOCK
    assert bounded_search(w, w.params({"lock": "mutex", "cancel": "while-reading"}), 2).found is None
    v = get("vmblock")
    jittery = simulate(v, v.params({"readers": 3, "jitter": 2}), RandomChooser(5))
    plain = simulate(v, v.params({"readers": 3}), RandomChooser(5))
    assert jittery.verdict == plain.verdict == PASS and len(jittery.choices) > len(plain.choices)
