"""Mount options, spelled as for `mount -t overlay`: `-o lowerdir=L1:L2,upperdir=U,workdir=W,...`."""

from __future__ import annotations

import os
from dataclasses import dataclass

#: generic mount options mount(8) and mount.fuse3 pass along that libfuse has no flag for: accepted, and nothing
#: changes (relatime and its kin are the kernel's default; the others are mount(8)'s own)
GENERIC = frozenset({
    "atime", "relatime", "norelatime", "strictatime", "nostrictatime", "diratime", "lazytime", "nolazytime",
    "mand", "nomand", "auto", "noauto", "user", "nouser", "users", "nofail", "_netdev", "defaults", "silent",
    "loud",
})
#: options passed on to FUSE as they are: the mount's flags (libfuse makes the mount nosuid,nodev unless told suid
#: and dev, as kernel overlayfs is only when told nosuid and nodev), and FUSE's own
FUSE_PASSED = frozenset({
    "ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "noatime", "nodiratime", "sync", "async",
    "dirsync", "allow_other", "allow_root", "default_permissions",
})
ON_OFF = {"on": True, "off": False}


class OptionError(ValueError):
    """A mount option that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class MountOptions:
    lowerdirs: tuple[str, ...]
    upperdir: str | None = None
    workdir: str | None = None
    #: rename of a lower or merged directory records a redirect instead of failing with EXDEV
    redirect_dir: bool = True
    #: lower hard links stay one file after copy-up (an index in workdir/index)
    index: bool = True
    #: skip the fsync that makes a copy-up durable before it becomes visible (as overlayfs's `volatile`)
    volatile: bool = False
    #: file handles (name_to_handle_at) that open their file again after a remount, as overlayfs's `nfs_export`
    nfs_export: bool = False
    fuse: tuple[str, ...] = ()
    #: 1 (the default) serves every request from one thread; N > 1 runs libfuse's multithreaded loop with N workers
    #: at most. Under the GIL the workers add no throughput and cost each request a hand-off between threads
    #: (docs/union-fuse.md); they let reads and writes of open files run beside a slow request.
    max_threads: int = 1

    @property
    def noatime(self) -> bool:
        """Reading a file changes no access time (overlayfs: neither the union's nor the upper file's)."""
        return "noatime" in self.fuse

    @property
    def read_only(self) -> bool:
        return self.upperdir is None or "ro" in self.fuse

    @property
    def offline_changes(self) -> bool:
        """overlayfs lets the layers be changed while unmounted unless redirect_dir or index is on; then new
        directories in merged ones are made opaque."""
        return not (self.redirect_dir or self.index)


def _split(text: str) -> list[str]:
    r"""Split at commas not escaped with a backslash (`\,` is a literal comma, as overlayfs reads it)."""
    out, cur, escaped = [], "", False
    for ch in text:
        if escaped:
            cur += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [o for o in out if o]


def _directory(option: str, path: str) -> str:
    if not path:
        raise OptionError(f"{option}= needs a directory")
    real = os.path.abspath(path)
    if not os.path.isdir(real):
        raise OptionError(f"{option}={path}: not a directory")
    return real


def parse(texts: list[str]) -> MountOptions:
    """Read one or more `-o` option strings; OptionError for anything unknown, missing or inconsistent."""
    values: dict = {"fuse": []}
    for text in texts:
        for opt in _split(text):
            key, eq, value = opt.partition("=")
            if key in GENERIC and not eq:
                continue
            if key in FUSE_PASSED and not eq:
                values["fuse"].append(key)
            elif key == "lowerdir" and eq:
                values["lowerdirs"] = tuple(_directory("lowerdir", p) for p in value.split(":"))
            elif key in ("upperdir", "workdir") and eq:
                values[key] = _directory(key, value)
            elif key in ("redirect_dir", "index", "nfs_export") and value in ON_OFF:
                values[key] = ON_OFF[value]
            elif key == "volatile" and not eq:
                values["volatile"] = True
            elif key == "max_threads" and value.isdigit() and int(value) > 0:
                values["max_threads"] = int(value)
            else:
                raise OptionError(f"unknown or malformed mount option {opt!r}")
    if "lowerdirs" not in values:
        raise OptionError("missing lowerdir=DIR[:DIR...]")
    if ("upperdir" in values) != ("workdir" in values):
        raise OptionError("upperdir= and workdir= go together")
    upper, work = values.get("upperdir"), values.get("workdir")
    if upper is not None:
        if os.stat(upper).st_dev != os.stat(work).st_dev:
            raise OptionError("workdir and upperdir must be on the same file system")
        if upper == work or work.startswith(upper + "/") or upper.startswith(work + "/"):
            raise OptionError("workdir and upperdir must be separate directories, neither inside the other")
    if values.get("nfs_export") and not values.get("index", True):
        # overlayfs falls back to nfs_export=off with a line in the kernel log, where nobody may look
        raise OptionError("nfs_export=on needs index=on: a handle of a lower hard link must find its copy-up")
    values["fuse"] = tuple(values["fuse"])
    return MountOptions(**values)
