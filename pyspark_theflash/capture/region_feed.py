"""One region's change-data feed turned into binlog events.

A registration answers with the initial scan's rows, live rows interleaved with them (TiKV
sends both before ``INITIALIZED``: initializer.rs and channel.rs's select), then
``INITIALIZED``, then live rows. Until ``INITIALIZED`` the rows build the region's state as a
small MVCC machine — COMMITTED versions; PREWRITE locks; a COMMIT takes its lock's value (or
waits for a PREWRITE the scan sends later); ROLLBACK drops a lock — and at ``INITIALIZED`` the
state is written as one binlog ``RegionSnapshot``: every version the feed gave and every open
lock. Registered from checkpoint 0, that is every version TiKV still holds, and the snapshot
replaces the replica's range whole; registered from a ts capture knows the replica holds the
range up to (capture/coverage.py), the versions above it, of which capture keeps those the
replica lacks (``since_ts``). A COMMIT still waiting at ``INITIALIZED`` is dropped, as TiCDC
drops it: the scan's COMMITTED row of the same version holds it. So a registration that
follows a region error or a restart never loses or doubles a row.

After it, rows map one to one: PREWRITE (no primary, no TTL: TiKV's feed does not carry
them), COMMIT (key and ts; the replica takes the value from the PREWRITE), ROLLBACK,
COMMITTED. Only record keys of the captured tables are kept (index entries are not rows).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.capture import feed_columns
from pyspark_theflash.capture.coverage import Coverage
from pyspark_theflash.codec.txn import SHORT_VALUE_MAX_LEN, Lock, Write
from pyspark_theflash.proto import binlog_pb2, cdcpb_pb2

Ev = cdcpb_pb2.Event
_OP = {Ev.Row.PUT: binlog_pb2.PUT, Ev.Row.DELETE: binlog_pb2.DELETE}
_WRITE_TYPE = {binlog_pb2.PUT: "P", binlog_pb2.DELETE: "D"}


class FeedProtocolError(Exception):
    """The feed broke a rule TiKV keeps (a commit at or below a resolved ts already given, a
    COMMIT without its PREWRITE after INITIALIZED): the registration is dropped and the region
    registered again."""


@dataclass
class RegionFeed:
    """Capture's view of one registered region. ``gen`` tells this registration's events from
    an earlier one's."""

    id: int
    start: bytes  # PD-encoded
    end: bytes
    version: int
    conf_ver: int
    store_id: int
    gen: int
    resolved_ts: int = 0  # the last resolved ts written for it
    initialized: bool = False
    discarded: bool = False  # its snapshot was older than a newer region's: nothing more of it is written
    written: bool = False  # its snapshot is in the binlog: its rows go to the region the replica holds
    # registered from since_ts > 0 (capture/coverage.py): the feed's initial scan holds the
    # versions above it only, and ``inherited`` says which of those the replica holds already
    since_ts: int = 0
    inherited: list[Coverage] = field(default_factory=list)
    coverage: Coverage | None = None  # what the replica holds of its range, once its snapshot is written
    _writes: dict[tuple[bytes, int], tuple[int, int, bytes]] = field(default_factory=dict)
    _locks: dict[tuple[bytes, int], tuple[int, bytes]] = field(default_factory=dict)
    _waiting_commits: dict[tuple[bytes, int], tuple[int, int, bytes]] = field(default_factory=dict)
    _open: dict[tuple[bytes, int], int] = field(default_factory=dict)  # live prewrites: (key, start) -> op
    # the same once rows arrive as columns: 8-byte start ts + key per open prewrite (feed_columns.py)
    _open_ids: Any = field(default_factory=lambda: feed_columns.EMPTY_OPEN)

    def region_proto(self) -> binlog_pb2.Region:
        return binlog_pb2.Region(id=self.id, start_key=self.start, end_key=self.end,
                                 epoch=binlog_pb2.RegionEpoch(version=self.version, conf_version=self.conf_ver))

    def epoch(self) -> binlog_pb2.RegionEpoch:
        return binlog_pb2.RegionEpoch(version=self.version, conf_version=self.conf_ver)

    # ------------------------------------------------------------------ rows

    def take(self, rows: Any, keep: Callable[[bytes], bool]) -> tuple[list[binlog_pb2.Row], bool]:
        """Rows of one event: the binlog rows to write now (live), and whether INITIALIZED came."""
        out: list[binlog_pb2.Row] = []
        initialized_now = False
        for row in rows:
            if row.type == Ev.INITIALIZED:
                initialized_now = True
                self.initialized = True
                continue
            key = bytes(row.key)
            if not keep(key):
                continue
            if self.initialized:
                r = self._live(row, key)
                if r is not None:
                    out.append(r)
            else:
                self._initial(row, key)
        return out, initialized_now

    def _initial(self, row: Any, key: bytes) -> None:
        start, commit = int(row.start_ts), int(row.commit_ts)
        if row.type == Ev.COMMITTED:
            if row.op_type in _OP:
                self._writes[(key, commit)] = (_OP[row.op_type], start, bytes(row.value))
        elif row.type == Ev.PREWRITE:
            if row.op_type not in _OP:
                return
            waiting = self._waiting_commits.pop((key, start), None)
            if waiting is not None:
                self._writes[(key, waiting[0])] = (_OP[row.op_type], start, bytes(row.value))
            else:
                self._locks[(key, start)] = (_OP[row.op_type], bytes(row.value))
        elif row.type == Ev.COMMIT:
            lock = self._locks.pop((key, start), None)
            if lock is not None:
                self._writes[(key, commit)] = (lock[0], start, lock[1])
            else:
                self._waiting_commits[(key, start)] = (commit, row.op_type, bytes(row.value))
        elif row.type == Ev.ROLLBACK:
            self._locks.pop((key, start), None)
            self._waiting_commits.pop((key, start), None)

    def _live(self, row: Any, key: bytes) -> binlog_pb2.Row | None:
        start, commit = int(row.start_ts), int(row.commit_ts)
        if row.type in (Ev.COMMIT, Ev.COMMITTED) and commit <= self.resolved_ts:
            raise FeedProtocolError(f"region {self.id}: a commit at {commit} of key {key.hex()} came after resolved "
                                    f"ts {self.resolved_ts}")
        if row.type == Ev.PREWRITE:
            if row.op_type not in _OP:
                return None
            op = _OP[row.op_type]
            self._open[(key, start)] = op
            return binlog_pb2.Row(type=binlog_pb2.Row.PREWRITE, op=op, start_ts=start, key=key,
                                  value=bytes(row.value) if op == binlog_pb2.PUT else b"")
        if row.type == Ev.COMMIT:
            if self._open.pop((key, start), None) is None:
                raise FeedProtocolError(f"region {self.id}: COMMIT of key {key.hex()} at start ts {start} "
                                        "without its PREWRITE")
            return binlog_pb2.Row(type=binlog_pb2.Row.COMMIT, start_ts=start, commit_ts=commit, key=key)
        if row.type == Ev.ROLLBACK:
            if self._open.pop((key, start), None) is None:
                return None  # a rollback of a lock the replica never had (a pessimistic or LOCK one)
            return binlog_pb2.Row(type=binlog_pb2.Row.ROLLBACK, start_ts=start, key=key)
        if row.type == Ev.COMMITTED and row.op_type in _OP:
            op = _OP[row.op_type]
            return binlog_pb2.Row(type=binlog_pb2.Row.COMMITTED, op=op, start_ts=start, commit_ts=commit, key=key,
                                  value=bytes(row.value) if op == binlog_pb2.PUT else b"")
        return None

    def take_columns(self, rows: feed_columns.FeedRows) -> dict[str, Any] | None:
        """Live rows (after INITIALIZED; record keys only) as columns: ``_live``'s rules applied
        as array operations (capture/feed_columns.py); the binlog columns to write, or None."""
        if self._open:  # pairs the per-row path opened: the snapshot's locks, rows after INITIALIZED in its event
            pairs = feed_columns.open_pairs(list(self._open))
            self._open_ids = pa.concat_arrays([self._open_ids, pairs]) if len(self._open_ids) else pairs
            self._open = {}
        try:
            cols, self._open_ids = feed_columns.match_live(rows, self._open_ids, self.resolved_ts)
        except feed_columns.LiveFeedError as exc:
            raise FeedProtocolError(f"region {self.id}: {exc}") from None
        return cols if len(cols["types"]) else None

    def snapshot(self) -> binlog_pb2.RegionSnapshot:
        """The state the initial scan built, as the binlog's RegionSnapshot; the live rows
        that follow are matched against its locks."""
        writes = []
        for (key, commit), (op, start, value) in sorted(self._writes.items()):
            short = value if op == binlog_pb2.PUT and len(value) <= SHORT_VALUE_MAX_LEN else None
            long_value = value if op == binlog_pb2.PUT and short is None else b""
            writes.append(binlog_pb2.SnapshotWrite(
                key=key, commit_ts=commit, write=bytes(Write(_WRITE_TYPE[op], start, short).to_bytes()), value=long_value))
        locks = []
        for (key, start), (op, value) in sorted(self._locks.items()):
            short = value if op == binlog_pb2.PUT and len(value) <= SHORT_VALUE_MAX_LEN else None
            locks.append(binlog_pb2.SnapshotLock(
                key=key, lock=bytes(Lock(_WRITE_TYPE[op], b"", start, short_value=short).to_bytes()),
                value=value if op == binlog_pb2.PUT and short is None else b""))
            self._open[(key, start)] = op
        self._writes, self._locks, self._waiting_commits = {}, {}, {}
        return binlog_pb2.RegionSnapshot(region=self.region_proto(), writes=writes, locks=locks)

    def max_commit_ts(self) -> int:
        """The newest commit the initial state holds (a snapshot waits for the DDL frontier)."""
        return max((c for _, c in self._writes), default=0)


def entries_event(feed: RegionFeed, index: int, rows: list[binlog_pb2.Row]) -> binlog_pb2.Event:
    return binlog_pb2.Event(region_id=feed.id, index=index, epoch=feed.epoch(),
                            entries=binlog_rows.columnar_entries(rows))


def snapshot_event(feed: RegionFeed, index: int, snapshot: binlog_pb2.RegionSnapshot) -> binlog_pb2.Event:
    return binlog_pb2.Event(region_id=feed.id, index=index, epoch=feed.epoch(), snapshot=snapshot)
