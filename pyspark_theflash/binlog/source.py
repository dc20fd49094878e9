"""One way for consumers to read the change log, whatever its form: :class:`EventSource`,
and its form over the segment files read in this process, :class:`FileEventSource` (the
gRPC form is :mod:`.service`'s; ``binlog.open.open_source`` picks one for a URL).

Both deliver the same events with the same positions, so a consumer may persist
``PositionedEvent.next`` and later resume from it through either form.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from pyspark_theflash.binlog.errors import BinlogSourceError
from pyspark_theflash.binlog.position import Position, PositionedEvent
from pyspark_theflash.binlog.segment import HeadTracker, SegmentReader, tail
from pyspark_theflash.proto import binlog_pb2


class ReadBatch(NamedTuple):
    """What one ``EventSource.read_events`` returned: the events (an ``EventBatch`` when the
    source decoded them at once) and the position just after the last of them."""

    events: Sequence[binlog_pb2.Event]
    next: Position

    def __len__(self) -> int:
        return len(self.events)


class EventSource(ABC):
    """Events of the log in order from a position, optionally of some regions only."""

    url: str

    def read_events(self, max_events: int, timeout_s: float) -> ReadBatch | None:
        """``read`` for a consumer that applies the events as a batch and needs only where they
        end: up to ``max_events`` events (None when there are none) — the file source decodes a
        read's events at once (``event_batch.decode_events``) instead of one message each."""
        read = self.read(max_events, timeout_s)
        return ReadBatch([pe.event for pe in read], read[-1].next) if read else None

    @abstractmethod
    def read(self, max_events: int, timeout_s: float) -> list[PositionedEvent]:
        """Up to ``max_events`` events. Waits for more until ``timeout_s`` passes, then returns
        what it has (possibly nothing); ``timeout_s=0`` returns what is available now."""

    @property
    @abstractmethod
    def position(self) -> Position | None:
        """Where reading continues: after every event returned so far and after any events of
        other regions skipped since. None only for a service source that started from the tail
        and has not heard from the server yet."""

    @abstractmethod
    def head(self) -> Position:
        """The position just after the last complete event of the log."""

    @abstractmethod
    def tail(self) -> Position:
        """The oldest position still readable."""

    @abstractmethod
    def close(self) -> None:
        """Release files, threads and connections; a blocked ``read`` returns."""

    def buffered(self) -> bool:
        """Whether events are ready to read without waiting: a push source (gRPC) buffers what
        its server streams. A source that reads on demand (files) holds nothing back: False."""
        return False

    def saturated(self) -> bool:
        """Whether the source has stopped taking events from its server because its buffer
        is full: the consumer is behind and should read now, not at its next poll."""
        return False

    def __enter__(self) -> "EventSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileEventSource(EventSource):
    """The segment files of a directory, read in this process."""

    def __init__(
        self, directory: Path | str, position: Position | None = None, region_ids: Iterable[int] | None = None
    ) -> None:
        self.directory = Path(directory)
        self.url = self.directory.resolve().as_uri()
        self._region_ids = frozenset(region_ids) if region_ids else None
        self._reader = SegmentReader(self.directory, position)
        self._head = HeadTracker(self.directory)
        self._lock = threading.Lock()  # read and close may come from different threads
        self._head_lock = threading.Lock()
        self._closed = threading.Event()

    def read(self, max_events: int, timeout_s: float) -> list[PositionedEvent]:
        if self._closed.is_set():
            raise BinlogSourceError(f"binlog source {self.url} is closed")
        with self._lock:
            return self._reader.read(max_events, timeout_s, self._region_ids, stop=self._closed)

    def read_events(self, max_events: int, timeout_s: float) -> ReadBatch | None:
        if self._closed.is_set():
            raise BinlogSourceError(f"binlog source {self.url} is closed")
        with self._lock:
            read = self._reader.read_decoded(max_events, timeout_s, self._region_ids, stop=self._closed)
        return None if read is None else ReadBatch(*read)

    def buffered(self) -> bool:
        """The last read stopped at its byte budget (binlog/segment.py READ_BYTES_MAX): more is
        ready to read now."""
        return self._reader.cut_short

    @property
    def position(self) -> Position:
        return self._reader.position

    def head(self) -> Position:
        with self._head_lock:
            return self._head.head()

    def tail(self) -> Position:
        return tail(self.directory)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._reader.wake()
        with self._lock:
            self._reader.close()
        with self._head_lock:
            self._head.close()
