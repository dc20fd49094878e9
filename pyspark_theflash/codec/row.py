"""One TiDB row value (format v2 or v1) -> {column name: Python value}, for the columns asked
for (``codec.row_columns.RowColumns``, which ``schema.row_columns(table)`` builds).

Python types by TiDB type (the per-row reference for the vectorised `codec.batch`):

| TiDB | Python |
|---|---|
| TINYINT..BIGINT (signed or unsigned), YEAR | int |
| FLOAT / DOUBLE | float |
| DECIMAL | decimal.Decimal (scale = the column's) |
| DATE | datetime.date |
| DATETIME | datetime.datetime, naive |
| TIMESTAMP | datetime.datetime, aware, tzinfo=UTC (TiDB stores TIMESTAMP in UTC) |
| TIME | datetime.timedelta (microseconds; nanoseconds are truncated toward zero) |
| CHAR/VARCHAR/TEXT (text charset) | str (invalid UTF-8 replaced by U+FFFD) |
| BINARY/VARBINARY/BLOB (binary charset) | bytes |
| JSON | str, the JSON text exactly as TiDB prints it |
| ENUM | str, the element (index 1-based into Elems; 0 is '') |
| SET | str, the elements of the bitmask joined by ',' |
| BIT | int |
| NULL | None |

Zero dates (`0000-00-00`) and dates Python cannot hold (e.g. `2021-02-30`, stored by TiDB under a
relaxed sql_mode) read as None, like JDBC's zeroDateTimeBehavior=convertToNull (which is why
DATE/DATETIME/TIMESTAMP columns are nullable in the Arrow and Spark schemas even when NOT NULL).

A value its column's type cannot hold (2**40 in an INT, whose Arrow type is int32; 123456.5 in a
DECIMAL(5,2); 1e300 in a FLOAT) raises `ColumnValueOutOfRangeError` naming the table, handle,
column and value: the row was written under another schema (e.g. a column widened in place),
and a wrapped or rounded value must never be stored. `codec.batch` raises the same.

A column absent from the row takes its origin default (the value it had when the column was
added), which is NULL only when that default is NULL. Column ids in the row that the schema
does not know (dropped columns) are ignored.
"""
from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_HALF_UP, Decimal, localcontext


from pyspark_theflash.codec import column_types as T
from pyspark_theflash.codec import json_binary
from pyspark_theflash.codec.datum import Datum
from pyspark_theflash.codec.errors import ColumnValueOutOfRangeError, MalformedError, TruncatedError
from pyspark_theflash.codec.row_columns import RowColumn, RowColumns
from pyspark_theflash.codec.row_v1 import decode_row_v1
from pyspark_theflash.codec.row_v2 import (
    BadRowError,
    decode_decimal_v2,
    decode_float_v2,
    decode_int_v2,
    decode_row_v2,
    decode_uint_v2,
    is_row_v2,
)
from pyspark_theflash.codec.time import unpack_time_fields

_UTC = dt.timezone.utc
_DATE_TYPES = frozenset({T.TYPE_DATE, T.TYPE_NEWDATE})
_INT_LIKE = T.INTEGER_TYPES | {T.TYPE_YEAR}
FLOAT32_MAX = 3.4028234663852886e38
_UINT64_MAX = (1 << 64) - 1


def decode_row(data: bytes, columns: RowColumns, handle: int | None = None) -> dict[str, object]:
    """Decode one row value (v2 if its first byte is 0x80, else v1 datums) to column name ->
    Python value for every column of ``columns`` (see the module table)."""
    try:
        return _decode_row(data, columns, handle)
    except ColumnValueOutOfRangeError as e:
        raise e.located(table=columns.label, handle=handle) from None


def _decode_row(data: bytes, columns: RowColumns, handle: int | None) -> dict[str, object]:
    handle_id = columns.handle_id
    out: dict[str, object] = {}
    if is_row_v2(data):
        raw = decode_row_v2(data)
        for col in columns.columns:
            if col.id == handle_id:
                out[col.name] = handle_value(col, handle)
            elif col.id in raw:
                v = raw[col.id]
                out[col.name] = None if v is None else value_from_v2(col, v)
            else:
                out[col.name] = origin_default_value(col)
        return out
    datums = decode_row_v1(data)
    for col in columns.columns:
        if col.id == handle_id:
            out[col.name] = handle_value(col, handle)
        elif col.id in datums:
            out[col.name] = value_from_datum(col, datums[col.id])
        else:
            out[col.name] = origin_default_value(col)
    return out


