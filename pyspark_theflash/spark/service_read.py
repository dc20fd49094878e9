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
else from the service (``GET /v1/tables``)."""
from __future__ import annotations

import base64
import dataclasses
import http.client
import json
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import quote, urlparse

import pyarrow as pa

from pyspark_theflash.scan.bearer_token import BearerToken, sent_token, unauthenticated_advice
from pyspark_theflash.scan.errors import ScanOptionError
from pyspark_theflash.scan.options import (
    OPTION_ALIASES,
    SESSION_SNAPSHOT_OPTION,
    ScanOptions,
    change_feed_options,
)

SERVER_OPTION = "server"
# read options that name how this process reaches the upstream or the latch: with a service,
# its store's settings decide them, so a read giving them is refused rather than ignored
_SERVICE_DECIDES = ("upstream", "latch")
# read option -> read-request field (service/request.py OPTION_FIELDS, inverted)
_REQUEST_FIELDS = {
    "schema": "schema", "lease_ttl": "lease_ttl", "batch_rows": "batch_rows", "min_partitions": "min_streams",
    "partition_target_bytes": "stream_target_bytes", "region_wait_timeout": "region_wait_timeout",
    "lock_wait_timeout": "lock_wait_timeout", "snapshot": "snapshot", "max_staleness": "max_staleness",
    "changes_from": "changes_from", "changes": "changes", "isolation": "isolation", "as_of": "as_of",
}


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


def server_of(options: Mapping[str, Any]) -> str | None:
    """The read's ``server`` option (``http://host:port``), or None."""
    for key, value in options.items():
        if str(key).lower() == SERVER_OPTION and str(value).strip():
            server = str(value).strip().rstrip("/")
            if urlparse(server).scheme != "http" or not urlparse(server).hostname:
                raise ScanOptionError(f"option server={server!r} is not an HTTP address; write http://host:port "
                                      "(the HTTP port of theflash serve)")
            return server
    return None


# a read through a service of one store (``theflash serve --store``) may leave ``store`` out
_SERVICE_STORE = "(the store of the service)"


def scan_options(options: Mapping[str, Any]) -> dict[str, str]:
    """The read's options without ``server`` (what ``ScanOptions`` parses); with ``server`` and
    no ``store``, the service's store stands for it."""
    out = {str(k): str(v) for k, v in options.items() if str(k).lower() != SERVER_OPTION}
    if server_of(options) is not None and not any(k.lower() == "store" and v.strip() for k, v in out.items()):
        out["store"] = _SERVICE_STORE
    return out


def read_request(options: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """The ``POST /v1/read-sessions`` body of a read given as Spark options."""
    opts = change_feed_options({str(k).lower(): v for k, v in scan_options(options).items()})
    ScanOptions.from_mapping(opts)  # a misspelt or contradictory option is refused here, as without a server
    for alias, name in OPTION_ALIASES.items():
        if alias in opts:
            opts[name] = opts.pop(alias)
    given = sorted(name for name in _SERVICE_DECIDES if name in opts)
    if given:
        raise ScanOptionError(f"option(s) {given} with option server: the service reads its store with the store's "
                              "own upstream and latch; leave them out, or read without server")
    table = str(opts.get("table") or opts.get("path") or "")
    request: dict[str, Any] = {"table": table, "columns": list(columns)}
    if opts.get("store") and opts["store"] != _SERVICE_STORE:
        request["store"] = str(opts["store"])
    ts = opts.get("snapshot_ts") or opts.get(SESSION_SNAPSHOT_OPTION)
    if ts is not None and str(ts).strip():
        request["snapshot_ts"] = int(str(ts).strip())
    for option, name in _REQUEST_FIELDS.items():
        if option in opts and str(opts[option]).strip():
            request[name] = str(opts[option]).strip()
    if "changes_from" in request:
        request["changes_from"] = int(request["changes_from"])
    return request


def open_session(server: str, options: Mapping[str, Any], columns: Sequence[str]) -> list[ServiceStream]:
    """Open a read session at ``server`` for the read ``options`` give; its streams."""
    lowered = {str(k).lower(): v for k, v in options.items()}
    token = BearerToken.from_options(lowered.get("token"), lowered.get("token_file"))
    request = read_request(options, columns)
    status, body = _call(server, "POST", "/v1/read-sessions", token, json.dumps(request).encode())
    if status != 201:
        raise _refused(server, f"opening a read session of {request['table']}", status, body, token)
    session = json.loads(body)
    return [ServiceStream(server, str(session["id"]), int(s["index"]), str(s["url"]), request["table"],
                          int(session["ts"]), token) for s in session["streams"]]


def read_stream(stream: ServiceStream) -> Iterator[pa.RecordBatch]:
    """The stream's record batches as they arrive (``StreamTruncatedError`` when its body ends
    before Arrow's end-of-stream marker: never fewer rows than the stream has)."""
    from pyspark_theflash.service.stream_body import read_stream_body

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


def table_schema(server: str, options: Mapping[str, Any]) -> pa.Schema:
    """The table's Arrow schema as the service has it (visible columns, then the readable
    hidden ones), for a planning machine that does not see the store."""
    lowered = {str(k).lower(): v for k, v in options.items()}
    token = BearerToken.from_options(lowered.get("token"), lowered.get("token_file"))
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


def _connection(server: str, timeout: float) -> http.client.HTTPConnection:
    where = urlparse(server)
    return http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port or 80, timeout=timeout)


def _auth(token: BearerToken | None) -> dict[str, str]:
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


def _refused(server: str, what: str, status: int, body: bytes, given: BearerToken | None,
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
