"""The file form of the change log: numbered segment files of framed, checksummed events.

A binlog directory holds::

    000000000001.binlog  000000000002.binlog  ...   segments, numbered from 1 without gaps
                                                     (retention deletes the oldest ones)
    LOCK                                             flock()ed by the one SegmentWriter

A segment file is a header and then records, all integers little-endian::

    header  (24 bytes)  b"TFBINLOG" | u32 format version | u64 segment number | u32 CRC-32
                        of the 20 bytes before it

Format versions: 1, region snapshots as one message per version and lock (``SnapshotWrite``,
``SnapshotLock``); 2, a snapshot may instead carry its versions and locks as one columnar
``RowBatch`` (protos/binlog.proto, ``RegionSnapshot.batch``); 3 (written now), an Entries event
may carry the rows of many regions (``RegionRuns``, binlog/region_runs.py). This code reads all
three; code that reads only older versions refuses a newer segment rather than read its events
as empty or as rows of no region. A writer opening a binlog whose last segment is of an older
version starts a new segment: it never appends the newer form under an older header.
    record              u32 payload length | u32 CRC-32 | payload (a serialized binlog_pb2.Event)

The checksum is CRC-32 with the IEEE 802.3 polynomial, i.e. ``zlib.crc32`` (as gzip and PNG
use), computed over the 4 length bytes followed by the payload, so a damaged length is caught
as well as a damaged payload.

Invariants the reader relies on:

* A segment is complete (written and fsynced) before the next one is created, and a new
  segment appears under its final name only with its header already written (temporary name,
  fsync, rename). So a segment followed by a newer one never grows again, and a short record
  there is data loss (:class:`BinlogTruncatedError`), whereas a short record at the end of the
  newest segment is a write in progress or a crash mid-write: "not yet written".
* Only a **torn tail** ends the log early: a record at the very end of the newest segment that
  the file ends inside (or whose frame reaches exactly to the end, or that is followed only by
  zeros), with no valid record after it. Any record that fails its framing or checksum with a
  valid record after it — a flipped payload byte, a length pushed past the end of the file —
  is corruption (:class:`BinlogCorruptError`, naming file and offset) for every reader: the
  writer, ``--until-caught-up``, ``binlog dump`` and ``binlog status``.
* While a SegmentWriter holds the directory (its LOCK is flock()ed: :func:`writer_active`), a
  record the newest segment ends inside is a **write in progress**: the writer checked that
  segment when it opened it and is the only one appending. Readers wait in front of it and
  never scan the bytes after it, whatever its size. Without a writer, telling a torn tail from
  a damaged length takes a scan for valid records after it: linear in the bytes scanned
  (:mod:`.resync`), run once per file size, and given up when the reader is stopped.
* The writer truncates a torn tail when it reopens the directory and logs what it dropped, and
  refuses to open a directory whose newest segment is corrupt; a reader never skips a record.
* Retention deletes whole segments, oldest first, never the newest one.
"""
from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, NamedTuple

from google.protobuf.message import DecodeError

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
from pyspark_theflash.binlog import region_runs
from pyspark_theflash.binlog.position import Position, PositionedEvent
from pyspark_theflash.binlog.resync import ResyncStopped, Stop, first_valid_frame
from pyspark_theflash.durable import fsync_directory
from pyspark_theflash.proto import binlog_pb2

if TYPE_CHECKING:
    from pyspark_theflash.binlog.event_batch import EventBatch

log = logging.getLogger(__name__)

MAGIC = b"TFBINLOG"
FORMAT_VERSION = 3  # written; read: READ_VERSIONS
READ_VERSIONS = (1, 2, 3)
_HEADER = struct.Struct("<8sIQI")
HEADER_BYTES = _HEADER.size  # 24: the offset of a segment's first record
_FRAME = struct.Struct("<II")
FRAME_BYTES = _FRAME.size  # 8: length and checksum in front of every payload
_IOV_MAX = 512  # buffers a writev takes at once (Linux allows 1024)
MAX_RECORD_BYTES = 512 << 20  # larger lengths can only be damage (a region snapshot is ~100 MiB)
DEFAULT_SEGMENT_BYTES = 64 << 20
SEGMENT_SUFFIX = ".binlog"
LOCK_NAME = "LOCK"
# How often a waiting reader re-checks the files when no in-process writer wakes it up
# (the writer may live in another process).
POLL_INTERVAL_S = 0.1
# A reader of payloads stops once it holds this many bytes (the record that crosses it is the
# last): a writer following a large initial copy holds a region snapshot or two at a time, not
# the thousands of events a batch may count (a 10M-row copy read whole took 5 GiB).
READ_BYTES_MAX = 64 << 20
_READ_CHUNK = 1 << 20
_new_tuple = tuple.__new__
_SCAN_RUN = 4096  # records per step when only checking (recovery, head)
# A SegmentWriter opening the directory retries its lock this long: a reader probing whether a
# writer is alive (``writer_active``) holds a shared lock on LOCK for a moment.
LOCK_RETRY_S = 0.5

FsyncPolicy = Literal["always", "rotate"]


def segment_name(number: int) -> str:
    return f"{number:012d}{SEGMENT_SUFFIX}"