def handle_value(column: RowColumn, handle: int | None) -> int | None:
    """The int handle as the primary key column's value (an unsigned BIGINT handle is stored as
    the int64 with the same bits)."""
    if handle is None:
        return None
    h = int(handle)
    return checked_int(column, h & _UINT64_MAX if column.unsigned else h)


# ---------------------------------------------------------------------------------------------
# what a column's type holds


def out_of_range(column: RowColumn, value: object, holds: str) -> ColumnValueOutOfRangeError:
    return ColumnValueOutOfRangeError(column.name, column.id, _sql_type(column), value, holds)


def _sql_type(column: RowColumn) -> str:
    name = column.type_name
    if column.tp in T.DECIMAL_TYPES:
        name += f"({decimal_precision(column)},{max(column.decimal, 0)})"
    elif column.tp == T.TYPE_BIT:
        name += f"({column.flen})"
    return name + (" UNSIGNED" if column.unsigned and column.tp in _INT_LIKE else "")


def checked_int(column: RowColumn, n: int) -> int:
    lo, hi = column.int_range
    if not lo <= n <= hi:
        raise int_out_of_range(column, n)
    return n


def int_out_of_range(column: RowColumn, n: int) -> ColumnValueOutOfRangeError:
    lo, hi = column.int_range
    return out_of_range(column, n, f"{column.arrow_type}: {lo}..{hi}")


def checked_float(column: RowColumn, f: float) -> float:
    """A FLOAT column is float32: a finite value beyond float32's range does not fit."""
    if column.tp == T.TYPE_FLOAT and math.isfinite(f) and abs(f) > FLOAT32_MAX:
        raise float_out_of_range(column, f)
    return f


def float_out_of_range(column: RowColumn, f: float) -> ColumnValueOutOfRangeError:
    return out_of_range(column, f, f"float32: |v| <= {FLOAT32_MAX!r}")


def decimal_precision(column: RowColumn) -> int:
    return column.flen if column.flen > 0 else 65  # unspecified: MySQL's maximum


def checked_decimal(column: RowColumn, d: Decimal) -> Decimal:
    """DECIMAL(p,s) holds |v| < 10**(p-s) with no non-zero digit beyond the s-th fractional one."""
    if d.is_finite():
        p, s = decimal_precision(column), max(column.decimal, 0)
        with localcontext() as ctx:
            ctx.prec = 100
            fits = d.copy_abs() < Decimal(10) ** (p - s) and d == d.quantize(Decimal(1).scaleb(-s))
        if not fits:
            raise out_of_range(column, format(d, "f"),
                               f"DECIMAL({p},{s}): {p - s} integer and {s} fractional digit(s)")
    return d


# ---------------------------------------------------------------------------------------------
# logical value (int / float / Decimal / bytes / JSON) -> Python value of the column's type


def value_from_v2(column: RowColumn, raw: bytes) -> object:
    """One not-null v2 value of `column` as its Python value."""
    tp = column.tp
    try:
        if tp in _INT_LIKE:
            return checked_int(column, decode_uint_v2(raw) if column.unsigned else decode_int_v2(raw))
        if tp in T.FLOAT_TYPES:
            return checked_float(column, decode_float_v2(raw))
        if tp in T.DECIMAL_TYPES:
            return checked_decimal(column, _decimal_for(column, decode_decimal_v2(raw)))
        if tp in T.TIME_TYPES:
            return time_value(column, decode_uint_v2(raw))
        if tp == T.TYPE_DURATION:
            return duration_value(decode_int_v2(raw))
        if tp in (T.TYPE_ENUM, T.TYPE_SET, T.TYPE_BIT):
            return _unsigned_value(column, decode_uint_v2(raw))
        if tp == T.TYPE_JSON:
            return json_binary.json_to_text(raw)
    except (MalformedError, TruncatedError) as e:
        raise BadRowError(f"column {column.name} (id {column.id}, {column.type_name}): {e}") from e
    return string_value(column, raw)


def value_from_datum(column: RowColumn, datum: Datum) -> object:
    """One v1 datum of `column` as its Python value (kinds come back as their flags say)."""
    kind, v = datum.kind, datum.value
    if kind in ("null", "max") or v is None:
        return None
    tp = column.tp
    if tp in _INT_LIKE:
        n = int(v)
        return checked_int(column, n & _UINT64_MAX if column.unsigned else n)
    if tp in T.FLOAT_TYPES:
        return checked_float(column, float(v))
    if tp in T.DECIMAL_TYPES:
        return checked_decimal(column, _decimal_for(column, Decimal(v[0] if isinstance(v, tuple) else v)))
    if tp in T.TIME_TYPES:
        if isinstance(v, (dt.date, dt.datetime)):
            return _time_from_python(column, v)
        return time_value(column, int(v))
    if tp == T.TYPE_DURATION:
        if isinstance(v, dt.timedelta):
            return v
        return duration_value(int(v))
    if tp in (T.TYPE_ENUM, T.TYPE_SET, T.TYPE_BIT):
        return _unsigned_value(column, int(v))
    if tp == T.TYPE_JSON:
        if isinstance(v, (bytes, bytearray)):
            return json_binary.json_to_text(bytes(v))
        return json_binary.json_to_text(json_binary.encode_json(v))
    if isinstance(v, str):
        v = v.encode("utf-8")
    return string_value(column, bytes(v))


