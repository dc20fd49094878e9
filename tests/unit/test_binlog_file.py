"""The file form of the binlog: framed, checksummed, rotated segments read back from any position."""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from pyspark_theflash.binlog import (
    BinlogCorruptError,
    BinlogFormatError,
    BinlogLockedError,
    BinlogPositionError,
    BinlogPositionGoneError,
    BinlogTruncatedError,
    Position,
    PositionedEvent,
    SegmentReader,
    SegmentWriter,
)
from pyspark_theflash.binlog.segment import HEADER_BYTES, encode_record, head, list_segments, segment_path, tail
from pyspark_theflash.proto import binlog_pb2

from binlog_samples import sample_events


def read_all(directory: Path, position: Position | None = None) -> list[PositionedEvent]:
    with SegmentReader(directory, position) as reader:
        return list(reader)


def read_events_all(directory: Path, max_events: int = 4) -> tuple[list[binlog_pb2.Event], Position | None]:
    """Every event through ``EventSource.read_events`` (what the writer reads), a few a read,
    and the position after the last."""
    from pyspark_theflash.binlog import open_source

    out: list[binlog_pb2.Event] = []
    end = None
    with open_source(directory.as_uri()) as source:
        while True:
            batch = source.read_events(max_events, 0)
            if batch is None:
                return out, end
            out.extend(batch.events)
            end = batch.next


def test_events_round_trip_across_segment_rotation(tmp_path: Path) -> None:
    events = sample_events(120)
    with SegmentWriter(tmp_path, segment_bytes=1024) as writer:
        ends = [writer.append(events[i : i + 7]) for i in range(0, len(events), 7)]
        head_position = writer.head
    assert len(list_segments(tmp_path)) >= 5, "small segments must rotate"
    records = read_all(tmp_path)
    assert [r.event for r in records] == events
    assert records[-1].next == head_position == ends[-1] == head(tmp_path)
    assert records[0].position == tail(tmp_path) == Position(1, HEADER_BYTES)
    for before, after in zip(records, records[1:]):
        # Consecutive in one segment, or the first record of the next segment.
        assert after.position == before.next or (
            after.position == Position(before.next.segment + 1, HEADER_BYTES)
            and before.next.offset == segment_path(tmp_path, before.next.segment).stat().st_size
        )
    # Each append returned the position just after its last event.
    nexts = {r.next for r in records}
    assert all(end in nexts for end in ends)
    for number in list_segments(tmp_path):
        size = segment_path(tmp_path, number).stat().st_size
        assert size <= 1024 or number == list_segments(tmp_path)[-1]


def test_resuming_from_every_position_yields_the_exact_suffix(tmp_path: Path) -> None:
    events = sample_events(60)
    with SegmentWriter(tmp_path, segment_bytes=700) as writer:
        writer.append(events)
    records = read_all(tmp_path)
    assert len(list_segments(tmp_path)) >= 3
    for i, record in enumerate(records):
        assert read_all(tmp_path, record.position) == records[i:]
        # The position after an event (possibly "end of a full segment") resumes after it.
        assert read_all(tmp_path, record.next) == records[i + 1 :]
    assert read_all(tmp_path, Position(1, 0)) == records, "offset 0 means the segment's first record"


def test_position_inside_a_record_or_beyond_the_head_is_rejected(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path) as writer:
        end = writer.append(sample_events(3))
    first = read_all(tmp_path)[0]
    with pytest.raises(BinlogPositionError, match="inside the record"):
        SegmentReader(tmp_path, Position(1, first.position.offset + 3))
    with pytest.raises(BinlogPositionError, match="beyond"):
        SegmentReader(tmp_path, Position(1, end.offset + 8))
    with pytest.raises(BinlogPositionError, match="beyond the head"):
        SegmentReader(tmp_path, Position(7, HEADER_BYTES))
    with pytest.raises(BinlogPositionError, match="numbered from 1"):
        SegmentReader(tmp_path, Position(0, 0))


