"""Filters belong to the query they were written in.

A DataFrame or view over ``format("theflash")`` is read by many queries: each must see all of
the table's rows at the DataFrame's snapshot, narrowed only by its own filters — never by a
filter another query pushed. PySpark 4.2.1 keeps the read plan of the last filter pushdown on
the data source object every scan of one loaded DataFrame shares (the guard test at the end
pins that behaviour down), so the source must not let a pushed filter change its read plan.
"""
from __future__ import annotations

import sys
from typing import Any, Iterator

import pytest

from flash_rig import FlashRig
from test_spark_read import make_table, read

pytestmark = pytest.mark.spark

PUSHDOWN = "spark.sql.python.filterPushdown.enabled"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("scope"))
    r.start_writer(interval_s=0.05)
    make_table(r, "scope.t", 10)  # ids 0..9, balance 100..109
    yield r
    r.close()


@pytest.fixture(params=["pushdown-on", "pushdown-off"])
def pushdown(request: pytest.FixtureRequest, spark: Any) -> Iterator[str]:
    """Both settings of Spark's Python filter pushdown: a user may turn it on in any session."""
    previous = spark.conf.get(PUSHDOWN, None)
    spark.conf.set(PUSHDOWN, "true" if request.param == "pushdown-on" else "false")
    yield request.param
    if previous is None:
        spark.conf.unset(PUSHDOWN)
    else:
        spark.conf.set(PUSHDOWN, previous)


def test_a_reused_dataframe_is_narrowed_only_by_each_querys_own_filter(
        spark: Any, rig: FlashRig, pushdown: str) -> None:
    df = read(spark, rig).load("scope.t")
    assert df.count() == 10
    assert df.filter("balance >= 105").count() == 5
    assert df.count() == 10
    assert df.filter("balance < 103").count() == 3
    assert sorted(r.id for r in df.collect()) == list(range(10))
    assert df.filter("owner = 'owner-007'").collect()[0].id == 7
    assert df.agg({"balance": "sum"}).collect()[0][0] == sum(range(100, 110))


def test_a_view_read_twice_in_one_query_with_different_filters(spark: Any, rig: FlashRig, pushdown: str) -> None:
    spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW scope_t USING theflash "
              f"OPTIONS (store '{rig.store}', upstream '{rig.upstream}', table 'scope.t')")
    assert spark.sql("SELECT count(*) FROM scope_t WHERE balance >= 105").collect()[0][0] == 5
    assert spark.sql("SELECT count(*) FROM scope_t").collect()[0][0] == 10
    # a self-join whose two sides push different filters
    pairs = spark.sql("SELECT a.id AS a, b.id AS b FROM scope_t a JOIN scope_t b ON a.id + 5 = b.id "
                      "WHERE a.balance < 103 AND b.balance >= 105").collect()
    assert sorted((r.a, r.b) for r in pairs) == [(0, 5), (1, 6), (2, 7)]
    # a subquery reading the view again, with and without a filter
    n = spark.sql("SELECT count(*) FROM scope_t WHERE id IN (SELECT id FROM scope_t WHERE balance < 102) "
                  "OR balance > (SELECT max(balance) - 2 FROM scope_t)").collect()[0][0]
    assert n == 4  # ids 0, 1 (balance < 102) and 8, 9 (balance > 107)
    assert sorted(r.id for r in spark.table("scope_t").collect()) == list(range(10))


def test_a_dataframe_view_and_cache_table_keep_every_row(spark: Any, rig: FlashRig, pushdown: str) -> None:
    df = read(spark, rig).load("scope.t")
    df.createOrReplaceTempView("scope_df")
    assert spark.sql("SELECT count(*) FROM scope_df WHERE id < 4").collect()[0][0] == 4
    spark.sql("CACHE TABLE scope_df")
    try:
        assert spark.sql("SELECT count(*) FROM scope_df").collect()[0][0] == 10
        assert spark.sql("SELECT count(*) FROM scope_df WHERE id >= 8").collect()[0][0] == 2
    finally:
        spark.sql("UNCACHE TABLE scope_df")
    assert spark.table("scope_df").filter("id = 3").count() == 1
    assert spark.table("scope_df").count() == 10


# --- the PySpark behaviour this rests on ---------------------------------------------------------

def test_pyspark_still_shares_a_pushed_read_plan_across_scans_of_one_dataframe(spark: Any) -> None:
    """Guard: PySpark 4.2.1 stores the reader planned during ``pushFilters`` on the data source
    object that every scan of a loaded DataFrame shares, so a later scan without a pushable
    filter runs the earlier query's reader (fixed upstream in ``PythonScanBuilder`` after
    4.2.1). The theflash reader therefore does not implement ``pushFilters``. When this test
    fails, Spark scopes pushed filters to their scan: filter pushdown into the Python source
    (region, part and row-group pruning) can come back, with the tests above as its contract."""
    from pyspark import cloudpickle
    from pyspark.sql.datasource import DataSource, DataSourceReader, EqualTo

    class ProbeReader(DataSourceReader):
        def __init__(self) -> None:
            self.only: int | None = None

        def pushFilters(self, filters: list[Any]) -> Iterator[Any]:
            for f in filters:
                if isinstance(f, EqualTo) and f.attribute == ("id",):
                    self.only = int(f.value)
                else:
                    yield f

        def read(self, partition: Any) -> Iterator[tuple[int]]:
            for i in range(10):
                if self.only is None or i == self.only:
                    yield (i,)

    class Probe(DataSource):
        @classmethod
        def name(cls) -> str:
            return "theflash_scope_probe"

        def schema(self) -> str:
            return "id INT"

        def reader(self, schema: Any) -> DataSourceReader:
            return ProbeReader()

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    spark.dataSource.register(Probe)
    previous = spark.conf.get(PUSHDOWN, None)
    spark.conf.set(PUSHDOWN, "true")
    try:
        df = spark.read.format("theflash_scope_probe").load()
        assert df.filter("id = 3").count() == 1
        assert df.count() == 1, "PySpark no longer leaks pushed filters across scans: see this test's docstring"
    finally:
        spark.conf.set(PUSHDOWN, previous or "false")
