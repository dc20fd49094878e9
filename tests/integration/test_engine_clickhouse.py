"""The ClickHouse engine (chdb, in-process) against the native engine, on real files: engine
switching, one ClickHouse directory per process, GC under a lease, clustered common handles,
columns added by DDL, ``store convert``. The ClickHouse engine shares apply with the native
store and keeps the committed rows in ClickHouse tables; its reads must equal the native
engine's row for row, with the same Arrow schema. (A running writer: test_engine_clickhouse_rig.py.)
"""
from __future__ import annotations

import decimal
import json
from pathlib import Path

import pyarrow as pa
import pytest

import store_events as se
from pyspark_theflash.binlog.position import Position
from pyspark_theflash.engine import EngineMismatchError, open_engine, open_writer_engine
from pyspark_theflash.engine.clickhouse import ClickHouseEngine
from pyspark_theflash.engine.clickhouse.errors import ClickHouseDirectoryBusyError
from pyspark_theflash.engine.clickhouse.tables import table_name
from pyspark_theflash.store import Store


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


def engine_and_native_twin(tmp_path: Path) -> tuple[Store, ClickHouseEngine, Store]:
    """A ClickHouse-engine store and a native store beside it: the same writes go to both, and
    the native one's reads are what the ClickHouse engine's must equal."""
    store = Store.open(str(tmp_path / "s"))
    engine = open_writer_engine(store, "clickhouse")
    return store, engine, Store.open(str(tmp_path / "native"))


def test_a_clustered_common_handle_table_reads_the_same_from_clickhouse(tmp_path: Path) -> None:
    t = se.codes_table()
    store, engine, twin = engine_and_native_twin(tmp_path)
    try:
        events = [se.snapshot_event(1, 5, se.region(1))]
        for i, (code, qty, ts) in enumerate([("b", 1, 100), ("a", 2, 110), ("b", 3, 120), ("c", 4, 130)]):
            events.append(se.event(1, 6 + i, [se.committed(se.common_key(t, code), se.row(t, code=code, qty=qty), ts)]))
        for s in (store, twin):
            s.put_schema(se.DB, t.to_json())
            s.write(events, Position(0, len(events)))
            s.flush()
        for ts in (100, 115, 125, 200):
            native = twin.scan_table(f"{se.DB}.codes", ts, hidden=("_tidb_rowid",))
            ours = pa.Table.from_batches(list(engine.scan(f"{se.DB}.codes", ts, hidden=("_tidb_rowid",))),
                                         schema=native.schema)
            assert ours.equals(native), f"at ts {ts}"
        assert native.num_rows == 3
    finally:
        engine.close()
        twin.close()


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


def test_columns_added_later_read_their_origin_default_for_older_rows(tmp_path: Path) -> None:
    """A column added by a DDL after rows were stored: older rows read its origin default (not
    NULL), newer rows their value — as the native engine reads them; a name is a column id."""
    from pyspark_theflash.schema import builder

    v1 = se.items_table()
    v2 = se.items_table(schema_version=2, extra=[builder.column("qty", "INT", origin_default=7, default=7),
                                                 builder.column("note", "VARCHAR(8)")])
    store, engine, twin = engine_and_native_twin(tmp_path)
    try:
        first = [se.snapshot_event(1, 5, se.region(1))]
        first += [se.event(1, 6 + i, [se.committed(se.key(v1, i), se.row(v1, id=i, name=f"old{i}"), 100 + i)])
                  for i in range(3)]
        then = [se.event(1, 20, [se.committed(se.key(v2, 1), se.row(v2, id=1, name="new1", qty=3, note="n"), 300)]),
                se.event(1, 21, [se.committed(se.key(v1, 2), se.row(v1, id=2, name="late-old-form"), 310)])]
        for s in (store, twin):
            s.put_schema(se.DB, v1.to_json(), commit_ts=50)
            s.write(first, Position(0, len(first)))
            s.flush()
            s.put_schema(se.DB, v2.to_json(), commit_ts=200)
            s.write(then, Position(0, 99))
            s.flush()
        for ts in (150, 305, 400):
            native = twin.scan_table(f"{se.DB}.items", ts, hidden=("_tidb_rowid",))
            ours = pa.Table.from_batches(list(engine.scan(f"{se.DB}.items", ts, hidden=("_tidb_rowid",))),
                                         schema=native.schema)
            native = native.sort_by("_tidb_rowid")
            assert ours.sort_by("_tidb_rowid").equals(native), f"at ts {ts}: {ours.to_pylist()} != {native.to_pylist()}"
        assert {r["id"]: (r["name"], r["qty"]) for r in native.to_pylist()} == {
            0: ("old0", 7), 1: ("new1", 3), 2: ("late-old-form", 7)}
    finally:
        engine.close()
        twin.close()


