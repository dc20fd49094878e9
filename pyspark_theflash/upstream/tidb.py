"""TiDB's part of the mini cluster: a catalog of databases and tables (TiDB table info JSON),
row encoding onto TiKV keys, and optimistic Percolator transactions over the store.

Handles follow TiDB: an integer primary key is the handle (``pk_is_handle``, the column is
not stored in the row value); a clustered non-integer (or composite) primary key is a common
handle (``is_common_handle``, record key = ``t{id}_r`` + memcomparable datums of the key
columns); without a clustered primary key the handle is the hidden ``_tidb_rowid``,
allocated per table. Secondary indexes are not maintained (a replica reads records only).
"""
from __future__ import annotations

import copy
import json
import threading
import time
from types import TracebackType
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NotRequired, Sequence, TypedDict, TypeVar, Unpack

from pyspark_theflash import codec
from pyspark_theflash.codec import column_types as T
from pyspark_theflash.codec import encode_int, encode_row_for_table
from pyspark_theflash.codec.row_v2 import datum_for_column
from pyspark_theflash.errors import TheFlashError
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.schema import ColumnInfo, TableInfo, column, row_columns
from pyspark_theflash.schema import table as build_table
from pyspark_theflash.schema.builder import ColumnOptions, default_text
from pyspark_theflash.schema.info_json import ColumnInfoJson, IndexColumnJson, NameJson, PartitionDefinitionJson, PartitionInfoJson, TableInfoJson
from pyspark_theflash.schema.table_info import STATE_PUBLIC
from pyspark_theflash.schema.partitioning import (
    HASH,
    KEY,
    RANGE,
    PartitionDefinitionSpec,
    PartitionSpec,
    Partitioning,
    build_partition_json,
    definition_json,
    partition_clause,
)
from pyspark_theflash.upstream_client.errors import (
    DuplicateKeyError,
    KeyLockedError,
    RegionError,
    RowNotFoundError,
    SchemaError,
    TxnAbortedError,
    TxnRolledBackError,
    UpstreamError,
    WriteConflictError,
)
from pyspark_theflash.schema.defaults import origin_default_value as schema_origin_default
from pyspark_theflash.upstream.ddl import DDL, ROW_FORMATS, SchemaLease, changes_in_place, convert_value, ddl_event, encode_row_v1_for_table
from pyspark_theflash.upstream.async_commit import fits_async_commit, resolve_txn
from pyspark_theflash.upstream.percolator import Mutation, PercolatorStore
from pyspark_theflash.upstream.rows import ROWID, Handle, TableRows, int_handle
from pyspark_theflash.upstream.tso import TimestampOracle
from pyspark_theflash.upstream_client.records import decode_records, decode_value, split_table_name

DEFAULT_TTL_MS = 3000  # TiDB's default lock TTL for small transactions
PREWRITE_BATCH_KEYS = 64  # keys per prewrite request of an async-commit transaction
_R = TypeVar("_R")  # what a retried call returns (LockResolver.retry, run_txn)


def _name(s: str) -> NameJson:
    return {"O": s, "L": s.lower()}


def _column_json(col: ColumnInfo | ColumnInfoJson) -> ColumnInfoJson:
    """A TiDB column info dict from the schema builder's column (or a dict already)."""
    if isinstance(col, ColumnInfo):
        return col.to_json()
    if isinstance(col, Mapping):
        return copy.deepcopy(col)
    raise SchemaError(f"cannot read a column definition from {col!r}: pass schema.column(...) or a TiDB column dict")


def _col_name(col: ColumnInfoJson | IndexColumnJson) -> str:
    n: object = col["name"]  # a column dict given by hand may name it with a plain string
    return str(n["O"] if isinstance(n, Mapping) else n)


def make_column(name: str, type_sql: str, **options: Unpack[ColumnOptions]) -> ColumnInfoJson:
    """A TiDB column info dict from a SQL type (``"DECIMAL(10,2)"``), via the schema box's
    builder. Options are the builder's (``not_null``, ``default``, ``unsigned``, ``elems``, ...)."""
    return _column_json(column(name, type_sql, **options))


# ------------------------------------------------------------------------- key and row codec


def table_info_of(table: TableInfoJson) -> TableInfo:
    """The schema box's TableInfo of a table info dict."""
    return TableInfo.from_json(table)


def record_key(table: TableInfoJson, handle: object, info: TableInfo | None = None) -> bytes:
    """The raw record key of ``handle`` (an int, or the tuple of common-handle values).
    ``info``: the table's TableInfo when the caller has it (saves parsing the dict)."""
    if table.get("is_common_handle"):
        info = info or table_info_of(table)
        values = handle if isinstance(handle, (tuple, list)) else (handle,)
        datums = [datum_for_column(info.column(_col_name(c)), v) for c, v in zip(_pk_columns(table), values)]
        return bytes(codec.encode_common_handle_key(table["id"], datums))
    return bytes(codec.encode_record_key(table["id"], int_handle(handle)))


def record_range(table_id: int) -> tuple[bytes, bytes]:
    """[t{id}_r, t{id}_s): every record key of the table and nothing else."""
    prefix = b"t" + bytes(encode_int(table_id))
    return prefix + b"_r", prefix + b"_s"  # '_s' is the first prefix after every '_r' key


def _pk_columns(table: TableInfoJson) -> list[ColumnInfoJson]:
    by_name = {_col_name(c).lower(): c for c in table["cols"]}
    for idx in table.get("index_info") or []:
        if idx.get("primary"):
            return [by_name[_col_name(c).lower()] for c in idx["idx_cols"]]
    return [c for c in table["cols"] if c["type"]["Flag"] & T.PRI_KEY_FLAG]


def encode_value(table: TableInfoJson, row: Mapping[str, object], info: TableInfo | None = None) -> bytes:
    """Row format v2 bytes of a row (the int handle column and _tidb_rowid are in the key)."""
    values = {k: v for k, v in row.items() if k != ROWID}
    if table.get("pk_is_handle"):
        values.pop(_col_name(_pk_columns(table)[0]), None)
    return bytes(encode_row_for_table(row_columns(info or table_info_of(table)), values))



# ------------------------------------------------------------------------- catalog


class DatabaseState(TypedDict):
    """One database of the catalog's saved state."""

    id: int
    name: str
    tables: list[TableInfoJson]


