"""Partitioned tables as TiDB has them (RANGE, RANGE COLUMNS, HASH, KEY, LIST): the mini cluster
writes each partition's rows under the partition's physical id; the store keeps them for the
logical table, a read returns the whole table, pruned by partition where the pushed filter
allows (the plan names the partitions read and pruned), and a read at a past ts returns what
TiDB's stale read returns across ADD, DROP, TRUNCATE, EXCHANGE and REORGANIZE PARTITION —
through the Python read session, Flight, the Python Spark source, SQL through the jar, and
``theflash capture``.

Before this, the mini cluster could not create them, and capture refused them by name: their
rows arrive under partition ids the writer had no schema for (SchemaUnavailableError)."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.schema import TableInfo, column
from pyspark_theflash.schema.partitioning import NoPartitionError, Partitioning, build_partition_json, partitioning_of
from pyspark_theflash.service import serve
from pyspark_theflash.store.predicate import col
from pyspark_theflash.upstream_client.errors import SchemaError
from pyspark_theflash.upstream.tidb import make_column
from service_client import FlightReader

RNG, COLS, HSH, KEY, LST, NT = "pt.rng", "pt.cols", "pt.hsh", "pt.key", "pt.lst", "pt.nt"
TABLES = (RNG, COLS, HSH, KEY, LST)


def _cols() -> list[Any]:
    return [make_column("id", "BIGINT", not_null=True), make_column("d", "DATE"), make_column("k", "INT"),
            make_column("v", "VARCHAR(16)"), make_column("g", "BIGINT", generated="`id` * 2")]  # VIRTUAL


def _partition(kind: str, **kw: Any) -> dict[str, Any]:
    return {"type": kind, **kw}


RANGE_ID = _partition("RANGE", expr="`id`", definitions=[
    {"name": "p0", "less_than": ["100"]}, {"name": "p1", "less_than": ["200"]}, {"name": "p2", "less_than": ["300"]}])
RANGE_D = _partition("RANGE COLUMNS", columns=["d"], definitions=[
    {"name": "y1995", "less_than": ["'1996-01-01'"]}, {"name": "y1996", "less_than": ["'1997-01-01'"]},
    {"name": "ylater", "less_than": ["MAXVALUE"]}])
HASH_ID = _partition("HASH", expr="`id`", num=4)
KEY_ID = _partition("KEY", columns=["id"], num=3)
LIST_K = _partition("LIST", expr="`k`", definitions=[
    {"name": "small", "in_values": [["0"], ["1"], ["2"]]}, {"name": "big", "in_values": [["3"], ["4"], ["NULL"]]}])


def row(i: int) -> dict[str, Any]:
    return {"id": i, "d": dt.date(1995, 1, 1) + dt.timedelta(days=7 * i), "k": None if i % 11 == 0 else i % 5,
            "v": f"v{i}"}


class History:
    """Five partitioned tables and a plain one, then partition DDL on them between two ts."""

    def __init__(self, rig: FlashRig) -> None:
        c = rig.cluster
        c.create_database("pt")
        c.create_table(RNG, _cols(), primary_key=["id"], partition=RANGE_ID)
        c.create_table(COLS, _cols(), primary_key=["id", "d"], clustered=False, partition=RANGE_D)
        c.create_table(HSH, _cols(), primary_key=["id"], partition=HASH_ID)
        c.create_table(KEY, _cols(), primary_key=["id"], partition=KEY_ID)
        c.create_table(LST, _cols(), partition=LIST_K)
        c.create_table(NT, _cols(), primary_key=["id"])
        with c.txn() as t:
            for i in range(0, 300, 7):
                for table in TABLES:
                    t.insert(table, row(i - 150 if table == HSH else i))
            t.insert(NT, row(105))
        with c.txn() as t:  # an update that moves a row to another partition, and a delete
            t.update(RNG, {"id": 7, "v": "moved?"})
            t.update(LST, {"_tidb_rowid": 2, "k": 4})
            t.delete(HSH, -150)
        self.before = c.get_ts()
        time.sleep(0.01)
        c.truncate_partitions(RNG, ["p0"])
        c.drop_partitions(RNG, ["p2"])
        c.add_partitions(RNG, [{"name": "p3", "less_than": ["400"]}])
        c.exchange_partition(RNG, "p1", NT)
        c.reorganize_partitions(COLS, ["y1996", "ylater"], [
            {"name": "y1996h1", "less_than": ["'1996-07-01'"]}, {"name": "y1996h2", "less_than": ["'1997-01-01'"]},
            {"name": "ylater", "less_than": ["MAXVALUE"]}])
        c.drop_partitions(LST, ["big"])
        with c.txn() as t:
            t.insert(RNG, row(350))
            t.insert(RNG, row(5))
            t.insert(COLS, row(400))
        self.after = c.get_ts()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlashRig, History, Any]]:
    r = FlashRig(tmp_path_factory.mktemp("partitioned"))
    try:
        history = History(r)
        r.start_writer(interval_s=0.05)
        r.clickhouse = r.start_twin_writer("clickhouse", engine="clickhouse")  # type: ignore[attr-defined]
        for name in (*TABLES, NT):
            r.wait_replicated(name)
        with serve(r.store, port=0) as running:
            yield r, history, running
    finally:
        r.close()


def ids(t: pa.Table | list[dict[str, Any]]) -> list[int]:
    got = t.to_pylist() if isinstance(t, pa.Table) else t
    return sorted(x["id"] for x in got)


def reference(r: FlashRig, table: str, ts: int) -> list[dict[str, Any]]:
    """TiDB's stale read at ts (the mini cluster's own read), without the hidden row id."""
    return sorted(({k: v for k, v in x.items() if k != "_tidb_rowid"} for x in r.cluster.scan_table(table, ts)),
                  key=lambda x: x["id"])


# ----------------------------------------------------------------------- routing and pruning


def _table(kind: dict[str, Any], pk: list[str]) -> TableInfo:
    from pyspark_theflash.schema import table

    info = table(10, "t", [column("id", "BIGINT", not_null=True), column("d", "DATE"), column("k", "INT")],
                 primary_key=pk, db="pt").to_json()
    n = iter(range(11, 100))
    info["partition"] = build_partition_json(kind["type"], expr=kind.get("expr", ""), columns=kind.get("columns", ()),
                                             definitions=kind.get("definitions", ()), num=kind.get("num", 0),
                                             alloc_id=lambda: next(n))
    return TableInfo.from_json(info, db="pt")


def test_rows_go_to_the_partition_tidb_puts_them_in() -> None:
    t = _table(RANGE_ID, ["id"])
    p = partitioning_of(t)
    assert p is not None and p.type_name == "RANGE" and p.physical_ids == (11, 12, 13)
    assert [p.locate(t, {"id": i}) for i in (-5, 99, 100, 299)] == [11, 11, 12, 13]
    with pytest.raises(NoPartitionError, match="no partition for value 300"):
        p.locate(t, {"id": 300})
    t = _table(RANGE_D, [])
    assert partitioning_of(t) is not None and partitioning_of(t).type_name == "RANGE COLUMNS"
    assert [partitioning_of(t).locate(t, {"d": d}) for d in (None, dt.date(1995, 12, 31), dt.date(1996, 1, 1),
                                                          dt.date(2030, 1, 1))] == [11, 11, 12, 13]
    t = _table(HASH_ID, ["id"])
    # TiDB: abs(id % num); NULL into the first
    assert [partitioning_of(t).locate(t, {"id": i}) - 11 for i in (0, 5, -5, -8, None)] == [0, 1, 1, 0, 0]  # type: ignore[union-attr]
    t = _table(LIST_K, [])
    assert [partitioning_of(t).locate(t, {"k": k}) for k in (2, 4, None)] == [11, 12, 12]  # type: ignore[union-attr]
    with pytest.raises(NoPartitionError, match="no partition for value 7"):
        partitioning_of(t).locate(t, {"k": 7})  # type: ignore[union-attr]


def test_a_filter_prunes_exactly_the_partitions_it_cannot_match() -> None:
    t = _table(RANGE_ID, ["id"])
    p = partitioning_of(t)
    assert p is not None
    assert p.prune(t, col("id") < 100)[1] == ["p1", "p2"]
    assert p.prune(t, col("id") <= 100)[1] == ["p2"]
    assert p.prune(t, (col("id") >= 150) & (col("id") < 160))[1] == ["p0", "p2"]
    assert p.prune(t, col("id").isin([5, 250]))[1] == ["p1"]
    assert p.prune(t, col("id") != 5)[1] == []
    t = _table(RANGE_D, [])
    assert partitioning_of(t).prune(t, col("d") >= dt.date(1996, 1, 1))[1] == ["y1995"]  # type: ignore[union-attr]
    assert partitioning_of(t).prune(t, col("d").is_null())[1] == ["y1996", "ylater"]  # type: ignore[union-attr]
    t = _table(HASH_ID, ["id"])
    assert partitioning_of(t).prune(t, col("id") == 6)[1] == ["p0", "p1", "p3"]  # type: ignore[union-attr]
    assert partitioning_of(t).prune(t, col("id") > 6)[1] == []  # type: ignore[union-attr]
    t = _table(LIST_K, [])
    assert partitioning_of(t).prune(t, col("k") == 3)[1] == ["small"]  # type: ignore[union-attr]
    t = _table(KEY_ID, ["id"])
    assert partitioning_of(t).prune(t, col("id") == 6)[1] == []  # type: ignore[union-attr]  # KEY: never pruned


def test_the_partition_json_is_tidbs(rig: Any) -> None:
    r, _, _ = rig
    info = r.cluster.table_info("pt", "cols")
    part = info["partition"]
    assert set(part) == {"type", "expr", "columns", "enable", "definitions", "num"}
    assert part["type"] == 1 and part["columns"] == [{"O": "d", "L": "d"}] and part["enable"] is True
    assert {"id", "name", "less_than", "in_values"} <= set(part["definitions"][0])
    assert part["num"] == len(part["definitions"]) == 4
    assert Partitioning.from_json(part).physical_ids == tuple(d["id"] for d in part["definitions"])
    history = {j["query"].split(" PARTITION")[0].split()[-1] + " PARTITION": j["type"] for j in r.cluster.ddl_history()
               if " PARTITION " in j["query"] and j["query"].startswith("ALTER")}
    assert history == {"ADD PARTITION": 19, "DROP PARTITION": 20, "TRUNCATE PARTITION": 23,
                       "EXCHANGE PARTITION": 42, "REORGANIZE PARTITION": 64}


def test_a_unique_key_must_include_the_partitioning_columns(rig: Any) -> None:
    r, _, _ = rig
    with pytest.raises(SchemaError, match="must include all columns in the table's partitioning function"):
        r.cluster.create_table("pt.bad", _cols(), primary_key=["id"], partition=RANGE_D)


# ------------------------------------------------------------------------------------- reads


@pytest.mark.parametrize("table", [*TABLES, NT])
def test_a_read_returns_the_whole_table_now_and_as_it_was_before_the_partition_ddl(rig: Any, table: str) -> None:
    r, h, _ = rig
    for ts in (h.before, h.after):
        got = r.read_at(r.store, table, ts)
        assert sorted(got.to_pylist(), key=lambda x: x["id"]) == reference(r, table, ts), (table, ts == h.after)
    assert ids(r.read_at(r.store, table, h.before)) != ids(r.read_at(r.store, table, h.after)) or table in (HSH, KEY)


def test_the_clickhouse_engine_reads_partitioned_tables_as_the_native_one(rig: Any) -> None:
    r, h, _ = rig
    for table in TABLES:
        for ts in (h.before, h.after):
            got = r.read_at(r.clickhouse, table, ts, filter=col("id") < 200)
            want = [x for x in reference(r, table, ts) if x["id"] < 200]
            assert sorted(got.to_pylist(), key=lambda x: x["id"]) == want, (table, ts == h.after)


def test_the_plan_names_the_partitions_a_filter_pruned(rig: Any) -> None:
    r, h, _ = rig
    from pyspark_theflash.scan.session import open_read_session, read_stream

    with open_read_session(r.store, RNG, filter=col("id") < 100, options={"upstream": r.upstream}) as s:
        got = pa.Table.from_batches([b for n in range(len(s.streams)) for b in read_stream(s, n)], schema=s.schema)
        plan = s.to_dict()["plan"]
    assert plan["table_partitions"] == ["p0"] and plan["table_partitions_pruned"] == ["p1", "p3"]
    assert ids(got) == [x["id"] for x in reference(r, RNG, h.after) if x["id"] < 100] == [5]
    with open_read_session(r.store, RNG, snapshot_ts=h.before, filter=col("id") >= 200,
                           options={"upstream": r.upstream}) as s:
        assert s.to_dict()["plan"]["table_partitions_pruned"] == ["p0", "p1"]


def test_flight_reads_partitioned_tables_now_and_at_a_past_ts(rig: Any) -> None:
    r, h, running = rig
    reader = FlightReader(running.flight_location)
    try:
        for table in TABLES:
            got, session = reader.read({"table": table, "snapshot_ts": h.before})
            assert ids(got) == ids(reference(r, table, h.before)), table
        got, session = reader.read({"table": COLS, "filter": [["d", ">=", {"date": "1996-07-01"}]]})
        assert ids(got) == [x["id"] for x in reference(r, COLS, h.after) if x["d"] >= dt.date(1996, 7, 1)]
        assert session["plan"]["table_partitions_pruned"] == ["y1995", "y1996h1"]
    finally:
        reader.close()


@pytest.mark.spark
def test_the_python_spark_source_reads_partitioned_tables(spark: Any, rig: Any) -> None:
    r, h, _ = rig
    for table in TABLES:
        df = spark.read.format("theflash").options(**r.options()).load(table)
        assert sorted(x.id for x in df.collect()) == ids(reference(r, table, h.after)), table
    old = spark.read.format("theflash").options(**r.options(snapshot_ts=h.before)).load(RNG)
    assert sorted(x.id for x in old.filter("id >= 100 AND id < 200").collect()) == \
        [x["id"] for x in reference(r, RNG, h.before) if 100 <= x["id"] < 200]


def jvm_sql_plan(spark: Any, server: str, statement: str) -> tuple[list[tuple[Any, ...]], str]:
    spark.conf.set("theflash.server", server)
    df = spark.sql(statement)
    rows = [tuple(x) for x in df.collect()]
    return rows, df._jdf.queryExecution().executedPlan().toString()


@pytest.mark.spark
def test_sql_through_the_jar_reads_partitioned_tables_and_explains_the_pruning(jvm_spark: Any, rig: Any) -> None:
    r, h, running = rig
    for table in TABLES:
        got, _ = jvm_spark.call(jvm_sql_plan, running.http_url, f"SELECT id FROM theflash.{table} ORDER BY id")
        assert [x[0] for x in got] == ids(reference(r, table, h.after)), table
    got, plan = jvm_spark.call(jvm_sql_plan, running.http_url,
                               f"SELECT id FROM theflash.{RNG} VERSION AS OF {h.before} WHERE id < 100 ORDER BY id")
    assert [x[0] for x in got] == [x["id"] for x in reference(r, RNG, h.before) if x["id"] < 100]
    assert "Partitions: [p0], PrunedPartitions: [p1, p2]" in plan, plan


def test_a_writer_meeting_a_partitions_rows_without_their_ddl_learns_the_table_from_the_upstream(
        rig: Any, tmp_path: Path) -> None:
    """A log that starts after the CREATE (a store started mid-stream): the rows carry partition
    ids; the writer asks the upstream for that id and gets the partitioned table (TiDB's status
    port answers /db-table/{partition id} with it), instead of stopping with SchemaUnavailableError."""
    from pyspark_theflash.binlog.segment import SegmentReader, SegmentWriter
    from pyspark_theflash.store import Store
    from pyspark_theflash.writer.loop import Writer
    from pyspark_theflash.writer.options import TableFilter, WriterOptions

    r, h, _ = rig
    writer = SegmentWriter(tmp_path / "log")
    with SegmentReader(r.root / "binlog") as reader:
        writer.append([pe.event for pe in reader if pe.event.WhichOneof("payload") != "ddl"])
    writer.close()
    Writer(WriterOptions(binlog=f"file://{tmp_path / 'log'}", store=str(tmp_path / "store"), upstream=r.reference,
                         flush_interval_s=0.0, until_caught_up=True, tables=TableFilter.parse(RNG))).run()
    with Store.open(str(tmp_path / "store"), readonly=True) as s:
        got = sorted(x["id"] for x in s.scan_table(RNG, h.after).to_pylist())
    assert got == ids(reference(r, RNG, h.after))


# ------------------------------------------------------------------------------------ capture


def test_capture_replicates_a_selected_partitioned_table_through_partition_ddl(tmp_path: Path) -> None:
    from pyspark_theflash.capture import Capture, CaptureOptions
    from pyspark_theflash.store import Store
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.writer.loop import Writer
    from pyspark_theflash.writer.options import WriterOptions

    c = MiniCluster(tmp_path / "up", tmp_path / "upstream-log", resolved_ts_interval=0.05, gc_run_interval_s=None)
    c.serve(stores=2)
    try:
        c.create_table(RNG, _cols(), primary_key=["id"], partition=RANGE_ID)
        c.create_table(NT, _cols(), primary_key=["id"])
        with c.txn() as t:
            for i in range(0, 300, 13):
                t.insert(RNG, row(i))
            t.insert(NT, row(111))
        capture = Capture(CaptureOptions(pd=c.pd_address, tidb=f"http://{c.status_address}",
                                         binlog=str(tmp_path / "binlog"), retry_backoff_s=0.1, tables=[RNG, NT]))
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _run(capture, errors), daemon=True)
        thread.start()
        before = c.get_ts()
        wait_for(lambda: capture.caught_up(before) or bool(errors), 60, "capture to start")
        c.truncate_partitions(RNG, ["p0"])
        c.exchange_partition(RNG, "p1", NT)
        c.add_partitions(RNG, [{"name": "p3", "less_than": ["400"]}])
        # (capture follows the new partition's region before a 2PC writes there: a region born
        # while a transaction spans it is capture's region-split work, not this test's)
        ddl_done = c.get_ts()
        wait_for(lambda: capture.caught_up(ddl_done) or bool(errors), 60, "capture to follow the new regions")
        with c.txn() as t:
            t.insert(RNG, row(3))
            t.insert(RNG, row(399))
        after = c.get_ts()
        wait_for(lambda: capture.caught_up(after) or bool(errors), 60, "capture to resolve past the last change")
        capture.stop()
        thread.join(30)
        assert not errors, errors
        Writer(WriterOptions(binlog=f"file://{tmp_path / 'binlog'}", store=str(tmp_path / "store"),
                             flush_interval_s=0.0, until_caught_up=True)).run()
        with Store.open(str(tmp_path / "store"), readonly=True) as s:
            for ts in (before, after):
                got = sorted(x["id"] for x in s.scan_table(RNG, ts, schema="as_of").to_pylist())
                assert got == sorted(x["id"] for x in c.scan_table(RNG, ts)), ts
            assert 111 in got and 3 in got and 399 in got
            got = sorted(x["id"] for x in s.scan_table(NT, after, schema="as_of").to_pylist())
            assert got == sorted(x["id"] for x in c.scan_table(NT, after)) and 104 in got  # p1's rows, exchanged
            with s.snapshot() as view:
                assert sorted(t.name for t in view.tables()) == ["nt", "rng"]  # one name each, not one per partition
    finally:
        c.close()


def _run(capture: Any, errors: list[BaseException]) -> None:
    try:
        capture.run()
    except BaseException as exc:  # reported by the test
        errors.append(exc)