def test_a_clickhouse_store_lists_records_not_files_and_compaction_merges_them(tmp_path: Path) -> None:
    """The ClickHouse engine keeps the rows alone: a flush lists one record per partition (its
    statistics, no file), compaction merges the records into one whose row count is the
    engine's, and GC's deletions show in it. Reads equal a native twin's at every step."""
    from pyspark_theflash.store.verify import verify_store

    t = se.items_table()
    store, engine, twin = engine_and_native_twin(tmp_path)
    flushes = [[(1, 100, "m"), (2, 100, "k")], [(1, 200, "z"), (3, 200, "a")], [(2, 300, None), (4, 300, "q")]]
    qualified = f"{se.DB}.items"

    def records() -> list:
        with store.snapshot() as view:
            return view.parts(t.id)

    def reads_equal_the_twin(since: int = 0) -> None:
        for ts in (t for t in (50, 100, 150, 250, 300, 350, 400) if t >= since):
            native = twin.scan_table(qualified, ts, hidden=("_tidb_rowid",)).sort_by("_tidb_rowid")
            ours = pa.Table.from_batches(list(engine.scan(qualified, ts, hidden=("_tidb_rowid",))), schema=native.schema)
            assert ours.sort_by("_tidb_rowid").equals(native), f"at ts {ts}"

    try:
        index = 5
        for s in (store, twin):
            s.put_schema(se.DB, t.to_json())
            s.write([se.snapshot_event(1, index, se.region(1))], Position(0, 1))
        for n, versions in enumerate(flushes):
            events = []
            for handle, ts, name in versions:
                index += 1
                value = None if name is None else se.row(t, id=handle, name=name, price=decimal.Decimal(handle))
                events.append(se.event(1, index, [se.committed(se.key(t, handle), value, ts)]))
            for s in (store, twin):
                s.write(events, Position(0, n + 2))
                s.flush()
        assert [p for p in store.root.glob("tables/**/*") if p.is_file()] == []
        assert [p for p in twin.root.glob("tables/**/*") if p.is_file()]  # the native twin's parts
        listed = records()
        assert [(p.kind, p.in_engine, p.rows, p.min_handle, p.max_handle, p.min_commit_ts, p.max_commit_ts,
                 p.delete_marks) for p in listed] == [
            ("delta", True, 2, 1, 2, 100, 100, 0), ("delta", True, 2, 1, 3, 200, 200, 0),
            ("delta", True, 2, 2, 4, 300, 300, 1)]
        name = listed[1].stats_by_name(t)["name"]
        assert (name.min, name.max) == ("a", "z")
        reads_equal_the_twin()
        assert verify_store(store.root).problems == []

        engine.compact(force=True)
        (merged,) = records()
        assert (merged.kind, merged.in_engine, merged.rows, merged.min_handle, merged.max_handle,
                merged.min_commit_ts, merged.max_commit_ts, merged.delete_marks) == (
            "stable", True, 6, 1, 4, 100, 300, 1)
        name = merged.stats_by_name(t)["name"]
        assert (name.min, name.max) == ("a", "z")  # the union of the three
        reads_equal_the_twin()

        engine.gc(350)  # leaves 1@200 z, 3@200 a, 4@300 q in ClickHouse; the record follows
        (collected,) = records()
        assert collected.rows == 3 and collected.in_engine
        assert engine.directory.scalar(f"SELECT count() FROM {table_name(t.id)}") == 3
        twin.gc(350)
        reads_equal_the_twin(since=350)
        assert verify_store(store.root).problems == []
    finally:
        engine.close()
        twin.close()