def segment_path(directory: Path | str, number: int) -> Path:
    return Path(directory) / segment_name(number)


def list_segments(directory: Path | str) -> list[int]:
    """The segment numbers present in ``directory``, ascending."""
    numbers = []
    for name in os.listdir(directory):
        if not name.endswith(SEGMENT_SUFFIX):
            continue
        stem = name[: -len(SEGMENT_SUFFIX)]
        if not stem.isdigit():
            raise BinlogFormatError(Path(directory) / name, "segment files are named like 000000000001.binlog")
        numbers.append(int(stem))
    numbers.sort()
    return numbers


def encode_header(number: int) -> bytes:
    body = _HEADER.pack(MAGIC, FORMAT_VERSION, number, 0)[: HEADER_BYTES - 4]
    return body + struct.pack("<I", zlib.crc32(body))


def segment_format_version(directory: Path | str, number: int) -> int:
    """The format version in segment ``number``'s header (checked as a reader checks it)."""
    path = segment_path(Path(directory), number)
    with open(path, "rb") as f:
        data = f.read(HEADER_BYTES)
    check_header(path, data, number)
    return int(_HEADER.unpack(data[:HEADER_BYTES])[1])


def check_header(path: Path, data: bytes, number: int) -> None:
    if len(data) < HEADER_BYTES:
        raise BinlogFormatError(path, f"only {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header")
    magic, version, found, crc = _HEADER.unpack(data[:HEADER_BYTES])
    if magic != MAGIC:
        raise BinlogFormatError(path, f"starts with {magic!r}, not {MAGIC!r}")
    if crc != zlib.crc32(data[: HEADER_BYTES - 4]):
        raise BinlogFormatError(path, "the header checksum does not match")
    if version not in READ_VERSIONS:
        raise BinlogVersionError(path, version, READ_VERSIONS)
    if found != number:
        raise BinlogFormatError(path, f"the header says segment {found} but the file is named for segment {number}")


def encode_record(payload: bytes) -> bytes:
    """One framed record: length, checksum (over length bytes and payload), payload."""
    return record_frame(payload) + payload


def record_frame(payload: bytes) -> bytes:
    """The frame in front of ``payload`` in its record: its length and checksum."""
    if len(payload) > MAX_RECORD_BYTES:
        raise BinlogError(f"an event of {len(payload)} bytes exceeds the record limit of {MAX_RECORD_BYTES} bytes")
    length = struct.pack("<I", len(payload))
    return length + struct.pack("<I", zlib.crc32(payload, zlib.crc32(length)))


# ---------------------------------------------------------------------------------------------
# Waking readers in this process when a writer appends (readers also poll, for other processes).


class AppendSignal:
    """A generation counter per directory: writers bump it, readers wait for it to change."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.generation = 0

    def notify(self) -> None:
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout_s: float) -> bool:
        """Wait until the generation differs from ``seen``; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.generation != seen, max(timeout_s, 0.0))


_signals: dict[str, AppendSignal] = {}
_signals_lock = threading.Lock()


def append_signal(directory: Path | str) -> AppendSignal:
    key = os.path.realpath(directory)
    with _signals_lock:
        return _signals.setdefault(key, AppendSignal())


# ---------------------------------------------------------------------------------------------
# Reading records of one segment file.

_OK, _EOF, _SHORT, _BAD = "ok", "eof", "short", "bad"


class _Read(NamedTuple):
    kind: str  # _OK, _EOF (no byte at offset), _SHORT (file ends inside the record), _BAD
    payload: bytes
    end: int  # offset just after the record (_OK, and _BAD when the length was plausible)
    reason: str


