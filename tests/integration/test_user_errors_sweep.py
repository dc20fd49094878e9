"""User errors swept through every front end (issue 52, items 5 and "done when"): the CLI, the
Python data source, Arrow Flight, Flight SQL and HTTP. Each message is a few lines at most, has no
stack (no "Traceback", no source file of the package), names the object it is about and says
what to do. The jar's, through PySpark and spark-sql, are in tests/spark/test_jvm_source.py: its
word-for-word refusals through PySpark (misspelt options, tables, databases and metadata tables,
writes, DDL, times that are no time), a store the service does not serve, and one spark-sql run
answering eight user errors each in one line without a stack
(test_spark_sql_prints_each_user_error_as_its_message_without_a_stack). The Python source's
methods are called here as Spark's Python worker calls them; through Spark, its message comes
with no traceback (tests/spark/test_spark_read.py, test_wheel_install.py; spark/user_errors.py
says how)."""
from __future__ import annotations

import json
import subprocess
import sys
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column

THEFLASH = [sys.executable, "-m", "pyspark_theflash"]
TABLE = "sw.items"


@dataclass
class World:
    cluster: MiniCluster
    root: Path
    store: Path
    binlog: Path
    service: Any  # service.server.RunningService
    early_ts: int  # below the upstream's GC safe point


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from pyspark_theflash.service.server import serve

    root = tmp_path_factory.mktemp("sweep")
    cluster = MiniCluster(root / "up", root / "binlog", resolved_ts_interval=0.05, gc_run_interval_s=None)
    cluster.serve(stores=1, binlog_port=None)
    cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("name", "VARCHAR(20)"),
                                 make_column("price", "DECIMAL(10,2)")], primary_key=["id"])
    early_ts = cluster.get_ts()
    cluster.run_txn(lambda t: [t.insert(TABLE, {"id": i, "name": f"n{i}", "price": "1.50"}) for i in range(5)])
    cluster.run_gc(cluster.get_ts())
    done = subprocess.run(THEFLASH + ["writer", "run", "--binlog", f"file://{root / 'binlog'}", "--store",
                                      str(root / "store"), "--upstream", cluster.pd_address, "--until-caught-up"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    service = serve(str(root / "store"), port=0)
    try:
        yield World(cluster, root, root / "store", root / "binlog", service, early_ts)
    finally:
        service.close()
        cluster.close()


def plain(message: str, *names: str) -> None:
    """A few lines, no stack, naming each of ``names`` (the object, the remedy)."""
    assert "Traceback" not in message and 'File "' not in message and "pyspark_theflash/" not in message, message
    assert len([line for line in message.splitlines() if line.strip()]) <= 3, message
    for name in names:
        assert name in message, (name, message)


# -- the CLI -----------------------------------------------------------------------------------
def cli(*args: str) -> str:
    done = subprocess.run(THEFLASH + list(args), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode != 0, (args, done.stdout)
    return done.stderr


CLI_CASES: dict[str, tuple[Callable[[World], list[str]], Callable[[World], list[str]]]] = {
    # name: (arguments, what the message names: the object and the remedy)
    "scan, no store": (lambda w: ["scan", TABLE, "--store", str(w.root / "nope"), "--read"],
                       lambda w: [str(w.root / "nope"), "theflash writer run"]),
    "scan, a misspelt table": (lambda w: ["scan", "sw.item", "--store", str(w.store), "--read", "--snapshot", "resolved"],
                               lambda w: ["sw.item", "did you mean sw.items?"]),
    "scan, below the GC safe point": (lambda w: ["scan", TABLE, "--store", str(w.store), "--read", "--snapshot-ts",
                                                 str(w.early_ts)],
                                      lambda w: [str(w.early_ts), "below the GC safe point", "--snapshot-ts"]),
    "scan, an as-of that is no time": (lambda w: ["scan", TABLE, "--store", str(w.store), "--as-of", "yesterday"],
                                       lambda w: ["yesterday", "ISO-8601"]),
    "store history, a misspelt table": (lambda w: ["store", "history", str(w.store), "sw.itemz"],
                                        lambda w: ["sw.itemz", "did you mean sw.items?"]),
    "store verify, no store": (lambda w: ["store", "verify", str(w.root / "nope")],
                               lambda w: [str(w.root / "nope"), "store directory"]),
    "sql, a write": (lambda w: ["sql", "--store", str(w.store), f"DELETE FROM {TABLE}"],
                     lambda w: ["DELETE is not a read-only query", "change the tables in TiDB"]),
    "sql, a misspelt table": (lambda w: ["sql", "--store", str(w.store), "SELECT count(*) FROM sw.item"],
                              lambda w: ["sw.item", "did you mean sw.items?"]),
    "writer status, no store": (lambda w: ["writer", "status", "--store", str(w.root / "nope")],
                                lambda w: [str(w.root / "nope"), "a writer creates it"]),
    "writer stop, no writer": (lambda w: ["writer", "stop", "--store", str(w.store)],
                               lambda w: [str(w.store), "no running writer"]),
    "binlog dump, no binlog": (lambda w: ["binlog", "dump", f"file://{w.root / 'nope'}"],
                               lambda w: [str(w.root / "nope"), "does not exist"]),
    "latch serve, no store": (lambda w: ["latch", "serve", "--store", str(w.root / "nope")],
                              lambda w: [str(w.root / "nope"), "theflash writer run"]),
    "delta versions, no store": (lambda w: ["delta", "versions", str(w.root / "nope")],
                                 lambda w: [str(w.root / "nope"), "theflash writer run"]),
    "serve, no store": (lambda w: ["serve", "--store", str(w.root / "nope"), "--port", "0"],
                        lambda w: [str(w.root / "nope"), "a writer creates it"]),
    "sql, below the GC safe point": (lambda w: ["sql", "--store", str(w.store), "--ts", str(w.early_ts),
                                                f"SELECT count(*) FROM {TABLE}"],
                                     lambda w: [str(w.early_ts), "below the GC safe point", "--ts"]),
    "sql, no store": (lambda w: ["sql", "--store", str(w.root / "nope"), f"SELECT 1 FROM {TABLE}"],
                      lambda w: [str(w.root / "nope"), "theflash writer run"]),
    "store gc, no store": (lambda w: ["store", "gc", str(w.root / "nope"), "--safe-point", "1"],
                           lambda w: [str(w.root / "nope")]),
    "store history, no store": (lambda w: ["store", "history", str(w.root / "nope"), TABLE],
                                lambda w: [str(w.root / "nope")]),
    "writer run, no binlog": (lambda w: ["writer", "run", "--binlog", f"file://{w.root / 'nobinlog'}", "--store",
                                         str(w.root / "store2"), "--until-caught-up"],
                              lambda w: [str(w.root / "nobinlog")]),
    "binlog serve, no binlog": (lambda w: ["binlog", "serve", str(w.root / "nobinlog"), "--port", "0"],
                                lambda w: [str(w.root / "nobinlog")]),
    "scan, a column the table lacks": (lambda w: ["scan", TABLE, "--store", str(w.store), "--read", "--snapshot",
                                                  "resolved", "--sum", "nope"],
                                       lambda w: ["nope"]),
    "upstream, an unknown workload": (lambda w: ["upstream", "--data", str(w.root / "up2"), "--binlog",
                                                 str(w.root / "b2"), "--workload", "bnak"],
                                      lambda w: ["bnak", "known: "]),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_the_cli_says_a_user_error_in_one_line(world: World, case: str) -> None:
    args, names = CLI_CASES[case]
    err = cli(*args(world))
    plain(err, *names(world))
    assert len(err.strip().splitlines()) == 1, err


# -- the Python data source (the methods Spark calls, as its worker formats their errors) --------
SOURCE_CASES: dict[str, tuple[Callable[[World], dict[str, str]], Callable[[World], list[str]]]] = {
    "no store": (lambda w: {"store": str(w.root / "nope"), "table": TABLE},
                 lambda w: [str(w.root / "nope"), "theflash writer run"]),
    "a misspelt table": (lambda w: {"store": str(w.store), "table": "sw.item"},
                         lambda w: ["sw.item", "did you mean sw.items?"]),
    "a misspelt option": (lambda w: {"store": str(w.store), "table": TABLE, "isolaton": "RC"},
                          lambda w: ["isolaton", "did you mean 'isolation'?"]),
    "a snapshot that is no choice": (lambda w: {"store": str(w.store), "table": TABLE, "snapshot": "sideways"},
                                     lambda w: ["sideways", "fresh (default) or resolved"]),
    "a column the table lacks": (lambda w: {"store": str(w.store), "table": TABLE, "columns": "id,nope",
                                            "snapshot": "resolved"},
                                 lambda w: ["nope", TABLE]),
}


@pytest.mark.parametrize("case", list(SOURCE_CASES))
def test_the_python_source_raises_a_user_error_without_a_stack_of_the_package(world: World, case: str) -> None:
    from pyspark_theflash.errors import TheFlashError
    from pyspark_theflash.spark.datasource import TheFlashDataSource

    options, names = SOURCE_CASES[case]
    source = TheFlashDataSource(options(world))
    with pytest.raises(TheFlashError) as caught:
        source.reader(source.schema()).partitions()
    exc = caught.value
    package_frames = [f for f in traceback.extract_tb(exc.__traceback__) if "pyspark_theflash" in f.filename]
    assert [f.name for f in package_frames] in ([], ["call"], ["generator"]), package_frames  # said_plainly's only
    assert exc.__cause__ is None and exc.__suppress_context__
    plain(str(exc), *names(world))


# -- Arrow Flight --------------------------------------------------------------------------------
def flight_message(world: World, call: Callable[[Any], Any]) -> str:
    import pyarrow.flight as flight

    client = flight.connect(world.service.flight_location)
    try:
        with pytest.raises(flight.FlightError) as caught:
            call(client)
    finally:
        client.close()
    return str(caught.value)


def test_flight_answers_user_errors_with_the_code_and_message_only(world: World) -> None:
    import pyarrow.flight as flight

    def info(command: Any) -> Callable[[Any], Any]:
        return lambda c: c.get_flight_info(flight.FlightDescriptor.for_command(
            command if isinstance(command, bytes) else json.dumps(command)))

    plain(flight_message(world, info({"table": "sw.item"})), "unknown_table", "sw.item", "did you mean sw.items?")
    plain(flight_message(world, info({"table": TABLE, "snapshot_ts": world.early_ts})), "snapshot_ts_out_of_range",
          str(world.early_ts), "below the GC safe point", "readable snapshots are")
    plain(flight_message(world, info({"table": TABLE, "columns": ["id", "nope"], "snapshot": "resolved"})),
          "nope", TABLE)
    plain(flight_message(world, info(b"{not json")), "malformed_json")
    plain(flight_message(world, lambda c: list(c.do_get(flight.Ticket(b"garbage")).read_all())),
          "malformed_ticket", "garbage")
    plain(flight_message(world, lambda c: list(c.do_action(flight.Action("nope", b"")))), "'nope'", "actions: ")


# -- Flight SQL (ADBC) ---------------------------------------------------------------------------
@pytest.mark.parametrize("sql, names", [
    ("SELECT * FROM sw.item", ["unknown_table", "sw.item", "its tables"]),
    ("SELECT nope FROM sw.items", ["nope", "its columns are"]),
    ("SELEC 1", ["SELEC", "cannot read the query"]),
    ("DELETE FROM sw.items", ["DELETE", "not a read-only query"]),
    ("SELECT count(*) FROM sw.item", ["unknown_table", "sw.item", "did you mean sw.items?"]),
    ("SELECT id FROM sw.items AS OF TSO 1", ["snapshot_ts_out_of_range", "below the GC safe point"]),
    ("SELECT 1; SELECT 2", ["2 statements"]),
])
def test_flight_sql_answers_user_errors_with_the_message_not_the_servers_traceback(
        world: World, sql: str, names: list[str]) -> None:
    import adbc_driver_flightsql.dbapi as flight_sql
    import adbc_driver_manager

    with flight_sql.connect(world.service.flight_location, autocommit=True) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as caught:
            cur.execute(sql)
            cur.fetch_arrow_table()
    plain(str(caught.value), *names)
    assert "Python exception" not in str(caught.value)


# -- HTTP ----------------------------------------------------------------------------------------
def http_error(world: World, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(world.service.http_url + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    answer = json.loads(caught.value.read())
    error = answer.get("error", answer)
    return caught.value.code, f"{error['code']}: {error['message']}"


def test_http_answers_user_errors_as_a_status_and_one_message(world: World) -> None:
    status, message = http_error(world, "POST", "/v1/read-sessions", json.dumps({"table": "sw.item"}).encode())
    assert status == 404
    plain(message, "unknown_table", "sw.item", "did you mean sw.items?")
    status, message = http_error(world, "GET", "/v1/tables/sw.item/history")
    assert status == 404
    plain(message, "sw.item", "did you mean sw.items?")
    status, message = http_error(world, "POST", "/v1/read-sessions", b"{not json")
    assert status == 400
    plain(message, "malformed_json")
    status, message = http_error(world, "GET", "/v1/read-sessions/nope")
    assert 400 <= status < 500
    plain(message, "nope")
    status, message = http_error(world, "POST", "/v1/sql", json.dumps({"sql": f"DELETE FROM {TABLE}"}).encode())
    assert status == 400
    plain(message, "invalid_query", "DELETE is not a read-only query")
    status, message = http_error(world, "POST", "/v1/sql", json.dumps({"sql": "SELECT count(*) FROM sw.item"}).encode())
    assert status == 404
    plain(message, "unknown_table", "did you mean sw.items?")


def test_theflash_debug_logs_the_whole_stack_before_the_one_line(world: World) -> None:
    """THEFLASH_DEBUG puts the stack of the error behind the one line in the log (stderr)."""
    import os

    args = THEFLASH + ["scan", TABLE, "--store", str(world.root / "nope"), "--read"]
    quiet = subprocess.run(args, capture_output=True, text=True, timeout=120)
    loud = subprocess.run(args, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "THEFLASH_DEBUG": "1"})
    line = quiet.stderr.strip()
    assert quiet.returncode == loud.returncode == 2 and len(line.splitlines()) == 1
    assert "Traceback" in loud.stderr and "StoreNotFoundError" in loud.stderr, loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == line


def test_a_flight_sql_result_whose_session_ended_is_refused_with_its_message_only(world: World) -> None:
    """The read behind a statement's ticket is gone (released, or its lease lapsed) when the
    ticket is read: the client gets the message, not the server's stack."""
    import pyarrow.flight as flight

    from pyspark_theflash.proto import flight_sql_pb2 as fsql
    from pyspark_theflash.service.flight_sql import flight_sql_command, pack

    from pyspark_theflash.store import Store

    with Store.open(str(world.store), readonly=True) as store, store.snapshot() as view:
        resolved = min(int(r.resolved_ts) for r in view.regions())  # the writer stopped: read what it stored
    client = flight.connect(world.service.flight_location)
    try:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(
            pack(fsql.CommandStatementQuery(query=f"SELECT id FROM {TABLE} AS OF TSO {resolved}"))))
        ticket = info.endpoints[0].ticket
        handle = json.loads(flight_sql_command(ticket.ticket).statement_handle)  # type: ignore[union-attr]
        list(client.do_action(flight.Action("release", json.dumps({"session": handle["session"]}).encode())))
        with pytest.raises(flight.FlightError) as caught:
            client.do_get(ticket).read_all()
    finally:
        client.close()
    plain(str(caught.value), handle["session"])
    assert "Python exception" not in str(caught.value)


def test_the_service_logs_the_whole_stack_of_each_refused_request_at_debug_level(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    """A client is sent the message alone; the service's log has the stack behind it, at debug
    (an unexpected failure is logged at warning), for every front end."""
    import logging

    import pyarrow.flight as flight

    with caplog.at_level(logging.DEBUG, logger="theflash.service"):
        http_error(world, "POST", "/v1/read-sessions", json.dumps({"table": "sw.item"}).encode())
        flight_message(world, lambda c: c.get_flight_info(
            flight.FlightDescriptor.for_command(json.dumps({"table": "sw.item"}))))
    failed = [r for r in caplog.records if r.name == "theflash.service" and "request failed (unknown_table)"
              in r.getMessage()]
    assert len(failed) == 2, [r.getMessage() for r in caplog.records]
    for record in failed:
        assert record.levelno == logging.DEBUG and record.exc_info is not None
        assert "Traceback" in logging.Formatter().format(record)


def test_a_cli_read_waiting_on_a_stopped_writer_says_once_what_it_waits_for(world: World) -> None:
    """The world's writer stopped once caught up, the upstream moved on: a fresh read waits for
    the store's regions. After about 2 s the CLI says once, on stderr, which table, the furthest
    region and its lag and what to check; then the timeout in one line (issue 52, item 7)."""
    world.cluster.run_txn(lambda t: t.insert(TABLE, {"id": 100, "name": "late", "price": "2.00"}))
    done = subprocess.run(THEFLASH + ["scan", TABLE, "--store", str(world.store), "--read", "--region-wait-timeout",
                                      "4s"], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 2, done.stderr
    assert lines[0].startswith(f"reading {TABLE} at ts ") and "waiting for 1 region(s)" in lines[0], lines[0]
    assert " s behind)" in lines[0] and "is the writer applying the binlog?" in lines[0], lines[0]
    assert lines[0].endswith("more (--region-wait-timeout)"), lines[0]  # the option as this command spells it
    plain(lines[1], f"theflash scan: reading {TABLE}", "did not catch up within 4s", "--snapshot resolved")
