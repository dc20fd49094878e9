"""Filters pushed to the read streams of a native SQL query (issue 52, item 6): the WHERE
conjuncts a table's read stream can apply itself reach its read session
(``engine/pushed_filters.py``), the session streams only the rows they keep, and every answer
equals the one computed from the mini cluster's own rows at the same ts (its MVCC scan, loaded
into a DuckDB of its own), and the one computed with nothing pushed: for a table of statements
chosen for what a narrower filter would break, and for seeded random joins and filters."""
from __future__ import annotations

import datetime as dt
import decimal
import random
from typing import Any, Iterator

import duckdb
import pyarrow as pa
import pytest

from flash_rig import FlashRig
from pyspark_theflash.engine import Engine, open_engine
from pyspark_theflash.engine.native_sql import run_sql
from pyspark_theflash.scan.engine_sessions import PlannedSessions
from pyspark_theflash.schema import arrow_schema
from pyspark_theflash.upstream.tidb import make_column, table_info_of
from shop_tables import CUSTOMERS, N_CUSTOMERS, N_ORDERS, ORDERS, create_shop

VALUES = "kinds.measures"
N_VALUES = 24


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("native_sql_pushdown"))
    create_shop(r.cluster, "VARCHAR(8)", lambda i: None if i % 31 == 0 else ("new", "paid", "sent")[i % 3])
    r.cluster.create_table(VALUES, [
        make_column("id", "BIGINT", not_null=True), make_column("f", "DOUBLE"), make_column("r", "FLOAT"),
        make_column("at", "DATETIME(6)"), make_column("stamp", "TIMESTAMP(6)"), make_column("raw", "VARBINARY(8)"),
        make_column("amount", "DECIMAL(30,6)"), make_column("u", "BIGINT", unsigned=True),
        make_column("note", "VARCHAR(16)")], primary_key=["id"])
    start = dt.datetime(2024, 5, 6, 7, 0, 0)
    with r.cluster.txn() as t:
        for i in range(N_VALUES):
            t.insert(VALUES, {
                "id": i, "f": None if i % 7 == 3 else (i - 10) / 8, "r": None if i % 5 == 4 else i / 10,
                "at": None if i % 6 == 5 else start + dt.timedelta(minutes=17 * i, microseconds=i),
                "stamp": None if i % 6 == 1 else (start + dt.timedelta(minutes=13 * i)).replace(tzinfo=dt.timezone.utc),
                "raw": None if i % 4 == 2 else (b"ab", b"ac", b"\x00\xff", b"b")[i % 4] + bytes([i]),
                "amount": decimal.Decimal(i * 1_000_001 - 9_000_000) / 1_000_000,
                "u": 2 ** 63 + i * 3 if i % 2 else i, "note": None if i % 8 == 0 else f"n{i % 5}-{i}"})
    r.start_writer(interval_s=0.05)
    for name in (CUSTOMERS, ORDERS, VALUES):
        r.wait_replicated(name)
    yield r
    r.close()


@pytest.fixture(scope="module")
def engine(rig: FlashRig) -> Iterator[Engine]:
    with open_engine(rig.store, sessions=PlannedSessions(upstream=rig.upstream)) as e:
        yield e


@pytest.fixture(scope="module")
def upstream_at(rig: FlashRig) -> Iterator[tuple[int, Any]]:
    """A ts, and a DuckDB of its own over the mini cluster's own rows at that ts (its MVCC scan),
    typed as the schema box types each table; ``_tidb_rowid`` is ``id``, the handle."""
    ts = rig.cluster.get_ts()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for i, name in enumerate((CUSTOMERS, ORDERS, VALUES)):
        db, table = name.split(".")
        schema = arrow_schema(table_info_of(rig.cluster.table_info_at(name, ts)))
        rows = pa.Table.from_pylist(rig.cluster.scan_table(name, ts), schema=schema)
        con.register(f"upstream_{i}", rows.append_column("_tidb_rowid", rows["id"]))
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {db}")
        for schema_name in (db, "main"):  # db.table, and the bare name
            con.execute(f"CREATE VIEW {schema_name}.{table} AS SELECT * FROM upstream_{i}")
    yield ts, con
    con.close()