class CatalogState(TypedDict):
    """The catalog as it is saved (``Catalog.state``): ids, databases and their table infos,
    row ids and row formats by table id (JSON: the ids as strings)."""

    next_id: int
    schema_version: int
    row_ids: dict[str, int]
    row_formats: NotRequired[dict[str, int]]  # absent from states saved before row format 1 existed
    dbs: list[DatabaseState]


@dataclass
class Database:
    id: int
    name: str
    tables: dict[str, TableInfoJson] = field(default_factory=dict)  # lower name -> table info


TableVersion = tuple[int, str, "TableInfoJson | None"]  # (commit ts, db, table info; None: dropped)


class Catalog:
    """TiDB's meta: ids, databases, table infos and the global schema version, plus every
    version each table id has had with the commit ts of the DDL that made it (what a read at a
    past ts decodes with). Thread-safe.

    Every schema change runs inside ``lease.exclusive()`` (see ``ddl.SchemaLease``). ``on_ddl``
    takes its commit ts and appends its binlog event in one step (``make_event(ts)``; the
    cluster does both under its store lock, so no event stamped later — a resolved ts included
    — can precede it in the log) and returns the ts, before anything else sees the change (the
    binlog is the write-ahead log of DDL as of data); ``on_versions`` keeps the table versions
    it makes, ``on_change`` then saves the state."""

    def __init__(
        self, tso: TimestampOracle, state: CatalogState | None = None,
        on_change: Callable[[CatalogState], None] | None = None,
        on_ddl: Callable[[Callable[[int], binlog_pb2.Event], int | None], int] | None = None,
        on_versions: Callable[[list[tuple[int, "TableVersion"]]], None] | None = None,
        versions: Sequence[tuple[int, int, str, TableInfoJson | None]] = (),
    ) -> None:
        self._mu = threading.RLock()
        self._on_change = on_change
        self._on_ddl = on_ddl
        self._on_versions = on_versions
        self._tso = tso
        self.lease = SchemaLease()
        self.next_id = 100  # TiDB allocates user ids after its system tables
        self.schema_version = 0
        self.dbs: dict[str, Database] = {}
        self.row_ids: dict[int, int] = {}
        self.row_formats: dict[int, int] = {}  # table id -> 1 | 2 (absent: 2)
        self.versions: dict[int, list[TableVersion]] = {}
        self._rows: dict[tuple[str, str], TableRows] = {}  # row codecs of the current schema
        if state:
            self.next_id = state["next_id"]
            self.schema_version = state["schema_version"]
            self.row_ids = {int(k): v for k, v in state["row_ids"].items()}
            self.row_formats = {int(k): int(v) for k, v in (state.get("row_formats") or {}).items()}
            for saved in state["dbs"]:
                self.dbs[saved["name"].lower()] = Database(saved["id"], saved["name"],
                                                           {t["name"]["L"]: t for t in saved["tables"]})
        for table_id, commit_ts, db, info in versions:
            self.versions.setdefault(int(table_id), []).append((int(commit_ts), db, info))
        for d in self.dbs.values():  # tables from before versions were kept: in force since ever
            for t in d.tables.values():
                self.versions.setdefault(int(t["id"]), [(0, d.name, copy.deepcopy(t))])

    def state(self) -> CatalogState:
        """Everything but the versions (kept apart, one row per change: see ``on_versions``)."""
        with self._mu:
            return {
                "next_id": self.next_id,
                "schema_version": self.schema_version,
                "row_ids": {str(k): v for k, v in self.row_ids.items()},
                "row_formats": {str(k): v for k, v in self.row_formats.items()},
                "dbs": [{"id": d.id, "name": d.name, "tables": list(d.tables.values())} for d in self.dbs.values()],
            }

    def _alloc_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def alloc_id(self) -> int:
        """A new table (or partition) id, as TiDB's meta allocates them."""
        with self._mu:
            id_ = self._alloc_id()
            self._changed()
            return id_

    def create_database(self, name: str, if_not_exists: bool = True) -> int:
        with self._mu:
            existing = self.dbs.get(name.lower())
            if existing is not None:
                if if_not_exists:
                    return existing.id
                raise SchemaError(f"database {name!r} exists")
            db = Database(self._alloc_id(), name)
            self.dbs[name.lower()] = db
            self.schema_version += 1
            self._changed()
            return db.id

    def create_table(
        self,
        db: str,
        name: str,
        columns: Sequence[ColumnInfo | ColumnInfoJson],
        primary_key: Sequence[str] | None = None,
        clustered: bool = True,
        row_format: int = 2,
        partition: PartitionSpec | None = None,
    ) -> TableInfoJson:
        """Create ``db.name`` and return its table info. ``partition``: PARTITION BY, as
        ``{"type": "RANGE COLUMNS", "columns": ["d"], "definitions": [{"name": "p0",
        "less_than": ["'1995-01-01'"]}, ...]}`` (``schema.partitioning.build_partition_json``);
        each partition gets a physical id of its own. ``columns`` are schema-box columns or
        TiDB column dicts; ``primary_key`` names the key columns (or take those flagged as
        primary key). A clustered single integer key is the handle; another clustered key is
        a common handle; a non-clustered key (or none) gives the table a _tidb_rowid.
        ``row_format``: 2 (TiDB since 4.0) or 1 (the old datum format, as clusters upgraded
        from older versions still write)."""
        if row_format not in ROW_FORMATS:
            raise SchemaError(f"row format {row_format!r}: use 1 or 2")
        cols = [c if isinstance(c, ColumnInfo) else ColumnInfo.from_json(_column_json(c)) for c in columns]
        with self.lease.exclusive(), self._mu:
            database = self.dbs.get(db.lower())
            if database is None:
                raise SchemaError(f"unknown database {db!r}; create it first")
            if name.lower() in database.tables:
                raise SchemaError(f"table {db}.{name} exists")
            try:
                built = build_table(
                    self.next_id + 1, name, cols, primary_key=list(primary_key or ()), clustered=clustered,
                    db=database.name, schema_version=self.schema_version + 1,
                )
            except TheFlashError as err:
                raise SchemaError(f"cannot create table {db}.{name}: {err}") from err
            self._alloc_id()
            info = built.to_json()
            partition_json = None
            if partition is not None:
                partition_json = info["partition"] = self._partition_json(info, partition, f"{db}.{name}")
            self.row_formats[int(info["id"])] = row_format
            database.tables[name.lower()] = info
            query = f"CREATE TABLE {db}.{name}"
            if partition_json is not None:
                query += " " + partition_clause(partition_json)
            return self._ddl_locked(DDL.CREATE_TABLE, database.name, info, query=query)

    def _partition_json(self, info: TableInfoJson, spec: PartitionSpec, qualified: str) -> PartitionInfoJson:
        """TiDB's ``partition`` object of a new table, checked as TiDB checks it: the columns
        exist and every unique key (the primary key) includes them (error 1503)."""
        try:
            built = build_partition_json(
                str(spec.get("type", "RANGE")), expr=str(spec.get("expr") or ""), columns=spec.get("columns") or (),
                definitions=spec.get("definitions") or (), num=int(spec.get("num") or 0), alloc_id=lambda: 0)
            parsed = Partitioning.from_json(built)
            table = TableInfo.from_json(info)
            for c in parsed.key_columns():
                if table.column_any(c) is None:
                    raise SchemaError(f"unknown column {c!r} in the partitioning of {qualified}")
            pk = {n.lower() for n in table.primary_key}
            if pk and not {c.lower() for c in parsed.key_columns()} <= pk:
                raise SchemaError(f"A PRIMARY KEY must include all columns in the table's partitioning function "
                                  f"({qualified}: key {sorted(pk)}, partitioned by {list(parsed.key_columns())})")
            parsed.bounds(table)  # the bounds parse as the columns' values
        except TheFlashError as err:
            raise SchemaError(f"cannot partition {qualified}: {err}") from err
        for d in built["definitions"]:
            d["id"] = self._alloc_id()
        return built

    def table(self, db: str, name: str) -> TableInfoJson:
        with self._mu:
            return copy.deepcopy(self._table_locked(db, name))

    def _table_locked(self, db: str, name: str) -> TableInfoJson:
        database = self.dbs.get(db.lower())
        if database is None or name.lower() not in database.tables:
            raise SchemaError(f"unknown table {db}.{name}; known: {', '.join(self._names_locked()) or 'none'}")
        return database.tables[name.lower()]

    def _names_locked(self) -> list[str]:
        return [f"{d.name}.{t['name']['O']}" for d in self.dbs.values() for t in d.tables.values()]

    def table_by_id(self, table_id: int) -> tuple[str, TableInfoJson]:
        with self._mu:
            for d in self.dbs.values():
                for t in d.tables.values():
                    if t["id"] == table_id or (t.get("partition") and table_id in physical_ids(t)):
                        return d.name, copy.deepcopy(t)
        raise SchemaError(f"unknown table id {table_id}")

    def table_at(self, db: str, name: str, ts: int) -> TableInfoJson:
        """The table called ``db.name`` as of ``ts`` (the version in force then: what TiDB's
        stale read at ts decodes with); SchemaError when no table had that name then."""
        with self._mu:
            for versions in self.versions.values():
                at = _version_at(versions, ts)
                if at is not None and at[2] is not None and at[1].lower() == db.lower() \
                        and at[2]["name"]["L"] == name.lower():
                    return copy.deepcopy(at[2])
        raise SchemaError(f"no table {db}.{name} at ts {ts}")

    def row_format(self, table_id: int) -> int:
        with self._mu:
            return self.row_formats.get(int(table_id), 2)

    def list_tables(self) -> list[tuple[str, str]]:
        with self._mu:
            return [(d.name, t["name"]["O"]) for d in self.dbs.values() for t in d.tables.values()]

    def databases(self) -> list[Database]:
        with self._mu:
            return [Database(d.id, d.name, copy.deepcopy(d.tables)) for d in self.dbs.values()]

    # ---- schema changes (each one DDL event, in commit order with the rows)

    def add_column(self, db: str, name: str, column: ColumnInfo | ColumnInfoJson, default: object = None) -> TableInfoJson:
        """Add a column at the end; rows written before read it as ``default`` (its
        origin_default). Bumps the schema version."""
        col = _column_json(column)
        with self.lease.exclusive(), self._mu:
            table = self._table_locked(db, name)
            if _col_name(col).lower() in {_col_name(c).lower() for c in table["cols"]}:
                raise SchemaError(f"column {_col_name(col)!r} exists in {db}.{name}")
            table["max_col_id"] += 1
            col["id"], col["offset"] = table["max_col_id"], len(table["cols"])
            col["name"] = _name(_col_name(col))
            col.setdefault("state", STATE_PUBLIC)
            col.setdefault("version", 2)
            if default is not None:
                stored = default_text(default, ColumnInfo.from_json(col))
                col["origin_default"] = col["default"] = stored
            table["cols"].append(col)
            return self._ddl_locked(DDL.ADD_COLUMN, self.dbs[db.lower()].name, table,
                                    query=f"ALTER TABLE {db}.{name} ADD COLUMN {_col_name(col)}")

    def drop_column(self, db: str, name: str, column: str) -> TableInfoJson:
        with self.lease.exclusive(), self._mu:
            table = self._table_locked(db, name)
            keep = [c for c in table["cols"] if _col_name(c).lower() != column.lower()]
            if len(keep) == len(table["cols"]):
                raise SchemaError(f"unknown column {column!r} in {db}.{name}")
            dropped = next(c for c in table["cols"] if _col_name(c).lower() == column.lower())
            if dropped["type"]["Flag"] & T.PRI_KEY_FLAG:
                raise SchemaError(f"cannot drop primary key column {column!r} of {db}.{name}")
            for i, c in enumerate(keep):
                c["offset"] = i
            table["cols"] = keep
            return self._ddl_locked(DDL.DROP_COLUMN, self.dbs[db.lower()].name, table,
                                    query=f"ALTER TABLE {db}.{name} DROP COLUMN {column}")

    def rename_column(self, db: str, name: str, column: str, new_name: str) -> TableInfoJson:
        """``ALTER TABLE ... RENAME COLUMN column TO new_name``: the same column id under a new
        name; no row changes (rows carry column ids). Bumps the schema version."""
        with self.lease.exclusive(), self._mu:
            table = self._table_locked(db, name)
            col = next((c for c in table["cols"] if _col_name(c).lower() == column.lower()), None)
            if col is None:
                raise SchemaError(f"unknown column {column!r} in {db}.{name}")
            if new_name.lower() in {_col_name(c).lower() for c in table["cols"] if c is not col}:
                raise SchemaError(f"column {new_name!r} exists in {db}.{name}")
            col["name"] = _name(new_name)
            return self._ddl_locked(DDL.MODIFY_COLUMN, self.dbs[db.lower()].name, table,
                                    query=f"ALTER TABLE {db}.{name} RENAME COLUMN {column} TO {new_name}")

    def plan_modify_column(self, db: str, name: str, column: str,
                           new: ColumnInfo | ColumnInfoJson) -> tuple[TableInfoJson, TableInfoJson, bool]:
        """``(table before, table after, in place)`` of ``MODIFY COLUMN column new``: in place
        keeps the column id (``ddl.changes_in_place``); otherwise the column gets a new id
        under its name and offset (TiDB's reorg), and every row must be rewritten with it
        before the change commits (``MiniCluster.modify_column``)."""
        with self._mu:
            table = self._table_locked(db, name)
            before = copy.deepcopy(table)
            old_json = next((c for c in table["cols"] if _col_name(c).lower() == column.lower()), None)
            if old_json is None:
                raise SchemaError(f"unknown column {column!r} in {db}.{name}")
            if old_json["type"]["Flag"] & T.PRI_KEY_FLAG:
                raise SchemaError(f"cannot modify primary key column {column!r} of {db}.{name} in the mini cluster")
            old = ColumnInfo.from_json(old_json)
            new_json = _column_json(new)
            new_col = ColumnInfo.from_json({**new_json, "id": old.id, "name": old_json["name"]})
            in_place = changes_in_place(old, new_col)
            after = copy.deepcopy(table)
            col: ColumnInfoJson = {**new_json, "name": copy.deepcopy(old_json["name"]), "offset": old_json["offset"],
                                   "state": STATE_PUBLIC, "version": old_json.get("version", 2)}
            if in_place:
                col["id"] = old.id
                col["origin_default"] = old_json.get("origin_default")  # rows without it read what they read
                if old_json.get("origin_default_bit") is not None:
                    col["origin_default_bit"] = old_json["origin_default_bit"]
            else:
                after["max_col_id"] += 1
                col["id"] = after["max_col_id"]
                origin = schema_origin_default(old)
                col["origin_default"] = None if origin is None else default_text(
                    convert_value(origin, old, new_col, f"origin default of {db}.{name}.{column}"), new_col)
            after["cols"] = [col if c["id"] == old.id else c for c in after["cols"]]
            return before, after, in_place

    def commit_modify_column(self, db: str, name: str, before: TableInfoJson, after: TableInfoJson,
                             commit_ts: int | None = None) -> TableInfoJson:
        """Make a planned MODIFY COLUMN the table's schema (under ``lease.exclusive()``, with the
        table unchanged since the plan)."""
        with self.lease.exclusive(), self._mu:
            table = self._table_locked(db, name)
            if table.get("schema_version") != before.get("schema_version") or table["id"] != before["id"]:
                raise SchemaError(f"{db}.{name} changed while MODIFY COLUMN was planned; plan it again")
            table = self.dbs[db.lower()].tables[name.lower()] = copy.deepcopy(after)  # the catalog's entry, replaced
            return self._ddl_locked(DDL.MODIFY_COLUMN, self.dbs[db.lower()].name, table,
                                    query=f"ALTER TABLE {db}.{name} MODIFY COLUMN", commit_ts=commit_ts)

    def rename_table(self, db: str, name: str, new_db: str, new_name: str) -> TableInfoJson:
        """``RENAME TABLE db.name TO new_db.new_name``: same id, same rows, new name."""
        with self.lease.exclusive(), self._mu:
            table = self._table_locked(db, name)
            target = self.dbs.get(new_db.lower())
            if target is None:
                raise SchemaError(f"unknown database {new_db!r}; create it first")
            if new_name.lower() in target.tables:
                raise SchemaError(f"table {new_db}.{new_name} exists")
            del self.dbs[db.lower()].tables[name.lower()]
            table["name"] = _name(new_name)
            target.tables[new_name.lower()] = table
            return self._ddl_locked(DDL.RENAME_TABLE, target.name, table,
                                    query=f"RENAME TABLE {db}.{name} TO {new_db}.{new_name}")

    def drop_table(self, db: str, name: str) -> TableInfoJson:
        """``DROP TABLE``: the id is retired (its rows stay in TiKV until GC deletes the range)."""
        with self.lease.exclusive(), self._mu:
            table = self._table_locked(db, name)
            database = self.dbs[db.lower()]
            del database.tables[name.lower()]
            return self._ddl_locked(DDL.DROP_TABLE, database.name, table, retire=int(table["id"]),
                                    query=f"DROP TABLE {db}.{name}")

    def truncate_table(self, db: str, name: str) -> TableInfoJson:
        """``TRUNCATE TABLE``: the name moves to a new, empty table id; the old id is retired."""
        with self.lease.exclusive(), self._mu:
            table = self._table_locked(db, name)
            database = self.dbs[db.lower()]
            old_id = int(table["id"])
            new = copy.deepcopy(table)
            new["id"] = self._alloc_id()
            self.row_formats[new["id"]] = self.row_formats.get(old_id, 2)
            database.tables[name.lower()] = new
            return self._ddl_locked(DDL.TRUNCATE_TABLE, database.name, new, retire=old_id,
                                    query=f"TRUNCATE TABLE {db}.{name}")

    # ---- partition changes (TiDB's ADD/DROP/TRUNCATE/EXCHANGE/REORGANIZE PARTITION): each one
    # DDL event carrying the table info after it; a partition's rows live under its id, so
    # a partition dropped or truncated takes its rows with it.

    def _partitioned_locked(self, db: str, name: str) -> tuple[TableInfoJson, PartitionInfoJson, Partitioning]:
        """The table, its ``partition`` object (the table's own, to change in place) and that parsed."""
        table = self._table_locked(db, name)
        partition = table.get("partition")
        if not partition:
            raise SchemaError(f"{db}.{name} is not partitioned")
        return table, partition, Partitioning.from_json(partition)

    def add_partitions(self, db: str, name: str, definitions: Sequence[PartitionDefinitionSpec]) -> TableInfoJson:
        """``ALTER TABLE ADD PARTITION (...)`` of a RANGE or LIST table: new, empty partitions
        (a RANGE one above the last bound)."""
        with self.lease.exclusive(), self._mu:
            table, partition, part = self._partitioned_locked(db, name)
            if part.type not in (RANGE, 3):
                raise SchemaError(f"ADD PARTITION of {db}.{name}: the mini cluster adds RANGE and LIST partitions "
                                  f"({part.type_name} is partitioned by {part.type_name}); use REORGANIZE")
            names = {p.name.lower() for p in part.definitions}
            new = []
            for d in definitions:
                if str(d["name"]).lower() in names:
                    raise SchemaError(f"Duplicate partition name {d['name']} in {db}.{name}")
                new.append(definition_json(d, 0))
            after = copy.deepcopy(table)
            after_partition = copy.deepcopy(partition)
            after_partition["definitions"] += new
            after_partition["num"] = len(after_partition["definitions"])
            after["partition"] = after_partition
            check = Partitioning.from_json(after_partition)
            bounds = check.bounds(TableInfo.from_json(after))
            if check.type == RANGE and any(not _ascending(a, b) for a, b in zip(bounds, bounds[1:])):
                raise SchemaError(f"VALUES LESS THAN value must be strictly increasing for each partition of {db}.{name}")
            for added in new:
                added["id"] = self._alloc_id()
            table["partition"] = after_partition
            return self._ddl_locked(DDL.MODIFY_COLUMN, self.dbs[db.lower()].name, table,
                                    query=f"ALTER TABLE {db}.{name} ADD PARTITION ({', '.join(d['name']['O'] for d in new)})")

    def drop_partitions(self, db: str, name: str, names: Sequence[str]) -> TableInfoJson:
        """``ALTER TABLE DROP PARTITION``: the partitions and their rows are gone."""
        with self.lease.exclusive(), self._mu:
            table, partition, part = self._partitioned_locked(db, name)
            if part.type not in (RANGE, 3):
                raise SchemaError(f"DROP PARTITION can only be used on RANGE/LIST partitions ({db}.{name} is {part.type_name})")
            gone = {part.by_name(n).id for n in names}
            if len(gone) == len(part.definitions):
                raise SchemaError(f"Cannot remove all partitions of {db}.{name}, use DROP TABLE instead")
            partition["definitions"] = [d for d in partition["definitions"] if d["id"] not in gone]
            partition["num"] = len(partition["definitions"])
            return self._ddl_locked(DDL.MODIFY_COLUMN, self.dbs[db.lower()].name, table,
                                    query=f"ALTER TABLE {db}.{name} DROP PARTITION {', '.join(names)}")

    def truncate_partitions(self, db: str, name: str, names: Sequence[str]) -> TableInfoJson:
        """``ALTER TABLE TRUNCATE PARTITION``: each named partition gets a new, empty id."""
        with self.lease.exclusive(), self._mu:
            table, partition, part = self._partitioned_locked(db, name)
            targets = {part.by_name(n).id for n in names}
            for d in partition["definitions"]:
                if d["id"] in targets:
                    d["id"] = self._alloc_id()
            return self._ddl_locked(DDL.MODIFY_COLUMN, self.dbs[db.lower()].name, table,
                                    query=f"ALTER TABLE {db}.{name} TRUNCATE PARTITION {', '.join(names)}")

    def exchange_partition(self, db: str, name: str, partition: str, nt_db: str, nt_name: str,
                           rows_fit: Callable[[TableInfoJson, TableInfoJson, int], None]) -> TableInfoJson:
        """``ALTER TABLE EXCHANGE PARTITION p WITH TABLE nt``: the two swap ids, so the
        partition's rows are nt's and nt's rows the partition's. ``rows_fit(pt, nt, pid)``
        raises when a row of nt does not belong in the partition (WITH VALIDATION). Two DDL
        events: the partitioned table, then nt under its new id."""
        with self.lease.exclusive(), self._mu:
            table, partition_json, part = self._partitioned_locked(db, name)
            nt = self._table_locked(nt_db, nt_name)
            if nt.get("partition"):
                raise SchemaError(f"{nt_db}.{nt_name} is partitioned: exchange needs a non-partitioned table")
            shape = [(c["name"]["L"], c["type"]["Tp"], c["type"]["Flag"]) for c in table["cols"]]
            if shape != [(c["name"]["L"], c["type"]["Tp"], c["type"]["Flag"]) for c in nt["cols"]] or \
                    bool(table.get("pk_is_handle")) != bool(nt.get("pk_is_handle")) or \
                    bool(table.get("is_common_handle")) != bool(nt.get("is_common_handle")):
                raise SchemaError(f"Tables have different definitions: {db}.{name} and {nt_db}.{nt_name}")
            pid, nt_id = part.by_name(partition).id, int(nt["id"])
            rows_fit(table, nt, pid)
            for d in partition_json["definitions"]:
                if d["id"] == pid:
                    d["id"] = nt_id
            query = f"ALTER TABLE {db}.{name} EXCHANGE PARTITION {partition} WITH TABLE {nt_db}.{nt_name}"
            out = self._ddl_locked(DDL.MODIFY_COLUMN, self.dbs[db.lower()].name, table, query=query)
            nt["id"] = pid
            top = max(self.row_ids.get(int(table["id"]), 0), self.row_ids.get(nt_id, 0), self.row_ids.get(pid, 0))
            self.row_ids[int(table["id"])] = self.row_ids[pid] = top  # no _tidb_rowid is handed out twice
            self.row_formats[pid] = self.row_formats.get(nt_id, 2)
            self._ddl_locked(DDL.MODIFY_COLUMN, self.dbs[nt_db.lower()].name, nt, retire=nt_id, query=query)
            return out

    def reorganize_partitions(self, db: str, name: str, names: Sequence[str],
                              definitions: Sequence[PartitionDefinitionSpec], commit_ts: int | None = None) -> TableInfoJson:
        """``ALTER TABLE REORGANIZE PARTITION names INTO (definitions)`` (the table info after
        it): the new partitions get new ids; ``MiniCluster.reorganize_partitions`` copies the
        rows into them at the DDL's commit ts."""
        with self.lease.exclusive(), self._mu:
            table, partition, part = self._partitioned_locked(db, name)
            old = [part.by_name(n) for n in names]
            positions = sorted(part.definitions.index(p) for p in old)
            if positions != list(range(positions[0], positions[0] + len(positions))):
                raise SchemaError(f"REORGANIZE PARTITION of {db}.{name}: the partitions must be consecutive")
            new = [definition_json(d, int(d.get("id") or self._alloc_id())) for d in definitions]
            defs = partition["definitions"]
            partition["definitions"] = defs[:positions[0]] + new + defs[positions[-1] + 1:]
            partition["num"] = len(partition["definitions"])
            return self._ddl_locked(DDL.MODIFY_COLUMN, self.dbs[db.lower()].name, table, commit_ts=commit_ts,
                                    query=f"ALTER TABLE {db}.{name} REORGANIZE PARTITION {', '.join(names)} INTO "
                                          f"({', '.join(d['name']['O'] for d in new)})")

    def _ddl_locked(self, kind: binlog_pb2.Ddl.Type, db: str, table: TableInfoJson, *, retire: int = 0,
                    query: str = "", commit_ts: int | None = None) -> TableInfoJson:
        """One finished schema change of ``table`` (already changed in place; for DROP TABLE the
        table as it was): new schema version, commit ts, binlog event, versions, saved state."""
        self.schema_version += 1
        table["schema_version"] = self.schema_version

        def make_event(ts: int) -> binlog_pb2.Event:
            table["update_timestamp"] = ts
            return ddl_event(kind, ts, self.schema_version, db, table,
                             old_table_id=retire if kind == DDL.TRUNCATE_TABLE else 0, query=query)

        if self._on_ddl is not None:
            ts = self._on_ddl(make_event, commit_ts)
        else:
            ts = commit_ts if commit_ts is not None else self._tso.get_ts()
            make_event(ts)
        changes: list[tuple[int, TableVersion]] = []
        if retire:
            changes.append((retire, (ts, db, None)))
        if kind != DDL.DROP_TABLE:
            changes.append((int(table["id"]), (ts, db, copy.deepcopy(table))))
        if self._on_versions is not None:
            self._on_versions(changes)
        for table_id, version in changes:
            self.versions.setdefault(table_id, []).append(version)
        self._changed()
        return copy.deepcopy(table)

    def replay_ddl(self, event: binlog_pb2.Event) -> bool:
        """Apply a DDL event of this cluster's own log that its saved state lacks (a crash came
        between the log append and the save); False when the state has it already."""
        ddl = event.ddl
        with self._mu:
            if ddl.schema_version <= self.schema_version:
                return False
            info = json.loads(ddl.table_info)
            database = self.dbs.get(ddl.db.lower())
            if database is None:
                database = self.dbs[ddl.db.lower()] = Database(self._alloc_id(), ddl.db)
            for d in self.dbs.values():  # the id's old entry (a rename may have moved it)
                for key, t in list(d.tables.items()):
                    if t["id"] in (info["id"], ddl.old_table_id):
                        del d.tables[key]
            if ddl.type != DDL.DROP_TABLE:
                database.tables[info["name"]["L"]] = info
            self.next_id = max(self.next_id, int(info["id"]), *physical_ids(info))  # partitions' ids too
            self.schema_version = int(ddl.schema_version)
            if ddl.old_table_id:
                self.versions.setdefault(int(ddl.old_table_id), []).append((ddl.commit_ts, ddl.db, None))
            self.versions.setdefault(int(info["id"]), []).append(
                (ddl.commit_ts, ddl.db, None if ddl.type == DDL.DROP_TABLE else info))
            self._changed()
            return True

    def check_unchanged(self, used: Mapping[str, tuple[int, int]]) -> None:
        """TiDB's commit-time schema check: every table a transaction used still has the id and
        schema version it encoded its rows with; else TxnAbortedError ('Information schema is
        changed'), which a client retries in a new transaction."""
        with self._mu:
            for qualified, (table_id, version) in used.items():
                db, name = split_table_name(qualified)
                try:
                    now = self._table_locked(db, name)
                except SchemaError:
                    raise TxnAbortedError(f"{qualified} was dropped while the transaction ran; retry") from None
                if now["id"] != table_id or now.get("schema_version") != version:
                    raise TxnAbortedError(
                        f"information schema is changed: {qualified} is at schema version {now.get('schema_version')} "
                        f"(table id {now['id']}), the transaction encoded its rows for version {version} "
                        f"(table id {table_id}); retry"
                    )

    def _changed(self) -> None:
        self._rows.clear()  # a schema change: row codecs are built afresh
        if self._on_change is not None:
            self._on_change(self.state())

    def rows(self, db: str, name: str) -> TableRows:
        """The table's row codec at the current schema version (built once, then shared:
        treat it and its ``table`` dict as read-only)."""
        with self._mu:
            cache_key = (db.lower(), name.lower())
            rows = self._rows.get(cache_key)
            if rows is None:
                table = copy.deepcopy(self._table_locked(db, name))
                rows = TableRows(f"{self.dbs[db.lower()].name}.{table['name']['O']}", table,
                                 row_format=self.row_formats.get(int(table["id"]), 2))
                self._rows[cache_key] = rows
            return rows

    def alloc_row_id(self, table_id: int) -> int:
        with self._mu:
            self.row_ids[table_id] = self.row_ids.get(table_id, 0) + 1
            return self.row_ids[table_id]

    def alloc_row_ids(self, table_id: int, count: int) -> int:
        """Allocate ``count`` consecutive row ids; returns the first."""
        with self._mu:
            first = self.row_ids.get(table_id, 0) + 1
            self.row_ids[table_id] = first + count - 1
            return first

    def bump_row_id(self, table_id: int, at_least: int) -> None:
        """Never hand out a row id at or below ``at_least`` again (recovery)."""
        with self._mu:
            self.row_ids[table_id] = max(self.row_ids.get(table_id, 0), at_least)


