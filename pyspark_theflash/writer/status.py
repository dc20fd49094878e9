"""The writer's status as a user sees it: its last published progress, or the store's
persisted state when no writer runs (`theflash writer status`, the notebook)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, TypeGuard

from pyspark_theflash.writer import last_error
from pyspark_theflash.writer.progress import RegionStatus, WriterStatus


def _published(value: object) -> TypeGuard[WriterStatus]:
    """Whether the latch holds a status a writer published (``Progress.to_status``, as JSON
    gave it back: an object with the writer's state)."""
    return isinstance(value, dict) and isinstance(value.get("state"), str)


def writer_status(store: str | None, latch_status: Mapping[str, object]) -> WriterStatus:
    """The writer's last published progress, or — when none is running — the store's persisted
    state (applied index and resolved ts per region, position)."""
    published = latch_status.get("writer_status")
    holder = latch_status.get("writer")
    result: WriterStatus = {"writer": holder if isinstance(holder, dict) else None}
    if _published(published):
        result.update(published)
    recorded = last_error.read(store) if store else None
    if recorded is not None:
        result["last_error"] = recorded
    if latch_status.get("writer") is None:
        # the last run ended on that error (it was recorded after the run started)
        ended_on_error = recorded is not None and float(recorded.get("at", 0)) >= float(result.get("started_at", 0))
        result["state"] = "failed" if ended_on_error else "not running"
        if store and (Path(store) / "manifest.db").exists():
            from pyspark_theflash.store import Store

            s = Store.open(store, readonly=True)
            with s.snapshot() as view:
                position = view.position()
                result["position"] = "" if position is None else f"{int(position[0])}:{int(position[1])}"
                result["regions"] = [
                    {"region_id": int(r.id), "applied_index": int(r.applied_index), "resolved_ts": int(r.resolved_ts),
                     "lag_events": None, "lag_ms": None}
                    for r in view.regions()
                ]
            s.close()
    return result


# A region is lagging when its resolved ts is further than this behind now, or events read for
# it wait to be applied.
LAGGING_MS = 5000
# `writer status` lists this many regions, the furthest behind first, unless asked for all.
REGIONS_SHOWN = 10


def region_summary(regions: list[RegionStatus], now_ms: int) -> str:
    """One line over every region: how many, the least resolved ts (its region, time and lag),
    and how many lag (``LAGGING_MS``)."""
    from pyspark_theflash.codec.tso import describe_ts, physical_ms

    if not regions:
        return "regions: none yet"
    least = min(regions, key=lambda r: int(r["resolved_ts"]))
    lagging = sum(1 for r in regions if _lag_ms(r, now_ms) > LAGGING_MS or (r.get("lag_events") or 0) > 0)
    ts = int(least["resolved_ts"])
    when = f" ({describe_ts(ts)}, {_age(now_ms - physical_ms(ts))} behind now)" if ts else " (none resolved yet)"
    return (f"regions: {len(regions)}  least resolved ts: {ts}{when} in region {least['region_id']}  "
            f"lagging (resolved ts over {LAGGING_MS // 1000}s behind, or events unapplied): {lagging}")


def worst_regions(regions: list[RegionStatus], now_ms: int, limit: int | None) -> list[RegionStatus]:
    """The regions furthest behind first (least resolved ts, then most unapplied events); the
    first ``limit`` of them (None: all, by region id)."""
    if limit is None or len(regions) <= limit:
        return sorted(regions, key=lambda r: int(r["region_id"]))
    return sorted(regions, key=lambda r: (int(r["resolved_ts"]), -(r.get("lag_events") or 0),
                                          int(r["region_id"])))[:limit]


def _lag_ms(region: RegionStatus, now_ms: int) -> int:
    from pyspark_theflash.codec.tso import physical_ms

    return max(0, now_ms - physical_ms(int(region["resolved_ts"]))) if int(region["resolved_ts"]) else now_ms


def _age(ms: int) -> str:
    ms = max(0, ms)
    if ms < 10_000:
        return f"{ms / 1000:.1f}s"
    seconds = ms // 1000
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
    return f"{seconds // 86400}d{seconds // 3600 % 24:02d}h"
