"""The JVM connector (jvm-shim, ``io.theflash.spark.TheFlashTableProvider``) in a real local
Spark with the jar, reading from a real ``theflash serve`` on loopback while the types
workload inserts, updates and deletes: the same rows as the Python data source at one ts,
column pruning and exact filter pushdown in the plan, and its errors word for word."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig, wait_for
from jvm_spark import JvmSpark, RemoteError
from pyspark_theflash.service import serve
from pyspark_theflash.upstream.workloads import TYPES_TABLE, TypesWorkload, types_columns

pytestmark = pytest.mark.spark

ALL = [name for name, _, _ in types_columns()]


class Served:
    def __init__(self, rig: FlashRig, workload: TypesWorkload, http_url: str) -> None:
        self.rig, self.workload, self.http_url = rig, workload, http_url

    def fresh_ts(self, commits: int = 10) -> int:
        before = self.workload.stats.committed
        wait_for(lambda: self.workload.stats.committed >= before + commits, 60, "the workload to commit")
        return int(self.rig.cluster.get_ts())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    rig = FlashRig(tmp_path_factory.mktemp("jvm-types"))
    workload = TypesWorkload(rig.cluster, rows=300, seed=5, threads=1, rate=100)
    try:
        workload.setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TYPES_TABLE)
        with serve(rig.store, port=0) as running:
            workload.start()
            try:
                yield Served(rig, workload, running.http_url)
            finally:
                workload.stop()
        assert not workload.stats.errors, workload.stats.summary()
    finally:
        rig.close()


# -- functions run in the Spark worker with the jar (tests/jvm_spark.py) ---------------------
def jvm_read(spark: Any, options: dict[str, str], where: str | None, select: list[str] | None) -> pa.Table:
    df = spark.read.format("theflash").options(**options).load(TYPES_TABLE)
    if where:
        df = df.filter(where)
    if select:
        df = df.select(*select)
    return df.toArrow()


def jvm_explain(spark: Any, options: dict[str, str], where: str, select: list[str]) -> tuple[str, int]:
    df = spark.read.format("theflash").options(**options).load(TYPES_TABLE).filter(where).select(*select)
    plan = df._jdf.queryExecution().executedPlan().toString()
    return plan, df.count()


def python_read(spark: Any, rig: FlashRig, ts: int, where: str | None, select: list[str] | None,
                hidden: list[str]) -> pa.Table:
    options = rig.options(snapshot_ts=ts)
    if hidden:
        options["hidden"] = ",".join(hidden)
    df = spark.read.format("theflash").options(**options).load(TYPES_TABLE)
    if where:
        df = df.filter(where)
    if select:
        df = df.select(*select)
    return df.toArrow()


def same_rows(jvm: pa.Table, python: pa.Table, what: str) -> None:
    assert jvm.schema == python.schema, what
    jvm, python = jvm.sort_by("id"), python.sort_by("id")
    assert jvm.num_rows == python.num_rows, what
    for name in jvm.column_names:
        assert jvm.column(name).to_pylist() == python.column(name).to_pylist(), f"{what}: column {name}"


# (Spark SQL filter, selected columns (None: all), hidden columns)
CASES: list[tuple[str | None, list[str] | None, list[str]]] = [
    (None, None, ["_tidb_rowid", "_tidb_commit_ts"]),
    ("i32 > 0 AND vc LIKE 'alpha%'", ["id", "i32", "vc", "dec38", "tsz", "bl", "u64", "js"], []),
    ("d >= DATE'2020-01-20' AND en IN ('alpha', 'gamma') AND dtm < TIMESTAMP_NTZ'2024-01-02 12:00:00'",
     ["id", "u64", "b64", "d", "en", "dtm"], []),
    ("(dec < 0 OR u64 > 1000000000000) AND tsz >= TIMESTAMP'2030-06-02 00:00:00+00:00' "
     "AND bn != X'000000000000' AND f64 IS NOT NULL", None, []),
    ("NOT (en IN ('alpha', 'beta')) AND NOT (i8 <=> 3) AND i16 IS NULL OR u8 = 1", ["id", "en", "i8", "i16", "u8"], []),
]


def test_jvm_and_python_sources_read_the_same_rows_of_every_type_at_one_ts(
        spark: Any, jvm_spark: JvmSpark, served: Served) -> None:
    ts = served.fresh_ts()
    for where, select, hidden in CASES:
        options = {"server": served.http_url, "snapshot_ts": str(ts)}
        if hidden:
            options["hidden"] = ",".join(hidden)
        got = jvm_spark.call(jvm_read, options, where, select)
        expected = python_read(spark, served.rig, ts, where, select, hidden)
        assert expected.num_rows > 0 or where is not None, where
        same_rows(got, expected, f"{where} {select}")
    assert expected.column_names == ["id", "en", "i8", "i16", "u8"]
