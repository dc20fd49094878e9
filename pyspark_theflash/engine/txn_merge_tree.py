"""The native engine: the TxnMergeTree ``store.Store`` behind the ``Engine`` interface.

An adapter, no more: writes go to ``Store.write`` / ``Store.flush``, upkeep to
``Store.compact`` / ``Store.gc``, reads to the read sessions of ``scan.session`` (the
planner: snapshot ts, lease, learner read, lock resolution). One upstream client and one latch
are kept for every session of the engine.
"""
from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import pyarrow as pa

from pyspark_theflash.engine.interface import Engine, EngineReadOnlyError
from pyspark_theflash.engine.native_read import read_native_partition

if TYPE_CHECKING:
    from pyspark_theflash.scan.partitions import ScanPartition
    from pyspark_theflash.store.parts import ReadStats


class TxnMergeTreeEngine(Engine):
    kind = "txn_merge_tree"

    def __init__(self, store: Any, *, upstream: str | None = None, latch: Any = None) -> None:
        """``store``: an open ``store.Store`` (read-only or the writer's). ``upstream``: the
        upstream address sessions use (default: the one the writer recorded in the store)."""
        self._store = store
        self._upstream_address = upstream
        # one client per upstream address, kept for the engine's life: sessions on other
        # threads may be mid-call on any of them, so none is closed before close()
        self._upstreams: dict[str, Any] = {}
        self._latch = latch
        self._mu = threading.Lock()

    @classmethod
    def open(cls, path: str, *, readonly: bool = True, upstream: str | None = None) -> "TxnMergeTreeEngine":
        from pyspark_theflash.store import Store

        return cls(Store.open(path, readonly=readonly), upstream=upstream)

    @property
    def root(self) -> str:
        return str(self._store.root)

    @property
    def readonly(self) -> bool:
        return bool(self._store.readonly)

    @property
    def store(self) -> Any:
        return self._store

    # -- write ---------------------------------------------------------------------------------
    def apply_batch(self, events: Sequence[Any], position: Any) -> Any:
        self._writable("apply a batch")
        return self._store.write(list(events), position)

    def flush(self, timeout_s: float = 30.0) -> dict[str, Any]:
        if not self.readonly:
            result = self._store.flush()
            return {"flushed_by": "engine", "version": result.version, "parts": result.parts, "rows": result.rows,
                    "bytes": result.bytes, "regions": result.regions}
        # Read-only beside a writer: ask it, as a learner read does, and wait for its answer.
        with self._store.snapshot() as view:
            regions = [int(r.id) for r in view.regions()]
        latch = self.latch()
        applied = latch.wait_flush(latch.request_flush(regions), timeout_s)
        return {"flushed_by": "writer", "regions": len(applied),
                "applied_index": {str(k): v for k, v in sorted(applied.items())}}

    # -- read ----------------------------------------------------------------------------------
    def tables(self) -> list[Any]:
        with self._store.snapshot() as view:
            return list(view.tables())

    def open_read_session(self, table: str, *, snapshot_ts: int | None = None, as_of: str | None = None,
                          columns: Sequence[str] | None = None, filter: Any = None, isolation: str | None = None,
                          options: dict[str, Any] | None = None) -> Any:
        from pyspark_theflash.scan.session import open_read_session

        opts = dict(options or {})
        if self._upstream_address and "upstream" not in opts:
            opts["upstream"] = self._upstream_address
        return open_read_session(self.root, table, snapshot_ts=snapshot_ts, as_of=as_of, columns=columns,
                                 filter=filter, isolation=isolation, options=opts,
                                 upstream=self._upstream_client(opts.get("upstream")), latch=self.latch(),
                                 keep_alive=False)

    def query_snapshot(self, tables: Sequence[str], options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The one snapshot ts of a query over ``tables`` (``scan.planner.query_snapshot_ts``):
        fresh, the store's resolved ts (no upstream call), or bounded by ``max_staleness``."""
        from pyspark_theflash.scan.planner import query_snapshot_ts

        opts = {k: str(v) for k, v in dict(options or {}).items()}
        if self._upstream_address and "upstream" not in opts:
            opts["upstream"] = self._upstream_address
        resolved = str(opts.get("snapshot", "")).strip().lower() == "resolved"
        upstream = None if resolved else self._upstream_client(opts.get("upstream"))
        return query_snapshot_ts(self.root, list(tables), opts, upstream=upstream, latch=self.latch())

    def read_partition(self, p: ScanPartition, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
        return read_native_partition(p, stats)

    def read_stream(self, session: Any, n: int, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
        from pyspark_theflash.scan.session import read_stream

        return read_stream(session, n, functools.partial(self.read_partition, stats=stats))

    # -- upkeep --------------------------------------------------------------------------------
    def compact(self, table: str | None = None, force: bool = False) -> Any:
        self._writable("compact")
        return self._store.compact(table, force=force)

    def gc(self, safe_point: int) -> Any:
        self._writable("collect garbage")
        return self._store.gc(safe_point)

    def status(self) -> dict[str, Any]:
        return {"engine": self.kind, "readonly": self.readonly, **self._store.status()}

    def close(self) -> None:
        with self._mu:
            upstreams, self._upstreams = list(self._upstreams.values()), {}
            latch, self._latch = self._latch, None
        for thing in (*upstreams, latch):
            if thing is not None and hasattr(thing, "close"):
                thing.close()
        self._store.close()

    # -- internals -----------------------------------------------------------------------------
    def latch(self) -> Any:
        with self._mu:
            if self._latch is None:
                from pyspark_theflash.latch import connect

                self._latch = connect(self.root)
            return self._latch

    def _upstream_client(self, address: str | None) -> Any:
        """One upstream client for every session (gRPC channels are thread-safe); None when no
        address is known yet (the planner then says so)."""
        if not address:
            with self._store.snapshot() as view:
                recorded = view.upstream()
            address = str(recorded) if recorded else None
        if not address:
            return None
        with self._mu:
            client = self._upstreams.get(address)
            if client is None:
                from pyspark_theflash.upstream.client import connect

                client = self._upstreams[address] = connect(address)
            return client

    def _writable(self, what: str) -> None:
        if self.readonly:
            raise EngineReadOnlyError(f"store {self.root} is open read-only here: cannot {what} (the writer does)")
