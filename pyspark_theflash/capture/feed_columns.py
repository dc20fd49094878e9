"""TiKV's change feed as columns: a ``cdcpb.ChangeDataEvent``'s wire bytes decoded in one pass
(``_native/cdc_wire.c``, built by the install step) into per-row arrays, and a registration's
live rows matched and turned into the binlog's ``RowBatch`` columns in C — no Python object per
row (DESIGN.md section 6).

The rules are those of ``RegionFeed._live`` (capture/region_feed.py), row for row, in feed order:

* a COMMIT or COMMITTED at or below the resolved ts already written breaks the feed's contract
  (``FeedProtocolError``);
* a PREWRITE of a Put or Delete opens its (key, start ts) and is written with its value (none
  for a Delete); a PREWRITE of any other op (Lock, pessimistic) is not a row;
* a COMMIT must find its (key, start ts) open — opened by a PREWRITE earlier in the feed,
  in this message or one before, or by the lock of the registration's snapshot — and closes it;
  one that does not is ``FeedProtocolError``. TiKV's COMMIT row carries the value only for a
  short value; the replica takes it from its PREWRITE, so none is written;
* a ROLLBACK closes an open (key, start ts) and is written; one of a lock the replica never had
  is not;
* a COMMITTED of a Put or Delete (1PC) is written with its value.

The open (key, start ts) pairs of a registration are a hash set in C (``OpenSet``): matching is
one probe per row, in order, so it is exact whatever a message holds (a pair prewritten and
committed in the same poll, a retried PREWRITE, a ROLLBACK after a COMMIT). Why C and not
NumPy: the same rules as array operations (sort the rows by pair, compare neighbours, look the
first of each group up in the open set) took some 40 NumPy/Arrow calls per region per message,
about 0.55 ms, which held capture near 130k committed rows/s; in C a message's rows of a region
cost a few microseconds plus about 20 ns a row (bench/capture_ceiling.py; docs/capture.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias, TypedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash._native import load as _load_native
from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.proto import binlog_pb2

if TYPE_CHECKING:  # the compiled module is loaded by name (a clear error when it is not built); its types: cdc_wire.pyi
    from typing_extensions import Buffer

    from pyspark_theflash._native import cdc_wire as _wire

    # A message's rows as the 8 buffers ``match_live`` reads (``row_buffers``): types, ops, start
    # ts, commit ts, key offsets (int32), key bytes, value offsets (int32), value bytes.
    RowBuffers: TypeAlias = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, Buffer,
                                  np.ndarray, Buffer]
else:
    _wire = _load_native("cdc_wire")

# cdcpb Event.LogType, Event.Row.OpType
UNKNOWN, PREWRITE, COMMIT, ROLLBACK, COMMITTED, INITIALIZED = 0, 1, 2, 3, 4, 5
OP_PUT, OP_DELETE = 1, 2
# the Event oneof's field numbers, as cdc_wire reports an event's kind
KIND_ENTRIES, KIND_ADMIN, KIND_ERROR = 3, 4, 5

# cdcpb LogType -> binlog Row.Type (255: not a binlog row type)
_TYPE = np.full(256, 255, np.uint8)
_TYPE[[PREWRITE, COMMIT, ROLLBACK, COMMITTED]] = [binlog_pb2.Row.PREWRITE, binlog_pb2.Row.COMMIT,
                                                  binlog_pb2.Row.ROLLBACK, binlog_pb2.Row.COMMITTED]
_OP = np.zeros(256, np.uint8)
_OP[[OP_PUT, OP_DELETE]] = [binlog_pb2.PUT, binlog_pb2.DELETE]
_TYPE_MAP, _OP_MAP = _TYPE.tobytes(), _OP.tobytes()  # as match_live takes them


@dataclass(frozen=True)
class FeedRows:
    """Rows of a change feed as columns (cdcpb's own codes), in feed order."""

    types: np.ndarray      # uint8 cdcpb LogType
    ops: np.ndarray        # uint8 cdcpb OpType
    start_ts: np.ndarray   # uint64
    commit_ts: np.ndarray  # uint64
    keys: pa.BinaryArray
    values: pa.BinaryArray

    def __len__(self) -> int:
        return len(self.types)

    def slice(self, lo: int, hi: int) -> "FeedRows":
        """Rows lo..hi, without a copy."""
        return FeedRows(self.types[lo:hi], self.ops[lo:hi], self.start_ts[lo:hi], self.commit_ts[lo:hi],
                        self.keys.slice(lo, hi - lo), self.values.slice(lo, hi - lo))

    def take(self, which: np.ndarray) -> "FeedRows":
        idx = binlog_rows.arrow_positions(which)
        return FeedRows(self.types[which], self.ops[which], self.start_ts[which], self.commit_ts[which],
                        self.keys.take(idx), self.values.take(idx))


@dataclass(frozen=True)
class FeedMessage:
    """One decoded ``ChangeDataEvent``: ``events`` rows of (region_id, index, request_id, kind,
    row_lo, row_hi, byte_lo, byte_hi) — an entries event's rows are ``rows[row_lo:row_hi]``,
    any event's own bytes ``raw[byte_lo:byte_hi]`` — and the ``resolved_ts`` message's bytes."""

    raw: bytes
    events: np.ndarray  # (n, 8) uint64
    rows: FeedRows
    resolved: tuple[int, int] | None
    buffers: RowBuffers  # the rows as ``row_buffers`` gives them, as the decoder wrote them

    def row_buffers(self) -> RowBuffers:
        return self.buffers

    def event_bytes(self, i: int) -> bytes:
        return self.raw[int(self.events[i, 6]):int(self.events[i, 7])]

    def resolved_bytes(self) -> bytes | None:
        return None if self.resolved is None else self.raw[self.resolved[0]:self.resolved[1]]


def decode_change_data(raw: bytes) -> FeedMessage:
    """A ``cdcpb.ChangeDataEvent``'s wire bytes -> :class:`FeedMessage` (ValueError if malformed)."""
    (n_ev, ev, n, types, ops, start, commit, koff, kdata, voff, vdata, rlo, rhi) = _wire.decode(raw)
    keys = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(koff), pa.py_buffer(kdata)])
    values = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(voff), pa.py_buffer(vdata)])
    rows = FeedRows(np.frombuffer(types, np.uint8), np.frombuffer(ops, np.uint8), np.frombuffer(start, "<u8"),
                    np.frombuffer(commit, "<u8"), keys, values)
    buffers: RowBuffers = (rows.types, rows.ops, rows.start_ts, rows.commit_ts, np.frombuffer(koff, np.int32), kdata,
                           np.frombuffer(voff, np.int32), vdata)
    return FeedMessage(raw, np.frombuffer(ev, "<u8").reshape(n_ev, 8), rows, None if rlo < 0 else (rlo, rhi), buffers)


