"""A stream cut short never reads as a short table: the JVM connector (a real local Spark with
the jar) fails the task with an error naming the session, the stream and the rows read so far
when a stream's body ends before Arrow's end-of-stream marker — whether the service's engine
fails mid-stream (the real service ends the chunked body without its last chunk) or a server
closes a body at a batch boundary, inside a batch or inside the marker — and still reads
whole streams completely, chunked or not."""
from __future__ import annotations

import base64
import http.client
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig
from jvm_spark import JvmSpark, RemoteError
from pyspark_theflash.engine import open_engine
from pyspark_theflash.service import serve
from pyspark_theflash.upstream.tidb import make_column, record_key
from service_client import ARROW_EOS, HttpReader

pytestmark = pytest.mark.spark


def rows_before_the_cut(message: str, server: str, session: str, n: int) -> int:
    """The rows that the StreamTruncatedException in ``message`` says stream ``n`` of ``session``
    had read when it broke off."""
    url = f"{server}/v1/read-sessions/{session}/streams/{n}"
    found = re.search(re.escape(f"io.theflash.spark.StreamTruncatedException: theflash stream {n} of read session "
                                f"{session} ({url}) broke off after ") + r"(\d+)" + re.escape(
                                    " rows, before the Arrow end-of-stream marker ("), message)
    assert found, message
    assert ("the service stopped, failed mid-stream (see its log) or the connection was cut; the read fails "
            "rather than return part of the table") in message
    return int(found.group(1))


# -- functions run in the Spark worker with the jar (tests/jvm_spark.py) ---------------------
def jvm_read(spark: Any, options: dict[str, str], table: str) -> pa.Table:
    return spark.read.format("theflash").options(**options).load(table).toArrow()


# -- the real service, its engine failing one stream mid-way -----------------------------------
TABLE = "cut.items"
ROWS = 600


