"""Sharing one snapshot ts across reads of a Spark session.

``spark.conf.set("theflash.snapshot_ts", ts)`` makes every later ``format("theflash")``
read of a session with the connector jar use ``ts`` (unless the read gives
``snapshot_ts``/``as_of`` itself): the connector reads the session conf as it plans. The
Python data source is handed its read options only, never the session conf, so a session
without the jar pins nothing this way: give each read ``snapshot_ts``, or SQL
``CREATE TEMPORARY VIEW ... USING theflash OPTIONS (snapshot_ts '...')``.

    with pinned_snapshot(spark, store="/data/flash") as ts:
        accounts = spark.read.format("theflash").option("store", "/data/flash").load("bank.accounts")
        orders = spark.read.format("theflash").option("store", "/data/flash").load("shop.orders")
        ...  # both at ts, held against GC by a lease for the block
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

from pyspark_theflash.scan.options import SESSION_SNAPSHOT_OPTION

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@contextlib.contextmanager
def pinned_snapshot(spark: SparkSession, store: str, ts: int | None = None, upstream: str | None = None,
                    latch: str | None = None, lease_ttl_s: float = 120.0) -> Iterator[int]:
    """Pin one snapshot ts for a block of work: sets ``theflash.snapshot_ts`` in the session
    and holds a read lease at it (renewed) until the block ends; yields the ts. The session
    must read through the connector jar (``theflash_session()``): the Python data source
    never sees the session conf, and a pin it ignored would read the latest data instead."""
    from pyspark_theflash.latch import connect as connect_latch
    from pyspark_theflash.scan.lease import ReadLease, default_holder
    from pyspark_theflash.scan.snapshot import pinned_ts
    from pyspark_theflash.spark.session import has_connector_jar

    if not has_connector_jar(spark):
        raise RuntimeError("pinned_snapshot() pins reads of the connector jar, and this session reads through the "
                           "Python data source, which never sees the session conf: start the session with "
                           "theflash_session() (the jar), or give each read option snapshot_ts")
    ts = pinned_ts(store, ts, upstream)
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
