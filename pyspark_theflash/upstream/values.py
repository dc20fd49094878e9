"""Values as TiDB takes them into a column in strict SQL mode (its default), one at a time
(``check_value``, for ``Txn.insert``/``update``) or a column at a time (``encode_column``, for
``MiniCluster.bulk_insert``). Both follow the same rules and raise the same typed errors
(``upstream_client.errors.InvalidValueError`` subclasses naming table, column, row and value):

* integers outside their type's range (TINYINT .. BIGINT, signed and unsigned; YEAR 1901-2155
  after two-digit years are widened) -> ``OutOfRangeValueError`` (ERROR 1264); a fraction is
  rounded half away from zero first, as TiDB casts it;
* DECIMAL(p,s): rounded half away from zero to s digits; more than p - s integer digits ->
  ``OutOfRangeValueError``;
* CHAR/VARCHAR(n) of a text charset longer than n characters -> ``DataTooLongError``
  (ERROR 1406), unless only trailing spaces go beyond n (cut silently, as MySQL does);
  BINARY/VARBINARY(n) and the BLOB/TEXT family count bytes; CHAR values are stored without
  trailing spaces (TiDB's PAD CHAR semantics), BINARY(n) values padded with 0x00 to n bytes;
* BIT(n) values of more than n bits -> ``DataTooLongError``; FLOAT values are rounded to
  float32, beyond float32 -> ``OutOfRangeValueError``; NaN and infinities are refused;
* TIMESTAMP outside 1970-01-01 00:00:01 .. 2038-01-19 03:14:07.999999 UTC, ENUM/SET members not
  declared, text that does not parse -> ``IncorrectValueError``;
* NULL in a NOT NULL column -> ``BadNullError`` (ERROR 1048).

``encode_column`` then writes the column's row v2 value bytes (and, for key columns, its
memcomparable key datums) with ``codec.batch_encode``; types it has no vectorised path for
(SET, JSON, BIT, wide decimals, text given for numbers) go value by value through
``check_value`` and the codec's per-value encoders, with identical results.
"""
from __future__ import annotations

import datetime as dt
import math
import struct
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.codec import batch_encode as B
from pyspark_theflash.codec import column_types as T
from pyspark_theflash.codec.datum import NULL as _NULL
from pyspark_theflash.codec.datum import Datum, encode_key
from pyspark_theflash.codec.decimal import DecimalValue
from pyspark_theflash.codec.errors import CodecError
from pyspark_theflash.codec.row_v2 import datum_for_column, encode_value_v2
from pyspark_theflash.codec.time import MAX_DURATION_NS
from pyspark_theflash.schema import ColumnInfo
from pyspark_theflash.schema.defaults import convert_default
from pyspark_theflash.upstream_client.errors import (
    BadNullError,
    DataTooLongError,
    IncorrectValueError,
    InvalidValueError,
    NoDefaultValueError,
    OutOfRangeValueError,
)

_INT_BITS = {T.TYPE_TINY: 8, T.TYPE_SHORT: 16, T.TYPE_INT24: 24, T.TYPE_LONG: 32, T.TYPE_LONGLONG: 64}
_CHAR_TYPES = frozenset({T.TYPE_STRING, T.TYPE_VARCHAR, T.TYPE_VAR_STRING})
_FLOAT32_MAX = 3.4028234663852886e38
_F32 = struct.Struct("<f")
YEAR_MIN, YEAR_MAX = 1901, 2155
TIMESTAMP_MIN_US = 1_000_000  # 1970-01-01 00:00:01 UTC
TIMESTAMP_MAX_US = 2_147_483_647_999_999  # 2038-01-19 03:14:07.999999 UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_DATETIME_MIN_US = -62_135_596_800_000_000  # 0001-01-01, the first instant Python and Arrow share
_DATETIME_MAX_US = 253_402_300_799_999_999  # 9999-12-31 23:59:59.999999
_DATE_MIN_DAYS, _DATE_MAX_DAYS = -719_162, 2_932_896  # 0001-01-01 .. 9999-12-31


