"""The error that ended the store's last writer run, kept where a full disk cannot stop it
being written: a file of fixed size in the store directory, reserved when the writer starts
and overwritten in place (no new blocks needed) when a run ends on an error. `writer status`
and /metrics show it; it outlives the process (a daemon that died says why)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark_theflash.store.manifest import WRITER_ERROR_FILE

if TYPE_CHECKING:
    from pyspark_theflash.writer.progress import LastError

RECORD_BYTES = 4096
# What the reserved record says until a run ends on an error (padded with spaces to its size):
# a reader of the file sees text, not 4,096 NUL bytes.
NO_ERROR = (b"no error: no writer run of this store has ended on an error. This file keeps its 4096 bytes "
            b"reserved so that a run ending on a full disk can still record why, here, as JSON.\n")


def path(store: str | os.PathLike[str]) -> Path:
    return Path(store) / WRITER_ERROR_FILE


def reserve(store: str | os.PathLike[str]) -> None:
    """Make sure the record's blocks exist (called while the disk still has room); a new record
    (or one reserved as NUL bytes by an older writer) says there is no error."""
    p = path(store)
    if p.exists() and p.stat().st_size == RECORD_BYTES and p.read_bytes().strip(b"\0"):
        return  # reserved, and holding the last run's error or the no-error text
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)  # not O_APPEND: Linux's pwrite would append
    try:
        os.ftruncate(fd, RECORD_BYTES)
        os.posix_fallocate(fd, 0, RECORD_BYTES)
        if not os.pread(fd, RECORD_BYTES, 0).strip(b"\0 "):
            os.pwrite(fd, NO_ERROR.ljust(RECORD_BYTES, b" "), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def record(store: str | os.PathLike[str], error: LastError) -> None:
    """Overwrite the reserved record with ``error`` ({"message", "kind", "at"})."""
    data = json.dumps(error).encode()
    if len(data) > RECORD_BYTES:
        error = {**error, "message": error["message"][: RECORD_BYTES // 2] + "…"}
        data = json.dumps(error).encode()[:RECORD_BYTES]
    fd = os.open(path(store), os.O_WRONLY)
    try:
        os.pwrite(fd, data.ljust(RECORD_BYTES, b" "), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(store: str | os.PathLike[str]) -> LastError | None:
    try:
        text = path(store).read_bytes().strip(b" \0")
    except FileNotFoundError:
        return None
    if not text.startswith(b"{"):  # NO_ERROR, or an older writer's NUL bytes
        return None
    try:
        found: LastError | None = json.loads(text)  # checked below: an object with a message
    except ValueError:
        return None  # torn by a crash mid-write: nothing trustworthy to show
    return found if isinstance(found, dict) and "message" in found else None
