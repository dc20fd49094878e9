"""The ``filter`` of a read session as JSON: what clients without Python send (the Flight
command, ``POST /v1/read-sessions``, the JVM connector), translated once into the store's one
filter form (``store.predicate``), which prunes regions, parts and row groups and filters rows.

A filter is a list of conjuncts, all of which must hold (an empty list: every row)::

    [["id", ">=", 100], ["tag", "in", ["a", "b"]], ["note", "is_not_null"]]

Each conjunct is ``[column, op]`` or ``[column, op, value]``:

=====================================  ===============================================
op                                     value
=====================================  ===============================================
``=`` ``!=`` ``<`` ``<=`` ``>`` ``>=``  one value of the column's type (``==``, ``<>`` too)
``in`` / ``not_in``                    a list of values
``is_null`` / ``is_not_null``          none
``starts_with``                        a string (or bytes, for a binary column)
=====================================  ===============================================

A conjunct may also be ``{"or": [conjunct, ...]}`` (any holds) or ``{"not": conjunct}``.
Values are plain JSON, read by the column's type: integers and floats as numbers; DECIMAL and
BIGINT UNSIGNED as a number or a string of digits (``"12.50"``: exact); DATE as
``"2024-02-29"``; DATETIME as ``"2024-02-29 23:59:59.000005"``; TIMESTAMP likewise, UTC
unless an offset is given; TIME as ``"-838:59:59.000000"`` or microseconds; binary columns as
``{"base64": "..."}``, ``{"hex": "..."}`` or a string (its UTF-8 bytes). Comparing with NULL
is never true: use ``is_null``.

Semantics are SQL's, on every engine (``store.predicate``): a NULL column makes a comparison
or ``in`` NULL, and a ``null`` in an ``in``/``not_in`` list makes every non-matching row NULL
(``not_in`` with a ``null`` in its list keeps no row). A literal the column's type cannot hold
is compared exactly, never truncated: ``["i32", "=", 1.5]`` matches no row, ``["i32", "<",
1.5]`` keeps 1, ``["d2", "=", "1.005"]`` on a DECIMAL(10,2) matches none, a value beyond an
integer type's range is above or below every row. FLOAT columns compare as doubles (as Spark
widens a FloatType column): ``["f32", "=", 0.1]`` matches no row, since 0.1f is not 0.1. Columns are the table's (any case) and the hidden
``_tidb_rowid`` and ``_tidb_commit_ts``.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import re
from typing import TYPE_CHECKING, Callable, Mapping

import pyarrow as pa

from pyspark_theflash.scan.errors import ScanOptionError
from pyspark_theflash.scan.options import HIDDEN_READABLE
from pyspark_theflash.store.predicate import (
    And,
    Comparison,
    Expr,
    In,
    IsNotNull,
    IsNull,
    Not,
    Or,
    StartsWith,
    decode_value,
)

if TYPE_CHECKING:
    from pyspark_theflash.schema.table_info import TableInfo

COMPARISON_OPS = {"=": "==", "==": "==", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
OTHER_OPS = ("in", "not_in", "is_null", "is_not_null", "starts_with")
_TIME = re.compile(r"^(-)?(\d+):(\d{1,2}):(\d{1,2})(?:\.(\d{1,6}))?$")
_TAGS = frozenset({"float", "bytes", "decimal", "datetime", "date", "duration_us"})


class FilterFormatError(ScanOptionError):
    """A read session's ``filter`` is not in the documented JSON form, names an unknown column or
    operator, or holds a value its column's type cannot take."""


# A filter's JSON may nest lists and objects this deep (a conjunct list, an "or", a "not", a
# value list: 4 levels; each further "or"/"not" 1-2 more) and hold this many JSON values in all.
# Past either it is refused as invalid_filter before anything recurses over it.
MAX_FILTER_DEPTH = 64
MAX_FILTER_VALUES = 100_000


