"""The per-row rules of a region's change feed, one protobuf row at a time: the reference the
columnar path (``RegionFeed.take_initial_columns``, ``take_columns``, ``snapshot_columns`` and
the C match) is checked against (tests/unit/test_feed_columns.py, test_snapshot_batch.py).

Capture wrote rows this way before the feed was decoded into columns; the product path no
longer does, so the rules live here, beside the tests that need them. They act on a
``RegionFeed``'s own state (its open prewrites, scanned versions and locks) exactly as the
columnar path does, so the two can be run on the same feed and compared.
"""
from __future__ import annotations

from typing import Any, Callable

from pyspark_theflash.capture.region_feed import FeedProtocolError, RegionFeed
from pyspark_theflash.codec.txn import SHORT_VALUE_MAX_LEN, Lock, Write
from pyspark_theflash.proto import binlog_pb2, cdcpb_pb2

Ev = cdcpb_pb2.Event
_OP = {Ev.Row.PUT: binlog_pb2.PUT, Ev.Row.DELETE: binlog_pb2.DELETE}
_WRITE_TYPE = {binlog_pb2.PUT: "P", binlog_pb2.DELETE: "D"}


def take(feed: RegionFeed, rows: Any, keep: Callable[[bytes], bool]) -> tuple[list[binlog_pb2.Row], bool]:
    """Rows of one event: the binlog rows to write now (live), and whether INITIALIZED came."""
    out: list[binlog_pb2.Row] = []
    initialized_now = False
    for row in rows:
        if row.type == Ev.INITIALIZED:
            initialized_now = True
            feed.initialized = True
            continue
        key = bytes(row.key)
        if not keep(key):
            continue
        if feed.initialized:
            r = live_row(feed, row, key)
            if r is not None:
                out.append(r)
        else:
            feed._initial_row(row.type, row.op_type, int(row.start_ts), int(row.commit_ts), key, bytes(row.value))
    return out, initialized_now


def live_row(feed: RegionFeed, row: Any, key: bytes) -> binlog_pb2.Row | None:
    """One row after INITIALIZED as its binlog row (None: not a row the replica takes)."""
    start, commit = int(row.start_ts), int(row.commit_ts)
    if row.type in (Ev.COMMIT, Ev.COMMITTED) and commit <= feed.resolved_ts:
        raise FeedProtocolError(f"region {feed.id}: a commit at {commit} of key {key.hex()} came after resolved "
                                f"ts {feed.resolved_ts}")
    if row.type == Ev.PREWRITE:
        if row.op_type not in _OP:
            return None
        op = _OP[row.op_type]
        feed._open[(key, start)] = op
        return binlog_pb2.Row(type=binlog_pb2.Row.PREWRITE, op=op, start_ts=start, key=key,
                              value=bytes(row.value) if op == binlog_pb2.PUT else b"")
    if row.type == Ev.COMMIT:
        if feed._open.pop((key, start), None) is None:
            raise FeedProtocolError(f"region {feed.id}: COMMIT of key {key.hex()} at start ts {start} "
                                    "without its PREWRITE")
        return binlog_pb2.Row(type=binlog_pb2.Row.COMMIT, start_ts=start, commit_ts=commit, key=key)
    if row.type == Ev.ROLLBACK:
        if feed._open.pop((key, start), None) is None:
            return None  # a rollback of a lock the replica never had (a pessimistic or LOCK one)
        return binlog_pb2.Row(type=binlog_pb2.Row.ROLLBACK, start_ts=start, key=key)
    if row.type == Ev.COMMITTED and row.op_type in _OP:
        op = _OP[row.op_type]
        return binlog_pb2.Row(type=binlog_pb2.Row.COMMITTED, op=op, start_ts=start, commit_ts=commit, key=key,
                              value=bytes(row.value) if op == binlog_pb2.PUT else b"")
    return None


def snapshot(feed: RegionFeed) -> binlog_pb2.RegionSnapshot:
    """The initial scan's state in binlog format version 1's form (a ``Write``/``Lock`` record
    per version and lock), as capture wrote it before snapshots were columns."""
    for keys, ops, start_ts, commit_ts, values in feed._scan:
        for key, op, start, commit, value in zip(keys.to_pylist(), ops.tolist(), start_ts.tolist(),
                                                 commit_ts.tolist(), values.to_pylist()):
            feed._writes[(key, commit)] = (op, start, value)
    feed._scan = []
    writes = []
    for (key, commit), (op, start, value) in sorted(feed._writes.items()):
        short = value if op == binlog_pb2.PUT and len(value) <= SHORT_VALUE_MAX_LEN else None
        long_value = value if op == binlog_pb2.PUT and short is None else b""
        writes.append(binlog_pb2.SnapshotWrite(
            key=key, commit_ts=commit, write=bytes(Write(_WRITE_TYPE[op], start, short).to_bytes()), value=long_value))
    locks = []
    for (key, start), (op, value) in sorted(feed._locks.items()):
        short = value if op == binlog_pb2.PUT and len(value) <= SHORT_VALUE_MAX_LEN else None
        locks.append(binlog_pb2.SnapshotLock(
            key=key, lock=bytes(Lock(_WRITE_TYPE[op], b"", start, short_value=short).to_bytes()),
            value=value if op == binlog_pb2.PUT and short is None else b""))
        feed._open[(key, start)] = op
    feed._writes, feed._locks, feed._waiting_commits = {}, {}, {}
    return binlog_pb2.RegionSnapshot(region=feed.region_proto(), writes=writes, locks=locks)
