"""`vfslab mount vmblock --target DIR MOUNTPOINT [--design D] [--max-threads N] [--foreground]`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

USAGE = 2


def parser(prog: str) -> argparse.ArgumentParser:
    from vfslab.impl.block.fs import DESIGNS

    p = argparse.ArgumentParser(prog=prog, description="Mount vmblock: /blockdir shows the target directory as "
                                "symlinks whose readlink waits while a block (written to /dev) is on them.")
    p.add_argument("mountpoint")
    p.add_argument("--target", default="/tmp/VMwareDnD", help="the directory /blockdir shows (default: "
                   "/tmp/VMwareDnD, as upstream)")
    p.add_argument("--design", choices=DESIGNS, default="deferred", help="how a blocked readlink waits: "
                   "deferred (default: the request waits, no worker thread does; never deadlocks) or upstream "
                   "(a worker waits, as vmware-vmblock-fuse: deadlocks once --max-threads readlinks wait)")
    p.add_argument("--max-threads", type=int, default=10, help="libfuse worker threads at most (default 10, "
                   "libfuse 3.12+'s default)")
    p.add_argument("--unprivileged", action="store_true", help="any user may block; a user's blocks hold only "
                   "that user's accesses (the seed's proposal)")
    p.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground (default: daemonize)")
    return p


def main(argv: list[str] | None = None, prog: str = "vfslab mount vmblock") -> int:
    args = parser(prog).parse_args(argv)
    for what, path in (("target", args.target), ("mount point", args.mountpoint)):
        if not os.path.isdir(path):
            print(f"{prog}: error: {what} {path} is not a directory", file=sys.stderr)
            return USAGE
    if args.max_threads < 1:
        print(f"{prog}: error: --max-threads must be at least 1", file=sys.stderr)
        return USAGE
    from vfslab.impl import fuse_ll
    from vfslab.impl.block.fs import VMBlock

    logging.basicConfig(format=f"{prog}: %(message)s", level=logging.WARNING)
    options = ["fsname=vmblock", "subtype=vmblock", "default_permissions"]
    if os.geteuid() == 0:
        options.append("allow_other")
    try:
        fuse_ll.serve(VMBlock(args.target, args.design, args.unprivileged), os.path.abspath(args.mountpoint),
                      options, args.foreground, args.max_threads)
    except OSError as e:
        print(f"{prog}: error: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="vmblock"))
