"""The store: one directory, one writer, many readers.

``write`` applies a batch of region events atomically to memory (region caches and
committed-row buffers); ``flush`` persists everything applied so far as one manifest edit
(delta parts, region states, open locks, binlog position). The binlog is the write-ahead
log. See docs/store.md for files, edits and invariants.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Literal, Mapping, Sequence, overload

import pyarrow as pa

from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.schema.partitioning import physical_ids_of
from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.apply import Applier, WriteResult
from pyspark_theflash.store.catalog import TableCatalog
from pyspark_theflash.store.compaction import (
    BackgroundCompactor,
    CompactionResult,
    compact_store,
    delete_obsolete_files,
    gc_store,
    merge_deltas,
)
from pyspark_theflash.store.edit_lock import EditLock
from pyspark_theflash.store.errors import (
    ReadOnlyStoreError,
    StoreFencedError,
)
from pyspark_theflash.store.flush import FlushPipeline, FlushResult, PendingFlush
from pyspark_theflash.store.leases import Leases
from pyspark_theflash.store.options import StoreOptions
from pyspark_theflash.store.parts import output_schema
from pyspark_theflash.store.predicate import Expr
from pyspark_theflash.store.read import read_parts
from pyspark_theflash.store.region_cache import RegionCaches, SpillFile
from pyspark_theflash.store.row_sink import RowSink
from pyspark_theflash.store.schemas import TableHistory
from pyspark_theflash.store import remote
from pyspark_theflash.store.remote import PartsRemote
from pyspark_theflash.store.txn_merge_tree import HIDDEN_FIELDS, in_part_directory
from pyspark_theflash.store.keyspace import HandleRange
from pyspark_theflash.store.views import RegionMemo, StoreView, intersect
from pyspark_theflash.store.write_state import WriteState

if TYPE_CHECKING:
    from pyspark_theflash.schema.info_json import TableInfoJson
    from pyspark_theflash.schema import TableInfo


log = logging.getLogger("theflash.store")


class Store:
    """A TheFlash store directory. ``Store.open(path)`` for the single writer,
    ``Store.open(path, readonly=True)`` for readers in any process.

    Assembled from parts, each with its own state: the writer's memory (``WriteState``), its
    tables (``TableCatalog``), the order of its manifest edits (``EditLock``), the flush
    pipeline (``FlushPipeline``) and the apply path (``Applier``, which flushes through the
    pipeline); the public methods delegate to them."""

    def __init__(self, root: Path, readonly: bool, options: StoreOptions) -> None:
        self.root = root
        self.readonly = readonly
        self.options = options
        self._local = threading.local()
        self._fence: Callable[[], None] | None = None
        self._region_memo = RegionMemo()  # the live regions of the last version a view read
        self._conn = self._connect(create=not readonly)
        try:
            if readonly:
                mf.check_format(self._conn, root)
            else:
                with mf.damage_as_error(root):
                    mf.initialise(self._conn)
            # where the stable parts live besides this disk (store.remote): the manifest's, or
            # the option's for a store the writer opens that has none yet (its parts uploaded first)
            self.remote: PartsRemote | None = remote.attach(self._conn, root,
                                                            None if readonly else options.parts_remote)
        except BaseException:
            self._conn.close()
            raise
        self.leases = Leases(lambda: mf.connect(root, create=False, busy_timeout_ms=options.busy_timeout_ms,
                                                durable=False))
        self._background: BackgroundCompactor | None = None
        self.edit_lock = EditLock()
        self.catalog = TableCatalog()
        self.state = WriteState()
        self.pipeline = FlushPipeline(root, options, self.state, self.catalog, self.edit_lock, self._conn,
                                      self._connect)
        self.applier = Applier(options, self.state, self.catalog, self.pipeline)
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

    def _connect(self, create: bool = False) -> mf.ManifestConnection:
        conn = mf.connect(self.root, create=create, busy_timeout_ms=self.options.busy_timeout_ms)
        if not self.readonly:
            conn.fence = self._check_fence
        return conn

    def set_fence(self, check: Callable[[], None] | None) -> None:
        """``check`` runs inside every manifest edit of this store (flushes, pipelined ones on
        their own thread included; compactions, GC, schema edits), under SQLite's write lock,
        and raises when this process may no longer edit the store: the writer passes its
        write-latch check. The edit is then refused (``StoreFencedError``), nothing of it
        visible. A check before each flush alone left a window as long as the flush: a
        writer stopped (SIGSTOP, a VM pause) with a flush in flight committed it on waking,
        after another writer had taken the store over."""
        self._fence = check

    def _check_fence(self) -> None:
        check = self._fence
        if check is None:
            return
        try:
            check()
        except Exception as exc:
            raise StoreFencedError(str(self.root), exc) from exc

    def thread_connection(self) -> sqlite3.Connection:
        """A manifest connection owned by the calling thread (SQLite connections must not be
        shared by threads that run transactions concurrently)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _load_writer_state(self) -> None:
        with StoreView(self._conn, owns_conn=False) as view:
            self.catalog.load(view)
        self.state.load(self._conn, RegionCaches(SpillFile(self.root / "spill.db"), self.options.prewrite_memory_bytes))
        self._remove_unlisted_files()

    def _remove_unlisted_files(self) -> None:
        """Files in partition directories that no manifest row names are leftovers of a flush or a
        compaction that crashed before its edit committed: never visible, safe to delete. The
        rest of a table's directory is its Delta publication's (``in_part_directory``). The same
        of the objects in the parts location, when the store has one (``store.remote``)."""
        listed = {r[0] for r in self._conn.execute("SELECT file FROM parts")}
        if self.remote is not None:
            # a compaction's uploads, its process dead before its edit or its cleanup; not a Delta
            # publication's files beside them
            swept = [rel for rel in self.remote.files_under("tables")
                     if in_part_directory(rel) and rel.endswith(".parquet") and rel not in listed]
            remote.delete_parts(self.remote, swept)
            if swept:
                log.info("deleted %d unlisted part object(s) from %s (a compaction's, cut short)", len(swept),
                         self.remote.uri)
        tables_dir = self.root / "tables"
        if not tables_dir.exists():
            return
        for dirpath, _dirs, files in os.walk(tables_dir):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")
                # a reader's fetch in flight (store.remote) is not a leftover of this writer
                if rel not in listed and in_part_directory(rel) and ".fetch-" not in name:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))

    def close(self) -> None:
        """Drain a pending pipelined flush, then release everything. A failure of that flush
        no call has reported yet is raised here (after closing)."""
        self.stop_background()
        self.pipeline.close()
        if self.state.caches is not None:
            self.state.caches.close()
        self.leases.close()
        self._conn.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self.edit_lock.failure is not None and not self.edit_lock.failure_reported:
            self.edit_lock.raise_failure()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_writer(self, operation: str) -> None:
        if self.readonly:
            raise ReadOnlyStoreError(str(self.root), operation)
        self.edit_lock.raise_failure()

    def editing(self) -> contextlib.AbstractContextManager[None]:
        """The edit lock (after any pending pipelined flush), refusing if that flush failed."""
        return self.edit_lock.editing()

    def commit(self, edit: mf.ManifestEdit) -> int:
        """Apply a manifest edit now (after any pending pipelined flush), with the schema
        changes staged ahead of it, in one transaction; returns its version."""
        self._require_writer("commit")
        with self.editing():
            staged, schema_edit = self.catalog.take_staged()
            version = mf.apply_edit(self._conn, edit if schema_edit is None else schema_edit.then(edit))
            self.catalog.forget_staged(staged)
        return version

    # --- writing -----------------------------------------------------------------------------
    def write(self, events: Sequence[binlog_pb2.Event],
              position: binlog_pb2.Position | tuple[int, int] | None = None) -> WriteResult:
        """Apply a batch of events atomically to memory; ``position`` is where the binlog
        continues after them. On UnknownTableError (or any error) nothing is applied. Its DDL
        events are applied first (``apply_ddl``): their edit is the next flush's."""
        self._require_writer("write")
        return self.applier.write(events, position)

    @overload
    def flush(self) -> FlushResult: ...
    @overload
    def flush(self, wait: Literal[True]) -> FlushResult: ...
    @overload
    def flush(self, wait: Literal[False]) -> PendingFlush: ...
    @overload
    def flush(self, wait: bool) -> FlushResult | PendingFlush: ...

    def flush(self, wait: bool = True) -> FlushResult | PendingFlush:
        """Persist everything applied so far in one manifest edit (``FlushPipeline.flush``);
        ``wait=False``: pipelined, a ``PendingFlush``."""
        self._require_writer("flush")
        return self.pipeline.flush(wait)

    def sync(self) -> FlushResult | None:
        """Wait until the last pipelined flush that had something to persist is durable;
        its result (None if there was none). Raises ``FlushFailedError`` if it (or an earlier
        one) failed."""
        return self.pipeline.sync()

    @property
    def failure(self) -> BaseException | None:
        """The ``FlushFailedError`` of a failed pipelined flush (the store then refuses writes)."""
        return self.edit_lock.failure

    def flush_due(self) -> bool:
        """True when the oldest unflushed change is older than the flush deadline."""
        return self.pipeline.flush_due()

    def flush_due_in(self) -> float | None:
        """Seconds until the oldest unflushed change reaches the flush deadline (at most 0:
        due now); None when nothing is unflushed."""
        return self.pipeline.flush_due_in()

    @property
    def buffered_rows(self) -> int:
        return self.state.buffered_rows

    @property
    def buffered_bytes(self) -> int:
        return self.state.buffered_bytes

    @property
    def row_sink(self) -> RowSink | None:
        """Receives each flush's committed rows inside its manifest edit (``store.row_sink``):
        the ClickHouse engine keeps its tables this way. None for the native engine."""
        return self.pipeline.row_sink

    @row_sink.setter
    def row_sink(self, sink: RowSink | None) -> None:
        self.pipeline.row_sink = sink

    @property
    def decode_rows(self) -> Callable[..., pa.RecordBatch] | None:
        """Replaces codec.batch.decode_rows_to_arrow (same signature) for the committed rows of
        a batch, e.g. to decode large batches on Spark executors (writer/spark_decode.py)."""
        return self.applier.decode_rows

    @decode_rows.setter
    def decode_rows(self, decode: Callable[..., pa.RecordBatch] | None) -> None:
        self.applier.decode_rows = decode

    # --- schemas -----------------------------------------------------------------------------
    def put_schema(self, db: str, table_info: TableInfoJson, commit_ts: int | None = None) -> int:
        """Record a schema version of a table (idempotent), in an edit of its own; returns its
        schema version.

        ``commit_ts``: the commit ts of the DDL that made it (a binlog DDL event's); rows
        committed from then on decode with it. None: learned from the schema endpoint — in force
        from the table info's ``update_timestamp`` (0 without one); a version already known
        keeps its commit ts."""
        from pyspark_theflash.schema import TableInfo

        self._require_writer("put_schema")
        info = TableInfo.from_json(table_info, db=db)
        changes, learn = self.catalog.schema_changes(db, info, commit_ts)
        self.commit(mf.ManifestEdit(tables=tuple(changes)))
        self.catalog.ignored.discard(info.id)
        for version, ts in learn:
            self.catalog.learn(version, ts)
        return int(info.schema_version)

    def apply_ddl(self, event: binlog_pb2.Event) -> bool:
        """A binlog DDL event (``binlog_pb2.Ddl``): the table version it makes, in force from its
        commit ts, and the table ids it creates or retires (DROP TABLE, TRUNCATE), known at once
        and persisted by the next flush's edit (the edit of the batch carrying it). A DDL of an
        ignored table changes nothing (TRUNCATE passes the ignoring on to the new id).
        Idempotent; False when it changed nothing."""
        self._require_writer("apply_ddl")
        with self.state.lock:
            return self.catalog.apply_ddl(event)

    def replicates(self, table_id: int) -> bool | None:
        """True: the store holds the table's schema; False: it ignores the table; None: neither."""
        return self.catalog.replicates(table_id)

    def known_column_ids(self) -> dict[int, set[int]]:
        """Per replicated table id: the ids of every column any stored version has."""
        return self.catalog.known_column_ids()

    def histories(self) -> Mapping[int, TableHistory]:
        """The writer's schema versions of every replicated table id (its memory: a batch's DDL
        is here before the flush that persists it)."""
        return self.catalog.histories

    def ignore_table(self, table_id: int, db: str, name: str) -> None:
        """Rows of this table are dropped by write() from now on (not replicated); persisted by
        the next flush's edit."""
        self._require_writer("ignore_table")
        with self.state.lock:
            self.catalog.ignore(table_id, db, name)

    def set_upstream(self, address: str, cluster_id: int | None = None) -> None:
        """Record the upstream's address (readers' default) and, when known, its cluster id (a
        later ``--upstream`` of another cluster is refused by the writer)."""
        self._require_writer("set_upstream")
        meta: tuple[tuple[str, object], ...] = (("upstream", address),)
        if cluster_id is not None:
            meta += (("upstream_cluster_id", int(cluster_id)),)
        self.commit(mf.ManifestEdit(bump=False, meta=meta))

    # --- reads -------------------------------------------------------------------------------
    def snapshot(self) -> StoreView:
        """A consistent view of the flushed state (one SQLite read transaction); in the writer,
        after any pending pipelined flush is durable."""
        if not self.readonly:
            self.sync()
        with mf.damage_as_error(self.root):
            return StoreView(self._connect(), memo=self._region_memo)

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
                    asked: HandleRange = handle_range or (None, None)
                    rng: HandleRange | None = asked
                    if region_id is not None:
                        region = view.region(region_id)
                        if region is None:
                            return
                        rng = intersect(asked, view.region_handle_range(region, table_id))
                    if rng is not None:
                        reads.append((view.parts(table_id, rng[0], rng[1]), rng))
            for parts, rng in reads:
                yield from read_parts(parts, info, ts, rng, columns, predicate, hidden, self.root,
                                      self.options.read_batch_rows)
        finally:
            with contextlib.suppress(Exception):
                self.leases.release(lease.id)

    def scan_table(self, table: "str | int | TableInfo", ts: int,
                   handle_range: tuple[int | None, int | None] | None = None, region_id: int | None = None,
                   columns: Sequence[str] | None = None, predicate: Expr | None = None, hidden: Sequence[str] = (),
                   schema: str = "current") -> pa.Table:
        """``scan`` collected into one table (with the output schema even when empty)."""
        with self.snapshot() as view:
            info = table_for_read(view, table, ts, schema)
        batches = list(self.scan(info, ts, handle_range=handle_range, region_id=region_id, columns=columns,
                                 predicate=predicate, hidden=hidden, schema=schema))
        arrow_schema = output_schema(info, columns, hidden)
        return pa.Table.from_batches(batches, schema=arrow_schema)

    # --- compaction, GC, background ---------------------------------------------------------
    def compact(self, table: "str | int | TableInfo | None" = None, force: bool = False) -> CompactionResult:
        """Merge every partition's delta parts (and stable part) into a new stable part,
        dropping versions below the GC safe point; splits oversized partitions."""
        self._require_writer("compact")
        self.sync()
        return compact_store(self, table, force=force)

    def merge_deltas(self) -> CompactionResult:
        """Merge each partition's delta parts into one delta part once it has
        ``delta_merge_min`` of them (``compaction.merge_deltas``); the stable part stays."""
        self._require_writer("merge deltas")
        return merge_deltas(self)

    def gc(self, safe_point: int, collect: Callable[[int], object] | None = None) -> CompactionResult:
        """Move the GC safe point to ``safe_point`` (never past the oldest live lease) and
        compact every partition with it. ``collect``: called with the safe point reached,
        before the compaction (an engine that keeps the rows drops its own versions there, so
        the records compaction writes count what is left)."""
        self._require_writer("gc")
        self.sync()
        return gc_store(self, safe_point, collect)

    def delete_obsolete_files(self) -> int:
        self._require_writer("delete_obsolete_files")
        self.sync()
        return delete_obsolete_files(self)

    def start_background(self, compaction_interval_s: float = 10.0) -> None:
        self._require_writer("start_background")
        if self._background is None:
            self._background = BackgroundCompactor(self, compaction_interval_s)
            self._background.start()

    def stop_background(self) -> None:
        if self._background is not None:
            self._background.stop()
            self._background = None

    # --- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, object]:
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
            caches = self.state.caches
            assert caches is not None
            out["buffered_rows"] = self.buffered_rows
            out["buffered_bytes"] = self.buffered_bytes
            out["open_prewrites"] = caches.count()
            out["prewrite_memory_bytes"] = caches.memory_bytes
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
    from pyspark_theflash.schema import TableInfo

    if isinstance(table, TableInfo):
        return table
    return view.table(table)




__all__ = ["FlushResult", "PendingFlush", "Store", "StoreOptions", "WriteResult", "HIDDEN_FIELDS"]
