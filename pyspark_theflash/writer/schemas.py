"""Where the writer gets table info: the upstream's gRPC client (``UpstreamClient``) or a
TiDB-style status port (``GET /db-table/{table_id}``)."""
from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Protocol

from pyspark_theflash.writer.errors import SchemaUnavailableError, TableGoneUpstreamError

if TYPE_CHECKING:
    from pyspark_theflash.schema.info_json import TableInfoJson
    from pyspark_theflash.upstream_client.client import UpstreamClient


class SchemaSource(Protocol):
    def table_info_by_id(self, table_id: int) -> tuple[str, TableInfoJson]: ...


def _name(value: object) -> str:
    """TiDB names come as ``{"O": "Orig", "L": "orig"}`` or as plain strings."""
    if isinstance(value, dict):
        return str(value.get("O") or value.get("L") or "")
    return str(value)


class HttpSchemaSource:
    """Table info from a TiDB status port: ``/db-table/{id}`` answers
    ``{"db_info": {"db_name"|"name": ...}, "table_info": {...}}`` (TiDB's own form)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def table_info_by_id(self, table_id: int) -> tuple[str, TableInfoJson]:
        url = f"{self.base_url}/db-table/{int(table_id)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            error = TableGoneUpstreamError if exc.code == 404 else SchemaUnavailableError
            raise error(f"schema endpoint {url} answered {exc.code}: table {table_id} unknown upstream") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SchemaUnavailableError(f"cannot fetch table {table_id} from schema endpoint {url}: {exc}") from exc
        info = body.get("table_info", body)
        db_info = body.get("db_info") or {}
        db = _name(db_info.get("db_name") or db_info.get("name") or body.get("db") or "")
        if not db:
            raise SchemaUnavailableError(f"schema endpoint {url} did not name the database of table {table_id}: {body!r:.200}")
        return db, info


class UpstreamSchemaSource:
    """Table info through ``UpstreamClient.table_info_by_id``."""

    def __init__(self, client: UpstreamClient) -> None:
        self.client = client

    def table_info_by_id(self, table_id: int) -> tuple[str, TableInfoJson]:
        from pyspark_theflash.upstream_client.errors import SchemaError

        try:
            db, info = self.client.table_info_by_id(int(table_id))
        except SchemaError as exc:  # the upstream answered: it has no such table (any more)
            raise TableGoneUpstreamError(f"upstream has no table {table_id} (dropped or truncated?): {exc}") from exc
        except Exception as exc:  # the client's own error types; the message says what failed
            raise SchemaUnavailableError(f"upstream could not give table {table_id}'s schema: {exc}") from exc
        return str(db), copy.copy(info)


def table_name(info: TableInfoJson) -> str:
    return _name(info.get("name", ""))
