"""Picks (engine/choices.py) and the union generator's tables: every value comes from its table, failures shrink
toward each table's first entry, and the tables keep the proportions their docstrings give."""

from __future__ import annotations

import operator
import os
from collections import Counter
from functools import reduce

import pytest
from hypothesis import find, given, settings
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from vfslab.check.engine.choices import machine_picks, picks
from vfslab.check.union import gen
from vfslab.model.union.ops import OPEN_FLAGS

LETTERS, NUMBERS = ("a", "b", "c", "d"), range(10, 20)
ONE = ("only",)


def _pair(pick):
    return pick(LETTERS), pick(NUMBERS), pick(ONE)


@given(picks(_pair))
def test_every_value_is_an_entry_of_its_table(value):
    letter, number, only = value
    assert letter in LETTERS and number in NUMBERS and only == "only"


def test_a_failure_shrinks_toward_each_tables_first_entry():
    assert find(picks(_pair), lambda v: v[1] >= 15) == ("a", 15, "only")
    assert find(picks(_pair), lambda v: v[0] != "a") == ("b", 10, "only")


def test_a_table_chosen_by_an_earlier_pick_is_read_after_it():
    tables = {"short": ("x",), "long": tuple("pqrs")}
    drawn = picks(lambda pick: (kind := pick(tuple(tables)), pick(tables[kind])))
    assert find(drawn, lambda v: v[0] == "long" and v[1] == "r") == ("long", "r")


def test_a_machine_pick_reads_tables_the_machine_chose():
    seen = []

    class Machine(RuleBasedStateMachine):
        table = ("first", "second")

        @rule(value=machine_picks(lambda pick, machine: pick(machine.table)))
        def step(self, value):
            seen.append(value)
            self.table = ("third",)

    run_state_machine_as_test(Machine, settings=settings(max_examples=20, stateful_step_count=3, database=None))
    assert set(seen) <= {"first", "second", "third"} and "third" in seen


@pytest.mark.parametrize("root,long", [(False, False), (True, False), (False, True), (True, True)])
def test_a_path_table_reads_every_index_and_none_past_it(root, long):
    paths = gen.Paths(root=root, long=long)
    drawn = [paths[i] for i in range(0, len(paths), 97)] + [paths[len(paths) - 1]]
    assert all(isinstance(p, gen.PathChoice) for p in drawn)
    assert (paths[0].path == ".") == root, "shrinking a path goes to the root first, where the domain has it"
    assert any(len(p.path) > 255 or p.path.count("s/") >= 39 for p in drawn) == long
    with pytest.raises(IndexError):
        paths[len(paths)]


def test_open_flags_are_none_to_three_extras_equally_often_and_an_unnamed_file_one_in_eight():
    table = gen.domains()["flags"]
    extras = reduce(operator.or_, (OPEN_FLAGS[n] for n in ("O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND", "O_NOFOLLOW",
                                                          "O_DIRECTORY", "O_SYNC", "O_DSYNC")))
    plain = [f for f in table if not f & os.O_TMPFILE & ~os.O_DIRECTORY]
    # O_SYNC is O_DSYNC and one more bit
    counts = Counter(bin(f & extras).count("1") - ((f & os.O_SYNC) == os.O_SYNC) for f in plain)
    assert table[0] == os.O_RDONLY
    assert not any(f & os.O_CREAT and f & os.O_DIRECTORY for f in plain), "O_CREAT|O_DIRECTORY is not a union question"
    # equally often, but for O_CREAT|O_DIRECTORY, which drops O_DIRECTORY, and O_SYNC|O_DSYNC, which is O_SYNC
    assert set(counts) == {0, 1, 2, 3} and all(0.18 < n / len(plain) < 0.32 for n in counts.values())
    assert 0.11 < (len(table) - len(plain)) / len(table) < 0.14


def test_an_initial_layer_draws_nodes_of_every_kind():
    kinds = set()

    @settings(max_examples=200, database=None)
    @given(gen.layers)
    def collect(layers):
        kinds.update(n.kind for layer in layers.lowers for n in layer)

    collect()
    assert kinds == {gen.DIR, gen.FILE, gen.SYMLINK, gen.HARDLINK}
