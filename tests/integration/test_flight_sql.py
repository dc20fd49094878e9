"""Arrow Flight SQL from `theflash serve`, with ADBC's Flight SQL driver as the client: it
connects, lists catalogs, schemas and tables, runs a query at a snapshot and gets the rows a read
session reads at that ts; DuckDB reads a table through it; a query outside the read-session
subset is computed whole (tests/integration/test_native_sql.py has those at length); a write
or an unknown table gets an error that says why; the service's own JSON commands keep working
beside it; Polars reads an aggregate at a snapshot ts through ADBC."""
from __future__ import annotations

import json
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.flight as flight
import pytest

pytest.importorskip("adbc_driver_flightsql.dbapi")
import adbc_driver_manager  # noqa: E402

from flash_rig import FlashRig  # noqa: E402
from pyspark_theflash.scan.session import open_read_session, read_stream  # noqa: E402
from pyspark_theflash.service import RunningService  # noqa: E402
from pyspark_theflash.service.sql_select import UnsupportedSqlError, parse_select  # noqa: E402
from pyspark_theflash.upstream.tidb import make_column, record_key  # noqa: E402

TABLE = "sqldb.items"
ROWS = 900
SNAPSHOT_HEADER = "adbc.flight.sql.rpc.call_header.x-theflash-snapshot-ts"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("flight_sql"))
    table = r.cluster.create_table(TABLE, [
        make_column("id", "BIGINT", not_null=True), make_column("name", "VARCHAR(16)"), make_column("qty", "INT"),
        make_column("price", "DECIMAL(10,2)"),
    ], primary_key=["id"])
    r.cluster.split_at(record_key(table, ROWS // 2))
    r.cluster.bulk_insert(TABLE, pa.table({
        "id": pa.array(range(ROWS), pa.int64()), "name": [None if i % 10 == 0 else f"n{i}" for i in range(ROWS)],
        "qty": pa.array([i % 7 for i in range(ROWS)], pa.int32()),
        "price": pa.array([i * 25 for i in range(ROWS)], pa.decimal128(10, 2))}), txn_rows=300)
    r.cluster.create_table("other.notes", [make_column("id", "BIGINT", not_null=True), make_column("note", "TEXT")],
                           primary_key=["id"])
    r.cluster.bulk_insert("other.notes", pa.table({"id": pa.array([1, 2], pa.int64()), "note": ["a", "b"]}))
    r.start_writer(interval_s=0.05)
    for name in (TABLE, "other.notes"):
        r.wait_replicated(name)
    yield r
    r.close()


def session_read(rig: FlashRig, ts: int, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
    with open_read_session(rig.store, TABLE, snapshot_ts=ts, columns=columns, filter=filter,
                           options={"upstream": rig.upstream}) as s:
        return pa.Table.from_batches([b for n in range(len(s.streams)) for b in read_stream(s, n)], schema=s.schema)


def query(conn: Any, sql: str, snapshot_ts: int | None = None) -> pa.Table:
    with conn.cursor() as cur:
        if snapshot_ts is not None:
            cur.adbc_statement.set_options(**{SNAPSHOT_HEADER: str(snapshot_ts)})
        cur.execute(sql)
        return cur.fetch_arrow_table()


def test_adbc_lists_the_catalog_the_databases_and_the_tables_with_their_schemas(conn: Any, rig: FlashRig) -> None:
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    assert [o["catalog_name"] for o in objects] == ["theflash"]
    schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
    assert sorted(schemas) == ["other", "sqldb"]
    tables = {t["table_name"]: t for t in schemas["sqldb"]["db_schema_tables"]}
    assert list(tables) == ["items"] and tables["items"]["table_type"] == "TABLE"
    assert [c["column_name"] for c in tables["items"]["table_columns"]] == ["id", "name", "qty", "price"]
    schema = conn.adbc_get_table_schema("items", db_schema_filter="sqldb")
    assert schema == session_read(rig, rig.cluster.get_ts()).schema
    assert conn.adbc_get_table_types() == ["TABLE"]
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "TheFlash for Spark"


def test_a_query_at_a_snapshot_returns_the_rows_a_read_session_reads_at_that_ts(conn: Any, rig: FlashRig) -> None:
    before = rig.cluster.get_ts()
    with rig.cluster.txn() as t:  # after `before`: a read at `before` must not see it
        t.update(TABLE, {"id": 5, "qty": 99})
        t.delete(TABLE, 6)
    after = rig.cluster.get_ts()
    sql = "SELECT price, id, name FROM sqldb.items WHERE qty >= 5 AND (price < 100.00 OR name LIKE 'n1%')"
    conjuncts = [["qty", ">=", 5], {"or": [["price", "<", {"decimal": "100.00"}], ["name", "starts_with", "n1"]]}]
    for ts in (before, after):
        expected = session_read(rig, ts, ["price", "id", "name"], conjuncts).sort_by("id")
        by_header = query(conn, sql, snapshot_ts=ts).sort_by("id")
        by_clause = query(conn, sql.replace(" WHERE", f" AS OF TSO {ts} WHERE")).sort_by("id")
        assert by_header.schema == expected.schema and by_header.equals(expected)
        assert by_clause.equals(expected)
        assert expected.num_rows > 0
    ids_before = set(query(conn, "SELECT id FROM sqldb.items WHERE id IN (5, 6)", before)["id"].to_pylist())
    assert ids_before == {5, 6}
    assert query(conn, "SELECT qty FROM sqldb.items WHERE id = 5", after)["qty"].to_pylist() == [99]
    assert query(conn, "SELECT * FROM sqldb.items WHERE id = 6", after).num_rows == 0


def test_limit_star_and_null_predicates(conn: Any, rig: FlashRig) -> None:
    ts = rig.cluster.get_ts()
    assert query(conn, "SELECT * FROM theflash.sqldb.items LIMIT 17", ts).num_rows == 17
    nulls = query(conn, "SELECT id FROM sqldb.items WHERE name IS NULL AND id BETWEEN 0 AND 99", ts)
    assert sorted(nulls["id"].to_pylist()) == list(range(0, 100, 10))


def test_the_service_releases_a_querys_session_once_every_endpoint_was_read(conn: Any, rig: FlashRig,
                                                                            service: RunningService) -> None:
    query(conn, "SELECT id FROM sqldb.items", rig.cluster.get_ts())
    assert service.service.metrics.value("theflash_service_sessions_active") == 0


def test_duckdb_reads_a_table_through_adbc(conn: Any, rig: FlashRig) -> None:
    duckdb = pytest.importorskip("duckdb")
    ts = rig.cluster.get_ts()
    with conn.cursor() as cur:
        cur.adbc_statement.set_options(**{SNAPSHOT_HEADER: str(ts)})
        cur.execute("SELECT id, qty, price FROM sqldb.items")
        items = cur.fetch_record_batch()  # noqa: F841  (DuckDB scans the Arrow stream by its name)
        got = duckdb.sql("SELECT qty, count(*) AS n, sum(price) AS total FROM items GROUP BY qty ORDER BY qty").arrow()
    rows = session_read(rig, ts, ["id", "qty", "price"]).to_pylist()
    want = {}
    for r in rows:
        n, total = want.get(r["qty"], (0, 0))
        want[r["qty"]] = (n + 1, total + r["price"])
    got_rows = got.read_all() if hasattr(got, "read_all") else got
    assert {r["qty"]: (r["n"], r["total"]) for r in got_rows.to_pylist()} == want


def test_polars_reads_an_aggregate_at_a_snapshot_through_adbc(service: RunningService, rig: FlashRig) -> None:
    """Polars' ``read_database`` over an ADBC connection whose every call carries the snapshot
    ts (a database option: Polars makes its own statements): the aggregate DuckDB computes on
    the service equals the read session's rows at that ts, DECIMAL kept, NULLs counted."""
    pl = pytest.importorskip("polars")
    import adbc_driver_flightsql.dbapi as adbc_flightsql

    ts = rig.cluster.get_ts()
    with adbc_flightsql.connect(service.flight_location, db_kwargs={SNAPSHOT_HEADER: str(ts)},
                                autocommit=True) as c:
        got = pl.read_database("SELECT qty, count(*) AS n, count(name) AS named, sum(price) AS total "
                               "FROM sqldb.items GROUP BY qty ORDER BY qty", connection=c)
    rows = session_read(rig, ts, ["qty", "name", "price"]).to_pylist()
    want = [{"qty": q, "n": sum(r["qty"] == q for r in rows), "named": sum(r["qty"] == q and r["name"] is not None
                                                                            for r in rows),
             "total": sum(r["price"] for r in rows if r["qty"] == q)} for q in sorted({r["qty"] for r in rows})]
    assert got.to_dicts() == want
    assert isinstance(got.schema["total"], pl.Decimal)
    # and the ts holds: a note committed after it is not in Polars' answer at it
    with rig.cluster.txn() as t:
        t.insert("other.notes", {"id": 3, "note": "c"})
    rig.wait_replicated("other.notes")
    for at, ids in ((ts, [1, 2]), (rig.cluster.get_ts(), [1, 2, 3])):
        with adbc_flightsql.connect(service.flight_location, db_kwargs={SNAPSHOT_HEADER: str(at)},
                                    autocommit=True) as c:
            assert pl.read_database("SELECT id FROM other.notes ORDER BY id", connection=c)["id"].to_list() == ids


def test_a_query_outside_the_read_session_subset_is_computed_whole(conn: Any, rig: FlashRig,
                                                                   service: RunningService) -> None:
    """GROUP BY, ORDER BY, a comparison with NULL: DuckDB over the read streams (one endpoint,
    test_native_sql.py has the rest), its sessions released once computed."""
    ts = rig.cluster.get_ts()
    rows = session_read(rig, ts, ["id", "qty"]).to_pylist()
    got = query(conn, "SELECT qty, count(*) AS n FROM sqldb.items GROUP BY qty ORDER BY qty", ts)
    assert got.to_pylist() == [{"qty": q, "n": sum(r["qty"] == q for r in rows)} for q in sorted({r["qty"] for r in rows})]
    assert query(conn, "SELECT id FROM sqldb.items ORDER BY id DESC LIMIT 2", ts)["id"].to_pylist() == [ROWS - 1, ROWS - 2]
    assert query(conn, "SELECT * FROM sqldb.items WHERE qty = NULL", ts).num_rows == 0  # SQL's NULL: never equal
    assert service.service.metrics.value("theflash_service_sessions_active") == 0


@pytest.mark.parametrize("sql, says", [
    ("DELETE FROM sqldb.items", "DELETE is not a read-only query"),
    ("SELECT nope FROM sqldb.items", "no column"),
    ("SELECT * FROM sqldb.missing", "no table"),
    ("SELECT count(*) FROM sqldb.missing", "no table sqldb.missing"),
])
def test_a_statement_the_store_cannot_answer_gets_an_error_saying_why(conn: Any, sql: str, says: str) -> None:
    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as err:
        cur.execute(sql)
        cur.fetch_arrow_table()
    assert says in str(err.value)
    assert "Traceback" not in str(err.value) and ".py" not in str(err.value)  # the message, not the server's stack


def test_the_services_own_json_commands_still_work_beside_flight_sql(service: RunningService, rig: FlashRig) -> None:
    client = flight.connect(service.flight_location)
    try:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"table": TABLE})))
        got = pa.concat_tables([client.do_get(e.ticket).read_all() for e in info.endpoints])
        session = json.loads(info.app_metadata)
        client.do_action(flight.Action("release", json.dumps({"session": session["id"]}).encode()))
    finally:
        client.close()
    assert got.num_rows == session_read(rig, session["ts"]).num_rows


def test_the_subset_parser_turns_where_clauses_into_the_read_requests_filter() -> None:
    s = parse_select("SELECT a, `b c` FROM d.t AS OF TIMESTAMP '2026-01-02 03:04:05' "
                     "WHERE NOT (a > 1 AND b < 2) AND 3 <= c AND x NOT IN (1, NULL) LIMIT 5;")
    assert (s.table, s.columns, s.as_of, s.limit) == ("d.t", ("a", "b c"), "2026-01-02 03:04:05", 5)
    assert s.filter == [{"not": {"not": {"or": [{"not": ["a", ">", 1]}, {"not": ["b", "<", 2]}]}}},
                        ["c", ">=", 3], ["x", "not_in", [1, None]]]
    with pytest.raises(UnsupportedSqlError, match="only a prefix pattern"):
        parse_select("SELECT * FROM d.t WHERE a LIKE '%x'")
