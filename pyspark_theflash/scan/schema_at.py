"""The schema a read at a past ts uses with ``schema=as_of``: the table that had the name at
ts, with its schema version in force then (docs/schema.md).

That answer is only right once the store holds every schema change committed at or below ts.
A DDL event is not a region's event, so the learner read's region indexes do not cover it;
what does: the upstream appends a DDL event in the same step as it takes its commit ts, so a
store in which some region's resolved ts reached ts has applied every DDL at or below it
(``StoreView.schema_changes_seen_until``). Until then, ask the writer to flush and look again.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pyspark_theflash.codec.tso import ts_to_datetime
from pyspark_theflash.scan.context import check_requested_ts, close_upstream, connect_upstream, upstream_address
from pyspark_theflash.scan.errors import SchemaNotCaughtUpError, TableNotAtTsError
from pyspark_theflash.scan.options import ScanOptions
from pyspark_theflash.store.errors import UnknownTableNameError

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.store import Store
    from pyspark_theflash.store.views import StoreView

POLL_S = 0.05


def lookup_table(view: StoreView, table: str) -> TableInfo | None:
    """The store's current schema of ``db.table``, or None when the store does not have it."""
    try:
        return view.table(table)
    except UnknownTableNameError:
        return None


def read_table(store: Store, view: StoreView, table: str, options: ScanOptions,
               ts: int | None = None) -> TableInfo | None:
    """The store's schema of ``db.table`` a read with ``options`` uses, or None when the store
    does not have it: the current one, or with option ``schema=as_of`` the one in force at ``ts``
    (default: the ts the options ask for; none asked: the current one), once the store has
    every schema change up to it (``table_as_of``, which looks again through ``store``, the
    open store ``view`` is of)."""
    # as_of means something only for a ts the user named; a fresh ts reads the current table
    if options.schema != "as_of" or not options.requested_ts():
        return lookup_table(view, table)
    try:
        return table_as_of(store, view, table, ts or int(options.requested_ts() or 0), options)
    except UnknownTableNameError:
        return None


def no_table_at_ts(view: StoreView, opts: ScanOptions, ts: int) -> TableNotAtTsError:
    """Why a read at ``ts`` (schema=as_of) finds no table of the name: when the table that has
    the name now was created, if the store knows one."""

    def when(t: int) -> str:
        return f"ts {t} ({ts_to_datetime(t).strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} UTC)"

    head = f"table {opts.table} did not exist at {when(ts)}"
    try:
        now = view.table(opts.table)
    except UnknownTableNameError:
        return TableNotAtTsError(f"{head}: no table had that name then, and store {opts.store} has no table of that "
                                 "name now (or the writer does not replicate it); check the name and the ts", today_table=False)
    created = view.histories().get(int(now.id))
    if created is not None and created.created_ts > ts:
        return TableNotAtTsError(f"{head}: the table of that name was created at {when(created.created_ts)} "
                                 f"(table id {now.id}); read at or after that ts")
    return TableNotAtTsError(f"{head}: no table had that name then (store {opts.store})")


def table_as_of(store: Store, view: StoreView, table: str, ts: int, options: ScanOptions) -> TableInfo:
    """``view.table_at(table, ts)`` once the store knows every schema change at or below ts
    (waiting for the writer up to the read's region_wait_timeout, looking again through fresh
    snapshots of ``store``, the open store ``view`` is of); raises ``UnknownTableNameError``
    when no table had the name then."""
    if view.schema_changes_seen_until() >= ts:
        return view.table_at(table, ts)
    _refuse_out_of_range(view, ts, options)  # a ts in the future would never be seen: say so now
    from pyspark_theflash.latch import FlushTimeoutError
    from pyspark_theflash.latch import connect as connect_latch

    deadline = time.monotonic() + options.region_wait_timeout_s
    seen = 0
    with connect_latch(options.store, options.latch) as latch:
        while True:
            with store.snapshot() as fresh:
                seen = fresh.schema_changes_seen_until()
                if seen >= ts:
                    return fresh.table_at(table, ts)
                regions = [int(r.id) for r in fresh.regions()]
            left = deadline - time.monotonic()
            if left <= 0:
                raise SchemaNotCaughtUpError(table, ts, seen, options.region_wait_timeout_s)
            try:  # the writer flushes what it applied; resolved ts move with the binlog
                latch.wait_flush(latch.request_flush(regions), timeout_s=min(left, 1.0))
            except FlushTimeoutError:
                pass
            time.sleep(POLL_S)


def _refuse_out_of_range(view: StoreView, ts: int, options: ScanOptions) -> None:
    try:
        upstream = connect_upstream(options, upstream_address(options, view))
    except Exception:
        return  # no upstream to ask: the wait below says what it saw
    try:
        check_requested_ts(upstream, options, int(view.gc_safe_point()))
    finally:
        close_upstream(upstream)
