"""The store: one directory, one writer, many readers.

``write`` applies a batch of region events atomically to memory (region caches and
committed-row buffers); ``flush`` persists everything applied so far as one manifest edit
(delta parts, region states, open locks, binlog position). The binlog is the write-ahead
log. See docs/store.md for files, edits and invariants.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence, overload

import numpy as np
import pyarrow as pa

from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.store import keyspace
from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.errors import (
    CommitWithoutPrewriteError,
    FlushFailedError,
    ReadOnlyStoreError,
    MalformedRecordKeyError,
    UnknownRegionError,
    UnknownTableError,
)
from pyspark_theflash.store.batch_pairs import EventPairs, RunPairs, RunStage, find_pairs, run_stage
from pyspark_theflash.store.leases import Leases
from pyspark_theflash.store.predicate import Expr
from pyspark_theflash.store.read import DEFAULT_BATCH_ROWS, read_parts
from pyspark_theflash.store.region_cache import RegionCaches, SpillFile
from pyspark_theflash.store.txn_merge_tree import (
    COMMIT_TS,
    DELMARK,
    HIDDEN_FIELDS,
    HIDDEN_NAMES,
    ROWID,
    file_schema,
    install_part,
    new_part_name,
    sort_versions,
    split_by_partition,
    stats_to_json,
    sync_dirs,
    temp_name,
    write_part,
)
from pyspark_theflash.store.schemas import TableHistory
from pyspark_theflash.store.views import RegionState, StoreView, intersect

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo

Row = binlog_pb2.Row
PUT, DELETE, LOCK = binlog_pb2.PUT, binlog_pb2.DELETE, binlog_pb2.LOCK
_LOCK_TYPE_OP = {"P": PUT, "D": DELETE, "L": LOCK, "S": LOCK}


@dataclass(frozen=True)
class StoreOptions:
    flush_rows: int = 500_000            # write() flushes when this many committed rows wait
    flush_bytes: int = 128 << 20         # ... or this many bytes of them
    flush_deadline_s: float = 2.0        # flush_due() once the oldest unflushed change is this old
    partition_max_rows: int = 2_000_000  # compaction splits a partition beyond this
    partition_max_bytes: int = 256 << 20
    row_group_rows: int = 64 * 1024      # stable parts' Parquet row groups
    prewrite_memory_bytes: int = 256 << 20  # prewritten values beyond this spill to disk
    compact_min_deltas: int = 4          # background compaction merges partitions with this many deltas
    read_batch_rows: int = DEFAULT_BATCH_ROWS
    scan_lease_ttl_s: float = 600.0
    busy_timeout_ms: int = 30_000


@dataclass(frozen=True)
class FlushResult:
    version: int                 # manifest version of the edit (0: nothing to flush)
    parts: int
    rows: int
    bytes: int
    regions: int                 # region states written (changed since the previous flush)
    locks: int                   # open locks persisted after the edit
    position: tuple[int, int] | None
    seconds: float


@dataclass
class WriteResult:
    events: int = 0
    applied: int = 0
    skipped: int = 0             # at or below the region's applied index
    prewrites: int = 0
    commits: int = 0
    rollbacks: int = 0
    rows: int = 0                # committed rows buffered (record keys of replicated tables)
    orphan_commits: int = 0      # commits already contained in a region snapshot
    flushed: FlushResult | None = None


@dataclass
class _Region:
    id: int
    start_key: bytes = b""
    end_key: bytes = b""
    epoch_version: int = 0
    conf_ver: int = 0
    applied_index: int = 0
    resolved_ts: int = 0
    state: str = "normal"
    snapshot_index: int = 0
    # Commits whose write a snapshot holds may still arrive (without their prewrite) up to
    # this commit ts: the snapshot's newest write. 0 = none expected.
    orphan_until_ts: int = 0

    def frozen(self) -> RegionState:
        return RegionState(self.id, self.start_key, self.end_key, self.epoch_version, self.conf_ver,
                           self.applied_index, self.resolved_ts, self.state, self.snapshot_index)


@dataclass
class _Staged:
    """What one write() produced before it is known to decode.

    Committed rows in the order they were staged, each numbered by its *seq* (0, 1, ... in
    this batch): spans of what a run decided inside itself stages (``batch_pairs.RunStage``;
    consecutive events of one run make one span, so such a batch is staged without copying),
    chunks of arrays and rows staged one at a time (commits matched with their prewrite, snapshot
    writes), which collect in lists until the next chunk closes them. Tombstones and region
    runs refer to seqs."""

    # arrays (keys, values, commit_ts, ops), or a span [lo, hi) of what a run stages
    chunks: list[tuple[pa.Array, pa.Array, np.ndarray, np.ndarray] | _StageSpan] = field(default_factory=list)
    rows: int = 0  # rows staged so far: the seq of the next one
    region_runs: list[tuple[int, int]] = field(default_factory=list)  # (first row seq, region id)
    tombstones: list[tuple[int, bytes, bytes, str]] = field(default_factory=list)  # (seq, start, end, why)
    # region -> (key, start_ts) of its snapshot's writes; None: forget the region's set
    snapshot_writes: dict[int, set[tuple[bytes, int]] | None] = field(default_factory=dict)
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
        self._close_rows()
        last = self.chunks[-1] if self.chunks else None
        if isinstance(last, _StageSpan) and last.stage is stage and last.hi == lo:
            last.hi = hi
        else:
            self.chunks.append(_StageSpan(stage, lo, hi))
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
        chunks = [c.columns() if isinstance(c, _StageSpan) else c for c in self.chunks]
        if len(chunks) == 1:
            return chunks[0]
        keys = _concat_binary([c[0] for c in chunks])
        values = _concat_binary([c[1] for c in chunks])
        return keys, values, np.concatenate([c[2] for c in chunks]), np.concatenate([c[3] for c in chunks])


@dataclass
class _StageSpan:
    """Rows lo..hi of what a run stages: key, value, commit ts, op."""

    stage: RunStage
    lo: int
    hi: int

    def columns(self) -> tuple[pa.Array, pa.Array, np.ndarray, np.ndarray]:
        st, lo, hi = self.stage, self.lo, self.hi
        return st.keys.slice(lo, hi - lo), st.values.slice(lo, hi - lo), st.commit_ts[lo:hi], st.ops[lo:hi]


def _count_rows(types: np.ndarray, result: WriteResult) -> None:
    """Add rows of these types to the write's commit, prewrite and rollback counts."""
    per_type = np.bincount(types, minlength=max(Row.COMMITTED, Row.COMMIT, Row.PREWRITE, Row.ROLLBACK) + 1)
    result.commits += int(per_type[Row.COMMIT] + per_type[Row.COMMITTED])
    result.prewrites += int(per_type[Row.PREWRITE])
    result.rollbacks += int(per_type[Row.ROLLBACK])


def _concat_binary(arrays: list[pa.Array]) -> pa.Array:
    """One binary array (large_binary when the bytes overflow int32 offsets)."""
    try:
        return pa.concat_arrays(arrays)
    except pa.ArrowInvalid:  # offset overflow
        return pa.concat_arrays([a.cast(pa.large_binary()) for a in arrays])


@dataclass
class _Buffer:
    """Committed rows of one table waiting for the next flush, by schema version."""

    chunks: list[tuple[int, pa.Table]] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0


