"""Schema changes as the mini cluster's TiDB makes them: which ALTERs keep the column id, how a
value moves to a column's new type, the DDL event that carries a change into the binlog, and
the schema lease that orders DDL and transaction commits.

TiDB changes a column *in place* (same column id, no row rewritten) when every stored value
reads the same under the new type: a wider integer of the same signedness, a longer
CHAR/VARCHAR/BINARY/VARBINARY, an ENUM or SET whose members are the old ones with more
appended. Any other MODIFY COLUMN is a *reorg*: TiDB adds a hidden column with a new id,
backfills it from the old one (converting every value, failing the DDL on one that does not
fit), then swaps it in under the old name and offset and drops the old id. The mini cluster
does the same in one step: the backfilled rows commit at the DDL's commit ts.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any, Iterator, Mapping

from pyspark_theflash.codec import column_types as T
from pyspark_theflash.codec.row_v1 import encode_row_v1
from pyspark_theflash.codec.row_v2 import datum_for_column
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.schema import ColumnInfo, TableInfo
from pyspark_theflash.schema.info_json import TableInfoJson
from pyspark_theflash.upstream_client.errors import SchemaError

DDL = binlog_pb2.Ddl

# TiDB's integer types from narrow to wide (MEDIUMINT, type code 9, sits between SMALLINT and INT).
_INT_RANK = {T.TYPE_TINY: 1, T.TYPE_SHORT: 2, T.TYPE_INT24: 3, T.TYPE_LONG: 4, T.TYPE_LONGLONG: 5}
_INT_BITS = {T.TYPE_TINY: 8, T.TYPE_SHORT: 16, T.TYPE_INT24: 24, T.TYPE_LONG: 32, T.TYPE_LONGLONG: 64}
_CHAR_TYPES = {T.TYPE_VARCHAR, T.TYPE_STRING, T.TYPE_VAR_STRING}
ROW_FORMATS = (1, 2)


def changes_in_place(old: ColumnInfo, new: ColumnInfo) -> bool:
    """Does TiDB keep the column id for ``MODIFY COLUMN old -> new`` (every stored value reads
    the same under the new type)?"""
    if old.tp in _INT_RANK and new.tp in _INT_RANK:
        return old.unsigned == new.unsigned and _INT_RANK[new.tp] >= _INT_RANK[old.tp]
    if old.tp in _CHAR_TYPES and new.tp == old.tp:
        return old.is_binary_string == new.is_binary_string and old.collate == new.collate and new.flen >= old.flen
    if old.tp in (T.TYPE_ENUM, T.TYPE_SET) and new.tp == old.tp:
        return tuple(new.elems[:len(old.elems)]) == tuple(old.elems)
    return False


def int_range(col: ColumnInfo) -> tuple[int, int]:
    bits = _INT_BITS[col.tp]
    return (0, (1 << bits) - 1) if col.unsigned else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def convert_value(value: Any, old: ColumnInfo, new: ColumnInfo, where: str) -> object:
    """``value`` (as ``codec.decode_row`` reads it under ``old``) as the new type stores it, or
    SchemaError when it does not fit (TiDB fails the DDL then: 'Data truncated')."""
    if value is None:
        if new.not_null:
            raise SchemaError(f"{where}: NULL does not fit NOT NULL column {new.name!r}")
        return None
    try:
        if new.tp in _INT_RANK or new.tp == T.TYPE_YEAR:
            if isinstance(value, (bytes, bytearray)):
                value = value.decode("utf-8")
            if isinstance(value, str):
                value = Decimal(value.strip())
            if isinstance(value, (float, Decimal)) and value != int(value):
                raise SchemaError(f"{where}: {value!r} is not an integer")
            v = int(value)
            lo, hi = int_range(new) if new.tp in _INT_RANK else (1901, 2155)
            if not lo <= v <= hi:
                raise SchemaError(f"{where}: {v} is out of the range of {new.type_name} column {new.name!r} [{lo}, {hi}]")
            return v
        if new.tp in (T.TYPE_FLOAT, T.TYPE_DOUBLE):
            return float(value)
        if new.tp in (T.TYPE_NEWDECIMAL, T.TYPE_DECIMAL):
            d = Decimal(str(value)) if not isinstance(value, Decimal) else value
            frac = max(new.decimal, 0)
            if new.flen > 0 and abs(d) >= Decimal(10) ** (new.flen - frac):
                raise SchemaError(f"{where}: {d} is too wide for DECIMAL({new.flen},{frac}) column {new.name!r}")
            return d
        if new.tp in T.STRING_TYPES:
            if isinstance(value, (bytes, bytearray)):
                text = bytes(value) if new.is_binary_string else bytes(value).decode("utf-8", "replace")
            elif isinstance(value, (dt.date, dt.datetime, dt.timedelta)):
                text = str(value)
            else:
                text = str(value)
            if new.flen > 0 and len(text) > new.flen:
                raise SchemaError(f"{where}: {text!r} is longer than {new.name!r} ({new.flen})")
            return text
    except (ValueError, InvalidOperation, UnicodeDecodeError) as err:
        raise SchemaError(f"{where}: cannot convert {value!r} to {new.type_name}: {err}") from err
    return value


def encode_row_v1_for_table(info: TableInfo, values: Mapping[str, object]) -> bytes:
    """TiDB's old row format (v1) of a row given by column name (the int handle column lives
    in the key), as clusters upgraded from TiDB before 4.0 still write it."""
    handle = info.handle_column if info.pk_is_handle else None
    cols = []
    for name, value in values.items():
        col = info.column(name)
        if handle is not None and col.id == handle.id:
            continue
        cols.append((col.id, datum_for_column(col, value)))
    return bytes(encode_row_v1(cols))


def ddl_event(kind: binlog_pb2.Ddl.Type, commit_ts: int, schema_version: int, db: str, info: TableInfoJson,
              old_table_id: int = 0, query: str = "") -> binlog_pb2.Event:
    """The binlog event of one finished schema change (region 0: it belongs to no region)."""
    return binlog_pb2.Event(region_id=0, index=0, ddl=binlog_pb2.Ddl(
        type=kind, commit_ts=commit_ts, schema_version=schema_version, db=db, table_id=int(info["id"]),
        old_table_id=old_table_id, table_info=json.dumps(info, sort_keys=True).encode(), query=query,
    ))


class SchemaLease:
    """Orders schema changes and commits, as TiDB's schema lease and commit-time schema check do
    together: a transaction commits inside ``shared()`` after checking that the tables it used
    still have the schema it encoded its rows with (else it aborts and is retried); a DDL runs
    inside ``exclusive()``, takes its commit ts there and appends its event before any later
    commit can start. So every row committed after a DDL's commit ts was encoded with that
    schema (or a newer one), and the DDL event is in the log before such rows.

    Writers first: once a DDL waits, new commits wait behind it. ``exclusive()`` is re-entrant
    for the thread holding it."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._depth = 0
        self._waiting_writers = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:  # a DDL's own work (backfill) inside its exclusive hold
                reentrant = True
            else:
                reentrant = False
                while self._writer is not None or self._waiting_writers:
                    self._cond.wait()
                self._readers += 1
        try:
            yield
        finally:
            if not reentrant:
                with self._cond:
                    self._readers -= 1
                    if not self._readers:
                        self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
            else:
                self._waiting_writers += 1
                try:
                    while self._writer is not None or self._readers:
                        self._cond.wait()
                finally:
                    self._waiting_writers -= 1
                self._writer, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if not self._depth:
                    self._writer = None
                    self._cond.notify_all()
