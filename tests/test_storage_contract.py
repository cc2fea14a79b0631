"""The storage-method contract (seed 002): the model against the rules it encodes, our methods against the model,
and methods with a classic bug each, written here, caught, shrunk and replayed."""

from __future__ import annotations

import errno
import json
import re
import shlex
import stat
import time
from dataclasses import replace
from pathlib import Path

import pytest

from vfslab import cli
from vfslab.check.engine.generated import Budget
from vfslab.check.results import FAIL, PASS, Results
from vfslab.check.storage.checker import run_contract
from vfslab.check.storage.program import StorageProgram
from vfslab.impl.ovlfs.storage import method as interface
from vfslab.impl.ovlfs.storage.dir import DirMethod
from vfslab.impl.ovlfs.storage.file import FileMethod, _split
from vfslab.impl.ovlfs.storage.method import UNLINKED, storage_error
from vfslab.impl.ovlfs.storage.tables import Directory
from vfslab.model import storage as model
from vfslab.model.limits import edges_of
from vfslab.model.storage import RELINK, ROOT_INO, Attrs, Entry, Err, StorageModel
from vfslab.runner import Options, run_one
from vfslab.subjects.storage import SUBJECTS, user
from vfslab.suite import Scenario, load

OURS = {s.name: s for s in SUBJECTS if s.method}
HERE = Path(__file__).resolve()


def method(name: str):
    """The subject of a method class of this module, as a user names one."""
    return user(f"python:{HERE}:{name}")


def checked(subject, kind: str, tmp_path: Path, examples: int, steps: int = 25) -> object:
    scenario = Scenario(f"storage-{kind}", "storage", "storage", kind, (subject.name,), "ovlfs", PASS,
                        budget=Budget(examples, steps, 120))
    return run_one(scenario, subject, Options(out=tmp_path / "out"), tmp_path / "scratch")


# ---- the model --------------------------------------------------------------------------------------------------

def test_the_model_speaks_the_interfaces_vocabulary():
    """The model writes the interface's names again, on purpose (impl never imports model): they must agree."""
    for name in ("OPERATIONS", "OPTIONAL", "REQUIRED", "BARE_MINIMUM", "ROOT_INO", "BASE", "STORAGE", "UNLINKED",
                 "RELINK", "NO_BASE_REF"):
        assert getattr(model, name) == getattr(interface, name), name
    assert [f for f in Attrs.__dataclass_fields__] == [f for f in interface.Inode.__dataclass_fields__]


def test_every_rule_is_cited_and_every_citation_is_a_rule():
    root = HERE.parent.parent
    cited = set()
    for path in [*(root / "model" / "storage").glob("*.py"), *(root / "vfslab" / "check" / "storage").glob("*.py")]:
        if path.name != "rules.py":
            cited |= set(re.findall(r'"(storage\.[a-z_.-]+)"', path.read_text()))
    assert cited == set(model.RULES)


@pytest.fixture
def m() -> StorageModel:
    return StorageModel.formatted(Attrs(stat.S_IFDIR | 0o755, nlink=2))


def file_in(m: StorageModel, name: str, number: int) -> int:
    assert m.add_inode(Attrs(stat.S_IFREG | 0o644), number).result == number
    assert m.add_dirent(ROOT_INO, name, number).result is None
    return number


def test_unlink_flags_the_entry_in_its_place_and_lookup_never_finds_it(m):
    file_in(m, "a", 2), file_in(m, "b", 3)
    outcome = m.unlink_dirent(ROOT_INO, "a")
    assert "storage.unlink.tracked" in outcome.rules
    assert m.read_directory(ROOT_INO, 1).result == Entry("a", 2, frozenset({UNLINKED}))
    assert m.read_directory(ROOT_INO, 2).result == Entry("b", 3)
    assert m.read_directory(ROOT_INO, 3).result is None
    assert m.lookup_dirent(ROOT_INO, "a").result == Err(errno.ENOENT)
    assert [m.number_dirent(ROOT_INO, deleted).result for deleted in (True, False)] == [2, 1]
    assert m.unlink_dirent(ROOT_INO, "a").result == Err(errno.ENOENT)


