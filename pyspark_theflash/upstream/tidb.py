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
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from pyspark_theflash import codec
from pyspark_theflash.codec import decode_row, encode_int, encode_row_for_table
from pyspark_theflash.codec.row_v2 import datum_for_column
from pyspark_theflash.errors import TheFlashError
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.schema import ColumnInfo, TableInfo, column
from pyspark_theflash.schema import table as build_table
from pyspark_theflash.schema import types as T
from pyspark_theflash.schema.builder import default_text
from pyspark_theflash.upstream.errors import (
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
from pyspark_theflash.upstream.async_commit import fits_async_commit, resolve_txn
from pyspark_theflash.upstream.percolator import Mutation, PercolatorStore
from pyspark_theflash.upstream.rows import ROWID, TableRows
from pyspark_theflash.upstream.tso import TimestampOracle

DEFAULT_TTL_MS = 3000  # TiDB's default lock TTL for small transactions
PREWRITE_BATCH_KEYS = 64  # keys per prewrite request of an async-commit transaction


def _name(s: str) -> dict[str, str]:
    return {"O": s, "L": s.lower()}


def _column_json(col: ColumnInfo | Mapping[str, Any]) -> dict[str, Any]:
    """A TiDB column info dict from the schema builder's column (or a dict already)."""
    if isinstance(col, ColumnInfo):
        return col.to_json()
    if isinstance(col, Mapping):
        return copy.deepcopy(dict(col))
    raise SchemaError(f"cannot read a column definition from {col!r}: pass schema.column(...) or a TiDB column dict")


def _col_name(col: Mapping[str, Any]) -> str:
    n = col["name"]
    return str(n["O"] if isinstance(n, Mapping) else n)


def make_column(name: str, type_sql: str, **options: Any) -> dict[str, Any]:
    """A TiDB column info dict from a SQL type (``"DECIMAL(10,2)"``), via the schema box's
    builder. Options are the builder's (``not_null``, ``default``, ``unsigned``, ``elems``, ...)."""
    return _column_json(column(name, type_sql, **options))


# ------------------------------------------------------------------------- key and row codec


def table_info_of(table: Mapping[str, Any]) -> TableInfo:
    """The schema box's TableInfo of a table info dict."""
    return TableInfo.from_json(dict(table))


def record_key(table: Mapping[str, Any], handle: Any, info: TableInfo | None = None) -> bytes:
    """The raw record key of ``handle`` (an int, or the tuple of common-handle values).
    ``info``: the table's TableInfo when the caller has it (saves parsing the dict)."""
    if table.get("is_common_handle"):
        info = info or table_info_of(table)
        values = handle if isinstance(handle, (tuple, list)) else (handle,)
        datums = [datum_for_column(info.column(_col_name(c)), v) for c, v in zip(_pk_columns(table), values)]
        return bytes(codec.encode_common_handle_key(table["id"], datums))
    return bytes(codec.encode_record_key(table["id"], int(handle)))


def record_range(table_id: int) -> tuple[bytes, bytes]:
    """[t{id}_r, t{id}_s): every record key of the table and nothing else."""
    prefix = b"t" + bytes(encode_int(table_id))
    return prefix + b"_r", prefix + b"_s"  # '_s' is the first prefix after every '_r' key


def _pk_columns(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    by_name = {_col_name(c).lower(): c for c in table["cols"]}
    for idx in table.get("index_info") or []:
        if idx.get("primary"):
            return [by_name[_col_name(c).lower()] for c in idx["idx_cols"]]
    return [c for c in table["cols"] if c["type"]["Flag"] & T.PRI_KEY_FLAG]


def handle_of(table: Mapping[str, Any], row: Mapping[str, Any]) -> Any:
    """The handle of a row given by its column values (ROWID for tables without one)."""
    if table.get("pk_is_handle"):
        (pk,) = _pk_columns(table)
        h = int(row[_col_name(pk)])
        return h - (1 << 64) if h >= 1 << 63 else h  # an unsigned BIGINT handle keeps its bits
    if table.get("is_common_handle"):
        return tuple(row[_col_name(c)] for c in _pk_columns(table))
    return int(row[ROWID])


def encode_value(table: Mapping[str, Any], row: Mapping[str, Any], info: TableInfo | None = None) -> bytes:
    """Row format v2 bytes of a row (the int handle column and _tidb_rowid are in the key)."""
    values = {k: v for k, v in row.items() if k != ROWID}
    if table.get("pk_is_handle"):
        values.pop(_col_name(_pk_columns(table)[0]), None)
    return bytes(encode_row_for_table(info or table_info_of(table), values))


def decode_value(table: Mapping[str, Any], key: bytes, value: bytes, info: TableInfo | None = None) -> dict[str, Any]:
    """Column values of a stored row, with the handle column (or _tidb_rowid) filled from the key."""
    if table.get("pk_is_handle"):
        _, handle = codec.decode_record_key(key)
        return dict(decode_row(value, info or table_info_of(table), handle=handle))
    row = dict(decode_row(value, info or table_info_of(table)))
    if not table.get("is_common_handle"):
        _, handle = codec.decode_record_key(key)
        row[ROWID] = handle
    return row


# ------------------------------------------------------------------------- catalog


@dataclass
class Database:
    id: int
    name: str
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower name -> table info


class Catalog:
    """TiDB's meta: ids, databases, table infos and the global schema version. Thread-safe."""

    def __init__(
        self, tso: TimestampOracle, state: Mapping[str, Any] | None = None,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._mu = threading.RLock()
        self._on_change = on_change
        self._tso = tso
        self.next_id = 100  # TiDB allocates user ids after its system tables
        self.schema_version = 0
        self.dbs: dict[str, Database] = {}
        self.row_ids: dict[int, int] = {}
        self._rows: dict[tuple[str, str], TableRows] = {}  # row codecs of the current schema
        if state:
            self.next_id = state["next_id"]
            self.schema_version = state["schema_version"]
            self.row_ids = {int(k): v for k, v in state["row_ids"].items()}
            for d in state["dbs"]:
                self.dbs[d["name"].lower()] = Database(d["id"], d["name"], {t["name"]["L"]: t for t in d["tables"]})

    def state(self) -> dict[str, Any]:
        with self._mu:
            return {
                "next_id": self.next_id,
                "schema_version": self.schema_version,
                "row_ids": {str(k): v for k, v in self.row_ids.items()},
                "dbs": [{"id": d.id, "name": d.name, "tables": list(d.tables.values())} for d in self.dbs.values()],
            }

    def _alloc_id(self) -> int:
        self.next_id += 1
        return self.next_id

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
        columns: Sequence[ColumnInfo | Mapping[str, Any]],
        primary_key: Sequence[str] | None = None,
        clustered: bool = True,
    ) -> dict[str, Any]:
        """Create ``db.name`` and return its table info. ``columns`` are schema-box columns or
        TiDB column dicts; ``primary_key`` names the key columns (or take those flagged as
        primary key). A clustered single integer key is the handle; another clustered key is
        a common handle; a non-clustered key (or none) gives the table a _tidb_rowid."""
        cols = [c if isinstance(c, ColumnInfo) else ColumnInfo.from_json(_column_json(c)) for c in columns]
        with self._mu:
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
            self.schema_version += 1
            self._alloc_id()
            info = dict(built.to_json())
            info["update_timestamp"] = self._tso.get_ts()
            database.tables[name.lower()] = info
            self._changed()
            return copy.deepcopy(info)

    def table(self, db: str, name: str) -> dict[str, Any]:
        with self._mu:
            return copy.deepcopy(self._table_locked(db, name))

    def _table_locked(self, db: str, name: str) -> dict[str, Any]:
        database = self.dbs.get(db.lower())
        if database is None or name.lower() not in database.tables:
            raise SchemaError(f"unknown table {db}.{name}; known: {', '.join(self._names_locked()) or 'none'}")
        return database.tables[name.lower()]

    def _names_locked(self) -> list[str]:
        return [f"{d.name}.{t['name']['O']}" for d in self.dbs.values() for t in d.tables.values()]

    def table_by_id(self, table_id: int) -> tuple[str, dict[str, Any]]:
        with self._mu:
            for d in self.dbs.values():
                for t in d.tables.values():
                    if t["id"] == table_id:
                        return d.name, copy.deepcopy(t)
        raise SchemaError(f"unknown table id {table_id}")

    def list_tables(self) -> list[tuple[str, str]]:
        with self._mu:
            return [(d.name, t["name"]["O"]) for d in self.dbs.values() for t in d.tables.values()]

    def databases(self) -> list[Database]:
        with self._mu:
            return [Database(d.id, d.name, copy.deepcopy(d.tables)) for d in self.dbs.values()]

    def add_column(self, db: str, name: str, column: ColumnInfo | Mapping[str, Any], default: Any = None) -> dict[str, Any]:
        """Add a column at the end; rows written before read it as ``default`` (its
        origin_default). Bumps the schema version."""
        col = _column_json(column)
        with self._mu:
            table = self._table_locked(db, name)
            if _col_name(col).lower() in {_col_name(c).lower() for c in table["cols"]}:
                raise SchemaError(f"column {_col_name(col)!r} exists in {db}.{name}")
            table["max_col_id"] += 1
            col["id"], col["offset"] = table["max_col_id"], len(table["cols"])
            col["name"] = _name(_col_name(col))
            col.setdefault("state", T.STATE_PUBLIC)
            col.setdefault("version", 2)
            if default is not None:
                stored = default_text(default, ColumnInfo.from_json(col))
                col["origin_default"] = col["default"] = stored
            table["cols"].append(col)
            return self._bump_locked(table)

    def drop_column(self, db: str, name: str, column: str) -> dict[str, Any]:
        with self._mu:
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
            return self._bump_locked(table)

    def _bump_locked(self, table: dict[str, Any]) -> dict[str, Any]:
        self.schema_version += 1
        table["schema_version"] = self.schema_version
        table["update_timestamp"] = self._tso.get_ts()
        self._changed()
        return copy.deepcopy(table)

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
                rows = TableRows(f"{self.dbs[db.lower()].name}.{table['name']['O']}", table)
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


# ------------------------------------------------------------------------- transactions


def split_table_name(qualified: str) -> tuple[str, str]:
    db, sep, name = qualified.partition(".")
    if not sep:
        raise SchemaError(f"name tables as db.table, got {qualified!r}")
    return db, name


class LockResolver:
    """What TiDB's client does on meeting a lock: ask the primary, then commit or roll back
    the lock; wait while the owner is alive (bounded by its TTL)."""

    def __init__(self, store: PercolatorStore, tso: TimestampOracle) -> None:
        self.store = store
        self.tso = tso

    def resolve(self, err: KeyLockedError, caller_ts: int) -> bool:
        """True when the lock is gone (committed or rolled back); False while it is alive.
        An async-commit transaction is decided by its secondaries (``async_commit.py``)."""
        status = resolve_txn(self.store, err.primary, err.lock_start_ts, caller_ts, self.tso.get_ts())
        return status.state != "locked"

    def retry(self, fn: Callable[[], Any], caller_ts: int, timeout_s: float = 30.0) -> Any:
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

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
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

    def table(self, qualified: str) -> dict[str, Any]:
        """The table's info as of this transaction's first use of it (read-only)."""
        return self.rows(qualified).table

    def _read(self, key: bytes) -> bytes | None:
        if key in self.mutations:
            m = self.mutations[key]
            return m.value if m.op == binlog_pb2.PUT else None
        return self.resolver.retry(lambda: self.store.get(key, self.start_ts), self.start_ts)

    def get(self, qualified: str, handle: Any) -> dict[str, Any] | None:
        rows = self.rows(qualified)
        key = rows.key(handle)
        value = self._read(key)
        return None if value is None else rows.decode(key, value)

    # ---- writes

    def insert(self, qualified: str, row: Mapping[str, Any]) -> Any:
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
        key = rows.key(handle, index)
        if self._read(key) is not None:
            raise DuplicateKeyError(rows.qualified, handle, why=f"a row with this key exists at ts {self.start_ts}")
        self.mutations[key] = Mutation(binlog_pb2.PUT, key, rows.value(row, index))
        self.rows_written += 1
        return handle

    def update(self, qualified: str, row: Mapping[str, Any]) -> None:
        """Set the given columns of the row identified by the key columns in ``row`` (the
        values set are checked as ``insert`` checks them)."""
        rows = self.rows(qualified)
        index = self.rows_written
        handle = rows.handle(row, index)
        key = rows.key(handle, index)
        current = self._read(key)
        if current is None:
            raise RowNotFoundError(f"no row {handle!r} in {qualified} at ts {self.start_ts}")
        merged = rows.decode(key, current)
        merged.update(row)
        self.mutations[key] = Mutation(
            binlog_pb2.PUT, key, rows.value(merged, index, fill_defaults=False, checked=frozenset(name.lower() for name in row)))
        self.rows_written += 1

    def delete(self, qualified: str, handle: Any) -> None:
        key = self.rows(qualified).key(handle)
        if self._read(key) is None:
            raise RowNotFoundError(f"no row {handle!r} in {qualified} at ts {self.start_ts}")
        self.mutations[key] = Mutation(binlog_pb2.DELETE, key)

    def lock_row(self, qualified: str, handle: Any) -> None:
        """SELECT ... FOR UPDATE without a change: a LOCK mutation."""
        key = self.rows(qualified).key(handle)
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
        """Commit; returns commit_ts (0 for an empty transaction)."""
        if self.done:
            raise UpstreamError(f"transaction started at {self.start_ts} already finished")
        if not self.mutations:
            self.done = True
            return 0
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
                commit_ts = max(commit_ts, self.resolver.retry(
                    lambda b=batch: self.store.prewrite(b, primary, self.start_ts, self.ttl_ms, async_commit=True,
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
    make_txn: Callable[[], Txn], body: Callable[[Txn], Any], retries: int = 20,
    on_retry: Callable[[int, Exception], None] | None = None,
) -> Any:
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


def scan_table(
    store: PercolatorStore, tso: TimestampOracle, table: Mapping[str, Any], ts: int,
) -> list[dict[str, Any]]:
    """Every row of a table at ts (locks met are resolved as a reader would)."""
    start, end = record_range(table["id"])
    resolver = LockResolver(store, tso)
    pairs = resolver.retry(lambda: store.scan(start, end, ts), ts)
    info = table_info_of(table)
    return [decode_value(table, k, v, info) for k, v in pairs]


def get_row(
    store: PercolatorStore, tso: TimestampOracle, table: Mapping[str, Any], handle: Any, ts: int,
) -> dict[str, Any] | None:
    key = record_key(table, handle)
    value = LockResolver(store, tso).retry(lambda: store.get(key, ts), ts)
    return None if value is None else decode_value(table, key, value)