def record_table_ids(keys: pa.BinaryArray) -> np.ndarray:
    """Per key, the table id of a record key (``t{id}_r...``), or a value below every table id
    (-2**63) for any other key — vectorised ``capture._record_table_id``."""
    n = len(keys)
    offsets = np.frombuffer(keys.buffers()[1], np.int32)[keys.offset:keys.offset + n + 1]
    data_buf = keys.buffers()[2]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    starts = offsets[:-1].astype(np.int64)
    ok = (offsets[1:] - offsets[:-1]) >= 19
    at = np.where(ok, starts, 0)
    if not len(data):
        return np.full(n, np.iinfo(np.int64).min, np.int64)
    ok &= (data[at] == ord("t")) & (data[at + 9] == ord("_")) & (data[at + 10] == ord("r"))
    tid = np.zeros(n, np.uint64)
    for i in range(1, 9):
        tid = (tid << np.uint64(8)) | data[np.where(ok, at + i, 0)].astype(np.uint64)
    tid = (tid ^ np.uint64(1 << 63)).view(np.int64)
    return np.where(ok, tid, np.iinfo(np.int64).min)


OpenSet = _wire.OpenSet  # a registration's open (key, start ts) pairs, in C (match_live)


def binlog_ops(ops: np.ndarray) -> np.ndarray:
    """cdcpb OpType -> binlog OpType (PUT for Put, DELETE for Delete; 0 for any other)."""
    mapped: np.ndarray = _OP[ops]
    return mapped


