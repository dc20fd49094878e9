"""The TheFlash API service on 127.0.0.1: Flight and HTTP clients read the rows a read session
reads; bad requests get clear errors and the server keeps serving; clients that go away free
their streams; leases are renewed, released and expire; tokens; metrics."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.latch import connect as connect_latch
from pyspark_theflash.scan.session import open_read_session, read_stream
from pyspark_theflash.service import RunningService, serve
from pyspark_theflash.upstream.tidb import make_column, record_key
from service_client import FlightReader, HttpReader

TABLE = "svc.items"
ROWS = 3000
TOKEN = "s3cret-token"
BIG = "svc.big"
BIG_ROWS = 20_000


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("service"))
    table = r.cluster.create_table(TABLE, [
        make_column("id", "BIGINT", not_null=True), make_column("name", "VARCHAR(16)"), make_column("qty", "INT"),
        make_column("price", "DECIMAL(10,2)"),
    ], primary_key=["id"])
    r.cluster.split_at(record_key(table, ROWS // 3))
    r.cluster.split_at(record_key(table, 2 * ROWS // 3))
    rows = pa.table({"id": pa.array(range(ROWS), pa.int64()), "name": [f"n{i}" for i in range(ROWS)],
                     "qty": pa.array([i % 7 for i in range(ROWS)], pa.int32()),
                     "price": pa.array([i * 25 for i in range(ROWS)], pa.decimal128(10, 2))})
    r.cluster.bulk_insert(TABLE, rows, txn_rows=1000)
    r.cluster.create_table("bank.accounts", [make_column("id", "BIGINT", not_null=True),
                                             make_column("balance", "BIGINT", not_null=True)], primary_key=["id"])
    r.cluster.bulk_insert("bank.accounts", pa.table({"id": pa.array(range(20), pa.int64()),
                                                     "balance": pa.array([i % 4 for i in range(20)], pa.int64())}))
    # ~20 MB of Arrow: more than socket and gRPC buffers hold, so a client gone mid-stream
    # finds the server still sending
    r.cluster.create_table(BIG, [make_column("id", "BIGINT", not_null=True), make_column("note", "TEXT")],
                           primary_key=["id"])
    r.cluster.bulk_insert(BIG, pa.table({"id": pa.array(range(BIG_ROWS), pa.int64()),
                                         "note": [f"{i:08d}" * 125 for i in range(BIG_ROWS)]}), txn_rows=5000)
    r.start_writer(interval_s=0.05)
    for name in (TABLE, "bank.accounts", BIG):
        r.wait_replicated(name)
    yield r
    r.close()


@pytest.fixture(scope="module")
def flight_reader(service: RunningService) -> Iterator[FlightReader]:
    reader = FlightReader(service.flight_location)
    yield reader
    reader.close()


@pytest.fixture(scope="module")
def http_reader(service: RunningService) -> HttpReader:
    return HttpReader(service.http_url)


def direct(rig: FlashRig, ts: int, **kw) -> pa.Table:
    with open_read_session(rig.store, TABLE, snapshot_ts=ts, options={"upstream": rig.upstream}, **kw) as s:
        return pa.Table.from_batches([b for n in range(len(s.streams)) for b in read_stream(s, n)], schema=s.schema)


def metric(service: RunningService, name: str, **labels: str) -> float:
    return service.service.metrics.value(name, **labels)


def test_flight_and_http_read_what_a_session_reads_at_one_ts(rig: FlashRig, service: RunningService,
                                                           flight_reader: FlightReader, http_reader: HttpReader) -> None:
    with rig.cluster.txn() as t:  # a change the read must see
        t.update(TABLE, {"id": 5, "qty": 99})
    ts = rig.cluster.get_ts()
    for request in ({"table": TABLE, "snapshot_ts": ts, "min_streams": 3},  # a stream per region
                    {"table": TABLE, "snapshot_ts": ts, "columns": ["price", "_tidb_rowid", "id"],
                     "filter": [["qty", ">=", 5], ["price", "<", "500.00"]], "min_streams": 3}):
        expected = direct(rig, ts, columns=request.get("columns"), filter=request.get("filter")).sort_by("id")
        got_flight, session = flight_reader.read(request)
        got_http, session_http = http_reader.read(request)
        assert session["ts"] == session_http["ts"] == ts
        assert len(session["streams"]) == 3
        assert got_flight.schema == got_http.schema == expected.schema
        assert got_flight.sort_by("id").equals(expected) and got_http.sort_by("id").equals(expected)
    assert expected.num_rows > 0 and expected.column_names == ["price", "_tidb_rowid", "id"]
    assert metric(service, "theflash_service_rows_total", frontend="flight") >= ROWS
    assert metric(service, "theflash_service_sessions_active") == 0


@pytest.mark.parametrize("conjunct, keeps", [
    (["qty", "=", 1.5], lambda q, p: False),                      # no integer is 1.5
    (["qty", "<", {"float": "1.5"}], lambda q, p: q <= 1),       # 1 < 1.5
    (["qty", ">=", {"decimal": "1.5"}], lambda q, p: q >= 2),
    (["qty", "!=", "1.5"], lambda q, p: True),
    (["qty", "<", 2 ** 40], lambda q, p: True),                  # beyond INT: above every row
    (["price", "=", {"decimal": "25.005"}], lambda q, p: False),  # DECIMAL(10,2) holds no 25.005
    (["price", "<", {"decimal": "25.005"}], lambda q, p: p <= 25),
    (["qty", "not_in", [1, None]], lambda q, p: False),           # NULL for every q != 1
    ({"not": ["qty", "in", [2, None]]}, lambda q, p: False),
    (["qty", "in", [1, None]], lambda q, p: q == 1),
    (["qty", "not_in", [1, 2]], lambda q, p: q not in (1, 2)),
])
def test_filters_have_sql_semantics_over_flight_and_http(flight_reader: FlightReader, http_reader: HttpReader,
                                                       conjunct: list, keeps) -> None:
    """A NULL in an in/not_in list makes non-matches NULL; a literal the column cannot hold is
    compared exactly, not truncated (tests/unit/test_filter_semantics.py holds the property test)."""
    request = {"table": TABLE, "columns": ["id", "qty", "price"], "filter": [conjunct]}
    want = sorted(i for i in range(ROWS) if keeps(i % 7, i * 25))
    for reader in (flight_reader, http_reader):
        got, _ = reader.read(request)
        assert sorted(got.column("id").to_pylist()) == want, f"{type(reader).__name__}: {conjunct}"


def test_list_flights_and_the_tables_resource_name_the_replicated_tables(
        service: RunningService, flight_reader: FlightReader, http_reader: HttpReader) -> None:
    infos = list(flight_reader.client.list_flights(options=flight_reader.options))
    assert TABLE in [json.loads(i.descriptor.command)["table"] for i in infos]
    info = next(i for i in infos if json.loads(i.descriptor.command)["table"] == TABLE)
    assert info.schema.names == ["id", "name", "qty", "price"]
    whole = flight_reader.client.get_flight_info(info.descriptor, flight_reader.options)  # the listed command reads it
    assert sum(json.loads(whole.app_metadata)["streams"][i]["rows"] for i in range(len(whole.endpoints))) >= ROWS
    flight_reader.action("release", {"session": json.loads(whole.app_metadata)["id"]})
    status, body = http_reader.json("GET", "/v1/tables")
    assert status == 200 and TABLE in [t["table"] for t in body["tables"]]


BAD_REQUESTS = [
    ({"table": "svc.nope"}, "unknown_table", 404, "svc.nope"),
    ({"table": TABLE, "columns": ["id", "nope"]}, "invalid_option", 400, "no column(s) ['nope']"),
    ({"table": TABLE, "filter": [["nope", "=", 1]]}, "invalid_filter", 400, "has no such column"),
    ({"table": TABLE, "filter": [["qty", "=", "many"]]}, "invalid_filter", 400, "column qty"),
    ({"table": TABLE, "colums": ["id"]}, "invalid_option", 400, "unknown field(s) ['colums']"),
    ({"table": TABLE, "isolation": "XX"}, "invalid_option", 400, "isolation"),
    ({"table": TABLE, "snapshot_ts": 1}, "snapshot_ts_out_of_range", 400, "below the GC safe point"),
]


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(
        rig: FlashRig, service: RunningService, flight_reader: FlightReader, http_reader: HttpReader) -> None:
    rig.cluster.run_gc(rig.cluster.get_ts())  # a safe point above ts 1
    wait_for(lambda: rig.cluster.gc_safe_point() > 1, 10, "the safe point to move")
    for request, code, status, text in BAD_REQUESTS:
        with pytest.raises(flight.FlightServerError, match=rf"^{code}: .*{__import__('re').escape(text)}"):
            flight_reader.info(request)
        got, body = http_reader.json("POST", "/v1/read-sessions", request)
        assert (got, body["error"]["code"]) == (status, code) and text in body["error"]["message"], body
    for raw in (b"{not json", b"[1, 2]", b""):
        got, body = http_reader.json("POST", "/v1/read-sessions", raw=raw)
        assert (got, body["error"]["code"]) == (400, "malformed_json"), body
        with pytest.raises(flight.FlightServerError, match="^malformed_json: "):
            flight_reader.client.get_flight_info(flight.FlightDescriptor.for_command(raw), flight_reader.options)
    assert http_reader.json("GET", "/v1/read-sessions/abc123")[0] == 404
    assert http_reader.json("GET", "/v1/read-sessions/abc123/streams/0")[1]["error"]["code"] == "unknown_session"
    assert http_reader.json("DELETE", "/v1/read-sessions/abc123")[0] == 404
    assert http_reader.json("GET", "/v1/nothing")[0] == 404
    assert http_reader.json("PUT", "/v1/read-sessions", {})[1]["error"]["code"] == "method_not_allowed"
    with pytest.raises(flight.FlightServerError, match="^malformed_ticket: "):
        flight_reader.client.do_get(flight.Ticket(b"garbage"), flight_reader.options).read_all()
    with pytest.raises(flight.FlightServerError, match="^unknown_session: "):
        flight_reader.client.do_get(flight.Ticket(b'{"session": "ab", "stream": 0}'), flight_reader.options).read_all()
    with pytest.raises(flight.FlightServerError, match="^invalid_option: unknown action"):
        flight_reader.action("explode")
    info = flight_reader.info({"table": TABLE})
    session_id = json.loads(info.app_metadata)["id"]
    with pytest.raises(flight.FlightServerError, match="^unknown_stream: "):
        flight_reader.client.do_get(flight.Ticket(json.dumps({"session": session_id, "stream": 99}).encode()),
                                    flight_reader.options).read_all()
    flight_reader.action("release", {"session": session_id})
    # still serving, on both front ends
    assert flight_reader.read({"table": TABLE, "columns": ["id"]})[0].num_rows == ROWS
    assert http_reader.read({"table": TABLE, "columns": ["id"]})[0].num_rows == ROWS
    assert metric(service, "theflash_service_errors_total", frontend="http", code="unknown_table") >= 1
    assert metric(service, "theflash_service_errors_total", frontend="flight", code="invalid_filter") >= 2


def test_a_read_naming_another_store_is_refused_and_an_any_store_service_reads_each_store_named(
        rig: FlashRig, service: RunningService, http_reader: HttpReader, tmp_path: Path) -> None:
    """A service of one store must never answer a read of another store from its own; the
    service ``theflash_session()`` starts reads whichever store a read names."""
    ts = rig.cluster.get_ts()
    expected = direct(rig, ts, columns=["id", "qty"]).sort_by("id")
    got, body = http_reader.json("POST", "/v1/read-sessions", {"table": TABLE, "store": str(tmp_path)})
    assert (got, body["error"]["code"]) == (400, "wrong_store") and str(tmp_path) in body["error"]["message"]
    got, body = http_reader.json("GET", "/v1/tables?store=" + str(tmp_path))
    assert (got, body["error"]["code"]) == (400, "wrong_store")
    same = str(Path(rig.store) / ".." / Path(rig.store).name)  # the same directory, spelt otherwise
    table, _ = http_reader.read({"table": TABLE, "store": same, "snapshot_ts": ts, "columns": ["id", "qty"]})
    assert table.sort_by("id").equals(expected)

    with serve(any_store=True, port=0, token=TOKEN) as anywhere:
        reader = HttpReader(anywhere.http_url, token=TOKEN)
        table, _ = reader.read({"table": TABLE, "store": rig.store, "snapshot_ts": ts, "columns": ["id", "qty"]})
        assert table.sort_by("id").equals(expected)
        got, body = reader.json("GET", "/v1/tables?store=" + rig.store)
        assert got == 200 and TABLE in [t["table"] for t in body["tables"]]
        got, body = reader.json("POST", "/v1/read-sessions", {"table": TABLE})
        assert (got, body["error"]["code"]) == (400, "invalid_option") and "give the store" in body["error"]["message"]
        got, body = reader.json("POST", "/v1/read-sessions", {"table": TABLE, "store": str(tmp_path / "none")})
        assert (got, body["error"]["code"]) == (404, "unknown_store"), body
        assert HttpReader(anywhere.http_url).json("GET", "/v1/tables?store=" + rig.store)[0] == 401
        flight_reader = FlightReader(anywhere.flight_location, token=TOKEN)
        try:
            command = {"table": TABLE, "store": rig.store, "snapshot_ts": ts, "columns": ["id", "qty"]}
            assert flight_reader.read(command)[0].sort_by("id").equals(expected)
        finally:
            flight_reader.close()
        assert reader.json("GET", "/v1/status")[1]["stores"][0]["store"] == os.path.realpath(rig.store)


def test_a_token_is_required_on_every_call_when_configured(rig: FlashRig, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with serve(rig.store, port=0, token_file=str(token_file)) as running:
        for token in (None, "wrong"):
            reader = FlightReader(running.flight_location, token)
            with pytest.raises(flight.FlightUnauthenticatedError, match="unauthenticated: .*(needs a bearer|is wrong)"):
                reader.info({"table": TABLE})
            with pytest.raises(flight.FlightUnauthenticatedError):
                list(reader.client.list_flights(options=reader.options))
            reader.close()
            http = HttpReader(running.http_url, token)
            assert http.json("POST", "/v1/read-sessions", {"table": TABLE})[0] == 401
            assert http.request("GET", "/metrics")[0] == 401
        good = FlightReader(running.flight_location, TOKEN)
        assert good.read({"table": TABLE, "columns": ["id"]})[0].num_rows == ROWS
        good.close()
        assert HttpReader(running.http_url, TOKEN).read({"table": TABLE, "columns": ["qty"]})[0].num_rows == ROWS
        assert running.service.metrics.value("theflash_service_errors_total", code="unauthenticated") >= 6


def test_a_client_gone_mid_stream_frees_the_stream(service: RunningService, flight_reader: FlightReader,
                                                  http_reader: HttpReader) -> None:
    import subprocess
    import sys

    request = {"table": BIG, "batch_rows": 100, "min_streams": 1}
    status, session = http_reader.json("POST", "/v1/read-sessions", request)
    assert status == 201 and len(session["streams"]) == 1
    sock = socket.create_connection((http_reader.host, http_reader.port))
    sock.sendall(f"GET {session['streams'][0]['url']} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert b"200 OK" in sock.recv(4096)
    sock.close()  # gone after the first bytes of a 20 MB stream
    wait_for(lambda: metric(service, "theflash_service_streams_aborted_total", frontend="http") == 1, 30,
             "the server to notice the HTTP client went away")
    info = flight_reader.info(request)
    # a client process that dies after its first batch, without closing anything
    client = subprocess.run([sys.executable, "-c", (
        "import os, sys, pyarrow.flight as f\n"
        f"reader = f.connect({service.flight_location!r}).do_get(f.Ticket({info.endpoints[0].ticket.ticket!r}))\n"
        "reader.read_chunk(); print('read one batch', flush=True); os._exit(0)\n")],
        capture_output=True, text=True, timeout=60)
    assert client.stdout.strip() == "read one batch", client.stderr
    wait_for(lambda: metric(service, "theflash_service_streams_aborted_total", frontend="flight") == 1, 30,
             "the server to notice the Flight client went away")
    wait_for(lambda: metric(service, "theflash_service_streams_active") == 0, 30, "the streams to be freed")
    for s in (session["id"], json.loads(info.app_metadata)["id"]):
        assert http_reader.request("DELETE", f"/v1/read-sessions/{s}")[0] == 204
    assert flight_reader.read({"table": BIG, "columns": ["id"]})[0].num_rows == BIG_ROWS


def test_leases_are_renewed_on_request_released_at_the_end_and_expire_unused(
        rig: FlashRig, service: RunningService, flight_reader: FlightReader, http_reader: HttpReader) -> None:
    latch = connect_latch(rig.store)

    def lease(lease_id: int):
        return next((x for x in latch.leases() if x.lease_id == lease_id), None)

    info = flight_reader.info({"table": TABLE, "lease_ttl": "30s"})
    session = json.loads(info.app_metadata)
    first = lease(session["lease"]["id"])
    assert first is not None and first.ts == session["ts"]
    renewed = flight_reader.action("renew", {"session": session["id"]})
    assert renewed["lease_expires_at"] > first.expires_at
    assert lease(session["lease"]["id"]).expires_at == pytest.approx(renewed["lease_expires_at"])
    assert flight_reader.action("release", {"session": session["id"]}) == {"session": session["id"], "released": True}
    assert lease(session["lease"]["id"]) is None
    with pytest.raises(flight.FlightServerError, match="^unknown_session: "):
        flight_reader.action("renew", {"session": session["id"]})

    status, over_http = http_reader.json("POST", "/v1/read-sessions", {"table": TABLE, "lease_ttl": "30s"})
    status, renewed = http_reader.json("POST", f"/v1/read-sessions/{over_http['id']}/renew")
    assert status == 200 and lease(over_http["lease"]["id"]).expires_at == pytest.approx(renewed["lease_expires_at"])
    assert http_reader.request("DELETE", f"/v1/read-sessions/{over_http['id']}")[0] == 204
    assert lease(over_http["lease"]["id"]) is None

    expired = metric(service, "theflash_service_sessions_expired_total")
    status, idle = http_reader.json("POST", "/v1/read-sessions", {"table": TABLE, "lease_ttl": "600ms"})
    # the keeper renews a live session's lease (past its first expiry) ...
    wait_for(lambda: (lease(idle["lease"]["id"]) or first).expires_at > idle["lease"]["expires_at"] + 0.1, 10,
             "the keeper to renew the lease")
    # ... and releases it once unused for its TTL: counted once its lease is gone (a wait on the
    # lease alone could read the counter between the two)
    wait_for(lambda: metric(service, "theflash_service_sessions_expired_total") == expired + 1, 10,
             "the idle session to expire")
    assert lease(idle["lease"]["id"]) is None
    assert http_reader.json("GET", f"/v1/read-sessions/{idle['id']}")[1]["error"]["code"] == "unknown_session"


def test_metrics_status_and_flush(rig: FlashRig, service: RunningService, flight_reader: FlightReader,
                                  http_reader: HttpReader) -> None:
    status, headers, body = http_reader.request("GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for name in ("theflash_service_sessions_active", "theflash_service_streams_active",
                 'theflash_service_rows_total{frontend="flight"}', "theflash_service_bytes_total",
                 "theflash_service_errors_total"):
        assert name in text, name
    status, state = http_reader.json("GET", "/v1/status")
    assert status == 200 and state["engine"]["engine"] == "txn_merge_tree"
    assert TABLE in [t["name"] for t in state["engine"]["tables"]]
    assert flight_reader.action("status")["engine"]["root"] == rig.store
    with rig.cluster.txn() as t:
        t.update(TABLE, {"id": 7, "qty": 77})
    flushed = flight_reader.action("flush", {"timeout_s": 30})
    assert flushed["flushed_by"] == "writer" and flushed["regions"] >= 3
    assert http_reader.json("POST", "/v1/flush", {"timeout_s": "soon"})[0] == 400
    assert http_reader.json("POST", "/v1/flush", {})[0] == 200


def test_the_writer_serves_read_sessions_from_its_own_process(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from pyspark_theflash.cli import main

    with pytest.raises(SystemExit):
        main(["writer", "run", "--help"])
    assert "--serve PORT" in capsys.readouterr().out
    rig = FlashRig(tmp_path)
    try:
        rig.cluster.create_table("w.t", [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")],
                                 primary_key=["id"])
        rig.cluster.bulk_insert("w.t", pa.table({"id": pa.array(range(100), pa.int64()),
                                                 "v": pa.array(range(100), pa.int32())}))
        rig.start_writer(interval_s=0.05, serve_port=0)
        rig.wait_replicated("w.t")
        where = wait_for(lambda: rig.writer.status().get("serve"), 20, "the writer to publish its service")
        reader = FlightReader(where["flight"])
        table, session = reader.read({"table": "w.t", "filter": [["v", "<", 10]]})
        assert sorted(table.column("id").to_pylist()) == list(range(10))
        assert reader.action("flush")["flushed_by"] == "writer"  # the writer's own loop answers
        reader.close()
        assert HttpReader(where["http"]).read({"table": "w.t"})[0].num_rows == 100
        rig.stop_writer()
        with pytest.raises(flight.FlightUnavailableError):
            FlightReader(where["flight"]).info({"table": "w.t"})  # stopped with the writer
    finally:
        rig.close()


def test_the_readmes_flight_example_reads_one_snapshot_into_pandas_and_duckdb(service: RunningService) -> None:
    import re

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Reading from other engines"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    assert "grpc://127.0.0.1:8815" in code
    scope: dict = {}
    exec(code.replace("grpc://127.0.0.1:8815", service.flight_location), scope)
    assert sorted(scope["accounts"].column("id").to_pylist()) == [i for i in range(20) if i % 4]
    assert scope["total"] == sum(i % 4 for i in range(20))
    assert len(scope["frame"]) == 15
    assert metric(service, "theflash_service_sessions_active") == 0  # the example released its session


def test_an_any_store_service_keeps_at_most_max_open_stores_closing_the_least_recent_unused(
        rig: FlashRig, tmp_path: Path) -> None:
    from pyspark_theflash.service.errors import ServiceError
    from pyspark_theflash.service.stores import AnyStore
    from pyspark_theflash.store import Store

    other = tmp_path / "other"
    Store.open(str(other)).close()  # an empty store
    stores = AnyStore(max_open=1)
    try:
        first = stores.get(rig.store)
        assert stores.get(str(Path(rig.store) / ".." / Path(rig.store).name)) is first  # one engine per directory
        stores.in_use = lambda engine: engine is first  # a session reads the first store: it stays
        second = stores.get(str(other))  # handed out open, though over max_open while the first is read
        assert stores.engines() == [first, second]
        stores.in_use = lambda engine: False  # the first store's session ended
        assert stores.get(str(other)) is second and stores.engines() == [second]  # the first is closed now
        again = stores.get(rig.store)  # opened again; the other store, least recently read, is closed
        assert again is not first and stores.engines() == [again]
        with pytest.raises(ServiceError, match="no store at") as missing:
            stores.get(str(tmp_path / "none"))
        assert (missing.value.code, missing.value.status) == ("unknown_store", 404)
    finally:
        stores.close()


def test_a_query_over_tables_read_apart_takes_the_newest_ts_unless_one_changed_in_between_and_names_its_first_commit(
        rig: FlashRig, http_reader: HttpReader) -> None:
    """POST /v1/snapshots with ``read``: the tables a query's DataFrames were already read at.
    A dimension table nobody wrote since its read is read at the newest ts; a fact table written
    in between is named with its first commit after its read (rows, then a schema change)."""
    dim, fact = "mix.dim", "mix.fact"
    for name in (dim, fact):
        rig.cluster.create_table(name, [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")],
                                 primary_key=["id"])
        rig.cluster.bulk_insert(name, pa.table({"id": pa.array(range(50), pa.int64()),
                                                "v": pa.array(range(50), pa.int32())}))
        rig.wait_replicated(name)
    read_dim = rig.cluster.get_ts()
    with rig.cluster.txn() as update:
        update.update(fact, {"id": 7, "v": -7})
    with rig.cluster.txn() as delete:
        delete.delete(fact, 8)
    read_fact = rig.cluster.get_ts()

    def ask(read: list[tuple[str, int]]) -> dict:
        status, answer = http_reader.json("POST", "/v1/snapshots", {
            "tables": [dim, fact], "read": [{"table": t, "ts": ts} for t, ts in read]})
        assert status == 200, answer
        return answer

    # the dimension read at the older ts, unchanged since: the query reads both at the newest
    answer = ask([(dim, read_dim), (fact, read_fact)])
    assert (answer["ts"], answer["snapshot"], answer["changed"]) == (read_fact, "read", []), answer
    table, _ = http_reader.read({"table": dim, "snapshot_ts": answer["ts"]})
    assert sorted(table.column("v").to_pylist()) == list(range(50))
    # the fact table read at the older ts, written since: named, with the first commit after its read
    answer = ask([(fact, read_dim), (dim, read_fact)])
    [changed] = answer["changed"]
    assert (changed["table"], changed["read_ts"], changed["kind"]) == (fact, read_dim, "rows"), answer
    assert read_dim < update.commit_ts == changed["commit_ts"] < delete.commit_ts < read_fact, (changed, update.commit_ts)
    assert changed["change"] == f"a commit at ts {update.commit_ts}"
    # read after the update: the delete is the first change
    [changed] = ask([(fact, update.commit_ts), (dim, read_fact)])["changed"]
    assert changed["commit_ts"] == delete.commit_ts, changed
    # ... the same table read twice, apart: its later read is past the commits
    assert ask([(fact, read_fact), (fact, read_fact + 1)])["changed"] == []
    # a schema change counts as a change: ADD COLUMN on the dimension
    rig.cluster.add_column(dim, make_column("w", "INT"))
    after_ddl = rig.cluster.get_ts()
    [changed] = ask([(dim, read_fact), (fact, after_ddl)])["changed"]
    assert changed["table"] == dim and changed["kind"] == "schema" and read_fact < changed["commit_ts"] <= after_ddl
    status, answer = http_reader.json("POST", "/v1/snapshots", {"tables": [dim], "read": [{"table": dim}]})
    assert status == 400 and "field read must be a list" in answer["error"]["message"], answer


def test_a_query_snapshot_is_one_ts_for_several_tables_and_a_bad_request_says_what_to_send(
        rig: FlashRig, http_reader: HttpReader) -> None:
    before = int(rig.cluster.get_ts())
    status, fresh = http_reader.json("POST", "/v1/snapshots", {"tables": [TABLE, TABLE]})
    assert status == 200 and fresh["snapshot"] == "fresh" and fresh["ts"] > before, fresh
    # the store answers for the table once the writer applied its regions (missing_regions before)
    status, resolved = wait_for(lambda: (lambda got: got if got[0] != 503 else None)(
        http_reader.json("POST", "/v1/snapshots", {"tables": [TABLE], "snapshot": "resolved"})), 30,
        "the store to hold the table's regions")
    assert status == 200 and resolved["snapshot"] == "resolved" and 0 < resolved["ts"] <= int(rig.cluster.get_ts())
    table, session = http_reader.read({"table": TABLE, "snapshot_ts": resolved["ts"]})
    assert session["ts"] == resolved["ts"] and table.num_rows == direct(rig, resolved["ts"]).num_rows
    for body, code, text in [
        ({"tables": []}, "invalid_option", "field tables must be a non-empty list"),
        ({"tables": [TABLE], "snapshot_ts": 5}, "invalid_option", "unknown field(s) ['snapshot_ts']"),
        ({"tables": [TABLE], "snapshot": "stale"}, "invalid_option", "use fresh (default) or resolved"),
        ({"tables": ["svc.nope"], "snapshot": "resolved"}, "unknown_table", "has no table svc.nope"),
    ]:
        status, answer = http_reader.json("POST", "/v1/snapshots", body)
        assert answer["error"]["code"] == code and text in answer["error"]["message"], answer


def test_the_connector_jars_read_options_are_checked_by_the_service_in_the_python_sources_words(
        http_reader: HttpReader) -> None:
    """POST /v1/read-options: the connector jar's one parser (scan/options.py). Accepted options
    come back in the jar's form; a refused one is 400 invalid_option with the Python source's
    message; a body of another shape says what to send."""
    from pyspark_theflash.scan.errors import ScanOptionError
    from pyspark_theflash.scan.options import ScanOptions

    status, answer = http_reader.json("POST", "/v1/read-options", {"options": {
        "server": "http://127.0.0.1:1", "table": TABLE, "timestampasof": "2026-11-21T06:00:00+08:00",
        "region_wait_timeout": "2s"}})
    assert status == 200, answer
    form = answer["options"]
    assert (form["table"], form["as_of"], form["snapshot_ts"], form["request"]) == (
        TABLE, "2026-11-21T06:00:00+08:00", None, {"region_wait_timeout": "2s"}), form
    with pytest.raises(ScanOptionError) as source:
        ScanOptions.from_mapping({"store": "/s", "table": TABLE, "startingVersion": "1", "readChangeFeed": "true"})
    for body, code, text in [
        ({"options": {"table": TABLE, "readchangefeed": "true", "startingversion": "1"}}, "invalid_option",
         str(source.value)),
        ({"options": {"table": TABLE, "max_staleness": "soon"}}, "invalid_option",
         "option max_staleness='soon' is not a duration"),
        ({"options": {"table": TABLE}, "catalog": ["pd"]}, "invalid_option", "unknown field(s) ['catalog']"),
        ({"options": {"table": 5}}, "invalid_option", "field options must map option names to strings"),
        ({"table": TABLE}, "malformed_json", 'like {"options": {"table": "db.t"}}'),
    ]:
        status, answer = http_reader.json("POST", "/v1/read-options", body)
        assert status == 400 and answer["error"]["code"] == code, answer
        assert text in answer["error"]["message"], (text, answer)
