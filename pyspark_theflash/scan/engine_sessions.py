"""Read sessions of an open engine: the planner's side of ``engine.interface.ReadSessions``.

Whoever opens an engine for reading (the service, ``theflash sql``) hands it a
:class:`PlannedSessions`; the engine passes itself to each call. Sessions are ``scan.session``'s
(one snapshot ts, a lease, learner read, lock resolution) and their streams are read by the
engine's ``read_partition`` with a ``LeaseKeeper`` renewing the session's lease. One upstream
client per address and one latch are kept for every session of the engine, and closed with it.

Sessions are planned with the engine's own open store (``Engine.store``), not a store opened
again per request: the service's request threads share it. That is safe for a read-only store,
the service's: a plan calls ``Store.snapshot()`` (a SQLite connection of its own per view; the
``RegionMemo`` its views share the 10,000-region columns through takes a lock) and reads
``root`` and ``readonly``, nothing else. A writer's store is not read through (its
``snapshot()`` drains the writer's pipelined flush): ``scan.context.opened_store`` then opens
its directory read-only for the call, as every plan did before.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import pyarrow as pa

from pyspark_theflash.engine.interface import Engine, EngineReadSession, QuerySnapshot
from pyspark_theflash.engine.partition import ScanPartition
from pyspark_theflash.latch import Latch
from pyspark_theflash.latch import connect as connect_latch
from pyspark_theflash.scan.lease import LeaseKeeper
from pyspark_theflash.scan.planner import query_snapshot_ts
from pyspark_theflash.scan.session import ReadSession, open_read_session, planned_session, read_stream
from pyspark_theflash.store.parts import ReadStats

if TYPE_CHECKING:
    from pyspark_theflash.upstream_client.client import UpstreamConnection


class PlannedSessions:
    """``ReadSessions`` for one engine. ``upstream``: the upstream address sessions use
    (default: the one the writer recorded in the store); ``latch``: the store's latch (default:
    connected to the engine's store on first use)."""

    def __init__(self, *, upstream: str | None = None, latch: Latch | None = None) -> None:
        self._upstream_address = upstream
        # one client per upstream address, kept for the engine's life: sessions on other
        # threads may be mid-call on any of them, so none is closed before close()
        self._upstreams: dict[str, UpstreamConnection] = {}
        self._latch = latch
        self._mu = threading.Lock()

    def open_read_session(self, engine: Engine, table: str, *, snapshot_ts: int | None, as_of: str | None,
                          columns: Sequence[str] | None, filter: object, isolation: str | None,
                          options: Mapping[str, object] | None) -> ReadSession:
        opts = dict(options or {})
        if self._upstream_address and "upstream" not in opts:
            opts["upstream"] = self._upstream_address
        upstream = opts.get("upstream")
        return open_read_session(engine.store, table, snapshot_ts=snapshot_ts, as_of=as_of, columns=columns,
                                 filter=filter, isolation=isolation, options=opts,
                                 upstream=self._upstream_client(engine, None if upstream is None else str(upstream)),
                                 latch=self.latch(engine), keep_alive=False)

    def read_stream(self, engine: Engine, session: EngineReadSession, n: int,
                    stats: ReadStats | None) -> Iterator[pa.RecordBatch]:
        def read(p: ScanPartition) -> Iterator[pa.RecordBatch]:
            return engine.read_partition(p, LeaseKeeper(p), stats)

        return read_stream(planned_session(session), n, read)

    def query_snapshot(self, engine: Engine, tables: Sequence[str], options: Mapping[str, object] | None,
                       read: Sequence[tuple[str, int]] = ()) -> QuerySnapshot:
        opts = {k: str(v) for k, v in dict(options or {}).items()}
        if self._upstream_address and "upstream" not in opts:
            opts["upstream"] = self._upstream_address
        resolved = str(opts.get("snapshot", "")).strip().lower() == "resolved"
        upstream = None if resolved else self._upstream_client(engine, opts.get("upstream"))
        return query_snapshot_ts(engine.store, list(tables), opts, upstream=upstream, latch=self.latch(engine),
                                 read=read)

    def writer_flush(self, engine: Engine, regions: Sequence[int], timeout_s: float) -> dict[int, int]:
        latch = self.latch(engine)
        return latch.wait_flush(latch.request_flush(list(regions)), timeout_s)

    def latch(self, engine: Engine) -> Latch:
        with self._mu:
            if self._latch is None:
                self._latch = connect_latch(engine.root)
            return self._latch

    def close(self) -> None:
        with self._mu:
            upstreams, self._upstreams = list(self._upstreams.values()), {}
            latch, self._latch = self._latch, None
        for thing in (*upstreams, latch):
            if thing is not None and hasattr(thing, "close"):
                thing.close()

    def _upstream_client(self, engine: Engine, address: str | None) -> UpstreamConnection | None:
        """One upstream client for every session (gRPC channels are thread-safe); None when no
        address is known yet (the planner then says so)."""
        address = address or engine.recorded_upstream()
        if not address:
            return None
        with self._mu:
            client = self._upstreams.get(address)
            if client is None:
                from pyspark_theflash.upstream_client.client import connect

                client = self._upstreams[address] = connect(address)
            return client
