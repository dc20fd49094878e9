"""Learner read: make the store hold every commit at or below a snapshot ts.

For each region overlapping the table: a region whose persisted resolved ts is at or above
ts has everything already. Otherwise ask upstream for its read index (the raft index a
replica must apply to serve a read now; the request carries ts, so upstream commits nothing
prewritten after it at or below ts, as TiKV's read index does for async commit and 1PC), ask
the writer to flush (a flush request carrying the read indexes, answered within one writer
poll), and poll the store's manifest until each region's applied index reaches its read index. Regions split while we wait show up as new
regions overlapping the table and get their own read index; a region upstream no longer
knows (merged away) is replaced by the upstream regions now covering its range.
"""
from __future__ import annotations

import logging
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from pyspark_theflash.latch import FlushTimeoutError, Latch
from pyspark_theflash.scan.errors import RegionWaitTimeoutError, UnresolvedRegionsError, spell_option
from pyspark_theflash.codec.tso import physical_ms
from pyspark_theflash.store.views import RegionState
from pyspark_theflash.upstream_client.client import RAFT_INIT_LOG_INDEX

if TYPE_CHECKING:
    from pyspark_theflash.proto import binlog_pb2
    from pyspark_theflash.store.views import LockInfo, StoreView
    from pyspark_theflash.upstream_client.client import UpstreamClient
    from pyspark_theflash.store.views import RegionColumns

POLL_S = 0.05
# A read that has waited this long for the store says once what it waits for (a stopped writer
# made a read wait its whole region_wait_timeout, 30 s by default, in silence).
NOTICE_AFTER_S = 2.0

log = logging.getLogger(__name__)
# A completed flush request that left a region short is re-issued at most this often.
REQUEST_EVERY_S = 0.2


def close_view(view: StoreView) -> None:
    close = getattr(view, "close", None)
    if close is not None:
        close()


def _all_regions(view: StoreView) -> list[RegionState]:
    try:
        return list(view.regions(include_gone=True))
    except TypeError:
        return list(view.regions())


def _region_not_found(exc: Exception) -> bool:
    return type(exc).__name__ == "RegionNotFoundError" or "not found" in str(exc).lower()


def ranges_overlap(a_start: bytes, a_end: bytes, b_start: bytes, b_end: bytes) -> bool:
    """Do [a_start, a_end) and [b_start, b_end) overlap? Empty end = +inf (PD's form)."""
    return (not b_end or a_start < b_end) and (not a_end or b_start < a_end)


def region_id(region: RegionState | binlog_pb2.Region | LockInfo) -> int:
    """The id of a store region (``RegionState``: asked per region of a plan, so first) or of
    an upstream region or lock (``region_id``)."""
    if type(region) is RegionState:
        return region.id
    return int(getattr(region, "region_id", None) or getattr(region, "id"))


def _applied(region: RegionState) -> int:
    """A store region's applied raft index. A region the store holds has applied at least
    TiKV's RAFT_INIT_LOG_INDEX: a new peer's log starts there and upstream's read index of a
    region without entries is that, while the store notes no index before its first entry (as
    the writer's answer to flush requests counts it)."""
    return max(int(region.applied_index), RAFT_INIT_LOG_INDEX)


def region_is_live(region: RegionState) -> bool:
    return str(getattr(region, "state", "normal") or "normal") == "normal"


@dataclass(frozen=True)
class CoveringColumns:
    """The live regions of a view over a read's tables as columns (``scan.context.covering_physical``
    without an object per region: ``covering_physical_columns``), in the order it lists them."""

    at: np.ndarray           # int64: positions in the view's RegionColumns
    ids: np.ndarray          # int64
    resolved_ts: np.ndarray  # int64


