"""The value a column takes in a row that does not contain it: its *origin default*.

A row written before ``ALTER TABLE ... ADD COLUMN`` has no value for the new column; TiDB
reads it as the column's ``origin_default`` (the DEFAULT in force when the column was added),
which is not NULL unless that default was NULL. ``origin_default_value`` parses TiDB's JSON
form (mostly strings) into the Python value of the column's Arrow type (see ``arrow.py``),
so ``pa.array([value], arrow_type(col))`` holds it:

* integers, YEAR, BIT(<64): ``int``; BIGINT UNSIGNED and BIT(64): ``Decimal``
* FLOAT/DOUBLE: ``float``; DECIMAL: ``Decimal`` (``str`` beyond 38 digits)
* DATE: ``date``; DATETIME: naive ``datetime``; TIMESTAMP: aware UTC ``datetime``; a zero
  date reads as ``None``, as in codec.time. TiDB keeps a TIMESTAMP default in UTC only for
  columns of ``version`` >= 1; a column of version 0 (made by TiDB before 2.1) keeps it in the
  TiDB server's system time zone, which TheFlash takes from the environment variable
  ``THEFLASH_TIDB_SYSTEM_TIME_ZONE`` (an IANA name, ``SELECT @@system_time_zone`` upstream):
  TiDB's ``getColDefaultValue`` reads it the same way
* TIME: ``timedelta``; text, ENUM, SET, JSON: ``str``; binary strings: ``bytes``

BIT defaults are taken from ``origin_default_bit`` (base64 of the bytes) when present.
"""
from __future__ import annotations

import base64
import datetime as dt
import re
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from pyspark_theflash.codec import column_types as T
from pyspark_theflash.schema.errors import SchemaError
from pyspark_theflash.schema.table_info import COLUMN_INFO_VERSION_UTC_TIMESTAMP_DEFAULTS, ColumnInfo

_TIME_RE = re.compile(r"^\s*(-)?(\d+):(\d{1,2}):(\d{1,2})(?:\.(\d{1,6}))?\s*$")
_ZERO_DATE_RE = re.compile(r"^0000-00-00")
_DATE_FIELDS_RE = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})")


SYSTEM_TIME_ZONE_ENV = "THEFLASH_TIDB_SYSTEM_TIME_ZONE"


def timestamp_default_zone(col: ColumnInfo) -> dt.tzinfo:
    """The zone a TIMESTAMP column's default text is written in: UTC for a column of version >= 1,
    the TiDB server's system time zone for version 0 (``THEFLASH_TIDB_SYSTEM_TIME_ZONE``)."""
    import os

    if col.version >= COLUMN_INFO_VERSION_UTC_TIMESTAMP_DEFAULTS:
        return dt.timezone.utc
    name = os.environ.get(SYSTEM_TIME_ZONE_ENV, "").strip()
    if not name:
        raise SchemaError(
            f"TIMESTAMP column {col.name!r} has column info version {col.version}: TiDB keeps its default "
            f"{col.origin_default!r} in the TiDB server's system time zone, not UTC. Set "
            f"{SYSTEM_TIME_ZONE_ENV} to that zone (SELECT @@system_time_zone on TiDB, e.g. Asia/Shanghai) "
            "for the writer and every reader")
    if name.upper() in ("UTC", "Z", "+00:00", "SYSTEM_UTC"):
        return dt.timezone.utc
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception as exc:
        raise SchemaError(f"{SYSTEM_TIME_ZONE_ENV}={name!r} is not a time zone name ({exc}); "
                          "use an IANA name such as Asia/Shanghai") from None


def _bad(col: ColumnInfo, value: object, why: str) -> SchemaError:
    return SchemaError(
        f"origin default {value!r} of column {col.name!r} ({col.type_name}) cannot be read: {why}"
    )


