"""A large record at the newest segment's tail (issue 39, item 5): a reader waits in front of a
record being written instead of scanning the bytes after it, telling a torn tail from damage
without a writer is linear in the bytes scanned, and a SegmentWriter reopening a torn tail of a
20 MB record truncates it at once.

The record is a real 20 MB event (a region snapshot's worth of committed rows); "being
written" is its first part appended to the newest segment while a SegmentWriter holds the
directory — what a reader sees while capture's write of it is in flight. Time bounds are
deadlines for liveness only (the scan these replace took minutes at this size)."""
from __future__ import annotations

import random
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest

from pyspark_theflash.binlog import BinlogCorruptError, Position, SegmentReader, SegmentWriter, open_source
from pyspark_theflash.binlog.resync import first_valid_frame
from pyspark_theflash.binlog.segment import encode_record, segment_path, writer_active
from pyspark_theflash.proto import binlog_pb2

RECORD_MB = 20


def snapshot_event(size: int, region_id: int = 7, index: int = 2) -> binlog_pb2.Event:
    """An event of about ``size`` bytes: committed rows of a region's initial copy."""
    event = binlog_pb2.Event(region_id=region_id, index=index)
    rng = random.Random(index)
    i = 0
    while event.ByteSize() < size:
        for _ in range(2000):
            event.entries.rows.add(type=binlog_pb2.Row.COMMITTED, start_ts=100 + i, commit_ts=200 + i,
                                   key=b"t\x80\0\0\0\0\0\0\x2d_r" + (i ^ (1 << 63)).to_bytes(8, "big"),
                                   value=b"\x80\0\x02\0\0\0\x01\x02\x08\0\x0a\0" + i.to_bytes(8, "little")
                                   + rng.randbytes(20))
            i += 1
    return event


@pytest.fixture(scope="module")
def big() -> binlog_pb2.Event:
    return snapshot_event(RECORD_MB << 20)


def small_events(count: int, first_index: int = 1) -> list[binlog_pb2.Event]:
    return [binlog_pb2.Event(region_id=7, index=first_index + i, resolved_ts=1000 + i) for i in range(count)]


