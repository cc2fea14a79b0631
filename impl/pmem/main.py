"""`vfslab mount pmem POOL MOUNTPOINT [-f] [--max-threads N]`: serve a pool through FUSE."""

from __future__ import annotations

import argparse
import logging
import os
import sys

USAGE = 2


def main(argv: list[str] | None = None, prog: str = "vfslab-pmem") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Serve a pmem pool (made by `vfslab pmem mkfs`) at a mount "
                                "point, for every program. `umount MOUNTPOINT` ends it.")
    p.add_argument("pool")
    p.add_argument("mountpoint")
    p.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground (default: daemonize)")
    p.add_argument("--max-threads", type=int, default=10, help="libfuse worker threads at most (default 10)")
    args = p.parse_args(argv)
    from vfslab.impl.pmem.fs import PmemFS
    from vfslab.impl.pmem.pool import PoolError

    if not os.path.isdir(args.mountpoint):
        print(f"{prog}: error: mount point {args.mountpoint} is not a directory", file=sys.stderr)
        return USAGE
    try:
        fs = PmemFS.open(os.path.abspath(args.pool))  # a bad pool is one line here, before anything is mounted
    except (PoolError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return USAGE
    from vfslab.impl.pmem.serve import serve

    logging.basicConfig(format=f"{prog}: %(message)s", level=logging.WARNING)
    try:
        serve(fs, os.path.abspath(args.mountpoint), args.foreground, args.max_threads)
    except (OSError, RuntimeError) as e:
        print(f"{prog}: error: cannot mount {args.mountpoint}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
