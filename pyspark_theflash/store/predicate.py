"""The project's one filter form.

A small expression tree over column names, built like ``(col("x") > 3) & col("s").startswith("a")``.
One tree serves both purposes of a filter:

* ``might_match(stats)`` — may any row summarised by these min/max/null-count statistics
  match? Used to prune partitions, parts and Parquet row groups. It answers ``True`` whenever
  it cannot prove otherwise (unknown column, incomparable types), so pruning is never wrong.
* ``to_arrow()`` — a ``pyarrow.compute.Expression`` that filters rows with SQL semantics
  (a comparison with NULL is not true, so the row is dropped).

Trees serialise to JSON (``to_json`` / ``from_json``) so a Spark partition can carry one.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import base64
import datetime as dt
import decimal
import json
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping, TypeGuard, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.schema.column_stats import ColumnStats
from pyspark_theflash.store.errors import PredicateError


_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_NEGATED = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class Expr(ABC):
    """Base of every filter node."""

    def __and__(self, other: "Expr") -> "Expr":
        return And(self, other)

    def __or__(self, other: "Expr") -> "Expr":
        return Or(self, other)

    def __invert__(self) -> "Expr":
        return Not(self)

    @abstractmethod
    def to_arrow(self, schema: pa.Schema | None = None) -> pc.Expression:
        """The filter as an Arrow expression. With ``schema``, literals are converted to
        their column's type first (a naive datetime compared with a UTC timestamp column is
        taken as UTC; an int compared with an int8 column stays exact)."""

    @abstractmethod
    def might_match(self, stats: Mapping[str, ColumnStats]) -> bool:
        """False only when no row with these column statistics can match (pruning)."""

    @abstractmethod
    def columns(self) -> frozenset[str]:
        """The columns the filter reads."""

    def pinned_values(self, column: str) -> list[object] | None:
        """The integers ``column`` must equal for the filter to hold (``=`` or IN, possibly
        under AND), or None when the filter does not pin it (hash partition pruning)."""
        return None

    @abstractmethod
    def to_dict(self) -> dict[str, object]:
        """The filter as plain JSON-able data (``expr_from_dict`` reads it back)."""

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @staticmethod
    def from_json(text: str | bytes) -> "Expr":
        return expr_from_dict(json.loads(text))


class Col:
    """A column reference; comparing it with a value builds a ``Comparison``."""

    def __init__(self, name: str) -> None:
        self.name = name

    # (== and != build a filter, as every comparison here does, instead of object's bool answer)
    def __eq__(self, value: object) -> "Comparison":  # type: ignore[override]
        return Comparison(self.name, "==", value)

    def __ne__(self, value: object) -> "Comparison":  # type: ignore[override]
        return Comparison(self.name, "!=", value)

    def __lt__(self, value: object) -> "Comparison":
        return Comparison(self.name, "<", value)

    def __le__(self, value: object) -> "Comparison":
        return Comparison(self.name, "<=", value)

    def __gt__(self, value: object) -> "Comparison":
        return Comparison(self.name, ">", value)

    def __ge__(self, value: object) -> "Comparison":
        return Comparison(self.name, ">=", value)

    __hash__ = None  # type: ignore[assignment]  # unhashable, as == no longer compares (object's is a method)

    def isin(self, values: Iterable[object]) -> "In":
        return In(self.name, tuple(values))

    def is_null(self) -> "IsNull":
        return IsNull(self.name)

    def is_not_null(self) -> "IsNotNull":
        return IsNotNull(self.name)

    def startswith(self, prefix: str | bytes) -> "StartsWith":
        return StartsWith(self.name, prefix)


def col(name: str) -> Col:
    return Col(name)


def _stats_of(stats: Mapping[str, ColumnStats], name: str) -> ColumnStats | None:
    return stats.get(name)


def _all_null(s: ColumnStats) -> bool:
    return s.null_count is not None and s.row_count is not None and s.null_count >= s.row_count


class Comparison(Expr):
    def __init__(self, column: str, op: str, value: object) -> None:
        if op not in _COMPARISONS:
            raise PredicateError(f"unknown comparison {op!r}; use one of {_COMPARISONS}")
        if value is None:
            raise PredicateError(f"comparison {column} {op} NULL is never true; use IsNull/IsNotNull")
        self.column, self.op, self.value = column, op, value

    def __repr__(self) -> str:
        return f"(col({self.column!r}) {self.op} {self.value!r})"

    def bound(self, typ: pa.DataType | None) -> "BoundComparison":
        """This comparison against a column of Arrow type ``typ`` in the form every engine
        evaluates the same way (see ``BoundComparison``)."""
        return bind_comparison(self.column, self.op, self.value, typ)

    def to_arrow(self, schema: pa.Schema | None = None) -> pc.Expression:
        return self.bound(_column_type(schema, self.column)).to_arrow()

    def pinned_values(self, column: str) -> list[object] | None:
        if self.op == "==" and self.column.lower() == column.lower() and _is_int(self.value):
            return [self.value]
        return None

    def might_match(self, stats: Mapping[str, ColumnStats]) -> bool:
        s = _stats_of(stats, self.column)
        if s is None:
            return True
        if _all_null(s):
            return False  # a comparison with NULL is never true
        lo, hi = s.min, s.max
        if lo is None or hi is None:
            return True
        v = _as_stats_value(self.value, lo)
        try:
            if self.op == "==":
                return bool(lo <= v <= hi)
            if self.op == "!=":
                return not (lo == hi == v)
            if self.op == "<":
                return bool(lo < v)
            if self.op == "<=":
                return bool(lo <= v)
            if self.op == ">":
                return bool(hi > v)
            return bool(hi >= v)
        except TypeError:
            return True

    def columns(self) -> frozenset[str]:
        return frozenset([self.column])

    def to_dict(self) -> dict[str, object]:
        return {"cmp": self.op, "col": self.column, "value": encode_value(self.value)}


class In(Expr):
    """``column IN (values)`` with SQL's three values: true where the column equals a value;
    NULL where the column is NULL, and also for every other row when the list holds a NULL
    (``x IN (1, NULL)`` is NULL for x = 2, so ``NOT`` of it keeps no row); else false."""

    def __init__(self, column: str, values: Iterable[object]) -> None:
        self.column = column
        given = tuple(values)
        self.values = tuple(v for v in given if v is not None)
        self.has_null = len(self.values) != len(given)

    def __repr__(self) -> str:
        return f"In({self.column!r}, {self.values + ((None,) if self.has_null else ())!r})"

    def bound(self, typ: pa.DataType | None) -> "BoundIn":
        return bind_in(self.column, self.values, self.has_null, typ)

    def pinned_values(self, column: str) -> list[object] | None:
        if self.column.lower() == column.lower() and all(_is_int(v) for v in self.values):
            return list(self.values)
        return None

    def to_arrow(self, schema: pa.Schema | None = None) -> pc.Expression:
        return self.bound(_column_type(schema, self.column)).to_arrow()

    def might_match(self, stats: Mapping[str, ColumnStats]) -> bool:
        s = _stats_of(stats, self.column)
        if s is None:
            return True
        if not self.values or _all_null(s):
            return False
        if s.min is None or s.max is None:
            return True
        try:
            return any(s.min <= _as_stats_value(v, s.min) <= s.max for v in self.values)
        except TypeError:
            return True

    def columns(self) -> frozenset[str]:
        return frozenset([self.column])

    def to_dict(self) -> dict[str, object]:
        values = list(self.values) + ([None] if self.has_null else [])
        return {"in": self.column, "values": [encode_value(v) for v in values]}


class IsNull(Expr):
    def __init__(self, column: str) -> None:
        self.column = column

    def __repr__(self) -> str:
        return f"IsNull({self.column!r})"

    def to_arrow(self, schema: pa.Schema | None = None) -> pc.Expression:
        return pc.field(self.column).is_null()

    def might_match(self, stats: Mapping[str, ColumnStats]) -> bool:
        s = _stats_of(stats, self.column)
        if s is None or s.null_count is None:
            return True
        return s.null_count > 0

    def columns(self) -> frozenset[str]:
        return frozenset([self.column])

    def to_dict(self) -> dict[str, object]:
        return {"is_null": self.column}


class IsNotNull(Expr):
    def __init__(self, column: str) -> None:
        self.column = column

    def __repr__(self) -> str:
        return f"IsNotNull({self.column!r})"

    def to_arrow(self, schema: pa.Schema | None = None) -> pc.Expression:
        return pc.field(self.column).is_valid()

    def might_match(self, stats: Mapping[str, ColumnStats]) -> bool:
        s = _stats_of(stats, self.column)
        if s is None:
            return True
        return not _all_null(s)

    def columns(self) -> frozenset[str]:
        return frozenset([self.column])

    def to_dict(self) -> dict[str, object]:
        return {"is_not_null": self.column}


class StartsWith(Expr):
    def __init__(self, column: str, prefix: object) -> None:  # checked: str or bytes
        if not isinstance(prefix, (str, bytes)):
            raise PredicateError(f"StartsWith({column!r}) needs a str or bytes prefix, not {prefix!r}")
        self.column, self.prefix = column, prefix

    def __repr__(self) -> str:
        return f"StartsWith({self.column!r}, {self.prefix!r})"

    def to_arrow(self, schema: pa.Schema | None = None) -> pc.Expression:
        if isinstance(self.prefix, bytes):
            # Arrow's starts_with works on binary too, but takes the pattern as str.
            n = len(self.prefix)
            return pc.binary_slice(pc.field(self.column), 0, n) == pa.scalar(self.prefix)
        return pc.starts_with(pc.field(self.column), pattern=self.prefix)

    def might_match(self, stats: Mapping[str, ColumnStats]) -> bool:
        s = _stats_of(stats, self.column)
        if s is None:
            return True
        if _all_null(s):
            return False
        if s.min is None or s.max is None:
            return True
        n = len(self.prefix)
        try:
            return bool(s.min[:n] <= self.prefix <= s.max[:n])
        except TypeError:
            return True

    def columns(self) -> frozenset[str]:
        return frozenset([self.column])

    def to_dict(self) -> dict[str, object]:
        return {"starts_with": self.column, "prefix": encode_value(self.prefix)}


class And(Expr):
    def __init__(self, *children: Expr) -> None:
        if not children:
            raise PredicateError("And() needs at least one operand")
        self.children = children

    def __repr__(self) -> str:
        return " & ".join(map(repr, self.children))

    def to_arrow(self, schema: pa.Schema | None = None) -> pc.Expression:
        out = self.children[0].to_arrow(schema)
        for c in self.children[1:]:
            out = out & c.to_arrow(schema)
        return out

    def might_match(self, stats: Mapping[str, ColumnStats]) -> bool:
        return all(c.might_match(stats) for c in self.children)

    def pinned_values(self, column: str) -> list[object] | None:
        for part in self.children:
            found = part.pinned_values(column)
            if found is not None:
                return found
        return None

    def columns(self) -> frozenset[str]:
        return frozenset().union(*(c.columns() for c in self.children))

    def to_dict(self) -> dict[str, object]:
        return {"and": [c.to_dict() for c in self.children]}


class Or(Expr):
    def __init__(self, *children: Expr) -> None:
        if not children:
            raise PredicateError("Or() needs at least one operand")
        self.children = children

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.children)) + ")"

    def to_arrow(self, schema: pa.Schema | None = None) -> pc.Expression:
        out = self.children[0].to_arrow(schema)
        for c in self.children[1:]:
            out = out | c.to_arrow(schema)
        return out

    def might_match(self, stats: Mapping[str, ColumnStats]) -> bool:
        return any(c.might_match(stats) for c in self.children)

    def columns(self) -> frozenset[str]:
        return frozenset().union(*(c.columns() for c in self.children))

    def to_dict(self) -> dict[str, object]:
        return {"or": [c.to_dict() for c in self.children]}


class Not(Expr):
    def __init__(self, child: Expr) -> None:
        self.child = child

    def __repr__(self) -> str:
        return f"~{self.child!r}"

    def to_arrow(self, schema: pa.Schema | None = None) -> pc.Expression:
        return ~self.child.to_arrow(schema)

    def pushed_down(self) -> Expr | None:
        """The negation moved into the child where that is exact under SQL's three-valued
        logic (NOT (x < 3) keeps exactly the rows with x >= 3); None where it is not."""
        c = self.child
        if isinstance(c, Comparison):
            return Comparison(c.column, _NEGATED[c.op], c.value)
        if isinstance(c, IsNull):
            return IsNotNull(c.column)
        if isinstance(c, IsNotNull):
            return IsNull(c.column)
        if isinstance(c, Not):
            return c.child
        if isinstance(c, And):
            return Or(*(Not(x) for x in c.children))
        if isinstance(c, Or):
            return And(*(Not(x) for x in c.children))
        return None

    def might_match(self, stats: Mapping[str, ColumnStats]) -> bool:
        pushed = self.pushed_down()
        return True if pushed is None else pushed.might_match(stats)

    def columns(self) -> frozenset[str]:
        return self.child.columns()

    def to_dict(self) -> dict[str, object]:
        return {"not": self.child.to_dict()}


class AlwaysTrue(Expr):
    def __repr__(self) -> str:
        return "AlwaysTrue()"

    def to_arrow(self, schema: pa.Schema | None = None) -> pc.Expression:
        return pc.scalar(True)

    def might_match(self, stats: Mapping[str, ColumnStats]) -> bool:
        return True

    def columns(self) -> frozenset[str]:
        return frozenset()

    def to_dict(self) -> dict[str, object]:
        return {"true": True}


def _as_stats_value(v: object, like: object) -> object:
    """A literal as the bound comparison sees it, for comparing with statistics like ``like``:
    against doubles (FLOAT/DOUBLE columns) a double; a float against exact numbers (integer and
    DECIMAL columns) the decimal it prints as. Pruning must never rule out a row the filter keeps
    (``d2 = 0.01`` keeps a DECIMAL 0.01, which the float 0.01's exact value is not)."""
    if not _is_number(v) or isinstance(like, bool):
        return v
    if isinstance(like, float):
        return float(v)
    if isinstance(like, (int, decimal.Decimal)) and isinstance(v, float):
        return as_exact_number(v)
    return v


def _column_type(schema: pa.Schema | None, column: str) -> pa.DataType | None:
    if schema is None or schema.get_field_index(column) < 0:
        return None
    return schema.field(column).type


def _literal(value: object, typ: pa.DataType | None) -> object:
    """A (non-numeric) literal as an Arrow scalar of its column's type when that conversion
    holds it; otherwise as Arrow infers it."""
    if typ is not None:
        try:
            return pa.scalar(value, type=typ)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            pass
    return pa.scalar(value) if isinstance(value, (bytes, decimal.Decimal)) else value


# --- binding a literal to its column's type: one comparison semantics for every engine --------
#
# A comparison means what SQL means by it: the column's value against the literal's value,
# exactly, never after converting the literal to the column's type (pyarrow's
# ``pa.scalar(1.5, pa.int32())`` is 1). So, for a column of an exact number type (integers,
# DECIMAL(p, s)) and a numeric literal v (a float is the decimal number it prints as: 0.1 is
# 0.1):
#   * v the column can hold (s or fewer fractional digits, inside the type's range): compared
#     as that value of the column's type;
#   * v between two values the column can hold: ``=`` holds for no row, ``!=`` for every
#     non-NULL row, ``< v`` / ``<= v`` become ``<= floor(v)``, ``> v`` / ``>= v`` become
#     ``> floor(v)`` (floor at the column's scale): ``i32 < 1.5`` keeps 1, ``>= 1.5`` starts at 2;
#   * v beyond the type's range: the answer is the same for every non-NULL row.
# A FLOAT or DOUBLE column is compared as a double with the literal as a double, as Spark
# compares a FloatType column with a double literal (it widens the float): a FLOAT holding
# 0.1f is 0.10000000149011612, so ``f32 = 0.1`` holds for no row, and ``f32 = 0.5`` does.
# Whatever the literal, a NULL column makes the comparison NULL (dropped; NULL under NOT too).

_CMP_TEXT = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_NULL_BOOL = pa.nulls(1, pa.bool_())[0]  # not pa.scalar(None, ...): that imports pandas (pyarrow checks for it)


@dataclass(frozen=True)
class BoundComparison:
    """A comparison bound to its column's type. ``constant`` None: ``column op value``, a
    value the column's type ``type`` holds (``widen``: the column is read as a double first,
    ``value`` a float). ``constant`` True/False: the answer for every non-NULL row (NULL rows:
    NULL)."""

    column: str
    op: str
    value: object
    type: pa.DataType | None = None
    constant: bool | None = None
    widen: bool = False

    def to_arrow(self) -> pc.Expression:
        f = pc.field(self.column)
        if self.constant is not None:
            return _constant_unless_null(f, self.constant)
        if self.widen:
            f = f.cast(pa.float64())
        v = self.value if self.widen else _literal(self.value, self.type)
        return {
            "==": lambda: f == v, "!=": lambda: f != v, "<": lambda: f < v,
            "<=": lambda: f <= v, ">": lambda: f > v, ">=": lambda: f >= v,
        }[self.op]()


@dataclass(frozen=True)
class BoundIn:
    """``column IN values`` bound to the column's type: ``values`` are the list's values the
    column can equal (as an Arrow array of the column's type, or with ``widen`` of doubles, the
    column read as a double and -0.0 as 0.0);
    ``has_null``: the list held a NULL."""

    column: str
    values: pa.Array
    has_null: bool
    widen: bool = False

    def to_arrow(self) -> pc.Expression:
        f = pc.field(self.column)
        if self.widen:
            f = f.cast(pa.float64()) + 0.0
        if len(self.values) == 0:
            return pc.scalar(_NULL_BOOL) if self.has_null else _constant_unless_null(f, False)
        found = f.isin(self.values)  # false (not NULL) for a NULL column: fixed below
        if self.has_null:
            return found | _NULL_BOOL            # true, else NULL
        return found | (f.is_null() & _NULL_BOOL)  # true/false, NULL for a NULL column


def _constant_unless_null(f: pc.Expression, answer: bool) -> pc.Expression:
    # Kleene logic: valid | NULL is true/NULL; null & NULL is NULL/false.
    return (f.is_valid() | _NULL_BOOL) if answer else (f.is_null() & _NULL_BOOL)


def _is_number(v: object) -> TypeGuard[int | float | decimal.Decimal]:
    return isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool)


