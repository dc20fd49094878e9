"""The head and tail of a binlog, for either form: the writer's snapshot bootstrap takes the
head before the region snapshots, and starts from snapshots when the tail is past the start."""
from __future__ import annotations

from typing import NamedTuple

from pyspark_theflash.binlog import Position

# Segments are numbered from 1: a log whose tail lies in a later segment has lost its start.
FIRST_SEGMENT = 1


class BinlogBounds(NamedTuple):
    head: Position  # just after the last complete event
    tail: Position  # oldest readable position


def binlog_bounds(url: str) -> BinlogBounds:
    from pyspark_theflash.binlog.open import open_source

    with open_source(url) as source:
        return BinlogBounds(Position(*source.head()), Position(*source.tail()))


def binlog_reaches_start(url: str) -> bool:
    """Whether the binlog still holds its first segment (its tail only: finding the head reads
    the newest segment through)."""
    from pyspark_theflash.binlog.open import open_source

    with open_source(url) as source:
        return Position(*source.tail()).segment <= FIRST_SEGMENT