def sorted_rows(table: Any) -> list[tuple[Any, ...]]:
    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all()
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


# (query, the tables whose read gets a filter): each answer equals the upstream's with and
# without pushdown; the second column is what this module promises to push (and not to push)
QUERIES = [
    # an inner join's ON conjuncts on one table go to its read; an outer join's stay in DuckDB
    ("SELECT o.id, c.name FROM shop.orders o JOIN shop.customers c ON o.customer_id = c.id AND c.region = 'north' "
     "AND o.total >= 100", {ORDERS, CUSTOMERS}),
    ("SELECT o.id, c.name FROM shop.orders o LEFT JOIN shop.customers c ON o.customer_id = c.id "
     "AND c.region = 'north' AND o.total >= 100", set()),
    ("SELECT o.id, c.name FROM shop.orders o LEFT JOIN (shop.customers c JOIN shop.orders p "
     "ON p.customer_id = c.id AND c.region = 'south' AND p.status = 'paid') ON o.id = p.id", {CUSTOMERS}),
    ("SELECT o.id, c.name FROM shop.orders o JOIN shop.customers c ON o.customer_id = c.id "
     "WHERE o.total > 100 AND c.region = 'north'", {ORDERS, CUSTOMERS}),
    # IS NULL on the nullable side of a LEFT JOIN keeps the padded rows: never pushed
    ("SELECT o.id, c.name, c.region FROM shop.orders o LEFT JOIN shop.customers c ON o.customer_id = c.id "
     "WHERE c.region IS NULL AND o.id < 100", {ORDERS}),
    ("SELECT o.id, c.id FROM shop.orders o LEFT JOIN shop.customers c ON o.customer_id = c.id "
     "WHERE c.region = 'south' OR c.region IS NULL", set()),
    ("SELECT o.id, c.region FROM shop.orders o LEFT JOIN customers AS c ON o.customer_id = c.id "
     "WHERE c.region IN ('east', NULL) AND o.status <> 'sent'", {ORDERS, CUSTOMERS}),
    ("SELECT o.id, c.id FROM shop.customers c RIGHT JOIN shop.orders o ON o.customer_id = c.id "
     "WHERE NOT (c.region IS NOT NULL) AND o.customer_id IS NOT NULL", {ORDERS}),
    ("SELECT o.id, c.id FROM shop.orders o LEFT JOIN shop.customers c ON o.customer_id = c.id "
     "WHERE o.customer_id IS NULL", {ORDERS}),
    ("SELECT o.id, c.name FROM shop.orders o FULL JOIN shop.customers c ON o.customer_id = c.id "
     "WHERE o.id IS NULL OR c.name LIKE 'c1%'", set()),  # an OR across tables
    ("SELECT o.id, c.name FROM shop.orders o FULL JOIN shop.customers c ON o.customer_id = c.id "
     "WHERE c.name LIKE 'c1%' AND o.total <= 50", {ORDERS, CUSTOMERS}),
    # a self-join: the conjuncts both reads share are pushed, others not
    ("SELECT a.id, b.id FROM shop.orders a JOIN shop.orders b ON a.customer_id = b.customer_id "
     "WHERE a.status = 'new' AND b.status = 'new' AND a.id < b.id AND a.id < 30", {ORDERS}),
    ("SELECT a.id, b.id FROM shop.orders a JOIN shop.orders b ON a.customer_id = b.customer_id "
     "WHERE a.status = 'new' AND b.status = 'paid' AND a.id < 40", set()),
    # unqualified names that one table has; a three-part name
    ("SELECT o.id, name FROM shop.orders o JOIN shop.customers c ON o.customer_id = c.id "
     "WHERE total BETWEEN 10 AND 60 AND region <> 'east' AND c.name IS NOT NULL", {ORDERS, CUSTOMERS}),
    ("SELECT customers.name FROM shop.customers WHERE shop.customers.region = 'north'", {CUSTOMERS}),
    # constants on the left, dates as text and as DATE
    ("SELECT id FROM shop.orders WHERE 100 < total AND '2025-01-20' >= placed", {ORDERS}),
    ("SELECT id, placed FROM shop.orders WHERE placed > DATE '2025-02-05' OR placed = '2025-01-01'", {ORDERS}),
    ("SELECT id FROM shop.orders WHERE (status = 'new' OR customer_id IS NULL) AND NOT (id BETWEEN 50 AND 250)",
     {ORDERS}),
    ("SELECT id FROM shop.orders WHERE customer_id NOT IN (1, 2, NULL)", {ORDERS}),
    ("SELECT id FROM shop.orders WHERE customer_id NOT IN (1, 2) AND status IS NULL", {ORDERS}),
    ("SELECT id FROM shop.orders WHERE customer_id IN (3, NULL, 5)", {ORDERS}),
    ("SELECT id FROM shop.orders WHERE status = NULL", set()),
    # exact decimals against DECIMAL(12,2) and BIGINT
    ("SELECT id, total FROM shop.orders WHERE total = 12.5 OR total = 12.505 OR total < -0.001", {ORDERS}),
    ("SELECT id FROM shop.orders WHERE id <= 10.5 AND id > -1 AND id <> 3.0", {ORDERS}),
    # subqueries, a CTE, a correlated EXISTS
    ("SELECT c.name FROM shop.customers c WHERE c.id IN (SELECT customer_id FROM shop.orders "
     "WHERE status = 'paid' AND total >= 200) AND c.region IS NOT NULL", {ORDERS, CUSTOMERS}),
    ("WITH big AS (SELECT * FROM shop.orders WHERE total > 150) SELECT status, count(*) AS n FROM big "
     "WHERE placed < DATE '2025-01-15' GROUP BY status", {ORDERS}),
    ("SELECT c.id FROM shop.customers c WHERE EXISTS (SELECT 1 FROM shop.orders o WHERE o.customer_id = c.id "
     "AND o.total < 20) AND c.name >= 'c2'", {ORDERS, CUSTOMERS}),
    ("SELECT o.id FROM shop.orders o, (SELECT 5 AS total) s WHERE o.total > s.total AND o.id < 20", {ORDERS}),
    # an unqualified name of the outer query inside a subquery is not the inner table's
    ("SELECT c.id FROM shop.customers c WHERE EXISTS (SELECT 1 FROM shop.orders o WHERE o.customer_id = c.id "
     "AND region = 'north')", set()),
    # a USING column is both tables' (and, in a FULL JOIN, either's)
    ("SELECT id, o.total FROM shop.orders o JOIN shop.customers c USING (id) WHERE id < 5 AND o.total > 10",
     {ORDERS}),
    ("SELECT id FROM shop.orders o FULL JOIN shop.customers c USING (id) WHERE id >= 290 OR id < 3", set()),
    ("SELECT region, count(*) AS n FROM shop.customers WHERE name LIKE 'c_%' GROUP BY region", set()),
    ("SELECT id FROM shop.customers WHERE starts_with(name, 'c3') OR name NOT LIKE 'c%'", {CUSTOMERS}),
    # types: DOUBLE (not by > or >=), FLOAT (only NULL tests), DATETIME, TIMESTAMP (UTC, offsets),
    # VARBINARY, DECIMAL(30,6), BIGINT UNSIGNED, text
    ("SELECT id FROM kinds.measures WHERE f < 0.5 AND f >= -1", {VALUES}),
    ("SELECT id FROM kinds.measures WHERE f IN (0.25, -1, 1e0) OR f = 1", {VALUES}),
    ("SELECT id FROM kinds.measures WHERE r = 0.1 OR r = 1.5", set()),
    ("SELECT id FROM kinds.measures WHERE r IS NOT NULL AND r < 0.7", {VALUES}),
    ("SELECT id FROM kinds.measures WHERE \"at\" >= '2024-05-06 08:00:00' AND \"at\" < TIMESTAMP '2024-05-06 11:01:00.000005'",
     {VALUES}),
    ("SELECT id FROM kinds.measures WHERE stamp < '2024-05-06 09:00:00-01:00' OR stamp >= '2024-05-06T11:30:00Z'",
     {VALUES}),
    ("SELECT id FROM kinds.measures WHERE stamp > TIMESTAMPTZ '2024-05-06 11:00:00+02:30'", {VALUES}),
    ("SELECT id FROM kinds.measures WHERE stamp >= DATE '2024-05-06' AND \"at\" < '2024-05-07'", {VALUES}),
    ("SELECT id FROM kinds.measures WHERE raw >= 'ac' OR raw = '\\x00\\xff'", set()),
    ("SELECT id FROM kinds.measures WHERE raw >= 'ac'", {VALUES}),
    ("SELECT id FROM kinds.measures WHERE amount > -1.000001 AND amount <= 5", {VALUES}),
    ("SELECT id FROM kinds.measures WHERE u > 9223372036854775807 AND u <> 9223372036854775811", {VALUES}),
    ("SELECT id FROM kinds.measures WHERE note LIKE 'n1-%' OR note IN ('n2-7', 'n3-8')", {VALUES}),
    ("SELECT id FROM kinds.measures WHERE _tidb_rowid >= 5 AND id < 9", {VALUES}),
]


