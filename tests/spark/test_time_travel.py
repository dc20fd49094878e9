"""Time travel returns the rows the table had: a read at a past ts (``snapshot_ts``, ``as_of``, a
session pin, SQL ``VERSION AS OF`` / ``TIMESTAMP AS OF``) reads the table that had the name at
that ts, with its schema then, across TRUNCATE, DROP + CREATE and a MODIFY COLUMN that rewrote
the rows (what TiDB's stale read returns); ``schema=current`` reads today's table at that ts. A
name no table had at ts is refused, naming the ts and when the table was created.

Each history below used to read 0 rows or NULL columns with the default ``schema=current``."""
from __future__ import annotations

import time
from typing import Any, Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.codec.tso import ts_to_datetime
from pyspark_theflash.scan.errors import TableNotReplicatedError
from pyspark_theflash.service import serve
from pyspark_theflash.upstream.tidb import make_column
from service_client import FlightReader

TRUNC, DROPPED, REORG, LATE = "tt.trunc", "tt.dropped", "tt.reorg", "tt.late"


class History:
    def __init__(self, rig: FlashRig) -> None:
        c = rig.cluster
        c.create_database("tt")
        cols = [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")]
        for name in (TRUNC, DROPPED):
            c.create_table(name, cols, primary_key=["id"])
        c.create_table(REORG, [make_column("id", "BIGINT", not_null=True), make_column("code", "INT")],
                       primary_key=["id"])
        with c.txn() as t:
            for i in (1, 2, 3):
                t.insert(TRUNC, {"id": i, "v": i * 10})
                t.insert(DROPPED, {"id": i, "v": i * 100})
                t.insert(REORG, {"id": i, "code": i})
        self.before = c.get_ts()
        time.sleep(0.01)  # AS OF a time sees every commit of its millisecond: no DDL in before's
        c.truncate_table(TRUNC)
        c.drop_table(DROPPED)
        c.create_table(DROPPED, [make_column("id", "BIGINT", not_null=True), make_column("note", "VARCHAR(8)")],
                       primary_key=["id"])
        c.modify_column(REORG, "code", make_column("code", "VARCHAR(8)"))
        with c.txn() as t:
            t.insert(TRUNC, {"id": 9, "v": 90})
            t.insert(DROPPED, {"id": 7, "note": "new"})
            t.insert(REORG, {"id": 4, "code": "x4"})
        self.after = c.get_ts()
        c.create_table(LATE, cols, primary_key=["id"])
        with c.txn() as t:
            t.insert(LATE, {"id": 1, "v": 1})
        self.late_created = c.get_ts()


# what TiDB's stale read returns at `before`, and at `after`
AT_BEFORE = {
    TRUNC: [{"id": 1, "v": 10}, {"id": 2, "v": 20}, {"id": 3, "v": 30}],
    DROPPED: [{"id": 1, "v": 100}, {"id": 2, "v": 200}, {"id": 3, "v": 300}],
    REORG: [{"id": 1, "code": 1}, {"id": 2, "code": 2}, {"id": 3, "code": 3}],
}
AT_AFTER = {
    TRUNC: [{"id": 9, "v": 90}],
    DROPPED: [{"id": 7, "note": "new"}],
    REORG: [{"id": 1, "code": "1"}, {"id": 2, "code": "2"}, {"id": 3, "code": "3"}, {"id": 4, "code": "x4"}],
}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlashRig, History, str]]:
    r = FlashRig(tmp_path_factory.mktemp("time_travel"))
    try:
        history = History(r)
        r.start_writer(interval_s=0.05)
        for name in (TRUNC, DROPPED, REORG, LATE):
            r.wait_replicated(name)
        with serve(r.store, port=0) as running:
            yield r, history, running
    finally:
        r.close()


def rows(t: pa.Table) -> list[dict[str, Any]]:
    return sorted(t.to_pylist(), key=lambda r: r["id"])


@pytest.mark.parametrize("table", [TRUNC, DROPPED, REORG])
def test_a_read_at_a_past_ts_returns_the_rows_and_schema_the_table_had(rig: Any, table: str) -> None:
    r, h, _ = rig
    assert rows(r.read_at(r.store, table, h.before)) == AT_BEFORE[table]
    assert rows(r.read_at(r.store, table, h.after)) == AT_AFTER[table]