def append_raw(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


# --- the scan itself -----------------------------------------------------------------------------


def brute_first_valid_frame(data: bytes, max_length: int) -> int | None:
    for p in range(len(data) - 7):
        length, crc = struct.unpack_from("<II", data, p)
        if length <= max_length and p + 8 + length <= len(data) \
                and zlib.crc32(data[p + 8:p + 8 + length], zlib.crc32(data[p:p + 4])) == crc:
            return p
    return None


def test_the_linear_scan_finds_the_same_first_valid_frame_as_checksumming_every_offset() -> None:
    rng = random.Random(39)
    for trial in range(300):
        parts = []
        for _ in range(rng.randrange(0, 5)):
            kind = rng.randrange(5)
            if kind == 0:
                parts.append(rng.randbytes(rng.randrange(0, 400)))
            elif kind == 1:
                parts.append(bytes(rng.randrange(0, 40)))  # zeros: empty frames whose CRC is wrong
            elif kind == 2:
                parts.append(rng.choice([b"\x01\0\0\0", b"\x03\0\0\0", b"\0\0"]) * rng.randrange(1, 30))
            else:
                parts.append(encode_record(rng.randbytes(rng.randrange(0, 300))))
        data = b"".join(parts)
        for max_length in (512 << 20, 64):
            assert first_valid_frame(data, max_length) == brute_first_valid_frame(data, max_length), trial


def test_the_scan_over_megabytes_finds_a_record_planted_anywhere() -> None:
    rng = random.Random(5)
    noise = rng.randbytes(3 << 20)
    for at in (0, 1, 65_535, 1 << 20, len(noise) - 1):
        record = encode_record(rng.randbytes(rng.randrange(1, 100_000)))
        found = first_valid_frame(noise[:at] + record + noise[at:], 512 << 20)
        assert found == at or (found is not None and found < at and
                                brute_first_valid_frame(noise[found:at + 8], 512 << 20) == 0)


# --- a record being written ------------------------------------------------------------------------


def test_a_reader_waits_in_front_of_a_20_mb_record_being_written_and_reads_it_once_complete(
        tmp_path: Path, big: binlog_pb2.Event) -> None:
    record = encode_record(big.SerializeToString())
    with SegmentWriter(tmp_path) as writer:  # holds the directory, as capture does while it runs
        end = writer.append(small_events(1))
        path = segment_path(tmp_path, end.segment)
        append_raw(path, record[: len(record) * 3 // 4])  # the write in flight: 3/4 of it landed
        assert writer_active(tmp_path)
        with SegmentReader(tmp_path) as reader, open_source(tmp_path) as source:
            assert [e.event for e in reader.read(10, timeout_s=0)] == small_events(1)
            started = time.monotonic()
            assert reader.read_batch(10) == [] and reader.read(10, timeout_s=0.3) == []
            assert source.read_events(10, timeout_s=0.3) is not None  # (the small event)
            assert source.read_events(10, timeout_s=0.3) is None and source.head() == end
            assert time.monotonic() - started < 1.0 + 0.6, "a record being written is waited for, not scanned"
            assert reader.position == end
            append_raw(path, record[len(record) * 3 // 4:])  # ... and the rest of it
            got = reader.read(1, timeout_s=5)
            assert [(e.position, e.event) for e in got] == [(end, big)]
            batch = source.read_events(1, timeout_s=5)
            assert batch is not None and list(batch.events) == [big] and batch.next == got[0].next
            assert source.head() == got[0].next


def test_a_writer_opening_while_a_reader_probes_it_is_not_refused(tmp_path: Path) -> None:
    SegmentWriter(tmp_path).close()
    assert not writer_active(tmp_path)
    for _ in range(200):  # probes and opens interleaved as closely as threads allow
        with SegmentWriter(tmp_path):
            assert writer_active(tmp_path)
        assert not writer_active(tmp_path)


# --- torn tails and damage without a writer --------------------------------------------------------


def test_a_20_mb_torn_tail_without_a_writer_is_told_from_damage_once_and_quickly(
        tmp_path: Path, big: binlog_pb2.Event) -> None:
    record = encode_record(big.SerializeToString())
    with SegmentWriter(tmp_path) as writer:
        end = writer.append(small_events(1))
    append_raw(segment_path(tmp_path, end.segment), record[: len(record) // 2])  # a crash mid-write
    assert not writer_active(tmp_path)
    with SegmentReader(tmp_path) as reader:
        started = time.monotonic()
        assert [e.event for e in reader.read_batch(10)] == small_events(1)
        assert reader.read_batch(10) == [] and reader.position == end
        # a linear scan takes well under a second; the quadratic one ~10 minutes (the bound
        # leaves room for a machine busy with other tests)
        assert time.monotonic() - started < 60.0


def test_a_damaged_length_in_front_of_20_mb_of_records_is_found_in_linear_time(
        tmp_path: Path, big: binlog_pb2.Event) -> None:
    with SegmentWriter(tmp_path) as writer:
        start = writer.append(small_events(1))
        writer.append([big, *small_events(3, first_index=3)])
    path = segment_path(tmp_path, start.segment)
    data = bytearray(path.read_bytes())
    data[start.offset + 3] ^= 0x02  # the big record's length now points 32 MiB past the end
    path.write_bytes(bytes(data))
    started = time.monotonic()
    with SegmentReader(tmp_path) as reader, pytest.raises(BinlogCorruptError,
                                                          match=f"offset {start.offset}.*valid records follow"):
        list(reader)
    with pytest.raises(BinlogCorruptError, match=f"offset {start.offset}"):
        SegmentWriter(tmp_path)
    assert time.monotonic() - started < 60.0  # two linear scans of 20 MB (a quadratic one: minutes)
    assert path.stat().st_size == len(data), "nothing was cut off"


def test_a_stopped_reader_gives_up_the_scan_and_the_next_read_makes_it(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path) as writer:
        start = writer.append(small_events(1))
        writer.append(small_events(4, first_index=2))
    path = segment_path(tmp_path, start.segment)
    data = bytearray(path.read_bytes())
    data[start.offset + 2] ^= 0x10  # a length pushed 1 MiB past the end, valid records after it
    path.write_bytes(bytes(data))
    stopped = threading.Event()
    stopped.set()
    with SegmentReader(tmp_path, start) as reader:
        assert reader.read(10, timeout_s=5, stop=stopped) == []  # at once: the scan gave up
        assert reader.position == start
        with pytest.raises(BinlogCorruptError, match=f"offset {start.offset}.*valid records follow"):
            reader.read(10, timeout_s=0)


def test_reopening_a_segment_writer_on_a_20_mb_torn_tail_truncates_it_quickly(
        tmp_path: Path, big: binlog_pb2.Event) -> None:
    record = encode_record(big.SerializeToString())
    with SegmentWriter(tmp_path) as writer:
        end = writer.append(small_events(1))
    path = segment_path(tmp_path, end.segment)
    append_raw(path, record[: len(record) - 1])  # capture crashed with one byte to go
    started = time.monotonic()
    with SegmentWriter(tmp_path) as writer:  # capture's restart
        assert time.monotonic() - started < 60.0  # a linear scan back (a quadratic one: minutes)
        assert writer.head == end and path.stat().st_size == end.offset
        after = writer.append([big])
    with SegmentReader(tmp_path) as reader:
        assert [(e.position, e.event) for e in reader] == [(Position(1, 24), small_events(1)[0]), (end, big)]
        assert reader.position == after


# --- stopping a writer that waits there ------------------------------------------------------------


@pytest.mark.parametrize("tail", ["being written", "torn by a crash"])
def test_sigterm_stops_a_writer_waiting_at_a_20_mb_record_within_a_second(
        tail: str, tmp_path: Path, big: binlog_pb2.Event) -> None:
    """`theflash writer run` follows a binlog whose newest segment ends inside a 20 MB record:
    one capture is writing (the directory is held), or one a crash left (a copy without a
    writer). Once the writer has applied everything before it, SIGTERM stops it within 1 s."""
    import shutil
    import signal
    import subprocess
    import sys

    from polling import wait_for
    from pyspark_theflash import latch as latch_mod
    from pyspark_theflash.binlog.segment import head, list_segments
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column

    with MiniCluster(tmp_path / "cluster", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0) as up:
        addresses = up.serve()
        up.create_table("app.t", [make_column("id", "BIGINT", not_null=True)], primary_key=["id"])
        up.run_txn(lambda t: t.insert("app.t", {"id": 1}))
        binlog = tmp_path / "binlog"
        if tail == "torn by a crash":
            binlog = tmp_path / "crashed"
            shutil.copytree(tmp_path / "binlog", binlog, ignore=shutil.ignore_patterns("LOCK"))
        end = head(binlog)
        record = encode_record(big.SerializeToString())
        append_raw(segment_path(binlog, list_segments(binlog)[-1]), record[: len(record) * 3 // 4])
        assert writer_active(binlog) == (tail == "being written")
        store = tmp_path / "store"
        with open(tmp_path / "writer.out", "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "pyspark_theflash", "writer", "run", "--binlog",
                                     str(binlog), "--store", str(store), "--upstream", addresses["upstream"],
                                     "--interval", "50ms"], stdout=out, stderr=subprocess.STDOUT)
        try:
            def waiting_at_the_record() -> bool:
                if proc.poll() is not None:
                    raise AssertionError((tmp_path / "writer.out").read_text()[-3000:])
                with latch_mod.connect(store) as latch:
                    status = latch.writer_status() or {}
                return status.get("state") == "running" and status.get("read_position") == str(end)

            wait_for(waiting_at_the_record, 60, f"the writer to apply the binlog up to {end}")
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
            stopped_in = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0, (tmp_path / "writer.out").read_text()[-3000:]
    assert stopped_in < 1.0, f"the writer took {stopped_in:.2f} s to stop"