def int_range(col: ColumnInfo) -> tuple[int, int]:
    """[lo, hi] of an integer column's type (TINYINT .. BIGINT, signed or unsigned)."""
    bits = _INT_BITS[col.tp]
    return (0, (1 << bits) - 1) if col.unsigned else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def _sql_type(col: ColumnInfo) -> str:
    name = col.type_name
    if col.tp in T.DECIMAL_TYPES:
        return f"{name}({col.flen},{max(col.decimal, 0)})"
    if col.tp in _CHAR_TYPES or col.tp == T.TYPE_BIT:
        name = ("VAR" if col.tp != T.TYPE_STRING and col.tp != T.TYPE_BIT else "") + (
            "BINARY" if col.is_binary_string else "BIT" if col.tp == T.TYPE_BIT else "CHAR")
        return f"{name}({col.flen})"
    return name + (" UNSIGNED" if col.unsigned and col.tp in _INT_BITS else "")


# ------------------------------------------------------------------------------ one value


def check_value(table: str, col: ColumnInfo, value: Any, row: int) -> Any:
    """The value TiDB stores for ``value`` in ``col`` (CHAR trimmed, BINARY padded, numbers
    rounded to the column's scale); raises an ``InvalidValueError`` where strict mode does."""
    if value is None:
        if col.not_null:
            raise BadNullError(table, col.name, row, None, f"{col.name} is NOT NULL")
        return None
    tp = col.tp
    if tp in _INT_BITS:
        v = _as_int(table, col, value, row)
        lo, hi = int_range(col)
        if not lo <= v <= hi:
            raise OutOfRangeValueError(table, col.name, row, value, f"{_sql_type(col)} holds {lo} .. {hi}")
        return v
    if tp == T.TYPE_YEAR:
        v = _as_int(table, col, value, row)
        if 0 < v < 70:
            v += 2000
        elif 70 <= v < 100:
            v += 1900
        if v != 0 and not YEAR_MIN <= v <= YEAR_MAX:
            raise OutOfRangeValueError(table, col.name, row, value, f"YEAR holds {YEAR_MIN} .. {YEAR_MAX} (and 0)")
        return v
    if tp in T.FLOAT_TYPES:
        return _check_float(table, col, value, row)
    if tp in T.DECIMAL_TYPES:
        return _check_decimal(table, col, value, row)
    if tp in T.STRING_TYPES:
        return _check_string(table, col, value, row)
    if tp == T.TYPE_BIT:
        v = int.from_bytes(value, "big") if isinstance(value, (bytes, bytearray)) else _as_int(table, col, value, row)
        if v < 0 or v >= 1 << max(col.flen, 1):
            raise DataTooLongError(table, col.name, row, value, f"BIT({col.flen}) holds {col.flen} bit(s)")
        return v
    if tp == T.TYPE_TIMESTAMP and isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
        us = (aware - _EPOCH) // dt.timedelta(microseconds=1)
        if not TIMESTAMP_MIN_US <= us <= TIMESTAMP_MAX_US:
            raise IncorrectValueError(
                table, col.name, row, value, "TIMESTAMP holds 1970-01-01 00:00:01 .. 2038-01-19 03:14:07.999999 UTC")
    return value


def datum(table: str, col: ColumnInfo, value: Any, row: int) -> Datum:
    """The datum TiDB writes for ``value`` (checked with ``check_value``) in ``col``."""
    checked = check_value(table, col, value, row)
    if checked is None:
        return _NULL
    tp = col.tp
    # The common types straight from the checked value (what datum_for_column would give:
    # the check already converted and rounded it); the others through datum_for_column.
    if tp in _INT_BITS or tp == T.TYPE_YEAR:
        return Datum("uint" if col.unsigned else "int", checked)
    if tp in T.FLOAT_TYPES:
        return Datum("float", checked)
    if tp in T.DECIMAL_TYPES and col.flen > 0:
        return Datum("decimal", DecimalValue(checked, col.flen, max(col.decimal, 0)))
    if tp in T.STRING_TYPES:
        return Datum("bytes", checked.encode("utf-8") if isinstance(checked, str) else checked)
    try:
        return datum_for_column(col, checked)
    except (CodecError, ValueError, TypeError, OverflowError) as err:
        raise IncorrectValueError(table, col.name, row, value, f"{col.type_name} cannot hold it: {err}") from None


