"""The change log ("binlog"): region events after TiKV's CDC feed, in two forms that deliver
the same events at the same positions.

* File form: numbered segment files of length- and CRC-framed ``binlog_pb2.Event`` records
  (:mod:`.segment`). :class:`SegmentWriter` appends (thread-safe, rotates by size, fsyncs on
  rotate/``sync()``); :class:`SegmentReader` reads from any :class:`Position`.
* Service form: ``BinlogService`` over gRPC (:mod:`.service`): :func:`serve_binlog` serves a
  directory; ``Pull`` streams from a position and follows the tail.
* :func:`open_source` opens either (``file:///dir``, a bare path, ``grpc://host:port``) as an
  :class:`EventSource` whose ``read(max_events, timeout_s)`` returns
  :class:`PositionedEvent` (``.event``, ``.position``, ``.next``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pyspark_theflash.lazy_exports import lazy_getattr
from pyspark_theflash.binlog.errors import (
    BinlogCorruptError,
    BinlogError,
    BinlogFormatError,
    BinlogLockedError,
    BinlogPositionError,
    BinlogPositionGoneError,
    BinlogSourceError,
    BinlogTruncatedError,
    BinlogVersionError,
)
from pyspark_theflash.binlog.open import open_source
from pyspark_theflash.binlog.position import Position, PositionedEvent
from pyspark_theflash.binlog.segment import SegmentReader, SegmentWriter, prune
from pyspark_theflash.binlog.source import EventSource, FileEventSource

if TYPE_CHECKING:
    from pyspark_theflash.binlog.service import BinlogServer, GrpcEventSource


def serve_binlog(directory: str | Path, host: str = "127.0.0.1", port: int = 0, max_workers: int = 32) -> "BinlogServer":
    """Serve a segment directory as ``BinlogService`` (see :func:`.service.serve_binlog`)."""
    from pyspark_theflash.binlog.service import serve_binlog as serve  # grpc only when serving

    return serve(directory, host, port, max_workers)


# Imported when first named (pyspark_theflash/lazy_exports.py): gRPC only for a served binlog.
if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(__name__, {"pyspark_theflash.binlog.service": ("BinlogServer", "GrpcEventSource")})


__all__ = [
    "BinlogCorruptError",
    "BinlogError",
    "BinlogFormatError",
    "BinlogServer",
    "BinlogLockedError",
    "BinlogPositionError",
    "BinlogPositionGoneError",
    "BinlogSourceError",
    "BinlogTruncatedError",
    "BinlogVersionError",
    "EventSource",
    "FileEventSource",
    "GrpcEventSource",
    "Position",
    "PositionedEvent",
    "SegmentReader",
    "SegmentWriter",
    "open_source",
    "prune",
    "serve_binlog",
]
