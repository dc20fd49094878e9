"""The store: one directory, one writer, many readers.

``write`` applies a batch of region events atomically to memory (region caches and
committed-row buffers); ``flush`` persists everything applied so far as one manifest edit
(delta parts, region states, open locks, binlog position). The binlog is the write-ahead
log. See docs/store.md for files, edits and invariants.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import pyarrow as pa

from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.schema.partitioning import partitioning_of, physical_ids_of, physical_tables_of
from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.errors import (
    ReadOnlyStoreError,
)
from pyspark_theflash.store.leases import Leases
from pyspark_theflash.store.predicate import Expr
from pyspark_theflash.store.parts import DEFAULT_BATCH_ROWS
from pyspark_theflash.store.read import read_parts
from pyspark_theflash.store.region_cache import RegionCaches, SpillFile
from pyspark_theflash.store.row_sink import RowSink
from pyspark_theflash.store.txn_merge_tree import (
    HIDDEN_FIELDS,
    PART_COMPRESSION,
)
from pyspark_theflash.store.schemas import TableHistory
from pyspark_theflash.store.views import StoreView, intersect

from pyspark_theflash.store.apply import ApplyPath
from pyspark_theflash.store.flush import FlushPipeline, FlushResult, PendingFlush
from pyspark_theflash.store.write_state import MutableRegion, SnapshotWrites, TableBuffer, WriteResult

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo



@dataclass(frozen=True)
class StoreOptions:
    flush_rows: int = 500_000            # write() flushes when this many committed rows wait
    flush_bytes: int = 128 << 20         # ... or this many bytes of them
    flush_deadline_s: float = 2.0        # flush_due() once the oldest unflushed change is this old
    partition_max_rows: int = 2_000_000  # compaction splits a partition beyond this
    partition_max_bytes: int = 256 << 20
    row_group_rows: int = 64 * 1024      # stable parts' Parquet row groups
    part_compression: str = PART_COMPRESSION  # stable parts' Parquet codec: lz4 (fast reads) or zstd (small)
    prewrite_memory_bytes: int = 256 << 20  # prewritten values beyond this spill to disk
    compact_min_deltas: int = 4          # background compaction merges partitions with this many deltas
    delta_merge_min: int = 8             # merge_deltas() merges a partition's deltas once it has this many
    read_batch_rows: int = DEFAULT_BATCH_ROWS
    scan_lease_ttl_s: float = 600.0
    # Removed parts' files outlive the last lease that pins them by this long (see
    # compaction.delete_obsolete_files): slack for a reader whose lease renewal comes late.
    removed_file_retention_s: float = 60.0
    busy_timeout_ms: int = 30_000




class Store(ApplyPath, FlushPipeline):
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
        try:
            if readonly:
                mf.check_format(self._conn, root)
            else:
                with mf.damage_as_error(root):
                    mf.initialise(self._conn)
        except BaseException:
            self._conn.close()
            raise
        self.leases = Leases(lambda: mf.connect(root, create=False, busy_timeout_ms=options.busy_timeout_ms,
                                                durable=False))
        self._background: Any = None
        # Decodes the committed rows of a batch instead of codec.batch.decode_rows_to_arrow:
        # (values, handles, table info, columns) -> RecordBatch, e.g. on Spark executors for
        # large batches (writer/spark_decode.py).
        self.decode_rows: Any = None
        # Receives each flush's committed rows inside its manifest edit (``store.row_sink``):
        # the ClickHouse engine keeps its tables this way. None for the native engine.
        self.row_sink: RowSink | None = None
        # writer state
        self._regions: dict[int, MutableRegion] = {}
        self._schemas: dict[int, "TableInfo"] = {}          # newest version of each table id
        self._histories: dict[int, TableHistory] = {}       # every version, by commit ts
        self._file_schemas: dict[tuple[int, int], tuple[pa.Schema, list[pa.Field]]] = {}
        self._ignored: set[int] = set()
        self._buffers: dict[int, TableBuffer] = {}
        self._tombstones: list[tuple[bytes, bytes, str]] = []
        self._snapshot_writes: dict[int, SnapshotWrites] = {}
        self._persisted_locks: set[tuple[int, bytes, int]] = set()
        self._dirty_regions: set[int] = set()      # regions changed since the last flush
        self._position: tuple[int, int] | None = None
        self._persisted_position: tuple[int, int] | None = None
        self._dirty_since: float | None = None
        self._caches: RegionCaches | None = None
        if not readonly:
            with mf.damage_as_error(root):
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

    def thread_connection(self) -> sqlite3.Connection:
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
                self._regions[int(r[0])] = MutableRegion(int(r[0]), bytes(r[1]), bytes(r[2]), int(r[3]), int(r[4]),
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
    def editing(self) -> Iterator[None]:
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
        with self.editing():
            with mf.edit(self._conn) as e:
                self._put_version(e, db, info, commit_ts, exact=not estimate)
                partitions = self._put_partitions(e, db, info, commit_ts, exact=not estimate)
        if estimate and known:
            self._ignored.discard(info.id)
        else:
            self._learn_version(info, commit_ts)
        for part in partitions:
            self._learn_version(part, commit_ts)
        return int(info.schema_version)

    def _put_partitions(self, e: "mf.Edit", db: str, info: "TableInfo", commit_ts: int,
                        exact: bool = True) -> list["TableInfo"]:
        """A partitioned table's version also as one version per partition id (the physical
        tables its rows arrive under, ``schema.partitioning``); returns those not known yet."""
        out = []
        for part in physical_tables_of(info):
            history = self._histories.get(part.id)
            if history is not None and history.has(part.schema_version, commit_ts):
                continue
            self._put_version(e, db, part, commit_ts, exact=exact)
            out.append(part)
        return out

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
        partitioned = partitioning_of(info) is not None and tid not in self._ignored and ddl.type != Ddl.DROP_TABLE
        if not (new_version or new_retire or new_life or partitioned):
            return False
        partitions: list["TableInfo"] = []
        why = {Ddl.DROP_TABLE: "dropped", Ddl.TRUNCATE_TABLE: f"truncated (the name is table {tid} now)"}
        with self.editing():
            with mf.edit(self._conn) as e:
                conn = e.conn
                if new_version:
                    self._put_version(e, ddl.db, info, ts)
                if partitioned:
                    partitions = self._put_partitions(e, ddl.db, info, ts)
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
        for part in partitions:
            self._learn_version(part, ts)
        if not (new_version or new_retire or new_life or partitions):
            return False
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
        with self.editing():
            with mf.edit(self._conn, bump=False):
                self._conn.execute("INSERT OR REPLACE INTO ignored_tables VALUES (?,?,?)", (table_id, db, name))
        self._ignored.add(table_id)

    def set_upstream(self, address: str, cluster_id: int | None = None) -> None:
        """Record the upstream's address (readers' default) and, when known, its cluster id (a
        later ``--upstream`` of another cluster is refused by the writer)."""
        self._require_writer("set_upstream")
        with self.editing(), mf.edit(self._conn, bump=False):
            mf.set_meta(self._conn, "upstream", address)
            if cluster_id is not None:
                mf.set_meta(self._conn, "upstream_cluster_id", int(cluster_id))

    # --- reads -------------------------------------------------------------------------------
    def snapshot(self) -> StoreView:
        """A consistent view of the flushed state (one SQLite read transaction); in the writer,
        after any pending pipelined flush is durable."""
        if not self.readonly:
            self.sync()
        with mf.damage_as_error(self.root):
            return StoreView(self._connect())

    def scan(self, table: "str | int | TableInfo", ts: int, handle_range: tuple[int | None, int | None] | None = None,
             region_id: int | None = None, columns: Sequence[str] | None = None, predicate: Expr | None = None,
             hidden: Sequence[str] = (), schema: str = "current") -> Iterator[pa.RecordBatch]:
        """Rows of ``table`` visible at ``ts`` (flushed state), under a lease held while the
        iterator runs. ``region_id`` restricts to the handles inside that region. ``schema``:
        ``"current"`` reads with the table's current schema (a name means the live table),
        ``"as_of"`` with the one in force at ts (a name means the table that had it then). A
        damaged manifest met anywhere in it raises ``ManifestDamagedError`` naming the file."""
        with mf.damage_as_error(self.root):
            yield from self._scan(table, ts, handle_range, region_id, columns, predicate, hidden, schema)

    def _scan(self, table: "str | int | TableInfo", ts: int, handle_range: tuple[int | None, int | None] | None,
              region_id: int | None, columns: Sequence[str] | None, predicate: Expr | None,
              hidden: Sequence[str], schema: str) -> Iterator[pa.RecordBatch]:
        lease = self.leases.acquire(ts, self.options.scan_lease_ttl_s, holder=f"scan pid {os.getpid()}")
        try:
            reads = []
            with self.snapshot() as view:
                info = table_for_read(view, table, ts, schema)
                # a partitioned table's rows live under its partitions' ids (its info at ts lists them)
                for table_id in physical_ids_of(info):
                    rng: tuple[int | None, int | None] | None = handle_range or (None, None)
                    if region_id is not None:
                        region = view.region(region_id)
                        if region is None:
                            return
                        rng = intersect(rng, view.region_handle_range(region, table_id))  # type: ignore[arg-type]
                    if rng is not None:
                        reads.append((view.parts(table_id, rng[0], rng[1]), rng))
            for parts, rng in reads:
                yield from read_parts(parts, info, ts, rng, columns, predicate, hidden, self.root,
                                      self.options.read_batch_rows)
        finally:
            with contextlib.suppress(Exception):
                self.leases.release(lease.id)

    def scan_table(self, table: "str | int | TableInfo", ts: int, **kwargs: Any) -> pa.Table:
        """``scan`` collected into one table (with the output schema even when empty)."""
        from pyspark_theflash.store.parts import output_schema

        with self.snapshot() as view:
            info = table_for_read(view, table, ts, kwargs.get("schema", "current"))
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

    def merge_deltas(self) -> Any:
        """Merge each partition's delta parts into one delta part once it has
        ``delta_merge_min`` of them (``compaction.merge_deltas``); the stable part stays."""
        from pyspark_theflash.store.compaction import merge_deltas

        self._require_writer("merge deltas")
        return merge_deltas(self)

    def gc(self, safe_point: int, collect: Callable[[int], Any] | None = None) -> Any:
        """Move the GC safe point to ``safe_point`` (never past the oldest live lease) and
        compact every partition with it. ``collect``: called with the safe point reached,
        before the compaction (an engine that keeps the rows drops its own versions there, so
        the records compaction writes count what is left)."""
        from pyspark_theflash.store.compaction import gc_store

        self._require_writer("gc")
        self.sync()
        return gc_store(self, safe_point, collect)

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



def table_for_read(view: StoreView, table: "str | int | TableInfo", ts: int, schema: str) -> "TableInfo":
    """The table a read at ``ts`` means, with the schema it reads with (``schema``: current | as_of)."""
    if schema == "as_of":
        return view.table_at(table, ts)
    if schema != "current":
        raise ValueError(f"schema={schema!r}: use 'current' or 'as_of'")
    if hasattr(table, "columns") and hasattr(table, "id"):
        return table  # type: ignore[return-value]
    return view.table(table)




__all__ = ["FlushResult", "PendingFlush", "Store", "StoreOptions", "WriteResult", "HIDDEN_FIELDS"]
