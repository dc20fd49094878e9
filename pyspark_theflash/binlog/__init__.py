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

from pyspark_theflash.binlog.errors import (
    BinlogCorruptError,
    BinlogError,
    BinlogFormatError,
    BinlogLockedError,
    BinlogPositionError,
    BinlogPositionGoneError,
    BinlogSourceError,
    BinlogTruncatedError,
)
from pyspark_theflash.binlog.position import Position, PositionedEvent
from pyspark_theflash.binlog.segment import SegmentReader, SegmentWriter, prune

__all__ = [
    "BinlogCorruptError",
    "BinlogError",
    "BinlogFormatError",
    "BinlogLockedError",
    "BinlogPositionError",
    "BinlogPositionGoneError",
    "BinlogSourceError",
    "BinlogTruncatedError",
    "Position",
    "PositionedEvent",
    "SegmentReader",
    "SegmentWriter",
    "prune",
]
