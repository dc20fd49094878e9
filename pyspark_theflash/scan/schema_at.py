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
from typing import Any

from pyspark_theflash.scan.errors import SchemaNotCaughtUpError
from pyspark_theflash.scan.options import ScanOptions

POLL_S = 0.05


def table_as_of(view: Any, table: str, ts: int, options: ScanOptions) -> Any:
    """``view.table_at(table, ts)`` once the store knows every schema change at or below ts
    (waiting for the writer up to the read's region_wait_timeout); raises
    ``UnknownTableNameError`` when no table had the name then."""
    if view.schema_changes_seen_until() >= ts:
        return view.table_at(table, ts)
    _refuse_out_of_range(view, ts, options)  # a ts in the future would never be seen: say so now
    from pyspark_theflash.latch import FlushTimeoutError
    from pyspark_theflash.latch import connect as connect_latch
    from pyspark_theflash.store import Store

    deadline = time.monotonic() + options.region_wait_timeout_s
    seen = 0
    with Store.open(options.store, readonly=True) as store, connect_latch(options.store, options.latch) as latch:
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


def _refuse_out_of_range(view: Any, ts: int, options: ScanOptions) -> None:
    from pyspark_theflash.scan.planner import check_requested_ts, connect_upstream, upstream_address

    try:
        upstream = connect_upstream(options, upstream_address(options, view))
    except Exception:
        return  # no upstream to ask: the wait below says what it saw
    try:
        check_requested_ts(upstream, options, int(view.gc_safe_point()))
    finally:
        if hasattr(upstream, "close"):
            upstream.close()
