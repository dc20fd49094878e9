"""A source that reads its next batch while the consumer applies the last one.

A writer behind the log spends about a third of its time reading and decoding the binlog
(segment reads, ``event_batch.decode_events``) and the rest applying; both are mostly NumPy,
Arrow and file I/O that release the GIL, so on two cores the read of batch n+1 overlaps the
apply of batch n. Reading ahead starts only while the consumer is behind (the last batch was
full, or its source has more ready): an idle consumer polls as before, and nothing it reads
is older than its poll.

The wrapper keeps the consumer's view exact: ``position`` is just after the last batch handed
out (never the read-ahead's), ``buffered()`` is true while a read ahead is pending or holds
events, and an error of a read ahead is raised by the ``read_events`` that would have read it.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, NamedTuple, TypeVar

from pyspark_theflash.binlog.position import Position, PositionedEvent
from pyspark_theflash.binlog.source import EventSource, ReadBatch


T = TypeVar("T")


class _Read(NamedTuple, Generic[T]):
    batch: ReadBatch | None
    prepared: T | None
    position: Position | None  # the source's, just after the batch
    more: bool  # the source had more ready


class ReadAhead(EventSource, Generic[T]):
    """``source`` read one batch ahead of a consumer of ``read_events`` (with the limits of the
    read before it: a consumer reads with the same ones each time). ``prepare`` runs on each
    batch on the reading thread too (work that needs only the batch's events), and
    ``read_prepared`` hands its result out with the batch."""

    def __init__(self, source: EventSource, prepare: Callable[[ReadBatch], T] | None = None) -> None:
        self.source = source
        self.url = source.url
        self._prepare = prepare
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="binlog-read-ahead")
        self._ahead: Future[_Read[T]] | None = None
        self._position = source.position
        self._buffered = False

    def _read(self, max_events: int, timeout_s: float) -> _Read[T]:
        batch = self.source.read_events(max_events, timeout_s)
        prepared = None if batch is None or self._prepare is None else self._prepare(batch)
        return _Read(batch, prepared, self.source.position, self.source.buffered())

    def read_prepared(self, max_events: int, timeout_s: float) -> tuple[ReadBatch, T | None] | None:
        """``read_events`` with what ``prepare`` made of the batch (None without ``prepare``)."""
        ahead, self._ahead = self._ahead, None
        read = None if ahead is None else ahead.result()
        if read is None or read.batch is None:  # nothing was read ahead: the log may have grown since
            read = self._read(max_events, timeout_s)
        self._position, self._buffered = read.position, read.more
        if read.batch is None:
            return None
        if self._buffered or len(read.batch) >= max_events:
            self._ahead = self._pool.submit(self._read, max_events, timeout_s)
        return read.batch, read.prepared

    def read_events(self, max_events: int, timeout_s: float) -> ReadBatch | None:
        read = self.read_prepared(max_events, timeout_s)
        return None if read is None else read[0]

    def read(self, max_events: int, timeout_s: float) -> list[PositionedEvent]:
        raise TypeError("ReadAhead serves read_events only: read the source itself for PositionedEvents")

    @property
    def position(self) -> Position | None:
        return self._position

    def buffered(self) -> bool:
        return self._ahead is not None or self._buffered

    def saturated(self) -> bool:
        return self.source.saturated()

    def head(self) -> Position:
        return self.source.head()

    def tail(self) -> Position:
        return self.source.tail()

    def close(self) -> None:
        # The source's close wakes a read in flight and makes the next one raise; a read ahead
        # that raised that way is not anyone's error.
        self.source.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._ahead = None
