"""The read sessions a service holds for its clients, whichever front end opened them.

A session lives while it is used: opening it, each stream read (every batch), and a client's
``renew`` keep it; after its lease TTL without any of these, and with no stream in progress,
it is released (its read lease dropped, so GC and compaction may pass its ts). While a session
lives, a keeper thread renews its read lease every third of the TTL, so a slow client reading a
long stream never loses its snapshot. A stream read ends when the client has every batch or
goes away; either way the stream's resources are freed at once (the generator's ``finally``).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

import pyarrow as pa

from pyspark_theflash.service.errors import SessionNotFoundError, StreamNotFoundError
from pyspark_theflash.service.metrics import ServiceMetrics
from pyspark_theflash.service.request import ReadRequest
from pyspark_theflash.store.errors import StoreNotFoundError
from pyspark_theflash.store.parts import ReadStats

if TYPE_CHECKING:
    from pyspark_theflash.engine.interface import Engine
    from pyspark_theflash.scan.session import ReadSession
    from pyspark_theflash.service.stores import StoreResolver

log = logging.getLogger("theflash.service")


@dataclass
class HeldSession:
    """A session with its use: when it was last touched, how many streams are being read."""

    session: ReadSession
    engine: Engine                   # the engine that opened it and reads its streams
    frontend: str
    last_used: float
    renewed_at: float
    active_streams: int = 0
    mu: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ttl_s(self) -> float:
        return float(self.session.lease_ttl_s)

    def touch(self, now: float) -> None:
        self.last_used = now

    def idle_expired(self, now: float) -> bool:
        return self.active_streams == 0 and now - self.last_used > self.ttl_s


class SessionRegistry:
    """Sessions by id; opening, renewing, releasing, streaming, expiring."""

    def __init__(self, stores: StoreResolver, metrics: ServiceMetrics, *, clock: Callable[[], float] = time.monotonic,
                 keeper_interval_s: float = 1.0) -> None:
        self.stores = stores  # service.stores: the engine of the store a request names
        self.metrics = metrics
        self._clock = clock
        self._mu = threading.Lock()
        self._sessions: dict[str, HeldSession] = {}
        self._stop = threading.Event()
        self._keeper_interval_s = keeper_interval_s
        metrics.gauge("theflash_service_sessions_active", lambda: len(self._sessions))
        metrics.gauge("theflash_service_streams_active",
                      lambda: sum(h.active_streams for h in list(self._sessions.values())))
        self._keeper = threading.Thread(target=self._keep, name="theflash-service-sessions", daemon=True)
        self._keeper.start()

    # -- the session's life --------------------------------------------------------------------
    def open(self, request: ReadRequest, frontend: str) -> ReadSession:
        from pyspark_theflash.scan.session import planned_session

        with self.stores.hold(request.store) as engine:
            session = planned_session(engine.open_read_session(
                request.table, snapshot_ts=request.snapshot_ts, as_of=request.as_of, columns=request.columns,
                filter=request.filter, isolation=request.isolation, options=dict(request.options)))
            now = self._clock()
            with self._mu:
                self._sessions[session.id] = HeldSession(session, engine, frontend, now, now)
        self.metrics.add("theflash_service_sessions_opened_total", frontend=frontend)
        log.info("session %s: %s at ts %d, %d stream(s), ~%d rows (%s)", session.id, session.table, session.ts,
                 len(session.streams), session.rows, frontend)
        return session

    def get(self, session_id: str) -> HeldSession:
        with self._mu:
            held = self._sessions.get(session_id)
        if held is None:
            raise SessionNotFoundError(f"no read session {session_id!r} here: it was never opened, was released, or "
                                       "expired after its lease TTL without use; open a new one")
        return held

    def renew(self, session_id: str) -> float:
        """Renew the session's lease now; its new expiry (unix seconds)."""
        held = self.get(session_id)
        expires_at = held.session.renew()
        now = self._clock()
        held.touch(now)
        held.renewed_at = now
        self.metrics.add("theflash_service_lease_renewals_total")
        return expires_at

    def release(self, session_id: str, *, expired: bool = False) -> None:
        with self._mu:
            held = self._sessions.pop(session_id, None)
        if held is None:
            if expired:
                return
            raise SessionNotFoundError(f"no read session {session_id!r} to release (already released or expired)")
        try:
            held.session.close()
        except StoreNotFoundError:  # the store was deleted, and its leases with it
            log.debug("session %s: its store is gone", session_id)
        except Exception as exc:  # the lease expires by itself
            log.warning("releasing the lease of session %s failed: %s", session_id, exc)
        self.metrics.add("theflash_service_sessions_expired_total" if expired else "theflash_service_sessions_released_total")
        log.info("session %s %s", session_id, "expired" if expired else "released")

    def sessions(self) -> list[HeldSession]:
        with self._mu:
            return list(self._sessions.values())

    def reads(self, engine: Engine) -> bool:
        """Whether a held session reads through ``engine``."""
        return any(h.engine is engine for h in self.sessions())

    # -- streams -------------------------------------------------------------------------------
    def stream(self, session_id: str, n: int, frontend: str, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
        """Stream ``n`` of a session (checked now: an unknown session or stream raises here, not
        at the first batch). The read counts as use of the session until it ends; closing the
        iterator early (a client gone) frees it. ``stats``: the read's deletion-vector and
        fresh-tail rows are added to it as it goes (whole once the iterator is exhausted)."""
        held = self.get(session_id)
        streams = held.session.streams
        if not 0 <= n < len(streams):
            raise StreamNotFoundError(f"read session {session_id} has {len(streams)} stream(s) "
                                      f"(0..{len(streams) - 1}); there is no stream {n}")
        with held.mu:
            held.active_streams += 1
            held.touch(self._clock())
        self.metrics.add("theflash_service_streams_started_total", frontend=frontend)
        return self._batches(held, n, frontend, stats)

    def _batches(self, held: HeldSession, n: int, frontend: str,
                 stats: ReadStats | None) -> Iterator[pa.RecordBatch]:
        completed = False
        try:
            for batch in held.engine.read_stream(held.session, n, stats=stats):
                held.touch(self._clock())
                self.metrics.add("theflash_service_rows_total", batch.num_rows, frontend=frontend)
                self.metrics.add("theflash_service_bytes_total", batch.nbytes, frontend=frontend)
                yield batch
            completed = True
        finally:
            with held.mu:
                held.active_streams -= 1
                held.touch(self._clock())
            self.metrics.add("theflash_service_streams_completed_total" if completed
                             else "theflash_service_streams_aborted_total", frontend=frontend)

    # -- upkeep --------------------------------------------------------------------------------
    def keep(self) -> int:
        """One round of upkeep: renew the leases of live sessions (every third of their TTL),
        release the sessions idle for longer than their TTL. Returns how many expired."""
        now = self._clock()
        expired = 0
        for held in self.sessions():
            if held.idle_expired(now):
                self.release(held.session.id, expired=True)
                expired += 1
            elif now - held.renewed_at >= held.ttl_s / 3.0:
                try:
                    held.session.renew(late_ok=True)  # a late round (stalled service) keeps the session
                    held.renewed_at = now
                    self.metrics.add("theflash_service_lease_renewals_total")
                except Exception as exc:  # gone (GC passed it?): the session cannot be read any more
                    log.warning("session %s: renewing its lease failed (%s); releasing it", held.session.id, exc)
                    self.release(held.session.id, expired=True)
                    expired += 1
        return expired

    def _keep(self) -> None:
        while not self._stop.wait(self._interval()):
            try:
                self.keep()
                let_go_idle = getattr(self.stores, "let_go_idle", None)
                if let_go_idle is not None:
                    let_go_idle()
            except Exception as exc:  # keep serving; the next round tries again
                log.warning("session upkeep failed: %s", exc)

    def _interval(self) -> float:
        ttls = [h.ttl_s for h in self.sessions()]
        return max(0.05, min([self._keeper_interval_s] + [t / 6.0 for t in ttls]))

    def close(self) -> None:
        """Release every session (the service is stopping)."""
        self._stop.set()
        self._keeper.join(5)
        for held in self.sessions():
            self.release(held.session.id)
