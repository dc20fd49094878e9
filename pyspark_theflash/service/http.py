"""The HTTP front end: the same read sessions for clients without Flight (the JVM connector
reads them with the JDK's HTTP client and the Arrow jars Spark ships).

    GET    /v1/tables                              replicated tables and their Arrow fields
    POST   /v1/read-sessions                       body: a read request (service/request.py) → 201, the session
    GET    /v1/read-sessions/{id}                  the session
    POST   /v1/read-sessions/{id}/renew            renew its lease → {"session", "lease_expires_at"}
    DELETE /v1/read-sessions/{id}                  end it, release its lease → 204
    GET    /v1/read-sessions/{id}/streams/{n}      the stream: application/vnd.apache.arrow.stream, chunked;
                                                   with TE: trailers, STREAM_TRAILERS after its last chunk
    POST   /v1/snapshots                           body {"tables": [...], "snapshot", "max_staleness", "read"}: a query's one ts
    POST   /v1/read-options                        body {"options": {...}, "catalog_options": [...]}: the connector
                                                   jar's read options checked, in its form (400 invalid_option)
    POST   /v1/sql                                 body {"sql", "snapshot_ts"?, "store"?, "snapshot"?,
                                                   "max_staleness"?, "option_flags"?}: a whole query in the
                                                   ClickHouse engine, its result as one Arrow IPC stream
    POST   /v1/change-streams/offset               body {"table", "options", "start", "max_rows"}: a change stream's next offset
    POST   /v1/change-streams/commit               body {"table", "options", "end"}: hold its lease at a committed offset
    POST   /v1/flush                               body {} or {"timeout_s": 30}: the writer flushes
    GET    /v1/status                              engine status and sessions
    GET    /v1/delta/versions?ts=T[&to=URI]        which Delta version of each published table holds ts T (docs/delta.md)
    GET    /healthz                                200 ok, or 503 and why (a store's manifest does not open)
    GET    /metrics                                Prometheus text

Errors answer ``{"error": {"code", "status", "message"}}`` with the status. A stream's status
line is sent once its first batch is read, so a failing read still gets its 4xx/5xx; an error
after that ends the chunked body without the Arrow end-of-stream marker and without its last
chunk (the client sees a truncated stream, never a clean end).

Hostile or broken local clients (``HttpLimits``): connections are served by a bounded pool of
worker threads (past it and its queue a connection is answered ``503 busy`` and closed); a
request's line and headers must arrive within ``header_timeout_s`` of the connection (or of its
first byte on a kept-alive one, which may sit idle ``idle_timeout_s`` between requests), its body
within ``body_timeout_s``, and a client that stops reading a stream for ``write_timeout_s`` is cut
off: one reaper thread shuts the sockets whose deadline passed. The bearer token is checked before
a byte of the body is read; a body needs a ``Content-Length`` (``411`` without, ``400`` when it is
not a non-negative number) of at most ``MAX_REQUEST_BYTES`` (``413`` past it); a refused request's
connection is closed unread.

Why ``http.server`` and not a maintained ASGI server (uvicorn, hypercorn): a stream is a blocking
generator of pyarrow batches whose buffers go to the socket without a copy, and the JDK client
reads it with keep-alive; behind ASGI every batch would cross from a worker thread to the event loop
as bytes (a copy and a hop per batch) for the same bounded pool. The server's own part is small
(framing, the pool, the deadlines), and each limit above has a test (tests/integration/test_service_hostile.py).
"""
from __future__ import annotations

import io
import json
import logging
import queue
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable, Iterator

import pyarrow as pa

from pyspark_theflash.ports import refused
from pyspark_theflash.service.core import ReadService
from pyspark_theflash.scan.errors import ScanError, as_flags
from pyspark_theflash.scan.options import connector_read_form
from pyspark_theflash.service.errors import BadRequestError, ServiceError, classify
from pyspark_theflash.service.request import (
    MAX_REQUEST_BYTES,
    ReadRequest,
    read_options_request,
    snapshot_request,
    store_argument,
    timeout_argument,
)
from pyspark_theflash.scan.stream_body import ARROW_EOS
from pyspark_theflash.store.parts import ReadStats

