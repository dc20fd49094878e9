"""Human-readable text of binlog events (``theflash binlog dump``).

One block per event: a header line (position, region, index, epoch, kind) and indented detail
lines. Keys are decoded with the codec where they are TiDB keys (record keys as table and
handle; index and other table keys as their prefix and the rest in hex); row values are
decoded by the table's schema when a :class:`SchemaCache` can fetch it, else shown as hex
with their length. The codec and schema modules are imported inside functions so that this
module works (showing hex) even where they are unavailable.
"""
from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from decimal import Decimal
from typing import TYPE_CHECKING

from pyspark_theflash.binlog import region_runs
from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.binlog.errors import BinlogError
from pyspark_theflash.binlog.position import PositionedEvent
from pyspark_theflash.codec import tso
from pyspark_theflash.proto import binlog_pb2

if TYPE_CHECKING:
    from pyspark_theflash.schema.info_json import TableInfoJson
    from pyspark_theflash.schema.table_info import TableInfo

HEX_LIMIT = 64  # bytes of a value or key shown in hex before eliding the rest
SNAPSHOT_KEYS_SHOWN = 3
_ROW_TYPES = {v: k for k, v in binlog_pb2.Row.Type.items()}
_OPS = {v: k for k, v in binlog_pb2.OpType.items()}
_INDENT = "    "


class SchemaFetchError(BinlogError):
    """The schema endpoint (TiDB status port style) could not be reached or answered nonsense."""


