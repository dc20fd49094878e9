"""Any read-only query on a native store (issue 52, item 6): over Arrow Flight SQL (ADBC's driver
against `theflash serve`) and through `theflash sql`, DuckDB computes it over the read streams of
the tables it names, every table at one snapshot ts. Each answer is checked against one computed
here in Python from the upstream mini cluster's own rows at that ts (its MVCC scan), not from
TheFlash's read path."""
from __future__ import annotations

import collections
import datetime as dt
import decimal
import json
from typing import Any, Iterator

import pyarrow as pa
import pytest

pytest.importorskip("adbc_driver_flightsql.dbapi")
import adbc_driver_manager  # noqa: E402

from flash_rig import FlashRig  # noqa: E402
from pyspark_theflash.cli import main as cli_main  # noqa: E402
from pyspark_theflash.service import RunningService  # noqa: E402
from pyspark_theflash.upstream.tidb import make_column  # noqa: E402
from shop_tables import CUSTOMERS, N_CUSTOMERS, ORDERS, create_shop  # noqa: E402

TYPES = "kinds.all_types"
SNAPSHOT_HEADER = "adbc.flight.sql.rpc.call_header.x-theflash-snapshot-ts"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("native_sql"))
    create_shop(r.cluster, "ENUM('new','paid','sent')", lambda i: ("new", "paid", "sent")[i % 3])
    r.cluster.create_table(TYPES, [
        make_column("id", "BIGINT", not_null=True), make_column("raw", "VARBINARY(8)"),
        make_column("fixed", "BINARY(3)"), make_column("amount", "DECIMAL(30,6)"), make_column("doc", "JSON"),
        make_column("kind", "ENUM('small','large')"), make_column("day", "DATE"), make_column("at", "DATETIME(6)"),
        make_column("stamp", "TIMESTAMP(6)"), make_column("span", "TIME(6)")], primary_key=["id"])
    with r.cluster.txn() as t:
        t.insert(TYPES, {"id": 1, "raw": b"\x00\xff\x10", "fixed": b"ab", "amount": decimal.Decimal("-123456789012.345678"),
                         "doc": {"k": [1, 2.5, None], "s": "x"}, "kind": "large", "day": dt.date(2024, 2, 29),
                         "at": dt.datetime(2024, 5, 6, 7, 8, 9, 123456),
                         "stamp": dt.datetime(2024, 5, 6, 7, 8, 9, 5, tzinfo=dt.timezone.utc),
                         "span": dt.timedelta(hours=-838, minutes=-59, seconds=-59)})
        t.insert(TYPES, {"id": 2, "span": dt.timedelta(hours=25, microseconds=7)})
        t.insert(TYPES, {"id": 3})
    r.start_writer(interval_s=0.05)
    for name in (CUSTOMERS, ORDERS, TYPES):
        r.wait_replicated(name)
    yield r
    r.close()


def query(conn: Any, sql: str, ts: int) -> pa.Table:
    with conn.cursor() as cur:
        cur.adbc_statement.set_options(**{SNAPSHOT_HEADER: str(ts)})
        cur.execute(sql)
        return cur.fetch_arrow_table()


def upstream(rig: FlashRig, table: str, ts: int) -> list[dict[str, Any]]:
    """The mini cluster's own rows of ``table`` at ``ts`` (its MVCC scan)."""
    return rig.cluster.scan_table(table, ts)