def first_versions(keys: pa.BinaryArray, commit_ts: np.ndarray) -> np.ndarray | None:
    """Positions of the first row of each (key, commit ts), in order; None when no two rows
    share one. TiKV's initial scan gives a region's versions in key order, so that is checked
    first (two comparisons of neighbours, no hashing); only a feed out of that order (live rows
    during the scan) is sorted to find them."""
    n = len(keys)
    if n < 2:
        return None
    head, tail = keys.slice(0, n - 1), keys.slice(1)
    if pc.all(pc.less_equal(head, tail)).as_py():
        same_key = binlog_rows.numpy_mask(pc.equal(head, tail))
        if not same_key.any():
            return None
        a, b = commit_ts[:-1][same_key], commit_ts[1:][same_key]
        if (a > b).all() or (a < b).all():  # each key's versions strictly ordered: none twice
            return None
    cts = np.ascontiguousarray(commit_ts, np.uint64)  # (as Arrow without pa.array: binlog_rows.arrow_positions)
    sorted_at = pc.sort_indices(pa.table({"k": keys, "c": pa.Array.from_buffers(pa.uint64(), n, [None, pa.py_buffer(cts)]),
                                          "i": binlog_rows.arrow_positions(np.arange(n))}),
                                [("k", "ascending"), ("c", "ascending"), ("i", "ascending")])
    # (its uint64 buffer as it is: to_numpy imports pandas)
    order = np.frombuffer(sorted_at.buffers()[1], np.uint64, n, sorted_at.offset * 8).astype(np.int64)
    sk = keys.take(binlog_rows.arrow_positions(order))
    dup = np.zeros(n, bool)
    dup[1:] = binlog_rows.numpy_mask(pc.equal(sk.slice(0, n - 1), sk.slice(1))) & \
        (commit_ts[order[:-1]] == commit_ts[order[1:]])
    if not dup.any():
        return None
    return np.sort(order[~dup])


@dataclass(frozen=True)
class ScanEvents:
    """A message's events read as an initial scan's (``scan_events``), for all of them at once:
    per event whether every row is a *plain version* — a record key's COMMITTED Put or Delete,
    which ``RegionFeed.take_initial_columns`` keeps as it is (no INITIALIZED, no lock, no live
    row) — and whether its keys ascend strictly; per row the binlog op and the value a version
    holds (none for a Delete). An initial copy sends a region's versions an event at a time:
    asked per event, these were a dozen array operations per region."""

    plain: bytes      # per event: 1 where every row is a plain version
    ascending: bytes  # per event: 1 where its keys ascend strictly (no version twice)
    ops: np.ndarray   # per row: binlog OpType (binlog_ops)
    values: pa.BinaryArray  # per row: its value, empty for a Delete


def scan_events(msg: FeedMessage) -> ScanEvents:
    """``ScanEvents`` of a decoded message: the events' flags in one pass over its rows in C
    (``_native/cdc_wire.c`` scan_events), the ops and values as arrays."""
    plain, ascending = _wire.scan_events(msg.buffers, msg.events)
    rows = msg.rows
    ops = binlog_ops(rows.ops)
    values = rows.values
    if (rows.ops == OP_DELETE).any():  # a DELETE's version holds no value
        values = pc.if_else(binlog_rows.arrow_mask(ops == binlog_pb2.PUT), values, EMPTY_VALUE)
    return ScanEvents(plain, ascending, ops, values)


