"""The error that ended the store's last writer run, kept where a full disk cannot stop it
being written: a file of fixed size in the store directory, reserved when the writer starts
and overwritten in place (no new blocks needed) when a run ends on an error. `writer status`
and /metrics show it; it outlives the process (a daemon that died says why)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pyspark_theflash.store.manifest import WRITER_ERROR_FILE

RECORD_BYTES = 4096


def path(store: str | os.PathLike[str]) -> Path:
    return Path(store) / WRITER_ERROR_FILE


def reserve(store: str | os.PathLike[str]) -> None:
    """Make sure the record's blocks exist (called while the disk still has room)."""
    p = path(store)
    if p.exists() and p.stat().st_size == RECORD_BYTES:
        return
    with open(p, "ab") as f:
        f.truncate(RECORD_BYTES)
        os.posix_fallocate(f.fileno(), 0, RECORD_BYTES)
        os.fsync(f.fileno())


def record(store: str | os.PathLike[str], error: dict[str, Any]) -> None:
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


def read(store: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        text = path(store).read_bytes().strip(b" \0")
    except FileNotFoundError:
        return None
    if not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None  # torn by a crash mid-write: nothing trustworthy to show
    return found if isinstance(found, dict) and "message" in found else None