def test_aggregates_group_by_a_join_a_subquery_and_order_by_limit_equal_the_upstreams_rows_at_the_ts(
        conn: Any, rig: FlashRig) -> None:
    ts = rig.cluster.get_ts()
    orders, customers = upstream(rig, ORDERS, ts), upstream(rig, CUSTOMERS, ts)
    region = {c["id"]: c["region"] for c in customers}

    got = query(conn, "SELECT count(*) AS n, sum(total) AS total, min(placed) AS first FROM shop.orders", ts)
    assert got.to_pylist() == [{"n": len(orders), "total": sum(o["total"] for o in orders),
                                "first": min(o["placed"] for o in orders)}]
    assert pa.types.is_decimal(got.schema.field("total").type) and got.schema.field("first").type == pa.date32()

    got = query(conn, "SELECT status, count(*) AS n, sum(total) AS total FROM shop.orders GROUP BY status "
                      "ORDER BY status", ts)
    by_status: dict[str, list[Any]] = collections.defaultdict(lambda: [0, 0])
    for o in orders:
        by_status[o["status"]][0] += 1
        by_status[o["status"]][1] += o["total"]
    assert [(r["status"], r["n"], r["total"]) for r in got.to_pylist()] == [
        (s, n, t) for s, (n, t) in sorted(by_status.items())]

    got = query(conn, "SELECT c.region, count(*) AS n, sum(o.total) AS total FROM shop.orders o "
                      "JOIN shop.customers c ON o.customer_id = c.id GROUP BY c.region", ts)
    joined: dict[Any, list[Any]] = collections.defaultdict(lambda: [0, 0])
    for o in orders:
        if o["customer_id"] in region:
            joined[region[o["customer_id"]]][0] += 1
            joined[region[o["customer_id"]]][1] += o["total"]
    assert {r["region"]: [r["n"], r["total"]] for r in got.to_pylist()} == dict(joined)

    got = query(conn, "SELECT id FROM shop.customers WHERE id IN (SELECT customer_id FROM shop.orders "
                      "WHERE total > (SELECT avg(total) FROM shop.orders)) ORDER BY id", ts)
    mean = sum(o["total"] for o in orders) / len(orders)
    assert got["id"].to_pylist() == sorted({o["customer_id"] for o in orders if o["total"] > mean} & set(region))

    got = query(conn, "SELECT id, total FROM shop.orders ORDER BY total DESC, id LIMIT 5", ts)
    top = sorted(orders, key=lambda o: (-o["total"], o["id"]))[:5]
    assert got.to_pylist() == [{"id": o["id"], "total": o["total"]} for o in top]

    # bare names resolve when one database has the table (TPC-H's text names them so)
    assert query(conn, "SELECT count(*) AS n FROM customers", ts)["n"].to_pylist() == [len(customers)]


def test_a_join_reads_both_tables_at_one_ts(conn: Any, rig: FlashRig, service: RunningService) -> None:
    """Orders move between customers in one transaction after ``before``: a join at ``before``
    sees the old assignment in both tables, one at ``after`` the new one, never a mix."""
    sql = ("SELECT count(*) AS n, sum(c.id) AS s FROM theflash.shop.orders o JOIN shop.customers c "
           "ON o.customer_id = c.id WHERE o.id < 10")
    before = rig.cluster.get_ts()
    with rig.cluster.txn() as t:
        t.insert(CUSTOMERS, {"id": 1000, "name": "new", "region": "west"})
        for i in range(10):
            t.update(ORDERS, {"id": i, "customer_id": 1000})
    after = rig.cluster.get_ts()
    old = [o for o in upstream(rig, ORDERS, before) if o["id"] < 10 and o["customer_id"] is not None
           and o["customer_id"] < N_CUSTOMERS]
    assert query(conn, sql, before).to_pylist() == [{"n": len(old), "s": sum(o["customer_id"] for o in old)}]
    assert query(conn, sql, after).to_pylist() == [{"n": 10, "s": 10_000}]
    assert service.service.metrics.value("theflash_service_sessions_active") == 0  # leases released


def test_a_prepared_statement_runs_an_aggregate(conn: Any, rig: FlashRig) -> None:
    ts = rig.cluster.get_ts()
    with conn.cursor() as cur:
        cur.adbc_statement.set_options(**{SNAPSHOT_HEADER: str(ts)})
        cur.adbc_prepare("SELECT count(*) AS n FROM shop.orders WHERE status = 'paid'")
        cur.execute("SELECT count(*) AS n FROM shop.orders WHERE status = 'paid'")
        got = cur.fetch_arrow_table()
    assert got["n"].to_pylist() == [sum(o["status"] == "paid" for o in upstream(rig, ORDERS, ts))]


