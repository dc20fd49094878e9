"""The newest snapshot a store can serve on its own: its resolved ts over a table.

A region's resolved ts (persisted with its applied index) says no transaction will commit at
or below it any more, and every commit at or below it is applied. So a table whose every
region has resolved ts >= R reads at any ts <= R from the store alone: no read index, no
TSO, no lock status (every lock at or below R was decided before the region resolved past
it). That is how a store whose writer stopped, or a copy of one, answers without its
upstream, and how a read tolerates a lagging writer (``snapshot=resolved``,
``max_staleness``).

The key ranges of a table that no live region of the store holds (the writer never saw the
regions there) cannot be served this way: they are returned as gaps, which a read names in
``MissingRegionsError``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

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
    from pyspark_theflash.scan.planner import physical_key_ranges

    live = [r for r in view.regions() if region_is_live(r)]
    found: dict[int, Any] = {}
    gaps: list[tuple[bytes, bytes]] = []
    for start, end in physical_key_ranges(table_info):
        regions = sorted((r for r in live if ranges_overlap(bytes(r.start_key), bytes(r.end_key), start, end)),
                         key=lambda r: bytes(r.start_key))
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
    regions = sorted(found.values(), key=lambda r: bytes(r.start_key))
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
                        poll_s: float = 0.05) -> ResolvedTs:
    """``table_resolved_ts`` of a fresh store view (``snapshot()``), waiting up to ``timeout_s``
    while a region of the table has no resolved ts yet (one split off a moment ago starts
    without one until the writer applies the next resolved event); gaps are returned at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        with snapshot() as view:
            resolved = table_resolved_ts(view, table_info, table)
        if resolved.servable or resolved.gaps or not resolved.regions or time.monotonic() >= deadline:
            return resolved
        time.sleep(poll_s)
