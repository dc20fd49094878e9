"""The ClickHouse engine inside a running writer (``--engine clickhouse``) of a mini cluster:
read sessions from ClickHouse equal the native read of the same planned streams; ``theflash
sql``, ``theflash serve`` and ``open_engine`` use the engine the store records. One module (one
writer, one ClickHouse directory in this process)."""
from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig
from pyspark_theflash.engine import open_engine
from pyspark_theflash.scan.engine_sessions import PlannedSessions
from pyspark_theflash.scan.session import open_read_session, read_stream
from pyspark_theflash.store import col
from pyspark_theflash.upstream.tidb import make_column, record_key

TABLE = "eng.items"
ROWS = 60


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    """A mini cluster whose writer runs the ClickHouse engine: many types, several regions,
    updates and deletes after the first load."""
    r = FlashRig(tmp_path_factory.mktemp("engine_ch"))
    table = r.cluster.create_table(TABLE, [
        make_column("id", "BIGINT", not_null=True), make_column("name", "VARCHAR(16)"),
        make_column("price", "DECIMAL(10,2)"), make_column("day", "DATE"), make_column("at", "TIMESTAMP(6)"),
        make_column("made", "DATETIME(6)"), make_column("blob", "VARBINARY(8)"), make_column("qty", "INT"),
        make_column("ratio", "DOUBLE"), make_column("status", "VARCHAR(8)"),
    ], primary_key=["id"])
    for region in range(1, 3):
        r.cluster.split_at(record_key(table, region * ROWS // 3))
    with r.cluster.txn() as t:
        for i in range(ROWS):
            t.insert(TABLE, {"id": i, "name": None if i % 10 == 0 else f"n{i:02d}",
                             "price": decimal.Decimal(i) / 4, "day": dt.date(2024, 1, 1) + dt.timedelta(days=i),
                             "at": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=i),
                             "made": dt.datetime(2001, 2, 3, 4, 5, 6, i), "blob": bytes([i % 3]) * 3,
                             "qty": None if i % 7 == 0 else i * 3 - 50, "ratio": i / 7,
                             "status": ("new", "paid", "sent")[i % 3]})
    with r.cluster.txn() as t:
        for i in range(0, ROWS, 4):
            t.update(TABLE, {"id": i, "name": f"upd{i}", "qty": -i})
        for i in range(1, ROWS, 9):
            t.delete(TABLE, i)
    r.start_writer(interval_s=0.05, engine="clickhouse")
    r.twin = r.start_twin_writer()  # the native engine, applying the same binlog
    r.wait_replicated(TABLE)
    yield r
    r.close()


def twin_read(rig: FlashRig, ts: int, columns=None, filter=None) -> pa.Table:
    """The native twin store (the same binlog applied by a native writer) at ``ts``."""
    return rig.read_at(rig.twin, TABLE, ts, columns, filter)


def read_both_ways(rig: FlashRig, session, columns, filter) -> tuple[pa.Table, pa.Table]:
    """The session's streams read from ClickHouse, and the twin's read at the session's ts with
    the same columns and filter, as two tables of the session's schema."""
    ch = [b for n in range(len(session.streams)) for b in read_stream(session, n)]
    assert all(stream.partition.engine == "clickhouse" for stream in session.streams)
    native = twin_read(rig, session.ts, columns, filter)
    assert native.schema.equals(session.schema)
    return pa.Table.from_batches(ch, schema=session.schema), native


@pytest.mark.parametrize("columns, filter", [
    (None, None),
    (["status", "price"], None),
    (["_tidb_rowid", "id", "qty", "_tidb_commit_ts"], [["qty", ">", 0]]),
    (None, col("name").is_null() | (col("status").isin(["paid", "sent"]) & (col("ratio") < 4.5))),
    (["id", "qty"], ~(col("qty") < 0) & col("blob").startswith(b"\x01")),
    (["id", "day"], [["day", ">=", "2024-02-01"]]),
])
def test_read_sessions_on_the_clickhouse_engine_equal_the_native_read_of_the_same_snapshot(
        rig: FlashRig, columns, filter) -> None:
    with open_read_session(rig.store, TABLE, columns=columns, filter=filter,
                           options={"upstream": rig.upstream, "partition_target_bytes": 1}) as s:
        assert len(s.streams) >= 3
        ours, native = read_both_ways(rig, s, columns, filter)
        assert ours.schema == s.schema
        assert ours.num_rows > 0
        assert ours.sort_by("_tidb_rowid" if "_tidb_rowid" in ours.column_names else [(n, "ascending") for n in ours.column_names]).equals(
            native.sort_by("_tidb_rowid" if "_tidb_rowid" in native.column_names else [(n, "ascending") for n in native.column_names]))


def test_the_engine_the_service_opens_is_the_one_the_store_records(rig: FlashRig) -> None:
    # in the writer's process: shares its session
    with open_engine(rig.store, sessions=PlannedSessions(upstream=rig.upstream)) as engine:
        assert engine.kind == "clickhouse"
        session = engine.open_read_session(TABLE, columns=["id", "name"])
        try:
            rows = [r for n in range(len(session.streams)) for b in engine.read_stream(session, n) for r in b.to_pylist()]
        finally:
            session.close()
        assert {r["id"] for r in rows} == {i for i in range(ROWS) if i % 9 != 1}
        assert {r["name"] for r in rows if r["id"] % 4 == 0} == {f"upd{i}" for i in range(0, ROWS, 4) if i % 9 != 1}


def test_theflash_sql_aggregates_a_snapshot_inside_clickhouse(rig: FlashRig, capsys: pytest.CaptureFixture[str]) -> None:
    from pyspark_theflash.cli import main as cli_main
    from pyspark_theflash.engine.clickhouse.calculator import run_sql

    with open_engine(rig.store, sessions=PlannedSessions(upstream=rig.upstream)) as engine:
        out = run_sql(engine, f"SELECT status, sum(price) AS total, count() AS n FROM {TABLE} GROUP BY status ORDER BY status")
    # the same aggregate over the native engine's read of the same snapshot
    native = twin_read(rig, out.ts).to_pylist()
    expected: dict[str, list] = {}
    for r in native:
        e = expected.setdefault(r["status"], [decimal.Decimal(0), 0])
        e[0] += r["price"]
        e[1] += 1
    assert {r["status"]: [r["total"], r["n"]] for r in out.result.to_pylist()} == expected
    assert out.tables == (TABLE,)

    code = cli_main(["sql", "--store", rig.store, "--ts", str(out.ts), "--format", "json",
                     f"SELECT status, count() AS n FROM {TABLE} GROUP BY status ORDER BY status"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert [json.loads(line) for line in printed.out.splitlines()] == [
        {"status": s, "n": expected[s][1]} for s in sorted(expected)]
    assert f"at snapshot ts {out.ts}" in printed.err


def test_theflash_serve_streams_a_clickhouse_store_over_flight_and_http(rig: FlashRig) -> None:
    """`theflash serve` in the writer's process (``writer run --serve``) opens the engine the
    store records; Flight and HTTP clients read it as they read a native store."""
    from service_client import FlightReader, HttpReader

    from pyspark_theflash.service import serve

    with serve(rig.store, upstream=rig.upstream) as running:
        assert running.service.engine.kind == "clickhouse"
        flight_reader, http_reader = FlightReader(running.flight_location), HttpReader(running.http_url)
        try:
            by_flight, session = flight_reader.read({"table": TABLE, "columns": ["id", "name", "price"],
                                                     "filter": [["id", "<", 30]]})
            by_http, _ = http_reader.read({"table": TABLE, "columns": ["id", "name", "price"],
                                           "snapshot_ts": session["ts"], "filter": [["id", "<", 30]]})
        finally:
            flight_reader.close()
        native = twin_read(rig, session["ts"], ["id", "name", "price"], col("id") < 30)
        for got in (by_flight, by_http):
            assert got.sort_by("id").to_pylist() == native.sort_by("id").to_pylist()
        assert by_flight.num_rows == len([i for i in range(30) if i % 9 != 1])


def test_a_flight_sql_ticket_runs_a_whole_aggregate_in_the_clickhouse_engine(rig: FlashRig) -> None:
    import pyarrow.flight as flight

    from pyspark_theflash.engine.clickhouse.calculator import run_sql
    from pyspark_theflash.service import serve

    query = f"SELECT status, count() AS n, sum(qty) AS qty FROM {TABLE} GROUP BY status ORDER BY status"
    with open_engine(rig.store, sessions=PlannedSessions(upstream=rig.upstream)) as engine:
        expected = run_sql(engine, query)
    with serve(rig.store, upstream=rig.upstream) as running:
        client = flight.connect(running.flight_location)
        try:
            got = client.do_get(flight.Ticket(json.dumps({"sql": query, "snapshot_ts": expected.ts}).encode())).read_all()
        finally:
            client.close()
    assert got.to_pylist() == expected.result.to_pylist()
    assert sum(r["n"] for r in got.to_pylist()) == len([i for i in range(ROWS) if i % 9 != 1])



def test_adbc_flight_sql_runs_a_clickhouse_query_at_the_snapshot_it_names(rig: FlashRig) -> None:
    """A BI tool's Flight SQL client (``adbc_driver_flightsql``) on a ClickHouse-engine store:
    any ClickHouse query runs inside the engine at the snapshot ts the call names (the
    ``x-theflash-snapshot-ts`` header), and the tables are listed as on a native store."""
    adbc_flightsql = pytest.importorskip("adbc_driver_flightsql.dbapi")

    from pyspark_theflash.engine.clickhouse.calculator import run_sql
    from pyspark_theflash.service import serve

    query = f"SELECT status, count() AS n, sum(qty) AS qty FROM {TABLE} GROUP BY status ORDER BY status"
    with open_engine(rig.store, sessions=PlannedSessions(upstream=rig.upstream)) as engine:
        expected = run_sql(engine, query)
    with serve(rig.store, upstream=rig.upstream) as running, \
            adbc_flightsql.connect(running.flight_location, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.adbc_statement.set_options(
                **{"adbc.flight.sql.rpc.call_header.x-theflash-snapshot-ts": str(expected.ts)})
            cur.execute(query)
            got = cur.fetch_arrow_table()
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    assert got.to_pylist() == expected.result.to_pylist() != []
    db, name = TABLE.split(".")
    listed = {(c["catalog_name"], s["db_schema_name"], t["table_name"])
              for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
    assert any(schema == db and table == name for _, schema, table in listed), listed


def test_the_store_keeps_no_part_files_and_plans_with_its_records(rig: FlashRig) -> None:
    """The engine keeps the rows alone: no part file under the store, and the manifest's
    records (statistics only) are what the planner prunes with, exactly."""
    from pathlib import Path

    from pyspark_theflash.scan import plan
    from pyspark_theflash.scan.read import read_partition
    from pyspark_theflash.store.verify import verify_store

    assert [p for p in Path(rig.store).glob("tables/**/*") if p.is_file()] == []
    with plan(rig.store, TABLE, rig.options(min_partitions=1), predicate=col("qty") > 1000) as p:
        assert p.partitions == [] and p.stats.regions_pruned == p.stats.regions == 3  # qty <= 127 everywhere
    with plan(rig.store, TABLE, rig.options(min_partitions=1), predicate=col("qty") == 127) as p:
        # the region of id 59 is read; the others may be pruned or not, by when the plan comes:
        # records of separate flushes can bound a region apart until compaction merges them
        # into one record of the partition (a run at load 8 pruned 2 of 3)
        assert p.stats.regions_pruned < p.stats.regions and p.stats.parts > 0
        found = [r["id"] for part in p.partitions for b in read_partition(part) for r in b.to_pylist()]
    assert found == [59]  # 59 * 3 - 50
    report = verify_store(rig.store)
    assert report.problems == [] and report.parts_checked > 0
