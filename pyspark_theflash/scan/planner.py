"""Planning one snapshot read of one table (Spark driver side; no Spark imports).

    with plan("/data/flash", "bank.accounts", {"isolation": "SI"}) as p:
        p.ts, p.partitions            # one ScanPartition per region (small ones grouped)

Steps, as in DESIGN.md §5: choose the snapshot ts and check it is readable; take a read
lease at ts (renewed by a daemon thread while the plan is alive); learner read (every region
overlapping the table catches up to ts); resolve locks at or below ts (isolation SI); pin the
parts of every region's handle range; group small neighbouring regions into partitions.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from pyspark_theflash.engine.kinds import engine_of_view
from pyspark_theflash.engine.partition import RangeScan, ScanPartition
from pyspark_theflash.errors import storage_failure
from pyspark_theflash.heap import cyclic_gc_paused
from pyspark_theflash.scan.catch_up import catch_up
from pyspark_theflash.scan.context import (
    check_requested_ts,
    close_upstream,
    connect_upstream,
    covering_physical,
    covering_physical_columns,
    covering_regions,
    locks_of,
    opened_store,
    physical_key_ranges,
    store_root,
    upstream_address,
    upstream_table,
)
from pyspark_theflash.scan.errors import (
    ChangesBelowSafePointError,
    MissingRegionsError,
    ScanOptionError,
    SnapshotTsOutOfRangeError,
    TableNotReplicatedError,
)
from pyspark_theflash.scan.learner import LearnerRead, region_id
from pyspark_theflash.scan.lease import ReadLease, default_holder
from pyspark_theflash.scan.locks import LockResolver
from pyspark_theflash.scan.options import ScanOptions
from pyspark_theflash.scan.partitions import (
    SpanParts,
    Spans,
    TableSpans,
    estimate_bytes,
    group_ranges,
    grouped_range_scans,
    merge_group,
    parts_by_range,
    region_spans,
    span_parts,
)
from pyspark_theflash.scan.resolved import ResolvedTs, settled_resolved_ts, table_resolved_ts, writer_live_on
from pyspark_theflash.scan.schema_at import no_table_at_ts, read_table
from pyspark_theflash.scan.snapshot import (
    SnapshotKind,
    StalenessChoice,
    fresh_or_requested,
    query_options,
    query_snapshot,
    store_choice,
    upstream_safe_point,
    within_staleness,
)
from pyspark_theflash.schema.partitioning import partitioning_of
from pyspark_theflash.schema.table_info import TableInfo
from pyspark_theflash.store.commit_history import TableChange, first_change
from pyspark_theflash.store.errors import did_you_mean
from pyspark_theflash.store.views import intersect

if TYPE_CHECKING:
    from pyspark_theflash.engine.interface import QuerySnapshot
    from pyspark_theflash.latch import Latch
    from pyspark_theflash.schema.column_stats import ColumnStats
    from pyspark_theflash.schema.table_info import TableInfo
    from pyspark_theflash.store import Store
    from pyspark_theflash.store.predicate import Expr
    from pyspark_theflash.scan.options import HandleBound
    from pyspark_theflash.store.part_ref import PartRef
    from pyspark_theflash.store.views import LockInfo, StoreView
    from pyspark_theflash.upstream_client.client import UpstreamClient

# benches read these here
__all__ = ["PlanStats", "ScanPlan", "covering_regions", "key_value_ranges", "lookup_table", "physical_key_ranges",
           "plan", "query_snapshot_ts"]

log = logging.getLogger(__name__)


@dataclass
class PlanStats:
    """What planning did, for tests, benchmarks and the curious (``plan.stats``)."""

    regions: int = 0
    regions_resolved_ts: int = 0        # skipped: resolved ts already covered ts
    regions_read_index: int = 0         # waited for a read index
    learner_wait_s: float = 0.0
    locks_seen: int = 0
    txns_committed_for_us: int = 0
    txns_rolled_back: int = 0
    lock_backoffs: int = 0
    partitions: int = 0
    regions_pruned: int = 0             # the filter cannot match there (key range, part statistics)
    # a partitioned table (TiDB's PARTITION BY): partitions read and pruned by the filter, by name
    table_partitions: list[str] = field(default_factory=list)
    table_partitions_pruned: list[str] = field(default_factory=list)
    snapshot: str = "fresh"             # how ts was chosen: fresh (TSO), resolved (the store's), requested
    upstream_calls: bool = True         # False: planned from the store alone (ts at or below its resolved ts)
    parts: int = 0
    bytes: int = 0
    plan_s: float = 0.0


@dataclass
class ScanPlan:
    """A planned read: ts, lease and partitions. Close it (or use ``with``) to release the
    lease; an unclosed plan's lease stops being renewed when the plan is garbage collected
    and expires on its own."""

    store: str
    table: str
    table_id: int
    ts: int
    options: ScanOptions
    table_info: TableInfo
    partitions: list[ScanPartition] = field(default_factory=list)
    stats: PlanStats = field(default_factory=PlanStats)
    lease: ReadLease | None = None
    manifest_version: int = 0  # the store manifest's version the pinned parts were listed at
    pruned_partitions: list[str] = field(default_factory=list)  # partitions the filter ruled out (names)

    @property
    def lease_id(self) -> int | None:
        return self.lease.lease_id if self.lease is not None else None

    def detach(self) -> None:
        """Hand the lease over to the partition readers: stop renewing here; every partition
        read renews it, and it expires on its own once nobody does."""
        if self.lease is not None:
            self.lease.detach()

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release()

    def __enter__(self) -> "ScanPlan":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pruned_partitions(table_info: TableInfo, predicate: Expr | None) -> tuple[list[int], list[str]]:
    """(physical ids to read, names of partitions the filter prunes); an unpartitioned table
    reads its own id."""
    partitioning = partitioning_of(table_info)
    if partitioning is None:
        return [int(table_info.id)], []
    pruned: tuple[list[int], list[str]] = partitioning.prune(table_info, predicate)
    return pruned


def plan(store: str | os.PathLike[str] | Store, table: str | None = None,
         options: Mapping[str, str] | ScanOptions | None = None, *,
         columns: Sequence[str] | None = None, hidden: Sequence[str] | None = None, predicate: Expr | None = None,
         upstream: UpstreamClient | None = None, latch: Latch | None = None) -> ScanPlan:
    """Plan a snapshot read of ``table`` (``db.table``) in ``store``: an open ``Store`` (read-only;
    its opener's), or its directory, opened read-only for the plan (with ``ScanOptions`` given,
    the directory they name).

    ``columns``/``hidden`` override the options' (the Spark layer passes the schema Spark
    asked for); ``predicate`` is a ``store.predicate.Expr``; ``upstream``/``latch`` are
    clients to use instead of connecting by address (tests, embedding)."""
    started = time.monotonic()
    if isinstance(options, ScanOptions):
        opts = options
    else:
        raw = {str(k).lower(): v for k, v in dict(options or {}).items()}
        root = store_root(store)
        if root:
            raw["store"] = root
        if table:
            raw["table"] = table
        opts = ScanOptions.from_mapping(raw)
    from pyspark_theflash.store.errors import ManifestDamagedError, manifest_damage
    from pyspark_theflash.store.manifest import manifest_path

    with opened_store(opts.store if isinstance(store, (str, os.PathLike)) else store) as opened:
        try:
            return _plan(opened, opts, columns, hidden, predicate, upstream, latch, started)
        except Exception as exc:
            if manifest_damage(exc):
                raise ManifestDamagedError(str(manifest_path(opts.store)), exc) from exc
            # A read records a lease in the store's manifest: on a full or failing disk, say so.
            failure = storage_failure(exc, f"reading {opts.table} from store {opts.store}",
                                      advice="free space on that file system: a read records a read lease in the store")
            if failure is None:
                raise
            raise failure from exc



def _plan(store: Store, opts: ScanOptions, columns: Sequence[str] | None, hidden: Sequence[str] | None,
          predicate: Expr | None, upstream: UpstreamClient | None, latch: Latch | None, started: float) -> ScanPlan:
    with store.snapshot() as view:
        table_info = read_table(store, view, opts.table, opts)
        store_safe_point = int(view.gc_safe_point())
        recorded_upstream = upstream_address(opts, view)
        no_table = (no_table_at_ts(view, opts, int(opts.requested_ts() or 0))
                    if table_info is None and opts.schema == "as_of" and opts.requested_ts() else None)
        resolved = table_resolved_ts(view, table_info, opts.table) if table_info is not None else None
        # the store's tables a wrong name is closest to (did you mean ...?)
        hint = did_you_mean(opts.table, [f"{t.db}.{t.name}" for t in view.tables()]) if table_info is None else ""
    def settle() -> ResolvedTs:
        assert table_info is not None, "store_choice settles the resolved ts of a table the store has"
        return settled_resolved_ts(store.snapshot, table_info, opts.table, opts.region_wait_timeout_s,
                                   writer_live=writer_live_on(opts.store, opts.latch))

    # 1. choose the snapshot ts (scan.snapshot): from the store alone, within max_staleness, or upstream's
    from_store = store_choice(
        opts, table_info is not None, resolved, hint, store_safe_point, settle=settle,
        safe_point_upstream=lambda at, until: upstream_safe_point(opts, upstream, recorded_upstream, at, until))
    if from_store is not None and table_info is not None:  # (it chooses only for a table the store has)
        return _plan_from_store(store, opts, table_info, from_store.ts, from_store.how, columns, hidden, predicate,
                                latch, from_store.safe_point, started, readable_until=from_store.readable_until)
    if opts.requested_ts() is None and opts.max_staleness_s is not None and table_info is not None:
        return _plan_bounded(store, opts, table_info, columns, hidden, predicate, upstream, latch, recorded_upstream,
                             store_safe_point, started)
    own_upstream = upstream is None
    if upstream is None:
        upstream = connect_upstream(opts, recorded_upstream)
    try:
        if no_table is not None:
            check_requested_ts(upstream, opts, store_safe_point)  # a ts out of range says so first
            raise no_table
        if table_info is None:
            # A table the writer has not stored yet (a fresh store): the learner read below
            # brings its schema in, if the writer replicates it.
            table_info = upstream_table(upstream, opts, store)
        read_columns = _resolve_columns(table_info, opts, columns)
        predicate = _with_table_names(predicate, table_info)
        read_hidden = tuple(hidden) if hidden is not None else opts.hidden
        return _plan_at_ts(store, opts, table_info, read_columns, read_hidden, predicate, upstream, latch,
                           store_safe_point, started)
    finally:
        if own_upstream:
            close_upstream(upstream)


def _plan_from_store(store: Store, opts: ScanOptions, table_info: TableInfo, ts: int, how: SnapshotKind,
                     columns: Sequence[str] | None, hidden: Sequence[str] | None, predicate: Expr | None, latch: Latch | None,
                     store_safe_point: int, started: float, readable_until: int = 0) -> ScanPlan:
    """Plan a read at ``ts`` <= the store's resolved ts over the table: every region already
    holds every commit at or below ts and no undecided lock, so no upstream is asked."""
    if ts < store_safe_point:
        raise SnapshotTsOutOfRangeError(ts, store_safe_point, readable_until or ts,
                                        "below the GC safe point (older versions may be gone)")
    read_columns = _resolve_columns(table_info, opts, columns)
    predicate = _with_table_names(predicate, table_info)
    read_hidden = tuple(hidden) if hidden is not None else opts.hidden
    result = _leased_plan(store, opts, table_info, ts, latch, store_safe_point, ts)
    result.stats.snapshot = how
    result.stats.upstream_calls = False
    try:
        _catch_up_and_partition(result, store, None, result_latch(result, latch, opts), read_columns, read_hidden,
                                predicate)
    except BaseException:
        result.close()
        raise
    result.stats.plan_s = time.monotonic() - started
    return result


def result_latch(result: ScanPlan, latch: Latch | None, opts: ScanOptions) -> Latch:
    """The latch the plan's lease was taken on (connected by ``_leased_plan`` when none was given)."""
    if result.lease is not None:
        return result.lease.latch
    assert latch is not None, "a plan holds its lease (_leased_plan)"
    return latch


