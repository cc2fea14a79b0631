"""The file system in a pool, in the style of pmemfile-posix: inodes, directories, symlinks, open files.

Every metadata operation is one transaction of the pool (all or nothing after a crash). A data write stores and
persists its bytes first, then publishes them with the size and mtime in one small transaction (docs/facts.md,
pmemfile 11). An unlinked file that is still open keeps its inode (nlink 0) until its last close; after a crash
the next open of the pool reclaims every such orphan.

Paths given here are inside the pool: `/` is the pool's root, symlinks are followed inside it (an absolute target
from the pool's root). Callers are `Cred`s; permissions are checked as the kernel does (root passes all but
execute checks on files without any x bit).
"""

from __future__ import annotations

import errno as E
import itertools
import os
import stat as st
import struct
import time
from dataclasses import dataclass, field

from vfslab.impl.pmem.pool import BLOCK, INODE_SIZE, Pool

NAME_MAX = 255
PATH_MAX = 4096
MAX_SYMLINKS = 40
DIRECT = 24
PER_INDIRECT = BLOCK // 4
MAX_FILE = (DIRECT + PER_INDIRECT) * BLOCK
#: fallocate's mode bits (linux/falloc.h) that pmemfile does
FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE = 0x01, 0x02
INODE = struct.Struct("<HHIIIQqqq24II")
#: an inode's mode, flags and nlink: what tells an orphan
ORPHAN = struct.Struct("<HHI")
DIRENT = struct.Struct("<IH258s")
PER_BLOCK = BLOCK // DIRENT.size
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def err(code: int, what: str = "") -> OSError:
    return OSError(code, os.strerror(code) + (f": {what}" if what else ""))


@dataclass(frozen=True)
class Cred:
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()


ROOT = Cred()


@dataclass
class Inode:
    mode: int = 0
    flags: int = 0
    nlink: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    atime: int = 0
    mtime: int = 0
    ctime: int = 0
    direct: list[int] = field(default_factory=lambda: [0] * DIRECT)
    indirect: int = 0

    def pack(self) -> bytes:
        return INODE.pack(self.mode, self.flags, self.nlink, self.uid, self.gid, self.size, self.atime,
                          self.mtime, self.ctime, *self.direct, self.indirect)

    @classmethod
    def unpack(cls, raw: bytes) -> Inode:
        f = INODE.unpack_from(raw)
        return cls(*f[:9], list(f[9:9 + DIRECT]), f[9 + DIRECT])


@dataclass(frozen=True)
class Stat:
    st_ino: int
    st_mode: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int
    st_atime_ns: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_blocks: int


@dataclass(eq=False)
class File:
    """An open file of the pool (what a pmemfile file handle is)."""

    ino: int
    flags: int
    offset: int = 0
    path: str = ""

    @property
    def readable(self) -> bool:
        return not self.flags & os.O_PATH and self.flags & os.O_ACCMODE in (os.O_RDONLY, os.O_RDWR)

    @property
    def writable(self) -> bool:
        return not self.flags & os.O_PATH and self.flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)


def _now() -> int:
    return time.time_ns()


