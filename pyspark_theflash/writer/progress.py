"""What the writer reports: rates, per-region applied index / resolved ts / lag, position,
flush and compaction durations — as a status dict (published through the latch), a one-line
progress display, and Prometheus text."""
from __future__ import annotations

import collections
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Literal, Protocol, TypedDict

from pyspark_theflash.codec.tso import logical, physical_ms
from pyspark_theflash.status_http import Exposition

if TYPE_CHECKING:
    from pyspark_theflash.store.manifest import RegionRow
    from pyspark_theflash.store.manifest import RegionResolved

RATE_WINDOW_S = 10.0


class LastError(TypedDict):
    """The error that ended a writer's run (``writer.last_error``): unix seconds ``at``."""

    message: str
    kind: str
    at: float


class ServeAddresses(TypedDict):
    """Where a writer run with ``--serve`` serves reads."""

    flight: str | None
    http: str | None


class RegionStatus(TypedDict):
    """One region in a writer's status (lags None where the writer is not running)."""

    region_id: int
    applied_index: int
    resolved_ts: int
    lag_events: int | None
    lag_ms: int | None


class WriterStatus(TypedDict, total=False):
    """A writer's status (``Progress.to_status``), published through the latch and shown by
    ``writer status``, the progress line and /metrics. ``writer`` (its latch holder) and the
    ``token``/``updated_at`` of the publication come back with it from the latch;
    ``metrics_port`` and ``serve`` are added by a writer that serves them."""

    state: str
    healthy: bool
    unhealthy_reason: str
    last_error: LastError | None
    host: str
    pid: int
    started_at: float
    position: str
    read_position: str
    interval_s: float
    events_total: int
    rows_total: int
    batches_total: int
    events_per_s: float
    rows_per_s: float
    flushes: int
    last_flush_s: float
    flush_seconds_total: float
    compactions: int
    last_compact_s: float
    compact_seconds_total: float
    delta_merges: int
    delta_merge_seconds_total: float
    delta_rounds: int
    delta_published_ts: int
    gc_safe_point: int | None
    regions: list[RegionStatus]
    metrics_port: int
    serve: ServeAddresses
    writer: dict[str, object] | None  # the latch holder (latch.types.WriterHolder.to_dict)
    token: int
    updated_at: float


class PersistedRegion(Protocol):
    """A region's persisted progress (the store's ``RegionState``)."""

    @property
    def id(self) -> int: ...

    @property
    def applied_index(self) -> int: ...

    @property
    def resolved_ts(self) -> int: ...


@dataclass
class RegionProgress:
    region_id: int
    applied_index: int = 0   # persisted (flushed) applied index
    resolved_ts: int = 0
    seen_index: int = 0      # newest index read from the binlog or reported by the upstream

    @property
    def lag_events(self) -> int:
        return max(0, self.seen_index - self.applied_index)

    def lag_ms(self, now_ms: int) -> int | None:
        return max(0, now_ms - physical_ms(self.resolved_ts)) if self.resolved_ts else None


# The states in which the writer is doing its work (/healthz answers 200): applying the binlog,
# or copying the upstream's regions before it can. Starting, stopped and failed are 503.
HEALTHY_STATES = frozenset({"running", "bootstrapping"})