# a Delete's value (an Arrow scalar made without pa.scalar, which imports pandas)
EMPTY_VALUE = pa.BinaryArray.from_buffers(pa.binary(), 1, [None, pa.py_buffer(bytes(8)), pa.py_buffer(b"")])[0]


class LiveFeedError(Exception):
    """What ``match_live`` found broken, with the row's key and ts for the message."""


def row_buffers(rows: FeedRows) -> RowBuffers:
    """The rows' columns as the 8 buffers ``match_live`` reads (positions 0..len-1 in each; no copy
    of a decoded message's columns)."""
    n = len(rows)

    def binary(arr: pa.BinaryArray) -> tuple[np.ndarray, Buffer]:
        offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset:arr.offset + n + 1] if n else \
            np.zeros(1, np.int32)
        data = arr.buffers()[2]
        return np.ascontiguousarray(offsets), (data if data is not None else b"")

    koff, kdata = binary(rows.keys)
    voff, vdata = binary(rows.values)
    return (np.ascontiguousarray(rows.types), np.ascontiguousarray(rows.ops), np.ascontiguousarray(rows.start_ts),
            np.ascontiguousarray(rows.commit_ts), koff, kdata, voff, vdata)


class RowBatchColumns(TypedDict):
    """Matched rows as arrays, the ``binlog.rows.pack_columns`` keywords (``LiveBatch.columns``)."""

    types: np.ndarray      # uint8 binlog Row.Type
    ops: np.ndarray        # uint8 binlog OpType
    start_ts: np.ndarray   # uint64
    commit_ts: np.ndarray  # uint64
    keys: pa.BinaryArray
    values: pa.BinaryArray


class LiveBatch:
    """A registration's matched live rows (``match_live``) as the binlog's ``RowBatch`` fields,
    in the bytes the C match wrote: an event is filled from them as they are (``fill``), with no
    array built and no column packed again per region and message. The columns as arrays
    (``keys``, ``commit_ts``, ``columns()``) are built on demand, for the rows a newer region or
    the table selection leaves out and for a coverage counting versions above its floor."""

    __slots__ = ("count", "types", "ops", "start_ts", "commit_ts_bytes", "key_offsets", "key_data",
                 "value_offsets", "value_data", "max_commit_ts", "_keys", "_commit_ts")

    def __init__(self, count: int, types: bytes, ops: bytes, start_ts: bytes, commit_ts: bytes, key_offsets: bytes,
                 key_data: bytes, value_offsets: bytes, value_data: bytes, max_commit_ts: int) -> None:
        self.count, self.types, self.ops, self.start_ts = count, types, ops, start_ts
        self.commit_ts_bytes, self.key_offsets, self.key_data = commit_ts, key_offsets, key_data
        self.value_offsets, self.value_data, self.max_commit_ts = value_offsets, value_data, max_commit_ts
        self._keys: pa.BinaryArray | None = None
        self._commit_ts: np.ndarray | None = None

    @property
    def keys(self) -> pa.BinaryArray:
        if self._keys is None:
            self._keys = pa.Array.from_buffers(pa.binary(), self.count, [None, pa.py_buffer(self.key_offsets),
                                                                          pa.py_buffer(self.key_data)])
        return self._keys

    @property
    def commit_ts(self) -> np.ndarray:
        if self._commit_ts is None:
            self._commit_ts = np.frombuffer(self.commit_ts_bytes, np.uint64)
        return self._commit_ts

    def columns(self) -> RowBatchColumns:
        """The rows as ``binlog.rows.pack_columns`` keywords."""
        return {"types": np.frombuffer(self.types, np.uint8), "ops": np.frombuffer(self.ops, np.uint8),
                "start_ts": np.frombuffer(self.start_ts, np.uint64), "commit_ts": self.commit_ts, "keys": self.keys,
                "values": pa.Array.from_buffers(pa.binary(), self.count, [None, pa.py_buffer(self.value_offsets),
                                                                           pa.py_buffer(self.value_data)])}

    def fill(self, out: binlog_pb2.RowBatch) -> None:
        """Fill ``out`` (empty, inside its event) with these rows: what ``pack_columns`` writes
        for the same columns, byte for byte (a column zero in every row is left empty)."""
        out.count = self.count
        out.types, out.ops, out.start_ts = self.types, self.ops, self.start_ts
        out.key_offsets, out.key_data = self.key_offsets, self.key_data
        if self.max_commit_ts:
            out.commit_ts = self.commit_ts_bytes
        if len(self.value_data):
            out.value_offsets, out.value_data = self.value_offsets, self.value_data