class SchemaCache:
    """Table schemas by id from ``{base_url}/db-table/{table_id}``, fetched once each."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = (base_url if "://" in base_url else f"http://{base_url}").rstrip("/")
        self.timeout_s = timeout_s
        self._tables: dict[int, TableInfo | None] = {}

    def table(self, table_id: int) -> TableInfo | None:
        """The table's ``schema.TableInfo``, or None when the endpoint does not know the id."""
        if table_id not in self._tables:
            self._tables[table_id] = self._fetch(table_id)
        return self._tables[table_id]

    def _fetch(self, table_id: int) -> TableInfo | None:
        from pyspark_theflash.schema.table_info import TableInfo

        url = f"{self.base_url}/db-table/{table_id}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise SchemaFetchError(f"schema endpoint {url} answered HTTP {exc.code}: {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SchemaFetchError(
                f"cannot fetch the schema of table {table_id} from {url}: {exc}; is --schema-url the "
                "status port (http://host:port) of TiDB or of the mini cluster?"
            ) from None
        info: TableInfoJson | None = body.get("table_info", body) if isinstance(body, dict) else None
        if not isinstance(info, dict):
            raise SchemaFetchError(f"schema endpoint {url} did not answer with a table info object")
        db_info = body.get("db_info") or {}
        db_name = db_info.get("db_name") or db_info.get("name")
        if isinstance(db_name, dict):
            db_name = db_name.get("O") or db_name.get("L")
        return TableInfo.from_json(info, db=str(db_name) if db_name else None)


def hex_bytes(data: bytes, limit: int = HEX_LIMIT) -> str:
    shown = data[:limit].hex()
    return f"0x{shown}" + (f"...(+{len(data) - limit} bytes)" if len(data) > limit else "")


def _datum_text(value: object) -> str:
    return value_text(getattr(value, "value", value))


def describe_key(key: bytes) -> str:
    """A raw TiDB key as text: ``table 45 handle 7``, ``t45_i2 0x...``, or hex."""
    if not key:
        return "''"
    try:
        from pyspark_theflash.codec import keys as K
        from pyspark_theflash.codec.errors import CodecError
        from pyspark_theflash.codec.number import decode_int_at
    except ImportError:
        return hex_bytes(key)
    try:
        if K.is_record_key(key):
            if len(key) == K.RECORD_KEY_LEN:
                table_id, handle = K.decode_record_key(key)
                return f"table {table_id} handle {handle}"
            if len(key) == K.RECORD_PREFIX_LEN:
                table_id, _ = K.decode_common_handle_key(key)
                return f"table {table_id} rows start"
            table_id, datums = K.decode_common_handle_key(key)
            return f"table {table_id} handle ({', '.join(_datum_text(d) for d in datums)})"
        if key[:1] == K.TABLE_PREFIX and len(key) >= K.TABLE_PREFIX_LEN:
            table_id = decode_int_at(key, 1)[0]
            rest = key[K.TABLE_PREFIX_LEN :]
            if rest[:2] == K.INDEX_SEP and len(rest) >= 10:
                index_id = decode_int_at(key, K.TABLE_PREFIX_LEN + 2)[0]
                tail = key[K.INDEX_PREFIX_LEN :]
                return f"index t{table_id}_i{index_id} {hex_bytes(tail)}"
            return f"t{table_id} {hex_bytes(rest)}" if rest else f"t{table_id}"
    except (CodecError, ValueError, IndexError):
        pass
    return hex_bytes(key)


def describe_region_key(encoded: bytes, unbounded: str) -> str:
    """A region boundary (PD-encoded) as text; empty = ``unbounded`` (-inf or +inf)."""
    if not encoded:
        return unbounded
    try:
        from pyspark_theflash.codec.errors import CodecError
        from pyspark_theflash.codec.keys import decode_region_key
    except ImportError:
        return hex_bytes(encoded)
    try:
        return describe_key(decode_region_key(encoded))
    except CodecError:
        return hex_bytes(encoded)


def describe_region(region: binlog_pb2.Region) -> str:
    return (
        f"region {region.id} [{describe_region_key(region.start_key, '-inf')}, "
        f"{describe_region_key(region.end_key, '+inf')}) epoch {region.epoch.version}.{region.epoch.conf_version}"
    )


def ts_with_logical(ts: int) -> str:
    """A TSO as its number, its physical part in UTC (``codec.tso.describe_ts``) and its logical part."""
    return f"{ts} ({tso.describe_ts(ts)}, logical {tso.logical(ts)})"


def value_text(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return hex_bytes(bytes(value))
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (dt.date, dt.datetime, dt.timedelta, Decimal)):
        return str(value)
    return repr(value)


def describe_value(key: bytes, value: bytes, schemas: SchemaCache | None) -> str:
    """A row value decoded by its table's schema, else hex with its length."""
    plain = f"{len(value)} bytes {hex_bytes(value)}"
    if schemas is None:
        return plain
    try:
        from pyspark_theflash.codec import keys as K
        from pyspark_theflash.codec.errors import CodecError
        from pyspark_theflash.codec.number import decode_int_at
        from pyspark_theflash.codec.row import decode_row
        from pyspark_theflash.schema.row_columns import row_columns
    except ImportError:
        return plain
    if not K.is_record_key(key):
        return plain
    table_id = decode_int_at(key, 1)[0]
    handle = K.decode_record_key(key)[1] if len(key) == K.RECORD_KEY_LEN else None
    table = schemas.table(table_id)
    if table is None:
        return f"{plain} (table {table_id} unknown to the schema endpoint)"
    try:
        row = decode_row(value, row_columns(table), handle=handle)
    except (CodecError, ValueError, KeyError) as exc:
        return f"{plain} (cannot decode with the schema of {table.qualified_name}: {exc})"
    return f"{table.qualified_name}: " + ", ".join(f"{name}={value_text(v)}" for name, v in row.items())


def describe_row(row: binlog_pb2.Row, schemas: SchemaCache | None) -> list[str]:
    kind = _ROW_TYPES.get(row.type, str(row.type))
    parts = [kind]
    if row.type in (binlog_pb2.Row.PREWRITE, binlog_pb2.Row.COMMITTED):
        parts.append(_OPS.get(row.op, str(row.op)))
    parts.append(f"start_ts={row.start_ts}")
    if row.type in (binlog_pb2.Row.COMMIT, binlog_pb2.Row.COMMITTED):
        parts.append(f"commit_ts={row.commit_ts}")
    parts.append(f"key={describe_key(row.key)}")
    if row.type == binlog_pb2.Row.PREWRITE:
        parts.append(f"primary={describe_key(row.primary)} ttl={row.ttl}ms")
        if row.txn_size:
            parts.append(f"txn_size={row.txn_size}")
    lines = [" ".join(parts)]
    if row.value:
        lines.append(_INDENT + "value " + describe_value(row.key, row.value, schemas))
    return lines


def format_event(record: PositionedEvent, schemas: SchemaCache | None = None) -> str:
    """The text block of one event: a header line and indented details."""
    event = record.event
    header = (
        f"{record.position} region {event.region_id} index {event.index} "
        f"epoch {event.epoch.version}.{event.epoch.conf_version}"
    )
    details: list[str] = []
    payload = event.WhichOneof("payload")
    if region_runs.has_runs(event):  # the rows of many regions: each run as its region's event
        runs = region_runs.split(event, f"{record.position}")
        count = binlog_rows.row_count(event.entries)
        header += f" entries of {len(runs)} region{'' if len(runs) == 1 else 's'} ({count} row{'' if count == 1 else 's'})"
        for run in runs:
            details.append(f"region {run.region_id} index {run.index} epoch {run.epoch.version}.{run.epoch.conf_version}")
            for row in binlog_rows.iter_rows(run.entries, f"region {run.region_id} index {run.index}"):
                details.extend(_INDENT + line for line in describe_row(row, schemas))
    elif payload == "entries":
        count = binlog_rows.row_count(event.entries)
        header += f" entries ({count} row{'' if count == 1 else 's'})"
        for row in binlog_rows.iter_rows(event.entries, f"region {event.region_id} index {event.index}"):
            details.extend(describe_row(row, schemas))
    elif payload == "admin":
        command = event.admin.WhichOneof("cmd")
        header += f" admin {command}"
        if command == "split":
            details.extend(describe_region(r) for r in event.admin.split.regions)
        elif command == "merge":
            details.append("source " + describe_region(event.admin.merge.source))
            details.append("target " + describe_region(event.admin.merge.target))
    elif payload == "snapshot":
        snapshot = event.snapshot
        since = f", versions above {ts_with_logical(snapshot.since_ts)} only" if snapshot.since_ts else ""
        if snapshot.HasField("batch"):  # the columnar form (format 2)
            from pyspark_theflash.binlog.snapshot_batch import snapshot_columns

            cols = snapshot_columns(snapshot)
            write_keys = cols.versions.keys.slice(0, SNAPSHOT_KEYS_SHOWN).to_pylist()
            lock_keys = cols.locks.keys.slice(0, SNAPSHOT_KEYS_SHOWN).to_pylist()
            counts, form = (len(cols.versions), len(cols.locks)), ", columns"
        else:
            write_keys = [w.key for w in snapshot.writes[:SNAPSHOT_KEYS_SHOWN]]
            lock_keys = [lock.key for lock in snapshot.locks[:SNAPSHOT_KEYS_SHOWN]]
            counts, form = (len(snapshot.writes), len(snapshot.locks)), ""
        header += f" snapshot ({counts[0]} writes, {counts[1]} locks{since}{form})"
        details.append(describe_region(snapshot.region))
        if write_keys:
            details.append(f"first writes: {', '.join(describe_key(k) for k in write_keys)}")
        if lock_keys:
            details.append(f"first locks: {', '.join(describe_key(k) for k in lock_keys)}")
    elif payload == "resolved_ts":
        header += f" resolved_ts {ts_with_logical(event.resolved_ts)}"
    elif payload == "resolved":
        regions = list(event.resolved.regions)
        shown = ", ".join(map(str, regions[:SNAPSHOT_KEYS_SHOWN])) + (", ..." if len(regions) > SNAPSHOT_KEYS_SHOWN else "")
        header += f" resolved_ts {ts_with_logical(event.resolved.ts)} for {len(regions)} regions ({shown})"
    elif payload == "ddl":
        ddl = event.ddl
        header += (f" ddl {binlog_pb2.Ddl.Type.Name(ddl.type)} {ddl.db}.{_ddl_table_name(ddl)} (table {ddl.table_id}) "
                   f"schema version {ddl.schema_version} at {ts_with_logical(ddl.commit_ts)}")
        if ddl.old_table_id:
            details.append(f"retires table {ddl.old_table_id}")
        if ddl.query:
            details.append(ddl.query)
    else:
        header += " (no payload)"
    return "\n".join([header, *(_INDENT + line for line in details)])


def _ddl_table_name(ddl: binlog_pb2.Ddl) -> str:
    """The table's name in the DDL's table info (TiDB's ``{"O": ..., "L": ...}`` or a string)."""
    try:
        name = json.loads(ddl.table_info or b"{}").get("name", "")
    except ValueError:
        return "?"
    return str(name.get("O", "") if isinstance(name, dict) else name) or "?"
