"""Reading a planned partition through the TheFlash API service of the process that owns the
store's files (a ClickHouse-engine store's directory, held by its writer's ``--serve``): a read
session at the partition's ts over exactly its handle ranges, over HTTP, carrying the read's
bearer token (``scan.bearer_token``) when the service needs one.

An engine's partition reader decides when a read must go this way (the directory owned
elsewhere or busy) and is handed :func:`read_through_service` for it
(``engine.partition.ServiceRead``, by ``scan.read.read_partition``): opening a session is read
orchestration, which sits above the engines.
"""
from __future__ import annotations

import http.client
import json
import logging
from typing import TYPE_CHECKING, Iterator
from urllib.parse import urlparse

import pyarrow as pa

from pyspark_theflash.engine.clickhouse.errors import ClickHouseEngineError, ServiceTokenRefusedError
from pyspark_theflash.engine.partition import ScanPartition, ServiceToken
from pyspark_theflash.scan.bearer_token import sent_token, unauthenticated_advice
from pyspark_theflash.scan.options import format_handle_ranges
from pyspark_theflash.scan.stream_body import read_stream_body

if TYPE_CHECKING:
    from pyspark_theflash.schema.table_info import ColumnInfo

log = logging.getLogger(__name__)


def read_through_service(p: ScanPartition, url: str) -> Iterator[pa.RecordBatch]:
    """The partition's rows from the service of the process that owns the store's ClickHouse
    directory: a session at the partition's ts over exactly its handle ranges. A stream whose
    body ends before Arrow's end-of-stream marker (the service failed mid-stream, stopped, or the
    connection was cut) raises ``StreamTruncatedError``: never fewer rows than the partition has.

    Every call carries the read's bearer token (``p.token``: options token / token_file, else
    this process's THEFLASH_TOKEN) for a service started with a token file; a 401 raises
    ``ServiceTokenRefusedError`` naming where the token came from."""
    columns = list(p.columns) if p.columns is not None else [c.name for c in _table_columns(p)]
    request = {"table": p.table, "snapshot_ts": int(p.ts), "columns": columns + list(p.hidden),
               "handle_ranges": format_handle_ranges([(r.lo, r.hi) for r in p.ranges]),
               "batch_rows": int(p.batch_rows)}
    token = sent_token(p.token)
    auth = {"Authorization": token.header()} if token is not None else {}
    where = urlparse(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    refused = (f"the service at {url} (the process owning {p.store}'s ClickHouse directory) refused a read of "
               f"{p.table} at ts {p.ts}")
    # one connection per request: a stream cut mid-way leaves its connection unusable
    conn = http.client.HTTPConnection(host, port, timeout=600)
    try:
        conn.request("POST", "/v1/read-sessions", body=json.dumps(request),
                     headers={"Content-Type": "application/json", **auth})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status == 401:
        raise _token_refused(refused, body, token)
    if response.status != 201:
        raise ClickHouseEngineError(f"{refused}: {response.status} {body[:500]!r}")
    session = json.loads(body)
    batches: list[pa.RecordBatch] = []
    try:
        for stream in session["streams"]:
            conn = http.client.HTTPConnection(host, port, timeout=600)
            try:
                conn.request("GET", stream["url"], headers=auth)
                response = conn.getresponse()
                if response.status == 401:
                    raise _token_refused(f"{refused} (stream {stream['index']} of read session {session['id']})",
                                         response.read(), token)
                if response.status != 200:
                    raise ClickHouseEngineError(f"stream {stream['index']} of read session {session['id']} of {url}: "
                                                f"{response.status} {response.read()[:500]!r}")
                batches.extend(read_stream_body(response, session=session["id"], stream=int(stream["index"]),
                                                url=url.rstrip("/") + stream["url"]))
            finally:
                conn.close()
    finally:
        _release(host, port, session["id"], auth)
    # the session is released before the rows are handed on (a slow consumer holds no lease)
    yield from batches


def _token_refused(refused: str, body: bytes, token: ServiceToken | None) -> ServiceTokenRefusedError:
    """The error for a 401: the service's own answer, then where the token sent came from."""
    try:
        answer = str(json.loads(body)["error"]["message"])
    except (ValueError, TypeError, KeyError):
        answer = body[:500].decode("utf-8", "replace")
    return ServiceTokenRefusedError(f"{refused}: answered 401 unauthenticated: {answer}; "
                                    f"{unauthenticated_advice(token)}", token.source if token is not None else None)


def _release(host: str, port: int, session_id: str, auth: dict[str, str]) -> None:
    """Release a read session of the service; if that fails (the service gone), its lease
    expires by its TTL, and the read's own outcome is what the caller sees."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("DELETE", f"/v1/read-sessions/{session_id}", headers=auth)
        conn.getresponse().read()
    except (http.client.HTTPException, OSError) as exc:
        log.warning("releasing read session %s of the service at %s:%d failed (%s); its lease expires by its TTL",
                    session_id, host, port, exc)
    finally:
        conn.close()


def _table_columns(p: ScanPartition) -> list[ColumnInfo]:
    from pyspark_theflash.schema import TableInfo

    return list(TableInfo.from_json(p.table_info, db=p.db).columns)
