"""What the write path holds between events and a flush (``WriteState``): the region states
it changes (``MutableRegion``), the open prewrites (the region caches), each table's decoded
rows waiting for a flush (``TableBuffer``), tombstones, the lock set and binlog position last
persisted; and the committed rows a batch stages before they decode (``StagedRows``). The
apply path (``store/apply.py``) changes it, the flush pipeline (``store/flush.py``) takes
from it what a flush persists."""
from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.batch_pairs import RunStage
from pyspark_theflash.store.region_board import RegionBoard
from pyspark_theflash.store.region_cache import RegionCaches
from pyspark_theflash.store.views import RegionState



class MutableRegion:
    """One region as the write path changes it. Its resolved ts and orphan window live in the
    write state's ``RegionBoard`` once the region is on it (``on_board``): a resolved ts
    listing thousands of regions moves them there as arrays, and this object reads and writes
    its own slot, so every path sees one value. Before that (a region being built) they are
    the object's own."""

    __slots__ = ("id", "start_key", "end_key", "epoch_version", "conf_ver", "applied_index", "state",
                 "snapshot_index", "_resolved_ts", "_orphan_until_ts", "_board", "_slot")

    def __init__(self, id: int, start_key: bytes = b"", end_key: bytes = b"", epoch_version: int = 0,
                 conf_ver: int = 0, applied_index: int = 0, resolved_ts: int = 0, state: str = "normal",
                 snapshot_index: int = 0, orphan_until_ts: int = 0) -> None:
        self.id = id
        self.start_key = start_key
        self.end_key = end_key
        self.epoch_version = epoch_version
        self.conf_ver = conf_ver
        self.applied_index = applied_index
        self.state = state
        self.snapshot_index = snapshot_index
        # Commits whose write a snapshot holds may still arrive (without their prewrite) up to
        # this commit ts: the snapshot's newest write. 0 = none expected.
        self._resolved_ts, self._orphan_until_ts = resolved_ts, orphan_until_ts
        self._board: RegionBoard | None = None
        self._slot = -1

    def on_board(self, board: RegionBoard, persisted_ts: int = 0) -> "MutableRegion":
        """Keep the resolved ts and orphan window in ``board`` from now on."""
        self._slot = board.add(self.id, self._resolved_ts, self._orphan_until_ts, persisted_ts)
        self._board = board
        return self

    @property
    def resolved_ts(self) -> int:
        board = self._board
        return self._resolved_ts if board is None else int(board.resolved[self._slot])

    @resolved_ts.setter
    def resolved_ts(self, ts: int) -> None:
        board = self._board
        if board is None:
            self._resolved_ts = ts
        else:
            board.resolved[self._slot] = ts

    @property
    def orphan_until_ts(self) -> int:
        board = self._board
        return self._orphan_until_ts if board is None else int(board.orphan_until[self._slot])

    @orphan_until_ts.setter
    def orphan_until_ts(self, ts: int) -> None:
        board = self._board
        if board is None:
            self._orphan_until_ts = ts
        else:
            board.orphan_until[self._slot] = ts

    def row(self) -> mf.RegionRow:
        """The region as a row of the manifest's regions table (its columns' order)."""
        return (self.id, self.start_key, self.end_key, self.epoch_version, self.conf_ver, self.applied_index,
                self.resolved_ts, self.state, self.snapshot_index, self.orphan_until_ts)

    def undo_copy(self) -> "MutableRegion":
        """A copy for a batch's undo of the fields the object holds (immutable values); its
        board values are the board's to undo (``RegionBoard.save``), the copy shares its slot."""
        c = object.__new__(MutableRegion)
        for name in MutableRegion.__slots__:
            object.__setattr__(c, name, getattr(self, name))
        return c

    def frozen(self) -> RegionState:
        return RegionState(self.id, self.start_key, self.end_key, self.epoch_version, self.conf_ver,
                           self.applied_index, self.resolved_ts, self.state, self.snapshot_index)

    def __repr__(self) -> str:
        return (f"MutableRegion(id={self.id}, epoch_version={self.epoch_version}, applied_index={self.applied_index}, "
                f"resolved_ts={self.resolved_ts}, state={self.state!r})")


class SnapshotWrites:
    """The (key, start ts) of a region snapshot's versions, kept as the snapshot's columns: a
    COMMIT the store finds no prewrite for is looked up here (``in``) only until the region's
    resolved ts passes the snapshot's newest commit, and most snapshots see no such lookup, so
    the Python set is made at the first one, not per snapshot."""

    def __init__(self, parts: list[tuple[pa.Array, np.ndarray]]) -> None:
        self._parts = [p for p in parts if len(p[1])]
        self._set: set[tuple[bytes, int]] | None = None

    @classmethod
    def of(cls, keys: pa.Array, start_ts: np.ndarray) -> "SnapshotWrites":
        return cls([(keys, start_ts)])

    def __contains__(self, item: object) -> bool:
        if self._set is None:
            self._set = set()
            for keys, start_ts in self._parts:
                self._set.update(zip(keys.to_pylist(), start_ts.tolist()))
        return item in self._set

    def __len__(self) -> int:
        return sum(len(s) for _, s in self._parts)

    def union(self, other: "SnapshotWrites | None") -> "SnapshotWrites":
        return SnapshotWrites(self._parts + ([] if other is None else other._parts))


