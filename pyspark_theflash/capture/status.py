"""What a running capture says of itself: a status snapshot (made by its main loop about once a
second), written beside the binlog (``capture.status.json``, read by ``theflash capture
status``) and served at ``--metrics-port`` as Prometheus text (``theflash_capture_*``), JSON
and ``/healthz``; the pid file ``theflash capture stop`` signals."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pyspark_theflash.codec.tso import logical, physical_ms
from pyspark_theflash.status_http import Exposition

STATUS_FILE = "capture.status.json"
PID_FILE = "capture.pid"


def write_status(binlog: Path, status: dict[str, Any]) -> None:
    """The snapshot, replaced whole (a reader never sees half of one)."""
    tmp = binlog / (STATUS_FILE + ".tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, binlog / STATUS_FILE)


def read_status(binlog: Path) -> dict[str, Any] | None:
    try:
        got = json.loads((binlog / STATUS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return got if isinstance(got, dict) else None


def prometheus_text(status: dict[str, Any]) -> str:
    """The snapshot as Prometheus exposition text (gauges and counters named theflash_capture_*)."""
    out = Exposition("theflash_capture")
    metric = out.metric
    least = int(status.get("least_resolved_ts") or 0)
    metric("up", "gauge", "1 while capture runs its main loop.", [("", 1 if status.get("state") == "running" else 0)])
    metric("regions", "gauge", "Regions registered on TiKV's change-data feed.", [("", status.get("regions"))])
    metric("regions_initialised", "gauge", "Registered regions whose initial scan is written.",
           [("", status.get("initialised"))])
    metric("registrations_waiting", "gauge", "Registrations waiting for room on their store (--scan-limit in flight).",
           [("", status.get("registrations_waiting"))])
    metric("pending_lookups", "gauge", "Key ranges waiting to be looked up in PD and registered again.",
           [("", status.get("pending_lookups"))])
    metric("streams", "gauge", "Change-data streams open, one per TiKV store.", [("", status.get("streams"))])
    # A TSO (physical ms << 18 | logical) does not fit a Prometheus sample's float64: its halves do.
    metric("least_resolved_ts_physical_ms", "gauge", "The least resolved ts written over the regions: physical ms.",
           [("", physical_ms(least) if least else None)])
    metric("least_resolved_ts_logical", "gauge", "The least resolved ts written over the regions: logical part.",
           [("", logical(least) if least else None)])
    metric("lag_seconds", "gauge", "How far the least resolved ts written is behind PD's clock.",
           [("", status.get("lag_s"))])
    metric("rows_written_total", "counter", "Rows written to the binlog.", [("", status.get("rows_written"))])
    metric("rows_scanned_total", "counter", "Rows received from initial scans.", [("", status.get("rows_scanned"))])
    metric("events_written_total", "counter", "Binlog events written.", [("", status.get("events_written"))])
    metric("rows_per_second", "gauge", "Rows written per second (since the last snapshot).",
           [("", status.get("rows_per_s"))])
    metric("held_events", "gauge", "Events waiting in memory for the DDL frontier.", [("", status.get("held_events"))])
    errors = status.get("errors") or {}
    metric("errors_total", "counter", "Region and stream errors by kind (errorpb fields, stream_down).",
           [(f'{{kind="{kind}"}}', count) for kind, count in sorted(errors.items())] or [('{kind="none"}', 0)])
    return out.text()
