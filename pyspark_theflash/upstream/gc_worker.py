"""The mini cluster's GC worker, run as TiDB's GC worker runs it.

Each run, at safe point S:

1. **resolve locks**: every transaction with a lock whose start_ts <= S is decided now, as
   TiDB's ``resolveLocks`` does with current ts = max (an ordinary transaction still locked is
   rolled back, an async-commit one is decided by its secondaries) and its remaining locks
   committed or rolled back;
2. **advance and collect**: the safe point moves to S (saved by the caller, never back) and
   versions no read at or above S can see are dropped.

Phase 1 comes first because phase 2 may drop a primary's commit record (a newer version of
the key exists below S): a secondary lock still open afterwards would find "no lock, no
record" at its primary and be rolled back although its transaction committed.

The safe point of a scheduled run is now - ``life_time_s`` (TiDB's ``tidb_gc_life_time``,
10 min by default); runs are ``run_interval_s`` apart (``tidb_gc_run_interval``, 10 min).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from pyspark_theflash.codec.tso import MAX_TS, compose_ts, physical_ms
from pyspark_theflash.upstream.async_commit import resolve_txn
from pyspark_theflash.upstream.percolator import PercolatorStore
from pyspark_theflash.upstream.tso import TimestampOracle

DEFAULT_GC_LIFE_TIME_S = 600.0
DEFAULT_GC_RUN_INTERVAL_S = 600.0


@dataclass(frozen=True)
class GCRun:
    """What one run did."""

    safe_point: int        # the safe point after the run
    txns_resolved: int     # transactions with locks at or below it, decided in phase 1
    versions_dropped: int  # phase 2


class GCWorker:
    """Runs GC over ``store``. ``on_safe_point(ts)`` is told every new safe point (the cluster
    saves it). Thread-safe: a run holds the store's lock from phase 1 to the end of phase 2,
    so no transaction changes state between deciding locks and collecting."""

    def __init__(self, store: PercolatorStore, tso: TimestampOracle, life_time_s: float = DEFAULT_GC_LIFE_TIME_S,
                 run_interval_s: float | None = DEFAULT_GC_RUN_INTERVAL_S,
                 on_safe_point: Callable[[int], None] | None = None,
                 ceiling: Callable[[], int] | None = None) -> None:
        if life_time_s < 0:
            raise ValueError(f"gc_life_time must be >= 0 seconds, got {life_time_s}")
        self.store = store
        self.tso = tso
        self.life_time_s = life_time_s
        self.run_interval_s = run_interval_s
        self.on_safe_point = on_safe_point
        # PD's least service safe point (capture's, a replica's readers'): no run passes it,
        # as TiDB's GC worker takes min(now - life time, that) for its safe point.
        self.ceiling = ceiling
        self.last_run: GCRun | None = None
        self._last_started = time.monotonic()  # the first scheduled run is one interval after start
        self._mu = threading.Lock()

    def safe_point_now(self) -> int:
        """now - life time, as a TSO (physical part only)."""
        now_ms = physical_ms(self.tso.get_ts())
        return compose_ts(max(0, now_ms - int(self.life_time_s * 1000)), 0)

    def run(self, safe_point: int | None = None) -> GCRun:
        """One run at ``safe_point`` (default: now - life time). A safe point at or below the
        current one resolves what is there and moves nothing back."""
        with self._mu:
            self._last_started = time.monotonic()
            sp = self.safe_point_now() if safe_point is None else int(safe_point)
            if self.ceiling is not None:
                sp = min(sp, self.ceiling())
            store = self.store
            with store.mu:
                before = store.gc.value
                resolved = 0
                for lock in store.txn_locks_at_or_below(sp):
                    # current ts = max: a lock below the safe point is expired whatever its TTL
                    resolve_txn(store, lock.primary, lock.start_ts, 0, MAX_TS)
                    resolved += 1
                dropped = store.collect_garbage(sp)
                after = store.gc.value
            if after != before and self.on_safe_point is not None:
                self.on_safe_point(after)
            self.last_run = GCRun(after, resolved, dropped)
            return self.last_run

    def due(self) -> bool:
        return self.run_interval_s is not None and time.monotonic() - self._last_started >= self.run_interval_s

    def tick(self) -> GCRun | None:
        """A scheduled run when ``run_interval_s`` has passed since the last one."""
        return self.run() if self.due() else None