def _parse_datetime(col: ColumnInfo, text: str) -> dt.datetime | None:
    """A default date/time; a zero or impossible one (0000-00-00, 2020-00-10, 2021-02-30, which
    TiDB keeps under a relaxed sql_mode) is None, as such values read everywhere."""
    if _ZERO_DATE_RE.match(text):
        return None
    try:
        return dt.datetime.fromisoformat(text.strip())
    except ValueError as e:
        m = _DATE_FIELDS_RE.match(text)
        if m and _impossible_date(*(int(g) for g in m.groups())):
            return None
        raise _bad(col, text, str(e)) from None


def _impossible_date(year: int, month: int, day: int) -> bool:
    try:
        dt.date(year, month, day)
    except ValueError:
        return 0 <= year <= 9999 and 0 <= month <= 12 and 0 <= day <= 31
    return False


def _parse_duration(col: ColumnInfo, text: str) -> dt.timedelta:
    m = _TIME_RE.match(text)
    if not m:
        raise _bad(col, text, "expected [-]HH:MM:SS[.ffffff]")
    sign, h, mi, s, frac = m.groups()
    td = dt.timedelta(hours=int(h), minutes=int(mi), seconds=int(s), microseconds=int((frac or "0").ljust(6, "0")))
    return -td if sign else td


def _bit_value(col: ColumnInfo, value: object) -> int:
    if col.origin_default_bit:
        return int.from_bytes(base64.b64decode(col.origin_default_bit), "big")
    if isinstance(value, int):
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    # TiDB keeps the raw bit bytes as the string itself when origin_default_bit is absent
    return int.from_bytes(text.encode("latin-1"), "big")


def origin_default_value(col: ColumnInfo) -> object:
    """The Python value of ``col``'s origin default (None only for a NULL origin default)."""
    value = col.origin_default
    if value is None and not (col.tp == T.TYPE_BIT and col.origin_default_bit):
        return None
    return convert_default(col, value)


def convert_default(col: ColumnInfo, value: Any) -> object:
    """A default in TiDB's JSON form converted to the Python value of the column's Arrow type."""
    tp = col.tp
    try:
        if tp in T.INTEGER_TYPES or tp == T.TYPE_YEAR:
            v = int(Decimal(str(value)))  # TiDB writes e.g. "1", sometimes "1.0" after a cast
            return Decimal(v) if tp == T.TYPE_LONGLONG and col.unsigned else v
        if tp == T.TYPE_BIT:
            v = _bit_value(col, value)
            return Decimal(v) if col.flen == 64 else v
        if tp in T.FLOAT_TYPES:
            return float(value)
        if tp in T.DECIMAL_TYPES:
            d = Decimal(str(value))
            if col.decimal >= 0:
                with localcontext() as ctx:  # DECIMAL(65,30) needs more than the default 28 digits
                    ctx.prec = 100
                    d = d.quantize(Decimal(1).scaleb(-col.decimal))
            if col.flen > 38:  # the string TiDB prints (str() would give e.g. 0E-30)
                return format(d.copy_abs() if d.is_zero() else d, "f")
            return d
    except (ValueError, InvalidOperation) as e:
        raise _bad(col, value, str(e) or "not a number") from None
    if tp in (T.TYPE_DATE, T.TYPE_NEWDATE):
        parsed = _parse_datetime(col, str(value))
        return None if parsed is None else parsed.date()
    if tp == T.TYPE_DATETIME:
        return _parse_datetime(col, str(value))
    if tp == T.TYPE_TIMESTAMP:
        parsed = _parse_datetime(col, str(value))
        if parsed is None:
            return None
        if parsed.tzinfo is not None:
            return parsed.astimezone(dt.timezone.utc)
        return parsed.replace(tzinfo=timestamp_default_zone(col)).astimezone(dt.timezone.utc)
    if tp == T.TYPE_DURATION:
        return _parse_duration(col, str(value))
    if tp in T.STRING_TYPES:
        text = value if isinstance(value, str) else str(value)
        return text.encode("utf-8") if col.is_binary_string else text
    if tp in (T.TYPE_ENUM, T.TYPE_SET, T.TYPE_JSON):
        return value if isinstance(value, str) else str(value)
    raise _bad(col, value, "the column type has no default conversion")