def string_value(column: RowColumn, raw: bytes) -> str | bytes:
    if column.is_binary_string or column.tp not in T.STRING_TYPES:
        return bytes(raw)
    return bytes(raw).decode("utf-8", errors="replace")


def time_value(column: RowColumn, packed: int) -> dt.date | dt.datetime | None:
    """A packed DATE/DATETIME/TIMESTAMP; zero or impossible dates are None."""
    y, mo, d, h, mi, s, us = unpack_time_fields(packed)
    try:
        if column.tp in _DATE_TYPES:
            return dt.date(y, mo, d)
        return dt.datetime(y, mo, d, h, mi, s, us,
                           tzinfo=_UTC if column.tp == T.TYPE_TIMESTAMP else None)
    except ValueError:
        return None


def _time_from_python(column: RowColumn, v: dt.date) -> dt.date | dt.datetime:
    if column.tp in _DATE_TYPES:
        return v.date() if isinstance(v, dt.datetime) else v
    if not isinstance(v, dt.datetime):
        v = dt.datetime(v.year, v.month, v.day)
    if column.tp == T.TYPE_TIMESTAMP:
        return v.astimezone(_UTC) if v.tzinfo else v.replace(tzinfo=_UTC)
    return v.replace(tzinfo=None)


def duration_value(nanos: int) -> dt.timedelta:
    """TIME nanoseconds as a timedelta, truncated toward zero to microseconds."""
    micros = abs(nanos) // 1000
    return dt.timedelta(microseconds=-micros if nanos < 0 else micros)


def _decimal_for(column: RowColumn, d: Decimal) -> Decimal:
    if 0 <= column.decimal <= 30 and d.is_finite():
        with localcontext() as ctx:  # DECIMAL(65,30) needs more than the default 28 digits
            ctx.prec = 100
            return d.quantize(Decimal(1).scaleb(-column.decimal), rounding=ROUND_HALF_UP)
    return d


def _unsigned_value(column: RowColumn, n: int) -> object:
    if column.tp == T.TYPE_ENUM:
        return enum_name(column, n)
    if column.tp == T.TYPE_SET:
        return set_names(column, n)
    return checked_int(column, n)  # BIT


def enum_name(column: RowColumn, index: int) -> str:
    if index == 0:
        return ""
    if not 1 <= index <= len(column.elems):
        raise BadRowError(f"ENUM column {column.name} (id {column.id}) holds index {index}, but "
                          f"it has {len(column.elems)} element(s); the schema is not the row's")
    return column.elems[index - 1]


def set_names(column: RowColumn, mask: int) -> str:
    if mask >> len(column.elems):
        raise BadRowError(f"SET column {column.name} (id {column.id}) holds bitmask {mask:#x}, "
                          f"beyond its {len(column.elems)} element(s); the schema is not the row's")
    return ",".join(e for i, e in enumerate(column.elems) if mask >> i & 1)


# ---------------------------------------------------------------------------------------------
# origin defaults


def origin_default_value(column: RowColumn) -> object:
    """The Python value of the column's origin default, typed as `decode_row` types values.

    The column's ``origin_default_value()`` is a value of its Arrow type (schema.defaults parses
    TiDB's text form; one that cannot be read raises ``BadRowError``); here BIGINT UNSIGNED and
    BIT(64) (Decimal for Arrow) become int again, wide DECIMALs Decimal, and JSON its TiDB text."""
    v = column.origin_default_value()
    if v is None:
        return None
    tp = column.tp
    if tp in _INT_LIKE or tp == T.TYPE_BIT:
        return int(v)
    if tp in T.DECIMAL_TYPES:
        return _decimal_for(column, Decimal(v))
    if tp == T.TYPE_JSON:
        try:
            return json_binary.text_to_json_text(v)
        except MalformedError as e:
            raise BadRowError(f"JSON column {column.name} (id {column.id}) has an origin default "
                              f"{v!r} that is not JSON: {e}") from e
    return v