class _SegmentFile:
    """Random access to the records of one segment through a window read with pread.

    The window only ever holds bytes that were in the file when read; anything that is not a
    complete valid record drops the window, so a torn tail rewritten later is read afresh.
    """

    def __init__(self, path: Path, number: int) -> None:
        self.path = path
        self.number = number
        self._fd = os.open(path, os.O_RDONLY)
        self._buf = b""
        self._buf_start = 0
        self._torn: tuple[int, int, bool] | None = None  # (offset, file size, verdict) of the last scan
        try:
            check_header(path, os.pread(self._fd, HEADER_BYTES, 0), number)
        except BaseException:
            os.close(self._fd)
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def invalidate(self) -> None:
        self._buf = b""

    def _bytes(self, offset: int, count: int) -> bytes:
        start = offset - self._buf_start
        if start >= 0 and offset + count <= self._buf_start + len(self._buf):
            return self._buf[start : start + count]
        self._buf = os.pread(self._fd, max(count, _READ_CHUNK), offset)
        self._buf_start = offset
        return self._buf[:count]

    def read_at(self, offset: int, verify: bool = True) -> _Read:
        head = self._bytes(offset, FRAME_BYTES)
        if not head:
            return _Read(_EOF, b"", offset, "end of file")
        if len(head) < FRAME_BYTES:
            return _Read(_SHORT, b"", offset, f"the file ends {len(head)} bytes into a record frame")
        length, crc = _FRAME.unpack(head)
        if length > MAX_RECORD_BYTES:
            return _Read(_BAD, b"", offset, f"impossible record length {length} (limit {MAX_RECORD_BYTES})")
        end = offset + FRAME_BYTES + length
        if not verify:  # lengths only: is the whole record there?
            if length == 0 or self._bytes(end - 1, 1):
                return _Read(_OK, b"", end, "")
            return _Read(_SHORT, b"", end, "the file ends inside a record")
        record = self._bytes(offset, FRAME_BYTES + length)
        if len(record) < FRAME_BYTES + length:
            have = len(record) - FRAME_BYTES
            return _Read(_SHORT, b"", end, f"the file ends {have} bytes into a record of {length} bytes")
        payload = record[FRAME_BYTES:]
        if zlib.crc32(payload, zlib.crc32(head[:4])) != crc:
            return _Read(_BAD, b"", end, f"checksum mismatch in a record of {length} bytes")
        return _Read(_OK, payload, end, "")

    def read_run(self, offset: int, limit: int) -> list[tuple[int, bytes, int]]:
        """Up to ``limit`` consecutive valid records from ``offset`` as (offset, payload, end):
        the fast path of reading. It stops before anything that is not a complete valid record
        (end of file, a short or damaged record), which ``read_at`` then classifies."""
        payloads: list[bytes] = []
        starts: list[int] = []
        self.read_payloads(offset, limit, payloads, starts)
        return [(start, payload, start + FRAME_BYTES + len(payload)) for start, payload in zip(starts, payloads)]

    def read_payloads(self, offset: int, limit: int, payloads: list[Any], starts: list[int],
                      max_bytes: int | None = None, views: bool = False) -> int:
        """``read_run`` for a reader that wants only the payloads: up to ``limit`` of them
        appended to ``payloads`` (their offsets to ``starts``), and no more once ``max_bytes``
        of payload are read (the record that crosses it is the last); returns the offset after
        the last one. No object per record besides its payload. ``views``: each payload a
        memoryview into the read chunk instead of a copy (a reader that joins them at once:
        ``event_batch.decode_events``)."""
        unpack, crc32 = _FRAME.unpack_from, zlib.crc32
        add, add_start = payloads.append, starts.append
        buf, rel = self._buf, offset - self._buf_start
        view = memoryview(buf) if views else buf
        fresh_at = -1
        left = limit
        budget = max_bytes if max_bytes is not None else -1
        while left and budget:
            need = FRAME_BYTES
            if 0 <= rel and rel + FRAME_BYTES <= len(buf):
                length, crc = unpack(buf, rel)
                if length > MAX_RECORD_BYTES:
                    break
                need += length
                if rel + need <= len(buf):
                    payload = view[rel + FRAME_BYTES : rel + need]
                    if crc32(payload, crc32(view[rel : rel + 4])) != crc:
                        break
                    add(payload)
                    add_start(offset)
                    offset += need
                    rel += need
                    left -= 1
                    if budget > 0:
                        budget = max(0, budget - length)
                    continue
            if fresh_at == offset:
                break
            buf, rel, fresh_at = self._refill(offset, max(need, _READ_CHUNK)), 0, offset
            view = memoryview(buf) if views else buf
        return offset

    def _refill(self, offset: int, count: int) -> bytes:
        self._buf = os.pread(self._fd, count, offset)
        self._buf_start = offset
        return self._buf

    def is_torn_tail(self, offset: int, bad: _Read, stop: Stop | None = None) -> bool:
        """Whether a short or bad record at ``offset`` is a write cut short (by a crash, or still
        in progress) at the very end of the file rather than damage: nothing after it is a
        record, and either its frame reaches exactly to the end of the file, or the file ends
        inside it, or everything from it on is zeros (file systems may extend a file with zeros
        before the data lands). A damaged length that points past the end of the file looks
        like a short record; the valid records that follow it tell it apart.

        The scan for them is linear in the bytes after ``offset``, and run once for a file of
        the same size: a reader polling in front of a crash's torn tail does not repeat it."""
        size = self.size()
        if bad.kind == _BAD and bad.end == size and bad.reason.startswith("checksum"):
            return True
        if bad.kind not in (_BAD, _SHORT):
            return False
        if bad.kind == _BAD and not self._zeros_from(offset, size):
            return False
        if self._torn is not None and self._torn[:2] == (offset, size):
            return self._torn[2]
        torn = self.first_record_after(offset, stop) is None
        self._torn = (offset, size, torn)
        return torn

    def at_log_end(self, offset: int, read: _Read, writing: Callable[[], bool] | None = None,
                   stop: Stop | None = None) -> _Read:
        """For a record at ``offset`` of the newest segment that is not valid (``read``): the
        read itself when it is the end of the log (nothing there, a record being written, or a
        torn tail), the record when it has become valid since (a reader racing a write in
        progress may see a later page of the write before an earlier one), else
        :class:`BinlogCorruptError`.

        A record the file ends inside while ``writing()`` (a SegmentWriter holds the directory)
        is a write in progress: the writer checked the segment when it opened it and is the only
        one appending, so the record is returned as not yet written without scanning the bytes
        after it, however large it is."""
        if read.kind == _EOF:
            return read
        if read.kind == _SHORT and writing is not None and writing():
            return read
        if self.is_torn_tail(offset, read, stop):
            return read
        self.invalidate()
        again = self.read_at(offset)
        if again.kind == _OK:
            return again
        raise BinlogCorruptError(self.path, offset, read.reason + " (valid records follow it)")

    def _zeros_from(self, position: int, size: int) -> bool:
        while position < size:
            chunk = os.pread(self._fd, min(_READ_CHUNK, size - position), position)
            if not chunk or chunk.count(0) != len(chunk):
                return False
            position += len(chunk)
        return True

    def first_record_after(self, offset: int, stop: Stop | None = None) -> int | None:
        """The offset of the first complete, checksummed record that starts after ``offset``
        (a resynchronisation scan, only run where the record at ``offset`` is not valid), in
        time linear in the bytes after it (see :mod:`.resync`). Raises ``ResyncStopped`` when
        ``stop`` says so before it is done."""
        start = offset + 1
        data = os.pread(self._fd, max(0, self.size() - start), start)
        found = first_valid_frame(data, MAX_RECORD_BYTES, stop)
        return None if found is None else start + found


