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

**A run never holds the store's lock for long.** It takes it per transaction in phase 1 and
per slice of ``GC_KEYS_PER_STEP`` keys in phase 2, so TSO, reads, commits and the change feed
go on while it works (a run holding the lock throughout stalled every reader behind it, and
the gRPC workers they held, for as long as the run took). That is safe because, before phase
1, the run raises the store's max_ts to S: no transaction can commit at or below S any more,
so nothing phase 1 did not see can leave a lock whose commit record phase 2 drops, and a
key's versions at or below S no longer change between slices.

The safe point of a scheduled run is now - ``life_time_s`` (TiDB's ``tidb_gc_life_time``,
10 min by default); runs are ``run_interval_s`` apart (``tidb_gc_run_interval``, 10 min).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from pyspark_theflash.codec.tso import MAX_TS, compose_ts, physical_ms
from pyspark_theflash.upstream.async_commit import resolve_txn
from pyspark_theflash.upstream.percolator import PercolatorStore
from pyspark_theflash.upstream.tso import TimestampOracle

log = logging.getLogger(__name__)

DEFAULT_GC_LIFE_TIME_S = 600.0
DEFAULT_GC_RUN_INTERVAL_S = 600.0
GC_KEYS_PER_STEP = 2048  # keys collected per hold of the store's lock (a few ms of work)


@dataclass(frozen=True)
class GCRun:
    """What one run did."""

    safe_point: int        # the safe point after the run
    txns_resolved: int     # transactions with locks at or below it, decided in phase 1
    versions_dropped: int  # phase 2


class GCWorker:
    """Runs GC over ``store``. ``on_safe_point(ts)`` is told every new safe point (the cluster
    saves it). Thread-safe: one run at a time; a run takes the store's lock in short steps."""

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
        self._running = threading.Event()  # a scheduled run is under way
        self._thread: threading.Thread | None = None

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
            before = store.gc.value
            store.refuse_commits_at_or_below(sp)
            resolved = 0
            for lock in store.txn_locks_at_or_below(sp):
                # current ts = max: a lock below the safe point is expired whatever its TTL
                resolve_txn(store, lock.primary, lock.start_ts, 0, MAX_TS)
                resolved += 1
            keys = store.keys_with_versions()
            dropped = 0
            for at in range(0, max(1, len(keys)), GC_KEYS_PER_STEP):  # one step even with no keys: it advances
                dropped += self._collect_step(sp, keys[at:at + GC_KEYS_PER_STEP])
            after = store.gc.value
            if after != before and self.on_safe_point is not None:
                self.on_safe_point(after)
            self.last_run = GCRun(after, resolved, dropped)
            return self.last_run

    def _collect_step(self, safe_point: int, keys: list[bytes]) -> int:
        """Phase 2 over one slice of keys, under the store's lock for this slice only."""
        return self.store.collect_garbage(safe_point, keys)

    def due(self) -> bool:
        return self.run_interval_s is not None and time.monotonic() - self._last_started >= self.run_interval_s

    def tick(self) -> bool:
        """Start a scheduled run in its own thread when ``run_interval_s`` has passed since the
        last one and none is running: the caller (the cluster's resolved-ts ticker) never waits
        for GC. Returns whether it started one."""
        if not self.due() or self._running.is_set():
            return False
        self._running.set()
        self._last_started = time.monotonic()

        def scheduled() -> None:
            try:
                self.run()
            except Exception:  # logged; the next interval tries again
                log.exception("scheduled GC run failed")
            finally:
                self._running.clear()

        self._thread = threading.Thread(target=scheduled, name="upstream-gc", daemon=True)
        self._thread.start()
        return True

    def join(self) -> None:
        """Wait for a scheduled run under way (the cluster closes after it)."""
        if self._thread is not None:
            self._thread.join()
