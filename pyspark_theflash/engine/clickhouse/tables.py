"""The ClickHouse tables of a store: one ``ReplacingMergeTree`` per replicated table id.

Layout of ``flash.t_<table id>``: one column ``c<column id>`` per column the table ever had
(by id, so a rename changes nothing), typed as the newest schema version types it and
nullable (delete marks carry no values), plus the hidden columns ``_tidb_rowid`` (Int64, or
String for clustered common handles), ``_tidb_commit_ts`` (UInt64), ``_tidb_delmark`` (Bool)
and ``_flush_version`` (the manifest version of the flush that brought the row). Ordered by
(handle, commit ts): one sorted run per handle, and a version inserted twice (a flush replayed
after a crash) is the same key, which the table's background merges collapse.

``ClickHouseTables`` is the store's row sink (``store.row_sink.RowSink``): each flush's rows
and range tombstones arrive inside the flush's manifest edit. It keeps the rows (``keeps_rows``):
the store writes no part files for them, only records of their statistics.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import pyarrow as pa

from pyspark_theflash.engine.clickhouse.column_types import clickhouse_type, to_clickhouse
from pyspark_theflash.engine.clickhouse.directory import DATABASE, ClickHouseDirectory
from pyspark_theflash.store import keyspace
from pyspark_theflash.store.txn_merge_tree import COMMIT_TS, DELMARK, ROWID

if TYPE_CHECKING:
    from pyspark_theflash.schema import ColumnInfo, TableInfo
    from pyspark_theflash.store.row_sink import BufferedRows
    from pyspark_theflash.store.schemas import TableHistory

FLUSH_VERSION = "_flush_version"


def table_name(table_id: int) -> str:
    return f"{DATABASE}.t_{int(table_id)}"


def column_name(column_id: int) -> str:
    return f"c{int(column_id)}"


def quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class ClickHouseTables:
    """Creates and alters the per-table ClickHouse tables and writes flushed rows into them."""

    keeps_rows = True

    def __init__(self, directory: ClickHouseDirectory, histories: Callable[[], "Mapping[int, TableHistory]"]) -> None:
        self.directory = directory
        self._histories = histories
        self._columns: dict[int, dict[str, str]] = {}  # table id -> ClickHouse column -> type
        self._mu = threading.Lock()
        self.rows_written = 0
        self.flushes_written = 0

    # -- the row sink ---------------------------------------------------------------------------
    def write_flush(self, version: int, tables: "Sequence[BufferedRows]",
                    tombstones: Sequence[tuple[bytes, bytes, str]]) -> None:
        with self._mu:
            histories = self._histories()
            for rows in tables:
                history = histories[rows.table_id]
                self._insert(history, rows, version)
            for start, end, _why in tombstones:
                self._delete_range(start, end, version, histories)
            self.flushes_written += 1

    def count_versions(self, table_id: int, lo: int | bytes | None, hi: int | bytes | None,
                       through_version: int) -> int | None:
        if not self.has_table(table_id):
            return 0
        where = [f"{FLUSH_VERSION} <= {int(through_version)}"] + handle_range_sql(lo, hi)
        return int(self.directory.scalar(f"SELECT count() FROM {table_name(table_id)} WHERE {' AND '.join(where)}")
                   or 0)

    def _insert(self, history: "TableHistory", rows: "BufferedRows", version: int) -> None:
        latest = history.latest
        written = history.by_version(rows.schema_version)
        assert written is not None
        t = pa.concat_tables(rows.chunks) if len(rows.chunks) > 1 else rows.chunks[0]
        if t.num_rows == 0:
            return
        handle_type = t.schema.field(ROWID).type
        self.ensure_table(latest, handle_type)
        cols = self._columns[latest.id]
        by_id = {c.id: c.name for c in written.columns}
        n = t.num_rows
        arrays: dict[str, object] = {}
        missing: list[str] = []
        for c in latest.columns:
            field = _arrow_field(c)
            if c.id in by_id and by_id[c.id] in t.column_names:
                a = t.column(by_id[c.id])
                if a.type != field.type:
                    a = a.cast(field.type)
                arrays[column_name(c.id)] = to_clickhouse(a, field.type)
            else:
                missing.append(c.name)
        if missing:  # rows of an older version: columns added since take their origin default
            from pyspark_theflash.store.parts import origin_defaults

            defaults = origin_defaults(latest, missing)
            for name in missing:
                c = next(x for x in latest.columns if x.name == name)
                field = _arrow_field(c)
                value = defaults.column(name)[0].cast(field.type)
                arrays[column_name(c.id)] = to_clickhouse(pa.repeat(value, n), field.type)
        arrays[ROWID] = t.column(ROWID)
        arrays[COMMIT_TS] = t.column(COMMIT_TS).cast(pa.uint64())
        arrays[DELMARK] = t.column(DELMARK)
        arrays[FLUSH_VERSION] = pa.repeat(pa.scalar(version, pa.uint64()), n)
        names = [x for x in cols if x in arrays]
        theflash_input = pa.table({x: arrays[x] for x in names})
        self.directory.execute(f"INSERT INTO {table_name(latest.id)} ({', '.join(quote_ident(x) for x in names)}) "
                               "SELECT * FROM Python(theflash_input)", theflash_input)
        self.rows_written += n

    def _delete_range(self, start: bytes, end: bytes, version: int, histories: "Mapping[int, TableHistory]") -> None:
        """A range tombstone: rows of earlier flushes in the key range are gone (a region
        removed from this replica, or replaced by a snapshot)."""
        for tid in list(self._columns):
            history = histories.get(tid)
            if history is None:
                continue
            rng = keyspace.region_handle_range(start, end, tid, bool(history.latest.is_common_handle))
            if rng is None:
                continue
            where = [f"{FLUSH_VERSION} < {int(version)}"] + handle_range_sql(rng[0], rng[1])
            self.directory.execute(f"DELETE FROM {table_name(tid)} WHERE {' AND '.join(where)}")

    # -- tables ---------------------------------------------------------------------------------
    def ensure_table(self, info: "TableInfo", handle_type: pa.DataType | None = None) -> None:
        """The table of ``info.id`` with a column for each of its columns (created, or altered:
        columns added, widened)."""
        tid = int(info.id)
        if tid not in self._columns:
            existing = self._existing_columns(tid)
            if not existing:
                handle = "String" if (handle_type is not None and pa.types.is_binary(handle_type)) or (
                    handle_type is None and info.is_common_handle) else "Int64"
                ddl = [f"{column_name(c.id)} {clickhouse_type(_arrow_field(c).type)}" for c in info.columns]
                ddl += [f"{ROWID} {handle}", f"{COMMIT_TS} UInt64", f"{DELMARK} Bool", f"{FLUSH_VERSION} UInt64"]
                self.directory.execute(
                    f"CREATE TABLE IF NOT EXISTS {table_name(tid)} ({', '.join(ddl)}) "
                    f"ENGINE = ReplacingMergeTree ORDER BY ({ROWID}, {COMMIT_TS}) "
                    "SETTINGS fsync_after_insert = 1, fsync_part_directory = 1")
                existing = self._existing_columns(tid)
            self._columns[tid] = existing
        cols = self._columns[tid]
        for c in info.columns:
            want = clickhouse_type(_arrow_field(c).type)
            name = column_name(c.id)
            have = cols.get(name)
            if have is None:
                # rows already stored were written before the column existed: they read its
                # origin default (ClickHouse computes DEFAULT for parts that lack the column)
                default = _origin_default_sql(info, c)
                self.directory.execute(f"ALTER TABLE {table_name(tid)} ADD COLUMN {name} {want}"
                                       + (f" DEFAULT {default}" if default is not None else ""))
            elif have != want:
                self.directory.execute(f"ALTER TABLE {table_name(tid)} MODIFY COLUMN {name} {want}")
            else:
                continue
            cols[name] = want

    def _existing_columns(self, table_id: int) -> dict[str, str]:
        t = self.directory.arrow(f"SELECT name, type FROM system.columns WHERE database = '{DATABASE}' "
                                 f"AND table = 't_{int(table_id)}' ORDER BY position")
        return dict(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))

    def has_table(self, table_id: int) -> bool:
        return int(table_id) in self._columns or bool(self._existing_columns(table_id))

    def table_ids(self) -> list[int]:
        t = self.directory.arrow(f"SELECT name FROM system.tables WHERE database = '{DATABASE}' AND name LIKE 't\\\\_%'")
        return sorted(int(n[2:]) for n in t.column(0).to_pylist()) if t.num_rows else []


def handle_range_sql(lo: int | bytes | None, hi: int | bytes | None) -> list[str]:
    out = []
    if lo is not None:
        out.append(f"{ROWID} >= {sql_literal(lo)}")
    if hi is not None:
        out.append(f"{ROWID} < {sql_literal(hi)}")
    return out


def sql_literal(v: object) -> str:
    """A Python value as a ClickHouse literal (ints, floats, strings, bytes, bools)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if v == v and v not in (float("inf"), float("-inf")) else {
            "inf": "inf", "-inf": "-inf"}.get(repr(v), "nan")
    if isinstance(v, bytes):
        return "unhex('" + v.hex() + "')"
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise TypeError(f"no ClickHouse literal for {type(v).__name__}")


