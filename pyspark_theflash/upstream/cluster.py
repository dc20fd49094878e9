"""The embedded mini cluster: PD (TSO, regions, GC safe point) + TiKV (Percolator store) +
TiDB (catalog, transactions, status port) in one object, writing the binlog.

``MiniCluster`` implements ``UpstreamClient`` directly, so a reader in the same process
uses it as it would use ``upstream.connect(address)``.

What survives a restart (``data_dir``), crash or not:
- ``tso.json``: the TSO high-water mark, saved ahead of use, so timestamps never go back;
- ``cluster.sqlite``: the catalog (databases, tables, schema versions), saved at every DDL;
  and a checkpoint of the region map (ranges, epochs, raft indexes, resolved ts), the GC
  safe point, row id counters and the data (write, default and lock records in TiKV's byte
  forms) with the binlog position it corresponds to, saved by ``checkpoint()``, every
  ``checkpoint_interval_s`` and at ``close()``. A checkpoint is incremental: it writes only
  the records that changed since the previous one (the store hands them over under its lock
  in constant time; they are written to SQLite after the lock is released, so transactions
  go on meanwhile), in one SQLite transaction with the position they correspond to. A crash
  in the middle leaves the previous checkpoint, and the changes are still in the log after
  its position;
- the binlog itself is the write-ahead log: at start the events after the checkpoint's
  position (all of them when there is no checkpoint) are replayed, so a cluster killed at
  any point comes back with exactly the state its log describes, and its next events
  continue each region's raft index. Open locks survive too (their owners are gone: they
  expire and are rolled back like any abandoned transaction's).
With a ``sink`` instead of a binlog directory only the checkpoint survives. A new, empty
binlog directory starts with a snapshot of every region, so a reader of the new log learns
all ranges and contents.
"""
from __future__ import annotations

import copy
import json
import logging
import sqlite3
import threading
import time
from itertools import repeat
from pathlib import Path
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence, TypedDict, TypeVar

import pyarrow as pa