def exact_number_range(typ: pa.DataType) -> tuple[decimal.Decimal, decimal.Decimal, int] | None:
    """(lowest, highest, scale) of an integer or decimal Arrow type; None for other types."""
    if pa.types.is_integer(typ):
        bits = typ.bit_width
        if pa.types.is_unsigned_integer(typ):
            return decimal.Decimal(0), decimal.Decimal(2 ** bits - 1), 0
        return decimal.Decimal(-(2 ** (bits - 1))), decimal.Decimal(2 ** (bits - 1) - 1), 0
    if pa.types.is_decimal(typ):
        top = decimal.Decimal(10) ** (typ.precision - typ.scale) - decimal.Decimal(1).scaleb(-typ.scale)
        return -top, top, typ.scale
    return None


_EXACT = decimal.Context(prec=200, rounding=decimal.ROUND_FLOOR)


def as_exact_number(v: int | float | decimal.Decimal) -> decimal.Decimal:
    """A numeric literal as an exact decimal (a float as the number it prints as)."""
    if isinstance(v, decimal.Decimal):
        return v
    if isinstance(v, float):
        return decimal.Decimal(repr(v))
    return decimal.Decimal(int(v))


def bind_comparison(column: str, op: str, value: object, typ: pa.DataType | None) -> BoundComparison:
    """``column op value`` for a column of Arrow type ``typ`` (None: unknown, compared as
    Arrow compares) in the form every engine evaluates the same way."""
    if typ is not None and _is_number(value):
        if pa.types.is_floating(typ):
            widen = not pa.types.is_float64(typ)
            return BoundComparison(column, op, float(value), None if widen else typ, widen=widen)
        rng = exact_number_range(typ)
        if rng is not None:
            return _bind_exact(column, op, as_exact_number(value), typ, *rng)
    return BoundComparison(column, op, value, typ)


