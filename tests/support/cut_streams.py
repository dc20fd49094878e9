"""Streams cut short on purpose, for the tests that check no reader of a TheFlash stream takes a
cut stream for a short table (tests/integration/test_service_truncated_streams.py for the Python clients,
tests/spark/test_jvm_truncated_streams.py for the JVM connector):

* :func:`serving_a_failing_engine`: the real service (Flight and HTTP) over a real store, its
  engine wrapped in :class:`StreamFailsMidWay`, which makes one stream raise after its first
  batch as a part file vanishing or a merge failing in the middle of a read would;
* :class:`LoopbackService`: an HTTP server answering as ``theflash serve`` does for one table of
  two streams, whose stream 1 ends the way it is told (:data:`CUTS`, :data:`WHOLE`): the shapes
  of a cut the real server never makes (a body closed at a batch boundary, inside a batch,
  inside the end marker) but a proxy or a dying server may."""
from __future__ import annotations

import base64
import contextlib
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig
from pyspark_theflash.engine import open_engine
from pyspark_theflash.ports import http_server
from pyspark_theflash.scan.engine_sessions import PlannedSessions
from pyspark_theflash.scan.options import connector_read_form
from pyspark_theflash.service import RunningService, serve
from pyspark_theflash.service.request import read_options_request
from pyspark_theflash.scan.stream_body import ARROW_EOS
from pyspark_theflash.upstream.tidb import make_column, record_key

# -- the real service, its engine failing one stream mid-way -----------------------------------
TABLE = "cut.items"
ROWS = 600


class StreamFailsMidWay:
    """The store's engine, except that stream ``stream`` raises after its first batch, as a
    part file vanishing or a merge failing in the middle of a read would. ``rows_sent`` and
    ``session`` say what the failed read had yielded, and of which session."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.stream: int | None = None
        self.rows_sent = -1
        self.session: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def read_stream(self, session: Any, n: int, stats: Any = None) -> Iterator[pa.RecordBatch]:
        sent = 0
        for i, batch in enumerate(self._engine.read_stream(session, n, stats=stats)):
            if n == self.stream and i == 1:
                self.rows_sent, self.session = sent, session.id
                raise OSError(f"stream {n}: a part file vanished mid-read (test fault)")
            sent += batch.num_rows
            yield batch


@contextlib.contextmanager
def serving_a_failing_engine(root: Path) -> Iterator[tuple[FlashRig, StreamFailsMidWay, RunningService]]:
    """A store holding :data:`TABLE` (:data:`ROWS` rows in two regions), its writer running,
    and the service over its engine wrapped in :class:`StreamFailsMidWay` (failing no stream
    until told)."""
    rig = FlashRig(root)
    try:
        table = rig.cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True),
                                                 make_column("name", "VARCHAR(16)")], primary_key=["id"])
        rig.cluster.split_at(record_key(table, ROWS // 2))
        rig.cluster.bulk_insert(TABLE, pa.table({"id": pa.array(range(ROWS), pa.int64()),
                                                 "name": [f"n{i}" for i in range(ROWS)]}))
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TABLE)
        engine = StreamFailsMidWay(open_engine(rig.store, readonly=True, sessions=PlannedSessions()))
        try:
            with serve(engine=engine, port=0) as running:
                yield rig, engine, running
        finally:
            engine.close()
    finally:
        rig.close()


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
# stream 1 answered with the service's error (a JSON body with a Content-Length), not a stream
REFUSED = "refused_with_410"
# how a whole stream 1 is framed: chunked (one chunk per message, or 7-byte chunks that split
# Arrow's messages anywhere), closed after the end marker, or with a Content-Length
WHOLE = {"whole_chunked": "chunked", "whole_in_7_byte_chunks": "small_chunks",
         "whole_closed_after_the_end_marker": "closed", "whole_with_a_content_length": "length"}


class LoopbackService:
    """One table of two streams of three batches, answered as `theflash serve` answers
    (GET /v1/tables, POST /v1/read-options with the service's own parser, POST /v1/read-sessions,
    GET .../streams/{n}, DELETE); stream 1 ends as
    ``cut`` says ("whole_..." or one of CUTS). ``sessions``: the ids handed out, in order."""

    def __init__(self) -> None:
        self.cut = "whole_chunked"
        self.sessions: list[str] = []
        ids = itertools.count(0xc0ffee00)
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """No access log per request: the tests' assertions say what was served."""

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/v1/tables":
                    self.json(200, {"tables": [{
                        "table": LOOP_TABLE, "hidden": [],
                        "fields": [{"name": "id", "tidb_type": "BIGINT"}, {"name": "name", "tidb_type": "VARCHAR(16)"}],
                        "arrow_schema": base64.b64encode(SCHEMA.serialize().to_pybytes()).decode()}]})
                    return
                n = int(self.path.rsplit("/", 1)[1])
                if n == 1 and service.cut == REFUSED:
                    self.json(410, {"error": {"code": "session_gone", "status": 410,
                                              "message": "read session has ended (its lease expired)"}})
                    return
                messages = [b.serialize().to_pybytes() for b in stream_batches(n)]
                cut = "whole_chunked" if n == 0 else service.cut
                framing = WHOLE[cut] if cut in WHOLE else "chunked" if CUTS[cut][0] else "closed"
                chunked = framing in ("chunked", "small_chunks")
                body = b"".join(messages) + ARROW_EOS if cut in WHOLE else CUTS[cut][1](messages)
                parts = [SCHEMA.serialize().to_pybytes(), body]
                if framing == "small_chunks":
                    whole = b"".join(parts)
                    parts = [whole[i:i + 7] for i in range(0, len(whole), 7)]
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.apache.arrow.stream")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                elif framing == "length":
                    self.send_header("Content-Length", str(sum(len(p) for p in parts)))
                else:
                    self.send_header("Connection", "close")  # the body ends where the connection does
                self.end_headers()
                for part in parts:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                if chunked and cut in WHOLE:
                    self.wfile.write(b"0\r\n\r\n")
                elif framing != "length":
                    self.close_connection = True

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/read-options":
                    self.json(200, {"options": connector_read_form(*read_options_request(json.loads(body)))})
                    return
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

        # the project's quiet server: a stream cut on purpose resets connections, which a plain
        # ThreadingHTTPServer printed as tracebacks in the middle of the run's output
        self._server = http_server("the loopback service", "127.0.0.1", 0, Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-service", daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def loopback() -> Iterator[LoopbackService]:
    """A loopback server per test module, cutting stream 1 as each test sets ``cut``."""
    service = LoopbackService()
    yield service
    service.close()
