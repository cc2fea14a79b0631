"""Subjects as data: subject files written as docs/subjects.md says, for file systems vfslab has never seen."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from vfslab.cli import main
from vfslab.subjects import SUBJECTS
from vfslab.subjects.files import SHIPPED, SubjectFileError, load, parse

PYTHON = sys.executable
UNION = f"""
name = "my-union"
family = "union"
daemon = "fuse"
mount = ["{PYTHON}", "-m", "vfslab.impl.union.main", "-f", "-o",
         "lowerdir={{lowerdirs}},upperdir={{upperdir}},workdir={{workdir}},{{overlay_options}}", "{{mnt}}"]
version = ["{PYTHON}", "-m", "vfslab.impl.union.main", "-V"]
profile = "overlayfs"
profiles = ["overlayfs", "overlayfs-redirect-index"]
claims_overlay_format = true
"""
# a pmem pool through its FUSE front, started by a shell: the pool is made on the first mount and kept
START = (f"test -e {{dir}}/pool || {PYTHON} -m vfslab pmem mkfs {{dir}}/pool 8M >/dev/null; "
         f"exec {PYTHON} -m vfslab.impl.pmem.main -f {{dir}}/pool {{mnt}}")
PLAIN = f"""
name = "my-plain"
family = "posix"
daemon = "fuse"
mount = ["sh", "-c", "{START}"]
requires = ["sh"]
profile = "posix-no-xattr"
tree = "mount"
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _records(out: Path) -> dict[tuple[str, str], dict]:
    data = json.loads((out / "results.json").read_text())
    return {(r["scenario"], r["subject"]): r for r in data["records"]}


@pytest.mark.mounts
def test_a_union_file_system_launched_by_command_runs_the_union_suite(tmp_path, need, capsys):
    need("union-fuse")
    path = _write(tmp_path, "mine.toml", UNION)
    out = tmp_path / "out"
    suite = str(Path(__file__).parent.parent / "scenarios/union/overlayfs.toml")
    assert main(["run", suite, "--subject-file", str(path), "--examples", "40", "--budget", "300", "--out",
                 str(out)]) == 0
    record = _records(out)[("union-stateful-overlayfs", "my-union")]
    assert record["verdict"] == "pass" and record["examples"] >= 40, record["reason"]
    assert record["coverage"]["union.copyup.file"] > 0, "programs reached the file system"
    assert "my-union" not in SUBJECTS, "a subject file's subject is registered for its run only"


@pytest.mark.mounts
def test_a_plain_fuse_file_system_launched_by_command_is_held_to_posix(tmp_path, need):
    need("pmem-fuse")
    path = _write(tmp_path, "plain.toml", PLAIN)
    out = tmp_path / "out"
    suite = str(Path(__file__).parent.parent / "scenarios/posix")
    assert main(["run", suite, "--subjects", str(tmp_path), "--examples", "30", "--out", str(out)]) == 0
    records = _records(out)
    record = records[("posix-no-xattr-stateful", "my-plain")]
    assert record["verdict"] == "pass" and record["family"] == "posix", record["reason"]
    assert record["skipped"] == ["push: my-plain does not support it"]
    assert ("posix-stateful", "my-plain") not in records, "it cannot be held to posix (it keeps no xattrs)"
    assert path.exists()


@pytest.mark.mounts
def test_a_broken_subject_file_fails_with_a_replay_command_naming_its_file(tmp_path, need, capsys):
    """The same union file system, told a profile it does not keep: overlayfs's new directories in merged
    directories are opaque, and union-mounts says otherwise, so the difference is found and can be replayed."""
    need("union-fuse")
    text = UNION.replace('profile = "overlayfs"\nprofiles = ["overlayfs", "overlayfs-redirect-index"]',
                         'profile = "union-mounts"')
    path = _write(tmp_path, "mine.toml", text.replace('"{overlay_options}"', '"redirect_dir=off,index=off"'))
    scenario = _write(tmp_path, "s.toml", 'id = "s"\nkind = "stateful"\nsubjects = []\nprofile = "union-mounts"\n'
                      "[budget]\nexamples = 200\nsteps = 10\nseconds = 120\n")
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--subject-file", str(path), "--out", str(out), "--seed", "1"]) == 1
    record = _records(out)[("s", "my-union")]
    assert record["verdict"] in ("fail", "deviation:overlayfs") and record["counterexample"]
    replay = record["counterexample"]["replay"]
    assert f"--subject-file {path}" in replay, replay
    capsys.readouterr()
    assert main(replay.split()[1:]) == 1, "the replay command reproduces it"


