"""`vfslab-union`: mount a union, as a program, as a mount helper, or from `vfslab mount union`.

    vfslab-union [SOURCE] MOUNTPOINT -o lowerdir=L1:L2,upperdir=U,workdir=W [-f]

mount(8) runs it as `mount.fuse.vfslab-union SOURCE MOUNTPOINT -o OPTIONS` (adding -n, -s, -v or -t TYPE
as it likes), and mount.fuse3 as `vfslab-union SOURCE MOUNTPOINT -o rw,...,dev,suid`; both are accepted.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from importlib import metadata

from vfslab.impl.union.options import OptionError, parse

USAGE = 2
PROG = "vfslab-union"


def version() -> str:
    """`vfslab <version> (libfuse <version>)`."""
    from vfslab.impl.fuse_ll import VERSION

    return f"vfslab {metadata.version('vfslab')} (libfuse {VERSION})"


class _Version(argparse.Action):
    """`-V`: the version is looked up only when asked for. Looking it up (package metadata, libfuse) when the
    parser is built would cost every start of the daemon ~10 ms, and a check starts it thousands of times."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0,
                         help="show program's version number and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog} {version()}")
        parser.exit()


@functools.cache
def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """Built once per program name, and once at import for the usual one: a check starts the daemon thousands of
    times, from a fork server that imported this module (building it costs a start 1.5 ms)."""
    p = argparse.ArgumentParser(
        prog=prog, description="Mount a writable union of directories, in kernel overlayfs's on-disk format.",
        epilog="Options: lowerdir=L1[:L2...] (leftmost is topmost), upperdir=DIR and workdir=DIR (on one file "
        "system; without them the union is read-only), redirect_dir=on|off (default on: directories can be "
        "renamed), index=on|off (default on: hard links survive copy-up), volatile (no fsync of copy-ups), "
        "max_threads=N (default 1: one thread serves every request; N > 1: libfuse's multithreaded loop with up to N "
        "workers), ro, allow_other, default_permissions; "
        "mount flags suid, dev, exec, noatime, nodiratime, sync, dirsync and their no- forms (without suid and dev the "
        "mount is nosuid,nodev); other generic mount options (relatime, defaults, ...) are accepted and change "
        "nothing. `umount MOUNTPOINT` ends it.")
    p.add_argument("where", nargs="+", metavar="[SOURCE] MOUNTPOINT",
                   help="an optional source name, then the mount point")
    p.add_argument("-o", dest="options", action="append", default=[], metavar="OPTIONS", required=True)
    p.add_argument("-V", "--version", action=_Version)
    p.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground (default: daemonize)")
    for flag in ("-n", "-s", "-v"):  # mount(8) helper flags: no mtab, sloppy, verbose
        p.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-t", dest="type", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = parser(prog).parse_args(argv)
    if len(args.where) > 2:
        print(f"{prog}: error: expected [SOURCE] MOUNTPOINT, got {' '.join(args.where)}", file=sys.stderr)
        return USAGE
    mountpoint = os.path.abspath(args.where[-1])
    try:
        opts = parse(args.options)
        if not os.path.isdir(mountpoint):
            raise OptionError(f"mount point {args.where[-1]} is not a directory")
    except OptionError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return USAGE
    from vfslab.impl.union.serve import serve

    logging.basicConfig(format=f"{prog}: %(message)s", level=logging.WARNING)
    try:
        serve(opts, mountpoint, args.foreground)
    except (OSError, RuntimeError) as e:
        print(f"{prog}: error: cannot mount {mountpoint}: {e}", file=sys.stderr)
        return 1
    return 0


parser(PROG)  # as main asks for it: functools.cache keeps parser() and parser(PROG) apart

if __name__ == "__main__":
    sys.exit(main())
