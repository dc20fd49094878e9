"""The HTTP front end: the same read sessions for clients without Flight (the JVM connector
reads them with the JDK's HTTP client and the Arrow jars Spark ships).

    GET    /v1/tables                              replicated tables and their Arrow fields
    POST   /v1/read-sessions                       body: a read request (service/request.py) → 201, the session
    GET    /v1/read-sessions/{id}                  the session
    POST   /v1/read-sessions/{id}/renew            renew its lease → {"session", "lease_expires_at"}
    DELETE /v1/read-sessions/{id}                  end it, release its lease → 204
    GET    /v1/read-sessions/{id}/streams/{n}      the stream: application/vnd.apache.arrow.stream, chunked
    POST   /v1/snapshots                           body {"tables": [...], "snapshot", "max_staleness"}: a query's one ts
    POST   /v1/flush                               body {} or {"timeout_s": 30}: the writer flushes
    GET    /v1/status                              engine status and sessions
    GET    /metrics                                Prometheus text

Errors answer ``{"error": {"code", "status", "message"}}`` with the status. A stream's status
line is sent once its first batch is read, so a failing read still gets its 4xx/5xx; an error
after that ends the chunked body without the Arrow end-of-stream marker and without its last
chunk (the client sees a truncated stream, never a clean end).
"""
from __future__ import annotations

import json
import logging
import re
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pyarrow as pa

from pyspark_theflash.service.core import ReadService
from pyspark_theflash.service.errors import BadRequestError, ServiceError
from pyspark_theflash.service.request import (
    MAX_REQUEST_BYTES,
    ReadRequest,
    snapshot_request,
    store_argument,
    timeout_argument,
)
from pyspark_theflash.service.stream_body import ARROW_EOS

log = logging.getLogger("theflash.service.http")
FRONTEND = "http"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
STREAM_URL = "/v1/read-sessions/{id}/streams/{n}"
# A chunk up to this size is framed in one bytes and one write; a bigger one is written as it
# is, between its size line and CRLF (three writes, no copy).
_FRAME_COPY_BYTES = 64 << 10
_SESSION = re.compile(r"^/v1/read-sessions/([0-9a-f]{1,64})$")
_RENEW = re.compile(r"^/v1/read-sessions/([0-9a-f]{1,64})/renew$")
_STREAM = re.compile(r"^/v1/read-sessions/([0-9a-f]{1,64})/streams/([0-9]{1,9})$")


class _ClientGone(Exception):
    """The client closed the connection mid-stream."""