@dataclass
class LearnerRead:
    """One query's learner read of one table. ``snapshot`` opens a fresh view of the store
    manifest; ``covering(view)`` lists the live regions of the view that overlap the table."""

    snapshot: Callable[[], StoreView]
    covering: Callable[[StoreView], list[RegionState]]
    upstream: UpstreamClient | None  # None: a ts the store has resolved (no read index is asked for)
    latch: Latch
    ts: int
    table: str
    key_range: tuple[bytes, bytes] = (b"", b"")  # the table's records, PD-encoded
    # a partitioned table: the records of each partition read (then ``key_range`` is unused)
    key_ranges: tuple[tuple[bytes, bytes], ...] = ()
    read_index: dict[int, int] = field(default_factory=dict)
    waited_s: float = 0.0
    # ``covering`` as columns (``scan.context.covering_physical_columns``; None: not as columns)
    covering_columns: Callable[[StoreView], CoveringColumns | None] | None = None
    _noticed: bool = False  # the wait was reported (_notice): once a read

    def _upstream(self) -> UpstreamClient:
        assert self.upstream is not None, "a read index is asked for only with an upstream"
        return self.upstream

    def _read_index_of(self, region: RegionState) -> dict[int, int]:
        """The read index of a store region, or of the upstream regions now covering its
        range when upstream no longer knows it (merged, or split ranges moved)."""
        rid = region_id(region)
        try:
            return {rid: int(self._upstream().read_index(rid, self.ts))}
        except Exception as exc:
            if not _region_not_found(exc):
                raise
        return self._covering_read_index(bytes(region.start_key), bytes(region.end_key))

    def _covering_read_index(self, start: bytes, end: bytes) -> dict[int, int]:
        """Read indexes of the upstream regions over [start, end). The region map may change
        between listing and asking (a split or merge): then list again."""
        for attempt in range(20):
            try:
                indexes: dict[int, int] = self._upstream().read_indexes(
                    [int(up.id) for up in self._upstream().regions()
                     if ranges_overlap(bytes(up.start_key), bytes(up.end_key), start, end)], self.ts)
                return indexes
            except Exception as exc:
                if not _region_not_found(exc) or attempt == 19:
                    raise
        return {}

    def _upstream_regions(self, needed: dict[int, int]) -> None:
        """Regions upstream has over the table that the store may not know yet (a fresh
        store, or a split it has not applied): the store must hold each at its read index."""
        for start, end in self.ranges:
            needed.update(self._covering_read_index(start, end))

    @property
    def ranges(self) -> tuple[tuple[bytes, bytes], ...]:
        return self.key_ranges or (self.key_range,)

    def run(self, deadline: float, timeout_s: float, only: Iterable[int] | None = None, force: bool = False,
            resolve_locks: Callable[[StoreView], None] | None = None,
            held_by_lock: Callable[[StoreView, RegionState], bool] | None = None,
            lock_wait: tuple[float, Callable[[StoreView], BaseException | None]] | None = None) -> StoreView:
        """Wait until caught up; returns the store view that is. ``only``: just these region
        ids (a lock's regions after resolving it); ``force``: take a new read index even when
        the region's resolved ts already covers ts (to see a lock resolution)."""
        if getattr(self.upstream, "resolved_ts_reads", False):
            return self._run_resolved(deadline, timeout_s, only, resolve_locks, held_by_lock, lock_wait)
        started = time.monotonic()
        only_ids = set(only) if only is not None else None
        needed: dict[int, int] = {}
        request_id: int | None = None
        requested_at = 0.0
        if only_ids is None and self.upstream is not None:
            self._upstream_regions(needed)
        try:
            while True:
                view = self.snapshot()
                fresh = self._fresh(view, needed, only_ids, force)
                if self.upstream is None:
                    # From the store alone: wait for the store's own resolved ts to cover ts (a
                    # region split off while we read starts without one until the writer applies
                    # the next resolved event), and for its regions to cover the table again (a
                    # region's snapshot retires a stale one whole before the snapshots of the
                    # regions now holding the rest come), never for an upstream read index.
                    gap = only_ids is None and self._has_gap(view)
                    if not fresh and not gap:
                        return view
                    self._notice(started, deadline, [(region_id(r), int(r.resolved_ts)) for r in fresh], gap=gap)
                    if time.monotonic() >= deadline:
                        if not fresh:
                            return view  # the caller names the key ranges no region holds
                        close_view(view)
                        raise UnresolvedRegionsError(self.table, self.ts, timeout_s,
                                                     [(region_id(r), int(r.resolved_ts)) for r in fresh])
                    close_view(view)
                    time.sleep(POLL_S)
                    continue
                for r in fresh:
                    needed.update(self._read_index_of(r))
                # merged or removed regions too: their range now lives in a region we also wait for
                states = {region_id(r): r for r in _all_regions(view)}
                lagging = []
                for rid, index in sorted(needed.items()):
                    state = states.get(rid)
                    if state is None:
                        lagging.append((rid, -1, index))
                    elif region_is_live(state) and _applied(state) < index and (
                        force or int(state.resolved_ts) < self.ts
                    ):
                        lagging.append((rid, _applied(state), index))
                if not lagging and not fresh:
                    self.read_index.update(needed)
                    return view
                close_view(view)
                if not lagging:
                    continue  # a split may have brought new regions into the table's range
                now = time.monotonic()
                self._notice(started, deadline, [(rid, applied) for rid, applied, _ in lagging], by_index=True)
                if now >= deadline:
                    raise RegionWaitTimeoutError(self.table, self.ts, timeout_s, lagging)
                if request_id is None and now - requested_at >= REQUEST_EVERY_S:
                    request_id = self.latch.request_flush(
                        [rid for rid, _, _ in lagging], {rid: idx for rid, _, idx in lagging}
                    )
                    requested_at = now
                if request_id is not None:
                    try:
                        self.latch.wait_flush(request_id, min(POLL_S, max(0.0, deadline - now)))
                        request_id = None  # answered: poll the manifest, re-ask if still short
                    except FlushTimeoutError:
                        pass
                else:
                    time.sleep(POLL_S)
        finally:
            self.waited_s += time.monotonic() - started

    def _fresh(self, view: StoreView, needed: dict[int, int], only_ids: set[int] | None, force: bool) -> list[RegionState]:
        """The regions over the table that still need a read index (in ``covering``'s order):
        not already waited for (``needed``), among ``only_ids``, and not resolved at ts (or all
        of them, ``force``). Over the regions as columns where the view gives them
        (``covering_columns``): the regions are made objects only when behind."""
        cover = self.covering_columns(view) if self.covering_columns is not None else None
        if cover is None:
            fresh = []
            for r in self.covering(view):
                rid = region_id(r)
                if rid in needed or (only_ids is not None and rid not in only_ids):
                    continue
                if not force and int(r.resolved_ts) >= self.ts:
                    continue
                fresh.append(r)
            return fresh
        behind = np.ones(len(cover.ids), bool) if force else cover.resolved_ts < self.ts
        if needed:
            behind &= ~np.isin(cover.ids, np.fromiter(needed, np.int64, len(needed)))
        if only_ids is not None:
            behind &= np.isin(cover.ids, np.fromiter(only_ids, np.int64, len(only_ids)))
        if not behind.any():
            return []
        behind_regions: list[RegionState] = view.live_regions_at(cover.at[behind])
        return behind_regions

    def _notice(self, started: float, deadline: float, behind: list[tuple[int, int]], *, gap: bool = False,
                by_index: bool = False, held: int = 0) -> None:
        """Once a read has waited NOTICE_AFTER_S for the store, one line (a warning: the CLI's
        stderr, Spark's driver log, the service's log) of what it waits for, and how long more."""
        now = time.monotonic()
        if self._noticed or now - started < NOTICE_AFTER_S:
            return
        self._noticed = True
        what = []
        if behind:
            if by_index:
                rid, applied = min(behind, key=lambda b: b[1])
                worst = f"region {rid} has applied raft index {applied}" if applied >= 0 else f"region {rid} is not in the store"
            else:
                rid, resolved = min(behind, key=lambda b: b[1])
                lag = f", {(physical_ms(self.ts) - physical_ms(resolved)) / 1000:,.1f} s behind" if resolved else ""
                worst = f"region {rid} is resolved at {resolved}{lag}"
            what.append(f"{len(behind)} region(s) to reach it in the store ({worst}"
                        + (f"; {held} held back by locks being resolved" if held else "") + ")")
        if gap:
            what.append("a key range of the table no region of the store holds yet (a split or merge the writer "
                        "has not applied)")
        log.warning("reading %s at ts %d: waiting for %s; is the writer applying the binlog? Waiting up to %.0f s "
                    "more (%s)", self.table, self.ts, " and ".join(what) or "the store",
                    max(0.0, deadline - now), spell_option("region_wait_timeout"))

    def _has_gap(self, view: StoreView) -> bool:
        """Whether a key of the table's ranges is in no live region of ``view``."""
        gap = gap_in_disjoint(view.region_columns(), self.ranges)
        if gap is None:
            return any(_first_gap(self.regions_over_range(view), *rng) is not None for rng in self.ranges)
        return gap

    def regions_over_range(self, view: StoreView) -> list[RegionState]:
        """Every live region of ``view`` over the table's key range: a dropped or truncated
        table's range is still held by regions (they outlive it), which ``covering`` may not
        list. (A region may hold other tables' keys too.)"""
        live = [r for r in view.regions() if region_is_live(r)
                and any(ranges_overlap(bytes(r.start_key), bytes(r.end_key), *rng) for rng in self.ranges)]
        return live or list(self.covering(view))

    def _run_resolved(self, deadline: float, timeout_s: float, only: Iterable[int] | None,
                      resolve_locks: Callable[[StoreView], None] | None,
                      held_by_lock: Callable[[StoreView, RegionState], bool] | None = None,
                      lock_wait: tuple[float, Callable[[StoreView], BaseException | None]] | None = None) -> StoreView:
        """The learner read of a store fed by TiKV's change-data feed, whose indexes are not
        raft indexes: wait until the store's regions cover the table's range and each has a
        resolved ts at or above ts (TiKV promises no commit at or below a resolved ts is still
        to come, and the writer makes a resolved ts durable only with the rows before it).
        Locks at or below ts hold TiKV's resolved ts back: ``resolve_locks(view)`` decides the
        ones the store has while we wait (a committed or rolled-back transaction's locks are
        resolved upstream; a live one is waited for), as TiCDC resolves locks of stuck regions."""
        started = time.monotonic()
        only_ids = set(only) if only is not None else None
        requested_at = 0.0
        locked_since: float | None = None
        try:
            while True:
                view = self.snapshot()
                covering = [r for r in self.regions_over_range(view) if only_ids is None or region_id(r) in only_ids]
                behind = [r for r in covering if int(r.resolved_ts) < self.ts]
                held = [r for r in behind if held_by_lock is not None and held_by_lock(view, r)]
                lagging = [(region_id(r), int(r.resolved_ts), self.ts) for r in behind
                           if not (held_by_lock is not None and lock_wait is None and r in held)]
                gap = None if only_ids is not None else next(
                    (g for g in (_first_gap(covering, *rng) for rng in self.ranges) if g is not None), None)
                if not lagging and gap is None:
                    return view
                now = time.monotonic()
                self._notice(started, deadline, [(rid, resolved) for rid, resolved, _ in lagging], gap=gap is not None,
                             held=len(held))
                if lock_wait is not None and behind and len(held) == len(behind) and gap is None:
                    locked_since = now if locked_since is None else locked_since
                    if now - locked_since >= lock_wait[0]:
                        error = lock_wait[1](view)
                        if error is not None:
                            close_view(view)
                            raise error
                else:
                    locked_since = None
                if now >= deadline:
                    close_view(view)
                    if gap is not None:  # the missing range first: no region there is even behind
                        lagging = [(0, -1, self.ts)] + lagging
                    raise RegionWaitTimeoutError(self.table, self.ts, timeout_s, lagging, by_resolved_ts=True,
                                                 gap=gap)
                if resolve_locks is not None:
                    resolve_locks(view)
                close_view(view)
                if now - requested_at >= REQUEST_EVERY_S:
                    self.latch.request_flush([rid for rid, _, _ in lagging])
                    requested_at = now
                time.sleep(POLL_S)
        finally:
            self.waited_s += time.monotonic() - started