def check_filter_limits(conjuncts: object) -> None:
    """Refuse a filter nested deeper than ``MAX_FILTER_DEPTH`` or holding more than
    ``MAX_FILTER_VALUES`` JSON values (walked without recursion, so any depth is refused cleanly)."""
    stack: list[tuple[object, int]] = [(conjuncts, 1)]
    values = 0
    while stack:
        node, depth = stack.pop()
        values += 1
        if values > MAX_FILTER_VALUES:
            raise FilterFormatError(f"filter holds more than {MAX_FILTER_VALUES} values; split the read, or filter "
                                    "on a range instead of a long list")
        if isinstance(node, (list, dict)):
            if depth > MAX_FILTER_DEPTH:
                raise FilterFormatError(f"filter nests deeper than {MAX_FILTER_DEPTH} levels of lists and objects; "
                                        "write it flatter (a list of conjuncts, \"or\" of a few)")
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))


def filter_from_json(conjuncts: object, table: TableInfo) -> Expr | None:
    """The filter as a ``store.predicate.Expr`` (None for no filter) over the columns of
    ``table`` (a ``schema.TableInfo``), column names spelled as the table spells them."""
    if conjuncts is None:
        return None
    check_filter_limits(conjuncts)
    if not isinstance(conjuncts, list):
        raise FilterFormatError(
            f"filter must be a JSON list of conjuncts like [[\"id\", \">=\", 100], [\"tag\", \"is_null\"]], "
            f"not {_short(conjuncts)}")
    types = _column_types(table)
    exprs = [_conjunct(c, types, table) for c in conjuncts]
    if not exprs:
        return None
    return exprs[0] if len(exprs) == 1 else And(*exprs)


def _column_types(table: TableInfo) -> dict[str, tuple[str, pa.DataType]]:
    """lower-case name -> (the table's spelling, Arrow type), hidden columns included."""
    from pyspark_theflash.schema import arrow_type

    out = {c.name.lower(): (c.name, arrow_type(c)) for c in table.columns}
    out["_tidb_rowid"] = ("_tidb_rowid", pa.binary() if table.is_common_handle else pa.int64())
    out["_tidb_commit_ts"] = ("_tidb_commit_ts", pa.uint64())
    return out


def _conjunct(c: object, types: Mapping[str, tuple[str, pa.DataType]], table: TableInfo) -> Expr:
    if isinstance(c, dict):
        if set(c) == {"or"} and isinstance(c["or"], list) and c["or"]:
            return Or(*(_conjunct(x, types, table) for x in c["or"]))
        if set(c) == {"not"}:
            return Not(_conjunct(c["not"], types, table))
        raise FilterFormatError(f"filter conjunct {_short(c)}: an object must be {{\"or\": [...]}} or {{\"not\": ...}}")
    if not isinstance(c, list) or len(c) not in (2, 3) or not isinstance(c[0], str) or not isinstance(c[1], str):
        raise FilterFormatError(f"filter conjunct {_short(c)} is not [column, op] or [column, op, value]")
    name, op = c[0], c[1].strip().lower()
    known = types.get(name.lower())
    if known is None:
        if name.lower() in table.uncomputable_columns:
            try:
                table.column(name)
            except Exception as exc:  # which VIRTUAL generated column, and why it is not read
                raise FilterFormatError(f"filter on {name!r}: {exc}") from None
        visible = [col.name for col in table.columns] + list(HIDDEN_READABLE)
        raise FilterFormatError(f"filter on {name!r}: table {table.db}.{table.name} has no such column; "
                                f"its columns are {visible}")
    column, typ = known
    has_value = len(c) == 3
    if op in ("is_null", "is_not_null"):
        if has_value:
            raise FilterFormatError(f"filter [{name!r}, {op!r}] takes no value")
        return IsNull(column) if op == "is_null" else IsNotNull(column)
    if not has_value:
        raise FilterFormatError(f"filter [{name!r}, {op!r}] needs a value: [{name!r}, {op!r}, value]")
    value = c[2]
    if op in COMPARISON_OPS:
        if value is None:
            raise FilterFormatError(f"filter [{name!r}, {op!r}, null] is never true; use [{name!r}, \"is_null\"]")
        return Comparison(column, COMPARISON_OPS[op], _value(value, typ, column))
    if op in ("in", "not_in"):
        if not isinstance(value, list):
            raise FilterFormatError(f"filter [{name!r}, {op!r}, ...] needs a list of values, not {_short(value)}")
        expr: Expr = In(column, [None if v is None else _value(v, typ, column) for v in value])
        return Not(expr) if op == "not_in" else expr
    if op == "starts_with":
        prefix = _value(value, typ, column)
        if not isinstance(prefix, (str, bytes)):
            raise FilterFormatError(f"filter [{name!r}, 'starts_with', ...]: column {column} is {typ}, not a string")
        return StartsWith(column, prefix)
    raise FilterFormatError(f"filter on {name!r}: unknown operator {c[1]!r}; use one of "
                            f"{sorted(COMPARISON_OPS) + list(OTHER_OPS)}")