@dataclass
class StagedRows:
    """What one write() produced before it is known to decode.

    Committed rows in the order they were staged, each numbered by its *seq* (0, 1, ... in
    this batch): spans of what a run decided inside itself stages (``batch_pairs.RunStage``;
    consecutive events of one run make one span, so such a batch is staged without copying),
    chunks of arrays and rows staged one at a time (commits matched with their prewrite, snapshot
    writes), which collect in lists until the next chunk closes them. Tombstones and region
    runs refer to seqs."""

    # arrays (keys, values, commit_ts, ops), or a span [lo, hi) of what a run stages
    chunks: list[tuple[pa.Array, pa.Array, np.ndarray, np.ndarray] | StageSpan] = field(default_factory=list)
    rows: int = 0  # rows staged so far: the seq of the next one
    region_runs: list[tuple[int, int]] = field(default_factory=list)  # (first row seq, region id)
    tombstones: list[tuple[int, bytes, bytes, str]] = field(default_factory=list)  # (seq, start, end, why)
    # region -> (key, start_ts) of its snapshot's writes; None: forget the region's set
    snapshot_writes: dict[int, SnapshotWrites | None] = field(default_factory=dict)
    # rows staged one at a time since the last chunk: keys, values, commit_ts, ops
    _keys: list[bytes] = field(default_factory=list)
    _values: list[bytes] = field(default_factory=list)
    _commit_ts: list[int] = field(default_factory=list)
    _ops: list[int] = field(default_factory=list)

    def add(self, region_id: int, key: bytes, commit_ts: int, op: int, value: bytes = b"") -> None:
        """One row: a PUT of ``value``, a DELETE, or a LOCK (no data: dropped at decode)."""
        self.mark_region(region_id)
        self._keys.append(key)
        self._values.append(value)
        self._commit_ts.append(commit_ts)
        self._ops.append(op)
        self.rows += 1

    def add_columns(self, region_id: int, keys: pa.Array, values: pa.Array, commit_ts: np.ndarray,
                    ops: np.ndarray) -> None:
        """Many rows at once (binary arrays, uint64 commit ts, OpType per row; a LOCK row
        changes no data and is dropped at decode)."""
        if not len(keys):
            return
        self.mark_region(region_id)
        self._close_rows()
        self.chunks.append((keys, values, commit_ts, ops))
        self.rows += len(keys)

    def add_stage_rows(self, region_id: int, stage: RunStage, lo: int, hi: int) -> None:
        """Rows lo..hi of what a run stages (as ``add_columns``); a span that continues the
        previous one of the same run extends it."""
        if hi == lo:
            return
        self.mark_region(region_id)
        self._append_span(stage, lo, hi)

    def add_stage_events(self, stage: RunStage, j0: int, j1: int, region_ids: list[int]) -> None:
        """What events j0..j1 of a run stage (``region_ids``: theirs), as ``add_stage_rows``
        of each event in turn would add it (a few events at a time: a step per event in Python
        costs less than NumPy's per-call overhead)."""
        starts = stage.starts[j0:j1 + 1].tolist()
        lo, hi = starts[0], starts[-1]
        if hi == lo:
            return
        # each region change among the events with rows starts a region run
        last = self.region_runs[-1][1] if self.region_runs else None
        for rid, first, end in zip(region_ids, starts, starts[1:]):
            if end > first and rid != last:
                self.region_runs.append((self.rows + first - lo, rid))
                last = rid
        self._append_span(stage, lo, hi)

    def _append_span(self, stage: RunStage, lo: int, hi: int) -> None:
        """Rows lo..hi of ``stage``; a span continuing the previous one of the same stage extends it."""
        self._close_rows()
        last = self.chunks[-1] if self.chunks else None
        if isinstance(last, StageSpan) and last.stage is stage and last.hi == lo:
            last.hi = hi
        else:
            self.chunks.append(StageSpan(stage, lo, hi))
        self.rows += hi - lo

    def mark_region(self, region_id: int) -> None:
        """Rows staged from here on belong to ``region_id`` (for error messages)."""
        if not self.region_runs or self.region_runs[-1][1] != region_id:
            self.region_runs.append((self.rows, region_id))

    def region_of(self, seq: int) -> int:
        region = self.region_runs[0][1] if self.region_runs else 0
        for start, rid in self.region_runs:
            if start > seq:
                break
            region = rid
        return region

    def _close_rows(self) -> None:
        if self._keys:
            self.chunks.append((pa.array(self._keys, type=pa.binary()), pa.array(self._values, type=pa.binary()),
                                np.array(self._commit_ts, dtype=np.uint64), np.array(self._ops, dtype=np.uint8)))
            self._keys, self._values, self._commit_ts, self._ops = [], [], [], []

    def columns(self) -> tuple[pa.Array, pa.Array, np.ndarray, np.ndarray]:
        """Every staged row, in seq order: keys, values, commit_ts, ops."""
        self._close_rows()
        chunks = [c.columns() if isinstance(c, StageSpan) else c for c in self.chunks]
        if len(chunks) == 1:
            return chunks[0]
        keys = concat_binary([c[0] for c in chunks])
        values = concat_binary([c[1] for c in chunks])
        return keys, values, np.concatenate([c[2] for c in chunks]), np.concatenate([c[3] for c in chunks])