def _plan_bounded(store: Store, opts: ScanOptions, table_info: TableInfo, columns: Sequence[str] | None,
                  hidden: Sequence[str] | None, predicate: Expr | None, upstream: UpstreamClient | None, latch: Latch | None,
                  recorded_upstream: str | None, store_safe_point: int, started: float) -> ScanPlan:
    """``max_staleness`` (``scan.snapshot.within_staleness``): the plan at a fresh ts if the
    store catches up to it within the bound, else the plan at the store's resolved ts."""
    bound = float(opts.max_staleness_s or 0.0)
    wait = min(bound, opts.region_wait_timeout_s)

    def at_fresh_ts(client: UpstreamClient, now_ts: int) -> ScanPlan:
        fresh_opts = replace(opts, max_staleness_s=None, region_wait_timeout_s=wait)
        read_columns = _resolve_columns(table_info, opts, columns)
        return _plan_at_ts(store, fresh_opts, table_info, read_columns,
                           tuple(hidden) if hidden is not None else opts.hidden,
                           _with_table_names(predicate, table_info), client, latch, store_safe_point, started)

    choice: StalenessChoice[ScanPlan] = within_staleness(
        opts.table, bound, wait, upstream, lambda: connect_upstream(opts, recorded_upstream),
        lambda client: int(client.get_ts()), at_fresh_ts, lambda table: "the store",
        lambda wait_s: [settled_resolved_ts(store.snapshot, table_info, opts.table, wait_s,
                                            writer_live=writer_live_on(opts.store, opts.latch))],
        min(1.0, opts.region_wait_timeout_s))
    if choice.caught_up is not None:
        planned = choice.caught_up
        planned.options = opts
        return planned
    return _plan_from_store(store, opts, table_info, choice.ts, choice.how, columns, hidden, predicate, latch,
                            store_safe_point, started)


