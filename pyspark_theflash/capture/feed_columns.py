"""TiKV's change feed as columns: a ``cdcpb.ChangeDataEvent``'s wire bytes decoded in one pass
(``_native/cdc_wire.c``, built by the install step) into per-row arrays, and a registration's
live rows matched and turned into the binlog's ``RowBatch`` with array operations — no Python
object per row (DESIGN.md section 6).

The rules are those of ``RegionFeed._live`` (capture/region_feed.py), row for row:

* a COMMIT or COMMITTED at or below the resolved ts already written breaks the feed's contract
  (``FeedProtocolError``);
* a PREWRITE of a Put or Delete opens its (key, start ts) and is written with its value (none
  for a Delete); a PREWRITE of any other op (Lock, pessimistic) is not a row;
* a COMMIT must find its (key, start ts) open — opened by a PREWRITE earlier in the feed,
  in this batch or a poll before, or by the lock of the registration's snapshot — and closes it;
  one that does not is ``FeedProtocolError``. TiKV's COMMIT row carries the value only for a
  short value; the replica takes it from its PREWRITE, so none is written;
* a ROLLBACK closes an open (key, start ts) and is written; one of a lock the replica never had
  is not;
* a COMMITTED of a Put or Delete (1PC) is written with its value.

The open (key, start ts) pairs of a registration are an Arrow binary array of 8-byte big-endian
start ts + key. A batch's rows that name a pair are sorted by (pair, position): a row finds
the pair open exactly when the row before it in its group is a PREWRITE, or, first in its
group, when the pair was open before the batch. So one sort and one hash lookup decide every
row, whatever the batch holds (a pair prewritten and committed in the same poll, a retried
PREWRITE, a ROLLBACK after a COMMIT).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash._native import load as _load_native
from pyspark_theflash.proto import binlog_pb2

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
        idx = pa.array(which, pa.int64())
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
    return FeedMessage(raw, np.frombuffer(ev, "<u8").reshape(n_ev, 8), rows, None if rlo < 0 else (rlo, rhi))


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


def txn_keys(start_ts: np.ndarray, keys: pa.BinaryArray) -> pa.BinaryArray:
    """Per row, 8 bytes of big-endian start ts + the key: one binary value per (key, start ts)."""
    n = len(keys)
    offsets = np.frombuffer(keys.buffers()[1], np.int32)[keys.offset:keys.offset + n + 1].astype(np.int64)
    data_buf = keys.buffers()[2]
    data = np.frombuffer(data_buf, np.uint8)[offsets[0]:offsets[-1]] if data_buf is not None and n else \
        np.zeros(0, np.uint8)
    lens = offsets[1:] - offsets[:-1]
    out_off = np.zeros(n + 1, np.int64)
    np.cumsum(lens + 8, out=out_off[1:])
    out = np.empty(int(out_off[-1]), np.uint8)
    out[(out_off[:-1, None] + np.arange(8)).ravel()] = np.ascontiguousarray(
        start_ts.astype(">u8")).view(np.uint8)
    row_of = np.repeat(np.arange(n, dtype=np.int64), lens)
    out[np.arange(len(data), dtype=np.int64) + 8 * (row_of + 1)] = data
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(out_off.astype(np.int32)), pa.py_buffer(out)])


EMPTY_OPEN = pa.array([], pa.binary())


def open_pairs(pairs: list[tuple[bytes, int]]) -> pa.BinaryArray:
    """(key, start ts) pairs (a snapshot's locks) as the open set's values."""
    if not pairs:
        return EMPTY_OPEN
    return txn_keys(np.array([s for _, s in pairs], np.uint64), pa.array([k for k, _ in pairs], pa.binary()))


def binlog_ops(ops: np.ndarray) -> np.ndarray:
    """cdcpb OpType -> binlog OpType (PUT for Put, DELETE for Delete; 0 for any other)."""
    return _OP[ops]


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
        same_key = pc.equal(head, tail).to_numpy(zero_copy_only=False)
        if not same_key.any():
            return None
        a, b = commit_ts[:-1][same_key], commit_ts[1:][same_key]
        if (a > b).all() or (a < b).all():  # each key's versions strictly ordered: none twice
            return None
    order = pc.sort_indices(pa.table({"k": keys, "c": commit_ts, "i": np.arange(n)}),
                            [("k", "ascending"), ("c", "ascending"), ("i", "ascending")]).to_numpy()
    sk = keys.take(pa.array(order))
    dup = np.zeros(n, bool)
    dup[1:] = pc.equal(sk.slice(0, n - 1), sk.slice(1)).to_numpy(zero_copy_only=False) & \
        (commit_ts[order[:-1]] == commit_ts[order[1:]])
    if not dup.any():
        return None
    return np.sort(order[~dup])


class LiveFeedError(Exception):
    """What ``match_live`` found broken, with the row's key and ts for the message."""


def match_live(rows: FeedRows, open_set: pa.BinaryArray, resolved_ts: int) -> tuple[dict[str, Any], pa.BinaryArray]:
    """A registration's live rows (already only the captured tables' record keys) -> the binlog
    columns to write (``pack_columns`` keywords) and the open set after them. Raises
    :class:`LiveFeedError` where ``RegionFeed._live`` raises ``FeedProtocolError``."""
    t, op = rows.types, rows.ops
    is_commit = (t == COMMIT) | (t == COMMITTED)
    late = is_commit & (rows.commit_ts <= np.uint64(resolved_ts))
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise LiveFeedError(f"a commit at {int(rows.commit_ts[i])} of key {rows.keys[i].as_py().hex()} came after "
                            f"resolved ts {resolved_ts}")
    data_op = (op == OP_PUT) | (op == OP_DELETE)
    keep = ((t == PREWRITE) & data_op) | (t == COMMIT) | (t == ROLLBACK) | ((t == COMMITTED) & data_op)
    paired = np.flatnonzero(keep & (t != COMMITTED))  # rows that open or close a (key, start ts)
    if len(paired):
        ids = txn_keys(rows.start_ts[paired], rows.keys.take(pa.array(paired)))
        order = pc.sort_indices(pa.table({"id": ids, "pos": paired}), [("id", "ascending"), ("pos", "ascending")])
        order_np = order.to_numpy()
        sids = ids.take(order)
        st = t[paired][order_np]
        same = np.zeros(len(paired), bool)
        if len(paired) > 1:
            same[1:] = pc.equal(sids.slice(1), sids.slice(0, len(paired) - 1)).to_numpy(zero_copy_only=False)
        was_open = pc.is_in(sids, value_set=open_set).to_numpy(zero_copy_only=False) if len(open_set) else \
            np.zeros(len(paired), bool)
        prev_prewrite = np.zeros(len(paired), bool)
        prev_prewrite[1:] = st[:-1] == PREWRITE
        open_before = np.where(same, prev_prewrite, was_open)
        bad = (st == COMMIT) & ~open_before
        if bad.any():
            j = int(paired[order_np[np.flatnonzero(bad)[0]]])
            raise LiveFeedError(f"COMMIT of key {rows.keys[j].as_py().hex()} at start ts {int(rows.start_ts[j])} "
                                "without its PREWRITE")
        lost_rollback = (st == ROLLBACK) & ~open_before
        if lost_rollback.any():  # a rollback of a lock the replica never had (a pessimistic or LOCK one)
            keep[paired[order_np[lost_rollback]]] = False
        last = np.ones(len(paired), bool)
        last[:-1] = ~same[1:]
        still_open = sids.filter(pa.array(last & (st == PREWRITE)))
        if len(open_set):
            open_set = open_set.filter(pc.invert(pc.is_in(open_set, value_set=sids)))
            open_set = pa.concat_arrays([open_set, still_open]) if len(still_open) else open_set
        else:
            open_set = still_open
    which = np.flatnonzero(keep)
    out = rows.take(which) if len(which) != len(rows) else rows
    ot = out.types
    with_value = ((ot == PREWRITE) | (ot == COMMITTED)) & (out.ops == OP_PUT)
    values = out.values if with_value.all() else pc.if_else(pa.array(with_value), out.values, pa.scalar(b"", pa.binary()))
    commit_ts = np.where((ot == COMMIT) | (ot == COMMITTED), out.commit_ts, np.uint64(0))
    columns = {"types": _TYPE[ot], "ops": np.where((ot == PREWRITE) | (ot == COMMITTED), _OP[out.ops], 0),
               "start_ts": out.start_ts, "commit_ts": commit_ts, "keys": out.keys, "values": values}
    return columns, open_set