@dataclass
class StageSpan:
    """Rows lo..hi of what a run stages: key, value, commit ts, op."""

    stage: RunStage
    lo: int
    hi: int

    def columns(self) -> tuple[pa.Array, pa.Array, np.ndarray, np.ndarray]:
        st, lo, hi = self.stage, self.lo, self.hi
        return st.keys.slice(lo, hi - lo), st.values.slice(lo, hi - lo), st.commit_ts[lo:hi], st.ops[lo:hi]


def concat_binary(arrays: list[pa.Array]) -> pa.Array:
    """One binary array (large_binary when the bytes overflow int32 offsets)."""
    try:
        return pa.concat_arrays(arrays)
    except pa.ArrowInvalid:  # offset overflow
        return pa.concat_arrays([a.cast(pa.large_binary()) for a in arrays])


@dataclass
class TableBuffer:
    """Committed rows of one table waiting for the next flush, by schema version."""

    chunks: list[tuple[int, pa.Table]] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0


def position_tuple(position: binlog_pb2.Position | tuple[int, int] | None) -> tuple[int, int] | None:
    if position is None:
        return None
    if isinstance(position, binlog_pb2.Position):
        return (int(position.segment), int(position.offset))
    seg, off = position[0], position[1]
    return (int(seg), int(off))


class WriteState:
    """The single writer's memory between a write and the flush that persists it."""

    def __init__(self, caches: RegionCaches | None = None) -> None:
        # write(), flush(): one at a time (re-entrant: a write past the thresholds flushes)
        self.lock = threading.RLock()
        self.caches = caches  # open prewrites per region; None in a read-only store
        self.regions: dict[int, MutableRegion] = {}
        self.board = RegionBoard()  # their resolved ts and orphan windows, as columns
        self.buffers: dict[int, TableBuffer] = {}
        self.tombstones: list[tuple[bytes, bytes, str]] = []
        self.snapshot_writes: dict[int, SnapshotWrites] = {}
        self.persisted_locks: set[tuple[int, bytes, int]] = set()
        # regions whose fields other than the resolved ts may have changed since the last flush
        # (a resolved ts alone moves on the board: the flush finds those as arrays)
        self.dirty_regions: set[int] = set()
        # each region's row as the manifest has it (or as the flush in flight writes it): a
        # dirty region whose only change is its resolved ts is flushed as one grouped UPDATE
        # (the resolved ts persisted is the board's; the one in this row is not kept up)
        self.persisted_rows: dict[int, mf.RegionRow] = {}
        self.position: tuple[int, int] | None = None
        self.persisted_position: tuple[int, int] | None = None
        self.dirty_since: float | None = None     # monotonic time of the oldest unflushed change

    def load(self, conn: sqlite3.Connection, caches: RegionCaches) -> None:
        """The persisted regions, position and open locks (into ``caches``), as a writer opens."""
        with mf.read(conn):
            for r in conn.execute("SELECT region_id, start_key, end_key, epoch_version, conf_ver, applied_index, "
                                  "resolved_ts, state, snapshot_index, orphan_until_ts FROM regions"):
                reg = MutableRegion(int(r[0]), bytes(r[1]), bytes(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]),
                                    r[7], int(r[8]), int(r[9]))
                self.regions[reg.id] = reg.on_board(self.board, persisted_ts=int(r[6]))
                self.persisted_rows[reg.id] = reg.row()
            seg = mf.get_meta(conn, "position_segment")
            if seg is not None:
                self.position = (int(seg), int(mf.get_meta(conn, "position_offset")))
                self.persisted_position = self.position
            locks = conn.execute("SELECT region_id, key, start_ts, primary_key, op, ttl, value FROM locks").fetchall()
        self.caches = caches
        for region_id, key, start_ts, primary, op, ttl, value in locks:
            caches.prewrite(int(region_id), bytes(key), int(start_ts), int(op), bytes(value or b""),
                            bytes(primary), int(ttl))
            self.persisted_locks.add((int(region_id), bytes(key), int(start_ts)))

    @property
    def buffered_rows(self) -> int:
        return sum(b.rows for b in self.buffers.values())

    @property
    def buffered_bytes(self) -> int:
        return sum(b.bytes for b in self.buffers.values())

    def has_unflushed(self) -> bool:
        """Was anything applied (rows, tombstones, region states, position) since the last flush?"""
        return bool(self.buffers or self.tombstones or self.dirty_regions or self.board.moved
                    or self.position != self.persisted_position)