def query_snapshot_ts(store: str | os.PathLike[str] | Store, tables: list[str],
                      options: Mapping[str, str] | None = None, *, upstream: UpstreamClient | None = None,
                      latch: Latch | None = None, read: Sequence[tuple[str, int]] = ()) -> QuerySnapshot:
    """The one snapshot ts of a query over ``tables`` of ``store`` (open, or its directory, opened
    read-only here once the request is checked; ``scan.snapshot.query_snapshot``),
    with ``max_staleness``'s catch-up the planner's: each table planned at the fresh ts
    (isolation RC: no lock is decided) within what is left of the wait. ``read``: (table, ts)
    of the tables earlier queries already read; each read before the newest of those ts is
    checked for changes up to it (``table_change_since``)."""
    asked = query_options(store_root(store), tables, options)
    with opened_store(store) as opened:
        def changed(o: ScanOptions, after: int, through: int) -> TableChange | None:
            return table_change_since(opened, o, after, through, upstream=upstream, latch=latch)

        def catch_up_tables(opts: Sequence[ScanOptions], client: UpstreamClient, ts: int, wait_s: float) -> None:
            deadline = time.monotonic() + wait_s
            for o in opts:
                # the learner read of each table at the fresh ts, within what is left of the wait
                left = max(0.001, deadline - time.monotonic())
                checked = replace(o, snapshot_ts=ts, max_staleness_s=None, region_wait_timeout_s=left, isolation="RC")
                plan(opened, options=checked, upstream=client, latch=latch).close()

        return query_snapshot(opened, asked, upstream=upstream, latch=latch, catch_up=catch_up_tables, read=read,
                              first_change=changed)


