"""Which engine computes SQL, and how a query is checked before it runs: the native engine
computes any read-only query with DuckDB over its read streams (``engine/native_sql.py``;
tests/integration/test_native_sql.py runs them against a live store), refusing anything else by
its statement kind; the ClickHouse engine's check (``engine/clickhouse/calculator.py``); how a
result prints (``engine/cli.py``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyspark_theflash.engine import SqlQueryError, SqlTableNotFoundError, open_engine
from pyspark_theflash.engine.native_sql import refuse_writes as refuse_native_writes
from pyspark_theflash.engine.native_sql import statement_reads
from pyspark_theflash.store import Store


def test_the_native_engine_runs_sql_with_duckdb_and_refuses_a_write_or_an_unknown_table(tmp_path: Path) -> None:
    Store.open(str(tmp_path / "store")).close()  # an empty native store
    with open_engine(str(tmp_path / "store"), readonly=True) as engine:
        assert engine.runs_sql is True and engine.sql_reads_streams is True
        out = engine.run_sql("SELECT 1 + 1 AS two, INTERVAL 90 MINUTE AS span")  # no table: no session needed
        assert out.result.to_pylist() == [{"two": 2, "span": __import__("datetime").timedelta(minutes=90)}]
        assert out.computed_by == "DuckDB" and out.tables == ()
        with pytest.raises(SqlQueryError, match="^DROP is not a read-only query"):
            engine.run_sql("DROP TABLE shop.orders")
        with pytest.raises(SqlTableNotFoundError, match="has no table shop.orders; its tables: none yet"):
            engine.run_sql("SELECT count(*) FROM shop.orders")


@pytest.mark.parametrize("query, says", [
    ("SELEC 1", "DuckDB cannot read the query: Parser Error: syntax error at or near \"SELEC\""),
    ("", "the query is empty"),
    ("SELECT 1; SELECT 2", "holds 2 statements"),
    ("insert into shop.orders values (1)", "INSERT is not a read-only query: the store is a replica of TiDB tables "
                                           "and runs SELECT only; change the tables in TiDB, the replica follows"),
    ("EXPLAIN SELECT 1", "EXPLAIN is not a read-only query: the store is a replica of TiDB tables and runs SELECT "
                         "only; run the SELECT itself"),
    ("COPY shop.orders TO '/tmp/x.csv'", "COPY is not a read-only query"),
    ("ATTACH '/tmp/x.db'", "ATTACH is not a read-only query"),
    ("SET threads = 1", "SET is not a read-only query"),
])
def test_the_native_engine_refuses_what_is_no_single_select_naming_its_kind(query: str, says: str) -> None:
    with pytest.raises(SqlQueryError) as refused:
        refuse_native_writes(query)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_the_columns_a_query_reads_come_from_duckdbs_parse_tree() -> None:
    named = statement_reads("WITH big AS (SELECT o.total FROM shop.orders o WHERE o.status = 'paid') "
                            "SELECT c.name, count(*) FROM big, theflash.shop.customers c JOIN x USING (region_id) "
                            "GROUP BY ALL")
    assert named.tables == [("", "shop", "orders", "o"), ("", "", "big", ""), ("theflash", "shop", "customers", "c"),
                            ("", "", "x", "")]
    assert named.ctes == {"big"} and not named.all_of
    assert {"total", "status", "name", "region_id"} <= named.columns
    assert statement_reads("SELECT c.* FROM shop.customers c").all_of == {"c"}
    assert statement_reads("SELECT * FROM a NATURAL JOIN b").all_of == {"*"}


def test_a_query_result_prints_every_type_in_every_format() -> None:
    """``theflash sql``'s output (engine/cli.py write_result): bytes as 0x hex in every format,
    DECIMAL with its digits (a JSON string), times in ISO 8601, TIME as [-]HH:MM:SS[.ffffff]."""
    import csv
    import datetime as dt
    import decimal
    import io
    import json
    import re

    import pyarrow as pa

    from pyspark_theflash.engine.cli import write_result

    result = pa.table({
        "n": pa.array([7, None], pa.int64()), "ok": pa.array([True, None]), "f": pa.array([0.5, None]),
        "price": pa.array([decimal.Decimal("-12.30"), None], pa.decimal128(10, 2)),
        "token": pa.array([b"\xe2\x00\xff", None], pa.binary()), "doc": pa.array(['{"a": 1}', None]),
        "status": pa.array(["new", None]), "at": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 600), None], pa.timestamp("us")),
        "tz": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), None], pa.timestamp("us", "UTC")),
        "day": pa.array([dt.date(2024, 1, 2), None]),
        "dur": pa.array([dt.timedelta(hours=26, microseconds=5), None], pa.duration("us")),
    })
    text = ["7", "true", "0.5", "-12.30", "0xe200ff", '{"a": 1}', "new", "2024-01-02 03:04:05.000600",
            "2024-01-02 03:04:05+00:00", "2024-01-02", "26:00:00.000005"]

    def printed(fmt: str) -> str:
        out = io.StringIO()
        write_result(result, fmt, out)
        return out.getvalue()

    assert list(csv.reader(printed("csv").splitlines())) == [result.column_names, text, ["", *[""] * 10]]
    rows = [json.loads(line) for line in printed("json").splitlines()]
    assert rows == [dict(zip(result.column_names, [7, True, 0.5, *text[3:]])), dict.fromkeys(result.column_names)]
    lines = printed("table").splitlines()
    assert lines[0].split() == result.column_names
    assert re.split(r"  +", lines[1]) == text
    assert lines[2].split() == ["NULL"] * 11
    empty = io.StringIO()
    write_result(pa.table({"token": pa.array([], pa.binary())}), "table", empty)
    assert empty.getvalue() == "token\n"


@pytest.mark.parametrize("query, says", [
    ("SELEC 1", "the query is not a valid SELECT: it begins with 'SELEC'"),
    ("", "the query is not a valid SELECT: it begins with '(empty)'"),
    ("  (( frob", "the query is not a valid SELECT: it begins with 'frob'"),
    ("DROP TABLE shop.orders", "read-only queries (SELECT ... FROM db.table); 'DROP' is not one: the store is a "
                               "replica of a TiDB table, change the table in TiDB"),
    ("insert into shop.orders values (1)", "'insert' is not one"),
])
def test_a_statement_that_is_no_query_is_refused_as_a_write_only_when_it_is_one(query: str, says: str) -> None:
    from pyspark_theflash.engine.clickhouse.calculator import refuse_writes
    from pyspark_theflash.engine.clickhouse.errors import SqlQueryError

    with pytest.raises(SqlQueryError) as refused:
        refuse_writes(query)
    assert says in str(refused.value)
    if "valid SELECT" in says:
        assert "change the table in TiDB" not in str(refused.value)


def test_queries_pass_the_write_check() -> None:
    from pyspark_theflash.engine.clickhouse.calculator import refuse_writes

    for query in ("SELECT 1", "  with x AS (SELECT 1) SELECT * FROM x", "(SELECT 1)", "EXPLAIN SELECT 1", "show tables"):
        refuse_writes(query)
