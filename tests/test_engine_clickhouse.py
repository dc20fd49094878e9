"""The ClickHouse engine (chdb, in-process) against the native engine, on real files.

The ClickHouse engine shares apply (region caches, locks, prewrite–commit matching, decoding,
manifest) with the native store and keeps the committed rows in ClickHouse tables; a read
session's streams are read from ClickHouse. Because the store's native parts are still written
(the row sink mirrors each flush), the same planned stream can be read both ways at the same
ts: they must agree row for row, with the same Arrow schema.
"""
from __future__ import annotations

import dataclasses
import json
import datetime as dt
import decimal
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pytest

import store_events as se
from flash_rig import FlashRig
from pyspark_theflash.binlog.position import Position
from pyspark_theflash.engine import EngineMismatchError, open_engine, open_writer_engine
from pyspark_theflash.engine.clickhouse import ClickHouseEngine
from pyspark_theflash.engine.clickhouse.errors import ClickHouseDirectoryBusyError
from pyspark_theflash.engine.clickhouse.tables import table_name
from pyspark_theflash.scan.read import read_partition
from pyspark_theflash.scan.session import open_read_session, read_stream
from pyspark_theflash.store import Store, col
from pyspark_theflash.upstream.tidb import make_column, record_key

TABLE = "eng.items"
ROWS = 60


def write_items(store: Store, versions: list[tuple[int, int, str | None]]) -> None:
    """(handle, commit_ts, name or None for a delete) as 1PC rows of shop.items, region 1."""
    t = se.items_table()
    store.put_schema(se.DB, t.to_json())
    events = [se.snapshot_event(1, 5, se.region(1))]
    for i, (handle, ts, name) in enumerate(versions):
        value = None if name is None else se.row(t, id=handle, name=name, price=decimal.Decimal(handle) / 4)
        events.append(se.event(1, 6 + i, [se.committed(se.key(t, handle), value, ts)]))
    store.write(events, Position(0, len(events)))
    store.flush()


def test_a_store_records_its_engine_and_opening_it_with_the_other_is_refused(tmp_path: Path) -> None:
    ch_dir, native_dir = tmp_path / "ch", tmp_path / "native"
    store = Store.open(str(ch_dir))
    engine = open_writer_engine(store, "clickhouse")
    write_items(store, [(1, 100, "a")])
    engine.close()
    store = Store.open(str(ch_dir))
    with pytest.raises(EngineMismatchError, match="uses the clickhouse engine, not native"):
        open_writer_engine(store, "native")
    store.close()
    with open_engine(str(ch_dir)) as opened:  # read-only, whichever engine the store records
        assert opened.kind == "clickhouse" and opened.status()["engine"] == "clickhouse"
    with pytest.raises(EngineMismatchError, match="--engine clickhouse"):
        open_engine(str(ch_dir), engine="native")

    store = Store.open(str(native_dir))
    open_writer_engine(store, "native")
    write_items(store, [(1, 100, "a")])
    store.close()
    store = Store.open(str(native_dir))
    with pytest.raises(EngineMismatchError, match="uses the native engine, not clickhouse"):
        open_writer_engine(store, "clickhouse")
    store.close()
    with open_engine(str(native_dir)) as opened:
        assert opened.kind == "txn_merge_tree"


def test_one_process_opens_one_clickhouse_directory_and_says_so(tmp_path: Path) -> None:
    first = ClickHouseEngine.open(str(tmp_path / "a"), readonly=False)
    try:
        with pytest.raises(ClickHouseDirectoryBusyError, match="one ClickHouse data directory per process"):
            ClickHouseEngine.open(str(tmp_path / "b"), readonly=False)
        again = ClickHouseEngine.open(str(tmp_path / "a"), readonly=True)  # the same store: shared
        again.close()
    finally:
        first.close()