def test_add_over_an_unlinked_entry_relinks_in_place_and_marks_the_inode(m):
    file_in(m, "a", 2), file_in(m, "b", 3)
    m.unlink_dirent(ROOT_INO, "a")
    assert m.add_inode(Attrs(stat.S_IFREG | 0o644), 4).result == 4
    outcome = m.add_dirent(ROOT_INO, "a", 4)
    assert {"storage.add_dirent.replaces-unlinked", "storage.add_dirent.relink"} <= set(outcome.rules)
    assert m.read_directory(ROOT_INO, 1).result == Entry("a", 4, frozenset({RELINK}))
    assert model.NO_BASE_REF in m.read_inode(4).result.flags
    assert m.add_dirent(ROOT_INO, "b", 4).result == Err(errno.EEXIST)


def test_rename_keeps_the_old_name_unlinked_and_takes_the_place_of_the_new(m):
    file_in(m, "a", 2), file_in(m, "b", 3)
    m.unlink_dirent(ROOT_INO, "b")
    assert m.rename_dirent(ROOT_INO, "a", "b").result is None
    assert [m.read_directory(ROOT_INO, p).result for p in (1, 2, 3)] == [
        Entry("a", 2, frozenset({UNLINKED})), Entry("b", 2), None]
    assert m.rename_dirent(ROOT_INO, "b", "b").result is None  # to itself: nothing changes
    assert m.read_directory(ROOT_INO, 2).result == Entry("b", 2)
    assert m.rename_dirent(ROOT_INO, "a", "c").result == Err(errno.ENOENT)


def test_the_number_is_the_methods_choice_but_never_one_handed_out_before(m):
    file_in(m, "a", 7)
    m.update_inode(7, replace(m.read_inode(7).result, nlink=0))
    m.clear_inode(7)
    m.choose(1)  # the method released it
    assert m.read_inode(7).result == Err(errno.ENOENT)
    assert isinstance(m.add_inode(Attrs(stat.S_IFREG | 0o644), 7).result, model.Breach)
    assert m.add_inode(Attrs(stat.S_IFREG | 0o644), 9).result == 9


def test_clear_inode_keeps_a_linked_inode_and_may_release_an_unlinked_one_with_its_mappings(m):
    file_in(m, "a", 2)
    m.map_inode(2, model.BASE, 1, 7)
    m.clear_inode(2)
    assert m.choices == [] and m.read_inode(2).result.base == (1, 7)
    m.update_inode(2, replace(m.read_inode(2).result, nlink=0))
    m.clear_inode(2)
    assert [label for label, _ in m.choices] == ["kept it", "released it"]
    m.choose(1)
    assert m.map_lookup(model.BASE, 1, 7).result == Err(errno.ENOENT)


def test_a_release_with_no_sync_gives_back_the_last_sync_or_now_never_a_mix(m):
    file_in(m, "a", 2)
    m.sync()
    m.unlink_dirent(ROOT_INO, "a")
    m.release()
    m.init()
    tables = {str(s.dirs[ROOT_INO]) for _, s in m.choices}
    assert len(tables) == 2  # as synced (a live) or as it was (a unlinked)
    m.choose(0)
    m.release()
    m.init()
    assert m.choices == []  # nothing changed since what the storage holds


def test_names_at_the_edges_of_name_max_are_decided_there(m):
    """"" is EINVAL, 255 bytes are a name and 256 are ENAMETOOLONG, in Add and in Rename Directory Entry; each
    outcome names the edge its name was at."""
    name_max, = model.LIMITS
    assert (name_max.value, name_max.rule, name_max.edge(0)) == (255, "storage.silent.names", "storage.silent.names@0")
    assert m.add_inode(Attrs(stat.S_IFREG | 0o644), 2).result == 2
    for n, result in ((0, Err(errno.EINVAL)), (254, None), (255, None), (256, Err(errno.ENAMETOOLONG))):
        added = m.add_dirent(ROOT_INO, "n" * n, 2)
        assert added.result == result and name_max.edge(n) in added.rules, (n, added)
    assert m.lookup_dirent(ROOT_INO, "n" * 255).result == 2
    renamed = m.rename_dirent(ROOT_INO, "n" * 255, "m" * 256)
    assert renamed.result == Err(errno.ENAMETOOLONG) and "storage.silent.names@NAME_MAX+1" in renamed.rules
    renamed = m.rename_dirent(ROOT_INO, "n" * 255, "n" * 254)
    assert renamed.result is None and "storage.silent.rename-over-live" in renamed.rules
    assert "storage.silent.names@NAME_MAX-1" in renamed.rules


