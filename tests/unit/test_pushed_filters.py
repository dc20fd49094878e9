"""Which WHERE conjuncts of a native SQL query go to a table's read stream
(``engine/pushed_filters.py``), decided on DuckDB's own parse tree: what each table is handed,
as the store's filter form, for statements whose answer a narrower filter would change.
tests/integration/test_native_sql_pushdown.py runs such statements against a live store."""
from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from pyspark_theflash.engine.native_sql import statement_reads
from pyspark_theflash.engine.pushed_filters import pushed_filters
from pyspark_theflash.schema.builder import column, table
from pyspark_theflash.store.predicate import And, Comparison, Expr, In, IsNotNull, IsNull, Not, Or, StartsWith

ORDERS = table(1, "orders", [
    column("id", "BIGINT", not_null=True), column("customer_id", "BIGINT"), column("total", "DECIMAL(12,2)"),
    column("status", "VARCHAR(8)"), column("placed", "DATE"), column("f", "DOUBLE"), column("r", "FLOAT"),
    column("at", "DATETIME(6)"), column("stamp", "TIMESTAMP(6)"), column("raw", "VARBINARY(8)"),
    column("span", "TIME(6)")], primary_key=["id"], db="shop")
CUSTOMERS = table(2, "customers", [column("id", "BIGINT", not_null=True), column("name", "VARCHAR(20)"),
                                   column("region", "VARCHAR(8)")], primary_key=["id"], db="shop")
NAMES = {id(ORDERS): "orders", id(CUSTOMERS): "customers"}


def pushed(sql: str) -> dict[str, dict[str, Any]]:
    """What each table's read is handed for ``sql`` (tables resolved as ``native_sql`` resolves
    them: ``db.table`` or a bare name; a CTE's name is no table)."""
    named = statement_reads(sql)

    def table_of(node: dict[str, Any]) -> Any:
        schema, name = str(node.get("schema_name") or ""), str(node.get("table_name") or "").lower()
        if not schema and name in named.ctes:
            return None
        return {"orders": ORDERS, "customers": CUSTOMERS}.get(name) if schema in ("", "shop") else None

    return {NAMES[key]: expr.to_dict() for key, expr in pushed_filters(named.tree, table_of).items()}


def d(expr: Expr) -> dict[str, Any]:
    return expr.to_dict()


JOIN = "FROM shop.orders o JOIN shop.customers c ON o.customer_id = c.id"
LEFT = "FROM shop.orders o LEFT JOIN shop.customers c ON o.customer_id = c.id"