def _bind_exact(column: str, op: str, v: decimal.Decimal, typ: pa.DataType,
                lo: decimal.Decimal, hi: decimal.Decimal, scale: int) -> BoundComparison:
    if v.is_nan():
        raise PredicateError(f"comparison {column} {op} NaN: column {column} ({typ}) holds no NaN")
    if v < lo or v > hi:
        below = v < lo  # every value of the column is above v
        answer = {"==": False, "!=": True, "<": not below, "<=": not below, ">": below, ">=": below}[op]
        return BoundComparison(column, op, None, typ, constant=answer)
    q = v.quantize(decimal.Decimal(1).scaleb(-scale), context=_EXACT)
    if q != v:  # between two values the column can hold
        if op in ("==", "!="):
            return BoundComparison(column, op, None, typ, constant=op == "!=")
        op = "<=" if op in ("<", "<=") else ">"
    return BoundComparison(column, op, int(q) if scale == 0 else q, typ)


def bind_in(column: str, values: tuple[object, ...], has_null: bool, typ: pa.DataType | None) -> BoundIn:
    """``column IN values`` for a column of Arrow type ``typ``: values the column cannot equal
    (1.5 for an integer column, beyond its range) are left out; they never match."""
    numbers = [v for v in values if _is_number(v)]
    if typ is not None and values and len(numbers) == len(values):
        if pa.types.is_floating(typ):
            # as doubles, and -0.0 as 0.0 on both sides: a set lookup hashes them apart, SQL's = does not
            return BoundIn(column, pa.array([float(v) + 0.0 for v in numbers], pa.float64()), has_null, widen=True)
        rng = exact_number_range(typ)
        if rng is not None:
            lo, hi, scale = rng
            kept = []
            for v in numbers:
                d = as_exact_number(v)
                if d.is_nan() or d < lo or d > hi or d.quantize(decimal.Decimal(1).scaleb(-scale), context=_EXACT) != d:
                    continue
                kept.append(int(d) if scale == 0 else d)
            return BoundIn(column, pa.array(kept, type=typ), has_null)
    if typ is not None:
        try:
            return BoundIn(column, pa.array(list(values), type=typ), has_null)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            pass
    return BoundIn(column, pa.array(list(values)), has_null)


