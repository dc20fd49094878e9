"""The Python source's reads through a TheFlash API service (option ``server``): the read
session is the service's, as the connector jar's is, so executors never open the store's files.

    spark.read.format("theflash").option("server", "http://driver:8816").load("bank.accounts")

Planning (``partitions()``, on the driver's machine) opens a read session with ``POST
/v1/read-sessions``: the service takes the snapshot ts, the read lease, the learner read and the
lock resolution, and keeps the lease alive (its keeper renews it every third of the TTL while the
session is used; an idle session is released after its TTL, as the jar's sessions are). Each of
the session's streams is one Spark partition, and an executor reads it with ``GET
.../streams/{n}`` (Arrow IPC). Every call carries the read's bearer token (option ``token`` /
``token_file``, which travel inside the planned partitions, else the ``THEFLASH_TOKEN`` of the
process making the call). The schema comes from the store when the planning machine sees it,
else from the service (``GET /v1/tables``).

Without ``server``, the Python source switches to the session's service by itself where the store
is not visible at the read's path (``sees_store``). PySpark hands a Python data source its read
options only, never the session's conf, so ``theflash_session()`` puts the address of the
session's service (``theflash.server``) in the driver's environment before Spark's JVM starts
(``THEFLASH_SERVER``, its token in ``THEFLASH_SERVER_TOKEN``), where the planning worker finds it
(``session_service``):

* a planner that does not see the store opens the read session at the service, as with
  ``server``;
* a planner that sees it plans the read itself, and gives each stream its way through the
  service (``StreamRoute``: a read session at the stream's ts over exactly its handle ranges); an
  executor that does not see the store reads the stream that way, one that does reads the store's
  files.

A stream (``readStream``) through a service takes its offsets and its lease from the service
(``ServiceChangeStream``: ``POST /v1/change-streams/offset`` and ``.../commit``, as the connector
jar's), and each micro-batch is a read session there."""
from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
import uuid
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence
from urllib.parse import quote, urlparse

import pyarrow as pa

from pyspark_theflash.scan.bearer_token import BearerToken, sent_token, unauthenticated_advice
from pyspark_theflash.scan.errors import ScanOptionError
from pyspark_theflash.scan.options import (
    OPTION_ALIASES,
    REQUEST_FIELD_OPTIONS,
    SESSION_SNAPSHOT_OPTION,
    ScanOptions,
    change_feed_options,
)

if TYPE_CHECKING:
    from pyspark_theflash.engine.partition import ServiceToken
    from pyspark_theflash.scan.change_stream import StreamOffset
    from pyspark_theflash.scan.session import ReadStream

SERVER_OPTION = "server"
# where the planning worker learns the session's service (theflash_session() sets them in the
# driver's environment before Spark's JVM starts; a user may set them for any service)
SERVER_ENVIRONMENT = "THEFLASH_SERVER"
SERVER_TOKEN_ENVIRONMENT = "THEFLASH_SERVER_TOKEN"
# read options that name how this process reaches the upstream or the latch: with a service,
# its store's settings decide them, so a read giving them is refused rather than ignored
_SERVICE_DECIDES = ("upstream", "latch")
# read option -> read-request field (scan/options.py REQUEST_FIELD_OPTIONS, inverted; the handle
# ranges are the service's to set), and the request's own isolation and as_of
_REQUEST_FIELDS = {**{option: name for name, option in REQUEST_FIELD_OPTIONS.items() if name != "handle_ranges"},
                   "isolation": "isolation", "as_of": "as_of"}


class ServiceReadError(RuntimeError):
    """A call to the read service failed: which service, which table, what it answered."""


@dataclasses.dataclass(frozen=True)
class ServiceStream:
    """One stream of a service's read session: what an executor needs to read it (picklable;
    the token's value is never shown)."""

    server: str
    session: str
    index: int
    url: str
    table: str
    ts: int
    token: BearerToken | None