@pytest.mark.parametrize("sql, expected", [
    # each table its own conjuncts, qualified by alias; the constant on either side
    (f"SELECT 1 {JOIN} WHERE o.total > 1.5 AND 'north' = c.region AND 5 <= o.id",
     {"orders": d(And(Comparison("total", ">", decimal.Decimal("1.5")), Comparison("id", ">=", 5))),
      "customers": d(Comparison("region", "==", "north"))}),
    # unqualified names one table has; `id` is both tables': not pushed
    (f"SELECT 1 {JOIN} WHERE status IN ('new', NULL) AND name LIKE 'c1%' AND id = 3",
     {"orders": d(In("status", ["new", None])), "customers": d(StartsWith("name", "c1"))}),
    # OR and NOT on one table; an OR across tables is not pushed
    (f"SELECT 1 {JOIN} WHERE (o.status = 'new' OR o.status IS NULL) AND NOT (o.id BETWEEN 3 AND 4) "
     "AND (o.id = 1 OR c.id = 2)",
     {"orders": d(And(Or(Comparison("status", "==", "new"), IsNull("status")),
                      Not(And(Comparison("id", ">=", 3), Comparison("id", "<=", 4)))))}),
    # the nullable side of a LEFT JOIN: what a padded row passes stays in DuckDB
    (f"SELECT 1 {LEFT} WHERE c.region IS NULL AND (c.name IS NULL OR c.name = 'x') AND NOT (c.id IS NOT NULL) "
     "AND c.name <> 'y' AND o.customer_id IS NULL",
     {"customers": d(Comparison("name", "!=", "y")), "orders": d(IsNull("customer_id"))}),
    ("SELECT 1 FROM shop.customers c RIGHT JOIN shop.orders o ON o.customer_id = c.id WHERE c.region IS NULL "
     "AND o.id IS NULL", {"orders": d(IsNull("id"))}),
    ("SELECT 1 FROM shop.orders o FULL JOIN shop.customers c ON o.customer_id = c.id "
     "WHERE o.id IS NULL AND c.id IS NULL AND c.name = 'x'", {"customers": d(Comparison("name", "==", "x"))}),
    # an inner join's ON is a WHERE of its rows: each table its conjuncts; an outer join's ON is not
    (f"SELECT 1 {JOIN} AND c.region = 'north' AND o.status = 'new' AND (c.id = 1 OR o.id = 2) WHERE o.id < 5",
     {"orders": d(And(Comparison("id", "<", 5), Comparison("status", "==", "new"))),
      "customers": d(Comparison("region", "==", "north"))}),
    (f"SELECT 1 {LEFT} AND c.region = 'north' AND o.status = 'new'", {}),
    # an inner join over a LEFT join: on the padded side only what rejects the padded row
    (f"SELECT 1 {LEFT} JOIN shop.orders p ON p.id = o.id AND c.region IS NULL AND c.name = 'x'",
     {"customers": d(Comparison("name", "==", "x"))}),
    # an inner join on the padded side of a LEFT join filters its own rows before they are padded
    ("SELECT 1 FROM shop.orders o LEFT JOIN (shop.customers c JOIN shop.orders p ON p.customer_id = c.id "
     "AND c.region = 'north' AND c.name IS NULL) ON o.customer_id = c.id",
     {"customers": d(Comparison("region", "==", "north"))}),
    # joins that pair rows by anything but their values, or keep one side's rows whole: nothing
    ("SELECT 1 FROM shop.orders o SEMI JOIN shop.customers c ON o.customer_id = c.id WHERE o.id = 4", {}),
    ("SELECT 1 FROM shop.orders o ASOF JOIN shop.customers c ON o.customer_id >= c.id WHERE o.id = 4", {}),
    ("SELECT 1 FROM shop.orders o POSITIONAL JOIN shop.customers c WHERE o.id = 4", {}),
    ("SELECT 1 FROM shop.orders WHERE id = 4 USING SAMPLE 10 ROWS", {}),
    ("SELECT 1 FROM shop.orders TABLESAMPLE 10 ROWS WHERE id = 4", {}),
    ("SELECT 1 FROM shop.orders AS o(a, b) WHERE a = 4", {}),
    # a table read twice: what both reads have
    ("SELECT 1 FROM shop.orders a JOIN shop.orders b ON a.id = b.id WHERE a.status = 'x' AND b.status = 'x' "
     "AND a.id < 5", {"orders": d(Comparison("status", "==", "x"))}),
    ("SELECT 1 FROM shop.orders a JOIN shop.orders b ON a.id = b.id WHERE a.status = 'x' AND b.status = 'y'", {}),
    ("SELECT id FROM shop.orders WHERE id < 3 UNION ALL SELECT id FROM shop.orders", {}),
    # subqueries each on their own; an outer query's name is not the inner table's
    ("SELECT 1 FROM shop.customers c WHERE c.id IN (SELECT customer_id FROM shop.orders WHERE status = 'paid') "
     "AND EXISTS (SELECT 1 FROM shop.orders o WHERE o.customer_id = c.id AND region = 'north')", {}),
    ("SELECT 1 FROM shop.customers c WHERE c.id IN (SELECT customer_id FROM shop.orders WHERE status = 'paid')",
     {"orders": d(Comparison("status", "==", "paid"))}),
    ("WITH orders AS (SELECT * FROM shop.orders WHERE id < 5) SELECT * FROM orders WHERE id > 1",
     {"orders": d(Comparison("id", "<", 5))}),
    # something else in the FROM may have an unqualified name; a USING column is both tables'
    ("SELECT 1 FROM shop.orders o, (SELECT 1 AS x) s WHERE status = 'a' AND o.id = 2",
     {"orders": d(Comparison("id", "==", 2))}),
    ("SELECT 1 FROM shop.orders o JOIN shop.customers c USING (id) WHERE id = 4", {}),
    ("SELECT 1 FROM shop.orders NATURAL JOIN shop.customers WHERE status = 'a'", {}),
    # qualified by the table's own name, or db.table; not by a name its alias hides
    ("SELECT 1 FROM shop.orders WHERE shop.orders.id = 4 AND orders.status = 'a'",
     {"orders": d(And(Comparison("id", "==", 4), Comparison("status", "==", "a")))}),
    ("SELECT 1 FROM shop.orders o WHERE orders.id = 4", {}),
    # not a column compared with a constant
    ("SELECT 1 FROM shop.orders WHERE id + 1 = 4 OR abs(id) = 3", {}),
    ("SELECT 1 FROM shop.orders WHERE id = customer_id AND status = NULL AND status IS DISTINCT FROM 'a'", {}),
    ("SELECT 1 FROM shop.orders WHERE id IN (SELECT 1) AND total > (SELECT 2)", {}),
    ("SELECT 1 FROM shop.orders WHERE status LIKE 'a_%' OR status ILIKE 'a%'", {}),
    ("SELECT 1 FROM shop.orders WHERE status LIKE 'a%' ESCAPE '!'", {}),
    ("SELECT 1 FROM shop.orders WHERE status NOT LIKE 'ab%'", {"orders": d(Not(StartsWith("status", "ab")))}),
])
def test_the_conjuncts_each_tables_read_is_handed(sql: str, expected: dict[str, Any]) -> None:
    assert pushed(sql) == expected


