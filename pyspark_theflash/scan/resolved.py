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

import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Any, Callable

from pyspark_theflash.scan.context import physical_key_ranges
from pyspark_theflash.scan.learner import ranges_overlap, region_id, region_is_live


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


def table_resolved_ts(view: Any, table_info: Any, table: str) -> ResolvedTs:
    """The newest ts every live region of ``view`` over the table's records (a partitioned
    table: every partition's) has resolved."""
    # the live regions in start-key order; disjoint (a region's snapshot retires every region
    # it overlaps), those over a range are one run of them, found by bisection
    live = [r for r in view.regions() if region_is_live(r)]
    starts = [bytes(r.start_key) for r in live]
    ends = [bytes(r.end_key) for r in live]
    disjoint = all(e and e <= s for e, s in zip(ends, starts[1:]))
    found: dict[int, Any] = {}
    gaps: list[tuple[bytes, bytes]] = []
    ranges = physical_key_ranges(table_info)
    for start, end in ranges:
        run = live[max(0, bisect_right(starts, start) - 1):bisect_left(starts, end) if end else len(live)] \
            if disjoint else sorted(live, key=lambda r: bytes(r.start_key))
        regions = [r for r in run if ranges_overlap(bytes(r.start_key), bytes(r.end_key), start, end)]
        cursor: bytes | None = start
        for r in regions:
            found.setdefault(region_id(r), r)
            if cursor is None:
                break
            r_start, r_end = bytes(r.start_key), bytes(r.end_key)
            if r_start > cursor:
                gaps.append((cursor, r_start))
            if not r_end:
                cursor = None
            elif r_end > cursor:
                cursor = r_end
        if cursor is not None and cursor < end:
            gaps.append((cursor, end))
    # (found in key order for one range; a partitioned table's ranges are sorted together)
    regions = list(found.values()) if len(ranges) == 1 else sorted(found.values(), key=lambda r: bytes(r.start_key))
    ts = min((int(r.resolved_ts) for r in regions), default=0)
    return ResolvedTs(table=table, ts=ts, regions=tuple(region_id(r) for r in regions),
                      gaps=tuple(_describe_gap(lo, hi, table_info, table) for lo, hi in gaps))


def _describe_gap(lo: bytes, hi: bytes, table_info: Any, table: str) -> str:
    from pyspark_theflash.store.keyspace import region_handle_range

    rng = region_handle_range(lo, hi, int(table_info.id), bool(getattr(table_info, "is_common_handle", False)))
    if rng is None:
        return f"the key range [{lo.hex()}, {hi.hex()}) of {table}"

    def bound(value: Any, unbounded: str) -> str:
        if value is None:
            return unbounded
        return value.hex() if isinstance(value, bytes) else str(value)

    return f"handles [{bound(rng[0], '-inf')}, {bound(rng[1], '+inf')}) of {table}"


def settled_resolved_ts(snapshot: Any, table_info: Any, table: str, timeout_s: float,
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