def test_schema_current_reads_todays_table_at_the_ts_when_asked(rig: Any) -> None:
    r, h, _ = rig
    from pyspark_theflash.scan.session import open_read_session, read_stream

    def current(table: str) -> list[dict[str, Any]]:
        with open_read_session(r.store, table, snapshot_ts=h.before,
                               options={"upstream": r.upstream, "schema": "current"}) as s:
            return rows(pa.Table.from_batches([b for n in range(len(s.streams)) for b in read_stream(s, n)],
                                              schema=s.schema))

    assert current(TRUNC) == []  # today's table id held nothing at that ts
    assert current(REORG) == [{"id": i, "code": None} for i in (1, 2, 3)]  # the new column id had no values


def test_a_name_no_table_had_at_the_ts_is_refused_with_the_ts_and_when_the_table_was_created(rig: Any) -> None:
    r, h, _ = rig
    with pytest.raises(TableNotReplicatedError) as err:
        r.read_at(r.store, LATE, h.after)
    text = str(err.value)
    assert f"table {LATE} did not exist at ts {h.after} ({ts_to_datetime(h.after):%Y-%m-%d %H:%M:%S}" in text
    assert "was created at ts" in text and "schema=current" in text
    created = int(text.split("was created at ts ")[1].split(" ")[0])
    assert h.after < created <= h.late_created


def test_flight_reads_at_a_past_ts_return_the_old_rows(rig: Any) -> None:
    r, h, running = rig
    reader = FlightReader(running.flight_location)
    try:
        for table in (TRUNC, DROPPED, REORG):
            got, _ = reader.read({"table": table, "snapshot_ts": h.before})
            assert rows(got) == AT_BEFORE[table], table
    finally:
        reader.close()


@pytest.mark.spark
def test_the_python_spark_source_reads_the_old_rows_with_snapshot_ts_and_as_of(spark: Any, rig: Any) -> None:
    r, h, _ = rig
    # an explicit offset: the shared JVM session's time zone is whatever an earlier test left
    at = ts_to_datetime(h.before).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00"
    for table in (TRUNC, DROPPED, REORG):
        by_ts = spark.read.format("theflash").options(**r.options(snapshot_ts=h.before)).load(table)
        assert sorted(map(lambda x: x.asDict(), by_ts.collect()), key=lambda x: x["id"]) == AT_BEFORE[table]
        by_time = spark.read.format("theflash").options(**r.options(as_of=at)).load(table)
        assert by_time.count() == len(AT_BEFORE[table]) and by_time.columns == list(AT_BEFORE[table][0])


def jvm_sql(spark: Any, server: str, statements: list[str], pin: int | None = None) -> list[list[tuple[Any, ...]]]:
    spark.conf.set("theflash.server", server)
    if pin is not None:
        spark.conf.set("theflash.snapshot_ts", str(pin))
    try:
        return [[tuple(x) for x in spark.sql(s).collect()] for s in statements]
    finally:
        spark.conf.unset("theflash.snapshot_ts")


def jvm_sql_error(spark: Any, server: str, statement: str) -> str:
    spark.conf.set("theflash.server", server)
    try:
        spark.sql(statement).collect()
    except Exception as exc:  # Spark wraps the service's answer
        return str(exc)
    return ""


@pytest.mark.spark
def test_sql_version_and_timestamp_as_of_and_the_session_pin_read_the_old_rows_through_the_jar(
        jvm_spark: Any, rig: Any) -> None:
    r, h, running = rig
    # an explicit offset: the shared JVM session's time zone is whatever an earlier test left
    at = ts_to_datetime(h.before).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00"
    for table in (TRUNC, DROPPED, REORG):
        want = [tuple(x.values()) for x in AT_BEFORE[table]]
        cols = ", ".join(AT_BEFORE[table][0])
        by_version, by_time = jvm_spark.call(jvm_sql, running.http_url, [
            f"SELECT {cols} FROM theflash.{table} VERSION AS OF {h.before} ORDER BY id",
            f"SELECT {cols} FROM theflash.{table} TIMESTAMP AS OF '{at}' ORDER BY id"])
        assert by_version == by_time == want, table
        pinned, = jvm_spark.call(jvm_sql, running.http_url, [f"SELECT * FROM theflash.{table} ORDER BY id"], h.before)
        assert pinned == want, table
    latest, = jvm_spark.call(jvm_sql, running.http_url, [f"SELECT * FROM theflash.{TRUNC} ORDER BY id"])
    assert latest == [(9, 90)]
    error = jvm_spark.call(jvm_sql_error, running.http_url, f"SELECT * FROM theflash.{LATE} VERSION AS OF {h.after}")
    assert f"did not exist at ts {h.after}" in error and "was created at ts" in error