def table_change_since(store: Store, opts: ScanOptions, after: int, through: int, *,
                       upstream: UpstreamClient | None = None, latch: Latch | None = None) -> TableChange | None:
    """The first change of ``opts.table`` in (after, through] (``store.commit_history``), or None
    when a read at ``through`` returns what a read at ``after`` did. The table is planned at
    ``through`` first, as its read there would be: the learner read brings every commit at or
    below it into the store and the locks at or below it are decided (a store that has resolved
    ``through`` already needs no upstream for either); the plan's lease pins the parts looked at."""
    checked = replace(opts, snapshot_ts=through, as_of=None, session_snapshot_ts=None, snapshot="fresh",
                      max_staleness_s=None, isolation="SI", columns=(), hidden=(), handle_ranges=None)
    with plan(store, options=checked, upstream=upstream, latch=latch) as planned:
        parts = [part for p in planned.partitions for rng in p.ranges for part in rng.parts]
        with store.snapshot() as view:
            return first_change(view, opts.store, opts.table, parts, after, through)

_COLUMN_KEYS = ("col", "in", "is_null", "is_not_null", "starts_with")


def _with_table_names(predicate: Expr | None, table_info: TableInfo) -> Expr | None:
    """The filter with column names spelled as the table spells them (TiDB names are
    case-insensitive; a user's ``.schema(...)`` may spell them otherwise)."""
    if predicate is None:
        return None
    from pyspark_theflash.store.predicate import expr_from_dict

    names = {c.name.lower(): c.name for c in table_info.columns}

    def rename_keys(d: Mapping[str, object]) -> dict[str, object]:
        return {k: (names.get(v.lower(), v) if k in _COLUMN_KEYS and isinstance(v, str) else rename(v))
                for k, v in d.items()}

    def rename(d: object) -> object:
        if isinstance(d, dict):
            return rename_keys(d)
        if isinstance(d, list):
            return [rename(x) for x in d]
        return d

    return expr_from_dict(rename_keys(predicate.to_dict()))