@dataclass
class Progress:
    started_at: float = field(default_factory=time.time)
    events_total: int = 0
    rows_total: int = 0
    batches_total: int = 0
    flushes: int = 0
    last_flush_s: float = 0.0
    flush_seconds_total: float = 0.0
    compactions: int = 0
    last_compact_s: float = 0.0
    compact_seconds_total: float = 0.0
    delta_merges: int = 0     # partitions whose delta parts were merged into one
    delta_merge_seconds_total: float = 0.0
    delta_rounds: int = 0     # Delta publication rounds run (--delta-publish-interval; docs/delta.md)
    delta_published_ts: int = 0  # the ts of the newest one
    gc_safe_point: int = 0
    position: str = ""        # persisted position (where a restart resumes)
    read_position: str = ""   # just after the last event read
    interval_s: float = 0.0
    state: str = "starting"
    # The last run-ending error of this store's writer (this run's or an earlier one's):
    # {"message", "kind", "at" (unix seconds)}; shown by `writer status` and /metrics.
    last_error: LastError | None = None
    _regions: dict[int, RegionProgress] = field(default_factory=dict)
    # resolved ts flushes made durable and not yet written into ``_regions``: a flush moves
    # every region's (10,000 and more, 20 flushes a second), a dict update takes them in C, and
    # they reach the regions' progress when it is read (``regions``: a status, every second or so)
    _resolved_pending: dict[int, int] = field(default_factory=dict)
    _samples: collections.deque[tuple[float, int, int]] = field(default_factory=collections.deque)

    def region(self, region_id: int) -> RegionProgress:
        found = self._regions.get(region_id)
        if found is None:
            found = self._regions[region_id] = RegionProgress(region_id)
        return found

    @property
    def regions(self) -> dict[int, RegionProgress]:
        """Each live region's progress, with every durable resolved ts in it."""
        pending, regions = self._resolved_pending, self._regions
        if pending:
            for region_id, ts in pending.items():
                r = regions.get(region_id)
                if r is not None:
                    r.resolved_ts = ts
            pending.clear()
        return regions

    def note_batch(self, events: int, rows: int, seen: dict[int, int]) -> None:
        self.events_total += events
        self.rows_total += rows
        self.batches_total += 1
        for region_id, index in seen.items():
            r = self.region(region_id)
            r.seen_index = max(r.seen_index, index)
        now = time.monotonic()
        self._samples.append((now, self.events_total, self.rows_total))
        while len(self._samples) > 2 and self._samples[0][0] < now - RATE_WINDOW_S:
            self._samples.popleft()

    def note_regions(self, states: Iterable[PersistedRegion]) -> None:
        """The store's live regions: their progress, and only theirs (a region merged away or
        removed leaves the progress line and the status instead of lagging ever more)."""
        self._resolved_pending.clear()  # (the store's state is newer than any flush noted before)
        live = set()
        for state in states:
            live.add(int(state.id))
            self._note_persisted(int(state.id), int(state.applied_index), int(state.resolved_ts))
        for region_id in [i for i in self._regions if i not in live]:
            del self._regions[region_id]

    def note_flushed_regions(self, rows: Iterable[RegionRow], resolved: RegionResolved | None = None) -> None:
        """What one flush made durable: whole region rows (``FlushResult.region_rows``: a live
        one's progress updated, a merged or removed one's dropped) and the regions whose
        resolved ts alone moved (``region_resolved``); the others are as they were."""
        pending = self._resolved_pending
        if resolved is not None and len(resolved):
            pending.update(zip(resolved.ids.tolist(), resolved.ts.tolist()))
        for row in rows:  # (disjoint from this flush's resolved, newer than what is pending)
            region_id = int(row[0])
            pending.pop(region_id, None)
            if row[7] != "normal":
                self._regions.pop(region_id, None)
                continue
            self._note_persisted(region_id, int(row[5]), int(row[6]))

    def _note_persisted(self, region_id: int, applied_index: int, resolved_ts: int) -> None:
        r = self.region(region_id)
        r.applied_index, r.resolved_ts = applied_index, resolved_ts
        r.seen_index = max(r.seen_index, applied_index)

    def rates(self) -> tuple[float, float]:
        """(events/s, rows/s) over the last RATE_WINDOW_S seconds."""
        now = time.monotonic()
        while len(self._samples) > 2 and self._samples[0][0] < now - RATE_WINDOW_S:
            self._samples.popleft()
        if not self._samples:
            return 0.0, 0.0
        t0, e0, r0 = self._samples[0]
        span = max(now - t0, 1e-3)
        return (self.events_total - e0) / span, (self.rows_total - r0) / span

    def to_status(self) -> WriterStatus:
        events_per_s, rows_per_s = self.rates()
        now_ms = int(time.time() * 1000)
        healthy = self.state in HEALTHY_STATES
        if healthy:
            reason = ""
        elif self.state == "failed":
            reason = "the writer failed" + (f": {self.last_error['message']}" if self.last_error else "")
        else:
            reason = {"stopped": "the writer has stopped"}.get(self.state, f"the writer is {self.state}")
        return {
            "state": self.state,
            # /healthz (status_http.py): 200 while it applies the binlog, else 503 and why
            "healthy": healthy,
            "unhealthy_reason": reason,
            "last_error": self.last_error,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "position": self.position,
            "read_position": self.read_position,
            "interval_s": self.interval_s,
            "events_total": self.events_total,
            "rows_total": self.rows_total,
            "batches_total": self.batches_total,
            "events_per_s": round(events_per_s, 1),
            "rows_per_s": round(rows_per_s, 1),
            "flushes": self.flushes,
            "last_flush_s": round(self.last_flush_s, 4),
            "flush_seconds_total": round(self.flush_seconds_total, 4),
            "compactions": self.compactions,
            "last_compact_s": round(self.last_compact_s, 4),
            "compact_seconds_total": round(self.compact_seconds_total, 4),
            "delta_merges": self.delta_merges,
            "delta_merge_seconds_total": round(self.delta_merge_seconds_total, 4),
            "delta_rounds": self.delta_rounds,
            "delta_published_ts": self.delta_published_ts,
            "gc_safe_point": self.gc_safe_point,
            "regions": [
                {
                    "region_id": r.region_id,
                    "applied_index": r.applied_index,
                    "resolved_ts": r.resolved_ts,
                    "lag_events": r.lag_events,
                    "lag_ms": r.lag_ms(now_ms),
                }
                for r in sorted(self.regions.values(), key=lambda r: r.region_id)
            ],
        }