def test_a_mapping_counts_as_persistent_once_an_init_gives_it_back(m):
    file_in(m, "a", 2)
    assert "storage.map.persistent" not in m.map_inode(2, model.BASE, 1, 7).rules, "not yet: no mount has passed"
    m.sync()
    m.release()
    assert "storage.map.persistent" in m.init().rules
    m.release()
    assert "storage.map.persistent" in m.init().rules, "Release and Init on the same storage: given back too"
    fresh = StorageModel.formatted(Attrs(stat.S_IFDIR | 0o755, nlink=2))
    fresh.release()
    assert "storage.map.persistent" not in fresh.init().rules, "no mapping to give back"


# ---- our methods ------------------------------------------------------------------------------------------------

#: what CI holds each of our methods to: as many programs as scenarios/storage/contract.toml gives them
CI_PROGRAMS = 500
#: rules a generated program meets only when it has two live entries, or an unlinked one, or a mapped inode
SELDOM = ("storage.rename.replaces-unlinked", "storage.rename.same-name", "storage.silent.add-over-live",
          "storage.silent.rename-over-live", "storage.silent.remap", "storage.lookup.never-deleted",
          "storage.number_dirent.with-deleted", "storage.map.persistent")


@pytest.mark.parametrize("name", sorted(OURS))
def test_our_methods_keep_the_contract(name, tmp_path):
    started = time.monotonic()
    record = checked(OURS[name], "contract", tmp_path, CI_PROGRAMS)
    assert record.verdict == PASS, record.counterexample and record.counterexample.message
    assert record.examples == CI_PROGRAMS
    # the generator alone (no program scenario) meets every edge of NAME_MAX and the directory rules that need
    # two entries, or an unlinked one, to meet
    assert record.edges.keys() == set(edges_of(model.LIMITS)) and all(record.edges.values()), record.edges
    assert all(record.coverage[rule] for rule in SELDOM), {rule: record.coverage[rule] for rule in SELDOM}
    print(f"{name}: {CI_PROGRAMS / (time.monotonic() - started):.0f} programs/s")


@pytest.mark.parametrize("name", sorted(OURS))
def test_our_methods_come_back_whole_from_a_crash_at_every_persist_point(name, tmp_path):
    record = checked(OURS[name], "crash", tmp_path, 40 if name == "storage-pmem" else 100, steps=12)
    assert record.verdict == PASS, record.counterexample and record.counterexample.message
    assert record.coverage["storage.silent.crash-old-or-new"] > 0


def test_pmem_storage_of_more_inodes_than_a_pool_directory_block_holds(tmp_path):
    """The crash check's first find: a pool directory listed past its first block (15 entries and padding) read
    the padding as an entry '' naming inode 0, so Init refused the storage as damaged."""
    found = run_contract(OURS["storage-pmem"], [["add_inode", "file", 0, ""]] * 15 + [["remount"]], tmp_path)
    assert found.failure is None, found.failure


class NoDumpDir(DirMethod):
    """dir: with no dump: the checker sees its storage through its own looking operations only."""

    dump = None


def test_a_method_with_no_dump_is_seen_through_its_operations(tmp_path):
    record = checked(method("NoDumpDir"), "contract", tmp_path, 100)
    assert record.verdict == PASS, record.counterexample and record.counterexample.message