def match_live(buffers: RowBuffers, spans: list[tuple[int, int]], open_set: OpenSet,
               resolved_ts: int) -> LiveBatch | None:
    """A registration's live rows — the record keys among ``spans`` of a message's rows
    (``row_buffers``) — matched in feed order against ``open_set`` (changed in place), as the
    binlog rows to write, or None when no row is written. In C (``_native/cdc_wire.c``): one
    probe of a hash set per row, no Python object per row. Raises :class:`LiveFeedError` where
    ``RegionFeed._live`` raises ``FeedProtocolError`` (the open set is then left part-way: the
    registration is dropped)."""
    out = _wire.match_live(open_set, buffers, spans, resolved_ts, _TYPE_MAP, _OP_MAP)
    if len(out) == 2:  # (code, row): the rows broke the feed's rules
        raise _live_error(buffers, out[0], out[1], resolved_ts)
    (_, _, rows, newest) = out
    if not rows[0]:
        return None
    return LiveBatch(*rows, int(newest))


@dataclass(frozen=True)
class LiveRuns:
    """Many registrations' live rows of one message (``match_live_many``): every slot's rows,
    one slot after another in ``rows``, ``counts`` and ``newest`` per slot (the greatest commit
    ts among them, 0 if none), and the slots whose rows broke the feed's rules, each with its
    ``LiveFeedError``."""

    rows: LiveBatch
    counts: np.ndarray  # int64 per slot
    newest: np.ndarray  # uint64 per slot
    errors: dict[int, LiveFeedError]


def match_live_many(buffers: RowBuffers, spans: np.ndarray, open_sets: tuple[OpenSet, ...],
                    resolved_ts: np.ndarray) -> LiveRuns:
    """``match_live`` for many registrations of one message in one call: ``spans`` an (n, 3)
    int64 array of (row_lo, row_hi, slot), a slot's spans together and in feed order, slot i's
    rows matched against ``open_sets[i]`` above ``resolved_ts[i]``. A slot whose rows break the
    rules has none written (``errors``); the other slots' rows are written as ever."""
    spans = np.ascontiguousarray(spans, dtype="<i8")
    resolved = np.ascontiguousarray(resolved_ts, dtype="<u8")
    rows, counts, newest, errors = _wire.match_live_many(open_sets, resolved, buffers, spans, _TYPE_MAP, _OP_MAP)
    newest_ts = np.frombuffer(newest, "<u8")
    batch = LiveBatch(*rows, int(newest_ts.max()) if len(newest_ts) else 0)
    return LiveRuns(batch, np.frombuffer(counts, "<i8"), newest_ts,
                    {int(slot): _live_error(buffers, code, row, int(resolved[slot])) for slot, code, row in errors})


def _live_error(buffers: RowBuffers, code: int, row: int, resolved_ts: int) -> LiveFeedError:
    key = bytes(memoryview(buffers[5])[int(buffers[4][row]):int(buffers[4][row + 1])]).hex()
    start, commit = int(buffers[2][row]), int(buffers[3][row])
    if code == 1:
        return LiveFeedError(f"a commit at {commit} of key {key} came after resolved ts {resolved_ts}")
    return LiveFeedError(f"COMMIT of key {key} at start ts {start} without its PREWRITE")
