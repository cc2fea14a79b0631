"""Where a union subject's layers live: a dimension of every union check.

- `same`: every layer in the scratch directory, on one file system;
- `fs-per-layer`: each lower layer on a tmpfs of its own, and the upper layer with its work directory on another;
- `ro-image`: the bottom lower layer a read-only image (erofs, else squashfs) built from its tree and loop-mounted.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

from vfslab.subjects import mounts
from vfslab.subjects.tree import build_layer

SAME, FS_PER_LAYER, RO_IMAGE = "same", "fs-per-layer", "ro-image"
PLACEMENTS = (SAME, FS_PER_LAYER, RO_IMAGE)
#: image builders, by preference: (file system, program, its argv for IMAGE from DIR)
IMAGES = (("erofs", "mkfs.erofs", lambda image, src: ["mkfs.erofs", "--quiet", str(image), str(src)]),
          ("squashfs", "mksquashfs", lambda image, src: ["mksquashfs", str(src), str(image), "-quiet", "-noappend",
                                                         "-no-progress", "-xattrs"]))
TMPFS_OPTIONS = "mode=0755,size=64m"


def check(name: str) -> str:
    if name not in PLACEMENTS:
        raise ValueError(f"unknown placement {name!r} (known: {', '.join(PLACEMENTS)}, or all)")
    return name


def parse(names: str | list[str]) -> tuple[str, ...]:
    """Placements as a scenario or the command line names them: one, several, or `all`."""
    names = [names] if isinstance(names, str) else list(names)
    if "all" in names:
        return PLACEMENTS
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"placement must name one or more of {', '.join(PLACEMENTS)}, or all")
    return tuple(dict.fromkeys(check(n) for n in names))


def available(name: str) -> tuple[bool, str]:
    """Whether this machine can place layers so (root, and for an image a builder and its file system)."""
    if name == SAME:
        return True, ""
    if os.geteuid() != 0:
        return False, "needs root to mount"
    if name == RO_IMAGE and _image_kind() is None:
        return False, "needs erofs-utils (mkfs.erofs) or squashfs-tools (mksquashfs), and the kernel's file system"
    return True, ""


@functools.cache
def _image_kind():
    """The first image builder this machine has, with its file system in the kernel (asked once)."""
    known = mounts.kernel_filesystems()
    return next((kind for kind in IMAGES if kind[0] in known and shutil.which(kind[1])), None)


def fresh_fs(path: Path) -> None:
    """A tmpfs of its own at `path` (a new, empty directory), registered for teardown."""
    path.mkdir(mode=0o755)
    mounts.mount_kernel("tmpfs", TMPFS_OPTIONS, path)


def lower(placement: str, nodes: tuple, path: Path, bottom: bool, scratch: Path) -> list[Path]:
    """Make lower layer `path` holding `nodes` as `placement` says; the mounts made for it."""
    if placement == RO_IMAGE and bottom:
        return [_image(nodes, path, scratch)]
    if placement == FS_PER_LAYER:
        fresh_fs(path)
        build_layer(nodes, path)
        return [path]
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)
    build_layer(nodes, path)
    return []


def _image(nodes: tuple, path: Path, scratch: Path) -> Path:
    """The layer built in a directory, made into a read-only image, and the image loop-mounted at `path`."""
    fstype, _, argv = _image_kind()
    src = Path(tempfile.mkdtemp(prefix="image-src-", dir=scratch))
    os.chmod(src, 0o755)
    build_layer(nodes, src)
    image = scratch / f"{path.name}.{fstype}"
    done = mounts.run_quietly(argv(image, src), 60)
    shutil.rmtree(src)
    if not done:
        raise mounts.MountError(f"building the {fstype} image of {path.name} failed")
    path.mkdir(mode=0o755)
    mounts.mount_by_command(["mount", "-t", fstype, "-o", "loop,ro", str(image), str(path)], path)
    return path
