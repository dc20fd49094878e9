"""The native engine: the TxnMergeTree ``store.Store`` behind the ``Engine`` interface.

An adapter, no more: writes go to ``Store.write`` / ``Store.flush``, upkeep to
``Store.compact`` / ``Store.gc``, a planned partition to ``engine.native_read``. Read sessions
go to the ``ReadSessions`` the engine was opened with (the planner above the engines:
``scan.engine_sessions.PlannedSessions``), which keeps one upstream client and one latch for
every session of the engine.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import pyarrow as pa

from pyspark_theflash.engine.interface import (
    Engine,
    EngineReadOnlyError,
    EngineReadSession,
    NoReadSessionsError,
    QuerySnapshot,
    ReadSessions,
    SqlResult,
)
from pyspark_theflash.engine.native_read import read_native_partition
from pyspark_theflash.engine.partition import LeaseRenewal, ScanPartition

if TYPE_CHECKING:
    from pyspark_theflash.proto import binlog_pb2
    from pyspark_theflash.schema.table_info import TableInfo
    from pyspark_theflash.store import Store
    from pyspark_theflash.store.compaction import CompactionResult
    from pyspark_theflash.store.parts import ReadStats
    from pyspark_theflash.store.store import WriteResult


class TxnMergeTreeEngine(Engine):
    kind = "txn_merge_tree"
    runs_sql = True            # DuckDB over the read streams (engine/native_sql.py)
    sql_reads_streams = True

    def __init__(self, store: Store, *, sessions: ReadSessions | None = None) -> None:
        """``store``: an open ``store.Store`` (read-only or the writer's). ``sessions``: how its
        read sessions are opened (none: the engine only writes, or reads planned partitions)."""
        self._store = store
        self._sessions = sessions

    @classmethod
    def open(cls, path: str, *, readonly: bool = True, sessions: ReadSessions | None = None) -> "TxnMergeTreeEngine":
        from pyspark_theflash.store import Store

        return cls(Store.open(path, readonly=readonly), sessions=sessions)

    @property
    def root(self) -> str:
        return str(self._store.root)

    @property
    def readonly(self) -> bool:
        return bool(self._store.readonly)

    @property
    def store(self) -> Store:
        """The ``store.Store`` this engine adapts (``Engine.store``)."""
        return self._store

    # -- write ---------------------------------------------------------------------------------
    def apply_batch(self, events: Sequence[binlog_pb2.Event],
                    position: binlog_pb2.Position | tuple[int, int] | None) -> WriteResult:
        self._writable("apply a batch")
        return self._store.write(events, position)  # an EventBatch as it is: the store reads its arrays

    def flush(self, timeout_s: float = 30.0) -> dict[str, object]:
        if not self.readonly:
            result = self._store.flush()
            return {"flushed_by": "engine", "version": result.version, "parts": result.parts, "rows": result.rows,
                    "bytes": result.bytes, "regions": result.regions}
        # Read-only beside a writer: ask it, as a learner read does, and wait for its answer.
        with self._store.snapshot() as view:
            regions = [int(r.id) for r in view.regions()]
        applied = self._read_sessions("ask its writer to flush").writer_flush(self, regions, timeout_s)
        return {"flushed_by": "writer", "regions": len(applied),
                "applied_index": {str(k): v for k, v in sorted(applied.items())}}

    # -- read ----------------------------------------------------------------------------------
    def tables(self) -> list[TableInfo]:
        with self._store.snapshot() as view:
            return list(view.tables())

    def open_read_session(self, table: str, *, snapshot_ts: int | None = None, as_of: str | None = None,
                          columns: Sequence[str] | None = None, filter: object = None, isolation: str | None = None,
                          options: Mapping[str, object] | None = None) -> EngineReadSession:
        return self._read_sessions("open a read session").open_read_session(
            self, table, snapshot_ts=snapshot_ts, as_of=as_of, columns=columns, filter=filter, isolation=isolation,
            options=options)

    def query_snapshot(self, tables: Sequence[str], options: Mapping[str, object] | None = None,
                       read: Sequence[tuple[str, int]] = ()) -> QuerySnapshot:
        return self._read_sessions("choose a query's snapshot").query_snapshot(self, tables, options, read)

    def read_partition(self, p: ScanPartition, lease: LeaseRenewal,
                       stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
        return read_native_partition(p, lease, stats, self._store)

    def read_stream(self, session: EngineReadSession, n: int, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
        return self._read_sessions("read a stream").read_stream(self, session, n, stats)

    def run_sql(self, query: str, snapshot_ts: int | None = None,
                options: Mapping[str, object] | None = None) -> SqlResult:
        """``query`` computed by DuckDB over this store's read streams at one snapshot ts
        (``engine.native_sql``)."""
        from pyspark_theflash.engine.native_sql import run_sql

        return run_sql(self, query, snapshot_ts, options)

    def recorded_upstream(self) -> str | None:
        with self._store.snapshot() as view:
            recorded = view.upstream()
        return str(recorded) if recorded else None

    # -- upkeep --------------------------------------------------------------------------------
    def compact(self, table: str | int | None = None, force: bool = False) -> CompactionResult:
        self._writable("compact")
        return self._store.compact(table, force=force)

    def gc(self, safe_point: int) -> CompactionResult:
        self._writable("collect garbage")
        return self._store.gc(safe_point)

    def status(self) -> dict[str, object]:
        return {"engine": self.kind, "readonly": self.readonly, **self._store.status()}

    def close(self) -> None:
        sessions, self._sessions = self._sessions, None
        if sessions is not None:
            sessions.close()
        self._store.close()

    # -- internals -----------------------------------------------------------------------------
    def _read_sessions(self, what: str) -> ReadSessions:
        if self._sessions is None:
            raise NoReadSessionsError(f"the engine of store {self.root} was opened without read sessions: cannot "
                                      f"{what} (open it with sessions=scan.engine_sessions.PlannedSessions())")
        return self._sessions

    def _writable(self, what: str) -> None:
        if self.readonly:
            raise EngineReadOnlyError(f"store {self.root} is open read-only here: cannot {what} (the writer does)")
