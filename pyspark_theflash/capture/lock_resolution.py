"""Resolve the locks that hold a region's resolved ts back, as TiCDC does for stuck regions.

TiKV's resolved ts of a region stops at the oldest lock in it. A transaction whose client died
leaves its locks until a reader meets them or TiDB's GC resolves locks (every
``tidb_gc_run_interval``, 10 min by default), so without help a replica's regions would lag by
minutes. TiCDC's puller asks for resolution when a table's resolved ts lags PD's clock by 4 s
or more: for each region whose resolved ts is below ``min(now, resolved + 4 s)`` — at most once
per 10 s per region — it scans the region's locks at or below that ts (``KvScanLock``) and
hands them to client-go's lock resolver (tiflow ``cdc/puller/multiplexing_puller.go``,
``pkg/txnutil/lock_resolver.go``). We do the same, deciding each transaction with the resolver
the replica's reads use (``txn/resolver.py``: ``KvCheckTxnStatus`` on the primary,
``KvCheckSecondaryLocks`` for async commit, ``KvResolveLock`` on the keys met). A live transaction is left to finish: its
lock holds resolved ts back, which is what the replica must wait for.

The work runs in its own thread; the capture loop only hands it the regions that lag.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import NamedTuple

from pyspark_theflash.codec.keys import decode_region_key
from pyspark_theflash.codec.tso import LOGICAL_BITS, physical_ms
from pyspark_theflash.txn.resolver import TxnResolver
from pyspark_theflash.txn.status import LockInfo
from pyspark_theflash.upstream_client.errors import UpstreamError

log = logging.getLogger(__name__)


def _raw_key(pd_key: bytes) -> bytes:
    """A PD-encoded region boundary as the raw key KvScanLock takes (empty: unbounded, stays empty)."""
    return decode_region_key(pd_key) if pd_key else b""


class LaggingRegion(NamedTuple):
    id: int
    start: bytes  # PD-encoded
    end: bytes
    resolved_ts: int


class LaggingSet:
    """The regions waiting for their locks to be looked at: one entry per region, the newest
    word on it, the longest stalled first. A queue of every batch the capture loop hands over
    would grow whenever looking lags behind lagging (dozens of regions behind on a busy
    machine, each a few RPCs): the resolver would work through what the regions were tens of
    seconds ago while a region's lock held a reader back that long (issue 27's 1,000 runs).
    And most lagging first would starve a region a lock holds still behind regions that lag
    more but move: a lock stops a region's resolved ts dead, so the region whose resolved ts
    has stood still longest is the likeliest to be held by one (then the most lagging)."""

    def __init__(self, lag_ms: int, interval_s: float) -> None:
        self.lag_ms = lag_ms
        self.interval_s = interval_s
        self._pending: dict[int, tuple[int, LaggingRegion]] = {}  # region id -> (now_ts, region)
        self._asked: dict[int, float] = {}  # region id -> when its locks were last looked at
        self._still: dict[int, tuple[int, float]] = {}  # region id -> (resolved ts, offered with it since)
        self._cond = threading.Condition()
        self._closed = False

    def offer(self, now_ts: int, regions: list[LaggingRegion], at: float) -> None:
        """``regions``: every region capture follows now. Those that lag ``now_ts`` by ``lag_ms``
        or more and were not looked at in the last ``interval_s`` wait; a region already waiting
        has its entry replaced; one that caught up or is no longer followed leaves."""
        with self._cond:
            following = {r.id for r in regions}
            for rid in [rid for rid in self._pending if rid not in following]:
                del self._pending[rid]
            for rid in [rid for rid in self._still if rid not in following]:
                del self._still[rid]
            if len(self._asked) > 4 * len(following) + 64:  # forget the looks that no longer hold a region back
                self._asked = {rid: t for rid, t in self._asked.items() if at - t < self.interval_s}
            for r in regions:
                if self._still.get(r.id, (None,))[0] != r.resolved_ts:
                    self._still[r.id] = (r.resolved_ts, at)
                if physical_ms(now_ts) - physical_ms(r.resolved_ts) < self.lag_ms:
                    self._pending.pop(r.id, None)
                elif at - self._asked.get(r.id, float("-inf")) >= self.interval_s:
                    self._pending[r.id] = (now_ts, r)
            if self._pending:
                self._cond.notify()

    def take(self, at: float | None = None, timeout_s: float | None = None) -> tuple[int, LaggingRegion] | None:
        """The waiting region whose resolved ts has stood still longest, then the oldest (None
        once closed, or after ``timeout_s`` with none); it counts as looked at from ``at``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending or self._closed, timeout_s) or self._closed:
                return None
            rid = min(self._pending, key=lambda i: (self._still[i][1], self._pending[i][1].resolved_ts))
            self._asked[rid] = time.monotonic() if at is None else at
            return self._pending.pop(rid)

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class StuckRegionResolver:
    """Decides the transactions whose locks hold lagging regions back. ``lag_s``: how far a
    region's resolved ts may lag PD's clock before its locks are looked at (TiCDC: 4 s);
    ``interval_s``: how often one region is looked at, at most (TiCDC: 10 s)."""

    def __init__(self, pd_address: str, lag_s: float = 4.0, interval_s: float = 10.0) -> None:
        from pyspark_theflash.upstream_client.tidb_cluster import TiDBClusterClient

        self.client = TiDBClusterClient(pd_address if pd_address.startswith("pd://") else f"pd://{pd_address}")
        self.waiting = LaggingSet(int(lag_s * 1000), interval_s)
        self.txns = TxnResolver(self.client)
        self.resolved_txns = 0  # transactions committed or rolled back here
        self._thread = threading.Thread(target=self._run, name="capture-lock-resolver", daemon=True)
        self._thread.start()

    @property
    def lag_ms(self) -> int:
        return self.waiting.lag_ms

    def lagging(self, now_ts: int, regions: list[LaggingRegion]) -> None:
        """Hand over the regions that may lag (at least every one lagging ``now_ts`` by
        ``lag_s``: capture passes only those), of which those lagging wait for a look (the
        newest word on each); a region not handed over leaves the queue."""
        self.waiting.offer(now_ts, regions, time.monotonic())

    def _run(self) -> None:
        while True:
            item = self.waiting.take()
            if item is None:
                return
            now_ts, region = item
            try:
                self._resolve(region, now_ts)
            except UpstreamError as exc:  # the region moved or a store is away: asked again later
                log.info("resolving the locks of region %d: %s", region.id, exc)
            except Exception:  # never the capture's death: the next lag asks again
                log.exception("resolving the locks of region %d failed", region.id)

    def _resolve(self, region: LaggingRegion, now_ts: int) -> None:
        # TiCDC's target: min(now, resolved + lag) — the locks that hold the next step back
        target = min(now_ts, ((physical_ms(region.resolved_ts) + self.waiting.lag_ms) << LOGICAL_BITS))
        locks = self.client.scan_locks(_raw_key(region.start), _raw_key(region.end), target)
        by_txn: dict[int, list[LockInfo]] = {}
        for lock in locks:
            by_txn.setdefault(int(lock.start_ts), []).append(lock)
        if not by_txn:
            return
        # decided as a reader at now decides them: a transaction committed at any ts up to now
        # has its locks resolved; a live one is left alone (its lock still holds the region)
        for _, txn_locks in sorted(by_txn.items()):
            if self.txns.decide(txn_locks[0], now_ts, [bytes(lk.key) for lk in txn_locks]).decided:
                self.resolved_txns += 1
        log.info("region %d: %d lock(s) of %d transaction(s) at or below %d looked at; %d decided so far",
                 region.id, len(locks), len(by_txn), target, self.resolved_txns)

    def close(self) -> None:
        self.waiting.close()
        self._thread.join(5)
        self.client.close()