def _value(v: object, typ: pa.DataType, column: str) -> object:
    """A JSON value as the Python value of a column of Arrow type ``typ``."""
    if isinstance(v, dict) and len(v) == 1 and next(iter(v)) in _TAGS:
        return decode_value(v)  # the tagged form store.predicate writes
    try:
        return _CONVERT[_kind(typ)](v, typ)
    except (ValueError, TypeError, ArithmeticError, binascii.Error, KeyError) as exc:
        raise FilterFormatError(f"filter value {_short(v)} for column {column} ({typ}): {exc}") from None


def _kind(typ: pa.DataType) -> str:
    for test, kind in ((pa.types.is_boolean, "bool"), (pa.types.is_integer, "int"), (pa.types.is_floating, "float"),
                       (pa.types.is_decimal, "decimal"), (pa.types.is_date, "date"), (pa.types.is_timestamp, "timestamp"),
                       (pa.types.is_duration, "duration"), (pa.types.is_binary, "binary"), (pa.types.is_string, "string")):
        if test(typ):
            return kind
    return "string"


def _int(v: object, typ: pa.DataType) -> int | float | decimal.Decimal:
    """An integer; a fractional number (``1.5``, ``"1.5"``) is kept as it is and compared
    exactly (``store.predicate``: ``= 1.5`` holds for no integer, ``< 1.5`` keeps 1)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise TypeError("want a number")
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return _decimal(v, typ)
    return v


def _float(v: object, typ: pa.DataType) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise TypeError("want a number")
    return float(v)


def _decimal(v: object, typ: pa.DataType) -> decimal.Decimal:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise TypeError("want a number or a string of digits")
    try:
        return decimal.Decimal(repr(v) if isinstance(v, float) else str(v).strip())
    except decimal.InvalidOperation:
        raise ValueError("not a decimal number") from None


def _string(v: object, typ: pa.DataType) -> str:
    if not isinstance(v, str):
        raise TypeError("want a string")
    return v


def _binary(v: object, typ: pa.DataType) -> bytes:
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, dict) and set(v) == {"base64"}:
        return base64.b64decode(v["base64"], validate=True)
    if isinstance(v, dict) and set(v) == {"hex"}:
        return bytes.fromhex(v["hex"])
    raise TypeError('want {"base64": ...}, {"hex": ...} or a string')


def _bool(v: object, typ: pa.DataType) -> bool:
    if not isinstance(v, bool):
        raise TypeError("want true or false")
    return v


def _date(v: object, typ: pa.DataType) -> dt.date:
    return dt.date.fromisoformat(_string(v, typ))


def _timestamp(v: object, typ: pa.DataType) -> dt.datetime:
    moment = dt.datetime.fromisoformat(_string(v, typ).replace("Z", "+00:00"))
    if typ.tz is None:
        if moment.tzinfo is not None:
            raise ValueError("a DATETIME has no time zone; give the time without an offset")
        return moment
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def _duration(v: object, typ: pa.DataType) -> dt.timedelta:
    if isinstance(v, int) and not isinstance(v, bool):
        return dt.timedelta(microseconds=v)
    m = _TIME.match(_string(v, typ).strip())
    if not m:
        raise ValueError("want [-]HH:MM:SS[.ffffff] or microseconds")
    sign, h, mi, s, frac = m.groups()
    d = dt.timedelta(hours=int(h), minutes=int(mi), seconds=int(s), microseconds=int((frac or "0").ljust(6, "0")))
    return -d if sign else d


_CONVERT: dict[str, Callable[[object, pa.DataType], object]] = {
    "bool": _bool, "int": _int, "float": _float, "decimal": _decimal, "date": _date, "timestamp": _timestamp,
    "duration": _duration, "binary": _binary, "string": _string,
}


def _short(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ["COMPARISON_OPS", "FilterFormatError", "OTHER_OPS", "filter_from_json"]