def server_of(options: Mapping[str, str]) -> str | None:
    """The read's ``server`` option (``http://host:port``), or None."""
    for key, value in options.items():
        if str(key).lower() == SERVER_OPTION and str(value).strip():
            server = str(value).strip().rstrip("/")
            if urlparse(server).scheme != "http" or not urlparse(server).hostname:
                raise ScanOptionError(f"option server={server!r} is not an HTTP address; write http://host:port "
                                      "(the HTTP port of theflash serve)")
            return server
    return None


@dataclasses.dataclass(frozen=True)
class SessionService:
    """The service of the Spark session (``theflash.server``) as the planning worker learns it
    from its environment, and the token its calls carry."""

    server: str
    token: BearerToken | None


def session_service(options: Mapping[str, str]) -> SessionService | None:
    """The session's service (``THEFLASH_SERVER``), or None. Its token: ``THEFLASH_SERVER_TOKEN``
    (theflash_session()'s service), else the read's ``token``/``token_file``, else the
    ``THEFLASH_TOKEN`` of the process making each call."""
    server = os.environ.get(SERVER_ENVIRONMENT, "").strip().rstrip("/")
    if not server:
        return None
    if urlparse(server).scheme != "http" or not urlparse(server).hostname:
        raise ScanOptionError(f"{SERVER_ENVIRONMENT}={server!r} is not an HTTP address; write http://host:port "
                              "(the HTTP port of theflash serve)")
    value = os.environ.get(SERVER_TOKEN_ENVIRONMENT, "").strip()
    if value:
        return SessionService(server, BearerToken(value, f"the session's service ({SERVER_TOKEN_ENVIRONMENT})"))
    lowered = {str(k).lower(): v for k, v in options.items()}
    return SessionService(server, BearerToken.from_options(lowered.get("token"), lowered.get("token_file")))


def sees_store(store: str) -> bool:
    """Whether this process sees a store at ``store`` (its manifest): an executor on another host
    (or in another mount namespace) does not, and reads through the service."""
    return bool(store) and os.path.exists(os.path.join(store, "manifest.db"))


# a read through a service of one store (``theflash serve --store``) may leave ``store`` out
_SERVICE_STORE = "(the store of the service)"


def scan_options(options: Mapping[str, str]) -> dict[str, str]:
    """The read's options without ``server`` (what ``ScanOptions`` parses); with a service
    (``server``, or the session's) and no ``store``, the service's store stands for it."""
    out = {str(k): str(v) for k, v in options.items() if str(k).lower() != SERVER_OPTION}
    served = server_of(options) is not None or bool(os.environ.get(SERVER_ENVIRONMENT, "").strip())
    if served and not any(k.lower() == "store" and v.strip() for k, v in out.items()):
        out["store"] = _SERVICE_STORE
    return out


def read_request(options: Mapping[str, str], columns: Sequence[str], automatic: bool = False) -> dict[str, object]:
    """The ``POST /v1/read-sessions`` body of a read given as Spark options. ``automatic``: the
    read names no ``server`` (the session's service stands in for the store's files), so the
    options the service decides (``upstream``, ``latch``) are left to it rather than refused."""
    opts = change_feed_options({str(k).lower(): v for k, v in scan_options(options).items()})
    ScanOptions.from_mapping(opts)  # a misspelt or contradictory option is refused here, as without a server
    for alias, name in OPTION_ALIASES.items():
        if alias in opts:
            opts[name] = opts.pop(alias)
    _service_decides(opts, automatic)
    table = str(opts.get("table") or opts.get("path") or "")
    request: dict[str, object] = {"table": table, "columns": list(columns)}
    if opts.get("store") and opts["store"] != _SERVICE_STORE:
        request["store"] = str(opts["store"])
    ts = opts.get("snapshot_ts") or opts.get(SESSION_SNAPSHOT_OPTION)
    if ts is not None and str(ts).strip():
        request["snapshot_ts"] = int(str(ts).strip())
    for option, name in _REQUEST_FIELDS.items():
        if option in opts and str(opts[option]).strip():
            request[name] = str(opts[option]).strip()
    if "changes_from" in request:
        request["changes_from"] = int(str(request["changes_from"]))  # the option's text (above)
    return request


