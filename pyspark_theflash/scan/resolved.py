"""The newest snapshot a store can serve on its own: its resolved ts over a table.

A region's resolved ts (persisted with its applied index) says no transaction will commit at
or below it any more, and every commit at or below it is applied. So a table whose every
region has resolved ts >= R reads at any ts <= R from the store alone: no read index, no
TSO, no lock status (every lock at or below R was decided before the region resolved past
it). That is how a store whose writer stopped, or a copy of one, answers without its
upstream, and how a read tolerates a lagging writer (``snapshot=resolved``,
``max_staleness``).

The key ranges of a table that no live region of the store holds cannot be served this way:
they are returned as gaps. In a stopped store, or a copy of one, a gap is where the writer
never saw the regions, and a read names it at once (``MissingRegionsError``). While a writer
applies the store a gap is usually a split or merge in flight (the snapshot of a region
retires a stale one whole before the snapshots of the regions holding the rest come), so a
read waits for it, bounded by its ``region_wait_timeout``.
"""
from __future__ import annotations

import operator
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import compress
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from pyspark_theflash.scan.context import physical_key_ranges
from pyspark_theflash.scan.learner import ranges_overlap, region_id, region_is_live

if TYPE_CHECKING:
    from pyspark_theflash.schema.table_info import TableInfo
    from pyspark_theflash.store.views import RegionState, StoreView


@dataclass(frozen=True)
class ResolvedTs:
    """The resolved ts of one table in a store view: ``ts`` (0 when no region holds it),
    the regions it covers, and the table's key ranges no region holds (``gaps``, readable)."""

    table: str
    ts: int
    regions: tuple[int, ...] = ()
    gaps: tuple[str, ...] = field(default_factory=tuple)

    @property
    def servable(self) -> bool:
        return self.ts > 0 and not self.gaps


def table_resolved_ts(view: StoreView, table_info: TableInfo, table: str) -> ResolvedTs:
    """The newest ts every live region of ``view`` over the table's records (a partitioned
    table: every partition's) has resolved.

    Over the view's regions as columns (``StoreView.region_columns``): the live regions are
    disjoint and in key order (a region's snapshot retires every region it overlaps), so those
    over a key range are one run of them, found by bisection, and its gaps are where a region
    does not end at the next one's start. A plan and every poll of a waiting reader ask this
    over every region of the table (10,000 and more)."""
    cols = view.region_columns()
    if not cols.disjoint:  # (not a state the writer leaves; read the slow way rather than wrongly)
        return _walked_resolved_ts(view.regions(), table_info, table)
    starts, ends = cols.start_keys, cols.end_keys
    taken = np.zeros(len(starts), dtype=bool)
    gaps: list[tuple[bytes, bytes]] = []
    for start, end in physical_key_ranges(table_info):
        lo = max(0, bisect_right(starts, start) - 1)
        hi = bisect_left(starts, end) if end else len(starts)
        if lo < hi and ends[lo] and ends[lo] <= start:
            lo += 1  # the region before the range ends at or before its start
        if lo >= hi:
            gaps.append((start, end))
            continue
        taken[lo:hi] = True
        if starts[lo] > start:
            gaps.append((start, starts[lo]))
        # between neighbours: a run's regions are disjoint, so a gap is an end short of the next start
        gaps.extend((ends[i], starts[i + 1]) for i in compress(range(lo, hi - 1),
                                                               map(operator.ne, ends[lo:hi - 1], starts[lo + 1:hi])))
        if ends[hi - 1] and ends[hi - 1] < end:
            gaps.append((ends[hi - 1], end))
    at = np.flatnonzero(taken)  # in key order
    ts = int(cols.resolved_ts[at].min()) if len(at) else 0
    return ResolvedTs(table=table, ts=ts, regions=tuple(cols.ids[at].tolist()),
                      gaps=tuple(_describe_gap(lo, hi, table_info, table) for lo, hi in sorted(gaps)))


def _walked_resolved_ts(regions: Sequence[RegionState], table_info: TableInfo, table: str) -> ResolvedTs:
    """``table_resolved_ts`` by a walk over the regions one by one, which holds for overlapping
    regions too (the unit tests' reference for the columnar form)."""
    live = sorted((r for r in regions if region_is_live(r)), key=lambda r: bytes(r.start_key))
    found: dict[int, RegionState] = {}
    gaps: list[tuple[bytes, bytes]] = []
    for start, end in physical_key_ranges(table_info):
        cursor: bytes | None = start
        for r in live:
            r_start, r_end = bytes(r.start_key), bytes(r.end_key)
            if not ranges_overlap(r_start, r_end, start, end):
                continue
            found.setdefault(region_id(r), r)
            if cursor is None:
                break
            if r_start > cursor:
                gaps.append((cursor, r_start))
            if not r_end:
                cursor = None
            elif r_end > cursor:
                cursor = r_end
        if cursor is not None and cursor < end:
            gaps.append((cursor, end))
    regions = sorted(found.values(), key=lambda r: bytes(r.start_key))
    ts = min((int(r.resolved_ts) for r in regions), default=0)
    return ResolvedTs(table=table, ts=ts, regions=tuple(region_id(r) for r in regions),
                      gaps=tuple(_describe_gap(lo, hi, table_info, table) for lo, hi in sorted(gaps)))


def _describe_gap(lo: bytes, hi: bytes, table_info: TableInfo, table: str) -> str:
    from pyspark_theflash.store.keyspace import region_handle_range

    rng = region_handle_range(lo, hi, int(table_info.id), bool(getattr(table_info, "is_common_handle", False)))
    if rng is None:
        return f"the key range [{lo.hex()}, {hi.hex()}) of {table}"

    def bound(value: object, unbounded: str) -> str:
        if value is None:
            return unbounded
        return value.hex() if isinstance(value, bytes) else str(value)

    return f"handles [{bound(rng[0], '-inf')}, {bound(rng[1], '+inf')}) of {table}"


def settled_resolved_ts(snapshot: Callable[[], StoreView], table_info: TableInfo, table: str, timeout_s: float,
                        poll_s: float = 0.05, writer_live: Callable[[], bool] | None = None) -> ResolvedTs:
    """``table_resolved_ts`` of a fresh store view (``snapshot()``), waiting up to ``timeout_s``
    while a region of the table has no resolved ts yet (one split off a moment ago starts
    without one until the writer applies the next resolved event). Gaps are returned at once
    unless ``writer_live()`` says a writer is applying the store: then a gap is a split or merge
    in flight (a region's snapshot retired a stale one before its siblings' snapshots came) and
    is waited for too. A stopped store, or a copy of one, never closes a gap."""
    deadline = time.monotonic() + timeout_s
    live: bool | None = None
    while True:
        with snapshot() as view:
            resolved = table_resolved_ts(view, table_info, table)
        if resolved.servable or time.monotonic() >= deadline:
            return resolved
        if resolved.gaps:
            if live is None:
                live = writer_live is not None and writer_live()
            if not live:
                return resolved
        time.sleep(poll_s)


def writer_live_on(store: str, latch_address: str | None = None) -> Callable[[], bool]:
    """Whether a writer holds the write latch of ``store`` now (asked when called)."""
    def live() -> bool:
        from pyspark_theflash.latch import connect as connect_latch

        latch = connect_latch(store, latch_address)
        try:
            return latch.holder() is not None
        finally:
            latch.close()

    return live