def _as_int(table: str, col: ColumnInfo, value: Any, row: int) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise OutOfRangeValueError(table, col.name, row, value, f"{col.type_name} holds no NaN or infinity")
            d = Decimal(repr(value))
        elif isinstance(value, (Decimal, str)):
            d = Decimal(value.strip() if isinstance(value, str) else value)
        else:
            d = Decimal(int(value))
    except (InvalidOperation, ValueError, TypeError):
        raise IncorrectValueError(table, col.name, row, value, f"not an integer for {col.type_name}") from None
    if not d.is_finite():
        raise IncorrectValueError(table, col.name, row, value, f"not an integer for {col.type_name}")
    return int(d.to_integral_value(rounding=ROUND_HALF_UP))  # MySQL rounds half away from zero


def _check_float(table: str, col: ColumnInfo, value: Any, row: int) -> float:
    try:
        f = float(value)
    except (ValueError, TypeError):
        raise IncorrectValueError(table, col.name, row, value, f"not a number for {col.type_name}") from None
    if not math.isfinite(f):
        raise OutOfRangeValueError(table, col.name, row, value, f"{col.type_name} holds no NaN or infinity")
    if col.tp == T.TYPE_FLOAT:
        if abs(f) > _FLOAT32_MAX:
            raise OutOfRangeValueError(table, col.name, row, value, f"FLOAT holds +-{_FLOAT32_MAX:.7g}")
        f = _F32.unpack(_F32.pack(f))[0]  # TiDB keeps FLOAT values at float32 precision
    return f


def _check_decimal(table: str, col: ColumnInfo, value: Any, row: int) -> Decimal:
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError, TypeError):
        raise IncorrectValueError(table, col.name, row, value, f"not a number for {_sql_type(col)}") from None
    if not d.is_finite():
        raise IncorrectValueError(table, col.name, row, value, f"{_sql_type(col)} holds only finite numbers")
    if col.flen <= 0:
        return d
    scale = max(col.decimal, 0)
    with localcontext() as ctx:  # DECIMAL(65,30) needs more than the default 28 digits
        ctx.prec = 100
        d = d.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        if abs(d) >= Decimal(10) ** (col.flen - scale):
            raise OutOfRangeValueError(
                table, col.name, row, value, f"{_sql_type(col)} holds at most {col.flen - scale} integer digit(s)")
    return d


def _check_string(table: str, col: ColumnInfo, value: Any, row: int) -> str | bytes:
    if col.is_binary_string:  # bytes, counted in bytes
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if col.flen > 0 and len(data) > col.flen:
            raise DataTooLongError(
                table, col.name, row, value, f"{len(data)} byte(s), {_sql_type(col)} holds {col.flen}")
        return data.ljust(col.flen, b"\x00") if col.tp == T.TYPE_STRING else data  # BINARY(n) pads with 0x00
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            s = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise IncorrectValueError(table, col.name, row, value, f"not UTF-8 text for {col.type_name}") from None
    else:
        s = str(value)
    if col.flen > 0:
        by_chars = col.tp in _CHAR_TYPES
        length = len(s) if by_chars else len(s.encode("utf-8"))
        if length > col.flen:
            if by_chars and not s[col.flen:].rstrip(" "):
                s = s[:col.flen]  # only trailing spaces beyond the length: cut, as MySQL does
            else:
                unit = "character(s)" if by_chars else "byte(s)"
                raise DataTooLongError(
                    table, col.name, row, value, f"{length} {unit}, {_sql_type(col)} holds {col.flen}")
    if col.tp == T.TYPE_STRING:
        s = s.rstrip(" ")  # CHAR(n) is stored without trailing spaces
    return s