def progress_line(status: WriterStatus, max_regions: int = 6) -> str:
    """``12.3k ev/s 40.1k rows/s | r1 lag 0ev 120ms, r2 ... | pos 3:1024``"""
    regions = status.get("regions", [])
    worst = sorted(regions, key=lambda r: (-(r["lag_events"] or 0), -(r["lag_ms"] or 0)))[:max_regions]
    shown = ", ".join(
        f"r{r['region_id']} {r['lag_events']}ev/{'-' if r['lag_ms'] is None else str(r['lag_ms']) + 'ms'}" for r in worst
    )
    more = f" +{len(regions) - len(worst)} regions" if len(regions) > len(worst) else ""
    return (
        f"{status.get('state', '?')}: {status['events_per_s']:.0f} events/s {status['rows_per_s']:.0f} rows/s | "
        f"lag {shown or 'no regions yet'}{more} | pos {status['position'] or '-'} (read {status['read_position'] or '-'})"
    )


def prometheus_text(status: WriterStatus) -> str:
    """The status as Prometheus exposition text (gauges and counters named theflash_writer_*)."""
    out = Exposition("theflash_writer")
    metric = out.metric
    regions = status.get("regions", [])

    def label(r: RegionStatus) -> str:
        return f'{{region="{r["region_id"]}"}}'

    def per(key: Literal["applied_index", "lag_events", "lag_ms"]) -> list[tuple[str, int | None]]:
        return [(label(r), r[key]) for r in regions]

    metric("applied_index", "gauge", "Raft index applied and flushed, per region.", per("applied_index"))
    # A TSO (physical ms << 18 | logical) does not fit a Prometheus sample's float64: its two
    # halves do, exactly.
    metric("resolved_ts_physical_ms", "gauge", "Resolved ts applied, per region: the TSO's physical ms.",
           [(label(r), physical_ms(int(r["resolved_ts"]))) for r in regions])
    metric("resolved_ts_logical", "gauge", "Resolved ts applied, per region: the TSO's logical part.",
           [(label(r), logical(int(r["resolved_ts"]))) for r in regions])
    metric("lag_events", "gauge", "Events read or known upstream but not yet flushed, per region.", per("lag_events"))
    metric("lag_ms", "gauge", "Wall-clock ms behind the region's resolved ts.", per("lag_ms"))
    metric("events_total", "counter", "Binlog events applied.", [("", status["events_total"])])
    metric("rows_total", "counter", "Rows applied: live rows and the versions of snapshots (an initial copy).",
           [("", status["rows_total"])])
    metric("events_per_second", "gauge", "Events applied per second (10 s window).", [("", status["events_per_s"])])
    metric("rows_per_second", "gauge", "Rows applied per second (10 s window).", [("", status["rows_per_s"])])
    metric("flushes_total", "counter", "Flushes done.", [("", status["flushes"])])
    metric("flush_seconds_total", "counter", "Time spent flushing.", [("", status["flush_seconds_total"])])
    metric("last_flush_seconds", "gauge", "Duration of the last flush.", [("", status["last_flush_s"])])
    metric("compactions_total", "counter", "Compaction/GC rounds done.", [("", status["compactions"])])
    metric("compact_seconds_total", "counter", "Time spent compacting.", [("", status["compact_seconds_total"])])
    metric("last_compact_seconds", "gauge", "Duration of the last compaction/GC round.", [("", status["last_compact_s"])])
    metric("delta_merges_total", "counter", "Partitions whose delta parts were merged into one.",
           [("", status["delta_merges"])])
    metric("delta_merge_seconds_total", "counter", "Time spent merging delta parts.",
           [("", status["delta_merge_seconds_total"])])
    safe_point = status["gc_safe_point"]
    metric("gc_safe_point_physical_ms", "gauge", "Safe point of the last GC: the TSO's physical ms.",
           [("", None if safe_point is None else physical_ms(int(safe_point)))])
    metric("interval_seconds", "gauge", "Current poll interval.", [("", status["interval_s"])])
    last_error = status.get("last_error")
    metric("last_fatal_error_timestamp_seconds", "gauge", "When the store's writer last stopped on an error.",
           [("", last_error.get("at") if last_error else None)])
    seg, _, off = str(status.get("position") or "0:0").partition(":")
    metric("position_segment", "gauge", "Persisted binlog position: segment.", [("", int(seg or 0))])
    metric("position_offset", "gauge", "Persisted binlog position: offset.", [("", int(off or 0))])
    return out.text()