class RawRecord(NamedTuple):
    """A record as stored: its position, the serialized event, the position after it."""

    position: Position
    payload: bytes
    next: Position


# The region id of events that belong to no region (DDL): delivered whatever the region filter.
NO_REGION = 0


def _runs_of(record: RawRecord, region_ids: frozenset[int], directory: Path) -> list[RawRecord]:
    """A record of no region as a region-filtered read gives it: an event of many regions as the
    single-region events of its runs of ``region_ids`` (binlog/region_runs.py), each but the last
    continuing at the record itself (reading on from one gives the others again: a reader skips
    a region's events at or below the index it applied); any other (DDL) as it is."""
    event = binlog_pb2.Event.FromString(record.payload)
    if not region_runs.has_runs(event):
        return [record]
    try:
        runs = [e for e in region_runs.split(event) if e.region_id in region_ids]
    except BinlogError as exc:  # a malformed event of many regions: corruption at its place
        raise BinlogCorruptError(segment_path(directory, record.position.segment), record.position.offset,
                                 f"the checksum matches but the payload is a malformed event ({exc})") from None
    return [RawRecord(record.position, e.SerializeToString(), record.next if i == len(runs) - 1 else record.position)
            for i, e in enumerate(runs)]


def region_of(payload: bytes) -> int:
    """The ``region_id`` of a serialized Event without parsing all of it.

    region_id is field 1, a varint; encoders write known fields in field-number order, so when
    it is set the payload starts with its tag 0x08. Any other layout is parsed in full.
    """
    if payload[:1] == b"\x08":
        value, shift = 0, 0
        for i in range(1, min(len(payload), 11)):
            byte = payload[i]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
    return int(binlog_pb2.Event.FromString(payload).region_id)  # DecodeError: not an Event


# ---------------------------------------------------------------------------------------------
# Directory-level facts: head, tail, segments, retention.


@dataclass(frozen=True)
class SegmentInfo:
    number: int
    path: Path
    size: int  # bytes, header included

    @property
    def first(self) -> Position:
        return Position(self.number, HEADER_BYTES)


def segments(directory: Path | str) -> list[SegmentInfo]:
    directory = Path(directory)
    infos = []
    for number in list_segments(directory):
        path = segment_path(directory, number)
        try:
            infos.append(SegmentInfo(number, path, path.stat().st_size))
        except FileNotFoundError:  # pruned while listing
            continue
    return infos


def tail(directory: Path | str) -> Position:
    """The oldest readable position (where a reader without a position starts)."""
    numbers = list_segments(directory)
    return Position(numbers[0] if numbers else 1, HEADER_BYTES)


