"""ReadAhead: the writer's binlog source reads its next batch while the last one is applied.
What a consumer sees through it must be exactly what it sees reading the source itself:
the same batches, the same positions, nothing skipped or repeated while the log grows, errors
raised by the read that meets them."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pyspark_theflash.binlog import SegmentWriter, open_source
from pyspark_theflash.binlog.errors import BinlogSourceError
from pyspark_theflash.binlog.read_ahead import ReadAhead
from pyspark_theflash.binlog.source import EventSource, ReadBatch

from binlog_samples import sample_events


def _drain(source: EventSource, max_events: int) -> list[tuple[list[int], object, object, bool]]:
    """(event indexes, batch end, source position, buffered) of every read until one is empty."""
    out = []
    while True:
        batch = source.read_events(max_events, 0)
        if batch is None:
            return out
        out.append(([e.index for e in batch.events], batch.next, source.position, source.buffered()))


def test_the_batches_and_positions_are_the_sources_own(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path, segment_bytes=2048) as writer:
        writer.append(sample_events(90))
    plain = _drain(open_source(tmp_path), 7)
    with ReadAhead(open_source(tmp_path)) as ahead:
        through = _drain(ahead, 7)
    # every batch but the last was full: each was read ahead while the consumer held the last
    assert [b[:3] for b in through] == [b[:3] for b in plain]
    assert sum(len(b[0]) for b in through) == 90
    assert [b[1] == b[2] for b in through] == [True] * len(through), "position: after the batch handed out"


def test_a_growing_log_is_read_once_in_order(tmp_path: Path) -> None:
    events = sample_events(200)
    seen: list[int] = []
    with SegmentWriter(tmp_path, segment_bytes=4096) as writer, ReadAhead(open_source(tmp_path)) as ahead:
        for lo in range(0, 200, 23):  # the writer appends between the consumer's reads
            writer.append(events[lo:lo + 23])
            for _ in range(3):
                batch = ahead.read_events(5, 0)
                if batch is not None:
                    seen.extend(e.index for e in batch.events)
        while (batch := ahead.read_events(5, 0)) is not None:
            seen.extend(e.index for e in batch.events)
        assert ahead.position == writer.head
    assert seen == [e.index for e in events]


def test_prepare_runs_on_each_batch_and_comes_with_it(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path) as writer:
        writer.append(sample_events(30))
    threads: set[str] = set()

    def prepare(batch: ReadBatch) -> list[int]:
        threads.add(threading.current_thread().name)
        return [e.index for e in batch.events]

    with ReadAhead(open_source(tmp_path), prepare=prepare) as ahead:
        got = []
        while (read := ahead.read_prepared(4, 0)) is not None:
            batch, indexes = read
            assert indexes == [e.index for e in batch.events]
            got.extend(indexes)
    assert got == list(range(1, 31))
    assert any(name.startswith("binlog-read-ahead") for name in threads), "batches after the first: read ahead"


def test_an_idle_consumer_reads_no_batch_older_than_its_poll(tmp_path: Path) -> None:
    """A short batch starts no read ahead: the next poll reads the log as it is then."""
    with SegmentWriter(tmp_path) as writer, ReadAhead(open_source(tmp_path)) as ahead:
        writer.append(sample_events(3))
        assert [e.index for e in ahead.read_events(10, 0).events] == [1, 2, 3]  # type: ignore[union-attr]
        assert not ahead.buffered()
        writer.append(sample_events(6)[3:])
        assert [e.index for e in ahead.read_events(10, 0).events] == [4, 5, 6]  # type: ignore[union-attr]
        assert ahead.read_events(10, 0) is None


def test_a_read_ahead_error_is_raised_by_the_read_that_meets_it(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path) as writer:
        writer.append(sample_events(20))
    calls = 0

    def prepare(batch: ReadBatch) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ValueError("the second batch is bad")

    with ReadAhead(open_source(tmp_path), prepare=prepare) as ahead:
        first = ahead.read_prepared(5, 0)
        assert first is not None and [e.index for e in first[0].events] == [1, 2, 3, 4, 5]
        assert ahead.buffered(), "a full batch: the next is read ahead"
        with pytest.raises(ValueError, match="second batch"):
            ahead.read_prepared(5, 0)


def test_close_ends_the_read_ahead_and_later_reads_fail_plainly(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path) as writer:
        writer.append(sample_events(20))
    ahead = ReadAhead(open_source(tmp_path))
    assert ahead.read_events(5, 0) is not None
    ahead.close()
    with pytest.raises(BinlogSourceError, match="closed"):
        ahead.read_events(5, 0)