class HttpService:
    """Serves ``service`` on ``http://host:port`` (port 0: any free one; ``.port`` says which)."""

    def __init__(self, service: ReadService, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"service": service})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="theflash-service-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    service: ReadService
    protocol_version = "HTTP/1.1"  # keep-alive; the streams are chunked
    # An answer goes out as two sends (head, then body). On a kept-alive connection Nagle's
    # algorithm holds the body until the client ACKs the head, which a delayed ACK puts off by
    # 40 ms: every JSON call from the JDK's pooled client took 45-50 ms instead of 2.
    disable_nagle_algorithm = True
    server_version = "theflash"

    # -- routing -------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            body = self._body() if method in ("POST", "PUT", "PATCH") else b""
            self.service.auth.check(self.headers.get("Authorization"))
            if method == "GET" and path == "/metrics":
                return self._send(200, self.service.metrics.prometheus_text().encode(), "text/plain; version=0.0.4")
            if method == "GET" and path == "/v1/tables":
                return self._json(200, {"tables": self.service.tables(self._query_store())})
            if method == "GET" and path == "/v1/status":
                return self._json(200, self.service.status(self._query_store()))
            if method == "POST" and path == "/v1/flush":
                args = _object(body) if body.strip() else {}
                return self._json(200, self.service.flush(timeout_argument(args), store_argument(args)))
            if method == "POST" and path == "/v1/snapshots":
                return self._json(200, self.service.query_snapshot(*snapshot_request(_object(body))))
            if method == "POST" and path == "/v1/read-sessions":
                session = self.service.sessions.open(ReadRequest.from_json(body), FRONTEND)
                return self._json(201, ReadService.describe(session, STREAM_URL))
            m = _SESSION.match(path)
            if m and method == "GET":
                return self._json(200, ReadService.describe(self.service.sessions.get(m.group(1)).session, STREAM_URL))
            if m and method == "DELETE":
                self.service.sessions.release(m.group(1))
                return self._send(204, b"", None)
            m = _RENEW.match(path)
            if m and method == "POST":
                expires_at = self.service.sessions.renew(m.group(1))
                return self._json(200, {"session": m.group(1), "lease_expires_at": expires_at})
            m = _STREAM.match(path)
            if m and method == "GET":
                return self._stream(m.group(1), int(m.group(2)))
            known = any(r.match(path) for r in (_SESSION, _RENEW, _STREAM)) or path in (
                "/metrics", "/v1/tables", "/v1/status", "/v1/flush", "/v1/read-sessions", "/v1/snapshots")
            if known:
                raise ServiceError(f"{method} is not allowed on {path}", code="method_not_allowed", status=405)
            raise ServiceError(f"no such resource {path}; see docs/service.md (POST /v1/read-sessions, ...)",
                               code="not_found", status=404)
        except _ClientGone:
            self.close_connection = True
        except Exception as exc:
            err = self.service.failed(exc, FRONTEND)
            if err.status >= 500:
                log.warning("%s %s: %s", method, path, err.message)
            self._json(err.status, err.to_dict())

    def _query_store(self) -> str | None:
        """The ``store`` query parameter (``GET /v1/tables?store=/data/flash``), or None."""
        query = urllib.parse.parse_qs(self.path.split("?", 1)[1]) if "?" in self.path else {}
        return store_argument({"store": query["store"][-1]} if "store" in query else {})

    # -- streams -------------------------------------------------------------------------------
    def _stream(self, session_id: str, n: int) -> None:
        held = self.service.sessions.get(session_id)
        batches = self.service.sessions.stream(session_id, n, FRONTEND)
        try:
            first = next(batches, None)  # errors before any byte is sent get a status of their own
            self.send_response(200)
            self.send_header("Content-Type", ARROW_STREAM)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                self._chunk(held.session.schema.serialize())
                for batch in _chain(first, batches):
                    self._chunk(batch.serialize())
            except _ClientGone:
                raise
            except Exception as exc:
                # The status is sent, so no error response can follow: the body ends without the
                # Arrow end-of-stream marker and without its last chunk, and the connection
                # closes. A client sees a truncated stream, never a clean end.
                self.service.failed(exc, FRONTEND)
                log.warning("stream %d of session %s failed mid-way: %s", n, session_id, exc)
                self.close_connection = True
                return
            self._chunk(ARROW_EOS)  # sent only when every batch was
            self._write(b"0\r\n\r\n")
        finally:
            batches.close()  # type: ignore[attr-defined]

    def _chunk(self, data: bytes | pa.Buffer) -> None:
        """One chunk of the chunked body. A batch's serialized buffer goes to the socket as it
        is, between its size line and CRLF: copying it into bytes, then into a framed bytes,
        cost the stream more than reading the parts (the same session read over Flight, whose
        C++ writes the buffers, ran 2-3x faster)."""
        size = len(data) if isinstance(data, bytes) else data.size
        if not size:
            return
        if size <= _FRAME_COPY_BYTES:
            self._write(b"%x\r\n" % size + memoryview(data) + b"\r\n")
        else:
            self._write(b"%x\r\n" % size)
            self._write(data)
            self._write(b"\r\n")

    def _write(self, data: bytes | pa.Buffer) -> None:
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError) as exc:
            raise _ClientGone(str(exc)) from None

    # -- plumbing ------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raise ServiceError("send the request body with a Content-Length, not chunked", code="length_required",
                                   status=411)
            return b""
        try:
            size = int(length)
        except ValueError:
            raise BadRequestError(f"Content-Length {length!r} is not a number") from None
        if size > MAX_REQUEST_BYTES:
            self.close_connection = True
            raise ServiceError(f"request body of {size} bytes is larger than {MAX_REQUEST_BYTES}",
                               code="too_large", status=413)
        return self.rfile.read(size)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str | None) -> None:
        try:
            self.send_response(status)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the body is not JSON ({exc})", code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"the body must be a JSON object, not {type(data).__name__}", code="malformed_json")
    return data


def _chain(first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    if first is None:
        return
    yield first
    yield from rest