def writer_active(directory: Path | str) -> bool:
    """Whether a :class:`SegmentWriter` holds ``directory`` now (in any process): its LOCK file
    is flock()ed. Probed with a shared lock released at once (a writer opening the directory
    meanwhile retries for ``LOCK_RETRY_S``); no LOCK file, or one that cannot be locked, means
    no writer. A reader uses it to tell a record being written from a torn tail or damage."""
    try:
        fd = os.open(Path(directory) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # (releases the probe's lock)
    return False


class HeadTracker:
    """Finds the head of a directory (the position just after its last complete record),
    checking only the bytes appended since the previous call."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._file: _SegmentFile | None = None
        self._offset = HEADER_BYTES

    def head(self) -> Position:
        numbers = list_segments(self.directory)
        if not numbers:
            return Position(1, HEADER_BYTES)
        newest = numbers[-1]
        if self._file is None or self._file.number != newest:
            self.close()
            self._file = _SegmentFile(segment_path(self.directory, newest), newest)
            self._offset = HEADER_BYTES
        while True:
            run = self._file.read_run(self._offset, _SCAN_RUN)
            if run:
                self._offset = run[-1][2]
                continue
            self._file.invalidate()
            read = self._file.read_at(self._offset)
            if read.kind != _OK:
                read = self._file.at_log_end(self._offset, read, lambda: writer_active(self.directory))
            if read.kind == _OK:  # appended since the window was read
                self._offset = read.end
                continue
            return Position(newest, self._offset)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def head(directory: Path | str) -> Position:
    tracker = HeadTracker(directory)
    try:
        return tracker.head()
    finally:
        tracker.close()


def prune(directory: Path | str, before: Position) -> list[Path]:
    """Delete the whole segments that lie entirely before ``before`` (never the newest one),
    oldest first, and return their paths. Readers asking for a position in them afterwards get
    :class:`BinlogPositionGoneError`."""
    directory = Path(directory)
    numbers = list_segments(directory)
    deleted = []
    for number in numbers[:-1]:
        if number >= before.segment:
            break
        path = segment_path(directory, number)
        path.unlink(missing_ok=True)
        deleted.append(path)
    if deleted:
        fsync_directory(directory)
        log.info("binlog %s: pruned %d segment(s) before %s", directory, len(deleted), before)
    return deleted


# ---------------------------------------------------------------------------------------------
# The reader.


class _Positions:
    """The positions of records read in runs (segment, [offsets]), made one at a time."""

    def __init__(self, runs: list[tuple[int, list[int]]]) -> None:
        self._runs = runs

    def __getitem__(self, i: int) -> Position:
        for segment, offsets in self._runs:
            if i < len(offsets):
                return Position(segment, offsets[i])
            i -= len(offsets)
        raise IndexError(i)


class SegmentReader:
    """Reads events in log order from a position; iterating yields
    ``PositionedEvent(position, event, next)`` up to the current head and stops.

    ``read_batch`` never blocks; ``read`` waits (woken by an in-process writer, else polling
    every ``POLL_INTERVAL_S``). A short or torn record at the end of the newest segment is "not
    yet written": the reader stays in front of it. Corruption raises, never skips.
    """

    def __init__(self, directory: Path | str, position: Position | None = None) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise BinlogSourceError(f"binlog directory {self.directory} does not exist (or is not a directory)")
        self._signal = append_signal(self.directory)
        self._file: _SegmentFile | None = None
        self._damage_ahead = False  # the last read_batch stopped in front of a damaged record
        self.cut_short = False  # the last read of payloads stopped at READ_BYTES_MAX: more is there
        self._stop: threading.Event | None = None  # the stop of the read in progress
        self._position = self._resolve_start(position)

    @property
    def position(self) -> Position:
        """Where the next read starts (after every record returned so far)."""
        return self._position

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "SegmentReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[PositionedEvent]:
        while True:
            batch = self.read_batch(1024)
            if not batch:
                return
            yield from batch

    def _resolve_start(self, position: Position | None) -> Position:
        numbers = list_segments(self.directory)
        if position is None:
            return Position(numbers[0] if numbers else 1, HEADER_BYTES)
        segment, offset = Position(int(position[0]), int(position[1]))
        if segment < 1:
            raise BinlogPositionError(
                f"binlog position {position}: segments are numbered from 1; pass no position to "
                "start at the oldest available event"
            )
        offset = max(offset, HEADER_BYTES)  # 0 (or inside the header) = the segment's first record
        wanted = Position(segment, offset)
        if not numbers or segment > numbers[-1]:
            newest = numbers[-1] if numbers else 0
            if segment == newest + 1 and offset == HEADER_BYTES:
                return wanted  # the next segment's start: wait for it to be created
            raise BinlogPositionError(
                f"binlog position {position} is beyond the head of {self.directory} "
                f"(newest segment: {newest or 'none'}); is it a position of another binlog?"
            )
        if segment < numbers[0]:
            raise BinlogPositionGoneError(position, Position(numbers[0], HEADER_BYTES), str(self.directory))
        if segment not in numbers:
            raise BinlogCorruptError(segment_path(self.directory, segment), 0, "the segment file is missing")
        self._check_boundary(wanted)
        return wanted

    def _check_boundary(self, wanted: Position) -> None:
        """Walk the records of the segment to make sure ``wanted`` starts one (stepping over a
        damaged record by its length: resuming after it is allowed)."""
        file = self._open(wanted.segment)
        assert file is not None
        offset = HEADER_BYTES
        while offset < wanted.offset:
            steps = [(start, end) for start, _, end in file.read_run(offset, _SCAN_RUN)]
            if not steps:
                read = file.read_at(offset, verify=False)
                file.invalidate()
                if read.kind != _OK:
                    raise BinlogPositionError(
                        f"binlog position {wanted} is beyond the last complete record of {file.path} "
                        f"(which ends at offset {offset}); is it a position of another binlog?"
                    )
                steps = [(offset, read.end)]
            for start, end in steps:
                if end > wanted.offset:
                    raise BinlogPositionError(
                        f"binlog position {wanted} falls inside the record at offset {start} of {file.path} "
                        f"(next record at {end}); positions must be record boundaries"
                    )
                offset = end
                if offset == wanted.offset:
                    break

    def _open(self, segment: int) -> _SegmentFile | None:
        if self._file is not None and self._file.number == segment:
            return self._file
        self.close()
        try:
            self._file = _SegmentFile(segment_path(self.directory, segment), segment)
        except FileNotFoundError:
            return None
        return self._file

    def read_batch(self, max_records: int) -> list[PositionedEvent]:
        """Up to ``max_records`` events available now (possibly none). A damaged record raises
        once the events before it are returned: the position stays in front of it."""
        return self._parsed(self.read_raw_batch(max_records))

    def read_raw_batch(self, max_records: int) -> list[RawRecord]:
        """``read_batch`` without parsing the events (their payloads are checksummed bytes)."""
        out: list[RawRecord] = []
        self._damage_ahead = False
        while len(out) < max_records:
            segment = self._position.segment
            file = self._open(segment)
            if file is not None:
                run = file.read_run(self._position.offset, max_records - len(out))
                if run:
                    # tuple.__new__ skips NamedTuple's slower constructor (this is per event);
                    # each record's next position is the following record's start object.
                    start = self._position
                    for _, payload, end in run:
                        after = _new_tuple(Position, (segment, end))
                        out.append(_new_tuple(RawRecord, (start, payload, after)))
                        start = after
                    self._position = start
                    continue
            try:  # the end of a segment, a record being written, damage: one at a time
                record = self._next_raw()
            except BinlogError:
                if out:
                    self._damage_ahead = True
                    break
                raise
            if record is None:
                break
            out.append(record)
        return out

    def read(
        self,
        max_records: int,
        timeout_s: float,
        region_ids: frozenset[int] | None = None,
        stop: threading.Event | None = None,
        eager: bool = False,
    ) -> list[PositionedEvent]:
        """Up to ``max_records`` events of ``region_ids`` (None = all; DDL events always), waiting for new ones
        until ``timeout_s`` passes or ``stop`` is set; returns what it has then (maybe none).

        ``eager`` returns as soon as there is anything to report: an event, or a position that
        moved past filtered-out events or into the next segment (see ``position``)."""
        return self._parsed(self.read_raw(max_records, timeout_s, region_ids, stop, eager))

    def read_raw(
        self,
        max_records: int,
        timeout_s: float,
        region_ids: frozenset[int] | None = None,
        stop: threading.Event | None = None,
        eager: bool = False,
    ) -> list[RawRecord]:
        """``read`` without parsing the events."""
        self._stop = stop
        try:
            return self._read_raw(max_records, timeout_s, region_ids, stop, eager)
        finally:
            self._stop = None

    def _read_raw(
        self,
        max_records: int,
        timeout_s: float,
        region_ids: frozenset[int] | None,
        stop: threading.Event | None,
        eager: bool,
    ) -> list[RawRecord]:
        deadline = time.monotonic() + timeout_s
        out: list[RawRecord] = []
        start = self._position
        while True:
            seen = self._signal.generation
            wanted = max_records - len(out)
            batch = self.read_raw_batch(wanted)
            if region_ids is None:
                out.extend(batch)
            else:
                for record in batch:
                    try:
                        region = region_of(record.payload)
                    except DecodeError:
                        self._position = record.position  # stay in front of it: _parsed raises
                        return out + [record]
                    if region in region_ids:
                        out.append(record)
                    elif region == NO_REGION:  # DDL (every reader needs it), or the rows of many regions
                        out.extend(_runs_of(record, region_ids, self.directory))
            if len(out) >= max_records or (eager and (out or self._position != start)) or self._damage_ahead:
                return out  # (with damage ahead: the next call raises)
            if len(batch) == wanted:
                continue  # not at the head: some events were filtered out, read on
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                return out
            self._signal.wait(seen, min(remaining, POLL_INTERVAL_S))

    def read_decoded(
        self,
        max_records: int,
        timeout_s: float,
        region_ids: frozenset[int] | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[EventBatch, Position] | None:
        """``read`` decoded at once (``event_batch.decode_events``): the events and the
        position after the last one, or None when there is none. A payload that is not an Event
        is corruption as in ``read``: the events before it are returned, the next read raises."""
        from pyspark_theflash.binlog.event_batch import decode_events

        if region_ids is not None:  # filtered by region: read as ``read`` does
            records = self.read_raw(max_records, timeout_s, region_ids, stop)
            payloads = [r.payload for r in records]
            positions: list[Position] | _Positions = [r.position for r in records]
        else:
            payloads, positions = self._read_payloads(max_records, timeout_s, stop)
        if not payloads:
            return None
        end = self._position
        batch = decode_events(payloads)
        for i in batch.parsed_indices().tolist():
            try:
                batch[i]
            except (DecodeError, BinlogError) as exc:  # not an Event, or an event of many regions that is malformed
                source = int(batch.sources[i])
                at = positions[source]
                what = "not an Event" if isinstance(exc, DecodeError) else "a malformed event"
                error = BinlogCorruptError(segment_path(self.directory, at.segment), at.offset,
                                           f"the checksum matches but the payload is {what} ({exc})")
                if source == 0:
                    self._position = at
                    raise error from None
                self._position = end = at  # stay in front of it: the next read raises
                self._damage_ahead = True
                batch = decode_events(payloads[:source])
                break
        return batch, end

    def _read_payloads(self, max_records: int, timeout_s: float, stop: threading.Event | None
                       ) -> tuple[list[bytes], "_Positions"]:
        """``read_raw`` of every region, as payloads and their positions (made only when asked
        for: an error names one)."""
        self._stop = stop
        try:
            return self._read_payloads_until(max_records, timeout_s, stop)
        finally:
            self._stop = None

    def _read_payloads_until(self, max_records: int, timeout_s: float, stop: threading.Event | None
                             ) -> tuple[list[bytes], "_Positions"]:
        deadline = time.monotonic() + timeout_s
        payloads: list[bytes] = []
        runs: list[tuple[int, list[int]]] = []
        self._damage_ahead = False
        self.cut_short = False
        size = 0
        while True:
            seen = self._signal.generation
            while len(payloads) < max_records:
                if size >= READ_BYTES_MAX:  # more may be there: the caller reads again at once
                    self.cut_short = True
                    break
                segment = self._position.segment
                file = self._open(segment)
                if file is not None:
                    starts: list[int] = []
                    before = len(payloads)
                    end = file.read_payloads(self._position.offset, max_records - len(payloads), payloads, starts,
                                             READ_BYTES_MAX - size, views=True)
                    if starts:
                        size += sum(map(len, payloads[before:]))
                        runs.append((segment, starts))
                        self._position = Position(segment, end)
                        continue
                try:  # the end of a segment, a record being written, damage: one at a time
                    record = self._next_raw()
                except BinlogError:
                    if payloads:
                        self._damage_ahead = True
                        break
                    raise
                if record is None:
                    break
                payloads.append(record.payload)
                size += len(record.payload)
                runs.append((record.position.segment, [record.position.offset]))
            if len(payloads) >= max_records or self._damage_ahead or self.cut_short:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                break
            self._signal.wait(seen, min(remaining, POLL_INTERVAL_S))
        return payloads, _Positions(runs)

    def _parsed(self, records: list[RawRecord]) -> list[PositionedEvent]:
        out = []
        for i, record in enumerate(records):
            try:
                event = binlog_pb2.Event.FromString(record.payload)
            except DecodeError as exc:
                error = BinlogCorruptError(
                    segment_path(self.directory, record.position.segment), record.position.offset,
                    f"the checksum matches but the payload is not an Event ({exc})",
                )
                if i == 0:
                    raise error from None
                self._position = record.position  # stay in front of it: the next read raises
                self._damage_ahead = True
                break
            out.append(_new_tuple(PositionedEvent, (record.position, event, record.next)))
        return out

    def wake(self) -> None:
        """Wake every reader of this directory waiting in ``read`` (used on shutdown)."""
        self._signal.notify()

    def _next_raw(self) -> RawRecord | None:
        while True:
            segment, offset = self._position
            file = self._open(segment)
            if file is None:
                self._check_missing(segment)
                return None  # the next segment is not created yet
            file.invalidate()  # classify by the file's bytes now, not by a window read earlier
            read = file.read_at(offset)
            if read.kind != _OK:
                file.invalidate()
                if not any(n > segment for n in list_segments(self.directory)):
                    stop = self._stop
                    try:
                        read = file.at_log_end(offset, read, lambda: writer_active(self.directory),
                                               None if stop is None else stop.is_set)
                    except ResyncStopped:
                        return None  # stopping: whether it is a torn tail or damage can wait
                    if read.kind != _OK:
                        return None  # at the head, or in front of a record still being written
                else:
                    # A newer segment exists, so this one was complete before it was created:
                    # read once more to see records appended just before the rotation.
                    read = file.read_at(offset)
                    if read.kind == _EOF:
                        self._position = Position(segment + 1, HEADER_BYTES)
                        continue
                    if read.kind == _SHORT:
                        raise BinlogTruncatedError(
                            file.path, offset, f"{read.reason}, but newer segments follow (lost bytes)"
                        )
                    if read.kind == _BAD:
                        raise BinlogCorruptError(file.path, offset, read.reason)
            start = Position(segment, offset)
            self._position = Position(segment, read.end)
            return RawRecord(start, read.payload, self._position)

    def _check_missing(self, segment: int) -> None:
        numbers = list_segments(self.directory)
        if numbers and numbers[0] > segment:
            raise BinlogPositionGoneError(
                self._position, Position(numbers[0], HEADER_BYTES), f"{self.directory} (pruned while reading)"
            )
        if numbers and numbers[-1] > segment:
            raise BinlogCorruptError(segment_path(self.directory, segment), 0, "the segment file is missing")


# ---------------------------------------------------------------------------------------------
# The writer.


class SegmentWriter:
    """Appends events to a binlog directory; thread-safe; one per directory (flock).

    ``fsync="rotate"`` (default) makes a segment durable when it is sealed and on ``sync()``
    and ``close()``; ``fsync="always"`` also after every ``append``. Either way every append
    reaches the OS before it returns, so readers in other processes see it at once.
    """

    def __init__(
        self,
        directory: Path | str,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: FsyncPolicy = "rotate",
    ) -> None:
        if fsync not in ("always", "rotate"):
            raise ValueError(f"fsync policy must be 'always' or 'rotate', not {fsync!r}")
        if segment_bytes <= HEADER_BYTES + FRAME_BYTES:
            raise ValueError(f"segment_bytes={segment_bytes} leaves no room for a record")
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.directory.mkdir(parents=True, exist_ok=True)
        self._mutex = threading.Lock()
        self._signal = append_signal(self.directory)
        self._lock_fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_RETRY_S
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:  # maybe a reader probing (writer_active)
                    time.sleep(0.005)
                    continue
            os.close(self._lock_fd)
            raise BinlogLockedError(
                f"binlog directory {self.directory} is held by another SegmentWriter "
                f"(see {self.directory / LOCK_NAME}); only one writer may append"
            ) from None
        self._fd = -1
        try:
            numbers = list_segments(self.directory)
            if numbers:
                self._segment, self._size = self._recover(numbers[-1])
                if segment_format_version(self.directory, self._segment) < FORMAT_VERSION:
                    # what this code appends may be of the newer form (an event of many regions):
                    # never into a segment whose header promises an older reader it can read it
                    fd = os.open(segment_path(self.directory, self._segment), os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    self._segment, self._size = self._create_segment(self._segment + 1), HEADER_BYTES
            else:
                self._segment, self._size = self._create_segment(1), HEADER_BYTES
            self._fd = os.open(segment_path(self.directory, self._segment), os.O_WRONLY | os.O_APPEND)
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _recover(self, number: int) -> tuple[int, int]:
        """Find the end of the last complete record of the newest segment; truncate a torn tail."""
        file = _SegmentFile(segment_path(self.directory, number), number)
        try:
            offset = HEADER_BYTES
            while True:
                run = file.read_run(offset, _SCAN_RUN)
                if run:
                    offset = run[-1][2]
                    continue
                file.invalidate()
                read = file.read_at(offset)
                if read.kind == _OK:
                    offset = read.end
                    continue
                if read.kind == _EOF:
                    return number, offset
                if not file.is_torn_tail(offset, read):
                    raise BinlogCorruptError(file.path, offset, read.reason + " (followed by more data)")
                size = file.size()
                break
        finally:
            file.close()
        log.warning(
            "binlog %s: torn tail at offset %d (%s); truncating %d byte(s) a crash left mid-write",
            file.path, offset, read.reason, size - offset,
        )
        os.truncate(file.path, offset)
        fd = os.open(file.path, os.O_WRONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return number, offset

    def _create_segment(self, number: int) -> int:
        final = segment_path(self.directory, number)
        temporary = final.with_name(final.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, encode_header(number))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, final)
        fsync_directory(self.directory)
        return number

    @property
    def head(self) -> Position:
        """The position just after the last appended event."""
        with self._mutex:
            return Position(self._segment, self._size)

    @property
    def tail(self) -> Position:
        return tail(self.directory)

    def segments(self) -> list[SegmentInfo]:
        return segments(self.directory)

    def append(self, events: Iterable[binlog_pb2.Event | bytes]) -> Position:
        """Append events (or already serialized events) in order, contiguously even when other
        threads append; returns the position just after the last one."""
        # Frames and payloads go to the file as they are (writev): no copy of a payload into
        # its record, nor of the records into one buffer (capture appends ~32 MiB at a time).
        payloads = [e if isinstance(e, bytes) else e.SerializeToString() for e in events]
        frames = [record_frame(p) for p in payloads]
        with self._mutex:
            self._check_open()
            pending: list[bytes] = []
            pending_bytes = 0
            for frame, payload in zip(frames, payloads):
                used = self._size + pending_bytes
                size = FRAME_BYTES + len(payload)
                if used + size > self.segment_bytes and used > HEADER_BYTES:
                    self._write(pending)
                    pending, pending_bytes = [], 0
                    self._rotate()
                pending += (frame, payload)
                pending_bytes += size
            if pending:
                self._write(pending)
                if self.fsync == "always":
                    os.fdatasync(self._fd)
            end = Position(self._segment, self._size)
        if payloads:
            self._signal.notify()
        return end

    def _write(self, parts: list[bytes]) -> None:
        """``parts`` one after the other at the end of the segment (all of them, or none: a
        failed write is cut off)."""
        total = sum(map(len, parts))
        written = 0
        at, skip = 0, 0  # the first part not wholly written, and how much of it is
        try:
            while written < total:
                batch: list[bytes | memoryview] = [memoryview(parts[at])[skip:], *parts[at + 1:at + _IOV_MAX]]
                n = os.writev(self._fd, batch)
                written += n
                n += skip
                while at < len(parts) and n >= len(parts[at]):
                    n -= len(parts[at])
                    at += 1
                skip = n
        except BaseException:
            # Leave no partial record behind (e.g. the disk filled up): readers would wait
            # in front of it and the next append would land after it.
            os.ftruncate(self._fd, self._size)
            raise
        self._size += written

    def _rotate(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._segment = self._create_segment(self._segment + 1)
        self._size = HEADER_BYTES
        self._fd = os.open(segment_path(self.directory, self._segment), os.O_WRONLY | os.O_APPEND)

    def sync(self) -> None:
        """Make everything appended so far durable."""
        with self._mutex:
            self._check_open()
            os.fsync(self._fd)

    def prune(self, before: Position) -> list[Path]:
        with self._mutex:
            return prune(self.directory, before)

    def _check_open(self) -> None:
        if self._fd < 0:
            raise BinlogError(f"the SegmentWriter of {self.directory} is closed")

    def close(self) -> None:
        with self._mutex:
            if self._fd < 0:
                return
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1
                os.close(self._lock_fd)

    def __enter__(self) -> "SegmentWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
