"""Records that travel: ops and programs to JSON and back, results.json's schema."""

from __future__ import annotations

import os

import pytest

from vfslab.check.engine.state import Identity
from vfslab.check.results import SCHEMA_VERSION, Counterexample, Record, Results, RunMeta
from vfslab.check.union.program import Program
from vfslab.model.union.ops import Op, flags_value
from vfslab.subjects.tree import Layers, Node


def test_program_round_trips_through_json(tmp_path):
    program = Program(Layers(((Node("a", "file", 0o600, 1000, 1000, b"\x00\xff", xattrs=(("user.k", b"v"),)),
                                Node("b", "hardlink", target="a")), (Node("d", "dir", 0o755),))),
                      [Op("open", ("a", os.O_RDWR | os.O_CREAT, 0o644), 1000), Op("write", (0, b"\x01")),
                       Op("rename", ("a", "c", True)), Op("utimens", ("c", (1, 2))), Op("push")], "kernel-overlay")
    path = tmp_path / "p.json"
    program.write(path)
    again = Program.read(path)
    assert again.layers == program.layers and again.ops == program.ops and again.subject == "kernel-overlay"


def test_short_op_form_and_flag_names():
    assert Op.from_json(["open", "f", "O_WRONLY|O_CREAT", 420]) == Op("open", ("f", os.O_WRONLY | os.O_CREAT, 420))
    with pytest.raises(ValueError, match="unknown open flag 'O_BOGUS'"):
        flags_value("O_RDONLY|O_BOGUS")
    with pytest.raises(ValueError, match="unknown operation 'frobnicate'"):
        Op.from_json(["frobnicate"])


def test_results_round_trip_and_schema_check(tmp_path):
    meta = RunMeta("0.1.0", "abc", 7, "6.1", "3.14", "2026-11-21T00:00:00+00:00")
    rec = Record("s", "union", "stateful", "kernel-overlay", "overlayfs", "pass", "fail",
                 counterexample=Counterexample([[]], [{"op": "stat", "args": ["a"]}], "m", "vfslab replay x"))
    results = Results(meta, [rec])
    path = tmp_path / "results.json"
    results.write(path)
    again = Results.read(path)
    assert again.records[0] == rec and not again.as_expected
    path.write_text(path.read_text().replace(f'"schema": {SCHEMA_VERSION}', '"schema": 99'))
    with pytest.raises(ValueError, match="results schema 99"):
        Results.read(path)


def test_a_number_freed_by_the_model_may_be_taken_at_once_by_a_new_inode():
    """ext4 gives a freed inode number to the next inode it makes: an O_TMPFILE file closed at a push, then the new
    upper layer's root, both between two walks. The new object may take the number; two objects the model still
    shows may not share one, nor one object change its number."""
    ident = Identity()
    assert ident.check("fd 0", 5, 100, "file") is None
    ident.forget_all_but({1})  # object 5 is gone: the next walk shows number 100 on the root
    assert ident.check(".", 1, 100, "dir") is None
    assert ident.check("a", 6, 100, "file") is not None, "two live objects, one number"
    assert ident.check(".", 1, 101, "dir") is not None, "one object, another number"