class PmemFS:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.opened: dict[int, int] = {}  # ino -> open files
        self._reclaim_orphans()

    @classmethod
    def open(cls, path: str) -> PmemFS:
        return cls(Pool.open(path))

    @classmethod
    def mkfs(cls, path: str, size: int) -> None:
        Pool.format(path, size)
        fs = cls.open(path)
        try:
            with fs.pool.transaction():
                now = _now()
                fs._put(fs.pool.root, Inode(st.S_IFDIR | 0o755, 0, 2, 0, 0, 0, now, now, now))
        finally:
            fs.close()

    def close(self) -> None:
        self.pool.close()

    # ---- inodes --------------------------------------------------------------------------------------

    def _at(self, ino: int) -> int:
        return self.pool.inode_at + (ino - 1) * INODE_SIZE

    def inode(self, ino: int) -> Inode:
        """Inode `ino`; EIO if it is out of range or says what no inode can (a corrupt pool)."""
        if not 1 <= ino <= self.pool.inodes:
            raise err(E.EIO, f"corrupt pool: inode {ino} out of range")
        node = Inode.unpack(self.pool.view[self._at(ino):self._at(ino) + INODE.size])
        used = [b for b in node.direct if b]
        if node.indirect:
            used.append(node.indirect)
        if node.size > MAX_FILE or (used and (max(used) >= self.pool.blocks or min(used) < self.pool.data_start)):
            raise err(E.EIO, f"corrupt pool: inode {ino}")
        return node

    def _put(self, ino: int, node: Inode) -> None:
        self.pool.store(self._at(ino), node.pack())

    def _alloc_inode(self, mode: int, cred: Cred, nlink: int, parent: int) -> int:
        """A new inode in directory `parent`, owned by the caller; in a setgid directory it takes the directory's
        group, and a new directory its setgid bit too (as Linux's inode_init_owner)."""
        gid, pnode = cred.gid, self.inode(parent)
        if pnode.mode & st.S_ISGID:
            gid = pnode.gid
            mode |= st.S_ISGID if st.S_ISDIR(mode) else 0
        for ino in range(1, self.pool.inodes + 1):
            if self.inode(ino).mode == 0:
                now = _now()
                self._put(ino, Inode(mode, 0, nlink, cred.uid, gid, 0, now, now, now))
                return ino
        raise err(E.ENOSPC, "no free inode")

    def _release(self, ino: int) -> None:
        """Free an inode with no name left, unless a file still has it open (then its last close does)."""
        node = self.inode(ino)
        if node.nlink > 0 or self.opened.get(ino):
            return
        self._truncate_blocks(node, 0)
        self._put(ino, Inode())

    def _reclaim_orphans(self) -> None:
        for ino in range(1, self.pool.inodes + 1):
            mode, _, nlink = ORPHAN.unpack_from(self.pool.view, self._at(ino))  # an inode's first fields
            if mode and nlink == 0:
                with self.pool.transaction():
                    self._release(ino)

    # ---- blocks of a file ----------------------------------------------------------------------------

    def _block(self, node: Inode, index: int, alloc: bool) -> int:
        """The pool block holding block `index` of the file (0: a hole), allocating it if `alloc`."""
        if index < DIRECT:
            if not node.direct[index] and alloc:
                node.direct[index] = self.pool.alloc_block()
            return node.direct[index]
        if index - DIRECT >= PER_INDIRECT:
            raise err(E.EFBIG)
        if not node.indirect:
            if not alloc:
                return 0
            node.indirect = self.pool.alloc_block()
        b = struct.unpack_from("<I", self.pool.view, node.indirect * BLOCK + 4 * (index - DIRECT))[0]
        if b and not self.pool.data_start <= b < self.pool.blocks:
            raise err(E.EIO, "corrupt pool: a block pointer out of range")
        if not b and alloc:
            b = self.pool.alloc_block()
            self._set_block(node, index, b)
        return b

    def _set_block(self, node: Inode, index: int, b: int) -> None:
        """Point block `index` of the file at pool block `b` (0: a hole); past DIRECT, its indirect block exists."""
        if index < DIRECT:
            node.direct[index] = b
        else:
            self.pool.store(node.indirect * BLOCK + 4 * (index - DIRECT), struct.pack("<I", b))

    def _truncate_blocks(self, node: Inode, size: int) -> None:
        keep = -(-size // BLOCK)
        for i in range(keep, DIRECT):
            if node.direct[i]:
                self.pool.free_block(node.direct[i])
                node.direct[i] = 0
        if node.indirect:
            for i in range(max(keep - DIRECT, 0), PER_INDIRECT):
                at = node.indirect * BLOCK + 4 * i
                b = struct.unpack_from("<I", self.pool.view, at)[0]
                if b:
                    self.pool.free_block(b)
                    self.pool.store(at, b"\0\0\0\0")
            if keep <= DIRECT:
                self.pool.free_block(node.indirect)
                node.indirect = 0
        if size % BLOCK and keep:  # bytes past the end of the last kept block read as zero if it grows again
            b = self._block(node, keep - 1, alloc=False)
            if b:
                self.pool.store(b * BLOCK + size % BLOCK, bytes(BLOCK - size % BLOCK))
        node.size = size

    def _zero_tail(self, node: Inode, upto: int) -> None:
        """Zero the bytes after the end of file, up to `upto`, in its last block: a write or truncate past the
        end must show zeros there, not what an unpublished write left."""
        if upto > node.size and node.size % BLOCK:
            b = self._block(node, node.size // BLOCK, alloc=False)
            if b:
                end = min(upto, (node.size // BLOCK + 1) * BLOCK)
                self.pool.store(b * BLOCK + node.size % BLOCK, bytes(end - node.size))

    def _read(self, node: Inode, offset: int, length: int) -> bytes:
        end = min(node.size, offset + length)
        out = bytearray()
        while offset < end:
            b = self._block(node, offset // BLOCK, alloc=False)
            n = min(BLOCK - offset % BLOCK, end - offset)
            out += self.pool.view[b * BLOCK + offset % BLOCK:b * BLOCK + offset % BLOCK + n] if b else bytes(n)
            offset += n
        return bytes(out)

    def _write(self, ino: int, offset: int, data: bytes) -> int:
        if offset + len(data) > MAX_FILE:
            raise err(E.EFBIG)
        node = self.inode(ino)
        self._zero_tail(node, offset)
        with self.pool.transaction():  # the blocks it needs, in use before any byte lands in them
            for index in range(offset // BLOCK, -(-(offset + len(data)) // BLOCK)):
                self._block(node, index, alloc=True)
            self._put(ino, node)
        done = 0
        while done < len(data):  # the data, persisted...
            at = offset + done
            n = min(BLOCK - at % BLOCK, len(data) - done)
            b = self._block(node, at // BLOCK, alloc=False)
            self.pool.store(b * BLOCK + at % BLOCK, data[done:done + n])
            done += n
        with self.pool.transaction():  # ...then published
            node.size = max(node.size, offset + len(data))
            node.mtime = node.ctime = _now()
            self._put(ino, node)
        return len(data)

    # ---- directories ---------------------------------------------------------------------------------

    def entries(self, ino: int) -> list[tuple[str, int]]:
        return self._entries(self.inode(ino))

    def _entries(self, node: Inode) -> list[tuple[str, int]]:
        # slot by slot: a block holds PER_BLOCK entries and ends in padding, so the entries are not one run of bytes
        out = []
        for slot in range(node.size // DIRENT.size):
            child, n, name = DIRENT.unpack_from(self.pool.view, self._slot_at(node, slot))
            out.append((name[:n].decode(errors="surrogateescape"), child))
        return out

    def _slot_at(self, node: Inode, slot: int) -> int:
        b = self._block(node, slot // PER_BLOCK, alloc=False)
        return b * BLOCK + (slot % PER_BLOCK) * DIRENT.size

    def _lookup(self, directory: Inode, name: str) -> int:
        for entry, child in self._entries(directory):
            if entry == name:
                return child
        return 0

    def _add_entry(self, dir_ino: int, name: str, child: int) -> None:
        node = self.inode(dir_ino)
        slot = node.size // DIRENT.size
        if slot // PER_BLOCK >= DIRECT + PER_INDIRECT:
            raise err(E.ENOSPC, "directory full")
        self._block(node, slot // PER_BLOCK, alloc=True)
        raw = name.encode(errors="surrogateescape")
        self.pool.store(self._slot_at(node, slot), DIRENT.pack(child, len(raw), raw))
        node.size += DIRENT.size
        node.mtime = node.ctime = _now()
        self._put(dir_ino, node)

    def _remove_entry(self, dir_ino: int, name: str) -> None:
        """Remove `name`: the last entry moves into its slot, so a directory stays dense."""
        node = self.inode(dir_ino)
        slot = [n for n, _ in self._entries(node)].index(name)
        last = node.size // DIRENT.size - 1
        if slot != last:
            at = self._slot_at(node, last)
            self.pool.store(self._slot_at(node, slot), bytes(self.pool.view[at:at + DIRENT.size]))
        if last % PER_BLOCK == 0:  # its block is empty now
            self._truncate_blocks(node, last // PER_BLOCK * BLOCK)
        node.size = last * DIRENT.size
        node.mtime = node.ctime = _now()
        self._put(dir_ino, node)

    def _set_entry(self, dir_ino: int, name: str, child: int) -> None:
        node = self.inode(dir_ino)
        slot = [n for n, _ in self._entries(node)].index(name)
        raw = name.encode(errors="surrogateescape")
        self.pool.store(self._slot_at(node, slot), DIRENT.pack(child, len(raw), raw))
        node.mtime = node.ctime = _now()
        self._put(dir_ino, node)

    # ---- permissions ---------------------------------------------------------------------------------

    def _may(self, node: Inode, want: int, cred: Cred) -> bool:
        """want: a mask of os.R_OK, os.W_OK, os.X_OK."""
        if cred.uid == 0:
            return not want & os.X_OK or st.S_ISDIR(node.mode) or bool(node.mode & 0o111)
        if cred.uid == node.uid:
            bits = node.mode >> 6
        elif node.gid == cred.gid or node.gid in cred.groups:
            bits = node.mode >> 3
        else:
            bits = node.mode
        return bits & want == want

    def _check(self, ino: int, want: int, cred: Cred) -> None:
        if not self._may(self.inode(ino), want, cred):
            raise err(E.EACCES)

    # ---- resolution ----------------------------------------------------------------------------------

    def resolve(self, start: int, path: str, cred: Cred, follow: bool = True, depth: int = 0
                ) -> tuple[int, str, int]:
        """(parent directory, last name, inode or 0 if it does not exist) of `path` from directory `start`.

        The last component is followed if it is a symlink and `follow`; a trailing `/` requires a directory."""
        if path == "":
            raise err(E.ENOENT)
        if len(path.encode(errors="surrogateescape")) >= PATH_MAX:  # PATH_MAX counts the terminating NUL
            raise err(E.ENAMETOOLONG)
        parts = [p for p in path.split("/") if p]
        trailing = path.endswith("/")
        here = self.pool.root if path.startswith("/") else start
        if not parts:
            return here, ".", here
        for i, part in enumerate(parts):
            if len(part.encode(errors="surrogateescape")) > NAME_MAX:
                raise err(E.ENAMETOOLONG)
            node = self.inode(here)
            if not st.S_ISDIR(node.mode):
                raise err(E.ENOTDIR)
            if not self._may(node, os.X_OK, cred):
                raise err(E.EACCES)
            last = i == len(parts) - 1
            child = self._parent(here) if part == ".." else here if part == "." else self._lookup(node, part)
            if not child:
                if last:
                    return here, part, 0
                raise err(E.ENOENT)
            cnode = self.inode(child)
            if st.S_ISLNK(cnode.mode) and (not last or follow or trailing):
                if depth >= MAX_SYMLINKS:
                    raise err(E.ELOOP)
                target = self._read(cnode, 0, cnode.size).decode(errors="surrogateescape")
                rest = "/".join(parts[i + 1:]) + ("/" if trailing else "")
                return self.resolve(here, target + ("/" + rest if rest else ""), cred, follow, depth + 1)
            if last:
                if trailing and not st.S_ISDIR(cnode.mode):
                    raise err(E.ENOTDIR)
                return here, part, child
            here = child
        raise AssertionError("unreachable")

    def _parent(self, ino: int) -> int:
        if ino == self.pool.root:
            return ino
        return self._lookup(self.inode(ino), "..") or self.pool.root

    # ---- the calls -----------------------------------------------------------------------------------

    def stat(self, ino: int) -> Stat:
        n = self.inode(ino)
        return Stat(ino, n.mode, n.nlink, n.uid, n.gid, n.size, n.atime, n.mtime, n.ctime,
                    sum(1 for b in n.direct if b) * (BLOCK // 512))

    def lookup(self, start: int, path: str, cred: Cred = ROOT, follow: bool = True) -> int:
        _, _, ino = self.resolve(start, path, cred, follow)
        if not ino:
            raise err(E.ENOENT)
        return ino

    def fstatat(self, start: int, path: str, cred: Cred = ROOT, follow: bool = True) -> Stat:
        return self.stat(self.lookup(start, path, cred, follow))

    def openat(self, start: int, path: str, flags: int, mode: int = 0o666, cred: Cred = ROOT) -> File:
        creating = bool(flags & os.O_CREAT)
        exclusive = creating and bool(flags & os.O_EXCL)
        parent, name, ino = self.resolve(start, path, cred, follow=not (flags & os.O_NOFOLLOW or exclusive))
        if ino and exclusive:
            raise err(E.EEXIST)
        if not ino:
            if not creating:
                raise err(E.ENOENT)
            if path.endswith("/"):
                raise err(E.EISDIR)
            self._check(parent, os.W_OK | os.X_OK, cred)
            with self.pool.transaction():
                ino = self._alloc_inode(st.S_IFREG | (mode & 0o7777), cred, 1, parent)
                self._add_entry(parent, name, ino)
        else:
            node = self.inode(ino)
            if st.S_ISLNK(node.mode) and flags & os.O_NOFOLLOW and not flags & os.O_PATH:
                raise err(E.ELOOP)
            if flags & os.O_DIRECTORY and not st.S_ISDIR(node.mode):
                raise err(E.ENOTDIR)
            if not flags & os.O_PATH:
                want = {os.O_RDONLY: os.R_OK, os.O_WRONLY: os.W_OK, os.O_RDWR: os.R_OK | os.W_OK}[
                    flags & os.O_ACCMODE]
                if flags & os.O_TRUNC:  # as Linux: O_TRUNC truncates whatever the access mode, and needs write
                    want |= os.W_OK
                if st.S_ISDIR(node.mode) and want & os.W_OK:
                    raise err(E.EISDIR)
                if not self._may(node, want, cred):
                    raise err(E.EACCES)
                if flags & os.O_TRUNC and st.S_ISREG(node.mode) and node.size:
                    with self.pool.transaction():
                        self._truncate_blocks(node, 0)
                        node.mtime = node.ctime = _now()
                        self._put(ino, node)
        self.opened[ino] = self.opened.get(ino, 0) + 1
        return File(ino, flags)

    def close_file(self, f: File) -> None:
        self.opened[f.ino] -= 1
        if not self.opened[f.ino]:
            del self.opened[f.ino]
            if self.inode(f.ino).nlink == 0:
                with self.pool.transaction():
                    self._release(f.ino)

    def pread(self, f: File, length: int, offset: int) -> bytes:
        if not f.readable:
            raise err(E.EBADF)
        node = self.inode(f.ino)
        if st.S_ISDIR(node.mode):
            raise err(E.EISDIR)
        return self._read(node, offset, length)

    def read(self, f: File, length: int) -> bytes:
        data = self.pread(f, length, f.offset)
        f.offset += len(data)
        return data

    def pwrite(self, f: File, data: bytes, offset: int) -> int:
        if not f.writable:
            raise err(E.EBADF)
        return self._write(f.ino, offset, data)

    def write(self, f: File, data: bytes) -> int:
        if f.flags & os.O_APPEND:
            f.offset = self.inode(f.ino).size
        n = self.pwrite(f, data, f.offset)
        f.offset += n
        return n

    def lseek(self, f: File, offset: int, whence: int) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: f.offset, os.SEEK_END: self.inode(f.ino).size}.get(whence)
        if base is None or base + offset < 0:
            raise err(E.EINVAL)
        f.offset = base + offset
        return f.offset

    def _new(self, start: int, path: str, mode: int, cred: Cred) -> tuple[int, str]:
        parent, name, ino = self.resolve(start, path, cred, follow=False)
        if ino:
            raise err(E.EEXIST)
        if name in (".", ".."):
            raise err(E.EEXIST)
        self._check(parent, os.W_OK | os.X_OK, cred)
        return parent, name

    def mkdirat(self, start: int, path: str, mode: int = 0o777, cred: Cred = ROOT) -> None:
        parent, name = self._new(start, path.rstrip("/") or path, mode, cred)
        with self.pool.transaction():
            ino = self._alloc_inode(st.S_IFDIR | (mode & 0o7777), cred, 2, parent)
            self._add_entry(ino, "..", parent)
            self._add_entry(parent, name, ino)
            pnode = self.inode(parent)
            pnode.nlink += 1
            self._put(parent, pnode)

    def symlinkat(self, target: str, start: int, path: str, cred: Cred = ROOT) -> None:
        if not target:
            raise err(E.ENOENT)
        parent, name = self._new(start, path, 0o777, cred)
        raw = target.encode(errors="surrogateescape")
        if len(raw) >= PATH_MAX:
            raise err(E.ENAMETOOLONG)
        with self.pool.transaction():  # the link and its target in one: never an empty symlink after a crash
            ino = self._alloc_inode(st.S_IFLNK | 0o777, cred, 1, parent)
            node = self.inode(ino)
            b = self._block(node, 0, alloc=True)
            self.pool.store(b * BLOCK, raw)
            node.size = len(raw)
            self._put(ino, node)
            self._add_entry(parent, name, ino)

    def readlinkat(self, start: int, path: str, cred: Cred = ROOT) -> str:
        node = self.inode(self.lookup(start, path, cred, follow=False))
        if not st.S_ISLNK(node.mode):
            raise err(E.EINVAL)
        return self._read(node, 0, node.size).decode(errors="surrogateescape")

    def _sticky_ok(self, parent: int, child: int, cred: Cred) -> None:
        p = self.inode(parent)
        if p.mode & st.S_ISVTX and cred.uid not in (0, p.uid, self.inode(child).uid):
            raise err(E.EPERM)

    def unlinkat(self, start: int, path: str, rmdir: bool = False, cred: Cred = ROOT) -> None:
        parent, name, ino = self.resolve(start, path, cred, follow=False)
        if not ino:
            raise err(E.ENOENT)
        node = self.inode(ino)
        if not rmdir:
            if st.S_ISDIR(node.mode):
                raise err(E.EISDIR)
        elif ino == self.pool.root and name != "..":
            raise err(E.EBUSY)
        elif name in (".", ".."):  # as Linux: `x/.` is EINVAL, `x/..` is ENOTEMPTY
            raise err(E.EINVAL if name == "." else E.ENOTEMPTY)
        elif not st.S_ISDIR(node.mode):
            raise err(E.ENOTDIR)
        elif len(self.entries(ino)) > 1:
            raise err(E.ENOTEMPTY)
        self._check(parent, os.W_OK | os.X_OK, cred)
        self._sticky_ok(parent, ino, cred)
        with self.pool.transaction():
            self._remove_entry(parent, name)
            node = self.inode(ino)
            node.nlink = 0 if rmdir else node.nlink - 1
            node.ctime = _now()
            self._put(ino, node)
            if rmdir:
                pnode = self.inode(parent)
                pnode.nlink -= 1
                self._put(parent, pnode)
            self._release(ino)

    def linkat(self, start: int, old: str, start2: int, new: str, cred: Cred = ROOT, follow: bool = False) -> None:
        ino = self.lookup(start, old, cred, follow)
        parent, name = self._new(start2, new, 0, cred)  # as Linux: EEXIST before EPERM
        if st.S_ISDIR(self.inode(ino).mode):
            raise err(E.EPERM)
        with self.pool.transaction():
            self._add_entry(parent, name, ino)
            node = self.inode(ino)
            node.nlink += 1
            node.ctime = _now()
            self._put(ino, node)

    def _ancestors(self, ino: int) -> list[int]:
        """`ino`, its parent, ..., the root (EIO if `..` entries go round in a circle: a corrupt pool)."""
        chain = [ino]
        while ino != self.pool.root:
            ino = self._parent(ino)
            if ino in chain or len(chain) > self.pool.inodes:
                raise err(E.EIO, "corrupt pool: a directory is its own ancestor")
            chain.append(ino)
        return chain

    def renameat2(self, start: int, old: str, start2: int, new: str, flags: int = 0, cred: Cred = ROOT,
                  must_be_dir: bool = False) -> None:
        """`must_be_dir`: a path had a trailing `/` (checked as Linux does, after the names and before the rest)."""
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
            raise err(E.EINVAL)
        op, oname, src = self.resolve(start, old, cred, follow=False)
        np, nname, dst = self.resolve(start2, new, cred, follow=False)
        if oname in (".", "..") or nname in (".", "..") or self.pool.root in (src, dst):
            raise err(E.EBUSY)  # as Linux: a last component that is not a name, or the root
        if not src:
            raise err(E.ENOENT)
        snode = self.inode(src)
        sdir = st.S_ISDIR(snode.mode)
        if must_be_dir and not sdir:
            raise err(E.ENOTDIR)
        if flags & RENAME_EXCHANGE and not dst:
            raise err(E.ENOENT)
        if dst and flags & RENAME_NOREPLACE:
            raise err(E.EEXIST)
        for p in {op, np}:
            self._check(p, os.W_OK | os.X_OK, cred)
        self._sticky_ok(op, src, cred)
        if src == dst:
            return
        if sdir and src in self._ancestors(np):  # into its own subtree
            raise err(E.EINVAL)
        with self.pool.transaction():
            if flags & RENAME_EXCHANGE:
                dnode = self.inode(dst)
                if st.S_ISDIR(dnode.mode) and dst in self._ancestors(op):
                    raise err(E.EINVAL)
                self._set_entry(op, oname, dst)
                self._set_entry(np, nname, src)
                for child, was, now_in in ((src, op, np), (dst, np, op)):
                    if st.S_ISDIR(self.inode(child).mode) and was != now_in:
                        self._set_entry(child, "..", now_in)
                        self._adjust(was, -1)
                        self._adjust(now_in, +1)
                return
            if dst:
                dnode = self.inode(dst)
                if sdir and not st.S_ISDIR(dnode.mode):
                    raise err(E.ENOTDIR)
                if not sdir and st.S_ISDIR(dnode.mode):
                    raise err(E.EISDIR)
                if st.S_ISDIR(dnode.mode) and len(self.entries(dst)) > 1:
                    raise err(E.ENOTEMPTY)
                self._sticky_ok(np, dst, cred)
                self._set_entry(np, nname, src)
                dnode.nlink = 0 if st.S_ISDIR(dnode.mode) else dnode.nlink - 1
                self._put(dst, dnode)
                if st.S_ISDIR(dnode.mode):
                    self._adjust(np, -1)
                self._release(dst)
            else:
                self._add_entry(np, nname, src)
            self._remove_entry(op, oname)
            if sdir and op != np:
                self._set_entry(src, "..", np)
                self._adjust(op, -1)
                self._adjust(np, +1)
            snode = self.inode(src)
            snode.ctime = _now()
            self._put(src, snode)

    def _adjust(self, ino: int, delta: int) -> None:
        node = self.inode(ino)
        node.nlink += delta
        self._put(ino, node)

    def fallocate(self, f: File, mode: int, offset: int, length: int) -> None:
        """pmemfile_fallocate: allocate the blocks of a range (mode 0 also makes the file at least offset+length
        long; KEEP_SIZE leaves its size), or punch a hole (PUNCH_HOLE|KEEP_SIZE: the range's whole blocks are freed,
        its partial ones zeroed); any other mode is EOPNOTSUPP."""
        if offset < 0 or length <= 0:
            raise err(E.EINVAL)
        if mode & ~(FALLOC_KEEP_SIZE | FALLOC_PUNCH_HOLE) or mode == FALLOC_PUNCH_HOLE:
            raise err(E.EOPNOTSUPP)
        if not f.writable:
            raise err(E.EBADF)
        end = offset + length
        if end > MAX_FILE:
            raise err(E.EFBIG)
        node = self.inode(f.ino)
        with self.pool.transaction():
            if mode & FALLOC_PUNCH_HOLE:
                self._punch(node, offset, min(end, node.size))
            else:
                if not mode & FALLOC_KEEP_SIZE:
                    self._zero_tail(node, end)
                for index in range(offset // BLOCK, -(-end // BLOCK)):
                    self._block(node, index, alloc=True)
                if not mode & FALLOC_KEEP_SIZE:
                    node.size = max(node.size, end)
            node.mtime = node.ctime = _now()
            self._put(f.ino, node)

    def _punch(self, node: Inode, start: int, end: int) -> None:
        """Free the whole blocks of [start, end) and zero the rest of it (in a transaction)."""
        while start < end:
            index, at = divmod(start, BLOCK)
            n = min(BLOCK - at, end - start)
            b = self._block(node, index, alloc=False)
            if b and n == BLOCK:
                self.pool.free_block(b)
                self._set_block(node, index, 0)
            elif b:
                self.pool.store(b * BLOCK + at, bytes(n))
            start += n

    def truncate(self, ino: int, size: int) -> None:
        if size < 0:
            raise err(E.EINVAL)
        if size > MAX_FILE:
            raise err(E.EFBIG)
        node = self.inode(ino)
        if st.S_ISDIR(node.mode):
            raise err(E.EISDIR)
        with self.pool.transaction():
            if size < node.size:
                self._truncate_blocks(node, size)
            else:
                self._zero_tail(node, size)
            node.size = size
            node.mtime = node.ctime = _now()
            self._put(ino, node)

    def chmod(self, ino: int, mode: int, cred: Cred = ROOT) -> None:
        node = self.inode(ino)
        if cred.uid not in (0, node.uid):
            raise err(E.EPERM)
        with self.pool.transaction():
            node.mode = st.S_IFMT(node.mode) | (mode & 0o7777)
            node.ctime = _now()
            self._put(ino, node)

    def chown(self, ino: int, uid: int, gid: int, cred: Cred = ROOT) -> None:
        node = self.inode(ino)
        if cred.uid != 0 and (uid not in (-1, node.uid) or cred.uid != node.uid
                              or gid not in (-1, node.gid, cred.gid, *cred.groups)):
            raise err(E.EPERM)
        with self.pool.transaction():
            node.uid = node.uid if uid == -1 else uid
            node.gid = node.gid if gid == -1 else gid
            node.ctime = _now()
            self._put(ino, node)

    def utimens(self, ino: int, atime_ns: int, mtime_ns: int, cred: Cred = ROOT) -> None:
        node = self.inode(ino)
        if cred.uid not in (0, node.uid):
            raise err(E.EPERM)
        with self.pool.transaction():
            node.atime, node.mtime, node.ctime = atime_ns, mtime_ns, _now()
            self._put(ino, node)

    def access(self, start: int, path: str, mode: int, cred: Cred = ROOT) -> None:
        ino = self.lookup(start, path, cred)
        if mode and not self._may(self.inode(ino), mode, cred):
            raise err(E.EACCES)

    def getdents(self, ino: int) -> list[tuple[str, int, int]]:
        """(name, ino, type bits) of every entry, `.` and `..` first."""
        node = self.inode(ino)
        if not st.S_ISDIR(node.mode):
            raise err(E.ENOTDIR)
        out = [(".", ino, st.S_IFDIR), ("..", self._parent(ino), st.S_IFDIR)]
        return out + [(n, c, st.S_IFMT(self.inode(c).mode)) for n, c in self.entries(ino) if n != ".."]

    def path_of(self, ino: int) -> str:
        """A directory's path in the pool (what getcwd gives inside it)."""
        chain = self._ancestors(ino)
        parts = [next((n for n, c in self.entries(parent) if c == child and n != ".."), "?")
                 for child, parent in itertools.pairwise(chain)]
        return "/" + "/".join(reversed(parts))
