"""SQL's filter semantics through Spark: the jar (which pushes what the service evaluates
exactly: ``in`` lists with NULLs now too) and the Python source return, for each WHERE clause,
exactly the rows Spark itself keeps from the same rows in an ordinary DataFrame: NULL in an
IN list, NOT IN with a NULL, fractional literals against an INT column, a FLOAT against a
double literal (Spark widens the float, so ``f32 = 0.1`` keeps no 0.1f)."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from flash_rig import FlashRig
from pyspark_theflash.service import serve
from pyspark_theflash.upstream.tidb import make_column

pytestmark = pytest.mark.spark

TABLE = "flt.t"
ROWS = [(1, 1, 0.1, "a"), (2, 2, 0.5, "b"), (3, None, None, None), (4, 3, 2.0, "a"), (5, -1, 0.25, "c")]
WHERES = [
    "i32 NOT IN (1, NULL)",
    "NOT (i32 IN (2, NULL))",
    "i32 IN (1, NULL)",
    "i32 NOT IN (1, 2)",
    "s NOT IN ('a', NULL)",
    "i32 = 1.5",
    "i32 < 1.5",
    "i32 >= 1.5",
    "f32 = 0.1",
    "f32 = 0.5",
    "f32 > 0.1",
    "NOT (i32 IN (1, 2)) OR s IN ('c', NULL)",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlashRig, str]]:
    rig = FlashRig(tmp_path_factory.mktemp("jvm_filters"))
    try:
        rig.cluster.create_database("flt")
        rig.cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("i32", "INT"),
                                         make_column("f32", "FLOAT"), make_column("s", "VARCHAR(4)")],
                                 primary_key=["id"])
        with rig.cluster.txn() as t:
            for id_, i32, f32, s in ROWS:
                t.insert(TABLE, {"id": id_, "i32": i32, "f32": f32, "s": s})
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TABLE)
        with serve(rig.store, port=0) as running:
            yield rig, running.http_url
    finally:
        rig.close()


def spark_answers(spark: Any, wheres: list[str]) -> list[list[int]]:
    """What Spark keeps of the same rows, read from no source of ours."""
    from pyspark.sql.types import FloatType, IntegerType, LongType, StringType, StructField, StructType

    schema = StructType([StructField("id", LongType()), StructField("i32", IntegerType()),
                         StructField("f32", FloatType()), StructField("s", StringType())])
    df = spark.createDataFrame(ROWS, schema)
    return [sorted(r.id for r in df.filter(w).select("id").collect()) for w in wheres]


def jvm_answers(spark: Any, server: str, wheres: list[str]) -> list[tuple[list[int], str]]:
    out = []
    for w in wheres:
        df = spark.read.format("theflash").option("server", server).load(TABLE).filter(w).select("id")
        plan = df._jdf.queryExecution().executedPlan().toString()
        out.append((sorted(r.id for r in df.collect()), plan))
    return out + [(spark_answers(spark, wheres), "")]  # type: ignore[list-item]


def test_the_jar_returns_the_rows_spark_keeps_and_pushes_in_lists_with_nulls(jvm_spark: Any, served: Any) -> None:
    """Spark folds some of these itself (``i32 = 1.5`` and ``f32 = 0.1`` to false, ``i32 < 1.5``
    to ``i32 < 2``); ``i32 IN (1, NULL)`` reaches the service as an ``in`` list with a NULL."""
    _, server = served
    *got, (want, _) = jvm_spark.call(jvm_answers, server, WHERES)
    for where, (ids, _plan), expected in zip(WHERES, got, want):
        assert ids == expected, where
    assert want[0] == [] and want[5] == [] and want[6] == [1, 5] and want[8] == []  # SQL's answers
    pushed = dict(zip(WHERES, (plan for _, plan in got)))
    assert "PushedFilters: [i32 IN (1, null)]" in pushed["i32 IN (1, NULL)"], pushed["i32 IN (1, NULL)"]


def test_the_python_source_returns_the_rows_spark_keeps(spark: Any, served: Any) -> None:
    rig, _ = served
    want = spark_answers(spark, WHERES)
    for where, expected in zip(WHERES, want):
        df = spark.read.format("theflash").options(**rig.options()).load(TABLE).filter(where)
        assert sorted(r.id for r in df.select("id").collect()) == expected, where