@pytest.mark.parametrize("sql, pushed", QUERIES, ids=[str(i) for i in range(len(QUERIES))])
def test_an_answer_with_filters_pushed_equals_the_upstreams_and_the_one_without(
        upstream_at: tuple[int, Any], engine: Engine, sql: str, pushed: set[str]) -> None:
    ts, upstream = upstream_at
    expected = sorted_rows(upstream.execute(sql).arrow())
    with_pushdown = run_sql(engine, sql, ts)
    without = run_sql(engine, sql, ts, push_filters=False)
    assert sorted_rows(with_pushdown.result) == expected
    assert sorted_rows(without.result) == expected
    assert set(with_pushdown.pushed_filters) == pushed and not without.pushed_filters


def test_a_selective_join_streams_only_the_rows_its_filters_keep(rig: FlashRig, engine: Engine) -> None:
    ts = rig.cluster.get_ts()
    orders, customers = rig.cluster.scan_table(ORDERS, ts), rig.cluster.scan_table(CUSTOMERS, ts)
    sql = ("SELECT c.region, count(*) AS n, sum(o.total) AS total FROM shop.orders o "
           "JOIN shop.customers c ON o.customer_id = c.id "
           "WHERE o.total >= 200 AND o.placed < DATE '2025-01-11' AND c.region = 'north' GROUP BY c.region")
    kept_orders = [o for o in orders if o["total"] >= 200 and o["placed"] < dt.date(2025, 1, 11)]
    north = {c["id"] for c in customers if c["region"] == "north"}
    joined = [o for o in kept_orders if o["customer_id"] in north]

    got = run_sql(engine, sql, ts)
    assert got.result.to_pylist() == [{"region": "north", "n": len(joined), "total": sum(o["total"] for o in joined)}]
    assert got.rows_read == {ORDERS: len(kept_orders), CUSTOMERS: len(north)}
    assert got.pushed_filters[CUSTOMERS].to_dict() == {"cmp": "==", "col": "region", "value": "north"}

    everything = run_sql(engine, sql, ts, push_filters=False)
    assert everything.result.to_pylist() == got.result.to_pylist()
    assert everything.rows_read == {ORDERS: len(orders), CUSTOMERS: len(customers)}
    assert 0 < len(kept_orders) < len(orders) // 4  # selective: the pushed read streams a quarter or less