def _ascending(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """RANGE bounds ``a`` < ``b`` (None = MAXVALUE, above everything)."""
    for x, y in zip(a, b):
        if x is None:
            return False
        if y is None or x < y:
            return True
        if x > y:
            return False
    return False


def _version_at(versions: Sequence[TableVersion], ts: int) -> TableVersion | None:
    """The newest version with commit ts <= ts (None: the table did not exist yet)."""
    found = None
    for v in versions:
        if v[0] <= ts and (found is None or v[0] >= found[0]):
            found = v
    return found


# ------------------------------------------------------------------------- transactions


class LockResolver:
    """What TiDB's client does on meeting a lock: ask the primary, then commit or roll back
    the lock; wait while the owner is alive (bounded by its TTL)."""

    def __init__(self, store: PercolatorStore, tso: TimestampOracle) -> None:
        self.store = store
        self.tso = tso

    def resolve(self, err: KeyLockedError, caller_ts: int) -> bool:
        """True when the lock is gone (committed or rolled back); False while it is alive.
        An async-commit transaction is decided by its secondaries (``txn/resolver.py``)."""
        status = resolve_txn(self.store, err.primary, err.lock_start_ts, caller_ts, self.tso.get_ts())
        return status.decided

    def retry(self, fn: Callable[[], _R], caller_ts: int, timeout_s: float = 30.0) -> _R:
        """Run ``fn`` until it meets no lock, resolving and backing off in between."""
        deadline = time.monotonic() + timeout_s
        backoff = 0.002
        while True:
            try:
                return fn()
            except KeyLockedError as err:
                if self.resolve(err, caller_ts):
                    continue
                if time.monotonic() > deadline:
                    raise
                time.sleep(backoff)
                backoff = min(backoff * 2, 0.1)


class Txn:
    """An optimistic transaction: reads at start_ts, buffered writes, Percolator commit.

    ``with cluster.txn() as t: t.insert("bank.accounts", {...})`` commits at exit (rolls
    back on an exception); a conflict raises TxnAbortedError after rolling back what was
    prewritten. ``one_pc`` commits single-region transactions in one step, as TiDB does.
    ``async_commit``: TiDB >= 5.0's async commit (``_commit_async``) when the keys fit its
    limits, else 2PC. ``after_prewrite`` runs between the phases and ``after_prewrite_batch``
    (async commit) after each prewrite request but the last, with the number sent: the fault
    knobs for a client dying after (or during) prewrite."""

    def __init__(
        self,
        catalog: Catalog,
        store: PercolatorStore,
        tso: TimestampOracle,
        one_pc: bool = True,
        ttl_ms: int = DEFAULT_TTL_MS,
        after_prewrite: Callable[["Txn"], None] | None = None,
        async_commit: bool = False,
        after_prewrite_batch: Callable[["Txn", int], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.tso = tso
        self.one_pc = one_pc
        self.ttl_ms = ttl_ms
        self.after_prewrite = after_prewrite
        self.async_commit = async_commit
        self.after_prewrite_batch = after_prewrite_batch
        self.resolver = LockResolver(store, tso)
        self.start_ts = tso.get_ts()
        self.commit_ts = 0
        self.mutations: dict[bytes, Mutation] = {}
        self._rows: dict[str, TableRows] = {}
        self.rows_written = 0  # the row index named by value errors
        self.done = False

    def __enter__(self) -> "Txn":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.done = True  # nothing was prewritten: dropping the buffer is the rollback

    # ---- reads (snapshot at start_ts, own writes visible)

    def rows(self, qualified: str) -> TableRows:
        """The table's row codec as of this transaction's first use of it (TiDB's schema lease)."""
        rows = self._rows.get(qualified)
        if rows is None:
            rows = self._rows[qualified] = self.catalog.rows(*split_table_name(qualified))
        return rows

    def table(self, qualified: str) -> TableInfoJson:
        """The table's info as of this transaction's first use of it (read-only)."""
        return self.rows(qualified).table

    def _schema_versions(self) -> dict[str, tuple[int, int]]:
        """The id and schema version every table used was encoded for (the commit-time check)."""
        return {q: (int(r.table["id"]), int(r.table.get("schema_version", 0))) for q, r in self._rows.items()}

    def _read(self, key: bytes) -> bytes | None:
        if key in self.mutations:
            m = self.mutations[key]
            return m.value if m.op == binlog_pb2.PUT else None
        return self.resolver.retry(lambda: self.store.get(key, self.start_ts), self.start_ts)

    def _find(self, rows: TableRows, handle: object, index: int = 0) -> tuple[bytes, bytes | None]:
        """The record key of a handle and its value at start_ts; a partitioned table's row is
        looked for in each partition (its key carries the partition's id)."""
        keys = rows.keys(handle, index)
        for key in keys:
            value = self._read(key)
            if value is not None:
                return key, value
        return keys[0], None

    def get(self, qualified: str, handle: object) -> dict[str, object] | None:
        rows = self.rows(qualified)
        key, value = self._find(rows, handle)
        return None if value is None else rows.decode(key, value)

    # ---- writes

    def insert(self, qualified: str, row: Mapping[str, object]) -> Handle:
        """Insert a row as TiDB's INSERT does: left-out columns take their DEFAULT, values are
        checked in strict SQL mode (``InvalidValueError``), an existing key is a
        ``DuplicateKeyError``. Returns the handle (the allocated _tidb_rowid for tables
        without one)."""
        rows = self.rows(qualified)
        index = self.rows_written
        if rows.kind == "rowid" and ROWID not in row:
            row = dict(row)
            row[ROWID] = self.catalog.alloc_row_id(rows.id)
        handle = rows.handle(row, index)
        key = rows.key(handle, index, rows.physical_id(row))
        if self._find(rows, handle, index)[1] is not None:
            raise DuplicateKeyError(rows.qualified, handle, why=f"a row with this key exists at ts {self.start_ts}")
        self.mutations[key] = Mutation(binlog_pb2.PUT, key, rows.value(row, index))
        self.rows_written += 1
        return handle

    def update(self, qualified: str, row: Mapping[str, object]) -> None:
        """Set the given columns of the row identified by the key columns in ``row`` (the
        values set are checked as ``insert`` checks them)."""
        rows = self.rows(qualified)
        index = self.rows_written
        handle = rows.handle(row, index)
        key, current = self._find(rows, handle, index)
        if current is None:
            raise RowNotFoundError(f"no row {handle!r} in {qualified} at ts {self.start_ts}")
        merged = rows.decode(key, current)
        merged.update(row)
        moved = rows.key(handle, index, rows.physical_id(merged))
        if moved != key:  # a changed partitioning value moves the row to another partition
            self.mutations[key] = Mutation(binlog_pb2.DELETE, key)
            key = moved
        self.mutations[key] = Mutation(
            binlog_pb2.PUT, key, rows.value(merged, index, fill_defaults=False, checked=frozenset(name.lower() for name in row)))
        self.rows_written += 1

    def delete(self, qualified: str, handle: object) -> None:
        key, value = self._find(self.rows(qualified), handle)
        if value is None:
            raise RowNotFoundError(f"no row {handle!r} in {qualified} at ts {self.start_ts}")
        self.mutations[key] = Mutation(binlog_pb2.DELETE, key)

    def lock_row(self, qualified: str, handle: object) -> None:
        """SELECT ... FOR UPDATE without a change: a LOCK mutation."""
        key = self._find(self.rows(qualified), handle)[0]
        self.mutations.setdefault(key, Mutation(binlog_pb2.LOCK, key))

    # ---- commit protocol

    def prewrite(self) -> list[bytes]:
        """Phase one: lock every key, the first as primary. Locks of other transactions are
        resolved when their owner is gone; a live one or a newer commit aborts."""
        muts = list(self.mutations.values())
        keys = [m.key for m in muts]
        try:
            self.resolver.retry(
                lambda: self.store.prewrite(muts, keys[0], self.start_ts, self.ttl_ms),
                self.start_ts, timeout_s=0.5,
            )
        except (KeyLockedError, WriteConflictError, TxnRolledBackError) as err:
            self.store.rollback(keys, self.start_ts)
            self.done = True
            raise TxnAbortedError(f"transaction started at {self.start_ts} aborted: {err}") from err
        return keys

    def commit(self) -> int:
        """Commit; returns commit_ts (0 for an empty transaction). Runs inside the catalog's
        schema lease after TiDB's commit-time schema check: a table this transaction used got
        a new schema since (or was dropped or truncated) -> TxnAbortedError, nothing written."""
        if self.done:
            raise UpstreamError(f"transaction started at {self.start_ts} already finished")
        if not self.mutations:
            self.done = True
            return 0
        with self.catalog.lease.shared():
            try:
                self.catalog.check_unchanged(self._schema_versions())
            except TxnAbortedError:
                self.done = True
                raise
            return self._commit_locked()

    def _commit_locked(self) -> int:
        muts = list(self.mutations.values())
        if self.one_pc and self.after_prewrite is None and self.after_prewrite_batch is None:
            try:
                self.commit_ts = self.resolver.retry(
                    lambda: self.store.one_pc(muts, self.start_ts), self.start_ts, timeout_s=0.5
                )
                self.done = True
                return self.commit_ts
            except RegionError:
                pass  # keys span regions: two-phase commit
            except (KeyLockedError, WriteConflictError, TxnRolledBackError) as err:
                self.done = True
                raise TxnAbortedError(f"transaction started at {self.start_ts} aborted: {err}") from err
        if self.async_commit and fits_async_commit([m.key for m in muts]):
            return self._commit_async(muts)
        keys = self.prewrite()
        if self.after_prewrite is not None:
            self.after_prewrite(self)
        self.commit_ts = self.tso.get_ts()
        try:
            self.store.commit(keys[:1], self.start_ts, self.commit_ts)
        except TxnRolledBackError as err:  # someone found our primary expired and rolled it back
            self.store.rollback(keys, self.start_ts)
            self.done = True
            raise TxnAbortedError(f"transaction started at {self.start_ts} aborted: {err}") from err
        if len(keys) > 1:
            self.store.commit(keys[1:], self.start_ts, self.commit_ts)
        self.done = True
        return self.commit_ts

    def _commit_async(self, muts: list[Mutation]) -> int:
        """Async commit: prewrite every key with use_async_commit (the primary's lock lists
        the secondaries), one request per region (the primary's first). Once every prewrite
        succeeded the transaction is committed, at the greatest min_commit_ts the prewrites
        returned, whether or not commit records follow: a reader finding the locks after this
        client died commits them at that ts (``async_commit.py``)."""
        keys = [m.key for m in muts]
        primary, secondaries = keys[0], keys[1:]
        commit_ts = 0
        try:
            for n, batch in enumerate(self.store.prewrite_batches(muts, PREWRITE_BATCH_KEYS)):
                if n and self.after_prewrite_batch is not None:
                    self.after_prewrite_batch(self, n)
                commit_ts = max(commit_ts, self.resolver.retry(  # (called here: ``batch`` is this one)
                    lambda: self.store.prewrite(batch, primary, self.start_ts, self.ttl_ms, async_commit=True,
                                                secondaries=secondaries),
                    self.start_ts, timeout_s=0.5,
                ))
        except (KeyLockedError, WriteConflictError, TxnRolledBackError) as err:
            self.store.rollback(keys, self.start_ts)  # not every key locked: nobody can find it committed
            self.done = True
            raise TxnAbortedError(f"transaction started at {self.start_ts} aborted: {err}") from err
        self.commit_ts = commit_ts
        if self.after_prewrite is not None:
            self.after_prewrite(self)
        self.store.commit(keys, self.start_ts, commit_ts)  # idempotent where a reader committed first
        self.done = True
        return commit_ts

    def rollback(self) -> None:
        """Roll back: drop the buffer, and the locks when prewrite already ran."""
        self.store.rollback(list(self.mutations), self.start_ts)
        self.done = True


class Abandoned(Exception):
    """Raised from ``after_prewrite`` to simulate a client dying between the phases."""


def run_txn(
    make_txn: Callable[[], Txn], body: Callable[[Txn], _R], retries: int = 20,
    on_retry: Callable[[int, Exception], None] | None = None,
) -> _R:
    """Run ``body`` in a fresh transaction until it commits (TiDB's optimistic retry)."""
    for attempt in range(retries + 1):
        t = make_txn()
        try:
            result = body(t)
            t.commit()
            return result
        except TxnAbortedError as err:
            if attempt == retries:
                raise
            if on_retry is not None:
                on_retry(attempt, err)
            time.sleep(min(0.001 * (2 ** attempt), 0.05))
    raise AssertionError("unreachable")


def scan_records(
    store: PercolatorStore, tso: TimestampOracle, table: TableInfoJson, ts: int,
) -> list[tuple[bytes, bytes]]:
    """Every (record key, row value) of a table at ts, in key order (locks met are resolved
    as a reader would)."""
    resolver = LockResolver(store, tso)
    out: list[tuple[bytes, bytes]] = []
    for table_id in physical_ids(table):
        start, end = record_range(table_id)
        out.extend(resolver.retry(lambda: store.scan(start, end, ts), ts))
    return out


def physical_ids(table: TableInfoJson) -> list[int]:
    """The ids a table's rows are keyed under: its partitions' (PARTITION BY) or its own."""
    part = table.get("partition")
    if part:
        return [int(d["id"]) for d in part.get("definitions") or ()]
    return [int(table["id"])]


def scan_table(
    store: PercolatorStore, tso: TimestampOracle, table: TableInfoJson, ts: int,
) -> list[dict[str, object]]:
    """Every row of a table at ts (locks met are resolved as a reader would)."""
    return decode_records(table, scan_records(store, tso, table, ts))


def get_row(
    store: PercolatorStore, tso: TimestampOracle, table: TableInfoJson, handle: object, ts: int,
) -> dict[str, object] | None:
    key = record_key(table, handle)
    value = LockResolver(store, tso).retry(lambda: store.get(key, ts), ts)
    return None if value is None else decode_value(table, key, value)
