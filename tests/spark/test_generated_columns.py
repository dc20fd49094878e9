"""Generated columns as TiDB has them: STORED ones are in the row; VIRTUAL ones TiDB never
stores and computes as it reads, so the mini cluster computes them in its own reads and every
engine of the replica computes them at read time (``schema.generated``); a VIRTUAL column whose
expression TheFlash does not evaluate is left out of the schema and a read naming it is refused
by name."""
from __future__ import annotations

import decimal
import json
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.schema import builder
from pyspark_theflash.schema.errors import UnknownColumnError
from pyspark_theflash.schema.generated import GeneratedColumnError, compile_column
from pyspark_theflash.upstream_client.errors import GeneratedValueError
from pyspark_theflash.upstream.tidb import make_column

TABLE = "gen.t"
COLUMNS = [
    make_column("id", "BIGINT", not_null=True),
    make_column("a", "INT"),
    make_column("g", "BIGINT", generated="`a` + 1"),                                  # VIRTUAL
    make_column("s", "VARCHAR(16)"),
    make_column("c", "VARCHAR(40)", generated="concat(upper(`s`), _utf8mb4'-', `a` * 2)", stored=True),
    make_column("sub", "VARCHAR(8)", generated="substring(lower(`s`), 2, 3)"),        # VIRTUAL
    make_column("j", "JSON"),
    make_column("k", "VARCHAR(16)", generated="json_unquote(json_extract(`j`, _utf8mb4'$.k'))"),
    make_column("ja", "JSON", generated="`j`->'$.arr[1]'"),
    make_column("d", "DECIMAL(8,2)"),
    make_column("dg", "DECIMAL(9,1)", generated="`d` * 3 - `a` DIV 7"),              # rounded to scale 1
    make_column("today", "DATE", generated="curdate()"),                              # not computed here
]
ROWS = [
    {"id": 1, "a": 10, "s": "Hello", "j": {"k": "v1", "arr": [1, 2]}, "d": decimal.Decimal("1.25")},
    {"id": 2, "a": 20, "s": "wOrLd", "j": {"k": 7}, "d": decimal.Decimal("-2.05")},
    {"id": 3, "a": 30, "s": None, "j": None, "d": None},
    {"id": 4, "a": None, "s": "x", "j": {"arr": [0, {"z": None}]}, "d": decimal.Decimal("0.00")},
]
# what TiDB's SELECT returns for them
EXPECTED = {
    1: {"g": 11, "c": "HELLO-20", "sub": "ell", "k": "v1", "ja": "2", "dg": decimal.Decimal("2.8")},
    2: {"g": 21, "c": "WORLD-40", "sub": "orl", "k": "7", "ja": None, "dg": decimal.Decimal("-8.2")},
    3: {"g": 31, "c": None, "sub": None, "k": None, "ja": None, "dg": None},
    4: {"g": None, "c": None, "sub": "", "k": None, "ja": '{"z": null}', "dg": None},
}
READABLE = ["id", "a", "g", "s", "c", "sub", "j", "k", "ja", "d", "dg"]


def create(cluster: Any) -> None:
    cluster.create_database("gen")
    cluster.create_table(TABLE, COLUMNS, primary_key=["id"])
    with cluster.txn() as t:
        for r in ROWS:
            t.insert(TABLE, {**r, "j": None if r["j"] is None else json.dumps(r["j"])})


def generated_values(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["id"]: {n: r[n] for n in EXPECTED[1]} for r in rows}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("generated"))
    try:
        create(r.cluster)
        r.start_writer(interval_s=0.05, engine="clickhouse")
        r.twin = r.start_twin_writer()  # type: ignore[attr-defined]
        r.wait_replicated(TABLE)
        yield r
    finally:
        r.close()


def test_the_mini_cluster_computes_virtual_columns_in_its_reads_and_stores_stored_ones(rig: FlashRig) -> None:
    rows = rig.cluster.scan_table(TABLE)
    assert generated_values(rows) == EXPECTED
    assert "today" not in rows[0]  # a VIRTUAL column the model cannot compute is not read


def test_both_engines_compute_virtual_columns_at_read_time(rig: FlashRig) -> None:
    ts = rig.cluster.get_ts()
    for store in (rig.store, rig.twin):  # type: ignore[attr-defined]
        got = rig.read_at(store, TABLE, ts)
        assert got.column_names == READABLE, store
        assert generated_values(got.to_pylist()) == EXPECTED, store


