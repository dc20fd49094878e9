"""Spark reads a ClickHouse-engine store through ``format("theflash")`` with no other change.

The writer ran ``--engine clickhouse`` and has stopped (it owned the ClickHouse directory; a
Spark Python worker opens it for its read, one reader process at a time). Spark's read at a
snapshot ts must equal the native engine's read of the same snapshot — the store's own
TxnMergeTree parts, which the ClickHouse engine's row sink mirrors — row for row.
"""
from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import pytest

from flash_rig import FlashRig
from pyspark_theflash.scan.session import open_read_session, read_stream
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.tidb import make_column, record_key

pytestmark = pytest.mark.spark

TABLE = "sparkch.orders"
ROWS = 200


def test_spark_reads_a_clickhouse_store_as_the_native_engine_reads_it(spark: Any, tmp_path: Path) -> None:
    rig = FlashRig(tmp_path / "rig")
    try:
        table = rig.cluster.create_table(TABLE, [
            make_column("id", "BIGINT", not_null=True), make_column("status", "VARCHAR(8)"),
            make_column("total", "DECIMAL(12,2)"), make_column("placed", "DATETIME(6)"),
            make_column("qty", "INT")], primary_key=["id"])
        for region in (1, 2, 3):
            rig.cluster.split_at(record_key(table, region * ROWS // 4))
        with rig.cluster.txn() as t:
            for i in range(ROWS):
                t.insert(TABLE, {"id": i, "status": ("new", "paid", "sent")[i % 3], "total": decimal.Decimal(i) / 8,
                                 "placed": dt.datetime(2025, 1, 1) + dt.timedelta(minutes=i), "qty": i % 11 or None})
        with rig.cluster.txn() as t:
            for i in range(0, ROWS, 5):
                t.update(TABLE, {"id": i, "status": "void", "qty": -i})
            for i in range(3, ROWS, 17):
                t.delete(TABLE, i)
        rig.start_writer(interval_s=0.05, engine="clickhouse")
        rig.wait_replicated(TABLE)
        ts = rig.cluster.tso.get_ts()
        # a read session at ts in this process (the writer's): its learner read makes the store
        # flush everything up to ts
        with open_read_session(rig.store, TABLE, snapshot_ts=ts, options={"upstream": rig.upstream}) as s:
            assert sum(b.num_rows for n in range(len(s.streams)) for b in read_stream(s, n)) > 0
        rig.stop_writer()  # lets go of the ClickHouse directory

        df = spark.read.format("theflash").options(**rig.options(snapshot_ts=str(ts))).load(TABLE)
        got = sorted(tuple(r) for r in df.collect())
        # the Python workers read the streams from ClickHouse (opened under the readers' lock)
        assert (Path(rig.store) / "clickhouse" / "readers.lock").exists()
        store = Store.open(rig.store, readonly=True)
        try:
            native = store.scan_table(TABLE, ts).to_pylist()
        finally:
            store.close()
        expected = sorted(tuple(r.values()) for r in native)
        assert len(got) == ROWS - len(range(3, ROWS, 17))
        assert got == expected
        by_status = {r["status"]: r["n"] for r in df.groupBy("status").count().withColumnRenamed("count", "n").collect()}
        assert by_status["void"] == len([i for i in range(0, ROWS, 5) if (i - 3) % 17 != 0])
    finally:
        rig.close()


def test_spark_reads_a_clickhouse_store_through_the_writers_service_while_it_writes(spark: Any, tmp_path: Path) -> None:
    """The writer (``--engine clickhouse --serve``) owns the ClickHouse directory and keeps
    writing; Spark's Python workers read their streams through its service (advertised in the
    store), each a session at the query's ts over its own handle ranges."""
    rig = FlashRig(tmp_path / "rig")
    try:
        table = rig.cluster.create_table(TABLE, [
            make_column("id", "BIGINT", not_null=True), make_column("status", "VARCHAR(8)"),
            make_column("total", "DECIMAL(12,2)")], primary_key=["id"])
        for region in (1, 2):
            rig.cluster.split_at(record_key(table, region * ROWS // 3))
        with rig.cluster.txn() as t:
            for i in range(ROWS):
                t.insert(TABLE, {"id": i, "status": ("new", "paid")[i % 2], "total": decimal.Decimal(i) / 8})
        rig.start_writer(interval_s=0.05, engine="clickhouse", serve_port=0)
        rig.wait_replicated(TABLE)
        ts = rig.cluster.tso.get_ts()
        with rig.cluster.txn() as t:  # after ts: not in the snapshot
            t.update(TABLE, {"id": 1, "status": "late"})
        df = spark.read.format("theflash").options(**rig.options(snapshot_ts=str(ts))).load(TABLE)
        got = sorted(tuple(r) for r in df.collect())
        store = Store.open(rig.store, readonly=True)
        try:
            native = store.scan_table(TABLE, ts).to_pylist()
        finally:
            store.close()
        assert got == sorted(tuple(r.values()) for r in native)
        assert len(got) == ROWS and ("late" not in {r[1] for r in got})
    finally:
        rig.close()