def _service_decides(opts: dict[str, str], automatic: bool) -> None:
    """Refuse (or, for the session's service, drop) the options the service decides."""
    given = sorted(name for name in _SERVICE_DECIDES if name in opts)
    if given and not automatic:
        raise ScanOptionError(f"option(s) {given} with option server: the service reads its store with the store's "
                              "own upstream and latch; leave them out, or read without server")
    for name in given:
        opts.pop(name)


def open_session(server: str, options: Mapping[str, str], columns: Sequence[str],
                 service: SessionService | None = None) -> list[ServiceStream]:
    """Open a read session at ``server`` for the read ``options`` give; its streams.
    ``service``: the session's service, which the read reaches without naming it."""
    token = service.token if service is not None else _token_of(options)
    return _open(server, read_request(options, columns, automatic=service is not None), token)


def read_stream(stream: ServiceStream) -> Iterator[pa.RecordBatch]:
    """The stream's record batches as they arrive (``StreamTruncatedError`` when its body ends
    before Arrow's end-of-stream marker: never fewer rows than the stream has)."""
    from pyspark_theflash.scan.stream_body import read_stream_body

    token = sent_token(stream.token)
    conn = _connection(stream.server, timeout=600)
    try:
        conn.request("GET", stream.url, headers=_auth(token))
        response = conn.getresponse()
        if response.status != 200:
            raise _refused(stream.server, f"reading stream {stream.index} of read session {stream.session} "
                           f"({stream.table} at ts {stream.ts})", response.status, response.read(), token,
                           expired_hint=response.status == 404)
        yield from read_stream_body(response, session=stream.session, stream=stream.index,
                                    url=stream.server + stream.url)
    finally:
        conn.close()


def table_schema(server: str, options: Mapping[str, str], token: BearerToken | None = None) -> pa.Schema:
    """The table's Arrow schema as the service has it (visible columns, then the readable
    hidden ones), for a planning machine that does not see the store."""
    lowered = {str(k).lower(): v for k, v in options.items()}
    token = token if token is not None else _token_of(options)
    table = str(lowered.get("table") or lowered.get("path") or "")
    store = lowered.get("store")
    path = "/v1/tables" + (f"?store={quote(str(store))}" if store else "")
    status, body = _call(server, "GET", path, token, None)
    if status != 200:
        raise _refused(server, f"listing the tables (for the schema of {table})", status, body, token)
    listed = json.loads(body)
    for entry in listed.get("tables", listed) if isinstance(listed, dict) else listed:
        if str(entry.get("table", "")).lower() == table.lower():
            return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(entry["arrow_schema"])))
    from pyspark_theflash.scan.errors import TableNotReplicatedError

    raise TableNotReplicatedError(f"the service at {server} does not replicate {table}"
                                  + (f" in store {store}" if store else ""))


@dataclasses.dataclass(frozen=True)
class StreamRoute:
    """A stream planned on the store's files, read through the session's service instead: the
    ``POST /v1/read-sessions`` body of a session at the stream's ts over exactly its handle
    ranges and columns (picklable; the token's value is never shown)."""

    server: str
    token: BearerToken | None
    request: Mapping[str, object]
    table: str
    ts: int


# the read options a stream's route carries as they are (how the rows are chosen at ts)
_ROUTED_OPTIONS = ("schema", "isolation", "lock_wait_timeout", "region_wait_timeout")