@pytest.mark.parametrize("where, expected", [
    # integers and exact decimals to integer and DECIMAL columns, never a double
    ("id = 9223372036854775808", Comparison("id", "==", 2 ** 63)),
    ("total = -12345678901234567890.25", Comparison("total", "==", decimal.Decimal("-12345678901234567890.25"))),
    ("total < 1e3", None),
    ("total = '5'", None),
    # DOUBLE: numbers by =, <, <=, IN (DuckDB orders NaN above every number); FLOAT: nothing
    ("f <= 2.5", Comparison("f", "<=", decimal.Decimal("2.5"))),
    ("f IN (1, 1e0)", In("f", [1, 1.0])),
    ("f > 1", None),
    ("f <> 1", None),
    ("f NOT IN (1)", None),
    ("r = 0.1", None),
    ("r IS NOT NULL", IsNotNull("r")),
    # text; binary only when ASCII without a backslash (DuckDB reads \x.. escapes in a BLOB)
    ("status >= 'm'", Comparison("status", ">=", "m")),
    ("status = 5", None),
    ("raw = 'ab'", Comparison("raw", "==", b"ab")),
    ("raw = '\\xAA'", None),
    ("raw LIKE 'a%'", None),
    # DATE: 'YYYY-MM-DD' and DATE '...'; nothing DuckDB reads otherwise than Python
    ("placed = DATE '2024-02-29'", Comparison("placed", "==", dt.date(2024, 2, 29))),
    ("placed < '2024-03-01'", Comparison("placed", "<", dt.date(2024, 3, 1))),
    ("placed < '2024-3-1'", None),
    ("placed = '2024-03-01 10:00:00'", None),
    ("placed = TIMESTAMP '2024-03-01 00:00:00'", None),
    # DATETIME: no offset; TIMESTAMP (UTC): an offset converted
    ("\"at\" >= '2024-05-06 07:08:09.5'", Comparison("at", ">=", dt.datetime(2024, 5, 6, 7, 8, 9, 500000))),
    ("\"at\" < TIMESTAMP '2024-05-07'", Comparison("at", "<", dt.datetime(2024, 5, 7))),
    ("\"at\" = '2024-05-06 07:08:09+02'", None),
    ("\"at\" = '2024-05-06 07:08:09.1234567'", None),
    ("stamp > '2024-05-06 07:08:09-02:30'",
     Comparison("stamp", ">", dt.datetime(2024, 5, 6, 9, 38, 9, tzinfo=dt.timezone.utc))),
    ("stamp = TIMESTAMPTZ '2024-05-06 07:08:09Z'",
     Comparison("stamp", "==", dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc))),
    ("stamp >= DATE '2024-05-06'", Comparison("stamp", ">=", dt.datetime(2024, 5, 6, tzinfo=dt.timezone.utc))),
    ("stamp = TIMESTAMP '2024-05-06 07:08:09+02'", None),
    ("stamp = '2024-05-06Z'", None),
    # TIME: nothing but NULL tests
    ("span = INTERVAL 1 HOUR", None),
    ("span IS NULL", IsNull("span")),
])
def test_a_constant_is_pushed_only_as_the_value_duckdb_compares(where: str, expected: Expr | None) -> None:
    got = pushed(f"SELECT 1 FROM shop.orders WHERE {where}")
    assert got == ({} if expected is None else {"orders": expected.to_dict()})
