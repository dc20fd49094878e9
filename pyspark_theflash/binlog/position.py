"""A place in the change log: (segment number, byte offset in that segment file).

Positions are record boundaries. They order like tuples, which is the log's order. The
position just after the last record of a full segment, ``(n, size_n)``, and the first record
of the next segment, ``(n + 1, HEADER_BYTES)``, denote the same place; a reader accepts either.
The service form uses the very same positions, so a consumer may switch forms and keep its
place.
"""
from __future__ import annotations

from typing import NamedTuple

from pyspark_theflash.proto import binlog_pb2


class Position(NamedTuple):
    segment: int
    offset: int

    def __str__(self) -> str:
        return f"{self.segment}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> "Position":
        """Parse the ``"segment:offset"`` form printed by ``str(position)``."""
        segment, sep, offset = text.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            position = cls(int(segment), int(offset))
        except ValueError:
            raise ValueError(f"not a binlog position: {text!r} (expected SEGMENT:OFFSET, e.g. 1:24)") from None
        if position.segment < 0 or position.offset < 0:
            raise ValueError(f"not a binlog position: {text!r} (segment and offset are non-negative)")
        return position

    def to_proto(self) -> binlog_pb2.Position:
        return binlog_pb2.Position(segment=self.segment, offset=self.offset)

    @classmethod
    def from_proto(cls, message: binlog_pb2.Position) -> "Position":
        return cls(int(message.segment), int(message.offset))


class PositionedEvent(NamedTuple):
    """One event of the log with its place: it starts at ``position``; ``next`` is the position
    just after it (where a consumer that has applied it resumes). Unpacks as
    ``(position, event, next)``."""

    position: Position
    event: binlog_pb2.Event
    next: Position
