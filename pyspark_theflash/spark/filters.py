"""Spark's pushed filters (``pyspark.sql.datasource.Filter``) → the store's filter form.

A filter is translated only where the store evaluates it exactly as Spark would (SQL
three-valued logic: a row whose condition is NULL is dropped); those are reported to Spark as
handled. A filter the store can evaluate as a *superset* (it keeps every row Spark would
keep, maybe more) is still pushed for pruning but handed back so Spark re-applies it. The
rest is not pushed at all. Floating-point columns are never pushed: Spark orders NaN above
every number and equal to itself, Arrow does not.
"""
from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, Mapping, Sequence

from pyspark_theflash.store import predicate as P

# Spark type name (DataType.typeName()) → Python literal types the store compares exactly.
_EXACT_LITERALS: dict[str, tuple[type, ...]] = {
    "byte": (int,), "short": (int,), "integer": (int,), "long": (int,),
    "decimal": (decimal.Decimal, int),
    "string": (str,),
    "binary": (bytes, bytearray),
    "boolean": (bool,),
    "date": (dt.date,),
    "timestamp": (dt.datetime,),
    "timestamp_ntz": (dt.datetime,),
}


def _literal_ok(type_name: str, value: Any) -> bool:
    allowed = _EXACT_LITERALS.get(type_name)
    if allowed is None or value is None:
        return False
    if isinstance(value, bool) and type_name != "boolean":
        return False
    if type_name == "date" and isinstance(value, dt.datetime):
        return False
    if type_name == "timestamp" and isinstance(value, dt.datetime) and value.tzinfo is None:
        return False  # an instant without a zone: ambiguous against a UTC column
    if type_name == "timestamp_ntz" and isinstance(value, dt.datetime) and value.tzinfo is not None:
        return False
    return isinstance(value, allowed)


def _literal(value: Any) -> Any:
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc)
    return value


def translate(f: Any, column_types: Mapping[str, str]) -> tuple[P.Expr | None, bool]:
    """(store expression or None, exact?) for one Spark filter. ``column_types``: readable
    column name → Spark type name."""
    from pyspark.sql import datasource as S

    def column(attr: Sequence[str]) -> str | None:
        if len(attr) != 1:
            return None  # nested fields do not exist in TiDB tables
        name = attr[0]
        if name in column_types:
            return name
        lowered = {k.lower(): k for k in column_types}
        return lowered.get(name.lower())

    comparisons = {S.EqualTo: "==", S.GreaterThan: ">", S.GreaterThanOrEqual: ">=",
                   S.LessThan: "<", S.LessThanOrEqual: "<="}
    for cls, op in comparisons.items():
        if type(f) is cls:
            name = column(f.attribute)
            if name is None or not _literal_ok(column_types[name], f.value):
                return None, False
            return P.Comparison(name, op, _literal(f.value)), True
    if isinstance(f, S.In):
        name = column(f.attribute)
        values = [v for v in f.value if v is not None]
        if name is None or not values or not all(_literal_ok(column_types[name], v) for v in values):
            return None, False
        return P.In(name, [_literal(v) for v in values]), True
    if isinstance(f, S.IsNull):
        name = column(f.attribute)
        return (P.IsNull(name), True) if name else (None, False)
    if isinstance(f, S.IsNotNull):
        name = column(f.attribute)
        return (P.IsNotNull(name), True) if name else (None, False)
    if isinstance(f, S.StringStartsWith):
        name = column(f.attribute)
        if name is None or column_types[name] != "string" or not isinstance(f.value, str):
            return None, False
        return P.StartsWith(name, f.value), True
    if isinstance(f, S.Not):
        child, exact = translate(f.child, column_types)
        if child is None or not exact:
            return None, False  # the negation of a superset would be a subset: not pushable
        if isinstance(child, P.In):
            # Arrow's is_in gives false (not NULL) for a NULL value, so NOT IN keeps NULL rows
            # Spark drops: a superset, pushed for pruning only.
            return P.Not(child), False
        return P.Not(child), exact
    and_cls, or_cls = getattr(S, "And", None), getattr(S, "Or", None)
    if and_cls is not None and isinstance(f, and_cls):
        left, le = translate(f.left, column_types)
        right, re_ = translate(f.right, column_types)
        if left is None and right is None:
            return None, False
        if left is None or right is None:
            return (left or right), False  # one side alone keeps a superset
        return P.And(left, right), le and re_
    if or_cls is not None and isinstance(f, or_cls):
        left, le = translate(f.left, column_types)
        right, re_ = translate(f.right, column_types)
        if left is None or right is None:
            return None, False
        return P.Or(left, right), le and re_
    return None, False


def combine(exprs: Sequence[P.Expr]) -> P.Expr | None:
    if not exprs:
        return None
    return exprs[0] if len(exprs) == 1 else P.And(*exprs)
