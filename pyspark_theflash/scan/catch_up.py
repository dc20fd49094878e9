"""Catching the store up to a read's ts: the learner read, and the resolved-ts wait of a
``pd://`` upstream (``scan.learner``), resolving on the way the locks that hold a region's
resolved ts back (``scan.locks``, isolation SI).

Every live region over the table's records (a partitioned table: over the partitions the
filter can match) reaches ts in the store, or the read fails naming the ones that did not
(``RegionWaitTimeoutError``; a live lock past its wait: ``LockResolveTimeoutError``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from pyspark_theflash.scan.context import covering_physical, covering_physical_columns, table_key_range
from pyspark_theflash.scan.learner import LearnerRead, region_id
from pyspark_theflash.scan.locks import LockResolver
from pyspark_theflash.scan.options import ScanOptions

if TYPE_CHECKING:
    from pyspark_theflash.latch import Latch
    from pyspark_theflash.upstream_client.client import UpstreamClient
    from pyspark_theflash.store.views import LockInfo, RegionState, StoreView


@dataclass
class CaughtUp:
    """A store view in which every region over the table has reached ts; the learner read
    that got it there (its read indexes, its wait), and the lock resolver that decided the
    locks holding resolved ts back while it waited (None: isolation RC, or none ran)."""

    view: StoreView
    learner: LearnerRead
    early: LockResolver | None


def catch_up(snapshot: Callable[[], StoreView], upstream: UpstreamClient | None, latch: Latch, ts: int, opts: ScanOptions,
             table_id: int, physical_ids: Sequence[int], partitioned: bool) -> CaughtUp:
    """Wait until every region over ``physical_ids``' records has caught up to ``ts`` in the
    store (``snapshot()`` gives a fresh view; ``upstream`` None: a ts the store has resolved,
    so no read index is asked for), within the read's ``region_wait_timeout``."""
    learner = LearnerRead(
        snapshot=snapshot,
        covering=lambda v: covering_physical(v, physical_ids),
        covering_columns=lambda v: covering_physical_columns(v, physical_ids),
        upstream=upstream, latch=latch, ts=ts, table=opts.table, key_range=table_key_range(table_id),
        key_ranges=tuple(table_key_range(i) for i in physical_ids) if partitioned else (),
    )
    deadline = time.monotonic() + opts.region_wait_timeout_s

    def region_locks(view: StoreView) -> list[LockInfo]:
        """The locks of the regions over the table's range, whatever table they lock: any of
        them holds its region's resolved ts back (a region may span several tables)."""
        over = {region_id(r) for r in learner.regions_over_range(view)}
        return [lk for lk in view.locks() if int(lk.region_id) in over]

    def held_by_lock(view: StoreView, region: RegionState) -> bool:
        """The region's resolved ts waits on a transaction the store holds a lock of."""
        rid = region_id(region)
        return any(int(lk.region_id) == rid and int(lk.start_ts) <= int(region.resolved_ts) + 1
                   for lk in region_locks(view))

    resolve_locks = lock_wait = None
    early = None
    if opts.isolation == "SI":
        early = LockResolver(upstream=upstream, learner=learner, ts=ts, locks=region_locks)
        resolve_locks = early.decide_pending

        def lock_timeout(view: StoreView) -> BaseException | None:
            assert early is not None
            alive = early.pending_alive(view)
            return early.timeout_error(alive, opts.lock_wait_timeout_s) if alive else None

        lock_wait = (opts.lock_wait_timeout_s, lock_timeout)
    view = learner.run(deadline, opts.region_wait_timeout_s, resolve_locks=resolve_locks, held_by_lock=held_by_lock,
                       lock_wait=lock_wait)
    return CaughtUp(view, learner, early)