def default_value(table: str, col: ColumnInfo) -> Any:
    """The value an insert that leaves ``col`` out writes: its DEFAULT (NULL when it has none
    and is nullable); ``NoDefaultValueError`` for a NOT NULL column without one."""
    text = col.default
    if text is None:
        if col.not_null or col.flag & T.NO_DEFAULT_VALUE_FLAG:
            raise NoDefaultValueError(table, col.name, 0, None, f"{col.name} is NOT NULL and has no DEFAULT; give it a value")
        return None
    if isinstance(text, str) and text.upper().startswith("CURRENT_TIMESTAMP"):
        now = dt.datetime.now(dt.timezone.utc)
        return now if col.tp == T.TYPE_TIMESTAMP else now.replace(tzinfo=None)
    return convert_default(col, text)


# ------------------------------------------------------------------------------ a column


@dataclass
class EncodedColumn:
    """One column of a batch in TiDB's bytes: ``values`` (row v2 value bytes, NULL items are
    NULL columns), ``key_datums`` (``encode_key`` bytes, when asked for) and, for integer
    columns, ``ints`` (int64 or uint64 values: an int handle comes from them)."""

    values: pa.BinaryArray
    key_datums: pa.BinaryArray | None = None
    ints: np.ndarray | None = None


def encode_column(table: str, col: ColumnInfo, arr: pa.Array, *, key: bool = False, row_base: int = 0) -> EncodedColumn:
    """Check and encode one column of a batch (see the module docstring). ``row_base`` is the
    index of ``arr[0]`` in the caller's input, for error messages."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if arr.null_count:
        if col.not_null:
            i = int(np.flatnonzero(~arr.is_valid().to_numpy(zero_copy_only=False))[0])
            raise BadNullError(table, col.name, row_base + i, None, f"{col.name} is NOT NULL")
        if arr.null_count == len(arr) and not pa.types.is_null(arr.type):
            arr = pa.nulls(len(arr))
    if pa.types.is_null(arr.type):
        return EncodedColumn(pa.nulls(len(arr), pa.binary()), None, None)
    encode = _VECTORISED.get(_family(col))
    if encode is not None:
        done = encode(_Ctx(table, col, row_base, key), arr)
        if done is not None:
            return done
    return _value_by_value(table, col, arr, key, row_base)


@dataclass(frozen=True)
class _Ctx:
    table: str
    col: ColumnInfo
    row_base: int
    key: bool

    def fail_first(self, arr: pa.Array, bad: np.ndarray) -> None:
        """Raise the error ``check_value`` gives the first bad row (the vectorised checks
        only find the rows; the scalar rules word the error)."""
        if not bad.any():
            return
        i = int(np.flatnonzero(bad)[0])
        value = arr[i].as_py()
        check_value(self.table, self.col, value, self.row_base + i)
        datum(self.table, self.col, value, self.row_base + i)
        raise IncorrectValueError(self.table, self.col.name, self.row_base + i, value, f"{self.col.type_name} cannot hold it")


def _family(col: ColumnInfo) -> str:
    tp = col.tp
    if tp in _INT_BITS or tp == T.TYPE_YEAR:
        return "int"
    if tp in T.FLOAT_TYPES:
        return "float"
    if tp in T.DECIMAL_TYPES:
        return "decimal"
    if tp in (T.TYPE_DATE, T.TYPE_NEWDATE):
        return "date"
    if tp in (T.TYPE_DATETIME, T.TYPE_TIMESTAMP):
        return "datetime"
    if tp == T.TYPE_DURATION:
        return "time"
    if tp in T.STRING_TYPES:
        return "string"
    if tp == T.TYPE_ENUM:
        return "enum"
    return "other"


def _valid(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    valid: np.ndarray = arr.is_valid().to_numpy(zero_copy_only=False)
    return valid


def _numpy(arr: pa.Array, fill: Any = 0) -> np.ndarray:
    if arr.null_count:
        arr = pc.fill_null(arr, fill)
    values: np.ndarray = arr.to_numpy(zero_copy_only=False)
    return values


def _ints(c: _Ctx, arr: pa.Array) -> EncodedColumn | None:
    col, t = c.col, arr.type
    if pa.types.is_boolean(t):
        arr, t = arr.cast(pa.int8()), pa.int8()
    if pa.types.is_floating(t):
        arr = pc.round(arr, 0, round_mode="half_towards_infinity")
        f = _numpy(arr.cast(pa.float64()))
        c.fail_first(arr, ~np.isfinite(f) | (np.abs(f) >= 2.0**63))
        arr, t = arr.cast(pa.int64()), pa.int64()
    elif pa.types.is_decimal(t):
        try:
            rounded = pc.round(arr, 0, round_mode="half_towards_infinity")
            arr = rounded.cast(pa.uint64() if col.unsigned else pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None  # beyond 64 bits: value by value finds and words the error
        t = arr.type
    if not pa.types.is_integer(t):
        return None
    valid = _valid(arr)
    if pa.types.is_unsigned_integer(t) and t.bit_width == 64:
        u = _numpy(arr).astype(np.uint64)
        big = u > np.uint64((1 << 63) - 1)
        if not col.unsigned:
            c.fail_first(arr, valid & big)
        s = u.view(np.int64)
        negative = np.zeros(len(u), dtype=bool)
    else:
        s = _numpy(arr).astype(np.int64)
        big = np.zeros(len(s), dtype=bool)
        negative = s < 0
    if col.tp == T.TYPE_YEAR:
        s = np.where((s > 0) & (s < 70), s + 2000, np.where((s >= 70) & (s < 100), s + 1900, s))
        c.fail_first(arr, valid & (s != 0) & ((s < YEAR_MIN) | (s > YEAR_MAX)))
        lo, hi = 0, YEAR_MAX
    else:
        lo, hi = int_range(col)
    if col.unsigned:
        c.fail_first(arr, valid & negative)
        u = s.view(np.uint64)
        c.fail_first(arr, valid & (u > np.uint64(hi)))
        ints: np.ndarray = np.where(valid, u, np.uint64(0))
        values = B.uint_values(ints, valid)
        keys = B.uint_key_datums(ints) if c.key else None
    else:
        c.fail_first(arr, valid & ~big & ((s < lo) | (s > hi)))
        ints = np.where(valid, s, 0)
        values = B.int_values(ints, valid)
        keys = B.int_key_datums(ints) if c.key else None
    return EncodedColumn(values, keys, ints)


def _floats(c: _Ctx, arr: pa.Array) -> EncodedColumn | None:
    if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type) or pa.types.is_decimal(arr.type)):
        return None
    valid = _valid(arr)
    f = _numpy(arr.cast(pa.float64())).astype(np.float64)
    c.fail_first(arr, valid & ~np.isfinite(f))
    if c.col.tp == T.TYPE_FLOAT:
        c.fail_first(arr, valid & (np.abs(f) > _FLOAT32_MAX))
        f = f.astype(np.float32).astype(np.float64)
    f = np.where(valid, f, 0.0)
    return EncodedColumn(B.float_values(f, valid), B.float_key_datums(f) if c.key else None)


def _decimals(c: _Ctx, arr: pa.Array) -> EncodedColumn | None:
    col = c.col
    precision, scale = col.flen, max(col.decimal, 0)
    if precision <= 0 or precision > 18:
        return None  # wide decimals: value by value (Python's Decimal is exact)
    t = arr.type
    try:
        if pa.types.is_decimal(t):
            if t.scale > scale:
                arr = pc.round(arr, scale, round_mode="half_towards_infinity")
            arr = arr.cast(pa.decimal128(38, scale))
        elif pa.types.is_integer(t):
            arr = arr.cast(pa.decimal128(38, scale))
        else:
            return None  # floats and text: value by value, as TiDB parses their digits
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    valid = _valid(arr)
    words = np.frombuffer(arr.buffers()[1], dtype="<i8")[2 * arr.offset:2 * (arr.offset + len(arr))]
    low, high = words[0::2], words[1::2]
    limit = 10**precision
    bad = valid & ((high != (low >> 63)) | (low >= limit) | (low <= -limit))
    c.fail_first(arr, bad)
    unscaled = np.where(valid, low, 0)
    return EncodedColumn(B.decimal_values(unscaled, precision, scale, valid),
                         B.decimal_key_datums(unscaled, precision, scale) if c.key else None)


def _dates(c: _Ctx, arr: pa.Array) -> EncodedColumn | None:
    t = arr.type
    try:
        if pa.types.is_timestamp(t) or pa.types.is_date64(t):
            arr = pc.cast(arr, pa.date32(), safe=False)
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            arr = arr.cast(pa.date32())
        elif not pa.types.is_date32(t):
            return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    valid = _valid(arr)
    days = _numpy(arr.cast(pa.int32())).astype(np.int64)
    c.fail_first(arr, valid & ((days < _DATE_MIN_DAYS) | (days > _DATE_MAX_DAYS)))
    packed = B.pack_dates(np.where(valid, days, 0))
    return EncodedColumn(B.uint_values(packed, valid), B.uint_key_datums(packed) if c.key else None)


def _datetimes(c: _Ctx, arr: pa.Array) -> EncodedColumn | None:
    t = arr.type
    try:
        if pa.types.is_timestamp(t):
            arr = pc.cast(arr, pa.timestamp("us", t.tz), safe=False)
        elif pa.types.is_date32(t) or pa.types.is_date64(t):
            arr = arr.cast(pa.timestamp("us"))
        else:
            return None  # text and others: value by value
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    valid = _valid(arr)
    us = _numpy(arr.cast(pa.int64())).astype(np.int64)  # UTC for an aware type
    if c.col.tp == T.TYPE_TIMESTAMP:
        c.fail_first(arr, valid & ((us < TIMESTAMP_MIN_US) | (us > TIMESTAMP_MAX_US)))
    else:
        c.fail_first(arr, valid & ((us < _DATETIME_MIN_US) | (us > _DATETIME_MAX_US)))
    packed = B.pack_timestamps(np.where(valid, us, 0))
    return EncodedColumn(B.uint_values(packed, valid), B.uint_key_datums(packed) if c.key else None)


def _times(c: _Ctx, arr: pa.Array) -> EncodedColumn | None:
    if c.key or not pa.types.is_duration(arr.type):
        return None
    arr = pc.cast(arr, pa.duration("us"), safe=False)
    valid = _valid(arr)
    ns = _numpy(arr.cast(pa.int64())).astype(np.int64) * 1000
    c.fail_first(arr, valid & (np.abs(ns) > MAX_DURATION_NS))
    return EncodedColumn(B.int_values(np.where(valid, ns, 0), valid))


def _strings(c: _Ctx, arr: pa.Array) -> EncodedColumn | None:
    col, t = c.col, arr.type
    binary = col.is_binary_string
    is_text = pa.types.is_string(t) or pa.types.is_large_string(t)
    is_bytes = pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
    if not (is_text or is_bytes):
        return None
    try:
        arr = arr.cast(pa.binary() if binary else pa.string())
    except pa.ArrowInvalid:
        return None  # bytes that are not UTF-8: value by value words the error
    flen = col.flen
    if flen > 0:
        by_chars = col.tp in _CHAR_TYPES and not binary
        length = _numpy(pc.utf8_length(arr) if by_chars else pc.binary_length(arr)).astype(np.int64)
        over = length > flen
        if over.any():
            if by_chars:
                trimmed = _numpy(pc.utf8_length(pc.utf8_rtrim(arr, characters=" "))).astype(np.int64)
                c.fail_first(arr, over & (trimmed > flen))
                arr = pc.if_else(pa.array(over), pc.utf8_slice_codeunits(arr, 0, flen), arr)
            else:
                c.fail_first(arr, over)
    if col.tp == T.TYPE_STRING:
        if binary:
            arr = _pad_zeros(arr, flen)
        else:
            arr = pc.utf8_rtrim(arr, characters=" ")
    values = arr.cast(pa.binary())
    return EncodedColumn(values, B.bytes_key_datums(values) if c.key else None)


def _pad_zeros(arr: pa.Array, width: int) -> pa.BinaryArray:
    """BINARY(n): every value right-padded with 0x00 to n bytes (NULLs stay NULL)."""
    valid = _valid(arr)
    arr = pc.fill_null(arr, b"")
    lengths = B.lengths_of(arr)
    out = np.zeros((len(arr), width), dtype=np.uint8)
    total = int(lengths.sum())
    if total:
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + len(arr) + 1].astype(np.int64)
        data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
        rows = np.repeat(np.arange(len(arr)), lengths)
        within = np.arange(total) - np.repeat(offsets[:-1] - offsets[0], lengths)
        out[rows, within] = data
    return B.fixed_binary(out, valid)


def _enums(c: _Ctx, arr: pa.Array) -> EncodedColumn | None:
    t = arr.type
    valid = _valid(arr)
    n_elems = len(c.col.elems)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        arr = arr.cast(pa.string())
        index = pc.index_in(arr, value_set=pa.array(list(c.col.elems), pa.string()))
        found = _valid(index)
        empty = _numpy(pc.equal(arr, ""), False).astype(bool)
        c.fail_first(arr, valid & ~found & ~empty)
        idx = np.where(found, _numpy(index, -1).astype(np.int64) + 1, 0).astype(np.uint64)
    elif pa.types.is_integer(t):
        s = _numpy(arr).astype(np.int64)
        c.fail_first(arr, valid & ((s < 0) | (s > n_elems)))
        idx = np.where(valid, s, 0).astype(np.uint64)
    else:
        return None
    return EncodedColumn(B.uint_values(idx, valid), B.uint_key_datums(idx) if c.key else None)


_VECTORISED: dict[str, Callable[[_Ctx, pa.Array], EncodedColumn | None]] = {
    "int": _ints, "float": _floats, "decimal": _decimals, "date": _dates, "datetime": _datetimes,
    "time": _times, "string": _strings, "enum": _enums,
}


def _value_by_value(table: str, col: ColumnInfo, arr: pa.Array, key: bool, row_base: int) -> EncodedColumn:
    """The per-value path: ``check_value`` and the codec's per-value encoders, one value at a time."""
    is_int = _family(col) == "int"
    values: list[bytes | None] = []
    keys: list[bytes] = []
    ints: list[int] = []
    for i, value in enumerate(arr.to_pylist()):
        d = datum(table, col, value, row_base + i)
        null = d.kind == "null" or d.value is None
        try:
            values.append(None if null else encode_value_v2(d))
            if key:
                keys.append(encode_key([d]))
        except (CodecError, ValueError, TypeError, OverflowError) as err:
            raise IncorrectValueError(table, col.name, row_base + i, value, f"{col.type_name} cannot hold it: {err}") from None
        if is_int:
            ints.append(0 if null else int(d.value))
    int_array = np.array(ints, dtype=np.uint64 if col.unsigned else np.int64) if is_int else None
    return EncodedColumn(pa.array(values, pa.binary()), pa.array(keys, pa.binary()) if key else None, int_array)


def require_column(table: str, col: ColumnInfo, n: int) -> pa.Array:
    """The column an insert that leaves ``col`` out writes: ``n`` copies of its DEFAULT."""
    value = default_value(table, col)
    if value is None:
        return pa.nulls(n)
    try:
        return pa.array([value] * n) if n else pa.array([], pa.null())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise InvalidValueError(table, col.name, 0, value, f"cannot use the DEFAULT: {err}") from None
