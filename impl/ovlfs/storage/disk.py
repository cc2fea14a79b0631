"""On a host file system, for `dir:` and `file:`: a storage image (format header, tables, contents), replacing a
file atomically, and opening only what is what it should be.

An image is a 32-byte header, then the tables as JSON (UTF-8), then the contents' bytes (file: only):

    magic (8 bytes: which method's)  version u32  crc32 u32 (of all that follows the header)
    JSON length u64  data length u64                                            (little-endian)

Everything is opened relative to a directory fd with O_NOFOLLOW: the daemons run as root over other people's
directories, and a symlink planted in the storage must not send a write elsewhere.
"""

from __future__ import annotations

import contextlib
import errno as E
import json
import os
import stat as st
import struct
import zlib
from collections.abc import Callable
from typing import Any

from vfslab.impl.ovlfs.storage.method import storage_error
from vfslab.impl.pmem.pool import Crash

VERSION = 1
HEADER = struct.Struct("<8sIIQQ")
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
#: how much of the temp file one write (one persist point) takes
CHUNK = 1 << 20


def pack(magic: bytes, tables: dict[str, Any], data: bytes = b"") -> bytes:
    body = json.dumps(tables, separators=(",", ":")).encode() + data
    return HEADER.pack(magic, VERSION, zlib.crc32(body), len(body) - len(data), len(data)) + body


def unpack(magic: bytes, raw: bytes, what: str) -> tuple[Any, bytes]:
    """(tables as JSON, contents) of an image; a one-line OSError naming `what` if it is none, or corrupt:
    EINVAL for what is not (this method's) storage at all, EUCLEAN for storage of ours that is damaged."""
    if not raw:
        raise storage_error(E.EINVAL, f"{what}: empty: not formatted (run mkfs)")
    if raw[:len(magic)] != magic[:len(raw)]:
        raise storage_error(E.EINVAL, f"{what}: not {magic.decode()} storage (no format header)")
    if len(raw) < HEADER.size:
        raise storage_error(E.EUCLEAN, f"{what}: corrupt storage (truncated header)")
    _, version, crc, meta_len, data_len = HEADER.unpack_from(raw)
    if version != VERSION:
        raise storage_error(E.EINVAL, f"{what}: format version {version}; this vfslab reads version {VERSION}")
    body = raw[HEADER.size:]
    if len(body) != meta_len + data_len:
        raise storage_error(E.EUCLEAN, f"{what}: corrupt storage ({len(body)} bytes after the header, "
                                       f"{meta_len + data_len} written)")
    if zlib.crc32(body) != crc:
        raise storage_error(E.EUCLEAN, f"{what}: corrupt storage (checksum mismatch)")
    try:
        return json.loads(body[:meta_len]), body[meta_len:]
    except ValueError:
        raise storage_error(E.EUCLEAN, f"{what}: corrupt storage (its tables are no JSON)") from None


def open_regular(dir_fd: int, name: str, flags: int, what: str, mode: int = 0o600) -> int:
    """An fd of the regular file `name` in `dir_fd`, never through a symlink (ELOOP), never a device or FIFO (and
    without blocking on one), never a file with another name somewhere else (a hard link planted here)."""
    try:
        fd = os.open(name, flags | NOFOLLOW | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno != E.ELOOP:
            raise
        raise storage_error(E.ELOOP, f"{what}: a symlink (not followed)") from None
    s = os.fstat(fd)
    if not st.S_ISREG(s.st_mode) or s.st_nlink > 1:
        os.close(fd)
        raise storage_error(E.EISDIR if st.S_ISDIR(s.st_mode) else E.EINVAL,
                            f"{what}: not a regular file of its own")
    return fd


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)


def read_regular(dir_fd: int, name: str, what: str) -> bytes:
    fd = open_regular(dir_fd, name, os.O_RDONLY, what)
    try:
        return read_all(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def temp_name(name: str) -> str:
    return name + ".tmp"


def remove(dir_fd: int, name: str) -> None:
    """Unlink `name` if it is there (a symlink is removed, not followed)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def replace_atomically(dir_fd: int, name: str, data: bytes, point: Callable[[str], None],
                       chunk: int = CHUNK) -> None:
    """`name` in `dir_fd` becomes `data`, old or new after a crash, never a mix: a temp file beside it written
    and fsynced, renamed over it, the directory fsynced. Each chunk written, the fsync, the rename and the
    directory's fsync is a persist point (`point`, which may raise `Crash` before its step)."""
    tmp = temp_name(name)
    remove(dir_fd, tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        for at in range(0, len(data), chunk):
            point("write")
            write_all(fd, data[at:at + chunk], at)
        point("fsync")
        os.fsync(fd)
    except Crash:
        raise  # the temp file stays as it is, as after a real crash
    except BaseException:
        remove(dir_fd, tmp)
        raise
    finally:
        os.close(fd)
    point("rename")
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    point("fsync directory")
    os.fsync(dir_fd)