def test_every_type_and_null_comes_back_as_the_store_reads_it(conn: Any, rig: FlashRig) -> None:
    ts = rig.cluster.get_ts()
    from pyspark_theflash.scan.session import open_read_session, read_stream

    with open_read_session(rig.store, TYPES, snapshot_ts=ts, options={"upstream": rig.upstream}) as s:
        read = pa.Table.from_batches([b for n in range(len(s.streams)) for b in read_stream(s, n)], schema=s.schema)
    got = query(conn, "SELECT t.* FROM kinds.all_types t JOIN kinds.all_types u ON t.id = u.id ORDER BY t.id", ts)
    # the store's types, column by column (DuckDB marks every result column nullable)
    assert [(f.name, f.type) for f in got.schema] == [(f.name, f.type) for f in read.schema]
    assert got.to_pylist() == read.sort_by("id").to_pylist()
    rows = got.to_pylist()
    assert rows[0]["raw"] == b"\x00\xff\x10" and rows[0]["fixed"] == b"ab\x00"
    assert rows[0]["amount"] == decimal.Decimal("-123456789012.345678")
    assert json.loads(rows[0]["doc"]) == {"k": [1, 2.5, None], "s": "x"} and rows[0]["kind"] == "large"
    assert rows[0]["stamp"] == dt.datetime(2024, 5, 6, 7, 8, 9, 5, tzinfo=dt.timezone.utc)
    assert rows[0]["span"] == -dt.timedelta(hours=838, minutes=59, seconds=59)
    assert rows[1]["span"] == dt.timedelta(hours=25, microseconds=7)
    assert all(v is None for k, v in rows[2].items() if k != "id")
    # computed values keep their types too: a TIME difference, a DECIMAL sum, a date's year
    got = query(conn, "SELECT max(span) - min(span) AS spread, sum(amount) AS s, max(year(day)) AS y "
                      "FROM kinds.all_types", ts)
    assert got.to_pylist() == [{"spread": dt.timedelta(hours=863, minutes=59, seconds=59, microseconds=7),
                                "s": decimal.Decimal("-123456789012.345678"), "y": 2024}]
    assert got.schema.field("spread").type == pa.duration("us")


@pytest.mark.parametrize("sql, says", [
    ("DELETE FROM shop.orders", "DELETE is not a read-only query"),
    ("INSERT INTO shop.orders VALUES (1)", "INSERT is not a read-only query"),
    ("CREATE TABLE shop.x (a INT)", "CREATE is not a read-only query"),
    ("SELECT count(*) FROM shop.order", "no table shop.order (did you mean shop.orders?)"),
    ("SELECT count(*) FROM nope", "no table nope"),
    ("SELECT nope FROM shop.orders", "has no column(s) ['nope']"),  # the read-session subset
    ("SELECT nope, count(*) FROM shop.orders GROUP BY nope", "DuckDB refused the query: Binder Error"),
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
    ("SELECT 1; SELECT 2", "2 statements"),
])
def test_a_query_the_store_cannot_run_gets_one_line_saying_why(conn: Any, sql: str, says: str) -> None:
    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as err:
        cur.execute(sql)
        cur.fetch_arrow_table()
    assert says in str(err.value)
    assert "Traceback" not in str(err.value) and ".py" not in str(err.value)


def test_theflash_sql_prints_a_native_stores_rows_and_refuses_a_write(rig: FlashRig,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ts = rig.cluster.get_ts()
    code = cli_main(["sql", "--store", rig.store, "--upstream", rig.upstream, "--ts", str(ts),
                     "SELECT id, raw, amount, doc, kind, day, \"at\", stamp, span FROM kinds.all_types ORDER BY id"])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = out.out.splitlines()
    assert lines[0].split() == ["id", "raw", "amount", "doc", "kind", "day", "at", "stamp", "span"]
    assert lines[1].split("  ")[0] == "1" and "0x00ff10" in lines[1] and "-123456789012.345678" in lines[1]
    assert "2024-02-29" in lines[1] and "2024-05-06 07:08:09.123456" in lines[1] and "-838:59:59" in lines[1]
    assert "2024-05-06 07:08:09.000005+00:00" in lines[1] and '"k": [1, 2.5, null]' in lines[1]
    assert "25:00:00.000007" in lines[2] and lines[3].split() == ["3"] + ["NULL"] * 8
    assert f"3 rows at snapshot ts {ts} (kinds.all_types)" in out.err and "in DuckDB" in out.err

    code = cli_main(["sql", "--store", rig.store, "--upstream", rig.upstream, "--format", "json",
                     "--ts", str(ts), "SELECT count(*) AS n FROM shop.orders o JOIN shop.customers c "
                     "ON o.customer_id = c.id"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out) == {"n": sum(1 for o in upstream(rig, ORDERS, ts) if o["customer_id"] is not None
                                            and o["customer_id"] in {c["id"] for c in upstream(rig, CUSTOMERS, ts)})}

    code = cli_main(["sql", "--store", rig.store, "--upstream", rig.upstream, "UPDATE shop.orders SET total = 0"])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert out.err.count("\n") == 1 and "UPDATE is not a read-only query" in out.err and "Traceback" not in out.err