log = logging.getLogger("theflash.service.http")
FRONTEND = "http"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
# What a stream's read did besides its rows (store.parts.ReadStats), as trailer fields after its
# last chunk for a client that sent TE: trailers (the JVM connector's scan metrics)
STREAM_TRAILERS = {"deletion_vector_rows": "X-TheFlash-Deletion-Vector-Rows",
                   "fresh_tail_rows": "X-TheFlash-Fresh-Tail-Rows"}
STREAM_URL = "/v1/read-sessions/{id}/streams/{n}"
# A chunk up to this size is framed in one bytes and one write; a bigger one is written as it
# is, between its size line and CRLF (three writes, no copy).
_FRAME_COPY_BYTES = 64 << 10
_SESSION = re.compile(r"^/v1/read-sessions/([0-9a-f]{1,64})$")
_RENEW = re.compile(r"^/v1/read-sessions/([0-9a-f]{1,64})/renew$")
# serve_forever checks for shutdown() once per poll interval: the default 0.5 s made every
# close wait about that long; a few wakeups a second cost nothing
SHUTDOWN_POLL_S = 0.05
_STREAM = re.compile(r"^/v1/read-sessions/([0-9a-f]{1,64})/streams/([0-9]{1,9})$")
_METADATA = re.compile(r"^/v1/tables/([^/]{1,400})/(history|schemas|regions|parts)$")


class _ClientGone(Exception):
    """The client closed the connection mid-stream."""


@dataclass(frozen=True)
class HttpLimits:
    """What one client may hold of the HTTP front end (docs/service.md, "Limits")."""

    max_workers: int = 64           # connections served at once, one worker thread each
    max_queued: int = 64            # connections accepted and waiting for a worker; past both: 503 busy
    header_timeout_s: float = 10.0  # request line and headers, from the connection or the request's first byte
    idle_timeout_s: float = 120.0   # a kept-alive connection between requests
    body_timeout_s: float = 30.0    # the request body, once the headers are in
    write_timeout_s: float = 300.0  # a client that reads nothing of an answer or stream for this long


class _Deadlines:
    """Sockets with a deadline, and one thread that shuts each whose deadline passed: a blocked read
    of it then ends (EOF), and its worker closes the connection."""

    TICK_S = 0.1

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[socket.socket, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="theflash-http-deadlines", daemon=True)
        self._thread.start()

    def set(self, sock: socket.socket, seconds: float) -> None:
        with self._lock:
            self._due[sock] = time.monotonic() + seconds

    def clear(self, sock: socket.socket) -> None:
        with self._lock:
            self._due.pop(sock, None)

    def _run(self) -> None:
        while not self._stop.wait(self.TICK_S):
            now = time.monotonic()
            with self._lock:
                late = [sock for sock, due in self._due.items() if due <= now]
                for sock in late:
                    del self._due[sock]
            for sock in late:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


_BUSY = json.dumps({"error": {"code": "busy", "status": 503, "message":
                              "the service is serving as many connections as it takes; retry shortly"}}).encode()