def at_ts_request(stream: ReadStream, options: Mapping[str, str], handle_ranges: bool = True) -> dict[str, object]:
    """The read request of a planned stream (``scan.session.ReadStream``) at its ts: its
    columns, its change range, and (``handle_ranges``) only its handle ranges. (The Python
    source pushes no filter, so a stream it planned has none to carry.)"""
    from pyspark_theflash.scan.options import format_handle_ranges

    p = stream.partition
    lowered = {str(k).lower(): v for k, v in options.items()}
    request: dict[str, object] = {"table": p.table, "store": os.path.abspath(p.store), "snapshot_ts": int(p.ts),
                               "columns": list(stream.schema.names), "batch_rows": int(p.batch_rows),
                               "lease_ttl": f"{p.lease_ttl_s:g}s"}
    if handle_ranges:
        request["handle_ranges"] = format_handle_ranges([(r.lo, r.hi) for r in p.ranges])
        request["min_streams"] = 1
    if p.changes_from is not None:
        request["changes_from"] = int(p.changes_from)
        request["changes"] = "net" if p.changes_net else "all"
    for name in _ROUTED_OPTIONS:
        if name in lowered and str(lowered[name]).strip():
            request[name] = str(lowered[name]).strip()
    return request


def routes(streams: Sequence[ReadStream], service: SessionService, options: Mapping[str, str]) -> list[StreamRoute] | None:
    """Each planned stream's route through ``service``, or None when a handle range cannot name
    a stream (a partitioned table's: its partitions share handles)."""
    if any(r.table_id is not None for s in streams for r in s.partition.ranges):
        return None
    return [StreamRoute(service.server, service.token, at_ts_request(s, options), s.partition.table,
                        int(s.partition.ts)) for s in streams]


def open_at_ts(service: SessionService, streams: Sequence[ReadStream], options: Mapping[str, str]) -> list[ServiceStream]:
    """A read session at the service with the planned ``streams``' ts, columns and change range
    (the service plans its own streams): for streams no route can name."""
    request = at_ts_request(streams[0], options, handle_ranges=False)
    return _open(service.server, request, service.token)


def read_routed(route: StreamRoute) -> Iterator[pa.RecordBatch]:
    """The routed stream's rows: a session at its ts over its handle ranges, every stream of it
    read in turn, then released."""
    streams = _open(route.server, dict(route.request), route.token)
    try:
        for stream in streams:
            if stream.ts != route.ts:
                raise ServiceReadError(f"the read service at {route.server} read {route.table} at ts {stream.ts}, "
                                       f"not at the planned ts {route.ts}")
            yield from read_stream(stream)
    finally:
        if streams:
            try:
                _call(route.server, "DELETE", f"/v1/read-sessions/{quote(streams[0].session)}", route.token, None)
            except ServiceReadError:
                pass  # an idle session is released after its TTL anyway


def _open(server: str, request: dict[str, object], token: BearerToken | None) -> list[ServiceStream]:
    status, body = _call(server, "POST", "/v1/read-sessions", token, json.dumps(request).encode())
    if status != 201:
        raise _refused(server, f"opening a read session of {request['table']}", status, body, token)
    session = json.loads(body)
    return [ServiceStream(server, str(session["id"]), int(s["index"]), str(s["url"]), str(request["table"]),
                          int(session["ts"]), token) for s in session["streams"]]


