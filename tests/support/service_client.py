"""Small clients of the TheFlash API service for tests and benchmarks: what a user would write
with pyarrow.flight and the standard library's HTTP client."""
from __future__ import annotations

import base64
import http.client
import json
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.flight as flight

from pyspark_theflash.scan.stream_body import read_stream_body


def rows_of(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The streams' tables as one. Not ``pa.concat_tables``: of tables with no column (a read of
    no column, as a ``count(*)``) it makes a table of no row (pyarrow 26)."""
    return pa.Table.from_batches([b for t in tables for b in t.to_batches()], schema=schema)


class FlightReader:
    def __init__(self, location: str, token: str | None = None) -> None:
        self.client = flight.connect(location)
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        self.options = flight.FlightCallOptions(headers=headers)

    def info(self, request: dict[str, Any]) -> flight.FlightInfo:
        return self.client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request)), self.options)

    def read(self, request: dict[str, Any]) -> tuple[pa.Table, dict[str, Any]]:
        """Every stream of a new session, and the session (``app_metadata``); released after."""
        info = self.info(request)
        session = json.loads(info.app_metadata)
        try:
            tables = [self.client.do_get(e.ticket, self.options).read_all() for e in info.endpoints]
        finally:
            self.action("release", {"session": session["id"]})
        return rows_of(tables, info.schema), session

    def action(self, kind: str, body: dict[str, Any] | None = None) -> Any:
        results = list(self.client.do_action(flight.Action(kind, json.dumps(body or {}).encode()), self.options))
        return json.loads(results[0].body.to_pybytes())

    def close(self) -> None:
        self.client.close()


class HttpReader:
    def __init__(self, url: str, token: str | None = None) -> None:
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", int(parsed.port or 80)
        self.token = token

    def _headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"} if token or self.token else {}

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                token: str | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            headers = self._headers(token)
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            if data is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, _, data = self.request(method, path, body, **kw)
        return status, (json.loads(data) if data else None)

    def read(self, request: dict[str, Any]) -> tuple[pa.Table, dict[str, Any]]:
        """Every stream of a new session, and the session; released after."""
        status, session = self.json("POST", "/v1/read-sessions", request)
        assert status == 201, session
        return self.read_session(session)

    def read_session(self, session: dict[str, Any]) -> tuple[pa.Table, dict[str, Any]]:
        """Every stream of an opened session (``POST /v1/read-sessions``'s answer); released after.
        A stream cut short raises the package's ``StreamTruncatedError`` (scan/stream_body.py)."""
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(session["arrow_schema"])))
        try:
            tables = [pa.Table.from_batches(self.read_stream(session["id"], s["index"], s["url"]), schema=schema)
                      for s in session["streams"]]
        finally:
            assert self.request("DELETE", f"/v1/read-sessions/{session['id']}")[0] == 204
        return rows_of(tables, schema), session

    def read_stream(self, session: str, n: int, path: str) -> list[pa.RecordBatch]:
        """The batches of stream ``n`` of ``session`` (at ``path``), read as they arrive."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request("GET", path, headers=self._headers())
            resp = conn.getresponse()
            if resp.status != 200:
                raise AssertionError(f"GET {path}: {resp.status} {resp.read()[:200]!r}")
            assert resp.getheader("Content-Type") == "application/vnd.apache.arrow.stream"
            return list(read_stream_body(resp, session=session, stream=n, url=f"http://{self.host}:{self.port}{path}"))
        finally:
            conn.close()
