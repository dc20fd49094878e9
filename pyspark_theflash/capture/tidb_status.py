"""TiDB's status port, as capture reads it: the tables (``/schema``, ``/schema/{db}``) and the
finished DDL jobs (``/ddl/history``, newest first)."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from pyspark_theflash.capture.errors import CaptureError
from pyspark_theflash.schema.info_json import TableInfoJson

SYSTEM_DATABASES = {"mysql", "information_schema", "performance_schema", "metrics_schema", "sys"}


class DDLHistoryUnavailableError(CaptureError):
    """The status port does not serve /ddl/history."""


class TiDBStatus:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            url = f"http://{url}"
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise CaptureError(f"TiDB status port {self.url}{path}: HTTP {exc.code}: "
                               f"{exc.read()[:300].decode(errors='replace')}") from None
        except (OSError, ValueError) as exc:
            raise CaptureError(f"TiDB status port {self.url}{path} did not answer: {exc} "
                               "(give --tidb http://HOST:STATUS_PORT, 10080 by default)") from None

    def databases(self) -> list[str]:
        names = []
        for db in self._get("/schema"):
            name = db.get("db_name") or db.get("name")
            names.append(name["O"] if isinstance(name, dict) else str(name))
        return names

    def tables(self, db: str) -> list[TableInfoJson]:
        return list(self._get(f"/schema/{urllib.parse.quote(db)}"))

    def user_tables(self) -> list[tuple[str, TableInfoJson]]:
        """(db, table info) of every table outside TiDB's system databases."""
        out: list[tuple[str, TableInfoJson]] = []
        for db in self.databases():
            if db.lower() not in SYSTEM_DATABASES:
                out.extend((db, t) for t in self.tables(db))
        return out

    def ddl_history(self) -> list[dict[str, object]]:
        """The finished jobs, newest first: TiDB's JSON as it came (``schema.ddl_jobs.ddl_of_job``
        checks each field as it reads it)."""
        try:
            return list(self._get("/ddl/history"))
        except CaptureError as exc:
            if "HTTP 4" in str(exc):
                raise DDLHistoryUnavailableError(str(exc)) from None
            raise