# --- values in JSON -------------------------------------------------------------------------

def encode_value(v: object) -> object:
    """A filter literal (or a statistics value) as JSON: plain for bool/int/float/str,
    tagged for the rest so it comes back with its type."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return {"float": repr(v)}
    if isinstance(v, bytes):
        return {"bytes": base64.b64encode(v).decode("ascii")}
    if isinstance(v, decimal.Decimal):
        return {"decimal": str(v)}
    if isinstance(v, dt.datetime):
        return {"datetime": v.isoformat()}
    if isinstance(v, dt.date):
        return {"date": v.isoformat()}
    if isinstance(v, dt.timedelta):
        return {"duration_us": (v.days * 86400 + v.seconds) * 1_000_000 + v.microseconds}
    raise PredicateError(f"cannot serialise filter value {v!r} of type {type(v).__name__}")


def decode_value(v: object) -> object:
    if not isinstance(v, dict):
        return v
    (tag, x), = v.items()
    if tag == "float":
        return float(x)
    if tag == "bytes":
        return base64.b64decode(x)
    if tag == "decimal":
        return decimal.Decimal(x)
    if tag == "datetime":
        return dt.datetime.fromisoformat(x)
    if tag == "date":
        return dt.date.fromisoformat(x)
    if tag == "duration_us":
        return dt.timedelta(microseconds=x)
    raise PredicateError(f"unknown tagged value {v!r}")


def expr_from_dict(d: Mapping[str, Any]) -> Expr:
    if "cmp" in d:
        return Comparison(d["col"], d["cmp"], decode_value(d["value"]))
    if "in" in d:
        return In(d["in"], [decode_value(x) for x in d["values"]])
    if "is_null" in d:
        return IsNull(d["is_null"])
    if "is_not_null" in d:
        return IsNotNull(d["is_not_null"])
    if "starts_with" in d:
        return StartsWith(d["starts_with"], decode_value(d["prefix"]))
    if "and" in d:
        return And(*(expr_from_dict(x) for x in d["and"]))
    if "or" in d:
        return Or(*(expr_from_dict(x) for x in d["or"]))
    if "not" in d:
        return Not(expr_from_dict(d["not"]))
    if "true" in d:
        return AlwaysTrue()
    raise PredicateError(f"not a filter expression: {dict(d)!r}")


ColumnKey = TypeVar("ColumnKey", bound=Hashable)  # a column's name, or its id (a part's own statistics)


def merge_stats(many: Iterable[Mapping[ColumnKey, ColumnStats]]) -> dict[ColumnKey, ColumnStats]:
    """The statistics of the union of several row sets (for pruning a whole partition):
    min of mins, max of maxes, summed counts; a column unknown in any set is left out."""
    many = list(many)
    if not many:
        return {}
    names = set(many[0])
    for m in many[1:]:
        names &= set(m)
    out: dict[ColumnKey, ColumnStats] = {}
    for name in names:
        ss = [m[name] for m in many]
        mins = [s.min for s in ss if s.min is not None]
        maxs = [s.max for s in ss if s.max is not None]
        nonnull_unknown = any(s.min is None and not _all_null(s) for s in ss)
        try:
            lo = None if nonnull_unknown or not mins else min(mins)
            hi = None if nonnull_unknown or not maxs else max(maxs)
        except TypeError:
            lo = hi = None
        nulls = None if any(s.null_count is None for s in ss) else sum(s.null_count or 0 for s in ss)
        rows = None if any(s.row_count is None for s in ss) else sum(s.row_count or 0 for s in ss)
        out[name] = ColumnStats(lo, hi, nulls, rows)
    return out


def stats_to_json(stats: dict[int, ColumnStats]) -> dict[str, list[object]]:
    """A part's column statistics (by column id) as the manifest stores them."""
    out: dict[str, list[object]] = {}
    for cid, s in stats.items():
        try:
            out[str(cid)] = [encode_value(s.min), encode_value(s.max), s.null_count, s.row_count]
        except Exception:  # a value type the JSON form does not carry: no min/max for it
            out[str(cid)] = [None, None, s.null_count, s.row_count]
    return out


def stats_from_json(d: dict[str, Any]) -> dict[int, ColumnStats]:
    """``stats_to_json``'s form read back."""
    return {int(k): ColumnStats(decode_value(v[0]), decode_value(v[1]), v[2], v[3]) for k, v in d.items()}


__all__ = [
    "AlwaysTrue", "And", "BoundComparison", "BoundIn", "Col", "ColumnStats", "Comparison", "Expr", "In",
    "IsNotNull", "IsNull", "Not", "Or", "StartsWith", "bind_comparison", "bind_in", "col", "decode_value",
    "encode_value", "exact_number_range", "expr_from_dict", "merge_stats", "stats_from_json", "stats_to_json",
]