class ServiceChangeStream:
    """A change stream whose offsets and lease are the service's (``POST
    /v1/change-streams/offset`` and ``.../commit``, ``scan.change_stream`` there), for a stream
    read through a service; the offset interface of ``scan.change_stream.ChangeStream``.

    Its ``stream_id`` is this reader's (PySpark does not tell a Python source its checkpoint), so
    each commit releases the stream's older leases at the service; a restarted query takes a
    lease of its own at its checkpointed offset while the old one still holds GC back."""

    def __init__(self, server: str, table: str, options: Mapping[str, str], columns: Sequence[str],
                 service: SessionService | None = None) -> None:
        from pyspark_theflash.scan.change_stream import ChangeStream

        self.server = server
        self.table = table
        self.service = service
        lowered = {str(k).lower(): v for k, v in options.items()}
        self.store = str(lowered.get("store") or "").strip() or None
        self.token = service.token if service is not None else _token_of(options)
        # parsed as a local stream parses them (starting_ts, max_rows_per_trigger, lease_ttl): the
        # batches' read options are the same; nothing here opens the store
        parsed = ChangeStream(self.store or _SERVICE_STORE, table, lowered)
        self.max_rows = parsed.max_rows
        self._batches = parsed
        self.stream_options: dict[str, str] = {k: str(lowered[k]) for k in ("starting_ts", "lease_ttl", "region_wait_timeout")
                               if k in lowered}
        self.stream_options["stream_id"] = uuid.uuid4().hex[:16]
        self.stream_options["stream_columns"] = json.dumps(list(columns))
        _service_decides(parsed.read_options, automatic=service is not None)

    def _call(self, call: str, extra: dict[str, object]) -> dict[str, Any]:
        body = {"table": self.table, **({"store": self.store} if self.store else {}), "options": self.stream_options,
                **extra}
        status, answer = _call(self.server, "POST", f"/v1/change-streams/{call}", self.token, json.dumps(body).encode())
        if status != 200:
            raise _refused(self.server, f"the change stream of {self.table} ({call})", status, answer, self.token)
        return dict(json.loads(answer))

    def initial_offset(self) -> StreamOffset:
        from pyspark_theflash.scan.change_stream import StreamOffset

        return StreamOffset.from_dict(self._call("offset", {"start": None})["offset"])

    def latest_offset(self, start: StreamOffset, max_rows: int | None = None) -> StreamOffset:
        from pyspark_theflash.scan.change_stream import StreamOffset

        extra: dict[str, object] = {"start": start.to_dict()}
        if max_rows is not None:
            extra["max_rows"] = int(max_rows)
        return StreamOffset.from_dict(self._call("offset", extra)["offset"])

    def batch_options(self, start: StreamOffset, end: StreamOffset) -> dict[str, str] | None:
        return self._batches.batch_options(start, end)

    def open_batch(self, options: Mapping[str, str], columns: Sequence[str]) -> list[ServiceStream]:
        """The read session of one micro-batch (``batch_options``) at the service."""
        return open_session(self.server, {**options, "table": self.table, **({"store": self.store} if self.store
                                                                               else {})}, columns, self.service)

    def commit(self, end: StreamOffset) -> None:
        self._call("commit", {"end": end.to_dict()})

    def stop(self) -> None:
        """The lease stays at the service until its lease_ttl passes: a restarted query takes its
        own at its checkpointed offset while this one still holds GC back."""


def _token_of(options: Mapping[str, str]) -> BearerToken | None:
    lowered = {str(k).lower(): v for k, v in options.items()}
    return BearerToken.from_options(lowered.get("token"), lowered.get("token_file"))


def _connection(server: str, timeout: float) -> http.client.HTTPConnection:
    where = urlparse(server)
    return http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port or 80, timeout=timeout)


def _auth(token: ServiceToken | None) -> dict[str, str]:
    return {"Authorization": token.header()} if token is not None else {}


def _call(server: str, method: str, path: str, given: BearerToken | None, body: bytes | None) -> tuple[int, bytes]:
    token = sent_token(given)
    headers = {"Content-Type": "application/json", **_auth(token)} if body is not None else _auth(token)
    conn = _connection(server, timeout=600)
    try:
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except OSError as exc:
            raise ServiceReadError(f"cannot reach the read service at {server} ({exc}): is theflash serve running "
                                   "there, bound to an address this machine reaches (theflash serve --host)?") from exc
    finally:
        conn.close()


def _refused(server: str, what: str, status: int, body: bytes, given: ServiceToken | None,
             expired_hint: bool = False) -> Exception:
    try:
        answer = str(json.loads(body)["error"]["message"])
    except (ValueError, TypeError, KeyError):
        answer = body[:500].decode("utf-8", "replace")
    message = f"the read service at {server}, {what}: {status} {answer}"
    if status == 401:
        message += f"; {unauthenticated_advice(sent_token(given))}"
    if expired_hint:
        message += ("; a session unused for longer than its lease TTL is released: load the DataFrame again "
                    "for a fresh read, or raise the option lease_ttl")
    if status == 400:
        return ScanOptionError(message)
    return ServiceReadError(message)
