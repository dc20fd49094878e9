"""The writer's status as a user sees it: its last published progress, or the store's
persisted state when no writer runs (`theflash writer status`, the notebook)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pyspark_theflash.writer import last_error


def writer_status(store: str | None, latch_status: dict[str, Any]) -> dict[str, Any]:
    """The writer's last published progress, or — when none is running — the store's persisted
    state (applied index and resolved ts per region, position)."""
    published = latch_status.get("writer_status") or {}
    result: dict[str, Any] = {"writer": latch_status.get("writer"), **published}
    recorded = last_error.read(store) if store else None
    if recorded is not None:
        result["last_error"] = recorded
    if latch_status.get("writer") is None:
        # the last run ended on that error (it was recorded after the run started)
        ended_on_error = recorded is not None and float(recorded.get("at", 0)) >= float(published.get("started_at", 0))
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
