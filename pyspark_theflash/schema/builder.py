"""Building table infos from SQL type strings, for the mini cluster and tests.

``column("price", "DECIMAL(10,2)", not_null=True, default="0.00")`` gives the ``ColumnInfo``
TiDB would write for that column definition (type code, flags, Flen/Decimal, charset and
collation); ``table(42, "orders", [...], primary_key=["id"])`` numbers the columns, flags the
key columns and decides the handle as TiDB does: a clustered single integer key is the row
handle (``pk_is_handle``), any other clustered key a common handle, and a non-clustered key
(or none) leaves the rows keyed by a hidden ``_tidb_rowid``.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Final, TypedDict

from pyspark_theflash.codec import column_types as T
from pyspark_theflash.schema.errors import SchemaError
from pyspark_theflash.schema.info_json import TableInfoJson
from pyspark_theflash.schema.table_info import (
    CURRENT_COLUMN_INFO_VERSION,
    STATE_PUBLIC,
    ColumnInfo,
    TableInfo,
    name_json,
    primary_index_json,
)

_UNSET: Final = object()  # a default not given (None is NULL)

_TYPE_RE = re.compile(
    r"^\s*(?P<name>[A-Za-z]+)\s*(?:\((?P<args>.*)\))?\s*(?P<mods>(?:\s*(?:UNSIGNED|SIGNED|ZEROFILL))*)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_QUOTED_RE = re.compile(r"\s*'((?:[^']|'')*)'\s*(?:,|$)")

# name -> (type code, default Flen signed, default Flen unsigned)
_INTEGERS = {
    "TINYINT": (T.TYPE_TINY, 4, 3),
    "SMALLINT": (T.TYPE_SHORT, 6, 5),
    "MEDIUMINT": (T.TYPE_INT24, 9, 8),
    "INT": (T.TYPE_LONG, 11, 10),
    "INTEGER": (T.TYPE_LONG, 11, 10),
    "BIGINT": (T.TYPE_LONGLONG, 20, 20),
    "BOOL": (T.TYPE_TINY, 1, 1),
    "BOOLEAN": (T.TYPE_TINY, 1, 1),
}
# name -> (type code, binary?, Flen)
_LOB = {
    "TINYTEXT": (T.TYPE_TINY_BLOB, False, 255),
    "TEXT": (T.TYPE_BLOB, False, 65535),
    "MEDIUMTEXT": (T.TYPE_MEDIUM_BLOB, False, 16777215),
    "LONGTEXT": (T.TYPE_LONG_BLOB, False, 4294967295),
    "TINYBLOB": (T.TYPE_TINY_BLOB, True, 255),
    "BLOB": (T.TYPE_BLOB, True, 65535),
    "MEDIUMBLOB": (T.TYPE_MEDIUM_BLOB, True, 16777215),
    "LONGBLOB": (T.TYPE_LONG_BLOB, True, 4294967295),
}


def _int_args(args: str | None, sql: str, count: int) -> list[int]:
    if args is None or not args.strip():
        return []
    parts = [p.strip() for p in args.split(",")]
    if len(parts) > count or not all(p.isdigit() for p in parts):
        raise SchemaError(f"cannot read the length arguments of SQL type {sql!r}")
    return [int(p) for p in parts]


def _quoted_list(args: str | None, sql: str) -> tuple[str, ...]:
    if not args:
        raise SchemaError(f"SQL type {sql!r} needs a list of quoted elements, e.g. ENUM('a','b')")
    out: list[str] = []
    pos = 0
    while pos < len(args):
        m = _QUOTED_RE.match(args, pos)
        if not m:
            raise SchemaError(f"cannot read the elements of SQL type {sql!r} at {args[pos:]!r}")
        out.append(m.group(1).replace("''", "'"))
        pos = m.end()
    return tuple(out)


def _fsp(args: list[int], sql: str) -> int:
    fsp = args[0] if args else 0
    if not 0 <= fsp <= 6:
        raise SchemaError(f"fractional seconds precision {fsp} of {sql!r} is outside [0, 6]")
    return fsp


class _Charset(TypedDict):
    charset: str
    collate: str


class SqlTypeFields(TypedDict, total=False):
    """``ColumnInfo``'s type fields of a SQL column type (``parse_sql_type``), and the
    generated-column fields ``column`` adds."""

    tp: int
    flag: int
    flen: int
    decimal: int
    charset: str
    collate: str
    elems: tuple[str, ...]
    generated_expr: str
    generated_stored: bool


def _fields(tp: int, flag: int, flen: int, decimal: int, cs: _Charset, elems: tuple[str, ...] | None = None) -> SqlTypeFields:
    out = SqlTypeFields(tp=tp, flag=flag, flen=flen, decimal=decimal, charset=cs["charset"], collate=cs["collate"])
    if elems is not None:
        out["elems"] = elems
    return out


def parse_sql_type(sql: str) -> SqlTypeFields:
    """Type fields (tp, flag, flen, decimal, charset, collate, elems) of a SQL column type."""
    m = _TYPE_RE.match(sql)
    if not m:
        raise SchemaError(f"cannot read SQL type {sql!r}")
    name = m.group("name").upper()
    args = m.group("args")
    mods = m.group("mods").upper().split()
    unsigned = "UNSIGNED" in mods or "ZEROFILL" in mods
    flag = (T.UNSIGNED_FLAG if unsigned else 0) | (T.ZEROFILL_FLAG if "ZEROFILL" in mods else 0)
    binary = _Charset(charset=T.BINARY_CHARSET, collate=T.BINARY_COLLATE)
    text = _Charset(charset=T.DEFAULT_CHARSET, collate=T.DEFAULT_COLLATE)
    if name in _INTEGERS:
        tp, flen_signed, flen_unsigned = _INTEGERS[name]
        given = _int_args(args, sql, 1)
        flen = given[0] if given else (flen_unsigned if unsigned else flen_signed)
        return _fields(tp, flag, flen, 0, binary)
    if unsigned and name not in ("FLOAT", "DOUBLE", "REAL", "DECIMAL", "NUMERIC"):
        raise SchemaError(f"UNSIGNED does not apply to SQL type {sql!r}")
    if name in ("FLOAT", "DOUBLE", "REAL"):
        given = _int_args(args, sql, 2)
        tp = T.TYPE_FLOAT if name == "FLOAT" else T.TYPE_DOUBLE
        if name == "FLOAT" and len(given) == 1 and given[0] > 24:  # FLOAT(p), p > 24 is a DOUBLE
            tp, given = T.TYPE_DOUBLE, []
        flen = given[0] if len(given) == 2 else (12 if tp == T.TYPE_FLOAT else 22)
        decimal = given[1] if len(given) == 2 else T.UNSPECIFIED_LENGTH
        return _fields(tp, flag, flen, decimal, binary)
    if name in ("DECIMAL", "NUMERIC", "DEC", "FIXED"):
        given = _int_args(args, sql, 2)
        precision = given[0] if given else 10
        scale = given[1] if len(given) == 2 else 0
        if not 1 <= precision <= 65 or not 0 <= scale <= 30 or scale > precision:
            raise SchemaError(f"{sql!r}: DECIMAL needs 1 <= precision <= 65, 0 <= scale <= min(30, precision)")
        return _fields(T.TYPE_NEWDECIMAL, flag, precision, scale, binary)
    if name == "DATE":
        return _fields(T.TYPE_DATE, flag, 10, 0, binary)
    if name in ("DATETIME", "TIMESTAMP"):
        fsp = _fsp(_int_args(args, sql, 1), sql)
        tp = T.TYPE_DATETIME if name == "DATETIME" else T.TYPE_TIMESTAMP
        return _fields(tp, flag, 19 + (fsp + 1 if fsp else 0), fsp, binary)
    if name == "TIME":
        fsp = _fsp(_int_args(args, sql, 1), sql)
        return _fields(T.TYPE_DURATION, flag, 10 + (fsp + 1 if fsp else 0), fsp, binary)
    if name == "YEAR":
        return _fields(T.TYPE_YEAR, T.UNSIGNED_FLAG | T.ZEROFILL_FLAG, 4, 0, binary)
    if name in ("CHAR", "BINARY"):
        given = _int_args(args, sql, 1)
        cs = binary if name == "BINARY" else text
        bin_flag = T.BINARY_FLAG if name == "BINARY" else 0
        return _fields(T.TYPE_STRING, bin_flag, given[0] if given else 1, 0, cs)
    if name in ("VARCHAR", "VARBINARY"):
        given = _int_args(args, sql, 1)
        if not given:
            raise SchemaError(f"{sql!r} needs a length, e.g. {name}(255)")
        cs = binary if name == "VARBINARY" else text
        bin_flag = T.BINARY_FLAG if name == "VARBINARY" else 0
        return _fields(T.TYPE_VARCHAR, bin_flag, given[0], 0, cs)
    if name in _LOB:
        tp, is_binary, flen = _LOB[name]
        cs = binary if is_binary else text
        flag = T.BLOB_FLAG | (T.BINARY_FLAG if is_binary else 0)
        return _fields(tp, flag, flen, 0, cs)
    if name in ("ENUM", "SET"):
        elems = _quoted_list(args, sql)
        tp = T.TYPE_ENUM if name == "ENUM" else T.TYPE_SET
        if tp == T.TYPE_SET and len(elems) > 64:
            raise SchemaError(f"{sql!r}: a SET has at most 64 elements")
        return _fields(tp, 0, T.UNSPECIFIED_LENGTH, 0, text, elems)
    if name == "BIT":
        given = _int_args(args, sql, 1)
        width = given[0] if given else 1
        if not 1 <= width <= 64:
            raise SchemaError(f"{sql!r}: BIT width must be 1..64")
        return _fields(T.TYPE_BIT, T.UNSIGNED_FLAG, width, 0, binary)
    if name == "JSON":
        return _fields(T.TYPE_JSON, T.BINARY_FLAG, T.UNSPECIFIED_LENGTH, 0, binary)
    raise SchemaError(
        f"unsupported SQL type {sql!r}; supported: integer types [UNSIGNED], FLOAT, DOUBLE, DECIMAL(p,s), DATE, "
        "DATETIME(fsp), TIMESTAMP(fsp), TIME(fsp), YEAR, CHAR/VARCHAR(n), TEXT, BINARY/VARBINARY(n), BLOB, "
        "ENUM(...), SET(...), BIT(n), JSON"
    )


def default_text(value: object, col: ColumnInfo) -> str | None:
    """TiDB's JSON form of a default value: a string (or None for NULL)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:  # TIMESTAMP defaults: UTC (column version >= 1) or the system zone
            from pyspark_theflash.schema.defaults import timestamp_default_zone

            value = value.astimezone(timestamp_default_zone(col)).replace(tzinfo=None)
        return value.isoformat(sep=" ", timespec="microseconds" if value.microsecond or col.decimal else "seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        total_us = value // dt.timedelta(microseconds=1)
        sign = "-" if total_us < 0 else ""
        seconds, us = divmod(abs(total_us), 1_000_000)
        h, rem = divmod(seconds, 3600)
        text = f"{sign}{h:02d}:{rem // 60:02d}:{rem % 60:02d}"
        return text + (f".{us:06d}" if us else "")
    if isinstance(value, (bytes, bytearray)):
        try:  # TiDB's JSON carries defaults as UTF-8 text; other bytes would not survive it
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise SchemaError(f"binary default {value!r} of column {col.name!r} is not UTF-8; TiDB's table info cannot carry it") from None
    if isinstance(value, (set, frozenset, list, tuple)):
        return ",".join(str(v) for v in value)
    raise SchemaError(f"cannot use {type(value).__name__} {value!r} as the default of column {col.name!r}")


class ColumnOptions(TypedDict, total=False):
    """``column``'s options, for a caller that passes them on (``upstream.tidb.make_column``)."""

    not_null: bool
    default: object
    origin_default: object
    primary_key: bool
    auto_increment: bool
    unsigned: bool
    elems: Sequence[str] | None
    charset: str | None
    collate: str | None
    generated: str | None
    stored: bool
    version: int


def column(
    name: str,
    sql_type: str,
    *,
    not_null: bool = False,
    default: object = _UNSET,
    origin_default: object = _UNSET,
    primary_key: bool = False,
    auto_increment: bool = False,
    unsigned: bool = False,
    elems: Sequence[str] | None = None,
    charset: str | None = None,
    collate: str | None = None,
    generated: str | None = None,
    stored: bool = False,
    version: int = CURRENT_COLUMN_INFO_VERSION,
) -> ColumnInfo:
    """A column definition from a SQL type string; ``table`` assigns its id and offset.

    ``generated``: the expression of a generated column as TiDB keeps it
    (``generated_expr_string``, e.g. ``"`a` + 1"``), VIRTUAL unless ``stored``. ``version``: TiDB's
    column info version (0: a column made before TiDB 2.1, TIMESTAMP defaults in the server's
    system time zone; ``schema.defaults``).

    ``default`` is the column's DEFAULT (a Python value or TiDB's string form); the origin
    default (what rows written before the column existed read as) is the same unless given.
    """
    fields = parse_sql_type(sql_type + (" UNSIGNED" if unsigned and "UNSIGNED" not in sql_type.upper() else ""))
    flag = fields["flag"]
    if not_null or primary_key:
        flag |= T.NOT_NULL_FLAG
    if primary_key:
        flag |= T.PRI_KEY_FLAG
    if auto_increment:
        flag |= T.AUTO_INCREMENT_FLAG
    if elems is not None:
        fields["elems"] = tuple(elems)
    if charset is not None:
        fields["charset"] = charset
    if collate is not None:
        fields["collate"] = collate
    if default is _UNSET and not not_null and not primary_key:
        default = None
    if default is _UNSET:
        flag |= T.NO_DEFAULT_VALUE_FLAG
        default = None
    if generated:
        fields["generated_expr"] = generated
        fields["generated_stored"] = bool(stored)
    fields["flag"] = flag
    col = ColumnInfo(id=0, name=name, offset=0, version=version, **fields)
    default_json = default_text(default, col)
    origin = default_json if origin_default is _UNSET else default_text(origin_default, col)
    origin_bit = None
    if col.tp == T.TYPE_BIT and origin is not None:
        origin_bit = base64.b64encode(_bit_bytes(origin, col)).decode("ascii")
    return dataclasses.replace(col, default=default_json, origin_default=origin, origin_default_bit=origin_bit)


def _bit_bytes(text: str, col: ColumnInfo) -> bytes:
    if not text.isdigit():
        raise SchemaError(f"BIT column {col.name!r} needs an integer default, got {text!r}")
    value = int(text)
    width = (max(col.flen, 1) + 7) // 8
    if value >= 1 << (8 * width):
        raise SchemaError(f"default {value} does not fit BIT({col.flen}) column {col.name!r}")
    return value.to_bytes(width, "big")


def table(
    table_id: int,
    name: str,
    columns: Sequence[ColumnInfo],
    *,
    primary_key: Sequence[str] = (),
    clustered: bool = True,
    db: str = "",
    schema_version: int = 1,
) -> TableInfo:
    """A public table of these columns, numbered 1.. in order, keyed as TiDB would key it."""
    names = [c.name.lower() for c in columns]
    if len(set(names)) != len(names):
        raise SchemaError(f"table {name!r} has duplicate column names: {names}")
    key = list(primary_key) or [c.name for c in columns if c.is_primary_key]
    unknown = [k for k in key if k.lower() not in names]
    if unknown:
        raise SchemaError(f"primary key column(s) {unknown} are not columns of table {name!r}")
    key_lower = {k.lower() for k in key}
    cols: list[ColumnInfo] = []
    for i, c in enumerate(columns):
        flag = c.flag
        if c.name.lower() in key_lower:
            flag |= T.PRI_KEY_FLAG | T.NOT_NULL_FLAG
        cols.append(dataclasses.replace(c, id=i + 1, offset=i, flag=flag, state=STATE_PUBLIC))
    key_cols = [cols[names.index(k.lower())] for k in key]
    pk_is_handle = clustered and len(key_cols) == 1 and key_cols[0].tp in T.INTEGER_TYPES
    is_common_handle = clustered and bool(key_cols) and not pk_is_handle
    raw: TableInfoJson = {
        "id": table_id,
        "name": name_json(name),
        "charset": T.DEFAULT_CHARSET,
        "collate": T.DEFAULT_COLLATE,
        "cols": [c.to_json() for c in cols],
        "index_info": [primary_index_json(key_cols)] if key_cols and not pk_is_handle else [],
        "pk_is_handle": pk_is_handle,
        "is_common_handle": is_common_handle,
        "common_handle_version": 1 if is_common_handle else 0,
        "state": STATE_PUBLIC,
        "max_col_id": len(cols),
        "max_idx_id": 1 if key_cols and not pk_is_handle else 0,
        "schema_version": schema_version,
    }
    return TableInfo.from_json(raw, db=db)