def test_theflash_sql_prints_every_column_type_in_every_format(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """BINARY comes back from ClickHouse as a String that is not UTF-8 (the demo's
    ``token BINARY(8)`` ended ``theflash sql`` in a UnicodeDecodeError): it prints as 0x hex,
    TIME as [-]HH:MM:SS, DECIMAL with its digits, JSON as its text, a null as NULL/empty/null."""
    import csv
    import datetime as dt
    import re

    from pyspark_theflash.cli import main as cli_main
    from pyspark_theflash.schema import builder

    store = Store.open(str(tmp_path / "s"))
    engine = open_writer_engine(store, "clickhouse")
    t = se.items_table(extra=[builder.column("token", "BINARY(8)"), builder.column("doc", "JSON"),
                              builder.column("status", "ENUM('new','paid')"), builder.column("at", "DATETIME(6)"),
                              builder.column("day", "DATE"), builder.column("dur", "TIME(6)")])
    store.put_schema(se.DB, t.to_json())
    full = se.row(t, id=1, name="a", price=decimal.Decimal("1.20"), token=b"\xe2\x00\xffabcde", doc={"k": [1, "x"]},
                  status="paid", at=dt.datetime(2024, 5, 6, 7, 8, 9, 123456), day=dt.date(2024, 5, 6),
                  dur=dt.timedelta(hours=-1, seconds=-5))
    events = [se.snapshot_event(1, 5, se.region(1)), se.event(1, 6, [se.committed(se.key(t, 1), full, 100)]),
              se.event(1, 7, [se.committed(se.key(t, 2), se.row(t, id=2), 100)]), se.resolved_ts(1, 8, 300)]
    store.write(events, Position(0, len(events)))
    store.flush()
    engine.close()
    query = ("SELECT id, name, price, token, substring(token, 1, 2) AS head, doc, status, at, day, dur "
             "FROM shop.items ORDER BY id")
    printed = {}
    for fmt in ("table", "csv", "json"):
        code = cli_main(["sql", "--store", str(tmp_path / "s"), "--ts", "200", "--format", fmt, query])
        out = capsys.readouterr()
        assert code == 0, out.err
        printed[fmt] = out.out

    first = ["1", "a", "1.20", "0xe200ff6162636465", "0xe200", '{"k": [1, "x"]}', "paid", "2024-05-06 07:08:09.123456",
             "2024-05-06", "-01:00:05"]
    table = printed["table"].splitlines()
    assert table[0].split() == ["id", "name", "price", "token", "head", "doc", "status", "at", "day", "dur"]
    assert re.split(r"  +", table[1]) == first
    assert table[2].split() == ["2"] + ["NULL"] * 9
    assert list(csv.reader(printed["csv"].splitlines())) == [
        ["id", "name", "price", "token", "head", "doc", "status", "at", "day", "dur"], first, ["2"] + [""] * 9]
    rows = [json.loads(line) for line in printed["json"].splitlines()]
    assert rows[0] == {"id": 1, "name": "a", "price": "1.20", "token": "0xe200ff6162636465", "head": "0xe200",
                       "doc": '{"k": [1, "x"]}', "status": "paid", "at": "2024-05-06 07:08:09.123456",
                       "day": "2024-05-06", "dur": "-01:00:05"}
    assert rows[1] == {"id": 2, **{k: None for k in rows[0] if k != "id"}}