def _resolve_columns(table_info: TableInfo, opts: ScanOptions, columns: Sequence[str] | None) -> tuple[str, ...] | None:
    read_columns = tuple(columns) if columns is not None else (opts.columns or None)
    if read_columns is None:
        return None
    # TiDB column names are case-insensitive; Spark's may come in any case.
    known = {c.name.lower(): c.name for c in table_info.columns}
    unknown = [c for c in read_columns if c.lower() not in known]
    for name in unknown:
        if name.lower() in table_info.uncomputable_columns:
            try:
                table_info.column(name)
            except Exception as exc:  # the sentence that says which VIRTUAL column and why
                raise ScanOptionError(str(exc)) from None
    if unknown:
        raise ScanOptionError(
            f"table {opts.table} has no column(s) {unknown}; its columns are {[c.name for c in table_info.columns]}"
        )
    return tuple(known[c.lower()] for c in read_columns)



def _plan_at_ts(store: Store, opts: ScanOptions, table_info: TableInfo, read_columns: tuple[str, ...] | None,
                read_hidden: tuple[str, ...], predicate: Expr | None, upstream: UpstreamClient, latch: Latch | None,
                store_safe_point: int, started: float) -> ScanPlan:
    ts, safe_point, fresh = fresh_or_requested(upstream, opts, store_safe_point)
    result = _leased_plan(store, opts, table_info, ts, latch, safe_point, fresh, upstream)
    result.stats.snapshot = "requested" if opts.requested_ts() else "fresh"
    try:
        _catch_up_and_partition(result, store, upstream, result_latch(result, latch, opts), read_columns, read_hidden,
                                predicate)
    except BaseException:
        result.close()
        raise
    result.stats.plan_s = time.monotonic() - started
    return result


def _leased_plan(store: Store, opts: ScanOptions, table_info: TableInfo, ts: int, latch: Latch | None, safe_point: int,
                 now_ts: int, upstream: UpstreamClient | None = None) -> ScanPlan:
    """The plan at ``ts`` holding its read lease (refused below the safe point); with a
    ``pd://`` upstream the lease also holds PD's service safe point (``scan/gc_hold.py``)."""
    if latch is None:
        from pyspark_theflash.latch import connect as connect_latch

        latch = connect_latch(opts.store, opts.latch)
    result = ScanPlan(store=opts.store, table=opts.table, table_id=int(table_info.id), ts=ts, options=opts,
                      table_info=table_info)
    from pyspark_theflash.latch import LeaseRefusedError

    lease_ts = ts if opts.lease_ts is None else opts.lease_ts
    try:
        hold = None
        address = getattr(upstream, "address", "")
        if getattr(upstream, "resolved_ts_reads", False) and str(address).startswith("pd://"):
            from pyspark_theflash.scan.gc_hold import ServiceSafePointHold

            hold = ServiceSafePointHold(str(address), opts.store, latch, opts.lease_ttl_s)
        result.lease = ReadLease(latch, lease_ts, opts.lease_ttl_s, default_holder(f"scan {opts.table}"), owner=result,
                                 upstream_hold=hold)
    except LeaseRefusedError as exc:
        if opts.changes_from is not None:
            # a change read needs the store's versions, which its own safe point bounds (the
            # upstream's may be higher: the store keeps versions for its leases)
            with store.snapshot() as view:
                store_safe_point = int(view.gc_safe_point())
            raise ChangesBelowSafePointError(opts.table, opts.changes_from, ts, store_safe_point) from exc
        raise SnapshotTsOutOfRangeError(ts, safe_point, now_ts,
                                        f"refused by the store's latch ({exc})") from exc
    return result