def gap_in_disjoint(live: RegionColumns, ranges: Iterable[tuple[bytes, bytes]]) -> bool | None:
    """Whether a key of ``ranges`` (none empty; an empty end is +inf) is in none of the ``live``
    regions (a view's, as columns in start-key order: ``StoreView.region_columns``), or None when
    they overlap one another (before the writer applied a snapshot's retirements) and the answer
    needs every region looked at.
    Disjoint, the regions over a range are one run of them, found by bisection, and the run
    covers the range when its first region holds the range's start, each region ends where the
    next one starts (the lists compared in C), and the last one reaches the range's end:
    planning over 10,000 regions walked all of them in Python once a plan."""
    if not live.disjoint:
        return None
    starts, ends = live.start_keys, live.end_keys
    n = len(starts)
    for start, end in ranges:
        lo = max(0, bisect_right(starts, start) - 1)
        if lo < n and ends[lo] and ends[lo] <= start:
            lo += 1  # that region ends before the range starts
        if lo >= n or starts[lo] > start:
            return True  # [start, the next start) is held by no region
        hi = bisect_left(starts, end) if end else n  # the run: lo .. hi - 1 (starts[lo] <= start < end)
        if ends[lo:hi - 1] != starts[lo + 1:hi]:
            return True  # a region of the run ends short of the next one's start
        last = ends[hi - 1]
        if last and (not end or last < end):
            return True  # the run stops short of the range's end
    return False


def _first_gap(regions: list[RegionState], start: bytes, end: bytes) -> bytes | None:
    """Where the live store regions stop covering [start, end) (PD-encoded), None if they do."""
    at = start
    for r in sorted(regions, key=lambda r: bytes(r.start_key)):
        if bytes(r.start_key) > at:
            return at
        r_end = bytes(r.end_key)
        if not r_end:
            return None
        at = max(at, r_end)
        if end and at >= end:
            return None
    return at if (not end or at < end) else None
