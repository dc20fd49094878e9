"""A region snapshot's versions and open locks as columns: ``RegionSnapshot.batch``.

Binlog format version 2 writes a snapshot as one ``RowBatch`` (the Entries event's columnar
form, protos/binlog.proto): a committed version is a COMMITTED row (op PUT or DELETE, start ts,
commit ts, key, value), an open lock a PREWRITE row (op, start ts, key, prewritten value,
primary, ttl). Capture packs the arrays its feed decoder gives (capture/region_feed.py) and the
store applies them as arrays (store/apply.py), so no TiKV ``Write`` or ``Lock`` record is
encoded or parsed per row between the feed and the store.

Version 1's form — one ``SnapshotWrite``/``SnapshotLock`` per version and lock, in TiKV's
write/lock CF encoding — is still read (old binlogs, the mini cluster's own snapshots):
:func:`snapshot_columns` turns it into the same columns, one record parsed per row as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa

from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.binlog.rows import MalformedRowBatchError, RowColumns
from pyspark_theflash.proto import binlog_pb2

Row = binlog_pb2.Row
PUT, DELETE, LOCK = binlog_pb2.PUT, binlog_pb2.DELETE, binlog_pb2.LOCK
_WRITE_TYPE_OP = {"P": PUT, "D": DELETE}  # any other record (L, R) changes no data: a LOCK row
_LOCK_TYPE_OP = {"P": PUT, "D": DELETE, "L": LOCK, "S": LOCK}


@dataclass(frozen=True)
class SnapshotColumns:
    """A snapshot's rows: ``versions`` COMMITTED rows, ``locks`` PREWRITE rows."""

    versions: RowColumns
    locks: RowColumns

    def pack(self, out: binlog_pb2.RowBatch | None = None) -> binlog_pb2.RowBatch:
        """The ``RegionSnapshot.batch`` of these rows: the versions, then the locks (``out``:
        filled in place, as ``rows.pack_columns``)."""
        v, lk = self.versions, self.locks
        if not len(v) and not len(lk):  # an empty region's: packed once (empty_snapshot)
            global _EMPTY_PACKED
            if _EMPTY_PACKED is None:
                _EMPTY_PACKED = binlog_rows.pack_columns(types=Row.COMMITTED, ops=v.ops, start_ts=v.start_ts,
                                                         commit_ts=v.commit_ts, keys=v.keys, values=v.values)
            if out is None:
                out = binlog_pb2.RowBatch()
            out.CopyFrom(_EMPTY_PACKED)
            return out
        if not len(lk):
            return binlog_rows.pack_columns(types=Row.COMMITTED, ops=v.ops, start_ts=v.start_ts, commit_ts=v.commit_ts,
                                            keys=v.keys, values=v.values, out=out)
        joined = binlog_rows.join_columns([v, lk]).rows
        return binlog_rows.pack_columns(types=joined.types, ops=joined.ops, start_ts=joined.start_ts,
                                        commit_ts=joined.commit_ts, keys=joined.keys, values=joined.values,
                                        primaries=joined.primaries, ttl=joined.ttl, out=out)

    def __len__(self) -> int:
        return len(self.versions) + len(self.locks)

    def where(self, versions: np.ndarray | None = None, locks: np.ndarray | None = None) -> "SnapshotColumns":
        """Only the versions and locks whose mask is true (None: all)."""
        v = self.versions if versions is None or versions.all() else self.versions.take(np.flatnonzero(versions))
        lk = self.locks if locks is None or locks.all() else self.locks.take(np.flatnonzero(locks))
        return SnapshotColumns(v, lk)


