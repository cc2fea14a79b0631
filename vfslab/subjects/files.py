"""Subjects as data: a TOML file says how to mount a file system vfslab has never seen (docs/subjects.md).

A union subject is mounted over lower layers, an upper layer and a work directory that the bench makes; a posix
subject (a plain file system) over a backing directory, its initial tree built there before mounting or through the
mount. The file says how: argv templates with placeholders, or for a kernel file system the mount(2) call's type
and options. Every mistake in a file is one line naming the file, the key and the problem.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import string
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from vfslab.subjects import mounts
from vfslab.subjects.base import Capabilities
from vfslab.subjects.overlayfs import UnionMount, UnionSubject, feature_options
from vfslab.subjects.placement import PLACEMENTS
from vfslab.subjects.pmem import PlainMount, PlainSubject
from vfslab.subjects.tree import Layers, build_layer
from vfslab.tomlfile import read_toml

#: what `family` may say, and the profiles of the union model a subject of it may be held to
FAMILY_PROFILES = {
    "union": ("union-mounts", "overlayfs", "overlayfs-redirect", "overlayfs-index", "overlayfs-redirect-index",
              "fuse-overlayfs", "unionfs-fuse"),
    "posix": ("posix", "posix-no-xattr"),
}
DAEMONS = ("fuse", "kernel")
TREES = ("dir", "mount")
KEYS = {"name", "family", "daemon", "mount", "umount", "version", "version_match", "requires",
        "requires_filesystems", "profile",
        "profiles", "claims_overlay_format", "tree", "capabilities", "lists"}
CAPABILITY_KEYS = {"max_layers", "remount", "push", "placements"}
LIST_KEYS = {"item", "join", "prefix", "suffix"}
MOUNT_TABLE_KEYS = {"type", "options"}
#: placeholders each family's templates may use (`lowerdirN` too, for a union, and every [lists] name)
PLACEHOLDERS = {"union": {"lowerdirs", "upperdir", "workdir", "mnt", "overlay_options"}, "posix": {"dir", "mnt"}}
#: what an item of a [lists] table may use: the lower layer it stands for, and the union's own placeholders
ITEM_PLACEHOLDERS = {"lowerdir"}
_LOWER_N = re.compile(r"lowerdir(\d+)")
#: the subject files vfslab ships (the external file systems it knows)
SHIPPED = Path(__file__).parent / "shipped"


class SubjectFileError(ValueError):
    """A subject file that cannot be used: its message is one line naming the file and the key."""


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


@dataclass(frozen=True)
class ListSpec:
    """`{NAME}`: `prefix`, then `item` once per lower layer (topmost first) joined by `join`, then `suffix`."""

    item: str
    join: str = ":"
    prefix: str = ""
    suffix: str = ""


@dataclass(frozen=True)
class SubjectFile:
    path: Path
    name: str
    family: str
    daemon: str
    #: argv template, or for a kernel file system {type, options} for one mount(2) call
    mount: tuple[str, ...] | dict[str, str]
    umount: tuple[str, ...] = ()
    version: tuple[str, ...] = ()
    version_match: str = ""
    requires: tuple[str, ...] = ()
    requires_filesystems: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    claims_overlay_format: bool = False
    tree: str = "mount"
    max_layers: int = 3
    remount: bool = True
    push: bool = True
    placements: tuple[str, ...] = ("same",)
    lists: dict[str, ListSpec] = field(default_factory=dict)


def _fail(path: Path, key: str, problem: str) -> SubjectFileError:
    return SubjectFileError(f"{path}: {key}: {problem}")


def _strings(path: Path, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, key, "must be a list of strings")
    return tuple(value)


def _one_of(path: Path, key: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(path, key, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def parse(path: Path) -> SubjectFile:
    """Read and check a subject file; SubjectFileError (one line) when it is wrong."""
    data = read_toml(path, "subject file", SubjectFileError)
    for key in data:
        if key not in KEYS:
            raise _fail(path, key, f"unknown key (known: {', '.join(sorted(KEYS))})")
    for key in ("name", "family", "mount"):
        if key not in data:
            raise _fail(path, key, "missing")
    name = data["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise _fail(path, "name", f"{name!r} is not a name (letters, digits, '_', '.', '-')")
    family = _one_of(path, "family", data["family"], tuple(FAMILY_PROFILES))
    daemon = _one_of(path, "daemon", data.get("daemon", "fuse"), DAEMONS)
    if "profile" in data:
        _one_of(path, "profile", data["profile"], FAMILY_PROFILES[family])
    listed = _strings(path, "profiles", data.get("profiles", [data.get("profile", FAMILY_PROFILES[family][0])]))
    for p in listed:
        _one_of(path, "profiles", p, FAMILY_PROFILES[family])
    default = _one_of(path, "profiles", data.get("profile", listed[0] if listed else ""), FAMILY_PROFILES[family])
    profiles = (default, *(p for p in listed if p != default))  # the default first
    caps = data.get("capabilities", {})
    if not isinstance(caps, dict):
        raise _fail(path, "capabilities", "must be a table")
    for key in caps:
        if key not in CAPABILITY_KEYS:
            raise _fail(path, f"capabilities.{key}", f"unknown key (known: {', '.join(sorted(CAPABILITY_KEYS))})")
    max_layers = caps.get("max_layers", 3 if family == "union" else 1)
    if not isinstance(max_layers, int) or isinstance(max_layers, bool) or max_layers < 1:
        raise _fail(path, "capabilities.max_layers", f"{max_layers!r} is not a whole number of at least 1")
    if family == "posix" and max_layers != 1:
        raise _fail(path, "capabilities.max_layers", "a posix subject has one initial tree: 1")
    flags = {}
    for key, default in (("remount", True), ("push", family == "union")):
        flags[key] = caps.get(key, default)
        if not isinstance(flags[key], bool):
            raise _fail(path, f"capabilities.{key}", "must be true or false")
    if family == "posix" and flags["push"]:
        raise _fail(path, "capabilities.push", "a posix subject has no layers to push")
    placements = _strings(path, "capabilities.placements", caps.get("placements", ["same"]))
    for p in placements:
        _one_of(path, "capabilities.placements", p, PLACEMENTS)
    lists = _lists(path, data.get("lists", {}), family)
    allowed = PLACEHOLDERS[family] | set(lists)
    mount = _mount(path, data["mount"], daemon, allowed, family)
    umount = _templates(path, "umount", data.get("umount", []), allowed, family)
    claims = data.get("claims_overlay_format", False)
    if not isinstance(claims, bool):
        raise _fail(path, "claims_overlay_format", "must be true or false")
    if claims and family != "union":
        raise _fail(path, "claims_overlay_format", "only a union subject has an upper layer")
    version_match = data.get("version_match", "")
    try:
        re.compile(version_match)
    except (re.error, TypeError) as e:
        raise _fail(path, "version_match", f"not a regular expression: {e}") from None
    return SubjectFile(
        path=path, name=name, family=family, daemon=daemon, mount=mount, umount=umount,
        version=_strings(path, "version", data.get("version", [])), version_match=version_match,
        requires=_strings(path, "requires", data.get("requires", [])),
        requires_filesystems=_strings(path, "requires_filesystems", data.get("requires_filesystems", [])),
        profiles=profiles,
        claims_overlay_format=claims, tree=_one_of(path, "tree", data.get("tree", "mount"), TREES),
        max_layers=max_layers, remount=flags["remount"], push=flags["push"], placements=placements, lists=lists,
    )


def _lists(path: Path, raw: object, family: str) -> dict[str, ListSpec]:
    if not isinstance(raw, dict):
        raise _fail(path, "lists", "must be a table of tables")
    if raw and family != "union":
        raise _fail(path, "lists", "only a union subject has layers to list")
    out = {}
    for name, spec in raw.items():
        where = f"lists.{name}"
        if name in PLACEHOLDERS[family] or _LOWER_N.fullmatch(name):
            raise _fail(path, where, "the name of a built-in placeholder")
        if not isinstance(spec, dict) or "item" not in spec:
            raise _fail(path, where, "must be a table with at least `item`")
        for key, value in spec.items():
            if key not in LIST_KEYS:
                raise _fail(path, f"{where}.{key}", f"unknown key (known: {', '.join(sorted(LIST_KEYS))})")
            if not isinstance(value, str):
                raise _fail(path, f"{where}.{key}", "must be a string")
        for key in LIST_KEYS & set(spec):
            allowed = PLACEHOLDERS[family] | (ITEM_PLACEHOLDERS if key == "item" else set())
            _check_fields(path, f"{where}.{key}", spec[key], allowed, family)
        out[name] = ListSpec(**spec)
    return out


def _check_fields(path: Path, key: str, template: str, allowed: set[str], family: str) -> None:
    try:
        names = _fields(template)
    except ValueError as e:
        raise _fail(path, key, f"bad template {template!r}: {e}") from None
    for name in names:
        if name not in allowed and not (family == "union" and _LOWER_N.fullmatch(name)):
            raise _fail(path, key, f"unknown placeholder {{{name}}} (known: "
                        f"{', '.join(sorted(allowed))}{', lowerdir0, lowerdir1, ...' if family == 'union' else ''})")


def _templates(path: Path, key: str, raw: object, allowed: set[str], family: str) -> tuple[str, ...]:
    argv = _strings(path, key, raw)
    for arg in argv:
        _check_fields(path, key, arg, allowed, family)
    return argv


def _mount(path: Path, raw: object, daemon: str, allowed: set[str], family: str) -> tuple[str, ...] | dict:
    if isinstance(raw, dict):
        if daemon != "kernel":
            raise _fail(path, "mount", "a table (type, options) is for daemon = \"kernel\"; a FUSE one is an argv")
        for key in raw:
            if key not in MOUNT_TABLE_KEYS:
                raise _fail(path, f"mount.{key}", f"unknown key (known: {', '.join(sorted(MOUNT_TABLE_KEYS))})")
        if not isinstance(raw.get("type"), str):
            raise _fail(path, "mount.type", "missing (the file system type mount(2) is given)")
        options = raw.get("options", "")
        if not isinstance(options, str):
            raise _fail(path, "mount.options", "must be a string")
        _check_fields(path, "mount.options", options, allowed, family)
        return {"type": raw["type"], "options": options}
    argv = _templates(path, "mount", raw, allowed, family)
    if not argv:
        raise _fail(path, "mount", "empty")
    return argv


def _render(template: str, values: dict[str, str]) -> str:
    return template.format_map(values)


def _values(f: SubjectFile, mnt: Path, lowers: list[Path] = (), upper: Path | None = None,
            work: Path | None = None, profile: str = "", backing: Path | None = None) -> dict[str, str]:
    if f.family == "posix":
        return {"dir": str(backing), "mnt": str(mnt)}
    values = {"lowerdirs": ":".join(map(str, lowers)), "upperdir": str(upper), "workdir": str(work or ""),
              "mnt": str(mnt), "overlay_options": feature_options(profile)}
    values |= {f"lowerdir{i}": str(lower) for i, lower in enumerate(lowers)}
    for name, spec in f.lists.items():
        items = [_render(spec.item, values | {"lowerdir": str(lower)}) for lower in lowers]
        values[name] = _render(spec.prefix, values) + spec.join.join(items) + _render(spec.suffix, values)
    return values


class _Commands:
    """What a subject file's two families share: availability, version, mounting and unmounting by its keys."""

    file: SubjectFile

    def available(self) -> tuple[bool, str]:
        f = self.file
        if os.geteuid() != 0:
            return False, "needs root to mount"
        programs = [*f.requires, *(["fusermount3"] if f.daemon == "fuse" else [])]
        for program in programs:
            if shutil.which(program) is None:
                return False, f"{program} not found on PATH"
        if f.daemon == "fuse" and not os.path.exists("/dev/fuse"):
            return False, "/dev/fuse is missing"
        for fs in f.requires_filesystems:
            if fs not in mounts.kernel_filesystems():
                return False, f"{fs} is not in /proc/filesystems (modprobe {fs})"
        return True, ""

    def version(self) -> str:
        f = self.file
        if not f.version:
            return "unknown"
        try:
            done = subprocess.run(list(f.version), capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"unknown ({e})"
        text = done.stdout + done.stderr
        if f.version_match:
            found = re.search(f.version_match, text, re.M)
            if found is None:
                return "unknown"
            return found.group(1) if found.groups() else found.group(0)
        return text.strip().splitlines()[0] if text.strip() else "unknown"

    def mount_with(self, values: dict[str, str], mnt: Path) -> int | None:
        """Mount by the file's `mount`: the daemon's pid for a FUSE file system that stays in the foreground."""
        f = self.file
        if isinstance(f.mount, dict):
            mounts.mount_kernel(f.mount["type"], _render(f.mount["options"], values), mnt)
            return None
        argv = [_render(a, values) for a in f.mount]
        if f.daemon == "fuse":
            return mounts.start_fuse(argv, mnt, log=mnt.parent / f"{f.name}.log").pid
        mounts.mount_by_command(argv, mnt)
        return None

    def unmount_with(self, values: dict[str, str], mnt: Path, pid: int | None) -> None:
        """The file's `umount` first, if it has one; then the bench's own unmount, which finishes whatever it left."""
        if self.file.umount and mounts.find_mount(mnt) is not None:
            with contextlib.suppress(mounts.MountError):  # its umount program missing: ours still unmounts
                mounts.run_quietly([_render(a, values) for a in self.file.umount], 10)
        mounts.unmount(mnt, pid)


class UnionFromFile(_Commands, UnionSubject):
    """A union file system described by a subject file."""

    def __init__(self, f: SubjectFile) -> None:
        self.file, self.name, self.profiles = f, f.name, f.profiles
        self.capabilities = Capabilities(("union",), f.max_layers, f.remount, f.push, f.claims_overlay_format,
                                         can_hang=f.daemon == "fuse", placements=f.placements)
        templates = f.mount.values() if isinstance(f.mount, dict) else f.mount
        used = set().union(*map(_fields, templates), *(_fields(s.prefix + s.item + s.suffix) for s in f.lists.values()))
        #: the bench makes a work directory only for a file system that is given one
        self.uses_workdir = "workdir" in used

    def _values(self, m: UnionMount) -> dict[str, str]:
        return _values(self.file, m.path, m.lowers, m.upper, m.work, m.profile)

    def mount(self, m: UnionMount) -> int | None:
        return self.mount_with(self._values(m), m.path)

    def unmount(self, m: UnionMount) -> None:
        self.unmount_with(self._values(m), m.path, m.pid)

    def abort(self, m: UnionMount) -> None:
        if self.file.daemon == "fuse":
            mounts.abort(m.path, m.pid)


class PlainFromFile(_Commands, PlainSubject):
    """A plain file system described by a subject file, held to a posix profile."""

    def __init__(self, f: SubjectFile) -> None:
        self.file, self.name, self.profiles = f, f.name, f.profiles
        self.xattrs = "posix-no-xattr" not in f.profiles[:1]
        self.capabilities = Capabilities(("posix",), 1, f.remount, False, can_hang=f.daemon == "fuse")

    def _values(self, m: PlainMount) -> dict[str, str]:
        return _values(self.file, m.path, backing=m.scratch / "dir")

    def setup(self, layers: Layers, scratch: Path, profile: str) -> PlainMount:
        """The backing directory `{dir}` first: the initial tree is built in it (`tree = "dir"`), or through the
        mount once it is up (`tree = "mount"`)."""
        scratch = Path(scratch).resolve()
        backing = scratch / "dir"
        backing.mkdir(parents=True, mode=0o755)
        if self.file.tree == "mount":
            return super().setup(layers, scratch, profile)
        if profile not in self.profiles:
            raise ValueError(f"{self.name} cannot be held to profile {profile!r} (it has: {', '.join(self.profiles)})")
        build_layer(layers.lowers[0] if layers.lowers else (), backing)
        m = PlainMount(self, scratch / "mnt", scratch)
        m.path.mkdir(mode=0o755)
        m.mount()
        return m

    def mount(self, m: PlainMount) -> int | None:
        return self.mount_with(self._values(m), m.path)


def replay_options(subject: object) -> str:
    """What a replay command needs to find `subject` again: its subject file, unless vfslab ships it."""
    if not isinstance(subject, _Commands) or subject.file.path.parent == SHIPPED:
        return ""
    return f" --subject-file {subject.file.path}"


def load(path: Path) -> UnionFromFile | PlainFromFile:
    f = parse(path)
    return UnionFromFile(f) if f.family == "union" else PlainFromFile(f)


def load_all(files: list[Path], folders: list[Path]) -> list[UnionFromFile | PlainFromFile]:
    """The subjects of these files and of every `*.toml` in these folders; a folder that is not one is an error."""
    paths = list(files)
    for folder in folders:
        if not folder.is_dir():
            raise SubjectFileError(f"{folder}: not a folder of subject files")
        paths += sorted(folder.glob("*.toml"))
    return [load(p) for p in paths]