def test_torn_tail_is_not_yet_written_then_replaced_by_the_next_append(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = sample_events(5)
    with SegmentWriter(tmp_path) as writer:
        end = writer.append(events[:4])
    newest = segment_path(tmp_path, end.segment)
    whole = encode_record(events[4].SerializeToString())
    with open(newest, "ab") as f:  # a crash after writing part of a record
        f.write(whole[: len(whole) // 2])

    reader = SegmentReader(tmp_path)
    assert [r.event for r in reader.read_batch(100)] == events[:4]
    assert reader.read_batch(100) == [] and reader.position == end, "the torn record is not yet written"
    assert head(tmp_path) == end

    caplog.set_level(logging.WARNING, logger="pyspark_theflash.binlog.segment")
    with SegmentWriter(tmp_path) as writer:  # restart: truncates the torn tail, reports it
        assert writer.head == end
        assert newest.stat().st_size == end.offset
        assert any("torn tail" in m and str(newest) in m for m in caplog.messages)
        writer.append(events[4:])
    resumed = reader.read_batch(100)
    assert [(r.position, r.event) for r in resumed] == [(end, events[4])]
    reader.close()


def test_a_reader_waiting_at_a_torn_record_reads_what_replaces_it(tmp_path: Path) -> None:
    events = sample_events(8)
    with SegmentWriter(tmp_path) as writer:
        end = writer.append(events[:2])
    whole = bytearray(encode_record(events[2].SerializeToString()))
    whole[-1] ^= 0xFF  # complete in length, but the last bytes never made it: bad checksum
    with open(segment_path(tmp_path, end.segment), "ab") as f:
        f.write(bytes(whole))
    reader = SegmentReader(tmp_path)
    assert [r.event for r in reader.read_batch(10)] == events[:2]
    assert reader.read_batch(10) == [], "a damaged last record of the newest segment is not yet written"
    with SegmentWriter(tmp_path) as writer:  # truncates it, then appends other records there
        writer.append(events[3:])
    assert [r.event for r in reader.read_batch(10)] == events[3:]
    reader.close()


def test_a_record_seen_half_written_is_read_once_complete(tmp_path: Path) -> None:
    from pyspark_theflash.binlog.segment import HeadTracker

    events = sample_events(3)
    with SegmentWriter(tmp_path) as writer:
        end = writer.append(events[:2])
    record = encode_record(events[2].SerializeToString())
    path = segment_path(tmp_path, end.segment)
    with open(path, "ab") as f:  # the first half of a write still in progress
        f.write(record[:10])
    reader, tracker = SegmentReader(tmp_path), HeadTracker(tmp_path)
    assert len(reader.read_batch(10)) == 2 and reader.read_batch(10) == []
    assert tracker.head() == end
    with open(path, "ab") as f:  # ... and the rest of it
        f.write(record[10:])
    assert tracker.head() == Position(end.segment, end.offset + len(record))
    assert [(r.position, r.event) for r in reader.read_batch(10)] == [(end, events[2])]
    reader.close()
    tracker.close()


def test_zero_filled_tail_after_a_crash_is_treated_as_torn(tmp_path: Path) -> None:
    events = sample_events(3)
    with SegmentWriter(tmp_path) as writer:
        end = writer.append(events[:2])
    with open(segment_path(tmp_path, end.segment), "ab") as f:
        f.write(bytes(100))
    assert [r.event for r in read_all(tmp_path)] == events[:2]
    with SegmentWriter(tmp_path) as writer:
        assert writer.append(events[2:]) > end
    assert [r.event for r in read_all(tmp_path)] == events


def test_flipped_byte_mid_file_is_reported_with_segment_file_and_offset(tmp_path: Path) -> None:
    events = sample_events(40)
    with SegmentWriter(tmp_path, segment_bytes=2048) as writer:
        writer.append(events)
    records = read_all(tmp_path)
    victim = records[5]
    path = segment_path(tmp_path, victim.position.segment)
    data = bytearray(path.read_bytes())
    data[victim.position.offset + 10] ^= 0x40  # inside the payload
    path.write_bytes(bytes(data))

    with pytest.raises(BinlogCorruptError) as caught:
        read_all(tmp_path)
    assert caught.value.path == path and caught.value.offset == victim.position.offset
    assert str(path) in str(caught.value) and f"offset {victim.position.offset}" in str(caught.value)
    assert not isinstance(caught.value, BinlogTruncatedError)
    # Reading from after the damaged record works: the damage is reported, never skipped.
    assert read_all(tmp_path, victim.next) == records[6:]


def test_damaged_length_is_reported_as_corruption(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path) as writer:
        writer.append(sample_events(10))
    records = read_all(tmp_path)
    path = segment_path(tmp_path, 1)
    for flip in (0x01, 0xFF):  # a plausible wrong length, then an impossible one
        data = bytearray(path.read_bytes())
        data[records[3].position.offset + (0 if flip == 0x01 else 3)] ^= flip
        damaged = tmp_path / "damaged"
        damaged.mkdir(exist_ok=True)
        segment_path(damaged, 1).write_bytes(bytes(data))
        with pytest.raises(BinlogCorruptError) as caught:
            read_all(damaged)
        assert caught.value.offset == records[3].position.offset


def test_corruption_in_the_newest_segment_stops_the_writer_from_reopening(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path) as writer:
        writer.append(sample_events(10))
    victim = read_all(tmp_path)[2]
    path = segment_path(tmp_path, 1)
    data = bytearray(path.read_bytes())
    data[victim.position.offset + 9] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BinlogCorruptError, match=f"offset {victim.position.offset}"):
        SegmentWriter(tmp_path)
    assert path.stat().st_size == len(data), "the writer must not cut off data after corruption"


def test_truncated_segment_followed_by_newer_segments_is_reported(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path, segment_bytes=1024) as writer:
        writer.append(sample_events(60))
    assert len(list_segments(tmp_path)) >= 3
    records = read_all(tmp_path)
    in_first = [r for r in records if r.position.segment == 1]
    cut = in_first[-1].position.offset + 5
    os.truncate(segment_path(tmp_path, 1), cut)
    with pytest.raises(BinlogTruncatedError) as caught:
        read_all(tmp_path)
    assert caught.value.path == segment_path(tmp_path, 1) and caught.value.offset == in_first[-1].position.offset
    assert "newer segments follow" in str(caught.value)


def test_pruned_position_raises_an_error_naming_the_oldest_position(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path, segment_bytes=1024) as writer:
        writer.append(sample_events(80))
        records = read_all(tmp_path)
        keep_from = next(r for r in records if r.position.segment == 3)
        deleted = writer.prune(keep_from.position)
        assert deleted == [segment_path(tmp_path, 1), segment_path(tmp_path, 2)]
        assert writer.tail == Position(3, HEADER_BYTES)
        newest = list_segments(tmp_path)[-1]
        writer.prune(Position(newest + 10, HEADER_BYTES))
        assert list_segments(tmp_path) == [newest], "the newest segment is never pruned"
    with pytest.raises(BinlogPositionGoneError) as caught:
        SegmentReader(tmp_path, records[0].next)
    assert caught.value.oldest == Position(newest, HEADER_BYTES)
    assert f"{newest}:{HEADER_BYTES}" in str(caught.value)
    assert read_all(tmp_path) == [r for r in records if r.position.segment == newest]


def test_concurrent_appends_from_threads_read_back_in_order(tmp_path: Path) -> None:
    threads_count, batches = 4, 60
    returned: dict[int, list[Position]] = {t: [] for t in range(threads_count)}
    with SegmentWriter(tmp_path, segment_bytes=4096) as writer:

        def append_region(region: int) -> None:
            for b in range(batches):
                size = 1 + b % 3
                batch = [
                    binlog_pb2.Event(region_id=region + 1, index=b * 3 + k, resolved_ts=b) for k in range(size)
                ]
                returned[region].append(writer.append(batch))

        workers = [threading.Thread(target=append_region, args=(t,)) for t in range(threads_count)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    records = read_all(tmp_path)
    assert len(records) == threads_count * sum(1 + b % 3 for b in range(batches))
    for region in range(1, threads_count + 1):
        mine = [r for r in records if r.event.region_id == region]
        indexes = [r.event.index for r in mine]
        assert indexes == sorted(indexes), f"region {region} out of order"
        ends = {r.next for r in mine}
        assert all(end in ends for end in returned[region - 1])
    # Each batch is contiguous in the log.
    by_batch = [(r.event.region_id, r.event.resolved_ts) for r in records]
    runs = [by_batch[0]] + [b for a, b in zip(by_batch, by_batch[1:]) if a != b]
    assert len(runs) == threads_count * batches


def test_reader_waits_for_events_appended_later(tmp_path: Path) -> None:
    events = sample_events(6)
    with SegmentWriter(tmp_path, segment_bytes=600) as writer:
        writer.append(events[:2])
        reader = SegmentReader(tmp_path)
        assert len(reader.read(10, timeout_s=0)) == 2
        got: list[PositionedEvent] = []
        waiting = threading.Thread(target=lambda: got.extend(reader.read(4, timeout_s=30)))
        waiting.start()
        writer.append(events[2:4])
        writer.append(events[4:])
        waiting.join()
        reader.close()
    assert [r.event for r in got] == events[2:]


def test_fsync_always_policy_and_explicit_sync(tmp_path: Path) -> None:
    events = sample_events(8)
    with SegmentWriter(tmp_path, segment_bytes=512, fsync="always") as writer:
        writer.append(events[:4])
        writer.sync()
        writer.append(events[4:])
    assert [r.event for r in read_all(tmp_path)] == events
    with pytest.raises(ValueError, match="fsync policy"):
        SegmentWriter(tmp_path / "other", fsync="never")  # type: ignore[arg-type]


def test_a_second_writer_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path):
        with pytest.raises(BinlogLockedError, match=str(tmp_path)):
            SegmentWriter(tmp_path)
    SegmentWriter(tmp_path).close()  # released on close


def test_a_directory_of_other_files_is_recognised(tmp_path: Path) -> None:
    segment_path(tmp_path, 1).write_bytes(b"PK\x03\x04 not a binlog segment at all, really")
    with pytest.raises(BinlogFormatError, match="not a TheFlash binlog segment"):
        SegmentWriter(tmp_path)
    with pytest.raises(BinlogFormatError):
        read_all(tmp_path)


def test_position_text_and_proto_forms() -> None:
    position = Position(12, 3456)
    assert str(position) == "12:3456" and Position.parse("12:3456") == position
    assert Position.from_proto(position.to_proto()) == position
    assert Position(1, 900) < Position(2, 24) < Position(2, 25)
    for bad in ("12", "a:b", "-1:3", ""):
        with pytest.raises(ValueError, match="SEGMENT:OFFSET|non-negative"):
            Position.parse(bad)


# --- the corruption rule: only a torn tail ends the log early ----------------------------------

# Where in a record a byte is damaged: the 4 length bytes, the 4 checksum bytes, the first and
# the last payload byte; and how (a low bit, a high bit, every bit). Byte 2 of the length
# pushes the record's end megabytes past the end of the file: it reads like a short record.
FRAME_SPOTS = {"len0": 0, "len1": 1, "len2": 2, "len3": 3, "crc0": 4, "crc3": 7, "payload0": 8, "payload_end": -1}


def damaged_copy(src: Path, dst: Path, offset: int, flip: int) -> Path:
    dst.mkdir(exist_ok=True)
    for number in list_segments(src):
        data = bytearray(segment_path(src, number).read_bytes())
        if number == list_segments(src)[-1]:
            data[offset] ^= flip
        segment_path(dst, number).write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("form", ["rows", "columnar"])
@pytest.mark.parametrize("spot", sorted(FRAME_SPOTS))
def test_a_damaged_record_with_records_after_it_is_corruption_for_every_reader(spot: str, form: str,
                                                                               tmp_path: Path) -> None:
    from pyspark_theflash.binlog import open_source

    events = sample_events(12, columnar=form == "columnar")
    with SegmentWriter(tmp_path / "good", segment_bytes=700) as writer:
        writer.append(events)
    records = read_all(tmp_path / "good")
    assert read_events_all(tmp_path / "good") == ([r.event for r in records], records[-1].next)
    newest = [r for r in records if r.position.segment == list_segments(tmp_path / "good")[-1]]
    assert len(newest) >= 3
    for victim in newest[:-1]:
        at = FRAME_SPOTS[spot]
        byte = victim.next.offset - 1 if at < 0 else victim.position.offset + at
        for flip in (0x01, 0x80, 0xFF):
            where = damaged_copy(tmp_path / "good", tmp_path / f"bad-{spot}-{victim.position.offset}-{flip}", byte, flip)
            message = f"offset {victim.position.offset}"
            with pytest.raises(BinlogCorruptError, match=message):
                read_all(where)
            with pytest.raises(BinlogCorruptError, match=message):
                head(where)
            with open_source(where.as_uri()) as source, pytest.raises(BinlogCorruptError, match=message):
                source.head()
            with pytest.raises(BinlogCorruptError, match=message):
                read_events_all(where)  # the writer's read: a read's events decoded at once
            size = segment_path(where, victim.position.segment).stat().st_size
            with pytest.raises(BinlogCorruptError, match=message):
                SegmentWriter(where)
            assert segment_path(where, victim.position.segment).stat().st_size == size  # nothing cut off


@pytest.mark.parametrize("form", ["rows", "columnar"])
@pytest.mark.parametrize("spot", sorted(FRAME_SPOTS))
def test_damage_to_the_very_last_record_is_a_torn_tail_or_corruption_never_a_shorter_log(
        spot: str, form: str, tmp_path: Path) -> None:
    events = sample_events(6 if form == "rows" else 5, columnar=form == "columnar")
    with SegmentWriter(tmp_path / "good") as writer:
        writer.append(events)
    last = read_all(tmp_path / "good")[-1]
    at = FRAME_SPOTS[spot]
    byte = last.next.offset - 1 if at < 0 else last.position.offset + at
    for flip in (0x01, 0x80, 0xFF):
        where = damaged_copy(tmp_path / "good", tmp_path / f"bad-{flip}", byte, flip)
        try:
            got = [r.event for r in read_all(where)]
        except BinlogCorruptError as exc:
            assert exc.offset == last.position.offset
            with pytest.raises(BinlogCorruptError, match=f"offset {last.position.offset}"):
                read_events_all(where)
            continue
        assert got == events[:-1]  # the crash case: the last record not yet written
        assert head(where) == last.position
        assert read_events_all(where) == (events[:-1], last.position)


def test_a_length_pushed_past_the_end_is_not_mistaken_for_a_write_in_progress(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path / "good") as writer:
        writer.append(sample_events(10))
    victim = read_all(tmp_path / "good")[4]
    where = damaged_copy(tmp_path / "good", tmp_path / "bad", victim.position.offset + 2, 0x10)  # +1 MiB
    with pytest.raises(BinlogCorruptError, match=f"offset {victim.position.offset}.*valid records follow"):
        read_all(where)


def test_a_batch_read_stops_at_its_byte_budget_and_says_more_is_there(tmp_path: Path, monkeypatch) -> None:
    """A writer following a large initial copy must hold a snapshot or two at a time, not a
    batch's count of them: a read of payloads stops once READ_BYTES_MAX is crossed, the source
    says more is ready (so the writer reads again at once), and every event still arrives once,
    in order, across segments."""
    from pyspark_theflash.binlog import segment
    from pyspark_theflash.binlog.source import FileEventSource

    events = sample_events(200)
    with SegmentWriter(tmp_path, segment_bytes=4096) as writer:
        writer.append(events)
    sizes = [len(ev.SerializeToString()) for ev in events]
    monkeypatch.setattr(segment, "READ_BYTES_MAX", 5 * max(sizes))
    source = FileEventSource(tmp_path)
    got, reads = [], []
    while True:
        batch = source.read_events(10_000, 0)
        if batch is None:
            break
        reads.append((len(batch), source.buffered()))
        got += [batch.events[i] for i in range(len(batch))]
    assert got == events
    assert len(reads) > 5 and all(more for _, more in reads[:-1]) and not reads[-1][1]
    # each read crossed the budget by at most its last record
    assert all(n <= 6 * max(sizes) // min(sizes) + 1 for n, _ in reads)


def test_one_append_of_more_records_than_a_writev_takes_lands_whole_and_in_order(tmp_path: Path) -> None:
    """An append writes frames and payloads as they are, a bounded number of buffers a call:
    thousands of records in one append, across a rotation, read back as appended."""
    events = sample_events(1500)
    with SegmentWriter(tmp_path, segment_bytes=64 << 10) as writer:
        end = writer.append(events)
        assert end == writer.head
    assert len(list_segments(tmp_path)) >= 2, "the append rotated"
    assert [r.event for r in read_all(tmp_path)] == events
    assert read_all(tmp_path)[-1].next == end


def test_an_append_the_disk_refuses_half_way_leaves_no_partial_record(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from pyspark_theflash.binlog import segment as segment_module

    events = sample_events(40)
    with SegmentWriter(tmp_path) as writer:
        writer.append(events[:10])
        before = writer.head
        real_writev = os.writev
        calls = 0

        def full_after_some(fd: int, buffers: list) -> int:  # writes part of the first call, then the disk is full
            nonlocal calls
            calls += 1
            if calls == 1:
                return real_writev(fd, [memoryview(buffers[0])[:3]])
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(segment_module.os, "writev", full_after_some)
        with pytest.raises(OSError, match="No space"):
            writer.append(events[10:30])
        monkeypatch.undo()
        assert writer.head == before
        assert segment_path(tmp_path, before.segment).stat().st_size == before.offset
        writer.append(events[10:])
    assert [r.event for r in read_all(tmp_path)] == events