class _Workers:
    """At most ``size`` daemon threads running submitted calls in order; started as calls wait
    (a daemon thread never holds up the process's exit, as an idle kept-alive connection's
    worker otherwise would)."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._queue: "queue.SimpleQueue[tuple[Callable[..., None], tuple[object, ...]] | None]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0     # threads waiting for a call
        self._pending = 0  # calls submitted and not yet taken

    def submit(self, fn: Callable[..., None], *args: object) -> None:
        with self._lock:
            self._pending += 1
            if self._pending > self._idle and self._threads < self._size:  # no thread waits for this call
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()
        self._queue.put((fn, args))

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
                if item is not None:
                    self._pending -= 1
            if item is None:
                return
            fn, args = item
            fn(*args)

    def stop(self) -> None:
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._queue.put(None)


class _PooledServer(HTTPServer):
    """An ``HTTPServer`` whose connections are served by a bounded pool of worker threads; a
    connection past the pool and its queue is answered 503 and closed at once."""

    request_queue_size = 128  # the listen backlog

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limits: HttpLimits) -> None:
        # before the bind: a port in use makes socketserver call server_close, which stops these
        self.limits = limits
        self.deadlines = _Deadlines()
        self._slots = threading.BoundedSemaphore(limits.max_workers + limits.max_queued)
        self._workers = _Workers(limits.max_workers, "theflash-http")
        self._open: set[socket.socket] = set()  # connections accepted and not yet closed
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        if not isinstance(request, socket.socket):  # (socketserver's type covers UDP servers too)
            raise TypeError(f"a TCP server's request is its connection's socket, not {request!r}")
        if not self._slots.acquire(blocking=False):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        # A new connection's request line and headers must come within the header timeout.
        self.deadlines.set(request, self.limits.header_timeout_s)
        with self._open_lock:
            self._open.add(request)
        self._workers.submit(self._serve, request, client_address)

    def _serve(self, request: socket.socket, client_address: object) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.deadlines.clear(request)
            with self._open_lock:
                self._open.discard(request)
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        self.deadlines.stop()
        with self._open_lock:
            still_open = list(self._open)
        for sock in still_open:  # a worker blocked on an idle connection ends now
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._workers.stop()


def _refuse_busy(sock: socket.socket) -> None:
    try:
        sock.settimeout(1.0)
        sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(_BUSY) + _BUSY)
    except OSError:
        pass


class HttpService:
    """Serves ``service`` on ``http://host:port`` (port 0: any free one; ``.port`` says which)."""

    def __init__(self, service: ReadService, host: str = "127.0.0.1", port: int = 0,
                 limits: HttpLimits | None = None) -> None:
        handler = type("Handler", (_Handler,), {"service": service})
        self.limits = limits or HttpLimits()
        try:
            self._server = _PooledServer((host, port), handler, self.limits)
        except OSError as exc:
            raise refused("the HTTP read service", host, port, exc) or exc
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="theflash-service-http", daemon=True,
                                        kwargs={"poll_interval": SHUTDOWN_POLL_S})
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
    server: _PooledServer
    rfile: io.BufferedReader  # StreamRequestHandler.setup: makefile("rb", rbufsize -1), buffered
    _served = 0  # requests answered on this connection

    # -- deadlines -----------------------------------------------------------------------------
    def handle_one_request(self) -> None:
        """One request of the connection. Before a kept-alive connection's next request: wait for its
        first byte at most ``idle_timeout_s``, then give its line and headers ``header_timeout_s``
        (a new connection's deadline was set when it was accepted)."""
        limits, deadlines = self.server.limits, self.server.deadlines
        if self._served:
            deadlines.set(self.connection, limits.idle_timeout_s)
            try:
                if not self.rfile.peek(1):
                    self.close_connection = True
                    return
            except OSError:
                self.close_connection = True
                return
            deadlines.set(self.connection, limits.header_timeout_s)
        self._served += 1
        super().handle_one_request()

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.server.deadlines.clear(self.connection)  # the headers are in (or refused)
        return ok

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
            try:
                # the token first: nobody without it makes the service read (or keep) a byte of a body
                self.service.auth.check(self.headers.get("Authorization"))
            except Exception:
                if self.headers.get("Content-Length", "0").strip() != "0" or self.headers.get("Transfer-Encoding"):
                    self.close_connection = True  # its body stays unread
                raise
            if method in ("POST", "PUT", "PATCH"):
                body = self._body()
            else:
                body = b""
                if self.headers.get("Content-Length", "0").strip() != "0" or self.headers.get("Transfer-Encoding"):
                    self.close_connection = True  # a body nobody reads: the connection ends after the answer
            if method == "GET" and path == "/metrics":
                return self._send(200, self.service.metrics.prometheus_text().encode(), "text/plain; version=0.0.4")
            if method == "GET" and path == "/healthz":
                return self._healthz()
            if method == "GET" and path == "/v1/tables":
                return self._json(200, {"tables": self.service.tables(self._query_store())})
            if method == "GET" and path == "/v1/status":
                return self._json(200, self.service.status(self._query_store()))
            if method == "GET" and path == "/v1/delta/versions":
                return self._json(200, self.service.delta_versions(self._query_ts(), self._query_store(),
                                                                   self._query_param("to")))
            if method == "POST" and path == "/v1/flush":
                args = _object(body) if body.strip() else {}
                return self._json(200, self.service.flush(timeout_argument(args), store_argument(args)))
            if method == "POST" and path == "/v1/snapshots":
                return self._json(200, self.service.query_snapshot(*snapshot_request(_object(body))))
            if method == "POST" and path == "/v1/read-options":
                return self._json(200, {"options": connector_read_form(*read_options_request(_object(body)))})
            if method == "POST" and path == "/v1/sql":
                return self._sql(_object(body))
            if method == "POST" and path in ("/v1/change-streams/offset", "/v1/change-streams/commit"):
                return self._json(200, self.service.change_stream(_object(body), path.endswith("/commit")))
            if method == "POST" and path == "/v1/read-sessions":
                session = self.service.sessions.open(ReadRequest.from_json(body), FRONTEND)
                return self._json(201, ReadService.describe(session, STREAM_URL))
            m = _METADATA.match(path)
            if m and method == "GET":
                table = urllib.parse.unquote(m.group(1))
                return self._json(200, self.service.table_metadata(table, m.group(2), self._query_store()))
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
            known = any(r.match(path) for r in (_SESSION, _RENEW, _STREAM, _METADATA)) or path in (
                "/metrics", "/healthz", "/v1/tables", "/v1/status", "/v1/delta/versions", "/v1/flush", "/v1/read-sessions", "/v1/snapshots", "/v1/read-options", "/v1/sql",
                "/v1/change-streams/offset", "/v1/change-streams/commit")
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

    def _sql(self, request: dict[str, Any]) -> None:
        """``POST /v1/sql``: the query's result as one Arrow IPC stream; its snapshot ts, the
        tables it read, the engine's time and what computed it (ClickHouse, DuckDB) in the X-TheFlash-*
        headers."""
        query, ts = request.get("sql"), request.get("snapshot_ts")
        if not isinstance(query, str) or not query.strip():
            raise BadRequestError('POST /v1/sql takes {"sql": "SELECT ...", "snapshot_ts": ts (optional), '
                                  '"store": dir (optional)}', code="invalid_option")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int) or ts <= 0):
            raise BadRequestError(f"snapshot_ts must be a positive integer TSO timestamp, got {ts!r}",
                                  code="invalid_option")
        choice = {k: request[k] for k in ("snapshot", "max_staleness") if isinstance(request.get(k), str)}
        flags = request.get("option_flags")
        if flags is not None and not (isinstance(flags, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in flags.items())):
            raise BadRequestError("option_flags: an object from read option to the caller's flag, e.g. "
                                  '{"snapshot": "--snapshot"}', code="invalid_option")
        try:
            out = self.service.sql(query, ts, store_argument(request), choice)
        except ScanError as exc:
            if not flags:
                raise
            # a command line sent the query: its remedy names the command's flags
            # (--snapshot resolved), not the read options (snapshot=resolved)
            err = classify(exc)
            raise ServiceError(exc.phrased(as_flags(flags)), code=err.code, status=err.status) from exc
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, out.result.schema) as writer:
            writer.write_table(out.result)
        self._send(200, sink.getvalue().to_pybytes(), ARROW_STREAM, {
            "X-TheFlash-Snapshot-Ts": str(out.ts), "X-TheFlash-Tables": ",".join(out.tables),
            "X-TheFlash-Seconds": f"{out.seconds:.6f}", "X-TheFlash-Computed-By": out.computed_by})

    def _query_ts(self) -> int | None:
        """The ``ts`` query parameter (``GET /v1/delta/versions?ts=...``), or None."""
        query = urllib.parse.parse_qs(self.path.split("?", 1)[1]) if "?" in self.path else {}
        if "ts" not in query:
            return None
        try:
            return int(query["ts"][-1])
        except ValueError:
            raise ServiceError(f"ts={query['ts'][-1]!r} is not a TSO (an integer)", code="invalid_option",
                               status=400) from None

    def _query_store(self) -> str | None:
        """The ``store`` query parameter (``GET /v1/tables?store=/data/flash``), or None."""
        store = self._query_param("store")
        return store_argument({"store": store} if store is not None else {})

    def _healthz(self) -> None:
        """200 ``ok`` while every store the service reads answers its status (its manifest
        opens), else 503 and the first one's reason in one line: a probe for a supervisor or a
        load balancer, as the writer's and capture's ``/healthz``."""
        try:
            self.service.status(None)
        except Exception as exc:  # noqa: BLE001 - any failure is the answer
            reason = " ".join(str(exc).split()) or type(exc).__name__
            return self._send(503, f"unhealthy: {reason}\n".encode(), "text/plain; charset=utf-8")
        return self._send(200, b"ok\n", "text/plain; charset=utf-8")

    def _query_param(self, name: str) -> str | None:
        """A query parameter's last value (``GET /v1/delta/versions?to=s3://b/p``), or None."""
        query = urllib.parse.parse_qs(self.path.split("?", 1)[1]) if "?" in self.path else {}
        return query[name][-1] if name in query else None

    # -- streams -------------------------------------------------------------------------------
    def _stream(self, session_id: str, n: int) -> None:
        held = self.service.sessions.get(session_id)
        # a client that takes trailers (TE: trailers, RFC 9110 10.1.4) gets what the read did
        # besides its rows after the last chunk (STREAM_TRAILERS), once every batch was sent
        stats = ReadStats() if "trailers" in self.headers.get("TE", "").lower() else None
        batches = self.service.sessions.stream(session_id, n, FRONTEND, stats)
        try:
            first = next(batches, None)  # errors before any byte is sent get a status of their own
            self.send_response(200)
            self.send_header("Content-Type", ARROW_STREAM)
            self.send_header("Transfer-Encoding", "chunked")
            if stats is not None:
                self.send_header("Trailer", ", ".join(STREAM_TRAILERS.values()))
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
            self._write(b"0\r\n" + (b"" if stats is None else _trailers(stats)) + b"\r\n")
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
        deadlines = self.server.deadlines
        deadlines.set(self.connection, self.server.limits.write_timeout_s)  # a client that stops reading
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError) as exc:
            raise _ClientGone(str(exc)) from None
        finally:
            deadlines.clear(self.connection)

    # -- plumbing ------------------------------------------------------------------------------
    def _body(self) -> bytes:
        """The request body: a ``Content-Length`` of at most ``MAX_REQUEST_BYTES`` is required, and
        the body must arrive within ``body_timeout_s``. A refused body is never read: the
        connection closes after the answer."""
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise ServiceError(f"{self.command} needs a Content-Length (0 for no body; chunked bodies are not taken)",
                               code="length_required", status=411)
        if not length.strip().isdigit():
            self.close_connection = True
            raise BadRequestError(f"Content-Length {length!r} is not a non-negative number of bytes")
        size = int(length)
        if size > MAX_REQUEST_BYTES:
            self.close_connection = True
            raise ServiceError(f"request body of {size} bytes is larger than {MAX_REQUEST_BYTES} (1 MiB)",
                               code="too_large", status=413)
        if not size:
            return b""
        deadlines = self.server.deadlines
        deadlines.set(self.connection, self.server.limits.body_timeout_s)
        try:
            body = self.rfile.read(size)
        except OSError:
            body = b""
        finally:
            deadlines.clear(self.connection)
        if len(body) < size:
            self.close_connection = True
            raise _ClientGone(f"the body ended after {len(body)} of {size} bytes")
        return body

    def _json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str | None, headers: dict[str, str] | None = None) -> None:
        deadlines = self.server.deadlines
        deadlines.set(self.connection, self.server.limits.write_timeout_s)
        try:
            self.send_response(status)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            deadlines.clear(self.connection)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the body is not JSON ({exc})", code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"the body must be a JSON object, not {type(data).__name__}", code="malformed_json")
    return data


def _trailers(stats: ReadStats) -> bytes:
    """The trailer fields of a whole stream: ``X-TheFlash-Deletion-Vector-Rows: 15`` CRLF ..."""
    values = stats.to_dict()
    return b"".join(f"{name}: {values[key]}\r\n".encode("ascii") for key, name in STREAM_TRAILERS.items())


def _chain(first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    if first is None:
        return
    yield first
    yield from rest