def test_gc_keeps_every_version_a_read_lease_still_sees(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s"))
    engine = open_writer_engine(store, "clickhouse")
    try:
        write_items(store, [(1, 100, "v100"), (1, 200, "v200"), (1, 300, "v300"), (2, 100, "x"), (2, 250, None)])
        lease = store.leases.acquire(150, 600.0, holder="test reader at 150")
        engine.gc(350)  # bounded by the lease: the safe point stops at 150
        with store.snapshot() as view:
            assert view.gc_safe_point() == 150
        names = {r["_tidb_rowid"]: r["name"] for r in pa.Table.from_batches(
            list(engine.scan(f"{se.DB}.items", 150, hidden=("_tidb_rowid",)))).to_pylist()}
        assert names == {1: "v100", 2: "x"}
        store.leases.release(lease.id)
        engine.gc(350)
        directory, t = engine.directory, table_name(100)
        # handle 1: only v300 can be seen at ts >= 350; handle 2: its newest is a delete: nothing left
        left = directory.arrow(f"SELECT _tidb_rowid, _tidb_commit_ts FROM {t} ORDER BY 1, 2").to_pylist()
        assert left == [{"_tidb_rowid": 1, "_tidb_commit_ts": 300}]
        got = pa.Table.from_batches(list(engine.scan(f"{se.DB}.items", 400, hidden=("_tidb_rowid",)))).to_pylist()
        assert [(r["_tidb_rowid"], r["name"]) for r in got] == [(1, "v300")]
        status = engine.status()
        assert status["engine"] == "clickhouse" and status["gc_safe_point"] == 350
        assert status["clickhouse"]["tables"][0]["rows"] >= 1
    finally:
        engine.close()


def test_a_clustered_common_handle_table_reads_the_same_from_clickhouse(tmp_path: Path) -> None:
    t = se.codes_table()
    store = Store.open(str(tmp_path / "s"))
    engine = open_writer_engine(store, "clickhouse")
    try:
        store.put_schema(se.DB, t.to_json())
        events = [se.snapshot_event(1, 5, se.region(1))]
        for i, (code, qty, ts) in enumerate([("b", 1, 100), ("a", 2, 110), ("b", 3, 120), ("c", 4, 130)]):
            events.append(se.event(1, 6 + i, [se.committed(se.common_key(t, code), se.row(t, code=code, qty=qty), ts)]))
        store.write(events, Position(0, len(events)))
        store.flush()
        for ts in (100, 115, 125, 200):
            native = store.scan_table(f"{se.DB}.codes", ts, hidden=("_tidb_rowid",))
            ours = pa.Table.from_batches(list(engine.scan(f"{se.DB}.codes", ts, hidden=("_tidb_rowid",))),
                                         schema=native.schema)
            assert ours.equals(native), f"at ts {ts}"
    finally:
        engine.close()


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
    r.wait_replicated(TABLE)
    yield r
    r.close()


def read_both_ways(session) -> tuple[pa.Table, pa.Table]:
    """The session's streams read from ClickHouse, and the same planned streams read from the
    store's native parts (the mirror's other half), as two tables of the session's schema."""
    ch = [b for n in range(len(session.streams)) for b in read_stream(session, n)]
    native = []
    for stream in session.streams:
        assert stream.partition.engine == "clickhouse"
        for b in read_partition(dataclasses.replace(stream.partition, engine="native")):
            native.append(b if b.schema.equals(session.schema) else pa.RecordBatch.from_arrays(
                [b.column(f.name).cast(f.type) for f in session.schema], schema=session.schema))
    return pa.Table.from_batches(ch, schema=session.schema), pa.Table.from_batches(native, schema=session.schema)


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
        ours, native = read_both_ways(s)
        assert ours.schema == s.schema
        assert ours.num_rows > 0
        assert ours.sort_by("_tidb_rowid" if "_tidb_rowid" in ours.column_names else [(n, "ascending") for n in ours.column_names]).equals(
            native.sort_by("_tidb_rowid" if "_tidb_rowid" in native.column_names else [(n, "ascending") for n in native.column_names]))


def test_the_engine_the_service_opens_is_the_one_the_store_records(rig: FlashRig) -> None:
    with open_engine(rig.store, upstream=rig.upstream) as engine:  # in the writer's process: shares its session
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

    with open_engine(rig.store, upstream=rig.upstream) as engine:
        out = run_sql(engine, f"SELECT status, sum(price) AS total, count() AS n FROM {TABLE} GROUP BY status ORDER BY status")
        # the same aggregate over the native engine's read of the same snapshot
        native = engine.store.scan_table(TABLE, out.ts).to_pylist()
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


def test_columns_added_later_read_their_origin_default_for_older_rows(tmp_path: Path) -> None:
    """A column added by a DDL after rows were stored: older rows read its origin default (not
    NULL), newer rows their value — as the native engine reads them; a name is a column id."""
    from pyspark_theflash.schema import builder

    v1 = se.items_table()
    v2 = se.items_table(schema_version=2, extra=[builder.column("qty", "INT", origin_default=7, default=7),
                                                 builder.column("note", "VARCHAR(8)")])
    store = Store.open(str(tmp_path / "s"))
    engine = open_writer_engine(store, "clickhouse")
    try:
        store.put_schema(se.DB, v1.to_json(), commit_ts=50)
        events = [se.snapshot_event(1, 5, se.region(1))]
        events += [se.event(1, 6 + i, [se.committed(se.key(v1, i), se.row(v1, id=i, name=f"old{i}"), 100 + i)])
                   for i in range(3)]
        store.write(events, Position(0, len(events)))
        store.flush()
        store.put_schema(se.DB, v2.to_json(), commit_ts=200)
        events = [se.event(1, 20, [se.committed(se.key(v2, 1), se.row(v2, id=1, name="new1", qty=3, note="n"), 300)]),
                  se.event(1, 21, [se.committed(se.key(v1, 2), se.row(v1, id=2, name="late-old-form"), 310)])]
        store.write(events, Position(0, 99))
        store.flush()
        for ts in (150, 305, 400):
            native = store.scan_table(f"{se.DB}.items", ts, hidden=("_tidb_rowid",))
            ours = pa.Table.from_batches(list(engine.scan(f"{se.DB}.items", ts, hidden=("_tidb_rowid",))),
                                         schema=native.schema)
            native = native.sort_by("_tidb_rowid")
            assert ours.sort_by("_tidb_rowid").equals(native), f"at ts {ts}: {ours.to_pylist()} != {native.to_pylist()}"
        assert {r["id"]: (r["name"], r["qty"]) for r in native.to_pylist()} == {
            0: ("old0", 7), 1: ("new1", 3), 2: ("late-old-form", 7)}
    finally:
        engine.close()


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
        with open_engine(rig.store) as engine:
            native = engine.store.scan_table(TABLE, session["ts"], columns=["id", "name", "price"],
                                             predicate=col("id") < 30)
        for got in (by_flight, by_http):
            assert got.sort_by("id").to_pylist() == native.sort_by("id").to_pylist()
        assert by_flight.num_rows == len([i for i in range(30) if i % 9 != 1])


def test_writer_run_takes_the_engine_and_defaults_to_native() -> None:
    from pyspark_theflash.cli import build_parser
    from pyspark_theflash.writer.cli import _run_argv, options_from_args

    parser = build_parser()
    args = parser.parse_args(["writer", "run", "--binlog", "file:///b", "--store", "/s", "--engine", "clickhouse"])
    assert options_from_args(args).engine == "clickhouse"
    assert _run_argv(args)[-2:] == ["--engine", "clickhouse"]  # a daemon gets it too
    args = parser.parse_args(["writer", "run", "--binlog", "file:///b", "--store", "/s"])
    assert options_from_args(args).engine == "native"
    with pytest.raises(SystemExit):
        parser.parse_args(["writer", "run", "--binlog", "file:///b", "--store", "/s", "--engine", "duckdb"])


def test_store_convert_copies_a_native_store_into_a_clickhouse_store_that_a_writer_continues(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import random

    from engine_stores import open_store
    from mvcc_model import DB as MDB, TABLE_NAME, MvccModel, StreamSpec, batches, generate_stream, rows_from_batches
    from pyspark_theflash.cli import main as cli_main

    stream = generate_stream(5, StreamSpec(steps=160))
    model = MvccModel(stream.values)
    rng = random.Random(5)
    cut = len(stream.events) // 2
    src, dst = tmp_path / "native", tmp_path / "ch"
    native = Store.open(str(src))
    native.put_schema(MDB, stream.table)
    for start, end in batches(stream.events[:cut], rng, max_size=10):
        native.write(stream.events[start:end], Position(0, end))
        if rng.random() < 0.4:
            native.flush()
            if rng.random() < 0.3:
                native.compact(force=True)
    native.flush()
    model.apply(stream.events[:cut])
    native.close()

    assert cli_main(["store", "convert", "--to", "clickhouse", str(src), str(dst)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["engine"] == "clickhouse" and summary["versions"] > 0

    # a writer continues on the copy with the ClickHouse engine; the original goes on natively
    ch = open_store(dst, "clickhouse")
    native = Store.open(str(src))
    try:
        with ch.snapshot() as view:
            assert view.position() == (0, cut)
        for store in (ch, native):
            store.write(stream.events[cut:], Position(0, len(stream.events)))
            store.flush()
        model.apply(stream.events[cut:])
        qualified = f"{MDB}.{TABLE_NAME}"
        for ts in sorted({stream.first_ts, stream.last_ts, *(rng.randint(stream.first_ts, stream.last_ts)
                                                            for _ in range(6))}):
            expected = model.read(ts)
            assert rows_from_batches(ch.scan(qualified, ts, hidden=("_tidb_rowid",))) == expected, f"ts {ts}"
            assert rows_from_batches(native.scan(qualified, ts, hidden=("_tidb_rowid",))) == expected
    finally:
        ch.close()
        native.close()
    reopened = Store.open(str(dst))
    try:
        with pytest.raises(EngineMismatchError, match="uses the clickhouse engine"):
            open_writer_engine(reopened, "native")
    finally:
        reopened.close()
