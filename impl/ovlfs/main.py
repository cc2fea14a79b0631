"""`vfslab mount ovlfs --base DIR --storage METHOD MOUNTPOINT [-f] [-o OPTIONS]`: mount ovlfs over a base directory.

The storage is opened and initialised (Init) before anything is mounted, so a bad base, a bad METHOD, or storage
that is unformatted, another program's, another base's or damaged is one line on stderr and exit status 2, and
nothing is mounted. `umount MOUNTPOINT` ends the daemon: Sync, then Release.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

USAGE = 2
#: -o options passed to FUSE as they are
FUSE_FLAGS = ("ro", "allow_other", "default_permissions")


class OptionError(ValueError):
    pass


def parse_options(values: list[str]) -> tuple[dict[str, bool], str | None]:
    """-o OPTIONS (repeatable, comma-separated): the FUSE flags, and `storage_root=DIR`, the storage file system
    for a method that keeps no file data itself."""
    fuse: dict[str, bool] = {}
    storage_root = None
    for option in (o for value in values for o in value.split(",") if o):
        name, eq, value = option.partition("=")
        if name in FUSE_FLAGS and not eq:
            fuse[name] = True
        elif name == "storage_root" and value:
            storage_root = value
        elif option != "rw":
            raise OptionError(f"unknown option {option!r} (known: {', '.join(FUSE_FLAGS)}, rw, storage_root=DIR)")
    return fuse, storage_root


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Mount ovlfs: an overlay of a read-only base directory whose "
                                "every change is kept by a storage method (dir:PATH, file:PATH, pmem:POOL; made by "
                                "`vfslab storage mkfs`). The base is never written. `umount MOUNTPOINT` ends it.")
    p.add_argument("mountpoint")
    p.add_argument("--base", required=True, help="the read-only base directory")
    p.add_argument("--storage", required=True, metavar="METHOD", help="where changes are kept: dir:PATH, file:PATH, "
                   "pmem:POOL")
    p.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground (default: daemonize)")
    p.add_argument("-o", dest="options", action="append", default=[], metavar="OPTIONS",
                   help=f"{', '.join(FUSE_FLAGS)}; storage_root=DIR: the storage file system, for a method that keeps "
                   "no file data itself")
    return p


def main(argv: list[str] | None = None, prog: str = "vfslab mount ovlfs") -> int:
    args = parser(prog).parse_args(argv)
    from vfslab.impl.ovlfs.fs import Ovlfs
    from vfslab.impl.ovlfs.storage import open_method

    try:
        fuse_options, storage_root = parse_options(args.options)
        if not os.path.isdir(args.mountpoint):
            raise OptionError(f"mount point {args.mountpoint} is not a directory")
        fs = Ovlfs(args.base, open_method(args.storage), storage_root)
    except OSError as e:  # the storage's errors name it; the base's are the system's, naming the file
        print(f"{prog}: error: {f'{e.filename}: ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return USAGE
    except Exception as e:  # a bad spec, or a user's storage method failing as it reads what it was given
        print(f"{prog}: error: {e}", file=sys.stderr)
        return USAGE
    from vfslab.impl.ovlfs.serve import serve

    logging.basicConfig(format=f"{prog}: %(message)s", level=logging.WARNING)
    try:
        serve(fs, os.path.abspath(args.mountpoint), args.foreground, fuse_options)
    except (OSError, RuntimeError) as e:
        fs.close()
        print(f"{prog}: error: cannot mount {args.mountpoint}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
