"""The latch service: read leases, the single-writer latch, flush requests and runtime
settings of one store, in-process (SQLite in the store directory) or over gRPC.

    latch = connect("/data/flash")                          # in-process
    latch = connect("/data/flash", "grpc://127.0.0.1:7070")  # theflash latch serve --store /data/flash
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pyspark_theflash.latch.errors import (
    FlushRequestNotFoundError,
    FlushTimeoutError,
    LatchError,
    LeaseNotFoundError,
    LeaseRefusedError,
    WriteLatchHeldError,
    WriteLatchLostError,
)
from pyspark_theflash.latch.local import LocalLatch
from pyspark_theflash.latch.protocol import Latch
from pyspark_theflash.latch.types import FlushRequest, Lease, WriterHolder

if TYPE_CHECKING:
    from pyspark_theflash.store import Store

__all__ = [
    "connect",
    "Latch",
    "LocalLatch",
    "Lease",
    "WriterHolder",
    "FlushRequest",
    "LatchError",
    "LeaseRefusedError",
    "LeaseNotFoundError",
    "WriteLatchHeldError",
    "WriteLatchLostError",
    "FlushRequestNotFoundError",
    "FlushTimeoutError",
]


def connect(store_path: str | os.PathLike[str] | None, address: str | None = None, *, store: Store | None = None) -> Latch:
    """The latch of a store: over gRPC when ``address`` is ``grpc://host:port``, else in-process
    on the store directory (``store`` = an already open Store to take leases through)."""
    if address:
        if not address.startswith("grpc://"):
            raise ValueError(f"latch address must look like grpc://host:port, got {address!r}")
        from pyspark_theflash.latch.remote import RemoteLatch

        return RemoteLatch(address)
    if store_path is None:
        raise ValueError("latch.connect needs a store path when no grpc:// address is given")
    return LocalLatch(store_path, store=store)