def snapshot_columns(snap: binlog_pb2.RegionSnapshot, where: str = "") -> SnapshotColumns:
    """The versions and locks of ``snap`` (either form) as columns. The batch form is validated
    and mapped without a copy; a batch with a row that is neither COMMITTED nor PREWRITE, or a
    snapshot with both forms, is refused (MalformedRowBatchError)."""
    if snap.HasField("batch"):
        if len(snap.writes) or len(snap.locks):
            raise MalformedRowBatchError(where, f"the snapshot carries both {len(snap.writes)} writes and "
                                                f"{len(snap.locks)} locks and a RowBatch; a snapshot uses one form")
        cols = binlog_rows.batch_columns(snap.batch, where)
        if snap.batch.types.translate(None, bytes([Row.COMMITTED])) == b"":
            return SnapshotColumns(cols, cols.slice(0, 0))  # (no locks: an empty view, no copy)
        is_version = cols.types == Row.COMMITTED
        bad = ~is_version & (cols.types != Row.PREWRITE)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise MalformedRowBatchError(where, f"snapshot row {row} has type {Row.Type.Name(int(cols.types[row]))}; "
                                                "a snapshot holds COMMITTED (versions) and PREWRITE (locks) rows only")
        return SnapshotColumns(cols.take(np.flatnonzero(is_version)), cols.take(np.flatnonzero(~is_version)))
    return SnapshotColumns(_versions_of_records(snap.writes), _locks_of_records(snap.locks))


def _versions_of_records(writes: Sequence[binlog_pb2.SnapshotWrite]) -> RowColumns:
    """Version 1's ``SnapshotWrite`` records as COMMITTED rows (one ``Write`` parsed per row)."""
    from pyspark_theflash.codec.txn import Write

    ops, start_ts, values = [], [], []
    for sw in writes:
        w = Write.parse(sw.write)
        op = _WRITE_TYPE_OP.get(w.write_type, LOCK)
        ops.append(op)
        start_ts.append(int(w.start_ts))
        values.append((w.short_value if w.short_value is not None else bytes(sw.value)) if op == PUT else b"")
    n = len(ops)
    return RowColumns(np.full(n, Row.COMMITTED, np.uint8), np.array(ops, np.uint8), np.array(start_ts, np.uint64),
                      np.fromiter((sw.commit_ts for sw in writes), np.uint64, n), np.zeros(n, np.uint64),
                      np.zeros(n, np.uint64), pa.array([bytes(sw.key) for sw in writes], pa.binary()),
                      pa.array(values, pa.binary()), pa.array([b""] * n, pa.binary()))


def _locks_of_records(locks: Sequence[binlog_pb2.SnapshotLock]) -> RowColumns:
    """Version 1's ``SnapshotLock`` records as PREWRITE rows (one ``Lock`` parsed per row)."""
    from pyspark_theflash.codec.txn import Lock

    ops, start_ts, values, primaries, ttls = [], [], [], [], []
    for sl in locks:
        lock = Lock.parse(sl.lock)
        op = _LOCK_TYPE_OP.get(lock.lock_type, LOCK)
        ops.append(op)
        start_ts.append(int(lock.start_ts))
        values.append((lock.short_value if lock.short_value is not None else bytes(sl.value)) if op == PUT else b"")
        primaries.append(bytes(lock.primary))
        ttls.append(int(lock.ttl))
    n = len(ops)
    return RowColumns(np.full(n, Row.PREWRITE, np.uint8), np.array(ops, np.uint8), np.array(start_ts, np.uint64),
                      np.zeros(n, np.uint64), np.array(ttls, np.uint64), np.zeros(n, np.uint64),
                      pa.array([bytes(sl.key) for sl in locks], pa.binary()), pa.array(values, pa.binary()),
                      pa.array(primaries, pa.binary()))


__all__ = ["SnapshotColumns", "snapshot_columns"]


def empty_snapshot() -> SnapshotColumns:
    """A snapshot of no versions and no locks: what the initial scan of an empty region gives.
    One object, shared (SnapshotColumns is immutable): at 100,000 regions most of a table's
    regions may be empty, and building their arrays one by one was a cost per region."""
    global _EMPTY
    if _EMPTY is None:
        none = binlog_rows.RowColumns(np.zeros(0, np.uint8), np.zeros(0, np.uint8), np.zeros(0, np.uint64),
                                      np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.uint64),
                                      *(pa.nulls(0, pa.binary()) for _ in range(3)))  # (pa.array imports pandas)
        _EMPTY = SnapshotColumns(none, none)
    return _EMPTY


_EMPTY: SnapshotColumns | None = None
_EMPTY_PACKED: binlog_pb2.RowBatch | None = None