@pytest.mark.parametrize(("text", "problem"), [
    ("name = 'x'\nfamily = 'union'\n", "mount: missing"),
    ("name = 'x'\nfamily = 'nfs'\nmount = ['m']\n", "family: 'nfs' is not one of union, posix"),
    ("name = 'x'\nfamily = 'union'\nmount = ['m', '{lowerdir}']\n", "mount: unknown placeholder {lowerdir}"),
    ("name = 'x'\nfamily = 'posix'\nmount = ['m', '{upperdir}']\n", "mount: unknown placeholder {upperdir}"),
    ("name = 'x'\nfamily = 'union'\nmount = ['m']\nprofile = 'ext4'\n", "profile: 'ext4' is not one of"),
    ("name = 'x'\nfamily = 'union'\nmount = ['m']\ncolour = 'red'\n", "colour: unknown key"),
    ("name = 'x'\nfamily = 'union'\nmount = ['m']\n[capabilities]\nlayers = 2\n", "capabilities.layers: unknown key"),
    ("name = 'x'\nfamily = 'union'\nmount = ['m']\n[capabilities]\nmax_layers = 0\n", "max_layers: 0 is not"),
    ("name = 'x'\nfamily = 'posix'\nmount = ['m']\n[capabilities]\npush = true\n", "no layers to push"),
    ("name = 'x'\nfamily = 'union'\nmount = ['m']\n[capabilities]\nplacements = ['moon']\n", "'moon' is not one"),
    ("name = 'x'\nfamily = 'union'\nmount = 'm {mnt}'\n", "mount: must be a list of strings"),
    ("name = 'x'\nfamily = 'union'\ndaemon = 'fuse'\nmount = { type = 'overlay' }\n", "is for daemon = \"kernel\""),
    ("name = 'x'\nfamily = 'union'\nmount = ['m', '{mnt']\n", "mount: bad template"),
    ("name = 'x y'\nfamily = 'union'\nmount = ['m']\n", "name: 'x y' is not a name"),
    ("name = 'x'\nfamily = 'union'\nmount = ['m', '{b}']\n[lists.b]\nitem = '{nope}'\n", "lists.b.item: unknown"),
    ("name = 'x'\nfamily = 'union\n", "not TOML"),
])
def test_a_malformed_subject_file_is_one_line_naming_file_and_key(tmp_path, capsys, text, problem):
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(SubjectFileError, match=None) as e:
        parse(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message, message
    assert main(["subjects", "--subject-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and problem in err and "Traceback" not in err, err


def test_a_missing_subject_file_or_folder_is_one_line(tmp_path, capsys):
    assert main(["subjects", "--subject-file", str(tmp_path / "none.toml")]) == 2
    assert main(["run", "--subjects", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "none.toml: cannot read" in err[0] and "not a folder of subject files" in err[1]


def test_list_placeholders_write_other_branch_syntaxes(tmp_path):
    """unionfs-fuse's `U=RW:L1=RO:L2=RO` from the same layers."""
    from vfslab.subjects.files import _values

    f = parse(SHIPPED / "unionfs-fuse.toml")
    values = _values(f, Path("/m"), [Path("/l0"), Path("/l1")], Path("/u"), None, "overlayfs")
    assert values["branches"] == "/u=RW:/l0=RO:/l1=RO"
    assert load(SHIPPED / "unionfs-fuse.toml").uses_workdir is False
    assert load(SHIPPED / "fuse-overlayfs.toml").uses_workdir is True


def test_the_shipped_subjects_are_subject_files():
    for name in ("kernel-overlay", "fuse-overlayfs", "unionfs-fuse"):
        assert SUBJECTS[name].file.path == SHIPPED / f"{name}.toml"
    kernel = SUBJECTS["kernel-overlay"]
    assert not kernel.capabilities.can_hang and kernel.capabilities.overlay_format
    assert not SUBJECTS["unionfs-fuse"].capabilities.overlay_format