def _position_tuple(position: Any) -> tuple[int, int] | None:
    if position is None:
        return None
    if isinstance(position, binlog_pb2.Position):
        return (int(position.segment), int(position.offset))
    seg, off = position[0], position[1]
    return (int(seg), int(off))


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch is applied. An apply allocates
    one or two objects per row (prewrites, lock keys) and creates no reference cycles; with
    the collector on, its generation scans over the ever larger region caches cost about a third
    of the CPU of a 2PC apply (measured with bench/ingest.py --two-phase). Reference counting
    still frees everything; the collector resumes afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Store:
    """A TheFlash store directory. ``Store.open(path)`` for the single writer,
    ``Store.open(path, readonly=True)`` for readers in any process."""

    def __init__(self, root: Path, readonly: bool, options: StoreOptions) -> None:
        self.root = root
        self.readonly = readonly
        self.options = options
        self._local = threading.local()
        self._write_lock = threading.RLock()   # write(), flush(): the single writer
        # Flush and compaction commits, in order. A pipelined flush takes it in the caller and
        # its background thread releases it once the edit is done (a threading.Lock may be
        # released by any thread): no other edit comes between its partition read and its commit.
        self._edit_lock = threading.Lock()
        # Pipelined flushes in flight: who holds or hands on the edit lock, who waits for it.
        self._chain_mutex = threading.Lock()
        self._edit_waiters = 0
        self._pending: PendingFlush | None = None          # the last pipelined flush
        self._flush_conn: sqlite3.Connection | None = None  # the pipelined flushes' manifest connection
        self._failure: BaseException | None = None         # a pipelined flush failed: no more writes
        self._failure_reported = False
        self._conn = self._connect(create=not readonly)
        if readonly:
            mf.check_format(self._conn, root)
        else:
            mf.initialise(self._conn)
        self.leases = Leases(lambda: mf.connect(root, create=False, busy_timeout_ms=options.busy_timeout_ms,
                                                durable=False))
        self._background: Any = None
        # Replaces codec.batch.decode_rows_to_arrow (same signature) for the committed rows of a
        # batch, e.g. to decode large batches on Spark executors (writer/spark_decode.py).
        self.decode_rows: Any = None
        # writer state
        self._regions: dict[int, _Region] = {}
        self._schemas: dict[int, "TableInfo"] = {}          # newest version of each table id
        self._histories: dict[int, TableHistory] = {}       # every version, by commit ts
        self._file_schemas: dict[tuple[int, int], tuple[pa.Schema, list[pa.Field]]] = {}
        self._ignored: set[int] = set()
        self._buffers: dict[int, _Buffer] = {}
        self._tombstones: list[tuple[bytes, bytes, str]] = []
        self._snapshot_writes: dict[int, set[tuple[bytes, int]]] = {}
        self._persisted_locks: set[tuple[int, bytes, int]] = set()
        self._dirty_regions: set[int] = set()      # regions changed since the last flush
        self._position: tuple[int, int] | None = None
        self._persisted_position: tuple[int, int] | None = None
        self._dirty_since: float | None = None
        self._caches: RegionCaches | None = None
        if not readonly:
            self._load_writer_state()

    # --- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], readonly: bool = False,
             options: StoreOptions | None = None) -> "Store":
        root = Path(path)
        if not readonly:
            root.mkdir(parents=True, exist_ok=True)
        return cls(root, readonly, options or StoreOptions())

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        return mf.connect(self.root, create=create, busy_timeout_ms=self.options.busy_timeout_ms)

    def _thread_conn(self) -> sqlite3.Connection:
        """A manifest connection owned by the calling thread (SQLite connections must not be
        shared by threads that run transactions concurrently)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _load_writer_state(self) -> None:
        conn = self._conn
        with StoreView(conn, owns_conn=False) as view:
            self._histories = view.histories()
        self._schemas = {tid: h.latest for tid, h in self._histories.items()}
        with mf.read(conn):
            for r in conn.execute("SELECT region_id, start_key, end_key, epoch_version, conf_ver, applied_index, "
                                  "resolved_ts, state, snapshot_index, orphan_until_ts FROM regions"):
                self._regions[int(r[0])] = _Region(int(r[0]), bytes(r[1]), bytes(r[2]), int(r[3]), int(r[4]),
                                                   int(r[5]), int(r[6]), r[7], int(r[8]), int(r[9]))
            self._ignored = {int(r[0]) for r in conn.execute("SELECT table_id FROM ignored_tables")}
            seg = mf.get_meta(conn, "position_segment")
            if seg is not None:
                self._position = (int(seg), int(mf.get_meta(conn, "position_offset")))
                self._persisted_position = self._position
            locks = conn.execute("SELECT region_id, key, start_ts, primary_key, op, ttl, value FROM locks").fetchall()
        self._caches = RegionCaches(SpillFile(self.root / "spill.db"), self.options.prewrite_memory_bytes)
        for region_id, key, start_ts, primary, op, ttl, value in locks:
            self._caches.prewrite(int(region_id), bytes(key), int(start_ts), int(op), bytes(value or b""),
                                  bytes(primary), int(ttl))
            self._persisted_locks.add((int(region_id), bytes(key), int(start_ts)))
        self._remove_unlisted_files()

    def _remove_unlisted_files(self) -> None:
        """Files under tables/ that no manifest row names are leftovers of a flush or a
        compaction that crashed before its edit committed: never visible, safe to delete."""
        tables_dir = self.root / "tables"
        if not tables_dir.exists():
            return
        listed = {r[0] for r in self._conn.execute("SELECT file FROM parts")}
        for dirpath, _dirs, files in os.walk(tables_dir):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")
                if rel not in listed:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))

    def close(self) -> None:
        """Drain a pending pipelined flush, then release everything. A failure of that flush
        no call has reported yet is raised here (after closing)."""
        self.stop_background()
        if self._pending is not None:
            self._pending._done.wait()
        if self._caches is not None:
            self._caches.close()
        self.leases.close()
        self._conn.close()
        if self._flush_conn is not None:
            self._flush_conn.close()
            self._flush_conn = None
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._failure is not None and not self._failure_reported:
            self._raise_failure()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_writer(self, operation: str) -> None:
        if self.readonly:
            raise ReadOnlyStoreError(str(self.root), operation)
        self._raise_failure()

    @contextlib.contextmanager
    def _editing(self) -> Iterator[None]:
        """The edit lock (after any pending pipelined flush), refusing if that flush failed."""
        with self._chain_mutex:
            self._edit_waiters += 1  # no further pipelined flush follows the pending one
        try:
            self._edit_lock.acquire()
        finally:
            with self._chain_mutex:
                self._edit_waiters -= 1
        try:
            self._raise_failure()
            yield
        finally:
            self._edit_lock.release()

    # --- schemas -----------------------------------------------------------------------------
    def put_schema(self, db: str, table_info: dict[str, Any], commit_ts: int | None = None) -> int:
        """Record a schema version of a table (idempotent); returns its schema version.

        ``commit_ts``: the commit ts of the DDL that made it (a binlog DDL event's); rows
        committed from then on decode with it. None: learned from the schema endpoint — in force
        from the table info's ``update_timestamp`` (0 without one); a version already known
        keeps its commit ts."""
        from pyspark_theflash.schema import TableInfo

        self._require_writer("put_schema")
        info = TableInfo.from_json(table_info, db=db)
        history = self._histories.get(info.id)
        known = history is not None and history.by_version(info.schema_version) is not None
        estimate = commit_ts is None
        if commit_ts is None:
            commit_ts = int(info.raw.get("update_timestamp") or 0)
        with self._editing():
            with mf.edit(self._conn) as e:
                self._put_version(e, db, info, commit_ts, exact=not estimate)
        if estimate and known:
            self._ignored.discard(info.id)
        else:
            self._learn_version(info, commit_ts)
        return int(info.schema_version)

    def _put_version(self, e: "mf.Edit", db: str, info: "TableInfo", commit_ts: int, exact: bool = True) -> None:
        """One table version in the manifest; ``exact``: its commit ts replaces an estimate."""
        conn = e.conn
        conn.execute("INSERT OR IGNORE INTO tables VALUES (?,?,?,?,?,?)",
                     (info.id, info.schema_version, db, info.name, mf.dumps(info.to_json()), e.version))
        conn.execute("INSERT INTO table_versions VALUES (?,?,?) ON CONFLICT(table_id, schema_version) "
                     + ("DO UPDATE SET commit_ts = excluded.commit_ts" if exact else "DO NOTHING"),
                     (info.id, info.schema_version, commit_ts))
        conn.execute("DELETE FROM ignored_tables WHERE table_id = ?", (info.id,))

    def _learn_version(self, info: "TableInfo", commit_ts: int) -> None:
        history = self._histories.setdefault(info.id, TableHistory(info.id, info.db))
        history.add(info, commit_ts)
        self._schemas[info.id] = history.latest
        self._ignored.discard(info.id)

    def apply_ddl(self, event: binlog_pb2.Event) -> bool:
        """A binlog DDL event (``binlog_pb2.Ddl``): the table version it makes, in force from its
        commit ts, and the table ids it creates or retires (DROP TABLE, TRUNCATE), in one
        manifest edit. A DDL of an ignored table changes nothing (TRUNCATE passes the ignoring
        on to the new id). Idempotent; False when it changed nothing."""
        from pyspark_theflash.schema import TableInfo

        self._require_writer("apply_ddl")
        ddl = event.ddl
        Ddl = binlog_pb2.Ddl
        info = TableInfo.from_json(json.loads(ddl.table_info), db=ddl.db)
        tid, ts = int(ddl.table_id), int(ddl.commit_ts)
        retire = tid if ddl.type == Ddl.DROP_TABLE else int(ddl.old_table_id)
        created = ddl.type in (Ddl.CREATE_TABLE, Ddl.TRUNCATE_TABLE)
        if ddl.type == Ddl.TRUNCATE_TABLE and retire in self._ignored and tid not in self._ignored:
            self.ignore_table(tid, ddl.db, info.name)
        history = self._histories.get(tid)
        new_version = ddl.type != Ddl.DROP_TABLE and tid not in self._ignored and (
            history is None or not history.has(info.schema_version, ts))
        old = self._histories.get(retire) if retire else None
        new_retire = old is not None and old.retired_ts is None
        new_life = created and tid not in self._ignored and (history is None or history.created_ts != ts)
        if not (new_version or new_retire or new_life):
            return False
        why = {Ddl.DROP_TABLE: "dropped", Ddl.TRUNCATE_TABLE: f"truncated (the name is table {tid} now)"}
        with self._editing():
            with mf.edit(self._conn) as e:
                conn = e.conn
                if new_version:
                    self._put_version(e, ddl.db, info, ts)
                if new_life:
                    conn.execute("INSERT INTO table_lifetimes(table_id, created_ts) VALUES (?, ?) ON CONFLICT(table_id) "
                                 "DO UPDATE SET created_ts = excluded.created_ts", (tid, ts))
                if new_retire:
                    conn.execute("INSERT INTO table_lifetimes(table_id, created_ts, retired_ts, reason, retired_version) "
                                 "VALUES (?, 0, ?, ?, ?) ON CONFLICT(table_id) DO UPDATE SET retired_ts = "
                                 "excluded.retired_ts, reason = excluded.reason, retired_version = excluded.retired_version",
                                 (retire, ts, why.get(ddl.type, "retired"), e.version))
        if new_version:
            self._learn_version(info, ts)
        if new_life:
            self._histories[tid].created_ts = ts
        if new_retire and old is not None:
            old.retired_ts, old.retired_reason = ts, why.get(ddl.type, "retired")
        return True

    def replicates(self, table_id: int) -> bool | None:
        """True: the store holds the table's schema; False: it ignores the table; None: neither."""
        if int(table_id) in self._ignored:
            return False
        return True if int(table_id) in self._histories else None

    def known_column_ids(self) -> dict[int, set[int]]:
        """Per replicated table id: the ids of every column any stored version has."""
        return {tid: h.column_ids() for tid, h in self._histories.items()}

    def ignore_table(self, table_id: int, db: str, name: str) -> None:
        """Rows of this table are dropped by write() from now on (not replicated)."""
        self._require_writer("ignore_table")
        with self._editing():
            with mf.edit(self._conn, bump=False):
                self._conn.execute("INSERT OR REPLACE INTO ignored_tables VALUES (?,?,?)", (table_id, db, name))
        self._ignored.add(table_id)

    def set_upstream(self, address: str) -> None:
        self._require_writer("set_upstream")
        with self._editing(), mf.edit(self._conn, bump=False):
            mf.set_meta(self._conn, "upstream", address)

    # --- the write path ----------------------------------------------------------------------
    def write(self, events: Sequence[binlog_pb2.Event], position: Any = None) -> WriteResult:
        """Apply a batch of events atomically to memory; ``position`` is where the binlog
        continues after them. On UnknownTableError (or any error) nothing is applied."""
        self._require_writer("write")
        assert self._caches is not None
        with self._write_lock, _cyclic_gc_paused():
            for ev in events:  # the schema versions a batch's rows may need, known before decoding
                if ev.WhichOneof("payload") == "ddl":
                    self.apply_ddl(ev)
            result = WriteResult(events=len(events))
            staged = _Staged()
            saved_regions: dict[int, _Region | None] = {}
            self._caches.begin()
            try:
                at = 0
                while at < len(events):
                    end, run, in_run, pairs = self._pair_run(events, at)
                    stage = run_stage(run, pairs)
                    if stage is not None:  # every row decided inside the run: staged as arrays
                        _count_rows(run.rows.types, result)
                    for i in range(at, end):
                        j = in_run[i - at]
                        if j < 0:
                            self._apply_event(events[i], staged, saved_regions, result)
                        else:
                            self._apply_event(events[i], staged, saved_regions, result, run, j, pairs, stage)
                    if end == at:  # a snapshot or admin event: a barrier no pair spans
                        self._apply_event(events[at], staged, saved_regions, result)
                        end += 1
                    at = end
                decoded = self._decode(staged)
            except BaseException:
                self._caches.rollback()
                for rid, old in saved_regions.items():
                    if old is None:
                        self._regions.pop(rid, None)
                    else:
                        self._regions[rid] = old
                raise
            self._caches.commit()
            # From here on nothing can fail half-way: the batch is decoded.
            self._dirty_regions.update(saved_regions)
            for _seq, start, end, why in staged.tombstones:
                self._delete_range_in_buffers(start, end)
                self._tombstones.append((start, end, why))
            for tid, version, table in decoded:
                buf = self._buffers.setdefault(tid, _Buffer())
                buf.chunks.append((version, table))
                buf.rows += table.num_rows
                buf.bytes += table.nbytes
                result.rows += table.num_rows
            for rid, writes in staged.snapshot_writes.items():
                if writes is None:
                    self._snapshot_writes.pop(rid, None)
                else:
                    self._snapshot_writes[rid] = writes
            pos = _position_tuple(position)
            if pos is not None:
                self._position = pos
            if (result.applied or pos is not None) and self._dirty_since is None:
                self._dirty_since = time.monotonic()
            if self.buffered_rows >= self.options.flush_rows or self.buffered_bytes >= self.options.flush_bytes:
                result.flushed = self.flush()
            return result

    @property
    def buffered_rows(self) -> int:
        return sum(b.rows for b in self._buffers.values())

    @property
    def buffered_bytes(self) -> int:
        return sum(b.bytes for b in self._buffers.values())

    def flush_due(self) -> bool:
        """True when the oldest unflushed change is older than the flush deadline."""
        return (self._dirty_since is not None
                and time.monotonic() - self._dirty_since >= self.options.flush_deadline_s)

    def _region_for_update(self, rid: int, saved: dict[int, _Region | None]) -> _Region:
        """The region's state, saved for the batch's undo; a new one (no range yet) for a region
        a snapshot or split is introducing."""
        reg = self._regions.get(rid)
        if rid not in saved:
            saved[rid] = None if reg is None else replace(reg)
        if reg is None:
            reg = _Region(rid)
            self._regions[rid] = reg
        return reg

    def _pair_run(self, events: Sequence[binlog_pb2.Event], start: int
                  ) -> tuple[int, binlog_rows.RunColumns, list[int], RunPairs]:
        """The run of events from ``start`` that is applied as one: entries events (and
        resolved ts, and events to be skipped) up to the first snapshot or admin event to be
        applied — those clear or move cache entries, so a prewrite before one and its commit
        after it must meet in the cache, as they do without pairing. Returns the run's end,
        its entries events' rows joined (``binlog_rows.run_columns``), for each event of the
        run its index among them (-1: not an entries event to apply) and the pairs found
        (``batch_pairs``). Events at or below their region's applied index are recognised the
        way ``_apply_event`` will skip them. The run also ends before an event whose rows do
        not parse: applied in its turn, it raises there."""
        caches = self._caches
        assert caches is not None
        applied: dict[int, int] = {}
        region_ids: list[int] = []
        entries: list[binlog_pb2.Entries] = []
        wheres: list[str] = []
        in_run: list[int] = []
        end = start
        while end < len(events):
            ev = events[end]
            kind = ev.WhichOneof("payload")
            rid = int(ev.region_id)
            j = -1
            if kind not in ("resolved_ts", "ddl"):
                if rid not in applied:
                    reg = self._regions.get(rid)
                    applied[rid] = 0 if reg is None else reg.applied_index
                if ev.index > applied[rid]:
                    if kind in ("admin", "snapshot"):
                        break
                    applied[rid] = int(ev.index)
                    if kind == "entries":
                        j = len(entries)
                        entries.append(ev.entries)
                        wheres.append(f"region {rid} index {ev.index}")
                        region_ids.append(rid)
            in_run.append(j)
            end += 1
        run = binlog_rows.run_columns(entries, wheres)
        if len(run) < len(entries):  # that event does not parse, or starts the next run
            end = start + in_run.index(len(run))
            del in_run[end - start:]
            del region_ids[len(run):]
        pairs = find_pairs(region_ids, run)
        if pairs.count() and caches.count():
            assert pairs.pair_regions is not None and pairs.pair_start_ts is not None
            pair_keys = pairs.pair_keys()
            for rid in np.unique(pairs.pair_regions).tolist():
                sel = np.flatnonzero(pairs.pair_regions == rid)
                caches.drop_each(rid, pair_keys.take(pa.array(sel)), pairs.pair_start_ts[sel])
        return end, run, in_run, pairs

    def _apply_event(self, ev: binlog_pb2.Event, staged: _Staged, saved: dict[int, _Region | None],
                     result: WriteResult, run: binlog_rows.RunColumns | None = None, j: int = -1,
                     pairs: RunPairs | None = None, stage: RunStage | None = None) -> None:
        """One event. ``run``, ``j``: an entries event ``_pair_run`` found to apply is event
        ``j`` of that run, whose ``pairs`` it found too, and ``stage``, what the run stages if
        every row of it is decided inside it."""
        assert self._caches is not None
        kind = ev.WhichOneof("payload")
        if kind == "ddl":  # applied before the batch (apply_ddl); no region's event
            return
        rid = int(ev.region_id)
        if rid not in self._regions and kind != "snapshot" and self._regions:
            # Only a snapshot or the split creating it introduces a region (its range): never
            # invent one. (A store that has met no region at all takes the first as a fresh
            # cluster's bootstrap region, which covers the whole key space.) A resolved ts of
            # an unknown region says nothing the store could use yet.
            if kind == "resolved_ts":
                result.skipped += 1
                return
            raise UnknownRegionError(rid, int(ev.index), f"an {kind} event")
        if kind == "admin" and ev.admin.HasField("merge") and int(ev.admin.merge.source.id) not in self._regions:
            # The source's keys join a region the store knows, but the store never had them.
            raise UnknownRegionError(int(ev.admin.merge.source.id), int(ev.index),
                                     f"a merge into region {rid}", snapshot_region=rid)
        reg = self._region_for_update(rid, saved)
        if kind == "resolved_ts":
            reg.resolved_ts = max(reg.resolved_ts, int(ev.resolved_ts))
            if reg.orphan_until_ts and reg.resolved_ts >= reg.orphan_until_ts:
                # Nothing commits at or below the resolved ts any more: no orphan can come.
                reg.orphan_until_ts = 0
                staged.snapshot_writes[reg.id] = None
            return
        if ev.index <= reg.applied_index:
            assert run is None, "_pair_run took a skipped event for an applied one"
            result.skipped += 1
            return
        if ev.HasField("epoch") and kind == "entries":
            reg.epoch_version = max(reg.epoch_version, int(ev.epoch.version))
            reg.conf_ver = max(reg.conf_ver, int(ev.epoch.conf_version))
        if kind == "entries":
            if run is None:
                run = binlog_rows.join_columns([binlog_rows.columns(ev.entries, f"region {rid} index {ev.index}")])
                j, pairs = 0, None
            self._apply_entries(reg, int(ev.index), run, j, staged, result, pairs, stage)
        elif kind == "admin":
            self._apply_admin(reg, ev.admin, staged, saved)
        elif kind == "snapshot":
            self._apply_snapshot(reg, int(ev.index), ev.snapshot, staged, saved)
        reg.applied_index = int(ev.index)
        result.applied += 1

    def _apply_entries(self, reg: _Region, index: int, run: binlog_rows.RunColumns, j: int, staged: _Staged,
                       result: WriteResult, run_pairs: RunPairs | None = None, stage: RunStage | None = None) -> None:
        """The rows of one Entries event, event ``j`` of ``run``. Committed rows (1PC writes)
        and rows paired inside the run (``run_pairs``: a COMMIT or ROLLBACK of a PREWRITE of
        the same run, found by ``batch_pairs``) are handled as arrays, without a Python step
        per row — the whole run at once (``stage``, counted by the caller) when no row of it
        needs the cache; the other PREWRITE/COMMIT/ROLLBACK rows walk in order through the
        region cache."""
        rid = reg.id
        if stage is not None:
            # A DELETE's value is empty; LOCK rows are dropped at decode.
            staged.add_stage_rows(rid, stage, int(stage.starts[j]), int(stage.starts[j + 1]))
            return
        rows = run.event(j)
        if run.all_committed[j]:
            staged.add_columns(rid, rows.keys, rows.values, rows.commit_ts, rows.ops)
            result.commits += len(rows)
            return
        pairs = None if run_pairs is None else run_pairs.event(j)
        types = rows.types
        _count_rows(types, result)
        if pairs is None:
            self._walk_rows(reg, index, rows, None, staged, result)
            return
        assert run_pairs is not None
        paired = pairs.paired
        paired_commits = np.flatnonzero(paired & (types == Row.COMMIT))
        rest = np.flatnonzero(~paired)
        rest_types = types[rest]
        if not ((rest_types == Row.COMMIT) | (rest_types == Row.COMMITTED)).any():
            # Only the paired commits stage rows: one chunk, in row order. The other rows
            # (open prewrites, rollbacks) change the cache only.
            if len(paired_commits):
                staged.add_columns(rid, *run_pairs.staged_columns(rows, pairs, paired_commits))
            if len(rest):
                self._walk_rows(reg, index, rows, rest, staged, result)
            return
        # Paired and unpaired rows both stage rows: walk every row so they stage in row order.
        self._walk_rows(reg, index, rows, np.arange(len(rows)), staged, result, run_pairs, pairs)

    def _walk_rows(self, reg: _Region, index: int, rows: binlog_rows.RowColumns, which: np.ndarray | None,
                   staged: _Staged, result: WriteResult, run: RunPairs | None = None,
                   pairs: EventPairs | None = None) -> None:
        """Rows ``which`` (all: None) of an event, in order, one Python step each: PREWRITE
        into the region cache, COMMIT out of it (staging its row), ROLLBACK drops, COMMITTED
        staged. A row ``pairs`` marks paired is decided already: a paired PREWRITE or ROLLBACK
        is passed over, a paired COMMIT stages its prewrite's row from ``run``."""
        caches = self._caches
        assert caches is not None
        rid = reg.id
        committed_t, prewrite_t, commit_t = Row.COMMITTED, Row.PREWRITE, Row.COMMIT
        if which is not None and len(which) == len(rows):
            which = None
        sub = rows if which is None else rows.take(which)
        types = sub.types.tolist()
        keys = sub.keys.to_pylist()
        start_ts = sub.start_ts.tolist()
        ops = sub.ops.tolist()
        commit_ts = sub.commit_ts.tolist()
        has_prewrites = prewrite_t in types
        values = sub.values.to_pylist() if has_prewrites or committed_t in types else None
        primaries = sub.primaries.to_pylist() if has_prewrites else None
        ttls = sub.ttl.tolist() if has_prewrites else None
        paired: list[bool] | None = None
        paired_rows: dict[int, tuple[int, bytes]] = {}
        if pairs is not None:
            assert run is not None and run.values is not None and run.ops is not None and which is None
            paired = pairs.paired.tolist()
            commits_paired = np.flatnonzero(pairs.paired & (rows.types == commit_t))
            src = pairs.prewrite_of[commits_paired]
            paired_rows = dict(zip(commits_paired.tolist(),
                                   zip(run.ops[src].tolist(), run.values.take(pa.array(src)).to_pylist())))
        for i, t in enumerate(types):
            if paired is not None and paired[i]:
                if t == commit_t:
                    op, value = paired_rows[i]
                    if op == PUT:
                        staged.add(rid, keys[i], commit_ts[i], PUT, value)
                    elif op == DELETE:
                        staged.add(rid, keys[i], commit_ts[i], DELETE)
                continue
            if t == committed_t:
                assert values is not None
                staged.add(rid, keys[i], commit_ts[i], ops[i], values[i])
            elif t == prewrite_t:
                assert values is not None and primaries is not None and ttls is not None
                caches.prewrite(rid, keys[i], start_ts[i], ops[i], values[i], primaries[i], ttls[i])
            elif t == commit_t:
                key = keys[i]
                pw = caches.take(rid, key, start_ts[i])
                if pw is None:
                    if self._is_orphan_commit(reg, key, start_ts[i], commit_ts[i], staged):
                        result.orphan_commits += 1
                        continue
                    raise CommitWithoutPrewriteError(rid, key, keyspace.describe_key(key), start_ts[i],
                                                     commit_ts[i], index)
                if pw.op == PUT:
                    staged.add(rid, key, commit_ts[i], PUT, pw.value or b"")
                elif pw.op == DELETE:
                    staged.add(rid, key, commit_ts[i], DELETE)
            else:  # ROLLBACK
                caches.drop(rid, keys[i], start_ts[i])

    def _is_orphan_commit(self, reg: _Region, key: bytes, start_ts: int, commit_ts: int, staged: _Staged) -> bool:
        """A COMMIT without a prewrite is expected after a region snapshot: its prewrite
        predates the snapshot, and the snapshot holds either its lock (then the cache has
        it) or its committed write (then the data is already there: skip it). Such a commit
        is never newer than the snapshot's newest write, and none comes once the region's
        resolved ts has passed that."""
        if reg.orphan_until_ts == 0 or commit_ts > reg.orphan_until_ts:
            return False
        writes = staged.snapshot_writes.get(reg.id, self._snapshot_writes.get(reg.id))
        if writes is None:
            # The snapshot was applied before this process started: its write set is gone,
            # but the snapshot was whole, so a commit it lacks the lock of is in its data.
            return True
        return (key, start_ts) in writes

    def _apply_admin(self, reg: _Region, admin: binlog_pb2.Admin, staged: _Staged,
                     saved: dict[int, _Region | None]) -> None:
        caches = self._caches
        assert caches is not None
        cmd = admin.WhichOneof("cmd")
        if cmd == "split":
            for r in admin.split.regions:
                target = self._region_for_update(int(r.id), saved)
                is_new = target is not reg and target.applied_index == 0 and target.state == "normal"
                target.start_key, target.end_key = bytes(r.start_key), bytes(r.end_key)
                target.epoch_version, target.conf_ver = int(r.epoch.version), int(r.epoch.conf_version)
                target.state = "normal"
                if target is not reg:
                    if is_new or target.snapshot_index < reg.snapshot_index:
                        target.snapshot_index = max(target.snapshot_index, reg.snapshot_index)
                        target.orphan_until_ts = max(target.orphan_until_ts, reg.orphan_until_ts)
                        writes = staged.snapshot_writes.get(reg.id, self._snapshot_writes.get(reg.id))
                        if writes is not None:
                            staged.snapshot_writes[target.id] = writes
                    raw_s = keyspace.decode_region_boundary(target.start_key)
                    raw_e = keyspace.decode_region_boundary(target.end_key)
                    caches.move(reg.id, target.id, lambda k, s=raw_s, e=raw_e: keyspace.key_in_raw_range(k, s, e))
        elif cmd == "merge":
            src_msg, dst_msg = admin.merge.source, admin.merge.target
            src = self._region_for_update(int(src_msg.id), saved)
            dst = self._region_for_update(int(dst_msg.id), saved)
            dst.start_key, dst.end_key = bytes(dst_msg.start_key), bytes(dst_msg.end_key)
            dst.epoch_version, dst.conf_ver = int(dst_msg.epoch.version), int(dst_msg.epoch.conf_version)
            dst.state = "normal"
            if src is not dst:
                caches.move(src.id, dst.id, lambda k: True)
                if src.snapshot_index:
                    dst.snapshot_index = max(dst.snapshot_index, src.snapshot_index)
                    dst.orphan_until_ts = max(dst.orphan_until_ts, src.orphan_until_ts)
                    a = staged.snapshot_writes.get(src.id, self._snapshot_writes.get(src.id))
                    b = staged.snapshot_writes.get(dst.id, self._snapshot_writes.get(dst.id))
                    if a is not None and (b is not None or dst.snapshot_index == src.snapshot_index):
                        staged.snapshot_writes[dst.id] = set(a) | set(b or ())
                src.state = "merged"
                src.epoch_version = max(src.epoch_version, int(src_msg.epoch.version))
        elif cmd == "removed":
            staged.tombstones.append((staged.rows, reg.start_key, reg.end_key, f"region {reg.id} removed"))
            caches.clear(reg.id)
            reg.state = "removed"

    def _apply_snapshot(self, reg: _Region, index: int, snap: binlog_pb2.RegionSnapshot, staged: _Staged,
                        saved: dict[int, _Region | None]) -> None:
        from pyspark_theflash.codec.txn import Lock, Write

        caches = self._caches
        assert caches is not None
        r = snap.region
        if r.id and int(r.id) == reg.id or not r.id:
            reg.start_key, reg.end_key = bytes(r.start_key), bytes(r.end_key)
            if r.HasField("epoch"):
                reg.epoch_version, reg.conf_ver = int(r.epoch.version), int(r.epoch.conf_version)
        reg.state = "normal"
        staged.tombstones.append((staged.rows, reg.start_key, reg.end_key,
                                  f"region {reg.id} snapshot at index {index}"))
        caches.clear(reg.id)
        # The snapshot is the truth for its range. Another region this replica still lists
        # over it missed a split or merge while behind: its shape is stale, so it is retired
        # (its rows outside the range stay until the snapshots of the regions now holding
        # them replace them), and no open lock of another region survives inside the range.
        raw_s = keyspace.decode_region_boundary(reg.start_key)
        raw_e = keyspace.decode_region_boundary(reg.end_key)
        for other in list(self._regions.values()):
            if other.id == reg.id or other.state != "normal":
                continue
            if _ranges_overlap(other.start_key, other.end_key, reg.start_key, reg.end_key):
                stale = self._region_for_update(other.id, saved)
                stale.state = "removed"
                caches.clear(stale.id)
        for rid in caches.regions():
            if rid != reg.id:
                caches.drop_where(rid, lambda k: keyspace.key_in_raw_range(k, raw_s, raw_e))
        for sl in snap.locks:
            lock = Lock.parse(sl.lock)
            op = _LOCK_TYPE_OP.get(lock.lock_type, LOCK)
            value = lock.short_value if lock.short_value is not None else bytes(sl.value)
            caches.prewrite(reg.id, bytes(sl.key), int(lock.start_ts), op, value if op == PUT else b"",
                            bytes(lock.primary), int(lock.ttl))
        writes: set[tuple[bytes, int]] = set()
        newest = 0
        for sw in snap.writes:
            w = Write.parse(sw.write)
            writes.add((bytes(sw.key), int(w.start_ts)))
            newest = max(newest, int(sw.commit_ts))
            if w.write_type == "P":
                value = w.short_value if w.short_value is not None else bytes(sw.value)
                staged.add(reg.id, bytes(sw.key), int(sw.commit_ts), PUT, value)
            elif w.write_type == "D":
                staged.add(reg.id, bytes(sw.key), int(sw.commit_ts), DELETE)
        staged.snapshot_writes[reg.id] = writes
        reg.snapshot_index = index
        reg.orphan_until_ts = newest if newest > reg.resolved_ts else 0

    def _common_tables(self) -> set[int]:
        return {tid for tid, info in self._schemas.items() if info.is_common_handle}

    def _decode(self, staged: _Staged) -> list[tuple[int, int, pa.Table]]:
        """Committed rows → Arrow tables per table, vectorised; raises before anything is
        mutated (UnknownTableError for a table without schema)."""
        if not staged.rows:
            return []
        all_keys, all_values, all_commit_ts, all_ops = staged.columns()
        rk = keyspace.split_record_keys(all_keys, self._common_tables())
        seq = rk.index
        if len(seq) == 0:
            return []
        ops = all_ops[seq]
        if (ops == LOCK).any():  # committed LOCK rows change no data
            data = ops != LOCK
            rk = keyspace.RecordKeys(rk.index[data], rk.table_ids[data], rk.int_handles[data],
                                     rk.keys.filter(pa.array(data)),
                                     None if rk.lengths is None else rk.lengths[data])
            seq, ops = rk.index, ops[data]
            if len(seq) == 0:
                return []
        commit_ts = all_commit_ts[seq]
        deletes = ops == DELETE
        out: list[tuple[int, int, pa.Table]] = []
        tids = rk.table_ids
        one_table = bool(tids[0] == tids.min() == tids.max())
        for tid in tids[:1] if one_table else np.unique(tids):
            tid = int(tid)
            if tid in self._ignored:
                continue
            sel = None if one_table else tids == tid  # None: every row
            rows = np.arange(len(tids)) if sel is None else np.flatnonzero(sel)
            history = self._histories.get(tid)
            if history is None:
                raise UnknownTableError(tid, staged.region_of(int(seq[rows[0]])))
            info = history.latest
            common = bool(info.is_common_handle)
            if not common and not rk.int_keys_ok(sel):
                raise MalformedRecordKeyError(tid, staged.region_of(int(seq[rows[0]])))
            handles = rk.handles(sel, common)
            keep = np.ones(len(rows), dtype=bool)
            for tseq, start, end, _why in staged.tombstones:
                # Rows staged before a delete-range in the same batch are deleted by it.
                before = seq[rows] < tseq
                if not before.any():
                    continue
                rng = keyspace.region_handle_range(start, end, tid, common)
                if rng is not None:
                    keep &= ~(before & keyspace.in_range(handles, rng))
            if not keep.all():
                rows, handles = rows[keep], handles.filter(pa.array(keep))
            if len(rows) == 0:
                continue
            if len(history) == 1:
                out.append(self._decode_version(info, rows, handles, deletes, seq, commit_ts, all_values, common))
                continue
            # Each row decodes with the version in force at its commit ts (a column can change
            # type under the same id: the id alone never tells how to read a value).
            which = history.index_at(commit_ts[rows])
            infos = history.infos
            for v in np.unique(which).tolist():
                pick = np.flatnonzero(which == v)
                sub = rows if len(pick) == len(rows) else rows[pick]
                sub_handles = handles if len(pick) == len(rows) else handles.take(pa.array(pick))
                out.append(self._decode_version(infos[v], sub, sub_handles, deletes, seq, commit_ts, all_values,
                                                common))
        return out

    def _decode_version(self, info: "TableInfo", rows: np.ndarray, handles: pa.Array, deletes: np.ndarray,
                        seq: np.ndarray, commit_ts: np.ndarray, all_values: pa.Array, common: bool
                        ) -> tuple[int, int, pa.Table]:
        """Rows ``rows`` (positions among the batch's record rows) of one table, all decoding
        with schema version ``info``: their part-file table (deletes as delete marks)."""
        from pyspark_theflash.codec.batch import decode_rows_to_arrow

        schema, user = self._file_schema(info)
        is_delete = deletes[rows]
        value_at, ts_of = seq[rows], commit_ts[rows]  # per row of the table: its value, its commit ts
        int_handles = None if common else handles.to_numpy()
        pieces = []
        for want_delete in (False, True):
            pick = np.flatnonzero(is_delete == want_delete)
            if len(pick) == 0:
                continue
            n = len(pick)
            h = handles.take(pa.array(pick)) if int_handles is None else pa.array(int_handles[pick])
            if want_delete:
                cols = [pa.nulls(n, f.type) for f in user]
            else:
                # A common handle lives in the row value too: the int handles are unused.
                picked_handles = np.zeros(n, dtype=np.int64) if int_handles is None else int_handles[pick]
                if self.decode_rows is not None:
                    batch = self.decode_rows(all_values.take(pa.array(value_at[pick])), picked_handles, info, None)
                else:  # the selected values are read in place
                    batch = decode_rows_to_arrow(all_values, picked_handles, info, None, rows=value_at[pick])
                cols = [batch.column(batch.schema.get_field_index(f.name)) for f in user]
            pieces.append(pa.Table.from_arrays(
                cols + [h, pa.array(ts_of[pick]), pa.array(np.full(n, want_delete))], schema=schema))
        t = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        return (int(info.id), int(info.schema_version), t)

    def _file_schema(self, info: "TableInfo") -> tuple[pa.Schema, list[pa.Field]]:
        """The part-file schema of a table's schema version and its user fields (cached)."""
        key = (int(info.id), int(info.schema_version))
        cached = self._file_schemas.get(key)
        if cached is None:
            schema = file_schema(_user_fields(info), _rowid_type(info))
            cached = self._file_schemas[key] = (schema, [f for f in schema if f.name not in HIDDEN_NAMES])
        return cached

    def _delete_range_in_buffers(self, start: bytes, end: bytes) -> None:
        for tid, buf in self._buffers.items():
            rng = keyspace.region_handle_range(start, end, tid, bool(self._schemas[tid].is_common_handle))
            if rng is None:
                continue
            chunks = []
            rows = nbytes = 0
            for version, t in buf.chunks:
                inside = keyspace.in_range(t.column(ROWID), rng)
                if inside.any():
                    t = t.filter(pa.array(~inside))
                if t.num_rows:
                    chunks.append((version, t))
                    rows += t.num_rows
                    nbytes += t.nbytes
            buf.chunks, buf.rows, buf.bytes = chunks, rows, nbytes

    # --- flush -------------------------------------------------------------------------------
    @overload
    def flush(self) -> FlushResult: ...
    @overload
    def flush(self, wait: Literal[True]) -> FlushResult: ...
    @overload
    def flush(self, wait: Literal[False]) -> "PendingFlush": ...
    @overload
    def flush(self, wait: bool) -> "FlushResult | PendingFlush": ...

    def flush(self, wait: bool = True) -> "FlushResult | PendingFlush":
        """Persist everything applied so far in one manifest edit: delta parts, region
        states, open locks, range tombstones and the binlog position. Returns the
        ``FlushResult`` once durable.

        ``wait=False`` is the pipelined form: the buffered rows are handed to a background
        thread, which sorts and writes the part files and makes them durable (fsync of files
        and directories, then the manifest edit) while the caller applies the next batch; it
        returns a ``PendingFlush``. Nothing of it is visible before its edit commits. Edits stay in
        order: a pipelined flush called meanwhile follows it (writes its parts at once, commits
        right after it; at most two in flight), any other manifest edit of this store waits
        for it, and so do ``sync()``, ``snapshot()``, ``compact()``, ``gc()``, ``status()`` and
        ``close()``. If the background step fails, the next call raises ``FlushFailedError``
        and the store refuses further writes."""
        self._require_writer("flush")
        with self._write_lock:
            pred = None if wait or not self._has_unflushed() else self._follow_pending()
            if pred is None:
                self._edit_lock.acquire()
            handed_over = False
            try:
                self._raise_failure()  # the previous pipelined flush may have failed meanwhile
                if wait:
                    return self._flush_locked()
                t0 = time.monotonic()
                prepared = self._prepare_flush(self._conn, t0, None if pred is None else pred._partitions_after)
                if prepared is None:
                    return PendingFlush.finished(self._empty_flush(t0))
                self._forget_flushed(prepared)
                if self._flush_conn is None:
                    self._flush_conn = self._connect()
                pending = PendingFlush(self, pred, prepared.partitions_after())
                self._pending = pending
                thread = threading.Thread(target=self._make_durable_in_background, args=(prepared, pending),
                                          name="theflash-flush")
                try:
                    thread.start()
                except BaseException as exc:  # memory has moved past this flush: refuse writes from now on
                    self._failure = FlushFailedError(str(self.root), prepared.position, exc)
                    self._failure_reported = True
                    pending._error = self._failure
                    pending._done.set()
                    raise self._failure from exc
                handed_over = True  # its thread releases the edit lock (or hands it on) once its edit is done
                return pending
            finally:
                if not handed_over:
                    if pred is None:
                        self._edit_lock.release()
                    else:
                        self._unfollow(pred)

    def sync(self) -> FlushResult | None:
        """Wait until the last pipelined flush that had something to persist is durable;
        its result (None if there was none). Raises ``FlushFailedError`` if it (or an earlier
        one) failed."""
        pending = self._pending
        result = None if pending is None else pending.wait()
        self._raise_failure()
        return result

    @property
    def failure(self) -> BaseException | None:
        """The ``FlushFailedError`` of a failed pipelined flush (the store then refuses writes)."""
        return self._failure

    def _raise_failure(self) -> None:
        if self._failure is not None:
            self._failure_reported = True
            raise self._failure

    def _follow_pending(self) -> "PendingFlush | None":
        """The pending pipelined flush this one may follow without taking the edit lock (its
        part files are then written while that one's fsyncs and edit finish; the lock passes
        from it to this one). None — take the lock — when there is none, when it is done, or
        when another thread waits for the lock (compaction, GC: they get their turn). At most
        two flushes are in flight: the one before the pending one is waited for first."""
        pending = self._pending
        if pending is None or pending.done():
            return None
        before = pending._predecessor
        if before is not None:
            before._done.wait()
        with self._chain_mutex:
            if pending._finished or self._edit_waiters:
                return None
            pending._successor = True
            return pending

    def _unfollow(self, pred: "PendingFlush") -> None:
        """Undo ``_follow_pending`` when no flush follows after all: if ``pred`` finished
        meanwhile, the lock it handed on is released here."""
        with self._chain_mutex:
            pred._successor = False
            owned = pred._finished
        if owned:
            self._edit_lock.release()

    def _make_durable_in_background(self, prepared: "_PreparedFlush", pending: "PendingFlush") -> None:
        conn = self._flush_conn
        assert conn is not None
        try:
            try:
                self._write_parts(prepared)
                before = pending._predecessor
                if before is not None:  # edits commit in order: the flush this one follows first
                    before._done.wait()
                    pending._predecessor = None  # done: no chain of finished flushes is kept alive
                    if self._failure is not None:
                        _discard_parts(self.root, prepared.written)
                        pending._error = self._failure
                        return
                version = self._commit_flush(prepared, conn)
            except _PartitionsChanged:
                raise RuntimeError("the store's partitions changed under a pipelined flush (another writer "
                                   "process?)") from None
            pending._result = prepared.result(version)
        except BaseException as exc:
            if conn.in_transaction:  # a COMMIT that failed may leave it open: never hold the write lock
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            failure = FlushFailedError(str(self.root), prepared.position, exc)
            failure.__cause__ = exc
            self._failure = failure
            pending._error = failure
        finally:
            with self._chain_mutex:
                pending._finished = True
                hand_on = pending._successor
            if not hand_on:
                self._edit_lock.release()
            pending._done.set()

    def _empty_flush(self, t0: float) -> FlushResult:
        # Nothing applied since the last flush: no edit (version 0 says so).
        self._dirty_since = None
        return FlushResult(0, 0, 0, 0, 0, len(self._persisted_locks), self._position, time.monotonic() - t0)

    def _flush_locked(self) -> FlushResult:
        t0 = time.monotonic()
        conn = self._conn
        for _attempt in range(5):
            prepared = self._prepare_flush(conn, t0)
            if prepared is None:
                return self._empty_flush(t0)
            try:
                self._write_parts(prepared)
                version = self._commit_flush(prepared, conn)
            except _PartitionsChanged:
                continue
            self._forget_flushed(prepared)
            return prepared.result(version)
        raise RuntimeError("flush: partitions kept changing under the flush (another writer process?)")

    def _has_unflushed(self) -> bool:
        """Was anything applied (rows, tombstones, region states, position) since the last flush?"""
        return bool(self._buffers or self._tombstones or self._dirty_regions
                    or self._position != self._persisted_position)

    def _prepare_flush(self, conn: sqlite3.Connection, t0: float,
                       partitions: dict[int, list[tuple[int, int | None, int | None]]] | None = None
                       ) -> "_PreparedFlush | None":
        """What a flush will persist, taken in the caller: the buffered rows per table and
        schema version (with the partitions they split into and their column ids), the region
        states, lock-set difference, tombstones and position the edit will persist. None when
        nothing was applied since the last flush. Cheap (no row is touched) and changes nothing
        in memory; ``_write_parts`` then does the CPU work, in the background for a pipelined
        flush. ``partitions``: the partitions as they will be when the edit commits (a flush
        following a pending one: as that one leaves them); by default as the manifest has them."""
        assert self._caches is not None
        if not self._has_unflushed():
            return None
        if partitions is None:
            partitions = self._read_partitions(conn)
        new_partitions: dict[int, int] = {}
        tables: list[_BufferedRows] = []
        for tid, buf in self._buffers.items():
            plist = partitions.get(tid)
            if not plist:
                pid = 1
                new_partitions[tid] = pid
                plist = [(pid, None, None)]
            history = self._histories[tid]
            by_version: dict[int, list[pa.Table]] = {}
            for version, t in buf.chunks:
                by_version.setdefault(version, []).append(t)
            for version, chunks in by_version.items():
                tables.append(_BufferedRows(tid, version, chunks, plist,
                                            [c.id for c in _version_columns(history, version)]))
        current_locks = {(r, k, ts) for r, k, ts, _pw in self._caches.items()}
        regions = [(reg.id, reg.start_key, reg.end_key, reg.epoch_version, reg.conf_ver, reg.applied_index,
                    reg.resolved_ts, reg.state, reg.snapshot_index, reg.orphan_until_ts)
                   for reg in (self._regions[r] for r in self._dirty_regions if r in self._regions)]
        return _PreparedFlush(
            t0=t0, partitions=partitions, new_partitions=new_partitions, tables=tables, written=[],
            tombstones=list(self._tombstones), regions=regions,
            gone_locks=list(self._persisted_locks - current_locks),
            new_locks=list(self._lock_rows(current_locks - self._persisted_locks)),
            current_locks=current_locks, position=self._position,
            rows=sum(b.rows for b in self._buffers.values()), n_regions=len(self._dirty_regions))

    def _write_parts(self, p: "_PreparedFlush") -> None:
        """The CPU part of a flush: split each table's buffered rows by partition, sort them and
        write them as delta part files under temporary names (no fsync yet), with their
        statistics, into ``p.written``. Touches only ``p`` (the buffers it holds are no longer
        the store's), so a pipelined flush runs it on its background thread. On an error the
        files written so far are removed."""
        try:
            for rows in p.tables:
                t = pa.concat_tables(rows.chunks) if len(rows.chunks) > 1 else rows.chunks[0]
                plist = rows.partitions
                which = split_by_partition(t.column(ROWID), [b[1] for b in plist[1:]]) if len(plist) > 1 else None
                for i in [0] if which is None else np.unique(which).tolist():
                    part_t = t if which is None else t.filter(pa.array(which == i))
                    pid = plist[i][0]
                    rel = new_part_name(rows.table_id, pid, "delta")
                    pf = write_part(self.root, rel, sort_versions(part_t), rows.column_ids,
                                    self.options.row_group_rows, compression="none", install=False)
                    p.written.append((rows.table_id, pid, rows.schema_version, pf, "delta"))
        except BaseException:
            _discard_parts(self.root, p.written)
            raise

    def _commit_flush(self, p: "_PreparedFlush", conn: sqlite3.Connection) -> int:
        """The durable part of a flush, under the edit lock: fsync each part file and rename it
        in, fsync their directories, then the one manifest edit that lists them with the region
        states, locks, tombstones and position. On any error the files are removed (and the
        edit rolled back): nothing of the flush is visible. Returns the edit's version."""
        try:
            for w in p.written:
                install_part(self.root, w[3].file)
            sync_dirs(self.root, [w[3].file for w in p.written])
            with mf.edit(conn) as e:
                if self._read_partitions(conn) != p.partitions:
                    raise _PartitionsChanged()
                for tid, pid in p.new_partitions.items():
                    conn.execute("INSERT INTO partitions VALUES (?,?,?,?,?)", (tid, pid, None, None, e.version))
                for tid, pid, version, pf, kind in p.written:
                    insert_part(conn, tid, pid, kind, pf, version, data_version=e.version, added_version=e.version)
                for start, end, why in p.tombstones:
                    conn.execute("INSERT INTO range_tombstones(start_key, end_key, version, reason) "
                                 "VALUES (?,?,?,?)", (start, end, e.version, why))
                conn.executemany("INSERT OR REPLACE INTO regions(region_id, start_key, end_key, epoch_version, "
                                 "conf_ver, applied_index, resolved_ts, state, snapshot_index, orphan_until_ts) "
                                 "VALUES (?,?,?,?,?,?,?,?,?,?)", p.regions)
                conn.executemany("DELETE FROM locks WHERE region_id = ? AND key = ? AND start_ts = ?", p.gone_locks)
                conn.executemany("INSERT OR REPLACE INTO locks VALUES (?,?,?,?,?,?,?,?,?)", p.new_locks)
                if p.position is not None:
                    mf.set_meta(conn, "position_segment", p.position[0])
                    mf.set_meta(conn, "position_offset", p.position[1])
                return e.version
        except BaseException:
            _discard_parts(self.root, p.written)
            raise

    def _forget_flushed(self, p: "_PreparedFlush") -> None:
        """What ``p`` persists is no longer pending in memory."""
        self._buffers.clear()
        self._tombstones.clear()
        self._persisted_locks = p.current_locks
        self._persisted_position = p.position
        self._dirty_since = None
        self._dirty_regions.clear()

    def _lock_rows(self, keys: set[tuple[int, bytes, int]]) -> Iterator[tuple[Any, ...]]:
        caches = self._caches
        assert caches is not None
        if not keys:
            return
        ordered = sorted(keys)
        common = self._common_tables()
        rk = keyspace.split_record_keys([k for _r, k, _t in ordered], common)
        decoded: dict[int, tuple[int, Any]] = {}
        for j, i in enumerate(rk.index.tolist()):
            tid = int(rk.table_ids[j])
            key = ordered[i][1]
            int_handle = tid not in common and len(key) == keyspace.INT_RECORD_KEY_LEN
            decoded[i] = (tid, int(rk.int_handles[j]) if int_handle else key[keyspace.RECORD_PREFIX_LEN:])
        for i, (rid, key, start_ts) in enumerate(ordered):
            pw = caches.get(rid, key, start_ts)
            assert pw is not None
            tid, handle = decoded.get(i, (None, None))
            yield (rid, key, start_ts, pw.primary, pw.op, pw.ttl, caches.value_of(rid, key, start_ts, pw),
                   tid, handle)

    @staticmethod
    def _read_partitions(conn: sqlite3.Connection) -> dict[int, list[tuple[int, int | None, int | None]]]:
        out: dict[int, list[tuple[int, int | None, int | None]]] = {}
        for tid, pid, lo, hi in conn.execute("SELECT table_id, partition_id, lo, hi FROM partitions "
                                             "ORDER BY table_id, lo IS NOT NULL, lo"):
            out.setdefault(int(tid), []).append((int(pid), lo, hi))
        return out

    # --- reads -------------------------------------------------------------------------------
    def snapshot(self) -> StoreView:
        """A consistent view of the flushed state (one SQLite read transaction); in the writer,
        after any pending pipelined flush is durable."""
        if not self.readonly:
            self.sync()
        return StoreView(self._connect())

    def scan(self, table: "str | int | TableInfo", ts: int, handle_range: tuple[int | None, int | None] | None = None,
             region_id: int | None = None, columns: Sequence[str] | None = None, predicate: Expr | None = None,
             hidden: Sequence[str] = (), schema: str = "current") -> Iterator[pa.RecordBatch]:
        """Rows of ``table`` visible at ``ts`` (flushed state), under a lease held while the
        iterator runs. ``region_id`` restricts to the handles inside that region. ``schema``:
        ``"current"`` reads with the table's current schema (a name means the live table),
        ``"as_of"`` with the one in force at ts (a name means the table that had it then)."""
        lease = self.leases.acquire(ts, self.options.scan_lease_ttl_s, holder=f"scan pid {os.getpid()}")
        try:
            with self.snapshot() as view:
                info = _table_for_read(view, table, ts, schema)
                rng: tuple[int | None, int | None] | None = handle_range or (None, None)
                if region_id is not None:
                    region = view.region(region_id)
                    if region is None:
                        return
                    rng = intersect(rng, view.region_handle_range(region, info.id))  # type: ignore[arg-type]
                if rng is None:
                    return
                parts = view.parts(info.id, rng[0], rng[1])
            yield from read_parts(parts, info, ts, rng, columns, predicate, hidden, self.root,
                                  self.options.read_batch_rows)
        finally:
            with contextlib.suppress(Exception):
                self.leases.release(lease.id)

    def scan_table(self, table: "str | int | TableInfo", ts: int, **kwargs: Any) -> pa.Table:
        """``scan`` collected into one table (with the output schema even when empty)."""
        from pyspark_theflash.store.read import output_schema

        with self.snapshot() as view:
            info = _table_for_read(view, table, ts, kwargs.get("schema", "current"))
        batches = list(self.scan(info, ts, **kwargs))
        schema = output_schema(info, kwargs.get("columns"), kwargs.get("hidden", ()))
        return pa.Table.from_batches(batches, schema=schema)

    # --- compaction, GC, background ---------------------------------------------------------
    def compact(self, table: "str | int | TableInfo | None" = None, force: bool = False) -> Any:
        """Merge every partition's delta parts (and stable part) into a new stable part,
        dropping versions below the GC safe point; splits oversized partitions."""
        from pyspark_theflash.store.compaction import compact_store

        self._require_writer("compact")
        self.sync()
        return compact_store(self, table, force=force)

    def gc(self, safe_point: int) -> Any:
        """Move the GC safe point to ``safe_point`` (never past the oldest live lease) and
        compact every partition with it."""
        from pyspark_theflash.store.compaction import gc_store

        self._require_writer("gc")
        self.sync()
        return gc_store(self, safe_point)

    def delete_obsolete_files(self) -> int:
        from pyspark_theflash.store.compaction import delete_obsolete_files

        self._require_writer("delete_obsolete_files")
        self.sync()
        return delete_obsolete_files(self)

    def start_background(self, compaction_interval_s: float = 10.0) -> None:
        from pyspark_theflash.store.compaction import BackgroundCompactor

        self._require_writer("start_background")
        if self._background is None:
            self._background = BackgroundCompactor(self, compaction_interval_s)
            self._background.start()

    def stop_background(self) -> None:
        if self._background is not None:
            self._background.stop()
            self._background = None

    # --- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self.snapshot() as view:
            conn = view.conn()
            regions = [{"id": r.id, "applied_index": r.applied_index, "resolved_ts": r.resolved_ts,
                        "epoch_version": r.epoch_version, "state": r.state,
                        "start_key": r.start_key.hex(), "end_key": r.end_key.hex()} for r in view.regions(True)]
            tables = []
            for t in view.tables():
                parts = conn.execute("SELECT kind, COUNT(*), COALESCE(SUM(rows),0), COALESCE(SUM(bytes),0) FROM parts "
                                     "WHERE table_id = ? AND removed_version IS NULL GROUP BY kind", (t.id,)).fetchall()
                by_kind = {k: {"parts": int(n), "rows": int(r), "bytes": int(b)} for k, n, r, b in parts}
                tables.append({"id": t.id, "name": f"{t.db}.{t.name}", "schema_version": t.schema_version,
                               "partitions": len(view.partitions(t.id)), "delta": by_kind.get("delta"),
                               "stable": by_kind.get("stable")})
            removed = conn.execute("SELECT COUNT(*), COALESCE(SUM(bytes),0) FROM parts "
                                   "WHERE removed_version IS NOT NULL").fetchone()
            locks = conn.execute("SELECT COUNT(*) FROM locks").fetchone()[0]
            out = {"root": str(self.root), "manifest_version": view.version, "position": view.position(),
                   "gc_safe_point": view.gc_safe_point(), "regions": regions, "tables": tables,
                   "ignored_tables": [list(x) for x in view.ignored_tables()], "locks": int(locks),
                   "removed_parts_awaiting_deletion": {"parts": int(removed[0]), "bytes": int(removed[1])},
                   "leases": len(self.leases.live())}
        if not self.readonly:
            assert self._caches is not None
            out["buffered_rows"] = self.buffered_rows
            out["buffered_bytes"] = self.buffered_bytes
            out["open_prewrites"] = self._caches.count()
            out["prewrite_memory_bytes"] = self._caches.memory_bytes
            bg = self._background
            out["background_compaction"] = None if bg is None else {
                "interval_s": bg.interval_s, "rounds": bg.rounds,
                "last_error": None if bg.last_error is None else repr(bg.last_error)}
        return out


@dataclass
class _BufferedRows:
    """One table's rows of one schema version that a flush writes: the buffer's chunks, the
    table's partitions as read for the flush, and the ids of the version's user columns."""

    table_id: int
    schema_version: int
    chunks: list[pa.Table]
    partitions: list[tuple[int, int | None, int | None]]
    column_ids: list[int]


@dataclass
class _PreparedFlush:
    """A flush taken from memory: its rows (``tables``), then once ``_write_parts`` ran, its
    part files written under temporary names (``written``), not yet durable."""

    t0: float
    partitions: dict[int, list[tuple[int, int | None, int | None]]]  # as read when the parts were split
    new_partitions: dict[int, int]
    tables: list[_BufferedRows]
    written: list[tuple[int, int, int, Any, str]]  # (table, partition, schema_version, PartFile, kind)
    tombstones: list[tuple[bytes, bytes, str]]
    regions: list[tuple[Any, ...]]                 # region rows to persist
    gone_locks: list[tuple[int, bytes, int]]
    new_locks: list[tuple[Any, ...]]               # lock rows to insert
    current_locks: set[tuple[int, bytes, int]]
    position: tuple[int, int] | None
    rows: int
    n_regions: int

    def result(self, version: int) -> FlushResult:
        return FlushResult(version, len(self.written), self.rows, sum(w[3].bytes for w in self.written),
                           self.n_regions, len(self.current_locks), self.position, time.monotonic() - self.t0)

    def partitions_after(self) -> dict[int, list[tuple[int, int | None, int | None]]]:
        """The partitions once this flush's edit commits (it adds a table's first one)."""
        out = dict(self.partitions)
        for tid, pid in self.new_partitions.items():
            out[tid] = [(pid, None, None)]
        return out


class PendingFlush:
    """A pipelined flush (``Store.flush(wait=False)``): ``wait()`` returns its ``FlushResult``
    once its edit has committed, or raises ``FlushFailedError``."""

    def __init__(self, store: "Store | None" = None, predecessor: "PendingFlush | None" = None,
                 partitions_after: dict[int, list[tuple[int, int | None, int | None]]] | None = None) -> None:
        self._store = store
        self._done = threading.Event()
        self._result: FlushResult | None = None
        self._error: BaseException | None = None
        # The pipelined flush before this one, still in flight when this one started (its edit
        # commits first); the partitions this one leaves, for a flush following it.
        self._predecessor = predecessor  # cleared once it is done
        self._followed = predecessor is not None
        self._partitions_after = partitions_after or {}
        # Under Store._chain_mutex: a flush follows this one (it takes over the edit lock);
        # this one's thread is done with the lock.
        self._successor = False
        self._finished = False

    @classmethod
    def finished(cls, result: FlushResult) -> "PendingFlush":
        pending = cls()
        pending._result = result
        pending._done.set()
        return pending

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> FlushResult:
        if not self._done.wait(timeout):
            raise TimeoutError(f"the flush is not durable after {timeout}s")
        if self._error is not None:
            if self._store is not None:
                self._store._failure_reported = True  # close() need not raise it again
            raise self._error
        assert self._result is not None
        return self._result


def _discard_parts(root: Path, written: list[tuple[int, int, int, Any, str]]) -> None:
    """Remove the files of a flush that will not be listed (temporary or renamed)."""
    for w in written:
        dest = root / w[3].file
        for path in (temp_name(dest), dest):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _table_for_read(view: StoreView, table: "str | int | TableInfo", ts: int, schema: str) -> "TableInfo":
    """The table a read at ``ts`` means, with the schema it reads with (``schema``: current | as_of)."""
    if schema == "as_of":
        return view.table_at(table, ts)
    if schema != "current":
        raise ValueError(f"schema={schema!r}: use 'current' or 'as_of'")
    if hasattr(table, "columns") and hasattr(table, "id"):
        return table  # type: ignore[return-value]
    return view.table(table)


def _ranges_overlap(s1: bytes, e1: bytes, s2: bytes, e2: bytes) -> bool:
    """Do two PD-encoded [start, end) ranges overlap (empty end = +inf)?"""
    return (not e1 or s2 < e1) and (not e2 or s1 < e2)


class _PartitionsChanged(Exception):
    pass


def _user_fields(info: "TableInfo") -> list[pa.Field]:
    from pyspark_theflash.schema import arrow_schema

    return [f for f in arrow_schema(info) if f.name not in (ROWID, COMMIT_TS, DELMARK)]


def _rowid_type(info: "TableInfo") -> pa.DataType:
    """int64, or binary (the memcomparable key) for a clustered common-handle table."""
    from pyspark_theflash.schema import hidden_field

    return hidden_field(ROWID, info).type


def _version_columns(history: TableHistory, version: int) -> list[Any]:
    """Columns of the table at ``version`` (the buffer's rows were decoded with it)."""
    info = history.by_version(version)
    assert info is not None, f"table {history.table_id} has no schema version {version} in memory"
    return list(info.columns)


def insert_part(conn: sqlite3.Connection, table_id: int, partition_id: int, kind: str, pf: Any,
                schema_version: int, data_version: int, added_version: int,
                columns: Sequence[tuple[int, str]] | None = None) -> None:
    """List a part. ``columns``: its (column id, file column) when they are not its schema
    version's (a compacted part keeping columns older versions need)."""
    conn.execute(
        "INSERT INTO parts(table_id, partition_id, kind, file, rows, bytes, min_handle, max_handle, "
        "min_commit_ts, max_commit_ts, single_version, delete_marks, schema_version, data_version, "
        "added_version, removed_version, stats, columns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,?,?)",
        (table_id, partition_id, kind, pf.file, pf.rows, pf.bytes, pf.min_handle, pf.max_handle,
         pf.min_commit_ts, pf.max_commit_ts, int(pf.single_version), pf.delete_marks, schema_version,
         data_version, added_version, json.dumps(stats_to_json(pf.stats)),
         None if columns is None else json.dumps([[int(i), str(n)] for i, n in columns])))


__all__ = ["FlushResult", "Store", "StoreOptions", "WriteResult", "HIDDEN_FIELDS"]
