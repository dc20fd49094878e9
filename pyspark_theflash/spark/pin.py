"""Sharing one snapshot ts across reads of a Spark session.

``spark.conf.set("theflash.snapshot_ts", ts)`` makes every later ``format("theflash")``
read of the session use ``ts`` (unless the read gives ``snapshot_ts``/``as_of`` itself).
Spark hands a Python data source its read options only, never the session conf, so
:func:`install_session_snapshot_hook` copies the conf into the options of each
``format("theflash")`` read as it is built (``DataFrameReader.load``/``table``). SQL
``CREATE TEMPORARY VIEW ... USING theflash OPTIONS (snapshot_ts '...')`` passes it directly.

    with pinned_snapshot(spark, store="/data/flash") as ts:
        accounts = spark.read.format("theflash").option("store", "/data/flash").load("bank.accounts")
        orders = spark.read.format("theflash").option("store", "/data/flash").load("shop.orders")
        ...  # both at ts, held against GC by a lease for the block
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

from pyspark_theflash.scan.options import SESSION_SNAPSHOT_OPTION

SOURCE_NAMES = ("theflash", "pyspark_theflash", "pyspark_theflash.DefaultSource")
_INSTALLED = threading.Lock()
_installed = False


def install_session_snapshot_hook() -> None:
    """Make ``DataFrameReader`` pass the session's ``theflash.snapshot_ts`` to theflash reads
    (idempotent; classic PySpark)."""
    global _installed
    with _INSTALLED:
        if _installed:
            return
        from pyspark.sql.readwriter import DataFrameReader

        original_format = DataFrameReader.format
        original_load = DataFrameReader.load

        def format(self: Any, source: str) -> Any:
            self._theflash_source = str(source)
            return original_format(self, source)

        def load(self: Any, path: Any = None, format: str | None = None, schema: Any = None, **options: Any) -> Any:
            source = format or getattr(self, "_theflash_source", None)
            if source is not None and str(source).lower() in {s.lower() for s in SOURCE_NAMES}:
                pinned = self._spark.conf.get(SESSION_SNAPSHOT_OPTION, None)
                if pinned:
                    options.setdefault(SESSION_SNAPSHOT_OPTION, str(pinned))
            return original_load(self, path, format, schema, **options)

        format.__doc__ = original_format.__doc__
        load.__doc__ = original_load.__doc__
        DataFrameReader.format = format  # type: ignore[method-assign]
        DataFrameReader.load = load  # type: ignore[method-assign]
        _installed = True


@contextlib.contextmanager
def pinned_snapshot(spark: Any, store: str, ts: int | None = None, upstream: str | None = None,
                    latch: str | None = None, lease_ttl_s: float = 120.0) -> Iterator[int]:
    """Pin one snapshot ts for a block of work: sets ``theflash.snapshot_ts`` in the session
    and holds a read lease at it (renewed) until the block ends; yields the ts."""
    from pyspark_theflash.latch import connect as connect_latch
    from pyspark_theflash.scan.lease import ReadLease, default_holder
    from pyspark_theflash.scan.options import ScanOptions
    from pyspark_theflash.scan.planner import connect_upstream, open_store, upstream_address
    from pyspark_theflash.scan.snapshot import check_snapshot_ts

    install_session_snapshot_hook()
    options = ScanOptions(store=store, table="pinned.snapshot", upstream=upstream)
    with open_store(store) as opened, opened.snapshot() as view:
        store_safe_point = int(view.gc_safe_point())
        address = upstream_address(options, view)
    client = connect_upstream(options, address)
    try:
        now = int(client.get_ts())
        upstream_safe_point = int(client.gc_safe_point())
    finally:
        client.close()
    if ts is None:
        ts = now
    check_snapshot_ts(int(ts), max(upstream_safe_point, store_safe_point), now)
    lease = ReadLease(connect_latch(store, latch), int(ts), lease_ttl_s, default_holder("pinned_snapshot"))
    previous = spark.conf.get(SESSION_SNAPSHOT_OPTION, None)
    spark.conf.set(SESSION_SNAPSHOT_OPTION, str(ts))
    try:
        yield int(ts)
    finally:
        if previous is None:
            spark.conf.unset(SESSION_SNAPSHOT_OPTION)
        else:
            spark.conf.set(SESSION_SNAPSHOT_OPTION, previous)
        lease.release()
