"""Spark reads a ClickHouse-engine store through ``format("theflash")`` with no other change.

The writer ran ``--engine clickhouse`` and has stopped (it owned the ClickHouse directory; a
Spark Python worker opens it for its read, one reader process at a time). Spark's read at a
snapshot ts must equal the native engine's read of the same snapshot — a native writer
applying the same binlog to a twin store beside it — row for row.

While the writer runs and serves, the Python workers read through its service; served with
``--serve-token-file``, that takes the read's bearer token (options token / token_file, else
THEFLASH_TOKEN), and a missing or wrong one fails saying where the token came from, never what
it is.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from flash_rig import FlashRig
from pyspark_theflash.engine.clickhouse.errors import ServiceTokenRefusedError
from pyspark_theflash.engine.clickhouse.stream_read import advertised_service
from pyspark_theflash.scan.through_service import read_through_service
from pyspark_theflash.scan.bearer_token import BearerToken
from pyspark_theflash.scan.session import open_read_session, read_stream
from pyspark_theflash.upstream.tidb import make_column, record_key

pytestmark = pytest.mark.spark

TABLE = "sparkch.orders"
ROWS = 200


def test_spark_reads_a_clickhouse_store_as_the_native_engine_reads_it(spark: Any, tmp_path: Path) -> None:
    rig = FlashRig(tmp_path / "rig")
    try:
        table = rig.cluster.create_table(TABLE, [
            make_column("id", "BIGINT", not_null=True), make_column("status", "VARCHAR(8)"),
            make_column("total", "DECIMAL(12,2)"), make_column("placed", "DATETIME(6)"),
            make_column("qty", "INT")], primary_key=["id"])
        for region in (1, 2, 3):
            rig.cluster.split_at(record_key(table, region * ROWS // 4))
        with rig.cluster.txn() as t:
            for i in range(ROWS):
                t.insert(TABLE, {"id": i, "status": ("new", "paid", "sent")[i % 3], "total": decimal.Decimal(i) / 8,
                                 "placed": dt.datetime(2025, 1, 1) + dt.timedelta(minutes=i), "qty": i % 11 or None})
        with rig.cluster.txn() as t:
            for i in range(0, ROWS, 5):
                t.update(TABLE, {"id": i, "status": "void", "qty": -i})
            for i in range(3, ROWS, 17):
                t.delete(TABLE, i)
        rig.start_writer(interval_s=0.05, engine="clickhouse")
        twin = rig.start_twin_writer()
        rig.wait_replicated(TABLE)
        ts = rig.cluster.tso.get_ts()
        # a read session at ts in this process (the writer's): its learner read makes the store
        # flush everything up to ts
        with open_read_session(rig.store, TABLE, snapshot_ts=ts, options={"upstream": rig.upstream}) as s:
            assert sum(b.num_rows for n in range(len(s.streams)) for b in read_stream(s, n)) > 0
        rig.stop_writer()  # lets go of the ClickHouse directory

        df = spark.read.format("theflash").options(**rig.options(snapshot_ts=str(ts))).load(TABLE)
        got = sorted(tuple(r) for r in df.collect())
        # the Python workers read the streams from ClickHouse (opened under the readers' lock)
        assert (Path(rig.store) / "clickhouse" / "readers.lock").exists()
        native = rig.read_at(twin, TABLE, ts).to_pylist()
        expected = sorted(tuple(r.values()) for r in native)
        assert len(got) == ROWS - len(range(3, ROWS, 17))
        assert got == expected
        by_status = {r["status"]: r["n"] for r in df.groupBy("status").count().withColumnRenamed("count", "n").collect()}
        assert by_status["void"] == len([i for i in range(0, ROWS, 5) if (i - 3) % 17 != 0])
    finally:
        rig.close()


def orders_served_by_the_writer(rig: FlashRig, **writer_options: Any) -> int:
    """ROWS orders in three regions, replicated by a ClickHouse-engine writer that serves
    (``--serve``, plus ``writer_options``); a ts that sees them all, and an update after it
    (``id`` 1's status ``late``) that no read at ts may see."""
    table = rig.cluster.create_table(TABLE, [
        make_column("id", "BIGINT", not_null=True), make_column("status", "VARCHAR(8)"),
        make_column("total", "DECIMAL(12,2)")], primary_key=["id"])
    for region in (1, 2):
        rig.cluster.split_at(record_key(table, region * ROWS // 3))
    with rig.cluster.txn() as t:
        for i in range(ROWS):
            t.insert(TABLE, {"id": i, "status": ("new", "paid")[i % 2], "total": decimal.Decimal(i) / 4})
    rig.start_writer(interval_s=0.05, engine="clickhouse", serve_port=0, **writer_options)
    rig.wait_replicated(TABLE)
    ts = rig.cluster.tso.get_ts()
    with rig.cluster.txn() as t:  # after ts: not in the snapshot
        t.update(TABLE, {"id": 1, "status": "late"})
    return ts


def test_spark_reads_a_clickhouse_store_through_the_writers_service_while_it_writes(spark: Any, tmp_path: Path) -> None:
    """The writer (``--engine clickhouse --serve``) owns the ClickHouse directory and keeps
    writing; Spark's Python workers read their streams through its service (advertised in the
    store), each a session at the query's ts over its own handle ranges."""
    rig = FlashRig(tmp_path / "rig")
    try:
        twin = rig.start_twin_writer()
        ts = orders_served_by_the_writer(rig)
        df = spark.read.format("theflash").options(**rig.options(snapshot_ts=str(ts))).load(TABLE)
        got = sorted(tuple(r) for r in df.collect())
        native = rig.read_at(twin, TABLE, ts).to_pylist()
        assert got == sorted(tuple(r.values()) for r in native)
        assert len(got) == ROWS and ("late" not in {r[1] for r in got})
    finally:
        rig.close()


# -- theflash sql beside a Spark read of the same store ---------------------------------------
def theflash_sql(*args: str) -> "subprocess.CompletedProcess[str]":
    """``theflash sql ...`` in a process of its own, as a user runs it beside a notebook."""
    return subprocess.run([sys.executable, "-m", "pyspark_theflash", "sql", *args], capture_output=True, text=True,
                          timeout=300)


def theflash_sql_here(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``theflash sql ...`` through the CLI's entry point in this process: (exit code, out, err)."""
    from pyspark_theflash.cli import main as cli_main

    code = cli_main(["sql", *args])
    printed = capsys.readouterr()
    return code, printed.out, printed.err


def test_theflash_sql_through_the_writers_service_next_to_a_spark_read_of_the_same_clickhouse_store(
        spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The writer (``--engine clickhouse --serve``, in this process) holds the store's ClickHouse
    directory. ``theflash sql`` without ``--server`` is refused naming the holder and ``--server``;
    with ``--server`` it runs in the writer's ClickHouse and answers what a Spark read of the
    same store at the same ts says. On a native store (the twin) DuckDB answers the same."""
    rig = FlashRig(tmp_path / "rig")
    try:
        twin = rig.start_twin_writer()
        ts = orders_served_by_the_writer(rig)
        url = advertised_service(rig.store)
        assert url is not None
        query = f"SELECT status, count() AS n, sum(total) AS total FROM {TABLE} GROUP BY status ORDER BY status"

        busy = theflash_sql("--store", rig.store, "--ts", str(ts), query)
        assert busy.returncode != 0 and "Traceback" not in busy.stderr, busy.stderr
        assert f"process {os.getpid()}" in busy.stderr and url in busy.stderr, busy.stderr
        assert "theflash sql --server" in busy.stderr, busy.stderr

        code, out, err = theflash_sql_here(capsys, "--server", url, "--store", rig.store, "--ts", str(ts),
                                           "--format", "json", query)
        assert code == 0, err
        by_sql = [json.loads(line) for line in out.splitlines()]
        assert f"at snapshot ts {ts} ({TABLE})" in err, err

        df = spark.read.format("theflash").options(**rig.options(snapshot_ts=str(ts))).load(TABLE)
        by_spark = [{"status": r["status"], "n": r["n"], "total": str(r["total"])} for r in
                    df.groupBy("status").agg(F.count("*").alias("n"), F.sum("total").alias("total"))
                    .orderBy("status").collect()]
        assert [{**r, "total": str(decimal.Decimal(r["total"]))} for r in by_sql] == by_spark
        assert sum(r["n"] for r in by_sql) == ROWS and {r["status"] for r in by_sql} == {"new", "paid"}

        # the native twin answers the same query at the same ts, computed by DuckDB over its read streams
        code, out, err = theflash_sql_here(capsys, "--store", twin, "--ts", str(ts), "--format", "json", query)
        assert code == 0, err
        assert [json.loads(line) for line in out.splitlines()] == by_sql and "in DuckDB" in err, (out, err)
    finally:
        rig.close()


# -- the writer's service needs a bearer token (writer run --serve-token-file) -----------------
TOKEN = "ch-t0ken-3b8e41"
WRONG = "not-the-t0ken-77d0"
NEEDS = ("answered 401 unauthenticated: this service needs a bearer token: send the header 'Authorization: "
         "Bearer <token>' (the token is in the server's --token-file); this read sent no token: give it with "
         "option token or token_file, or set THEFLASH_TOKEN on the driver and the executors")
IS_WRONG = ("answered 401 unauthenticated: the bearer token is wrong (compare it with the server's --token-file); "
            "this read sent the bearer token from ")


class TokenServed:
    """A ClickHouse-engine store whose writer serves with ``--serve-token-file``, a snapshot ts
    of its orders, and token files: the right one, a wrong one."""

    def __init__(self, rig: FlashRig, ts: int, root: Path) -> None:
        self.rig, self.ts = rig, ts
        self.url = advertised_service(rig.store)
        self.token_file = root / "token"
        self.token_file.write_text(f"{TOKEN}\n# the first line is the token\n")
        self.wrong_file = root / "wrong-token"
        self.wrong_file.write_text(f"{WRONG}\n")
        # the Python source reads a ClickHouse store through the writer's service
        self.options = rig.options(snapshot_ts=str(ts))
        self.refused = (f"the service at {self.url} (the process owning {rig.store}'s ClickHouse directory) refused "
                        f"a read of {TABLE} at ts {ts}: ")


# the orders at the ts of orders_served_by_the_writer, as a read returns them
EXPECTED = [(i, ("new", "paid")[i % 2], decimal.Decimal(i) / 4) for i in range(ROWS)]


@pytest.fixture(scope="module")
def token_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServed]:
    # module scope: set up after the tests above have let go of their ClickHouse directories
    # (one per process)
    root = tmp_path_factory.mktemp("ch-token")
    (root / "server-token").write_text(TOKEN + "\n")
    rig = FlashRig(root / "rig")
    try:
        ts = orders_served_by_the_writer(rig, serve_token_file=str(root / "server-token"))
        served = TokenServed(rig, ts, root)
        assert served.url is not None, "the writer did not advertise its service"
        yield served
    finally:
        rig.close()


def spark_rows(spark: Any, options: dict[str, str]) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in spark.read.format("theflash").options(**options).load(TABLE).collect())


def spark_failure(spark: Any, options: dict[str, str]) -> str:
    with pytest.raises(Exception) as caught:
        spark_rows(spark, options)
    message = str(caught.value)
    assert TOKEN not in message and WRONG not in message
    return message


def test_spark_reads_a_clickhouse_store_through_a_service_needing_a_token_with_the_token_or_token_file_option(
        spark: Any, token_served: TokenServed) -> None:
    """Spark's Python workers are not the writer's process: every stream is read through its
    service, with the token the driver resolved from the options."""
    options = token_served.options
    assert spark_rows(spark, {**options, "token_file": str(token_served.token_file)}) == EXPECTED
    assert spark_rows(spark, {**options, "token": TOKEN}) == EXPECTED
    # token before token_file
    assert spark_rows(spark, {**options, "token": TOKEN, "token_file": str(token_served.wrong_file)}) == EXPECTED
    # and the token is not in the query's plan
    df = spark.read.format("theflash").options(**options, token=TOKEN).load(TABLE)
    assert TOKEN not in df._jdf.queryExecution().toString()


def test_a_missing_or_wrong_token_fails_the_spark_read_saying_where_the_token_came_from(
        spark: Any, token_served: TokenServed) -> None:
    options, refused = token_served.options, token_served.refused
    assert refused + NEEDS in spark_failure(spark, options)
    assert refused + IS_WRONG + "option token" in spark_failure(spark, {**options, "token": WRONG})
    wrong_file = str(token_served.wrong_file)
    assert refused + IS_WRONG + f"option token_file {wrong_file}" in spark_failure(
        spark, {**options, "token": " ", "token_file": wrong_file})


def test_a_read_through_the_service_sends_the_environment_token_when_no_option_gives_one(
        token_served: TokenServed, monkeypatch: pytest.MonkeyPatch) -> None:
    """``read_through_service`` as a Python worker runs it, in this process: THEFLASH_TOKEN
    there is the token when the options give none, and an option's token wins over it."""
    rig, url = token_served.rig, token_served.url
    assert url is not None
    with open_read_session(rig.store, TABLE, snapshot_ts=token_served.ts, options={"upstream": rig.upstream}) as s:
        plain = s.streams[0].partition
    with_option = dataclasses.replace(plain, token=BearerToken.from_options(TOKEN, None))
    (lo, hi), = [(r.lo, r.hi) for r in plain.ranges]
    expected = [r for r in EXPECTED if (lo is None or r[0] >= lo) and (hi is None or r[0] < hi)]

    def rows(partition: Any) -> list[tuple[Any, ...]]:
        table = pa.Table.from_batches(list(read_through_service(partition, url)))
        return sorted(tuple(r.values()) for r in table.select(["id", "status", "total"]).to_pylist())

    monkeypatch.setenv("THEFLASH_TOKEN", TOKEN)
    assert rows(plain) == expected and expected
    monkeypatch.setenv("THEFLASH_TOKEN", WRONG)
    with pytest.raises(ServiceTokenRefusedError) as caught:
        rows(plain)
    assert str(caught.value) == (token_served.refused + IS_WRONG + "the THEFLASH_TOKEN environment variable")
    assert caught.value.source == "the THEFLASH_TOKEN environment variable"
    assert rows(with_option) == expected  # the option's token, not the environment's
    monkeypatch.delenv("THEFLASH_TOKEN")
    with pytest.raises(ServiceTokenRefusedError) as caught:
        rows(plain)
    assert str(caught.value) == token_served.refused + NEEDS and caught.value.source is None