@pytest.mark.parametrize("name_max", [254, 256])
def test_a_method_off_by_one_at_name_max_fails_the_default_storage_suite(name_max, tmp_path, monkeypatch, capsys):
    """Our methods' own NAME_MAX (impl/ovlfs/storage/tables.py) one short or one over the contract's: every default
    run of the storage suite fails it, however the generated programs fell."""
    from vfslab.impl.ovlfs.storage import tables

    monkeypatch.setattr(tables, "NAME_MAX", name_max)
    out = tmp_path / "out"
    suite = Path(__file__).resolve().parents[1] / "scenarios" / "storage"
    assert cli.main(["run", str(suite), "--subject", "storage-dir", "--out", str(out)]) == 1
    failed = {r.scenario: r for r in Results.read(out / "results.json").records if r.verdict == FAIL}
    assert "storage-edges" in failed, sorted(failed)
    assert "storage.silent.names" in failed["storage-edges"].counterexample.message
    capsys.readouterr()


def test_our_methods_name_max_is_the_contracts():
    from vfslab.impl.ovlfs.storage import tables

    assert model.LIMITS[0].value == tables.NAME_MAX, "written twice on purpose (impl never imports model)"


# ---- classic bugs, caught -----------------------------------------------------------------------------------------

def _rebuilt(d: Directory, entries: list) -> Directory:
    out = Directory()
    for e in entries:
        out.put(len(out.entries), e)
    return out


class ForgetfulDir(DirMethod):
    """Unlink drops the entry instead of keeping it flagged: the base's name would come back."""

    def unlink_dirent(self, dir_ino: int, name: str) -> None:
        d = self.tables.directory(dir_ino)
        self.tables.lookup_dirent(dir_ino, name)  # ENOENT unless the name is live
        gone = d.find(name)
        self.tables.dirs[dir_ino] = _rebuilt(d, [e for i, e in enumerate(d.entries) if i != gone])


class RenumberingDir(DirMethod):
    """Unlink moves the flagged entry to the end: every later entry changes position."""

    def unlink_dirent(self, dir_ino: int, name: str) -> None:
        d = self.tables.directory(dir_ino)
        self.tables.lookup_dirent(dir_ino, name)
        at = d.find(name)
        flagged = replace(d.entries[at], flags=d.entries[at].flags | {UNLINKED})
        self.tables.dirs[dir_ino] = _rebuilt(d, [e for i, e in enumerate(d.entries) if i != at] + [flagged])


class LeakyClear(DirMethod):
    """Clear Inode releases an inode with no links but keeps its mappings: Map Lookup finds an inode that is gone."""

    def clear_inode(self, ino: int) -> None:
        node = self.tables.inode(ino)
        if node.nlink == 0 and ino != ROOT_INO:
            del self.tables.inodes[ino]


class InPlaceFile(FileMethod):
    """Sync writes the image over the old one in place, a chunk at a time: a crash leaves half of each."""

    def sync(self) -> None:
        import os

        image = self.contents.image(self.tables)
        fd = os.open(_split(self.location)[1], os.O_WRONLY, dir_fd=self._dir_fd)
        try:
            for at in range(0, len(image), 256):
                os.pwrite(fd, image[at:at + 256], at)
                self.point("a chunk written in place")
            os.ftruncate(fd, len(image))
        finally:
            os.close(fd)


@pytest.mark.parametrize(("name", "kind", "caught"), [
    ("ForgetfulDir", "contract", "the method None"),
    ("RenumberingDir", "contract", "read_directory(#0, 1)"),
    ("LeakyClear", "contract", "released it: map_lookup"),
    ("InPlaceFile", "crash", "crash at persist point"),
])
def test_a_classic_bug_is_caught_shrunk_and_replayed(name, kind, caught, tmp_path, capsys):
    record = checked(method(name), kind, tmp_path, 300)
    assert record.verdict == FAIL
    found = record.counterexample
    assert caught in found.message
    assert 1 <= len(found.ops) <= 6, found.ops
    program = StorageProgram.read(Path(found.program_file))
    assert program.method == f"python:{HERE}:{name}" and program.ops == found.ops
    command = shlex.split(found.replay)
    assert command[:2] == ["vfslab", "replay"]
    capsys.readouterr()
    assert cli.main(command[1:]) == 1
    assert "reproduced on storage-python" in capsys.readouterr().out
    # and the same program on the method without the bug: it passes
    assert cli.main(["replay", found.program_file, "--subject", "storage-file" if kind == "crash" else
                     "storage-dir"]) == 0
    # kept as a regression scenario, it fails until the bug is fixed
    scenario = load(Path(found.program_file).with_suffix(".toml"))
    assert (scenario.family, scenario.kind, scenario.programs[0]["method"]) == ("storage", "program", program.method)
    again = run_one(scenario, user(program.method), Options(out=tmp_path / "again"), tmp_path / "again-scratch")
    assert again.verdict == FAIL