def _catch_up_and_partition(result: ScanPlan, store: Store, upstream: UpstreamClient | None, latch: Latch,
                            columns: tuple[str, ...] | None, hidden: tuple[str, ...], predicate: Expr | None) -> None:
    # a partitioned table's rows live under its partitions' ids: the ones the filter can match
    ids, result.pruned_partitions = pruned_partitions(result.table_info, predicate)
    caught = catch_up(store.snapshot, upstream, latch, result.ts, result.options, result.table_id, ids,
                      partitioning_of(result.table_info) is not None)
    try:
        # a few objects a region, none of them garbage: the collections they set off scan them
        # in vain (not held over the waits above: the pause is process-wide)
        with cyclic_gc_paused():
            _partition(result, store, caught.learner, caught.view, upstream, columns, hidden, predicate, caught.early)
    finally:
        caught.view.close()


def _partition(result: ScanPlan, store: Store, learner: LearnerRead, view: StoreView, upstream: UpstreamClient | None,
               columns: tuple[str, ...] | None, hidden: tuple[str, ...], predicate: Expr | None,
               early: LockResolver | None = None) -> None:
    opts, ts, table_id, stats = result.options, result.ts, result.table_id, result.stats
    first_view = view
    stored = read_table(store, view, opts.table, opts, ts)
    if stored is None or int(stored.id) != table_id:
        raise TableNotReplicatedError(
            f"store {opts.store} has no table {opts.table} (id {table_id}) although upstream has it: is the writer "
            "replicating it (theflash writer run --tables ...)?"
        )
    result.table_info = stored
    ids, result.pruned_partitions = pruned_partitions(stored, predicate)
    partitioning = partitioning_of(stored)
    if partitioning is not None:
        stats.table_partitions = [partitioning.definition(i).name for i in ids]
        stats.table_partitions_pruned = list(result.pruned_partitions)
    cover = covering_physical_columns(view, ids)
    if cover is not None:
        stats.regions = len(cover.ids)
        read_index = np.fromiter(learner.read_index, np.int64, len(learner.read_index))
        stats.regions_resolved_ts = stats.regions - int(np.isin(cover.ids, read_index).sum())
    else:
        regions = covering_physical(view, ids)
        stats.regions = len(regions)
        stats.regions_resolved_ts = stats.regions - len([r for r in regions if region_id(r) in learner.read_index])
    stats.regions_read_index = len(learner.read_index)

    if upstream is None:
        # from the store alone: the regions of the view this read uses must cover the table
        gaps = table_resolved_ts(view, result.table_info, opts.table).gaps
        if gaps:
            raise MissingRegionsError(opts.table, opts.store, list(gaps))
    # From the store alone the ts is at or below every region's resolved ts, so no lock there
    # can commit at or below it (one the store holds with an older start ts was prewritten
    # after the resolved ts passed it, and commits above it, as TiKV's resolved ts promises):
    # nothing is left to decide. Otherwise the locks at or below ts are decided upstream.
    if opts.isolation == "SI" and upstream is not None:
        def table_locks(v: StoreView) -> list[LockInfo]:
            found = locks_of(v, ids)
            stats.locks_seen = max(stats.locks_seen, len([lk for lk in found if int(lk.start_ts) <= ts]))
            return found

        resolver = LockResolver(upstream=upstream, learner=learner, locks=table_locks, ts=ts)
        view = resolver.run(view, time.monotonic() + opts.lock_wait_timeout_s, opts.lock_wait_timeout_s)
        # a learner read on resolved ts resolved what held it back while it waited (early)
        stats.txns_committed_for_us = resolver.resolved + (early.resolved if early else 0)
        stats.txns_rolled_back = resolver.rolled_back + (early.rolled_back if early else 0)
        stats.lock_backoffs = resolver.backoffs
    stats.learner_wait_s = learner.waited_s

    result.manifest_version = int(view.version)
    # Like Spark's file sources: never fewer partitions than there are cores to read them
    # (while regions last), of about equal size, never much more than the target (group_ranges).
    def target_of(total: int) -> int:
        return min(opts.partition_target_bytes, max(1, -(-total // max(1, opts.min_partitions))))

    tables = _table_spans(view, ids, table_id, opts.handle_ranges, predicate, result.table_info, stats)
    if tables is not None:
        grouped = grouped_range_scans(tables, target_of(sum(int(t.found.size[t.keep].sum()) for t in tables)))
    else:
        ranges = _range_scans(view, ids, table_id, opts.handle_ranges, predicate, result.table_info, stats)
        grouped = [merge_group(group) for group in group_ranges(ranges, target_of(sum(r.size_bytes for r in ranges)))]
    predicate_json = predicate.to_json() if predicate is not None else None
    table_json = result.table_info.to_json()
    engine = engine_of_view(view)
    partitions: list[ScanPartition] = []
    for rng in grouped:
        partitions.append(ScanPartition(
            index=len(partitions), store=opts.store, latch=opts.latch, table=opts.table,
            table_info=table_json, db=result.table_info.db, ts=ts, lease_id=result.lease_id,
            lease_ttl_s=opts.lease_ttl_s, ranges=(rng,), columns=columns, hidden=hidden,
            predicate_json=predicate_json, batch_rows=opts.batch_rows, size_bytes=rng.size_bytes, engine=engine,
            token=opts.token, changes_from=opts.changes_from, changes_net=opts.changes_net,
        ))
        stats.parts += len(rng.parts)
        stats.bytes += rng.size_bytes
    if view is not first_view:
        view.close()
    stats.partitions = len(partitions)
    result.partitions = partitions


def _table_spans(view: StoreView, ids: Sequence[int], table_id: int, allowed: Sequence[tuple[HandleBound, HandleBound]] | None,
                 predicate: Expr | None, table_info: TableInfo, stats: PlanStats) -> list[TableSpans] | None:
    """The spans of each physical table's regions, their parts and bytes, and the ones the filter
    keeps, as columns (``scan.partitions``): no object per region. None where the view cannot
    give them (a clustered table, overlapping regions, a handle that is not an int64): the
    caller takes ``_range_scans`` then."""
    out = []
    for tid in ids:
        regions = view.table_region_columns(tid)
        spans = region_spans(regions, allowed) if regions is not None else None
        if spans is None:
            return None
        parts = view.parts(tid)
        found = span_parts(parts, spans)
        if found is None:
            return None
        keep = np.ones(len(spans), bool)
        if predicate is not None:
            keep = _spans_might_match(predicate, parts, spans, found, table_info)
        out.append(TableSpans(None if tid == table_id else tid, spans, parts, found, keep))
    stats.regions_pruned += sum(int((~t.keep).sum()) for t in out)
    return out


def _range_scans(view: StoreView, ids: Sequence[int], table_id: int, allowed: Sequence[tuple[HandleBound, HandleBound]] | None,
                 predicate: Expr | None, table_info: TableInfo, stats: PlanStats) -> list[RangeScan]:
    """``_table_spans`` region by region, as ``RangeScan`` objects: for what it cannot take as
    columns, and the reference the tests hold it to (tests/integration/test_plan_region_columns.py)."""
    ranges = []
    for tid in ids:
        physical = None if tid == table_id else tid
        spans = [(region_id(region), lo, hi) for region, region_range in covering_regions(view, tid)
                 for lo, hi in _restricted(region_range, allowed)]
        # the parts of every region's range and their bytes there, at once (as arrays over int
        # handles; None: asked range by range)
        found = parts_by_range(view.parts(tid), [(lo, hi) for _, lo, hi in spans])
        for k, (rid, lo, hi) in enumerate(spans):
            if found is not None:
                parts, size = found[k]
            else:
                parts = tuple(view.parts(tid, lo, hi))
                size = estimate_bytes(parts, lo, hi)
            if predicate is not None and not _might_match(predicate, parts, table_info, lo, hi):
                stats.regions_pruned += 1
                continue
            ranges.append(RangeScan((rid,), lo, hi, parts, size, physical))
    return ranges


def _restricted(region_range: tuple[HandleBound, HandleBound], allowed: Sequence[tuple[HandleBound, HandleBound]] | None) -> list[tuple[HandleBound, HandleBound]]:
    """The parts of a region's handle range inside ``allowed`` (None: all of it): a service
    client reading one planned stream's handle ranges (``handle_ranges``)."""
    if allowed is None:
        return [region_range]
    return [r for r in (intersect(region_range, a) for a in allowed) if r is not None]


def _might_match(predicate: Expr, parts: Sequence[PartRef], table_info: TableInfo, lo: HandleBound,
                 hi: HandleBound) -> bool:
    """Can any version of a row in handles [lo, hi) match? Exact pruning: statistics are
    merged over every version (if none matches, no chosen version does), and the range
    itself bounds the handle column of an integer primary key — so regions are pruned by
    key even when compaction has merged their parts into one.

    Handles are int64 in key order; an UNSIGNED BIGINT key keeps its bits in the handle, so
    ids >= 2**63 are the negative handles, below every small id: the handle range maps to
    one or two ranges of the column (``key_value_ranges``), and the range can match if
    either does."""
    from pyspark_theflash.store.predicate import merge_stats

    try:
        stats = merge_stats(p.stats_by_name(table_info) for p in parts) if parts else {}
    except Exception:  # statistics of an odd type: do not prune
        return True
    return _might_match_stats(predicate, stats, table_info, lo, hi)


def _might_match_stats(predicate: Expr, stats: dict[str, ColumnStats], table_info: TableInfo, lo: HandleBound,
                       hi: HandleBound) -> bool:
    """``_might_match`` of a range whose parts' statistics are merged already (``stats``)."""
    from pyspark_theflash.store.predicate import ColumnStats

    try:
        handle = table_info.handle_column
        if handle is None or (lo is None and hi is None):
            return bool(predicate.might_match(stats))
        if isinstance(lo, bytes) or isinstance(hi, bytes):  # (an int handle column has int handles)
            return True
        known = stats.get(handle.name)
        known_min = known.min if known is not None else None
        known_max = known.max if known is not None else None
        for low, high in key_value_ranges(lo, hi, bool(handle.unsigned)):
            if known_min is not None:
                low = max(low, known_min)
            if known_max is not None:
                high = min(high, known_max)
            if low > high:
                continue
            if predicate.might_match({**stats, handle.name: ColumnStats(low, high, 0, None)}):
                return True
        return False
    except Exception:  # statistics of an odd type: do not prune
        return True


def _spans_might_match(predicate: Expr, parts: Sequence[PartRef], spans: Spans, found: SpanParts,
                       table_info: TableInfo) -> np.ndarray:
    """``_might_match`` of every span (bool), each set of parts' statistics merged once: the
    spans of one set (most neighbouring regions share their parts) share them, and the filter
    is asked once a set where the handle does not bound it (no integer primary key). Where it
    does, it is asked per span with its handle range: a Python step per region, a filter's."""
    from pyspark_theflash.store.predicate import merge_stats

    n = len(spans)
    if n == 0:
        return np.zeros(0, bool)
    member = np.zeros((n, len(parts)), bool)
    member[np.repeat(np.arange(n), np.diff(found.starts)), found.part_at] = True
    packed = np.ascontiguousarray(np.packbits(member, axis=1)) if parts else np.zeros((n, 1), np.uint8)
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, which = np.unique(keys, return_index=True, return_inverse=True)
    bounds, at = found.starts.tolist(), found.part_at.tolist()
    merged: list[dict[str, ColumnStats] | None] = []  # None: the merge failed (never pruned)
    for f in first.tolist():
        met = [parts[j] for j in at[bounds[f]:bounds[f + 1]]]
        try:
            merged.append(merge_stats(p.stats_by_name(table_info) for p in met) if met else {})
        except Exception:
            merged.append(None)
    try:
        by_key = table_info.handle_column is None
    except Exception:
        by_key = False
    unbounded = spans.lo_open & spans.hi_open
    whole = [stats is None or _might_match_stats(predicate, stats, table_info, None, None) for stats in merged]
    keep = np.array(whole, bool)[which.ravel()]
    if not by_key:
        for k in np.flatnonzero(~unbounded).tolist():
            stats = merged[int(which[k])]
            lo, hi = spans.bound(k)
            keep[k] = stats is None or _might_match_stats(predicate, stats, table_info, lo, hi)
    return keep


_INT64_MIN, _UINT64 = -(1 << 63), 1 << 64


def key_value_ranges(lo: int | None, hi: int | None, unsigned: bool) -> list[tuple[int, int]]:
    """The values [low, high] (inclusive) of an integer primary key whose rows have handles in
    [lo, hi) (None = unbounded). Signed: one range. UNSIGNED BIGINT: the handle is the value's
    bits as int64, so handles [0, 2**63) are values [0, 2**63) and negative handles are values
    [2**63, 2**64): a range across 0 maps to two ranges of values."""
    first = _INT64_MIN if lo is None else lo
    last = (1 << 63) - 1 if hi is None else hi - 1
    if not unsigned:
        return [(first, last)]
    out: list[tuple[int, int]] = []
    if first <= min(last, -1):  # the negative handles: values from 2**63 up
        out.append((first + _UINT64, min(last, -1) + _UINT64))
    if max(first, 0) <= last:
        out.append((max(first, 0), last))
    return out

