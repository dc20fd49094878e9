"""The ClickHouse engine: committed rows in ClickHouse MergeTree tables (chdb, in-process).

What is shared with the native engine, and what is not:

* Apply is the store's (``store.Store``): region caches, lock handling, prewrite–commit
  matching, decoding, region apply state, schemas, open locks and the binlog position in the
  manifest. The engine attaches itself as the store's row sink (``store.row_sink``): every flush
  hands it its committed rows (hidden columns included) and range tombstones inside the flush's
  manifest edit, so ClickHouse holds every flushed row before the manifest says the flush
  happened. The sink keeps the rows alone (``keeps_rows``): the store writes no part files,
  and the manifest lists records of the rows' statistics, which read planning estimates and
  prunes with and compaction merges (docs/engines.md).
* Read sessions are the planner's (``ReadSessions``: one ts, lease, learner read, lock
  resolution); only reading a planned partition is this engine's: a snapshot query per handle
  range (``snapshot_read``).
* GC moves the store's safe point (never past a live lease) and then deletes, in ClickHouse,
  the versions no read at or above it can see: per handle, every version at or below the safe
  point but the newest, and that one too when it is a delete mark. Never ``OPTIMIZE … FINAL``.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import pyarrow as pa

from pyspark_theflash.engine.clickhouse.calculator import SqlResult, run_sql
from pyspark_theflash.engine.clickhouse.directory import ClickHouseDirectory
from pyspark_theflash.engine.clickhouse.snapshot_read import read_snapshot
from pyspark_theflash.engine.clickhouse.stream_read import read_clickhouse_partition
from pyspark_theflash.engine.clickhouse.stream_read import advertise_service, withdraw_service
from pyspark_theflash.engine.clickhouse.tables import ClickHouseTables, table_name
from pyspark_theflash.engine.interface import ReadSessions
from pyspark_theflash.engine.partition import LeaseRenewal, ScanPartition
from pyspark_theflash.engine.txn_merge_tree import TxnMergeTreeEngine
from pyspark_theflash.schema.partitioning import partitioning_of, physical_tables_of
from pyspark_theflash.store.txn_merge_tree import COMMIT_TS, DELMARK, ROWID

if TYPE_CHECKING:
    from pyspark_theflash.store.keyspace import Handle
    from pyspark_theflash.store import Store
    from pyspark_theflash.store.predicate import Expr
    from pyspark_theflash.store.compaction import CompactionResult
    from pyspark_theflash.store.parts import ReadStats


class ClickHouseEngine(TxnMergeTreeEngine):
    kind = "clickhouse"
    runs_sql = True

    def __init__(self, store: Store, *, sessions: ReadSessions | None = None) -> None:
        super().__init__(store, sessions=sessions)
        self.directory = ClickHouseDirectory.acquire(store.root)
        self.tables_ch = ClickHouseTables(self.directory, store.histories)
        if not store.readonly:
            store.row_sink = self.tables_ch
        self._closed = False

    @classmethod
    def open(cls, path: str, *, readonly: bool = True, sessions: ReadSessions | None = None) -> "ClickHouseEngine":
        from pyspark_theflash.store import Store

        store = Store.open(path, readonly=readonly)
        try:
            return cls(store, sessions=sessions)
        except BaseException:
            store.close()
            raise

    # -- read ----------------------------------------------------------------------------------
    def read_partition(self, p: ScanPartition, lease: LeaseRenewal,
                       stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
        """A planned partition's rows at its ts, through this engine's ClickHouse session.
        ``stats`` stays as it is: ClickHouse merges a part's versions itself, so neither a
        deletion vector nor the fresh tail is seen here."""
        return read_clickhouse_partition(p, lease, self.directory)

    def scan(self, table: str, ts: int, handle_range: tuple[Handle | None, Handle | None] | None = None, region_id: int | None = None,
             columns: Sequence[str] | None = None, predicate: Expr | None = None, hidden: Sequence[str] = (),
             schema: str = "current") -> Iterator[pa.RecordBatch]:
        """``Store.scan`` with the rows from ClickHouse: the table's rows visible at ``ts``
        (flushed state), under a lease held while the iterator runs."""
        import contextlib
        import dataclasses
        import os

        from pyspark_theflash.store.store import table_for_read
        from pyspark_theflash.store.views import intersect

        store = self._store
        lease = store.leases.acquire(ts, store.options.scan_lease_ttl_s, holder=f"scan pid {os.getpid()}")
        try:
            reads = []
            with store.snapshot() as view:
                info = table_for_read(view, table, ts, schema)
                # a partitioned table: each partition's rows are in the ClickHouse table of its id
                for physical in ([info] if partitioning_of(info) is None else physical_tables_of(info)):
                    whole: tuple[Handle | None, Handle | None] = handle_range or (None, None)
                    rng: tuple[Handle | None, Handle | None] | None = whole
                    if region_id is not None:
                        region = view.region(region_id)
                        if region is None:
                            return
                        rng = intersect(whole, view.region_handle_range(region, physical.id))
                    if rng is not None:
                        reads.append((dataclasses.replace(info, id=physical.id), rng))
            for physical_info, rng in reads:
                yield from read_snapshot(self.directory, physical_info, ts, rng, columns, predicate, hidden,
                                         store.options.read_batch_rows, self.tables_ch.has_table(physical_info.id))
        finally:
            with contextlib.suppress(Exception):
                store.leases.release(lease.id)

    # -- upkeep --------------------------------------------------------------------------------
    def gc(self, safe_point: int) -> CompactionResult:
        self._writable("collect garbage")
        return self._store.gc(safe_point, collect=self.collect_versions)

    def collect_versions(self, safe_point: int) -> int:
        """Delete, in every ClickHouse table, the versions no read at ts >= ``safe_point`` sees:
        at or below it, all but each handle's newest, and that one too when it is a delete.
        Returns the tables touched."""
        touched = 0
        for tid in self.tables_ch.table_ids():
            t = table_name(tid)
            sp = int(safe_point)
            stale = self.directory.scalar(
                f"SELECT count() FROM {t} WHERE {COMMIT_TS} <= {sp}") or 0
            if not stale:
                continue
            self.directory.execute(
                f"DELETE FROM {t} WHERE {COMMIT_TS} <= {sp} AND ({ROWID}, {COMMIT_TS}) NOT IN ("
                f"SELECT {ROWID}, max({COMMIT_TS}) FROM {t} WHERE {COMMIT_TS} <= {sp} GROUP BY {ROWID})")
            # the newest version at or below the safe point, when a delete, hides nothing a
            # read at ts >= safe point would otherwise see: it goes too
            self.directory.execute(f"DELETE FROM {t} WHERE {COMMIT_TS} <= {sp} AND {DELMARK}")
            touched += 1
        return touched

    def status(self) -> dict[str, object]:
        out = super().status()
        out["engine"] = self.kind
        t0 = time.monotonic()
        parts = self.directory.arrow(
            "SELECT table, count() AS parts, sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts "
            "WHERE database = 'flash' AND active GROUP BY table ORDER BY table")
        out["clickhouse"] = {
            "directory": str(self.directory.path), "session_opened_in_s": round(self.directory.opened_in_s, 3),
            "tables": parts.to_pylist(), "flushes_written": self.tables_ch.flushes_written,
            "rows_written": self.tables_ch.rows_written, "status_query_s": round(time.monotonic() - t0, 4)}
        return out

    def run_sql(self, query: str, snapshot_ts: int | None = None,
                options: Mapping[str, object] | None = None) -> SqlResult:
        """ClickHouse SQL over the store's tables at one snapshot ts (``calculator.run_sql``)."""
        return run_sql(self, query, snapshot_ts, options)

    def advertise_service(self, http_url: str) -> None:
        """This process owns the store's ClickHouse directory: readers elsewhere come here."""
        advertise_service(self.root, http_url)

    def withdraw_service(self) -> None:
        withdraw_service(self.root)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if getattr(self._store, "row_sink", None) is self.tables_ch:
            try:
                super().close()
            finally:
                self._store.row_sink = None
                self.directory.release()
            return
        try:
            super().close()
        finally:
            self.directory.release()