class StreamFailsMidWay:
    """The store's engine, except that stream ``stream`` raises after its first batch, as a
    part file vanishing or a merge failing in the middle of a read would."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.stream: int | None = None
        self.rows_sent = -1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def read_stream(self, session: Any, n: int) -> Iterator[pa.RecordBatch]:
        sent = 0
        for i, batch in enumerate(self._engine.read_stream(session, n)):
            if n == self.stream and i == 1:
                self.rows_sent = sent
                raise OSError(f"stream {n}: a part file vanished mid-read (test fault)")
            sent += batch.num_rows
            yield batch


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StreamFailsMidWay, str]]:
    rig = FlashRig(tmp_path_factory.mktemp("jvm-cut"))
    try:
        table = rig.cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True),
                                                 make_column("name", "VARCHAR(16)")], primary_key=["id"])
        rig.cluster.split_at(record_key(table, ROWS // 2))
        rig.cluster.bulk_insert(TABLE, pa.table({"id": pa.array(range(ROWS), pa.int64()),
                                                 "name": [f"n{i}" for i in range(ROWS)]}))
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TABLE)
        engine = StreamFailsMidWay(open_engine(rig.store, readonly=True))
        try:
            with serve(engine=engine, port=0) as running:
                yield engine, running.http_url
        finally:
            engine.close()
    finally:
        rig.close()


def test_a_stream_whose_engine_fails_mid_way_fails_the_read_naming_session_stream_and_rows(
        jvm_spark: JvmSpark, failing: tuple[StreamFailsMidWay, str]) -> None:
    engine, url = failing
    options = {"server": url, "min_partitions": "2", "batch_rows": "50"}
    whole = jvm_spark.call(jvm_read, options, TABLE)
    assert sorted(whole.column("id").to_pylist()) == list(range(ROWS))

    engine.stream = 1
    try:
        # the Python client sees the cut too: a chunked body without its last chunk
        with pytest.raises(http.client.IncompleteRead):
            HttpReader(url).read({"table": TABLE, "min_streams": 2, "batch_rows": 50})
        with pytest.raises(RemoteError) as caught:
            jvm_spark.call(jvm_read, options, TABLE)
    finally:
        engine.stream = None
    message = caught.value.message
    found = re.search(r"theflash stream 1 of read session ([0-9a-f]+) \(", message)
    assert found, message
    # at most what was sent: the JDK's client drops what it holds unread once it sees the cut
    assert 0 <= rows_before_the_cut(message, url, found.group(1), 1) <= engine.rows_sent and engine.rows_sent > 0

    again = jvm_spark.call(jvm_read, options, TABLE)  # the service serves on, whole streams read whole
    assert again.num_rows == ROWS


# -- a loopback server that cuts stream 1 the way it is told ------------------------------------
LOOP_TABLE = "loop.items"
BATCHES, BATCH_ROWS = 3, 100
SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])


def stream_batches(n: int) -> list[pa.RecordBatch]:
    first = n * BATCHES * BATCH_ROWS
    return [pa.record_batch([pa.array(range(first + b * BATCH_ROWS, first + (b + 1) * BATCH_ROWS), pa.int64()),
                             pa.array([f"row {i}" for i in range(first + b * BATCH_ROWS, first + (b + 1) * BATCH_ROWS)])],
                            schema=SCHEMA) for b in range(BATCHES)]


# how stream 1 ends: (chunked?, what is sent after the schema, the rows of its whole batches)
CUTS: dict[str, tuple[bool, Any, int]] = {
    "chunked_body_without_its_last_chunk": (True, lambda b: b[0] + b[1], 200),
    "body_closed_at_a_batch_boundary": (False, lambda b: b[0] + b[1], 200),
    "body_closed_inside_a_batch": (False, lambda b: b[0] + b[1] + b[2][: len(b[2]) // 2], 200),
    "body_closed_inside_the_end_marker": (False, lambda b: b[0] + b[1] + b[2] + ARROW_EOS[:4], 300),
}
WHOLE = {"whole_chunked": True, "whole_closed_after_the_end_marker": False}


class LoopbackService:
    """One table of two streams of three batches, answered as `theflash serve` answers
    (GET /v1/tables, POST /v1/read-sessions, GET .../streams/{n}); stream 1 ends as ``cut`` says
    ("whole_..." or one of CUTS)."""

    def __init__(self) -> None:
        self.cut = "whole_chunked"
        self.sessions: list[str] = []
        ids = itertools.count(0xc0ffee00)
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/v1/tables":
                    self.json(200, {"tables": [{
                        "table": LOOP_TABLE, "hidden": [],
                        "fields": [{"name": "id", "tidb_type": "BIGINT"}, {"name": "name", "tidb_type": "VARCHAR(16)"}],
                        "arrow_schema": base64.b64encode(SCHEMA.serialize().to_pybytes()).decode()}]})
                    return
                n = int(self.path.rsplit("/", 1)[1])
                messages = [b.serialize().to_pybytes() for b in stream_batches(n)]
                cut = "whole_chunked" if n == 0 else service.cut
                chunked = WHOLE[cut] if cut in WHOLE else CUTS[cut][0]
                body = b"".join(messages) + ARROW_EOS if cut in WHOLE else CUTS[cut][1](messages)
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.apache.arrow.stream")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Connection", "close")  # the body ends where the connection does
                self.end_headers()
                for part in [SCHEMA.serialize().to_pybytes(), body]:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                if chunked and cut in WHOLE:
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.close_connection = True

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                session = f"{next(ids):x}"
                service.sessions.append(session)
                self.json(201, {"id": session, "ts": 1 << 40, "rows": 2 * BATCHES * BATCH_ROWS, "bytes": 1 << 16,
                                "arrow_schema": base64.b64encode(SCHEMA.serialize().to_pybytes()).decode(),
                                "streams": [{"index": n, "url": f"/v1/read-sessions/{session}/streams/{n}"}
                                            for n in range(2)]})

            def do_DELETE(self) -> None:  # noqa: N802
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def json(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-service", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def loopback() -> Iterator[LoopbackService]:
    service = LoopbackService()
    yield service
    service.close()


@pytest.mark.parametrize("cut", list(CUTS))
def test_a_stream_cut_before_the_end_marker_fails_the_read_naming_session_stream_and_rows(
        jvm_spark: JvmSpark, loopback: LoopbackService, cut: str) -> None:
    loopback.cut = cut
    with pytest.raises(RemoteError) as caught:
        jvm_spark.call(jvm_read, {"server": loopback.url}, LOOP_TABLE)
    rows = rows_before_the_cut(caught.value.message, loopback.url, loopback.sessions[-1], 1)
    chunked, _, whole_batches = CUTS[cut]
    if chunked:  # the JDK's client may drop what it holds unread once it sees the cut
        assert rows <= whole_batches and rows % BATCH_ROWS == 0, rows
    else:
        assert rows == whole_batches


@pytest.mark.parametrize("whole", list(WHOLE))
def test_a_stream_ending_with_the_end_marker_reads_every_row(
        jvm_spark: JvmSpark, loopback: LoopbackService, whole: str) -> None:
    loopback.cut = whole
    got = jvm_spark.call(jvm_read, {"server": loopback.url}, LOOP_TABLE)
    expected = pa.Table.from_batches(stream_batches(0) + stream_batches(1))
    assert got.sort_by("id").to_pylist() == expected.to_pylist()