def test_a_filter_on_the_handle_in_a_join_reaches_the_stream(rig: FlashRig, engine: Engine) -> None:
    ts = rig.cluster.get_ts()
    got = run_sql(engine, "SELECT count(*) AS n FROM shop.orders o JOIN shop.customers c ON o.customer_id = c.id "
                          "WHERE o.id < 20", ts)
    customers = {c["id"] for c in rig.cluster.scan_table(CUSTOMERS, ts)}
    assert got.result.to_pylist() == [{"n": sum(1 for o in rig.cluster.scan_table(ORDERS, ts)
                                                if o["id"] < 20 and o["customer_id"] in customers)}]
    assert got.rows_read[ORDERS] == 20


QUERIES_DRAWN = 60


def random_query(rnd: random.Random) -> str:
    """A seeded random join of orders and customers (none, inner, LEFT, RIGHT, FULL) with a WHERE
    of one to four conjuncts, and a join with up to two more in its ON: comparisons (constant on either side), IN / NOT IN with or without
    NULL, IS [NOT] NULL, BETWEEN, LIKE prefixes, ORs and NOTs of them, on either table."""
    join = rnd.choice(["", "JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"])
    columns: dict[str, list[Any]] = {
        "o.id": list(range(0, N_ORDERS, 7)), "o.customer_id": list(range(0, N_CUSTOMERS + 3, 3)),
        "o.total": ["0", "12.25", "100", "124.75", "200.5", "249.75"], "o.status": ["'new'", "'paid'", "'sent'"],
        "o.placed": ["DATE '2025-01-01'", "'2025-01-15'", "DATE '2025-02-09'"]}
    if join:
        columns.update({"c.id": list(range(0, N_CUSTOMERS + 3, 4)), "c.name": ["'c1'", "'c25'", "'c39'"],
                        "c.region": ["'north'", "'south'", "'east'"]})

    def atom() -> str:
        name = rnd.choice(sorted(columns))
        value = str(rnd.choice(columns[name]))
        shape = rnd.randrange(8)
        if shape in (0, 7):  # NULL tests twice as often: they decide what an outer join may push
            return f"{name} IS {rnd.choice(['', 'NOT '])}NULL"
        if shape == 1:
            values = [str(rnd.choice(columns[name])) for _ in range(rnd.randint(1, 3))] + ["NULL"] * rnd.randint(0, 1)
            return f"{name} {rnd.choice(['', 'NOT '])}IN ({', '.join(values)})"
        if shape == 2:
            return f"{name} BETWEEN {value} AND {rnd.choice(columns[name])}"
        if shape == 3 and name in ("o.status", "c.name", "c.region"):
            return f"{name} {rnd.choice(['', 'NOT '])}LIKE '{value.strip(chr(39))[:rnd.randint(0, 2)]}%'"
        op = rnd.choice(["=", "<>", "<", "<=", ">", ">="])
        return f"{name} {op} {value}" if rnd.random() < 0.7 else f"{value} {op} {name}"

    def conjunct() -> str:
        roll = rnd.random()
        if roll < 0.2:
            return f"({atom()} OR {atom()})"
        if roll < 0.3:
            return f"NOT ({atom()})"
        return atom()

    where = " AND ".join(conjunct() for _ in range(rnd.randint(1, 4)))
    if not join:
        return f"SELECT o.id FROM shop.orders o WHERE {where}"
    on = "".join(f" AND {conjunct()}" for _ in range(rnd.randint(0, 2)))  # an inner join's are pushed too
    return f"SELECT o.id, c.id FROM shop.orders o {join} shop.customers c ON o.customer_id = c.id{on} WHERE {where}"


def test_random_joins_and_filters_answer_the_same_with_and_without_pushdown(
        upstream_at: tuple[int, Any], engine: Engine) -> None:
    ts, upstream = upstream_at
    rnd = random.Random(52_6)
    wrong, pushing = [], 0
    for _ in range(QUERIES_DRAWN):
        sql = random_query(rnd)
        expected = sorted_rows(upstream.execute(sql).arrow())
        got = run_sql(engine, sql, ts)
        pushing += bool(got.pushed_filters)
        if sorted_rows(got.result) != expected or sorted_rows(run_sql(engine, sql, ts, push_filters=False).result) \
                != expected:
            wrong.append(sql)
    assert not wrong, f"{len(wrong)} of {QUERIES_DRAWN} queries answer otherwise than the upstream's rows: {wrong}"
    assert pushing >= QUERIES_DRAWN * 3 // 4  # most of them push something: the test exercises pushdown