@pytest.mark.parametrize("conjunct, ids", [
    (["g", ">", 15], [2, 3]),
    (["g", "is_null"], [4]),
    (["sub", "=", "ell"], [1]),
    ({"or": [["k", "=", "7"], ["dg", "<", 0]]}, [2]),
    (["ja", "is_not_null"], [1, 4]),
])
def test_a_filter_on_a_virtual_column_filters_its_computed_values(rig: FlashRig, conjunct: Any, ids: list[int]) -> None:
    ts = rig.cluster.get_ts()
    for store in (rig.store, rig.twin):  # type: ignore[attr-defined]
        got = rig.read_at(store, TABLE, ts, columns=["id", "g"], filter=[conjunct, ["id", ">", 0]])
        assert sorted(got.column("id").to_pylist()) == ids, (store, conjunct)
        assert got.column_names == ["id", "g"]


def test_a_virtual_column_that_is_not_computed_is_left_out_and_a_read_naming_it_is_refused_by_name(
        rig: FlashRig) -> None:
    ts = rig.cluster.get_ts()
    with pytest.raises(Exception, match=r"'today' of gen.t is a VIRTUAL generated column \(curdate\(\)\)"):
        rig.read_at(rig.store, TABLE, ts, columns=["id", "today"])
    with pytest.raises(Exception, match="'today'.*VIRTUAL generated column"):
        rig.read_at(rig.twin, TABLE, ts, filter=[["today", "is_null"]])  # type: ignore[attr-defined]


def test_the_mini_cluster_refuses_a_value_for_a_generated_column_and_an_overflowing_one(rig: FlashRig) -> None:
    with pytest.raises(GeneratedValueError, match="'g'.*generated"):
        with rig.cluster.txn() as t:
            t.insert(TABLE, {"id": 9, "a": 1, "g": 5})
    with pytest.raises(GeneratedValueError, match="'c'.*generated"):
        with rig.cluster.txn() as t:
            t.update(TABLE, {"id": 1, "c": "no"})
    with rig.cluster.txn() as t:  # an update recomputes what the changed column feeds
        t.update(TABLE, {"id": 1, "a": 11})
    row = next(r for r in rig.cluster.scan_table(TABLE) if r["id"] == 1)
    assert (row["g"], row["c"]) == (12, "HELLO-22")


def test_integer_overflow_in_a_virtual_column_is_an_error_as_in_tidb() -> None:
    """TiDB's SELECT of `a * 9223372036854775807` for a = 2 fails with 'BIGINT value is out of
    range'; the read fails likewise, naming the column, rather than wrapping or giving NULL."""
    t = builder.table(7, "o", [builder.column("a", "BIGINT"),
                               builder.column("big", "BIGINT", generated="`a` * 9223372036854775807")], db="gen")
    vc = compile_column(t, t.column("big"))
    assert vc.compute({"a": pa.array([1, None], pa.int64())}, 2).to_pylist() == [9223372036854775807, None]
    with pytest.raises(GeneratedColumnError, match="column big of gen.o .* BIGINT value is out of range"):
        vc.compute({"a": pa.array([2], pa.int64())}, 1)
    small = builder.table(8, "p", [builder.column("a", "INT"), builder.column("t", "TINYINT", generated="`a` + 1")],
                          db="gen")
    with pytest.raises(GeneratedColumnError, match="out of range for TINYINT"):
        compile_column(small, small.column("t")).compute({"a": pa.array([127], pa.int32())}, 1)


def test_uncomputable_virtual_columns_are_listed_with_why() -> None:
    t = builder.table(9, "q", [builder.column("a", "INT"),
                               builder.column("h", "INT", generated="`a` / 2"),
                               builder.column("ok", "INT", generated="`a` % 3"),
                               builder.column("st", "INT", generated="`a` / 2", stored=True)], db="gen")
    assert t.column_names == ["a", "ok", "st"]  # a STORED column is read from the row, whatever its expression
    assert "'/'" in t.uncomputable_columns["h"]
    with pytest.raises(UnknownColumnError, match="VIRTUAL generated column"):
        t.column("H")
    mod = compile_column(t, t.column("ok")).compute({"a": pa.array([-7, 7, None], pa.int32())}, 3)
    assert mod.to_pylist() == [-1, 1, None]  # MySQL: the sign of the dividend


def jvm_sql_rows(spark: Any, server: str, statement: str) -> list[tuple[Any, ...]]:
    spark.conf.set("theflash.server", server)
    return [tuple(r) for r in spark.sql(statement).collect()]


@pytest.mark.spark
def test_the_jar_reads_virtual_columns_through_sql(jvm_spark: Any, rig: FlashRig) -> None:
    from pyspark_theflash.service import serve

    with serve(rig.store, port=0) as running:
        wait_for(lambda: len(rig.read_at(rig.store, TABLE, rig.cluster.get_ts())) == 4, 30, "the rows")
        rows = jvm_spark.call(jvm_sql_rows, running.http_url,
                              f"SELECT id, g, sub, k FROM theflash.{TABLE} WHERE g > 15 ORDER BY id")
    assert rows == [(2, 21, "orl", "7"), (3, 31, None, None)]
