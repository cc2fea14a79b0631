"""The pmemfile tools of the seed's list: mkfs.pmemfile, pmemfile-ls, pmemfile-cat, pmemfile-stat; also
`vfslab pmem mkfs|ls|cat|stat`. A bad pool or path is one line on stderr and exit status 1 (2: usage)."""

from __future__ import annotations

import argparse
import os
import re
import stat as st
import sys
import time

from vfslab.impl.pmem import fsck
from vfslab.impl.pmem.fs import PmemFS
from vfslab.impl.pmem.pool import Pool, PoolError

SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 64M)")
    return int(m.group(1)) * SIZE_UNITS[m.group(2).lower()]


def mkfs(args: argparse.Namespace) -> int:
    if os.path.exists(args.pool) and not args.force and not Pool.is_pool(args.pool):
        raise PoolError(f"{args.pool} exists and is not a pmem pool; --force overwrites it")
    PmemFS.mkfs(args.pool, args.size)
    print(f"{args.pool}: pmem pool of {args.size} bytes")
    return 0


def _mode(mode: int) -> str:
    return st.filemode(mode)


def ls(args: argparse.Namespace) -> int:
    fs = PmemFS.open(args.pool)
    try:
        ino = _in(args.path, fs.lookup, fs.pool.root, args.path, follow=False)
        if st.S_ISDIR(fs.inode(ino).mode):
            where, entries = ino, fs.getdents(ino)
        else:
            where, entries = fs.pool.root, [(args.path, ino, 0)]
        for name, child, _ in entries:
            if name in (".", "..") and not args.all:
                continue
            s = fs.stat(child)
            if args.long:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.st_mtime_ns / 1e9))
                link = f" -> {fs.readlinkat(where, name)}" if st.S_ISLNK(s.st_mode) else ""
                print(f"{_mode(s.st_mode)} {s.st_nlink:3} {s.st_uid:5} {s.st_gid:5} {s.st_size:10} {when} "
                      f"{name}{link}")
            else:
                print(name)
    finally:
        fs.close()
    return 0


def cat(args: argparse.Namespace) -> int:
    fs = PmemFS.open(args.pool)
    try:
        for path in args.paths:
            f = _in(path, fs.openat, fs.pool.root, path, os.O_RDONLY)
            try:
                while chunk := _in(path, fs.read, f, 1 << 20):
                    sys.stdout.buffer.write(chunk)
            finally:
                fs.close_file(f)
    finally:
        fs.close()
    return 0


def stat(args: argparse.Namespace) -> int:
    fs = PmemFS.open(args.pool)
    try:
        if args.path is None:
            pool = fs.pool
            used = sum(pool.block_used(b) for b in range(pool.data_start, pool.blocks))
            files = sum(fs.inode(i).mode != 0 for i in range(1, pool.inodes + 1))
            print(f"pool {args.pool}: {pool.blocks} blocks of 4096, {used} data blocks of "
                  f"{pool.blocks - pool.data_start} in use; {files} of {pool.inodes} inodes in use")
            problems = fsck.check(fs)
            for p in problems:
                print(f"inconsistent: {p}")
            return 1 if problems else 0
        s = _in(args.path, fs.fstatat, fs.pool.root, args.path, follow=False)
        print(f"  File: {args.path}\n  Size: {s.st_size}\tBlocks: {s.st_blocks}\tInode: {s.st_ino}\t"
              f"Links: {s.st_nlink}\nAccess: ({st.S_IMODE(s.st_mode):04o}/{_mode(s.st_mode)})\tUid: {s.st_uid}\t"
              f"Gid: {s.st_gid}")
    finally:
        fs.close()
    return 0


def parser(prog: str = "vfslab pmem") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Make and inspect pmem pools.")
    sub = p.add_subparsers(dest="tool", required=True)
    m = sub.add_parser("mkfs", help="make an empty pool (refuses to overwrite a file that is not a pool)")
    m.add_argument("pool")
    m.add_argument("size", type=_size, nargs="?", default=64 << 20, help="size, e.g. 64M (default 64M)")
    m.add_argument("-f", "--force", action="store_true", help="overwrite a file that is not a pool")
    m.set_defaults(run=mkfs)
    lp = sub.add_parser("ls", help="list a directory of a pool")
    lp.add_argument("pool")
    lp.add_argument("path", nargs="?", default="/")
    lp.add_argument("-l", dest="long", action="store_true", help="long listing")
    lp.add_argument("-a", dest="all", action="store_true", help="show . and ..")
    lp.set_defaults(run=ls)
    c = sub.add_parser("cat", help="print files of a pool")
    c.add_argument("pool")
    c.add_argument("paths", nargs="+")
    c.set_defaults(run=cat)
    s = sub.add_parser("stat", help="a file's attributes, or (no path) the pool's use and consistency")
    s.add_argument("pool")
    s.add_argument("path", nargs="?")
    s.set_defaults(run=stat)
    return p


def main(argv: list[str] | None = None, prog: str = "vfslab pmem", named: bool = False) -> int:
    """`named`: run as one of the seed's programs (its name alone prefixes errors)."""
    args = parser(prog).parse_args(argv)
    label = prog if named else f"{prog} {args.tool}"
    try:
        return args.run(args)
    except BrokenPipeError:
        return 0
    except PoolError as e:
        print(f"{label}: error: {e}", file=sys.stderr)
    except OSError as e:
        print(f"{label}: error: {e.filename}: {e.strerror}" if e.filename else f"{label}: error: {e.strerror or e}",
              file=sys.stderr)
    return 1


def _in(path: str, call, *args, **kwargs):
    """`call(*args, **kwargs)`; an errno from the pool names `path`."""
    try:
        return call(*args, **kwargs)
    except OSError as e:
        raise OSError(e.errno, os.strerror(e.errno), path) from None


def _as(tool: str):
    def run() -> int:
        return main([tool, *sys.argv[1:]], prog=os.path.basename(sys.argv[0]), named=True)

    return run


mkfs_pmemfile, pmemfile_ls, pmemfile_cat, pmemfile_stat = (_as(t) for t in ("mkfs", "ls", "cat", "stat"))