from pyspark_theflash.binlog import Position, SegmentReader, SegmentWriter
from pyspark_theflash.binlog.segment import list_segments
from pyspark_theflash.codec import decode_record_key
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.txn.status import SecondaryLocks, TxnStatus
from pyspark_theflash.upstream.async_commit import resolve_txn
from pyspark_theflash.upstream_client.client import TableScan
from pyspark_theflash.upstream_client.errors import SchemaError, UpstreamError
from pyspark_theflash.upstream.gc_worker import DEFAULT_GC_LIFE_TIME_S, DEFAULT_GC_RUN_INTERVAL_S, GCRun, GCWorker
from pyspark_theflash.upstream.pd import GCSafePoint, Region, RegionMap
from pyspark_theflash.upstream.pd_service import ServiceSafePoints
from pyspark_theflash.upstream.topology import Topology
from pyspark_theflash.upstream.bulk import bulk_insert
from pyspark_theflash.upstream.ddl import convert_value, encode_row_v1_for_table
from pyspark_theflash.upstream.percolator import (
    PUT,
    SHORT_VALUE_MAX_LEN,
    EventSink,
    Mutation,
    PercolatorStore,
    StoreChanges,
)
from pyspark_theflash.upstream.tidb import (
    DEFAULT_TTL_MS,
    Catalog,
    CatalogState,
    LockResolver,
    TableVersion,
    Txn,
    encode_value,
    get_row,
    physical_ids,
    record_range,
    run_txn,
    scan_records,
    scan_table,
    table_info_of,
)
from pyspark_theflash.upstream_client.records import decode_records, decode_value, split_table_name
from pyspark_theflash.upstream.tso import TimestampOracle
from pyspark_theflash.schema.partitioning import PartitionDefinitionSpec, Partitioning, PartitionSpec, definition_json
from pyspark_theflash.schema.table_info import ColumnInfo
from pyspark_theflash.upstream.ddl_history import ddl_history_job
from pyspark_theflash.schema.ddl_jobs import DdlJob
from pyspark_theflash.schema.info_json import ColumnInfoJson, TableInfoJson
from pyspark_theflash.upstream.service import CLUSTER_ID

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cf_write (key BLOB NOT NULL, commit_ts INTEGER NOT NULL, write BLOB NOT NULL,
                                     PRIMARY KEY (key, commit_ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cf_default (key BLOB NOT NULL, start_ts INTEGER NOT NULL, value BLOB NOT NULL,
                                       PRIMARY KEY (key, start_ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cf_lock (key BLOB PRIMARY KEY, lock BLOB NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ddl_jobs (id INTEGER PRIMARY KEY, job TEXT NOT NULL);  -- TiDB's DDL history
CREATE TABLE IF NOT EXISTS schema_versions (table_id INTEGER NOT NULL, commit_ts INTEGER NOT NULL, db TEXT NOT NULL,
                                            info TEXT);  -- one row per table version; info NULL: dropped
"""

R = TypeVar("R")  # what a transaction body returns (run_txn)


def _u64(v: int) -> int:
    """SQLite integers are signed 64-bit: store TSO values as their signed twin."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _from_u64(v: int) -> int:
    return v + (1 << 64) if v < 0 else v


class CheckpointResult(NamedTuple):
    """What one checkpoint saved: ``records`` (write/default/lock records written or
    removed), ``locked_s`` (time the store lock was held), ``seconds`` (all of it)."""

    records: int
    locked_s: float
    seconds: float


class MiniCluster:
    """TiDB + TiKV + PD in one process. Thread-safe.

    ``binlog_dir`` (alias ``binlog``): a directory to write segment files to with
    ``binlog.SegmentWriter``; ``sink``: any object with ``append(events)`` instead (both may
    be None: no log). ``resolved_ts_interval`` (seconds; 0 = no ticker, call
    ``advance_resolved_ts()``) drives the resolved_ts events; ``expired_lock_grace_s``
    (None = never) lets the ticker resolve locks whose TTL ran out that long ago, as TiCDC
    does for stuck regions, so abandoned transactions do not hold resolved_ts forever.
    ``gc_life_time_s``/``gc_run_interval_s`` (None = no scheduled runs) drive the GC worker
    (``gc_worker.py``) from the same ticker, each run in its own thread: every run interval the
    safe point moves to now - life time, after resolving the locks below it (TiDB's defaults:
    10 min and 10 min).
    """

    def __init__(
        self,
        data_dir: str | Path,
        binlog_dir: str | Path | None = None,
        *,
        binlog: str | Path | None = None,
        sink: EventSink | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        resolved_ts_interval: float = 0.1,
        region_split_keys: int | None = None,
        region_split_bytes: int | None = None,
        expired_lock_grace_s: float | None = None,
        lock_ttl_ms: int = DEFAULT_TTL_MS,
        checkpoint_interval_s: float | None = 60.0,
        gc_life_time_s: float = DEFAULT_GC_LIFE_TIME_S,
        gc_run_interval_s: float | None = DEFAULT_GC_RUN_INTERVAL_S,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binlog_dir = binlog_dir if binlog_dir is not None else binlog
        self.binlog_dir = Path(binlog_dir) if binlog_dir is not None else None
        self.lock_ttl_ms = lock_ttl_ms
        self.checkpoint_interval_s = checkpoint_interval_s
        self.expired_lock_grace_s = expired_lock_grace_s
        self._db = sqlite3.connect(self.data_dir / "cluster.sqlite", check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._db_mu = threading.Lock()
        # the DDL history as ddl_history lists it, parsed once: capture's poller reads the whole
        # history every poll, and parsing every job again was most of serving it (issue 54)
        self._ddl_jobs: list[DdlJob] | None = None
        self._checkpoint_mu = threading.Lock()  # one checkpoint at a time: each applies on the last
        self.tso = TimestampOracle(self.data_dir / "tso.json")
        meta = dict(self._db.execute("SELECT name, value FROM meta"))
        restarted = "regions" in meta  # a checkpoint exists

        self._writer: SegmentWriter | None = None
        log_has_events = False
        if self.binlog_dir is not None:
            if self.binlog_dir.exists() and list_segments(self.binlog_dir):
                with SegmentReader(self.binlog_dir) as reader:
                    log_has_events = bool(reader.read_batch(1))
            self._writer = SegmentWriter(self.binlog_dir, segment_bytes)  # truncates a torn tail
            sink = self._writer
        regions = RegionMap(
            [_region_from_saved(r) for r in json.loads(meta["regions"])], json.loads(meta["next_region_id"])
        ) if restarted else RegionMap()
        self.gc = GCSafePoint(int(meta.get("gc_safe_point", "0")))
        self.store = PercolatorStore(
            regions, self.tso, self.gc, sink,
            region_split_keys=region_split_keys, region_split_bytes=region_split_bytes,
        )
        self.catalog = Catalog(
            self.tso, json.loads(meta["catalog"]) if "catalog" in meta else None,
            on_change=self._save_catalog, on_ddl=self._log_ddl, on_versions=self._save_table_versions,
            versions=[(tid, _from_u64(ts), db, None if info is None else json.loads(info))
                      for tid, ts, db, info in self._db.execute("SELECT table_id, commit_ts, db, info FROM schema_versions "
                                                                "ORDER BY rowid")],
        )
        self.closed = False
        self.cluster_id = CLUSTER_ID
        self.service_safe_points = ServiceSafePoints(self.gc)
        self.gc_worker = GCWorker(self.store, self.tso, gc_life_time_s, gc_run_interval_s,
                                  on_safe_point=self._save_gc_safe_point,
                                  ceiling=self.service_safe_points.ceiling)
        self.topology: Topology | None = None
        self.pd_address = ""
        if restarted:
            self.store.load(
                ((bytes(k), _from_u64(ts), bytes(w)) for k, ts, w in self._db.execute("SELECT key, commit_ts, write FROM cf_write")),
                ((bytes(k), _from_u64(ts), bytes(v)) for k, ts, v in self._db.execute("SELECT key, start_ts, value FROM cf_default")),
                ((bytes(k), bytes(lk), bytes(v)) for k, lk, v in self._db.execute("SELECT key, lock, value FROM cf_lock")),
            )
        self.replayed_events = 0
        if log_has_events:
            assert self.binlog_dir is not None and self._writer is not None  # (events: the log was opened)
            if restarted and meta.get("binlog_dir") != str(self.binlog_dir.resolve()):
                self._writer.close()
                self._db.close()
                raise UpstreamError(
                    f"binlog directory {self.binlog_dir} does not continue the log of the cluster in "
                    f"{self.data_dir} (its current log is {meta.get('binlog_dir') or 'no directory'}); "
                    "give that directory, or an empty one to start a new log"
                )
            # The log is the write-ahead log: replay what came after the checkpoint (or all of it).
            position = Position(*json.loads(meta["binlog_position"])) if restarted and "binlog_position" in meta else None
            self.replayed_events = self._replay(position)
        else:
            self.store.bootstrap()  # a new log starts with every region's snapshot
            if self.binlog_dir is not None:
                self.checkpoint()  # ties the state to this log, so a crash replays from here
        for db, name in self.catalog.list_tables():  # a crash between a CREATE TABLE and its split
            self._split_table(self.catalog.table(db, name)["id"])

        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.resolved_ts_interval = resolved_ts_interval
        if resolved_ts_interval > 0:
            self._ticker = threading.Thread(target=self._tick, name="upstream-resolved-ts", daemon=True)
            self._ticker.start()
        self._stops: list[Callable[[], object]] = []  # each server's close (or stop), in start order
        self.status_address = ""
        self.upstream_address = ""
        self.binlog_address = f"file://{self.binlog_dir.resolve()}" if self.binlog_dir else ""

    def _replay(self, position: Position | None) -> int:
        assert self.binlog_dir is not None
        n = 0
        with SegmentReader(self.binlog_dir, position) as reader:
            for positioned in reader:
                if positioned.event.WhichOneof("payload") == "ddl":
                    if self.catalog.replay_ddl(positioned.event):
                        self._save_versions(positioned.event)
                    self._save_ddl_job(positioned.event)
                else:
                    self.store.replay(positioned.event)
                n += 1
        for db, name in self.catalog.list_tables():
            table = self.catalog.table(db, name)
            if not table["pk_is_handle"] and not table["is_common_handle"]:
                last = self.store.last_key(*record_range(table["id"]))
                if last is not None:  # row ids allocated before the crash were not saved
                    self.catalog.bump_row_id(table["id"], decode_record_key(last)[1])
        if n:
            log.info("upstream %s: replayed %d binlog event(s) after the last checkpoint", self.data_dir, n)
        return n

    def _save_catalog(self, state: CatalogState) -> None:
        """Save the catalog at every change (a DDL's event is in the binlog already: a crash
        in between is repaired by replaying it)."""
        with self._db_mu, self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('catalog', ?)", (json.dumps(state),))

    def _log_ddl(self, make_event: Callable[[int], binlog_pb2.Event], commit_ts: int | None) -> int:
        """A schema change's commit ts (unless given) and its event into the binlog, in one step
        under the store lock: every event stamped with a later ts (a commit, a resolved ts) comes
        after it in the log, so a replica that applied a resolved ts of R knows every schema
        change committed at or below R. (Commits are ordered by the schema lease too.) The job
        joins the DDL history in the same step, as TiDB's finishing transaction writes it: a
        reader of ``/ddl/history`` that took a TSO after this ts then lists it (``ddl_history``)."""
        with self.store.mu:
            ts = commit_ts if commit_ts is not None else self._ddl_ts()
            event = make_event(ts)
            self.store.append_events([event])
            self._save_ddl_job(event)
        return ts

    def _ddl_ts(self) -> int:
        """A TSO above every commit already logged (under the store lock). An async-commit or 1PC
        commit ts is max_ts + 1, which the TSO may not have handed out yet: the next TSO can be
        that very ts, and a schema change stamped with it would follow a commit at its own ts."""
        ts = self.tso.get_ts()
        while ts <= self.store.max_ts + 1:
            ts = self.tso.get_ts()
        return ts

    def _save_ddl_job(self, event: binlog_pb2.Event) -> None:
        """The schema change as a finished job of TiDB's DDL history (``/ddl/history``)."""
        job = ddl_history_job(event.ddl, self.catalog)
        with self._db_mu, self._db:
            self._db.execute("INSERT OR REPLACE INTO ddl_jobs VALUES (?, ?)", (job["id"], json.dumps(job)))
            self._ddl_jobs = None  # listed again, parsed, on the next read

    def ddl_history(self) -> list[DdlJob]:
        """Every finished DDL job, newest first, as TiDB's status port lists them: every job
        committed at or below any TSO handed out before the call. TiDB reads its history at a
        fresh ts, waiting out a finishing transaction's lock; here a schema change takes its ts
        and saves its job under the store lock, so taking that lock waits out one in flight
        (else capture's DDL frontier, a TSO read before the history, passed a TRUNCATE whose
        job was not listed yet, and resolved ts past it reached the replica before the DDL)."""
        with self.store.mu, self._db_mu:
            if self._ddl_jobs is None:
                self._ddl_jobs = [json.loads(j) for j, in self._db.execute("SELECT job FROM ddl_jobs ORDER BY id DESC")]
            # the jobs themselves are shared, never changed: every reader copies what it keeps
            return list(self._ddl_jobs)

    def _save_table_versions(self, versions: list[tuple[int, TableVersion]]) -> None:
        """The table versions a schema change makes, one row each in cluster.sqlite."""
        with self._db_mu, self._db:
            self._db.executemany("INSERT INTO schema_versions VALUES (?, ?, ?, ?)", [
                (tid, _u64(ts), db, None if info is None else json.dumps(info)) for tid, (ts, db, info) in versions])

    def _save_versions(self, event: binlog_pb2.Event) -> None:
        ddl = event.ddl
        info = json.loads(ddl.table_info)
        rows = [(int(info["id"]), _u64(ddl.commit_ts), ddl.db,
                 None if ddl.type == binlog_pb2.Ddl.DROP_TABLE else json.dumps(info))]
        if ddl.old_table_id:
            rows.append((int(ddl.old_table_id), _u64(ddl.commit_ts), ddl.db, None))
        with self._db_mu, self._db:
            self._db.executemany("INSERT INTO schema_versions VALUES (?, ?, ?, ?)", rows)

    # ---------------------------------------------------------------- background

    def _tick(self) -> None:
        last_checkpoint = time.monotonic()
        while not self._stop.wait(self.resolved_ts_interval):
            try:
                if self.expired_lock_grace_s is not None:
                    self.resolve_expired_locks(int(self.expired_lock_grace_s * 1000))
                self.store.advance_resolved_ts()
                self.gc_worker.tick()
                if self.checkpoint_interval_s and time.monotonic() - last_checkpoint >= self.checkpoint_interval_s:
                    self.checkpoint()  # bounds the log a restart replays
                    last_checkpoint = time.monotonic()
            except Exception:  # keep ticking: a failed tick is logged, the next one retries
                log.exception("resolved_ts tick failed")

    def advance_resolved_ts(self) -> list[binlog_pb2.Event]:
        """Emit resolved_ts for every region now (what the ticker does each interval)."""
        return self.store.advance_resolved_ts()

    def resolve_expired_locks(self, grace_ms: int = 0) -> int:
        """Resolve the locks of transactions whose locks expired ``grace_ms`` ago (TiCDC does
        this for regions whose resolved ts is stuck): the primary decides, expired primaries
        are rolled back. Returns how many transactions it resolved."""
        now = self.tso.get_ts()
        done = 0
        for lock in self.store.expired_locks(now, grace_ms):
            if resolve_txn(self.store, lock.primary, lock.start_ts, now, now).decided:
                done += 1
        return done

    # ---------------------------------------------------------------- UpstreamClient

    def get_ts(self) -> int:
        return self.tso.get_ts()

    def regions(self) -> list[binlog_pb2.Region]:
        with self.store.mu:
            return [r.to_proto() for r in self.store.regions.all()]

    def read_index(self, region_id: int, read_ts: int = 0) -> int:
        return self.store.read_index(region_id, read_ts)

    def read_indexes(self, region_ids: Sequence[int], read_ts: int = 0) -> dict[int, int]:
        return {rid: self.store.read_index(rid, read_ts) for rid in region_ids}

    def check_txn_status(self, primary: bytes, lock_ts: int, caller_start_ts: int, current_ts: int,
                         force_sync_commit: bool = False) -> TxnStatus:
        return self.store.check_txn_status(primary, lock_ts, caller_start_ts, current_ts,
                                           force_sync_commit=force_sync_commit)

    def check_secondary_locks(self, keys: Iterable[bytes], start_ts: int) -> SecondaryLocks:
        return self.store.check_secondary_locks(list(keys), start_ts)

    def resolve_lock(self, start_ts: int, commit_ts: int, keys: Iterable[bytes] | None = None) -> int:
        return self.store.resolve_lock(start_ts, commit_ts, list(keys) if keys else None)

    def gc_safe_point(self) -> int:
        return self.gc.value

    def update_gc_safe_point(self, ts: int) -> int:
        """A GC run at ``ts`` (``gc_worker.py``): resolve the locks at or below it, then advance
        the safe point (never backwards) and drop versions below it; returns the safe point."""
        return self.gc_worker.run(ts).safe_point

    def run_gc(self, safe_point: int | None = None) -> GCRun:
        """A GC run now, at ``safe_point`` or now - gc_life_time."""
        return self.gc_worker.run(safe_point)

    def _save_gc_safe_point(self, value: int) -> None:
        if not self.closed:  # saved at once: it must never move back
            with self._db_mu, self._db:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('gc_safe_point', ?)", (str(value),))

    def region_snapshot(self, region_id: int) -> binlog_pb2.Event:
        return self.store.region_snapshot(region_id)

    def table_info(self, db: str, table: str) -> TableInfoJson:
        return self.catalog.table(db, table)

    def table_id(self, db: str, table: str) -> int:
        """The id of ``db.table`` now (what its record keys start with)."""
        return int(self.catalog.table(db, table)["id"])

    def table_info_by_id(self, table_id: int) -> tuple[str, TableInfoJson]:
        return self.catalog.table_by_id(table_id)

    def list_tables(self) -> list[tuple[str, str]]:
        return self.catalog.list_tables()

    # ---------------------------------------------------------------- TiDB API

    def create_database(self, name: str) -> int:
        return self.catalog.create_database(name)

    def create_table(
        self, qualified: str, columns: Sequence[ColumnInfo | ColumnInfoJson],
        primary_key: Sequence[str] | None = None, clustered: bool = True, row_format: int = 2,
        partition: PartitionSpec | None = None,
    ) -> TableInfoJson:
        """Create ``db.table`` (the database too when missing); returns its table info.
        ``row_format`` 1 writes its rows in TiDB's old datum format (as clusters upgraded from
        TiDB before 4.0 do), 2 in row format v2. ``partition``: PARTITION BY (``Catalog.create_table``)."""
        db, name = split_table_name(qualified)
        self.catalog.create_database(db)
        info = self.catalog.create_table(db, name, columns, primary_key, clustered, row_format, partition)
        for table_id in physical_ids(info):
            self._split_table(table_id)
        return info

    def _split_table(self, table_id: int) -> None:
        """Give the table a region of its own, as TiDB's split-table does at CREATE TABLE:
        split at the start and the end of its record range (no-ops where regions start
        already), so its rows never share a region with another table's."""
        for boundary in record_range(table_id):
            self.store.split_at(boundary)

    def bulk_insert(self, qualified: str, rows: pa.Table, *, txn_rows: int = 10_000, one_pc: bool = True) -> int:
        """Insert the rows of an Arrow table (column names = the table's columns, in any
        order; left-out columns take their DEFAULT) into ``db.table``, checked as TiDB's
        INSERT checks them in strict SQL mode and encoded a column at a time, committed as
        Percolator transactions of ``txn_rows`` rows each (1PC, or two-phase with
        ``one_pc=False``) that reach the binlog like any transaction's. Returns the number of
        rows inserted. A bad value (``InvalidValueError``) or a key given twice or already
        present (``DuplicateKeyError``) is found before the first transaction commits; see
        ``upstream.bulk``."""
        return bulk_insert(self.catalog, self.store, self.tso, qualified, rows, txn_rows=txn_rows, one_pc=one_pc,
                           ttl_ms=self.lock_ttl_ms)

    # Schema changes: each is one DDL event in the binlog, with its commit ts and the table
    # info after it (upstream/ddl.py; docs/schema.md says what each does to a replica).

    def add_column(self, qualified: str, column: ColumnInfo | ColumnInfoJson,
                   default: object = None) -> TableInfoJson:
        return self.catalog.add_column(*split_table_name(qualified), column, default)

    def drop_column(self, qualified: str, column: str) -> TableInfoJson:
        return self.catalog.drop_column(*split_table_name(qualified), column)

    def rename_column(self, qualified: str, column: str, new_name: str) -> TableInfoJson:
        """``ALTER TABLE ... RENAME COLUMN column TO new_name`` (same column id, no rows rewritten)."""
        return self.catalog.rename_column(*split_table_name(qualified), column, new_name)

    def modify_column(self, qualified: str, column: str,
                      new_column: ColumnInfo | ColumnInfoJson) -> TableInfoJson:
        """``ALTER TABLE ... MODIFY COLUMN column <new_column>`` (``make_column(column, "BIGINT")``).
        A widening TiDB does in place (wider integer, longer string, ENUM/SET members appended)
        keeps the column id and rewrites nothing; any other change gives the column a new id
        and rewrites every row with its value converted (TiDB's reorg), committed at the DDL's
        commit ts. A value that does not fit the new type fails the DDL (SchemaError) and
        changes nothing."""
        db, name = split_table_name(qualified)
        with self.catalog.lease.exclusive():
            before, after, in_place = self.catalog.plan_modify_column(db, name, column, new_column)
            if in_place:
                return self.catalog.commit_modify_column(db, name, before, after)
            return self._reorg(db, name, column, before, after)

    def _reorg(self, db: str, name: str, column: str, before: TableInfoJson, after: TableInfoJson) -> TableInfoJson:
        """Rewrite every row of the table with the changed column under its new id, as one
        transaction committed at the DDL's commit ts (its event goes first, so a replica knows
        the new schema before it meets the rows). Runs inside the schema lease: no other
        commit comes between the scan and the commit."""
        old_info, new_info = table_info_of(before), table_info_of(after)
        old_col, new_col = old_info.column(column), new_info.column(column)
        start_ts = self.tso.get_ts()
        resolver = LockResolver(self.store, self.tso)
        pairs = [pair for lo, hi in map(record_range, physical_ids(before))
                 for pair in resolver.retry(lambda: self.store.scan(lo, hi, start_ts), start_ts, timeout_s=60)]
        v1 = self.catalog.row_format(before["id"]) == 1
        muts = []
        for key, value in pairs:
            row = decode_value(before, key, value, old_info)
            row[new_col.name] = convert_value(row[old_col.name], old_col, new_col,
                                              f"MODIFY COLUMN {db}.{name}.{column}, row {key.hex()}")
            encoded = (encode_row_v1_for_table(new_info, {k: v for k, v in row.items() if k != "_tidb_rowid"})
                       if v1 else encode_value(after, row, new_info))
            muts.append(Mutation(binlog_pb2.PUT, key, encoded))
        if not muts:
            return self.catalog.commit_modify_column(db, name, before, after)
        keys = [m.key for m in muts]
        ttl_ms = max(self.lock_ttl_ms, 60_000)  # readers meeting the backfill wait for it
        resolver.retry(lambda: self.store.prewrite(muts, keys[0], start_ts, ttl_ms), start_ts, timeout_s=60)
        with self.store.mu:  # the commit ts, the DDL event, then the rows: nothing stamped later in between
            commit_ts = self.tso.get_ts()
            info = self.catalog.commit_modify_column(db, name, before, after, commit_ts=commit_ts)
            self.store.commit(keys[:1], start_ts, commit_ts)
            if len(keys) > 1:
                self.store.commit(keys[1:], start_ts, commit_ts)
        return info

    # Partition changes (``Catalog.add_partitions`` ...): one DDL event each, the table info
    # after it naming the partitions' ids.

    def add_partitions(self, qualified: str, definitions: Sequence[PartitionDefinitionSpec]) -> TableInfoJson:
        """``ALTER TABLE ADD PARTITION`` (RANGE, LIST): ``[{"name": "p9", "less_than": ["900"]}]``."""
        info = self.catalog.add_partitions(*split_table_name(qualified), definitions)
        self._split_new_partitions(info)
        return info

    def drop_partitions(self, qualified: str, names: Sequence[str]) -> TableInfoJson:
        """``ALTER TABLE DROP PARTITION``: the partitions' rows go with them."""
        return self.catalog.drop_partitions(*split_table_name(qualified), names)

    def truncate_partitions(self, qualified: str, names: Sequence[str]) -> TableInfoJson:
        """``ALTER TABLE TRUNCATE PARTITION``: each named partition gets a new, empty id."""
        info = self.catalog.truncate_partitions(*split_table_name(qualified), names)
        self._split_new_partitions(info)
        return info

    def exchange_partition(self, qualified: str, partition: str, other: str) -> TableInfoJson:
        """``ALTER TABLE EXCHANGE PARTITION partition WITH TABLE other`` (WITH VALIDATION: every
        row of ``other`` must belong in the partition)."""
        def rows_fit(pt: TableInfoJson, nt: TableInfoJson, pid: int) -> None:
            from pyspark_theflash.upstream.rows import TableRows

            rows = TableRows(qualified, pt)
            for row in scan_table(self.store, self.tso, nt, self.tso.get_ts()):
                if rows.physical_id(row) != pid:
                    raise UpstreamError(f"Found a row that does not match the partition {partition} in {other}: {row}")

        return self.catalog.exchange_partition(*split_table_name(qualified), partition, *split_table_name(other),
                                               rows_fit)

    def reorganize_partitions(self, qualified: str, names: Sequence[str],
                              definitions: Sequence[PartitionDefinitionSpec]) -> TableInfoJson:
        """``ALTER TABLE REORGANIZE PARTITION names INTO (definitions)``: new partition ids; the
        old partitions' rows are copied into them, committed at the DDL's commit ts (the event
        goes first), as TiDB's reorg backfills before the new partitions become public."""
        from pyspark_theflash.upstream.rows import TableRows

        db, name = split_table_name(qualified)
        with self.catalog.lease.exclusive():
            before = self.catalog.table(db, name)
            part = Partitioning.from_json(before.get("partition") or {"definitions": []})
            old_ids = [part.by_name(n).id for n in names]
            definitions = [{**d, "id": self.catalog.alloc_id()} for d in definitions]
            for d in definitions:
                self._split_table(int(d["id"]))
            after = copy.deepcopy(before)
            after_partition = after.get("partition")
            if after_partition is None:
                raise SchemaError(f"{qualified} is not partitioned")
            kept = [d for d in after_partition["definitions"] if d["id"] not in old_ids]
            after_partition["definitions"] = kept + [definition_json(d, int(d["id"])) for d in definitions]
            rows = TableRows(qualified, after)  # routes into the new partitions (order does not matter)
            start_ts = self.tso.get_ts()
            resolver = LockResolver(self.store, self.tso)
            pairs = [pair for lo, hi in map(record_range, old_ids)
                     for pair in resolver.retry(lambda: self.store.scan(lo, hi, start_ts), start_ts, timeout_s=60)]
            muts = []
            for key, value in pairs:
                row = decode_value(before, key, value)
                handle = rows.handle(row) if rows.kind != "rowid" else decode_record_key(key)[1]
                muts.append(Mutation(binlog_pb2.PUT, rows.key(handle, 0, rows.physical_id(row)), value))
            keys = [m.key for m in muts]
            if muts:
                resolver.retry(lambda: self.store.prewrite(muts, keys[0], start_ts, max(self.lock_ttl_ms, 60_000)),
                               start_ts, timeout_s=60)
            with self.store.mu:  # the commit ts, the DDL event, then the rows: nothing stamped later in between
                commit_ts = self.tso.get_ts()
                info = self.catalog.reorganize_partitions(db, name, names, definitions, commit_ts=commit_ts)
                if keys:
                    self.store.commit(keys[:1], start_ts, commit_ts)
                if len(keys) > 1:
                    self.store.commit(keys[1:], start_ts, commit_ts)
            return info

    def _split_new_partitions(self, info: TableInfoJson) -> None:
        for table_id in physical_ids(info):
            self._split_table(table_id)

    def rename_table(self, qualified: str, new_qualified: str) -> TableInfoJson:
        """``RENAME TABLE``: same table id and rows under a new name."""
        return self.catalog.rename_table(*split_table_name(qualified), *split_table_name(new_qualified))

    def drop_table(self, qualified: str) -> TableInfoJson:
        """``DROP TABLE``: the table id is retired (a new table of that name gets a new id)."""
        return self.catalog.drop_table(*split_table_name(qualified))

    def truncate_table(self, qualified: str) -> TableInfoJson:
        """``TRUNCATE TABLE``: the name moves to a new, empty table id (with a region of its
        own, as at CREATE TABLE); the old id is retired."""
        info = self.catalog.truncate_table(*split_table_name(qualified))
        self._split_table(info["id"])
        return info

    def txn(self, one_pc: bool = True, after_prewrite: Callable[[Txn], None] | None = None,
            ttl_ms: int | None = None, async_commit: bool = False,
            after_prewrite_batch: Callable[[Txn, int], None] | None = None) -> Txn:
        """A new optimistic transaction (``with cluster.txn() as t: ...``); ``async_commit``
        as TiDB >= 5.0 commits (the workloads' default), else 2PC; 1PC for one region."""
        return Txn(self.catalog, self.store, self.tso, one_pc=one_pc,
                   ttl_ms=self.lock_ttl_ms if ttl_ms is None else ttl_ms, after_prewrite=after_prewrite,
                   async_commit=async_commit, after_prewrite_batch=after_prewrite_batch)

    def run_txn(self, body: Callable[[Txn], R], retries: int = 20, one_pc: bool = True,
                async_commit: bool = False) -> R:
        """Run ``body(txn)`` and commit, retrying in a new transaction on conflicts."""
        return run_txn(lambda: self.txn(one_pc=one_pc, async_commit=async_commit), body, retries)

    def scan_table(self, qualified: str, ts: int | None = None) -> list[dict[str, object]]:
        """Every row of ``db.table`` at ``ts`` (default: now), decoded with the schema in force
        at ts (the table that had this name then), as TiDB's stale read does; locks are resolved."""
        ts = ts or self.tso.get_ts()
        return scan_table(self.store, self.tso, self.catalog.table_at(*split_table_name(qualified), ts), ts)

    def scan_records(self, qualified: str, ts: int | None = None
                     ) -> tuple[int, TableInfoJson, list[tuple[bytes, bytes]]]:
        """``(ts, table info at ts, [(record key, row value)])`` of ``db.table`` at ``ts``
        (default: now): what the Upstream service's ScanTable streams."""
        ts = ts or self.tso.get_ts()
        table = self.catalog.table_at(*split_table_name(qualified), ts)
        return ts, table, scan_records(self.store, self.tso, table, ts)

    def read_table(self, qualified: str, ts: int | None = None) -> TableScan:
        """``scan_table`` with the ts read at and the table info the rows were decoded with."""
        at, table, pairs = self.scan_records(qualified, ts)
        return TableScan(at, split_table_name(qualified)[0], table, decode_records(table, pairs))

    def table_info_at(self, qualified: str, ts: int) -> TableInfoJson:
        """The table info of ``db.table`` in force at ``ts``."""
        return self.catalog.table_at(*split_table_name(qualified), ts)

    def get_row(self, qualified: str, handle: object, ts: int | None = None) -> dict[str, object] | None:
        ts = ts or self.tso.get_ts()
        return get_row(self.store, self.tso, self.catalog.table_at(*split_table_name(qualified), ts), handle, ts)

    # ---------------------------------------------------------------- regions

    def split_region(self, region_id: int, raw_key: bytes) -> tuple[binlog_pb2.Region, binlog_pb2.Region]:
        left, right = self.store.split_region(region_id, raw_key)
        return left.to_proto(), right.to_proto()

    def split_at(self, raw_key: bytes) -> bool:
        """Split the region holding ``raw_key`` at it; False when a region already starts there."""
        return self.store.split_at(raw_key) is not None

    def merge_regions(self, source_id: int, target_id: int) -> binlog_pb2.Region:
        return self.store.merge_regions(source_id, target_id).to_proto()

    # ---------------------------------------------------------------- serving

    def served_topology(self) -> Topology:
        """The stores' topology of a served cluster (``serve`` sets it): its PD and change feed ask it."""
        if self.topology is None:
            raise UpstreamError("the mini cluster serves no stores yet: serve() lays out its topology")
        return self.topology

    def serve(self, host: str = "127.0.0.1", port: int = 0, status_port: int = 0,
              binlog_port: int | None = 0, pd_port: int = 0, stores: int = 1, pd_members: int = 1) -> dict[str, str]:
        """Start the HTTP status port (TiDB's), PD and ``stores`` TiKV stores on the wire
        (``pdpb.PD``; ``tikvpb.Tikv`` and ``cdcpb.ChangeData`` each), the private Upstream
        gRPC service and (with a binlog directory and ``binlog_port`` not None) the binlog
        gRPC service; ``pd_members`` PD members (the first leads: ``pd_server.transfer_leader()``).
        Returns their addresses: ``pd`` (``pd://host:port[,host:port]``), ``status``
        (``host:port``), ``upstream`` and ``binlog`` (``grpc://``)."""
        from pyspark_theflash.upstream.change_feed import ChangeFeed
        from pyspark_theflash.upstream.pd_service import PDServer
        from pyspark_theflash.upstream.service import serve_upstream
        from pyspark_theflash.upstream.status_server import StatusServer
        from pyspark_theflash.upstream.tikv_stores import StoreServer

        status = StatusServer(self.catalog, host, status_port, ddl_history=self.ddl_history)
        self._stops.append(status.close)
        self.status_address = status.address
        if self.binlog_dir is not None and binlog_port is not None:
            from pyspark_theflash.binlog import serve_binlog

            binlog_server = serve_binlog(self.binlog_dir, host, binlog_port)
            self._stops.append(binlog_server.stop)
            self.binlog_address = binlog_server.url
        self.topology = Topology(self, stores)
        self.change_feed = ChangeFeed(self)
        self._stops.append(self.change_feed.close)
        self.store_servers = [StoreServer(self, self.change_feed, self.topology, sid, host)
                              for sid in self.topology.store_ids]
        self._stops.extend(s.close for s in self.store_servers)
        pd = PDServer(self, host, pd_port, members=pd_members)
        self.pd_server = pd
        self._stops.append(pd.close)
        self.pd_address = f"pd://{pd.address}"
        upstream = serve_upstream(self, host, port)
        self._stops.append(upstream.close)
        self.upstream_address = f"grpc://{upstream.address}"
        return {"pd": self.pd_address, "status": self.status_address, "upstream": self.upstream_address,
                "binlog": self.binlog_address}

    # ---------------------------------------------------------------- persistence

    def checkpoint(self) -> CheckpointResult:
        """Save what changed since the last checkpoint (data records), and the regions, GC
        safe point, catalog and binlog position, to cluster.sqlite in one SQLite transaction.
        The store lock is held only to take the changes and the region map (constant time
        and proportional to the regions); the records are written after it is released."""
        started = time.monotonic()
        with self._checkpoint_mu:
            # The schema lease first (a DDL holds it, then the catalog, then the store): no DDL
            # between the catalog and the data taken here.
            with self.catalog.lease.exclusive(), self.store.mu:
                locked = time.monotonic()
                position = self._writer.head if self._writer is not None else None
                changes = self.store.take_changes()
                regions = [
                    {"id": r.id, "start": r.start.hex(), "end": r.end.hex(), "version": r.version,
                     "conf_version": r.conf_version, "index": r.index, "resolved_ts": r.resolved_ts}
                    for r in self.store.regions.all()
                ]
                next_region_id = self.store.regions.next_id
                catalog = self.catalog.state()
                gc = self.gc.value
                locked_s = time.monotonic() - locked
            try:
                with self._db_mu, self._db:
                    _save_changes(self._db, changes)
                    self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                        ("regions", json.dumps(regions)),
                        ("next_region_id", json.dumps(next_region_id)),
                        ("catalog", json.dumps(catalog)),
                        ("gc_safe_point", str(gc)),
                    ])
                    if position is not None and self.binlog_dir is not None:
                        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                            ("binlog_dir", str(self.binlog_dir.resolve())),
                            ("binlog_position", json.dumps(list(position))),
                        ])
            except BaseException:
                self.store.restore_changes(changes)  # the next checkpoint saves them
                raise
        result = CheckpointResult(changes.records, locked_s, time.monotonic() - started)
        if changes.records:
            log.info("upstream %s: checkpoint saved %d changed record(s) in %.2fs (store lock %.3fs)",
                     self.data_dir, result.records, result.seconds, result.locked_s)
        return result

    def close(self) -> None:
        """Stop the ticker and servers, checkpoint, close the binlog. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self.gc_worker.join()
        for stop in reversed(self._stops):
            stop()
        self.checkpoint()
        self._db.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> "MiniCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _save_changes(db: sqlite3.Connection, changes: StoreChanges) -> None:
    """Apply changed records to the checkpoint tables (inside the caller's transaction):
    bulk-inserted write records first, then the per-record changes (newer than them)."""
    for keys, commit_ts, writes in changes.new_writes:
        db.executemany("INSERT OR REPLACE INTO cf_write VALUES (?, ?, ?)", zip(keys, repeat(_u64(commit_ts)), writes))
    db.executemany("DELETE FROM cf_write WHERE key = ? AND commit_ts = ?",
                   ((k, _u64(ts)) for (k, ts), w in changes.writes.items() if w is None))
    db.executemany("INSERT OR REPLACE INTO cf_write VALUES (?, ?, ?)",
                   ((k, _u64(ts), w) for (k, ts), w in changes.writes.items() if w is not None))
    db.executemany("DELETE FROM cf_default WHERE key = ? AND start_ts = ?",
                   ((k, _u64(ts)) for (k, ts), v in changes.defaults.items() if v is None))
    db.executemany("INSERT OR REPLACE INTO cf_default VALUES (?, ?, ?)",
                   ((k, _u64(ts), v) for (k, ts), v in changes.defaults.items() if v is not None))
    db.executemany("DELETE FROM cf_lock WHERE key = ?", ((k,) for k, lk in changes.locks.items() if lk is None))
    db.executemany("INSERT OR REPLACE INTO cf_lock VALUES (?, ?, ?)", (
        (k, lk.to_bytes(), lk.value if lk.op == PUT and len(lk.value) > SHORT_VALUE_MAX_LEN else b"")
        for k, lk in changes.locks.items() if lk is not None))


class SavedRegion(TypedDict):
    """A region as cluster.sqlite's ``regions`` meta keeps it (keys in hex)."""

    id: int
    start: str
    end: str
    version: int
    conf_version: int
    index: int
    resolved_ts: int


def _region_from_saved(d: SavedRegion) -> Region:
    return Region(
        id=d["id"], start=bytes.fromhex(d["start"]), end=bytes.fromhex(d["end"]), version=d["version"],
        conf_version=d["conf_version"], index=d["index"], resolved_ts=d["resolved_ts"],
    )