# ---- the bare minimum ---------------------------------------------------------------------------------------------

class ReadOnlyDir:
    """A method of the seed's bare minimum (requirement 2) over dir: storage: it mounts and lists, nothing else."""

    def __init__(self, location: str) -> None:
        self.dir = DirMethod(location)

    def init(self) -> None:
        self.dir.init()

    def read_inode(self, ino: int) -> interface.Inode:
        return self.dir.read_inode(ino)

    def map_lookup(self, fs: str, dev: int, src_ino: int) -> int:
        return self.dir.map_lookup(fs, dev, src_ino)

    def read_directory(self, dir_ino: int, pos: int) -> interface.Dirent | None:
        return self.dir.read_directory(dir_ino, pos)

    def release(self) -> None:  # beyond the bare minimum, and what gives the storage's fds back
        self.dir.release()


class SkippingReader(ReadOnlyDir):
    """Read Directory skips unlinked entries: the seed's "generally easier to just return" them, not done."""

    def read_directory(self, dir_ino: int, pos: int) -> interface.Dirent | None:
        live = [e for e in self.dir.tables.directory(dir_ino).entries if not e.unlinked]
        if pos < 1:
            raise storage_error(errno.EINVAL)
        return live[pos - 1] if pos <= len(live) else None


def test_a_bare_minimum_method_reads_back_what_dir_wrote(tmp_path):
    good = checked(method("ReadOnlyDir"), "contract", tmp_path / "good", 100)
    assert good.verdict == PASS, good.counterexample and good.counterexample.message
    bad = checked(method("SkippingReader"), "contract", tmp_path / "bad", 200)
    assert bad.verdict == FAIL and "reading what dir: wrote" in bad.counterexample.message
    assert json.loads(Path(bad.counterexample.program_file).read_text())["check"] == "read-only"


# ---- the command ----------------------------------------------------------------------------------------------------

def test_storage_mkfs_and_check_on_the_command_line(tmp_path, capsys):
    store = tmp_path / "store"
    assert cli.main(["storage", "mkfs", f"dir:{store}"]) == 0
    assert cli.main(["storage", "mkfs", f"dir:{store}"]) == 2  # there already: one line, no traceback
    assert "not empty" in capsys.readouterr().err
    assert cli.main(["storage", "mkfs", f"dir:{store}", "--force"]) == 0
    assert cli.main(["storage", "check", "nosuch:x"]) == 2
    capsys.readouterr()
    assert cli.main(["storage", "check", f"file:{tmp_path}/ignored", "--examples", "20"]) == 0
    out = capsys.readouterr().out
    assert "contract: pass (20 programs" in out and "crash: pass" in out
    assert not (tmp_path / "ignored").exists()  # a check formats storage of its own
    assert cli.main(["storage", "check", f"python:{HERE}:ForgetfulDir", "--examples", "300",
                     "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "contract: fail" in out and "replay: vfslab replay" in out and "crash: not run" in out


def test_the_example_method_in_the_docs_keeps_the_contract(tmp_path):
    text = (HERE.parent.parent / "docs" / "storage.md").read_text()
    example = tmp_path / "pickle_storage.py"
    example.write_text(re.search(r"```python\n(.*?)```", text, re.S).group(1))
    record = checked(user(f"python:{example}:PickleStorage"), "contract", tmp_path, 150)
    assert record.verdict == PASS, record.counterexample and record.counterexample.message
