"""Flight and HTTP clients read, at one ts, exactly what ``spark.read.format("theflash")``
reads — every type of the types table, column subsets, hidden columns, filters — while the
types workload inserts, updates and deletes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.service import serve
from pyspark_theflash.upstream.workloads import TYPES_TABLE, TypesWorkload, types_columns
from service_client import FlightReader, HttpReader

pytestmark = pytest.mark.spark

ALL = [name for name, _, _ in types_columns()]
# (columns (None: all), hidden, the filter as JSON, the same filter in Spark SQL)
CASES: list[tuple[list[str] | None, list[str], list[Any], str | None]] = [
    (None, [], [], None),
    (["id", "dec38", "tsz", "bl", "u64", "js"], ["_tidb_rowid", "_tidb_commit_ts"], [], None),
    (None, ["_tidb_rowid"], [["i32", ">", 0], ["vc", "starts_with", "alpha"]], "i32 > 0 AND vc LIKE 'alpha%'"),
    (["id", "u64", "b64", "d", "en", "dtm"], [],
     [["d", ">=", "2020-01-20"], ["en", "in", ["alpha", "gamma"]], ["dtm", "<", "2024-01-02 12:00:00"]],
     "d >= DATE'2020-01-20' AND en IN ('alpha', 'gamma') AND dtm < TIMESTAMP_NTZ'2024-01-02 12:00:00'"),
    (["id", "dec", "tsz", "bn", "u64", "f64"], [],
     [{"or": [["dec", "<", "0"], ["u64", ">", "1000000000000"]]}, ["tsz", ">=", "2030-06-02T00:00:00+00:00"],
      ["bn", "!=", {"hex": "000000000000"}], ["f64", "is_not_null"]],
     "(dec < 0 OR u64 > 1000000000000) AND tsz >= TIMESTAMP'2030-06-02 00:00:00+00:00' "
     "AND bn != X'000000000000' AND f64 IS NOT NULL"),
]


def spark_read(spark: Any, rig: FlashRig, ts: int, columns: list[str] | None, hidden: list[str],
               where: str | None) -> pa.Table:
    options = rig.options(snapshot_ts=ts)
    if columns is not None:
        options["columns"] = ",".join(columns)
    if hidden:
        options["hidden"] = ",".join(hidden)
    df = spark.read.format("theflash").options(**options).load(TYPES_TABLE)
    if where:
        df = df.filter(where)
    return df.toArrow()


def same_rows(got: pa.Table, spark_rows: pa.Table, what: str) -> None:
    assert got.column_names == spark_rows.column_names, what
    got, spark_rows = got.sort_by("id"), spark_rows.sort_by("id")
    assert got.num_rows == spark_rows.num_rows, what
    for name in got.column_names:
        assert got.column(name).to_pylist() == spark_rows.column(name).to_pylist(), f"{what}: column {name}"


def run_types(spark: Any, tmp_path: Path, rounds: int) -> None:
    rig = FlashRig(tmp_path)
    workload = TypesWorkload(rig.cluster, rows=300, seed=3, threads=1, rate=25)
    try:
        workload.setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TYPES_TABLE)
        with serve(rig.store, port=0) as running:
            flight_reader, http_reader = FlightReader(running.flight_location), HttpReader(running.http_url)
            workload.start()
            try:
                for _ in range(rounds):
                    before = workload.stats.committed
                    wait_for(lambda: workload.stats.committed >= before + 20, 60, "the workload to commit")
                    ts = rig.cluster.get_ts()
                    for columns, hidden, conjuncts, where in CASES:
                        request = {"table": TYPES_TABLE, "snapshot_ts": ts, "columns": (columns or ALL) + hidden,
                                   "filter": conjuncts}
                        expected = spark_read(spark, rig, ts, columns, hidden, where)
                        assert expected.num_rows > 0, (columns, where)
                        same_rows(flight_reader.read(request)[0], expected, f"flight {request}")
                        same_rows(http_reader.read(request)[0], expected, f"http {request}")
            finally:
                workload.stop()
            flight_reader.close()
        assert workload.stats.committed >= 20 * rounds and not workload.stats.errors, workload.stats.summary()
    finally:
        rig.close()


def test_flight_and_http_read_what_spark_reads_at_one_ts_while_the_types_workload_writes(
        spark: Any, tmp_path: Path) -> None:
    run_types(spark, tmp_path, rounds=1)


@pytest.mark.slow
def test_flight_and_http_read_what_spark_reads_at_six_ts_while_the_types_workload_writes(
        spark: Any, tmp_path: Path) -> None:
    run_types(spark, tmp_path, rounds=6)