def _arrow_field(column: "ColumnInfo") -> pa.Field:
    from pyspark_theflash.schema.arrow import arrow_field

    return arrow_field(column)


def _origin_default_sql(info: "TableInfo", column: "ColumnInfo") -> str | None:
    """The column's origin default as a ClickHouse expression of its column type (None: NULL).
    Raises ``ClickHouseTypeError`` for a non-NULL default of a type with no literal here."""
    import datetime as dt
    import decimal

    from pyspark_theflash.engine.clickhouse.errors import ClickHouseTypeError
    from pyspark_theflash.store.parts import origin_defaults

    field = _arrow_field(column)
    value = origin_defaults(info, [column.name]).column(column.name)[0].cast(field.type).as_py()
    if value is None:
        return None
    t = field.type
    if isinstance(value, (bool, int, float, str, bytes)) and not pa.types.is_timestamp(t):
        return sql_literal(value)
    if isinstance(value, decimal.Decimal):
        return f"toDecimal{128 if t.precision <= 38 else 256}('{value}', {t.scale})"
    if isinstance(value, dt.datetime):
        return f"toDateTime64('{value.replace(tzinfo=None).isoformat(sep=' ')}', 6, 'UTC')"
    if isinstance(value, dt.date):
        return f"toDate32('{value.isoformat()}')"
    if isinstance(value, dt.timedelta):
        return str(value // dt.timedelta(microseconds=1))
    raise ClickHouseTypeError(f"column {column.name} of {info.db}.{info.name}: its origin default {value!r} has no "
                              "ClickHouse literal in the ClickHouse engine; use the native engine for this table")
