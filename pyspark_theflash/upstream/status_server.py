"""The TiDB-style HTTP status port of the mini cluster: table info JSON by name and by id.

    GET /schema                 -> [db info, ...]
    GET /schema/{db}            -> [table info, ...]
    GET /schema/{db}/{table}    -> table info (with schema_version)
    GET /db-table/{table_id}    -> {"db_info": {...}, "table_info": {...}, "schema_version": N}
    GET /ddl/history            -> [finished DDL job, ...], newest first (TiDB's model.Job JSON)

Anything else is a 404 whose body says what is served.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Callable
from urllib.parse import parse_qs, unquote, urlparse

from pyspark_theflash.ports import http_server
from pyspark_theflash.schema.ddl_jobs import DdlJob
from pyspark_theflash.upstream_client.errors import SchemaError
from pyspark_theflash.upstream.tidb import Catalog

# serve_forever checks for shutdown() once per poll interval: the default 0.5 s made every
# close wait about that long; a few wakeups a second cost nothing
SHUTDOWN_POLL_S = 0.05
USAGE = "served: /schema, /schema/{db}, /schema/{db}/{table}, /db-table/{table_id}, /ddl/history"


def _db_info(db_id: int, name: str) -> dict[str, object]:
    return {"id": db_id, "db_name": {"O": name, "L": name.lower()}, "charset": "utf8mb4", "collate": "utf8mb4_bin", "state": 5}


def route(catalog: Catalog, path: str, ddl_history: Callable[[], list[DdlJob]] | None = None) -> tuple[int, object]:
    """(HTTP status, JSON body) of a GET; a pure function so it is tested without sockets too."""
    url = urlparse(path)
    parts = [unquote(p) for p in url.path.split("/") if p]
    try:
        if parts == ["ddl", "history"] and ddl_history is not None:
            jobs = ddl_history()
            query = parse_qs(url.query)
            if "start_job_id" in query:
                jobs = [j for j in jobs if j["id"] <= int(query["start_job_id"][0])]
            limit = int(query.get("limit", ["2048"])[0])
            return 200, jobs[:limit]
        if parts == ["schema"]:
            return 200, [_db_info(d.id, d.name) for d in catalog.databases()]
        if len(parts) == 2 and parts[0] == "schema":
            for d in catalog.databases():
                if d.name.lower() == parts[1].lower():
                    return 200, list(d.tables.values())
            return 404, {"error": f"unknown database {parts[1]!r}; {USAGE}"}
        if len(parts) == 3 and parts[0] == "schema":
            return 200, catalog.table(parts[1], parts[2])
        if len(parts) == 2 and parts[0] == "db-table":
            if not parts[1].isdigit():
                return 404, {"error": f"table id must be a number, got {parts[1]!r}; {USAGE}"}
            db, table = catalog.table_by_id(int(parts[1]))
            db_id = next(d.id for d in catalog.databases() if d.name == db)
            return 200, {"db_info": _db_info(db_id, db), "table_info": table,
                         "schema_version": table.get("schema_version", 0)}
    except SchemaError as err:
        return 404, {"error": f"{err}; {USAGE}"}
    return 404, {"error": f"no such endpoint {path!r}; {USAGE}"}


class StatusServer:
    """A ThreadingHTTPServer on ``host:port`` (port 0 = chosen by the OS) in a daemon thread."""

    def __init__(self, catalog: Catalog, host: str = "127.0.0.1", port: int = 0,
                 ddl_history: Callable[[], list[DdlJob]] | None = None) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                status, body = route(catalog, self.path, ddl_history)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: the cluster logs what matters

        self._httpd = http_server("TiDB's status port", host, port, Handler)
        self._httpd.daemon_threads = True
        self.address = f"{host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="upstream-status", daemon=True,
                                        kwargs={"poll_interval": SHUTDOWN_POLL_S})
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
