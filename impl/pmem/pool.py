"""A persistent-memory pool emulated on a file: a volatile view, explicit persist points, undo-log transactions.

Stores go to `view` (a bytearray: the CPU's caches); only `persist(offset, length)` copies a range to the file
(the persistent medium), and an aligned 8-byte persist is atomic. So a crash (`Crash`, raised at persist point
`crash_at`) loses exactly what a real one would: every store not yet persisted.

Layout, in blocks of 4 KiB:

    0            superblock: magic, version, geometry, crc32
    1 .. L       undo log: u64 bytes used (0: no transaction open), then records (u64 offset, u32 length,
                 u32 pad, the old bytes padded to 8)
    inode table  256-byte inodes (mode 0: free)
    bitmap       one bit per block (set: in use)
    data         file, directory and symlink blocks

A transaction logs the old bytes of every range before it first changes it (the record persisted before the
log's length, the length before the change), persists the changed ranges at commit, then sets the log's length
to 0: the commit point. Opening a pool with a non-empty log rolls the logged ranges back.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

MAGIC = b"VFSLABPM"
VERSION = 1
BLOCK = 4096
INODE_SIZE = 256
# magic, version, block size, blocks, inodes, log blocks, inode blocks, bitmap blocks, first data block, root inode
SUPER = struct.Struct("<8sIIQIIIIQI")
LOG_RECORD = struct.Struct("<QII")
MIN_SIZE = 64 * BLOCK


class PoolError(Exception):
    """A file that is not a pool, or a corrupt one: the message is one line a user can act on."""


class Crash(Exception):
    """Raised at the persist point a test chose: the process "dies" there, with what it had persisted."""


class Pool:
    def __init__(self, path: str, fd: int, mm: mmap.mmap) -> None:
        self.path = path
        self._fd = fd
        self._mm = mm
        self.view = bytearray(mm)
        self.persists = 0
        self.crash_at: int | None = None
        self._dirty: list[tuple[int, int]] | None = None  # ranges changed in the open transaction
        self._logged: set[tuple[int, int]] = set()
        self._freed: set[int] = set()
        self._load_geometry()

    # ---- opening and formatting ----------------------------------------------------------------------

    @classmethod
    def open(cls, path: str) -> Pool:
        """Open a pool (rolling back an interrupted transaction); PoolError if it is none, or corrupt."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            raise PoolError(f"{path}: {e.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if size < MIN_SIZE:
                raise PoolError(f"{path}: not a pmem pool (too small: {size} bytes)")
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        try:
            pool = cls(path, fd, mm)
            pool._recover()
            return pool
        except BaseException:
            mm.close()
            os.close(fd)
            raise

    @staticmethod
    def is_pool(path: str) -> bool:
        try:
            with open(path, "rb") as f:
                return f.read(len(MAGIC)) == MAGIC
        except OSError:
            return False

    @classmethod
    def format(cls, path: str, size: int, inodes: int | None = None) -> None:
        """Write an empty pool of `size` bytes (a whole number of blocks) with a root directory."""
        blocks = size // BLOCK
        if blocks * BLOCK < MIN_SIZE:
            raise PoolError(f"a pool needs at least {MIN_SIZE} bytes")
        inodes = inodes or max(64, blocks // 8)
        log_blocks = max(4, blocks // 64)
        inode_blocks = -(-inodes * INODE_SIZE // BLOCK)
        bitmap_blocks = -(-blocks // (8 * BLOCK))
        data_start = 1 + log_blocks + inode_blocks + bitmap_blocks
        if data_start + 8 > blocks:
            raise PoolError(f"a pool of {size} bytes is too small for its own tables")
        head = SUPER.pack(MAGIC, VERSION, BLOCK, blocks, inodes, log_blocks, inode_blocks, bitmap_blocks,
                          data_start, 1)
        # the tables, written; the data blocks, zero, a hole (a pool's file is as sparse as it is empty)
        image = bytearray(data_start * BLOCK)
        image[: len(head) + 4] = head + struct.pack("<I", zlib.crc32(head))
        bitmap = (1 + log_blocks + inode_blocks) * BLOCK
        for b in range(data_start):  # the tables' own blocks are in use
            image[bitmap + b // 8] |= 1 << (b % 8)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, blocks * BLOCK)
            os.write(fd, image)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _load_geometry(self) -> None:
        head = bytes(self.view[: SUPER.size])
        magic, version, block, blocks, inodes, log_blocks, inode_blocks, bitmap_blocks, data_start, root = \
            SUPER.unpack(head)
        if magic != MAGIC:
            raise PoolError(f"{self.path}: not a pmem pool (no pool header)")
        if struct.unpack_from("<I", self.view, SUPER.size)[0] != zlib.crc32(head):
            raise PoolError(f"{self.path}: corrupt pool (header checksum mismatch)")
        if version != VERSION or block != BLOCK:
            raise PoolError(f"{self.path}: pool version {version} (block {block}); this vfslab reads version "
                            f"{VERSION}")
        if blocks * BLOCK != len(self.view) or data_start != 1 + log_blocks + inode_blocks + bitmap_blocks \
                or inodes > inode_blocks * BLOCK // INODE_SIZE or data_start >= blocks or root != 1:
            raise PoolError(f"{self.path}: corrupt pool (its geometry does not match its size)")
        self.blocks, self.inodes, self.root = blocks, inodes, root
        self.log_at, self.log_end = BLOCK, (1 + log_blocks) * BLOCK
        self.inode_at = self.log_end
        self.bitmap_at = (1 + log_blocks + inode_blocks) * BLOCK
        self.data_start = data_start

    def close(self) -> None:
        self._mm.close()
        os.close(self._fd)

    # ---- persistence ---------------------------------------------------------------------------------

    def persist(self, offset: int, length: int) -> None:
        """Make `length` bytes at `offset` durable (a persist point; `crash_at` stops the process before it)."""
        self.persists += 1
        if self.persists == self.crash_at:
            raise Crash(f"crash at persist point {self.persists}")
        self._mm[offset:offset + length] = self.view[offset:offset + length]

    def store(self, offset: int, data: bytes) -> None:
        """Change bytes: inside a transaction, undo-logged first; outside one, a data store persisted at once."""
        if self._dirty is None:
            self.view[offset:offset + len(data)] = data
            self.persist(offset, len(data))
            return
        if (offset, len(data)) not in self._logged:
            self._log(offset, bytes(self.view[offset:offset + len(data)]))
        self.view[offset:offset + len(data)] = data
        self._dirty.append((offset, len(data)))

    def _log(self, offset: int, old: bytes) -> None:
        used = struct.unpack_from("<Q", self.view, self.log_at)[0]
        at = self.log_at + 8 + used
        record = LOG_RECORD.pack(offset, len(old), 0) + old + b"\0" * (-len(old) % 8)
        if at + len(record) > self.log_end:
            raise OSError(28, "transaction too large for the pool's log")  # ENOSPC
        self.view[at:at + len(record)] = record
        self.persist(at, len(record))
        struct.pack_into("<Q", self.view, self.log_at, used + len(record))
        self.persist(self.log_at, 8)
        self._logged.add((offset, len(old)))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: an exception (other than a Crash, which stops everything) rolls the changes back."""
        if self._dirty is not None:  # nested: part of the open one
            yield
            return
        self._dirty, self._logged, self._freed = [], set(), set()
        try:
            yield
        except Crash:
            raise
        except BaseException:
            # nothing it changed was persisted, so undoing it in the view is enough; the log's length must
            # go to 0 durably, or a later recovery would replay these records over newer data
            self._rollback(persist=False)
            self.persist(self.log_at, 8)
            self._dirty = None
            raise
        for offset, length in self._dirty:
            self.persist(offset, length)
        struct.pack_into("<Q", self.view, self.log_at, 0)
        self.persist(self.log_at, 8)  # the commit point
        self._dirty = None

    def _rollback(self, persist: bool) -> None:
        used = struct.unpack_from("<Q", self.view, self.log_at)[0]
        if used > self.log_end - self.log_at - 8:
            raise PoolError(f"{self.path}: corrupt pool (undo log length {used})")
        records, at = [], self.log_at + 8
        while at < self.log_at + 8 + used:
            offset, length, _ = LOG_RECORD.unpack_from(self.view, at)
            if offset + length > len(self.view) or at + LOG_RECORD.size + length > self.log_end:
                raise PoolError(f"{self.path}: corrupt pool (undo log record out of bounds)")
            records.append((offset, bytes(self.view[at + LOG_RECORD.size:at + LOG_RECORD.size + length])))
            at += LOG_RECORD.size + length + (-length % 8)
        for offset, old in reversed(records):
            self.view[offset:offset + len(old)] = old
            if persist:
                self.persist(offset, len(old))
        struct.pack_into("<Q", self.view, self.log_at, 0)
        if persist:
            self.persist(self.log_at, 8)

    def _recover(self) -> None:
        if struct.unpack_from("<Q", self.view, self.log_at)[0]:
            self._rollback(persist=True)

    # ---- blocks --------------------------------------------------------------------------------------

    def block_used(self, b: int) -> bool:
        return bool(self.view[self.bitmap_at + b // 8] >> (b % 8) & 1)

    def _mark(self, b: int, used: bool) -> None:
        at = self.bitmap_at + b // 8
        byte = self.view[at] | (1 << (b % 8)) if used else self.view[at] & ~(1 << (b % 8))
        self.store(at, bytes([byte]))

    def alloc_block(self) -> int:
        """A free data block, zeroed, marked in use (in the open transaction); ENOSPC when there is none."""
        assert self._dirty is not None, "blocks are allocated in a transaction"
        for b in range(self.data_start, self.blocks):
            # a block freed in this transaction keeps its bytes until the commit: a rollback needs them
            if not self.block_used(b) and b not in self._freed:
                self._mark(b, True)
                # no undo record: if the transaction rolls back, the block is free and its bytes mean nothing
                self.view[b * BLOCK:(b + 1) * BLOCK] = bytes(BLOCK)
                self._dirty.append((b * BLOCK, BLOCK))
                return b
        raise OSError(28, "pool full")

    def free_block(self, b: int) -> None:
        self._mark(b, False)
        self._freed.add(b)
