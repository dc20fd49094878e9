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

These rules run on columns (``take_initial_columns``, ``take_columns`` with the C match,
``snapshot_columns``); the same rules row by row, over protobuf messages, are the reference
the tests check the columns against (tests/support/feed_reference.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.binlog import snapshot_batch
from pyspark_theflash.capture import feed_columns
from pyspark_theflash.capture.coverage import Coverage
from pyspark_theflash.proto import binlog_pb2, cdcpb_pb2

if TYPE_CHECKING:
    from pyspark_theflash.capture.feed_columns import RowBuffers
    from pyspark_theflash.capture.range_claims import Claim

Ev = cdcpb_pb2.Event
# a row's cdcpb Event.Row.OpType (an int, as the columns hold it) -> binlog OpType
_OP: dict[int, binlog_pb2.OpType] = {Ev.Row.PUT: binlog_pb2.PUT, Ev.Row.DELETE: binlog_pb2.DELETE}


class FeedProtocolError(Exception):
    """The feed broke a rule TiKV keeps (a commit at or below a resolved ts already given, a
    COMMIT without its PREWRITE after INITIALIZED): the registration is dropped and the region
    registered again."""


class FeedColumns(Protocol):
    """Where a current registration's resolved ts, coverage ts and readiness live: the region
    table's columns (capture/region_table.py ``RegionTable``), a row per registration."""

    resolved: np.ndarray
    covered: np.ndarray
    ready: np.ndarray


class RegionFeed:
    """Capture's view of one registered region. ``gen`` tells this registration's events from
    an earlier one's. While it is a current registration its resolved ts and whether it is
    initialised live in capture's region table (capture/region_table.py: columns over every
    registration, which a resolved ts of 100,000 regions moves with a few array operations);
    the attributes read and write them there, and keep them here once it ended."""

    # An idle registration (a hundred thousand of them: docs/capture.md, "Memory per region") holds
    # its identity, its flags and references to shared empties: the state of its initial scan
    # (``_initial``), its open prewrites (``_open_rows``, ``_open_set``) and its coverage
    # (``_coverage``, made when first asked for after an empty snapshot) are made when needed.
    __slots__ = ("id", "start", "end", "version", "conf_ver", "store_id", "gen", "discarded", "written", "since_ts",
                 "inherited", "_coverage", "_initial", "_open_rows", "_open_set", "claims_seen", "newer",
                 "_table", "_slot", "_own")

    def __init__(self, id: int, start: bytes, end: bytes, version: int, conf_ver: int, store_id: int, gen: int,
                 resolved_ts: int = 0, initialized: bool = False, since_ts: int = 0,
                 inherited: list[Coverage] | None = None) -> None:
        self.id = id
        self.start = start  # PD-encoded
        self.end = end
        self.version = version
        self.conf_ver = conf_ver
        self.store_id = store_id
        self.gen = gen
        self.discarded = False  # its snapshot was older than a newer region's: nothing more of it is written
        self.written = False  # its snapshot is in the binlog: its rows go to the region the replica holds
        # registered from since_ts > 0 (capture/coverage.py): the feed's initial scan holds the
        # versions above it only, and ``inherited`` says which of those the replica holds already
        self.since_ts = since_ts
        self.inherited: Sequence[Coverage] = inherited or ()
        # what the replica holds of its range, once its snapshot is written (``coverage``); an
        # empty whole snapshot's is made when first asked for (``_WHOLE``: [start, end) from 0)
        self._coverage: Coverage | None = None
        self._initial: _InitialScan | None = None  # the initial scan's state, until its snapshot
        self._open_rows: dict[tuple[bytes, int], int] | None = None  # prewrites opened row by row: (key, start) -> op
        # the open prewrites once rows arrive as columns, as a hash set in C (feed_columns.match_live)
        self._open_set: feed_columns.OpenSet | None = None
        # the newer regions' claims over its range (RangeClaims.newer), as of claim number claims_seen
        self.claims_seen = -1
        self.newer: Sequence[Claim] = ()
        self._table: FeedColumns | None = None  # the region table holding its row (slot), while current
        self._slot = -1
        # its resolved ts written, the ts its coverage's floors rise to when next consulted
        # (current_coverage: not at every resolved ts) and whether it is initialised, while it
        # is not a row of the region table (before it, and once it ended); a shared tuple while it is
        self._own: tuple[int, int, bool] = (resolved_ts, 0, initialized)

    def __repr__(self) -> str:
        return f"RegionFeed(id={self.id}, version={self.version}, store={self.store_id}, gen={self.gen})"

    # its coverage, and the initial scan's state, made when first needed

    @property
    def coverage(self) -> Coverage | None:
        """What the replica holds of its range, once its snapshot is written (capture/coverage.py)."""
        if self._coverage is _WHOLE:
            self._coverage = Coverage([(self.start, self.end, 0)])
        return self._coverage

    @coverage.setter
    def coverage(self, coverage: Coverage | None) -> None:
        self._coverage = coverage

    def cover_whole(self) -> None:
        """Its snapshot replaced its range whole and held no version: its coverage is the range
        from floor 0, made when first asked for (an idle region's is never made)."""
        self._coverage = _WHOLE

    def _scan_state(self) -> _InitialScan:
        if self._initial is None:
            self._initial = _InitialScan()
        return self._initial

    # the initial scan's state (the per-row rules and the tests read these names)

    @property
    def _writes(self) -> dict[tuple[bytes, int], tuple[int, int, bytes]]:
        return self._scan_state().writes

    @_writes.setter
    def _writes(self, value: dict[tuple[bytes, int], tuple[int, int, bytes]]) -> None:
        self._scan_state().writes = value

    @property
    def _locks(self) -> dict[tuple[bytes, int], tuple[int, bytes]]:
        return self._scan_state().locks

    @_locks.setter
    def _locks(self, value: dict[tuple[bytes, int], tuple[int, bytes]]) -> None:
        self._scan_state().locks = value

    @property
    def _waiting_commits(self) -> dict[tuple[bytes, int], tuple[int, int, bytes]]:
        return self._scan_state().waiting_commits

    @_waiting_commits.setter
    def _waiting_commits(self, value: dict[tuple[bytes, int], tuple[int, int, bytes]]) -> None:
        self._scan_state().waiting_commits = value

    @property
    def _scan(self) -> list[ScanChunk]:
        return self._scan_state().scan

    @_scan.setter
    def _scan(self, value: list[ScanChunk]) -> None:
        self._scan_state().scan = value

    @property
    def _open(self) -> dict[tuple[bytes, int], int]:
        """The prewrites opened row by row (the snapshot's locks; the per-row rules'), until
        ``open_set`` takes them."""
        if self._open_rows is None:
            self._open_rows = {}
        return self._open_rows

    @_open.setter
    def _open(self, value: dict[tuple[bytes, int], int]) -> None:
        self._open_rows = value

    # the fields the region table holds while the registration is current

    @property
    def resolved_ts(self) -> int:
        t = self._table
        return int(t.resolved[self._slot]) if t is not None else self._own[0]

    @resolved_ts.setter
    def resolved_ts(self, ts: int) -> None:
        t = self._table
        if t is not None:
            t.resolved[self._slot] = ts
        else:
            self._own = (ts, self._own[1], self._own[2])

    @property
    def covered_ts(self) -> int:
        t = self._table
        return int(t.covered[self._slot]) if t is not None else self._own[1]

    @covered_ts.setter
    def covered_ts(self, ts: int) -> None:
        t = self._table
        if t is not None:
            t.covered[self._slot] = ts
        else:
            self._own = (self._own[0], ts, self._own[2])

    @property
    def initialized(self) -> bool:
        t = self._table
        return bool(t.ready[self._slot]) if t is not None else self._own[2]

    @initialized.setter
    def initialized(self, ready: bool) -> None:
        t = self._table
        if t is not None:
            t.ready[self._slot] = ready
        else:
            self._own = (self._own[0], self._own[1], ready)

    @property
    def slot(self) -> int:
        """Its row in the region table (-1 once it ended)."""
        return self._slot

    def attach(self, table: FeedColumns, slot: int) -> None:
        """Its row in ``table`` holds those fields from now on (RegionTable.add)."""
        self._table, self._slot, self._own = table, slot, _IN_TABLE

    def detach(self) -> None:
        """Its row is gone (RegionTable.remove): the fields are its own again, as last set."""
        t, slot = self._table, self._slot
        if t is not None:
            self._own = (int(t.resolved[slot]), int(t.covered[slot]), bool(t.ready[slot]))
        self._table, self._slot = None, -1

    def region_proto(self) -> binlog_pb2.Region:
        return binlog_pb2.Region(id=self.id, start_key=self.start, end_key=self.end,
                                 epoch=binlog_pb2.RegionEpoch(version=self.version, conf_version=self.conf_ver))

    def epoch(self) -> binlog_pb2.RegionEpoch:
        return binlog_pb2.RegionEpoch(version=self.version, conf_version=self.conf_ver)

    # ------------------------------------------------------------------ rows

    def _initial_row(self, row_type: int, op_type: int, start: int, commit: int, key: bytes, value: bytes) -> None:
        st = self._scan_state()
        if row_type == Ev.COMMITTED:
            if op_type in _OP:
                st.writes[(key, commit)] = (_OP[op_type], start, value)
        elif row_type == Ev.PREWRITE:
            if op_type not in _OP:
                return
            waiting = st.waiting_commits.pop((key, start), None)
            if waiting is not None:
                st.writes[(key, waiting[0])] = (_OP[op_type], start, value)
            else:
                st.locks[(key, start)] = (_OP[op_type], value)
        elif row_type == Ev.COMMIT:
            lock = st.locks.pop((key, start), None)
            if lock is not None:
                st.writes[(key, commit)] = (lock[0], start, lock[1])
            else:
                st.waiting_commits[(key, start)] = (commit, op_type, value)
        elif row_type == Ev.ROLLBACK:
            st.locks.pop((key, start), None)
            st.waiting_commits.pop((key, start), None)

    def take_initial_columns(self, rows: feed_columns.FeedRows) -> int | None:
        """Rows of one event of a registration not yet initialised, as columns (the feed
        decoder's): ``_initial``'s rules, the initial scan's COMMITTED rows kept as arrays and
        the others (locks, and the live rows TiKV sends during the scan: few) one by one. Only
        the captured tables' record keys count, as in ``take``. Returns None, or, when the
        event holds INITIALIZED, the position of the first row after it (live rows:
        ``take_columns``'s)."""
        init = np.flatnonzero(rows.types == feed_columns.INITIALIZED)
        after = None
        if len(init):
            after = int(init[0]) + 1
            self.initialized = True
            if not init[0]:  # INITIALIZED first (an empty region's scan, or its last rows came before)
                return after
            rows = rows.take(np.arange(int(init[0])))
        if not len(rows):
            return after
        record = feed_columns.record_table_ids(rows.keys) != np.iinfo(np.int64).min
        t, op = rows.types, rows.ops
        scan = record & (t == feed_columns.COMMITTED) & ((op == feed_columns.OP_PUT) | (op == feed_columns.OP_DELETE))
        others = np.flatnonzero(record & ~scan & (t != feed_columns.COMMITTED))
        if scan.all():
            part = rows
        else:
            part = rows.take(np.flatnonzero(scan))
        if len(part):
            ops = feed_columns.binlog_ops(part.ops)
            values = part.values
            if (ops == binlog_pb2.DELETE).any():  # a DELETE's version holds no value
                values = pc.if_else(binlog_rows.arrow_mask(ops == binlog_pb2.PUT), values, _EMPTY_VALUE)
            st = self._scan_state()
            st.scan.append((part.keys, ops, part.start_ts, part.commit_ts, values))
            st.ascending = False  # (not asked here: first_versions checks the chunks)
        if len(others):
            sub = rows.take(others)
            for row in zip(sub.types.tolist(), sub.ops.tolist(), sub.start_ts.tolist(), sub.commit_ts.tolist(),
                           sub.keys.to_pylist(), sub.values.to_pylist()):
                self._initial_row(*row)
        return after

    def take_initial_event(self, rows: feed_columns.FeedRows, scan: feed_columns.ScanEvents, event: int, lo: int,
                           hi: int) -> int | None:
        """Event ``event`` of a message (its rows ``rows[lo:hi]``; ``scan``: the message's
        ``feed_columns.scan_events``) for a registration not yet initialised: as
        ``take_initial_columns``, which it returns. An event of plain versions only (what an
        initial copy sends) is kept as it comes, with no array operation of its own."""
        if not scan.plain[event]:
            if hi - lo == 1 and rows.types[lo] == feed_columns.INITIALIZED:  # (the copy's last event of a region)
                self.initialized = True
                return 1
            return self.take_initial_columns(rows.slice(lo, hi))
        if hi > lo:
            st = self._scan_state()
            n = hi - lo
            keys = rows.keys.slice(lo, n)
            if st.ascending:  # and above the last chunk's keys: no version twice over the chunks
                st.ascending = bool(scan.ascending[event]) and (
                    not st.scan or st.scan[-1][0][-1].as_py() < keys[0].as_py())
            st.scan.append((keys, scan.ops[lo:hi], rows.start_ts[lo:hi], rows.commit_ts[lo:hi],
                            scan.values.slice(lo, n)))
        return None

    def take_columns(self, rows: feed_columns.FeedRows | RowBuffers,
                     spans: list[tuple[int, int]] | None = None) -> feed_columns.LiveBatch | None:
        """Live rows (after INITIALIZED) as columns: the feed's rules applied in C
        (capture/feed_columns.py) to the record keys of ``rows`` (or of ``spans`` of a
        message's ``row_buffers``); the binlog rows to write, or None."""
        if isinstance(rows, feed_columns.FeedRows):
            rows, spans = feed_columns.row_buffers(rows), [(0, len(rows))]
        try:
            return feed_columns.match_live(rows, spans or [], self.open_set(), self.resolved_ts)
        except feed_columns.LiveFeedError as exc:
            raise FeedProtocolError(f"region {self.id}: {exc}") from None

    def current_coverage(self) -> Coverage | None:
        """Its coverage with the floors raised to the resolved ts written since (``covered_ts``)."""
        if self.coverage is not None and self.covered_ts:
            self.coverage.raise_floor(self.covered_ts)
        return self.coverage

    def open_set(self) -> feed_columns.OpenSet:
        """The open (key, start ts) pairs its live rows are matched against, in C (with those the
        per-row path opened: the snapshot's locks, rows after INITIALIZED in its event)."""
        if self._open_set is None:
            self._open_set = feed_columns.OpenSet()
        if self._open_rows:
            for key, start in self._open_rows:
                self._open_set.add(key, start)
        self._open_rows = None
        return self._open_set

    def snapshot_columns(self) -> snapshot_batch.SnapshotColumns:
        """The state the initial scan built, as columns (binlog/snapshot_batch.py): every
        version once, and every open lock; the live rows that follow are matched against its
        locks."""
        state, self._initial = self._initial, None  # (the scan's state is not needed after it)
        if state is None or not (state.scan or state.writes or state.locks):  # an empty region's
            return snapshot_batch.empty_snapshot()
        binary = pa.binary()
        parts = list(state.scan)
        if state.writes:  # versions the per-row rules made (a COMMIT of a scanned lock, a take())
            items = list(state.writes.items())
            parts.append((pa.array([k for (k, _), _ in items], binary),
                          np.array([op for _, (op, _, _) in items], np.uint8),
                          np.array([s for _, (_, s, _) in items], np.uint64),
                          np.array([c for (_, c), _ in items], np.uint64),
                          pa.array([v if op == binlog_pb2.PUT else b"" for _, (op, _, v) in items], binary)))
        if len(parts) == 1:
            keys, ops, start_ts, commit_ts, values = parts[0]
        elif parts:
            keys = pa.concat_arrays([p[0] for p in parts])
            values = pa.concat_arrays([p[4] for p in parts])
            ops, start_ts, commit_ts = (np.concatenate([p[i] for p in parts]) for i in (1, 2, 3))
        else:
            keys, values = pa.array([], binary), pa.array([], binary)
            ops, start_ts, commit_ts = np.zeros(0, np.uint8), np.zeros(0, np.uint64), np.zeros(0, np.uint64)
        # a version the scan and a live row both gave (none when the scan's keys ascend strictly)
        keep = None if state.ascending and not state.writes else feed_columns.first_versions(keys, commit_ts)
        if keep is not None:
            idx = binlog_rows.arrow_positions(keep)
            keys, values, ops, start_ts, commit_ts = keys.take(idx), values.take(idx), ops[keep], start_ts[keep], \
                commit_ts[keep]
        n = len(keys)
        versions = binlog_rows.RowColumns(np.full(n, binlog_pb2.Row.COMMITTED, np.uint8), ops, start_ts, commit_ts,
                                          np.zeros(n, np.uint64), np.zeros(n, np.uint64), keys, values,
                                          _empty_binary(n))
        if not state.locks:  # (the copy's: one empty set of columns, shared)
            return snapshot_batch.SnapshotColumns(versions, _no_locks())
        lock_items = sorted(state.locks.items())
        m = len(lock_items)
        locks = binlog_rows.RowColumns(
            np.full(m, binlog_pb2.Row.PREWRITE, np.uint8), np.array([op for _, (op, _) in lock_items], np.uint8),
            np.array([s for (_, s), _ in lock_items], np.uint64), np.zeros(m, np.uint64), np.zeros(m, np.uint64),
            np.zeros(m, np.uint64), pa.array([k for (k, _), _ in lock_items], binary),
            pa.array([v if op == binlog_pb2.PUT else b"" for _, (op, v) in lock_items], binary), _empty_binary(m))
        if lock_items:
            opened = self._open
            for (key, start), (op, _) in lock_items:
                opened[(key, start)] = op
        return snapshot_batch.SnapshotColumns(versions, locks)

    def max_commit_ts(self) -> int:
        """The newest commit the initial state holds (a snapshot waits for the DDL frontier)."""
        state = self._initial
        if state is None:
            return 0
        scanned = max((int(c[3].max()) for c in state.scan if len(c[3])), default=0)
        return max(max((c for _, c in state.writes), default=0), scanned)


_IN_TABLE = (0, 0, False)  # RegionFeed._own of a feed whose fields its table row holds
# RegionFeed._coverage of an empty whole snapshot's registration: [start, end) from floor 0,
# made when first asked for (an instance never used but by identity)
_WHOLE: Coverage = Coverage.__new__(Coverage)

ScanChunk = tuple[pa.BinaryArray, np.ndarray, np.ndarray, np.ndarray, pa.BinaryArray]


class _InitialScan:
    """What a registration's initial scan built until its snapshot (``RegionFeed.snapshot_columns``)."""

    __slots__ = ("writes", "locks", "waiting_commits", "scan", "ascending")

    def __init__(self) -> None:
        self.writes: dict[tuple[bytes, int], tuple[int, int, bytes]] = {}
        self.locks: dict[tuple[bytes, int], tuple[int, bytes]] = {}
        self.waiting_commits: dict[tuple[bytes, int], tuple[int, int, bytes]] = {}
        # the scan's COMMITTED rows as they came in columns (take_initial_columns):
        # (keys, ops, start ts, commit ts, values) per message, in feed order
        self.scan: list[ScanChunk] = []
        # every key of ``scan`` above the one before it (no version twice: first_versions is
        # not asked), as known of the chunks taken by take_initial_event
        self.ascending = True


_EMPTY_VALUE = feed_columns.EMPTY_VALUE  # a Delete's value


def _no_locks() -> binlog_rows.RowColumns:
    """A snapshot's locks when it has none: built once, shared (its arrays are read only)."""
    global _NO_LOCKS
    if _NO_LOCKS is None:
        u8, u64 = np.zeros(0, np.uint8), np.zeros(0, np.uint64)
        for a in (u8, u64):
            a.flags.writeable = False
        empty = _empty_binary(0)
        _NO_LOCKS = binlog_rows.RowColumns(u8, u8, u64, u64, u64, u64, empty, empty, empty)
    return _NO_LOCKS


_NO_LOCKS: binlog_rows.RowColumns | None = None


def _empty_binary(n: int) -> pa.BinaryArray:
    return pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(bytes(4 * (n + 1))), pa.py_buffer(b"")])


def snapshot_event(feed: RegionFeed, index: int, snapshot: binlog_pb2.RegionSnapshot | snapshot_batch.SnapshotColumns,
                   since_ts: int = 0) -> binlog_pb2.Event:
    """The snapshot's event: columns (``snapshot_columns``) in binlog format 2's columnar form;
    a ``RegionSnapshot`` as it is."""
    if isinstance(snapshot, snapshot_batch.SnapshotColumns):
        # filled in place: a sub-message given to a constructor is copied (slowly, for megabytes)
        event = binlog_pb2.Event(region_id=feed.id, index=index, epoch=feed.epoch())
        event.snapshot.region.CopyFrom(feed.region_proto())
        event.snapshot.since_ts = since_ts
        snapshot.pack(out=event.snapshot.batch)
        return event
    return binlog_pb2.Event(region_id=feed.id, index=index, epoch=feed.epoch(), snapshot=snapshot)
