"""A pool's consistency: what `pmemfile-stat --check` and the crash tests ask of every pool.

- the undo log is empty (a recovered pool has no transaction open);
- every directory entry names an allocated inode, every directory's `..` names its parent;
- every allocated inode is reachable by name, or is an open orphan (nlink 0, only while the pool is open);
- nlink: a file's is its number of names, a directory's is 2 + its subdirectories;
- every block an inode maps is in use, none is mapped twice, and no block in use is unmapped (nothing leaked).
"""

from __future__ import annotations

import stat as st
import struct
from collections import Counter

from vfslab.impl.pmem.fs import DIRENT, PER_INDIRECT, PmemFS
from vfslab.impl.pmem.pool import BLOCK


def _blocks(fs: PmemFS, ino: int) -> list[int]:
    node = fs.inode(ino)
    out = [b for b in node.direct if b]
    if node.indirect:
        out.append(node.indirect)
        out += [b for b in struct.unpack_from(f"<{PER_INDIRECT}I", fs.pool.view, node.indirect * BLOCK) if b]
    return out


def check(fs: PmemFS) -> list[str]:
    """Every inconsistency found, one line each (empty: consistent)."""
    pool, problems = fs.pool, []
    if struct.unpack_from("<Q", pool.view, pool.log_at)[0]:
        problems.append("the undo log is not empty")
    names: Counter = Counter()
    subdirs: Counter = Counter()
    reached, todo = {pool.root}, [(pool.root, pool.root)]
    while todo:
        d, parent = todo.pop()
        if fs.inode(d).size % DIRENT.size:
            problems.append(f"directory {d}: size {fs.inode(d).size} is not a whole number of entries")
            continue
        for name, child in fs.entries(d):
            if name == "..":
                if child != parent:
                    problems.append(f"directory {d}: .. is {child}, but it is in {parent}")
                continue
            if not 1 <= child <= pool.inodes or not fs.inode(child).mode:
                problems.append(f"directory {d}: {name!r} names free inode {child}")
                continue
            names[child] += 1
            if st.S_ISDIR(fs.inode(child).mode):
                subdirs[d] += 1
                if child in reached:
                    problems.append(f"directory {child} has more than one name")
                    continue
                todo.append((child, d))
            reached.add(child)
    owner: dict[int, int] = {}
    for ino in range(1, pool.inodes + 1):
        node = fs.inode(ino)
        if not node.mode:
            continue
        if ino not in reached and not (node.nlink == 0 and fs.opened.get(ino)):
            problems.append(f"inode {ino}: allocated but unreachable (nlink {node.nlink}): leaked")
        elif st.S_ISDIR(node.mode) and ino in reached and node.nlink != 2 + subdirs[ino]:
            problems.append(f"directory {ino}: nlink {node.nlink}, but it has {subdirs[ino]} subdirectories")
        elif not st.S_ISDIR(node.mode) and ino in reached and node.nlink != names[ino]:
            problems.append(f"inode {ino}: nlink {node.nlink}, but {names[ino]} names")
        for b in _blocks(fs, ino):
            if not pool.data_start <= b < pool.blocks:
                problems.append(f"inode {ino}: block {b} is outside the data area")
            elif b in owner:
                problems.append(f"block {b}: mapped by inodes {owner[b]} and {ino}")
            elif not pool.block_used(b):
                problems.append(f"inode {ino}: block {b} is mapped but free")
            owner.setdefault(b, ino)
    leaked = [b for b in range(pool.data_start, pool.blocks) if pool.block_used(b) and b not in owner]
    if leaked:
        problems.append(f"{len(leaked)} block(s) in use but mapped by no inode: leaked (first {leaked[0]})")
    return problems
