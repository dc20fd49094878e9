"""The WHERE conjuncts of a native SQL query (``engine/native_sql.py``) that a table's read
stream applies itself, as the store's one filter form (``store.predicate``).

Found in DuckDB's own parse tree (``json_serialize_sql``), per SELECT and per table it reads
directly (a ``BASE_TABLE`` in its FROM, not one inside a subquery of it): each top-level AND
conjunct of the SELECT's WHERE that reads one of that table's columns and constants only:

* ``col = | <> | < | <= | > | >= constant`` (either side), ``col [NOT] BETWEEN c1 AND c2``,
  ``col [NOT] IN (constant, ...)`` (a NULL in the list included), ``col IS [NOT] NULL``,
  ``col [NOT] LIKE 'prefix%'`` and ``starts_with(col, 'prefix')`` on a text column;
* ``NOT`` of one, and ``OR`` / ``AND`` of several, all on the same table.

A constant is pushed only where it means the same to the store as to DuckDB: integers and
exact decimals to integer and DECIMAL columns; numbers to DOUBLE columns, only by ``=``, ``<``,
``<=``, ``IN`` (DuckDB orders NaN above every number, the store's filter does not); text to
text columns, and to binary ones when it is ASCII without a backslash (DuckDB reads ``\\x..``
escapes in a BLOB); ``'YYYY-MM-DD'`` and ``DATE '...'`` to DATE columns; ``'YYYY-MM-DD[
HH:MM:SS[.ffffff]]'`` and ``TIMESTAMP '...'`` to DATETIME and TIMESTAMP columns, with an
offset (``Z``, ``+HH``, ``+HH:MM``) to TIMESTAMP (UTC) only. Nothing is pushed to FLOAT or
TIME columns but ``IS [NOT] NULL``.

A column is the table's when it is qualified by the table's alias (or its name when it has
none, also as ``db.table.col``), or unqualified and no other table of the SELECT has it and the
FROM holds nothing whose columns are unknown here (a subquery, a CTE, a table function), no
NATURAL join and no USING of that name. A table with a column alias list (``t AS a(x, y)``)
gets nothing; a SELECT with a sample, or with a join other than inner, cross, LEFT, RIGHT or
FULL (SEMI, ANTI, ASOF, POSITIONAL), pushes nothing. On the nullable side of an outer join only a conjunct that
rejects the NULL-padded row is pushed (``IS NULL`` is not).

The ON condition of an inner join is a WHERE of that join's own rows: each of its top-level AND
conjuncts that is such a filter on one table read inside the join (its left or right side, at
any depth) is pushed to that read, under the same rules (on the nullable side of an outer join
below it, only a conjunct that rejects the NULL-padded row). The ON conditions of outer joins are
not pushed.

DuckDB still applies the whole WHERE: a pushed filter only ever drops rows no answer needs. A
table the statement reads more than once gets only the conjuncts every one of its reads has
(it is read from the store once for all of them).
"""
from __future__ import annotations

import datetime as dt
import decimal
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

import pyarrow as pa

from pyspark_theflash.schema import arrow_type
from pyspark_theflash.store.predicate import And, Comparison, Expr, In, IsNotNull, IsNull, Not, Or, StartsWith

if TYPE_CHECKING:
    from pyspark_theflash.schema.table_info import TableInfo

_COMPARE = {"COMPARE_EQUAL": "==", "COMPARE_NOTEQUAL": "!=", "COMPARE_LESSTHAN": "<", "COMPARE_GREATERTHAN": ">",
            "COMPARE_LESSTHANOREQUALTO": "<=", "COMPARE_GREATERTHANOREQUALTO": ">="}
_FLIP = {"==": "==", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}
_FLOAT_OPS = frozenset({"==", "<", "<="})  # the comparisons NaN fails in DuckDB and in the store alike
_INTEGER_IDS = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                          "UBIGINT", "UHUGEINT", "INTEGER_LITERAL"})
_JOIN_TYPES = frozenset({"INNER", "LEFT", "RIGHT", "FULL", "OUTER"})
_REF_TYPES = frozenset({"REGULAR", "CROSS", "NATURAL"})
_LIKE = {"~~": False, "!~~": True}
_PREFIX_FUNCTIONS = frozenset({"starts_with", "prefix"})
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
                        r"(Z|[+-]\d{2}(?::\d{2})?)?)?$")


@dataclass(frozen=True)
class _Constant:
    """A constant of the statement: ``kind`` is int, decimal, double, text, date (``DATE
    'text'``), timestamp (``TIMESTAMP 'text'``), timestamptz or null."""

    kind: str
    value: int | decimal.Decimal | float | str | None  # str for text and the dates and times, None for null


@dataclass
class _Read:
    """One table read directly by a SELECT's FROM."""

    node: dict[str, object]
    binding: str                      # the name the SELECT knows it by (alias, else table name)
    schema: str
    name: str
    aliased: bool
    nullable: bool                    # on the NULL-padded side of an outer join
    types: dict[str, tuple[str, pa.DataType]]  # lower-case column -> (the table's spelling, Arrow type)


@dataclass
class _Scope:
    """What a SELECT's FROM binds: the tables it reads directly, the names of everything else,
    and whether its WHERE may push anything at all."""

    reads: list[_Read] = field(default_factory=list)
    others: set[str] = field(default_factory=set)   # bindings whose columns are unknown here
    unknown_columns: bool = False                   # unqualified names may be some other item's
    using: set[str] = field(default_factory=set)    # names merged by USING
    pushes: bool = True
    # each inner join's ON condition, with the ids of the reads inside that join
    inner_joins: list[tuple[object, set[int]]] = field(default_factory=list)

    def column(self, names: list[str] | None) -> tuple[_Read, str, pa.DataType] | None:
        """The table read a column reference names and the column, when that is certain."""
        if not names:
            return None
        parts = [n.lower() for n in names]
        if len(parts) == 1:
            if self.unknown_columns or parts[0] in self.using:
                return None
            found = [r for r in self.reads if parts[0] in r.types]
            return (found[0], *found[0].types[parts[0]]) if len(found) == 1 else None
        if len(parts) == 2:
            qualifier, column = parts
            if qualifier in self.others:
                return None
            found = [r for r in self.reads if r.binding == qualifier]
        elif len(parts) == 3:
            schema, table, column = parts
            if schema in self.others or any(r.binding == schema for r in self.reads):
                return None  # perhaps table.column.field
            found = [r for r in self.reads if not r.aliased and r.schema == schema and r.name == table]
        else:
            return None
        if len(found) != 1 or column not in found[0].types:
            return None
        return (found[0], *found[0].types[column])


def pushed_filters(statements: object, table_of: Callable[[dict[str, object]], TableInfo | None]) -> dict[int, Expr]:
    """Per table the statement reads (``id`` of the ``TableInfo`` that ``table_of`` gives for a
    ``BASE_TABLE`` node; None for a CTE or anything not of the store), the filter its read
    stream may apply: the conjuncts every read of it has. Tables with none are left out."""
    per_read: dict[int, list[Expr]] = {}
    for select in _nodes(statements, lambda n: n.get("type") == "SELECT_NODE"):
        scope = _scope(select, table_of)
        if not scope.pushes:
            continue
        conditions = [(select.get("where_clause"), None), *scope.inner_joins]
        for condition, inside in conditions:
            for conjunct in _conjuncts(condition):
                found = _expression(conjunct, scope)
                if found is None:
                    continue
                read, expr = found
                if inside is not None and id(read.node) not in inside:
                    continue  # an ON naming a table outside its join (DuckDB refuses it anyway)
                if read.nullable and _when_null(expr) is True:
                    continue  # it keeps the NULL-padded row: pushing it would pad rows it drops
                per_read.setdefault(id(read.node), []).append(expr)
    by_table: dict[int, list[list[Expr]]] = {}
    for node in _nodes(statements, lambda n: n.get("type") == "BASE_TABLE"):
        info = table_of(node)
        if info is not None:
            by_table.setdefault(id(info), []).append(per_read.get(id(node), []))
    out: dict[int, Expr] = {}
    for key, reads in by_table.items():
        common = [e for e in reads[0] if all(e.to_json() in {x.to_json() for x in other} for other in reads[1:])]
        unique = list({e.to_json(): e for e in common}.values())
        if unique:
            out[key] = unique[0] if len(unique) == 1 else And(*unique)
    return out


def _nodes(tree: object, wanted: Callable[[dict[str, object]], bool]) -> Iterator[dict[str, object]]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, dict):
            if wanted(node):
                yield node
            stack.extend(v for v in reversed(list(node.values())) if isinstance(v, (dict, list)))


def _scope(select: dict[str, object], table_of: Callable[[dict[str, object]], TableInfo | None]) -> _Scope:
    scope = _Scope(pushes=not select.get("sample"))

    def visit(item: object, nullable: bool) -> None:
        if not isinstance(item, dict):
            scope.pushes = False
            return
        kind = item.get("type")
        if kind == "JOIN":
            join, ref = str(item.get("join_type", "")).upper(), str(item.get("ref_type", "")).upper()
            if join not in _JOIN_TYPES or ref not in _REF_TYPES:
                scope.pushes = False
            if ref == "NATURAL":
                scope.unknown_columns = True
            scope.using.update(str(c).lower() for c in item.get("using_columns") or ())
            first = len(scope.reads)
            visit(item.get("left"), nullable or join in ("RIGHT", "FULL", "OUTER"))
            visit(item.get("right"), nullable or join in ("LEFT", "FULL", "OUTER"))
            if join == "INNER" and ref == "REGULAR" and item.get("condition") is not None:
                scope.inner_joins.append((item["condition"], {id(r.node) for r in scope.reads[first:]}))
            return
        if kind == "EMPTY":
            return
        alias = str(item.get("alias") or "").lower()
        info = table_of(item) if kind == "BASE_TABLE" else None
        if info is None or item.get("column_name_alias") or item.get("sample"):
            if item.get("sample"):
                scope.pushes = False
            scope.others.add(alias or str(item.get("table_name") or "").lower())
            scope.unknown_columns = True
            return
        name = str(item.get("table_name") or "").lower()
        scope.reads.append(_Read(item, alias or name, str(item.get("schema_name") or "main").lower(), name,
                                 bool(alias), nullable, _column_types(info)))

    visit(select.get("from_table"), False)
    return scope


def _column_types(info: TableInfo) -> dict[str, tuple[str, pa.DataType]]:
    out = {c.name.lower(): (c.name, arrow_type(c)) for c in info.columns}
    out["_tidb_rowid"] = ("_tidb_rowid", pa.binary() if info.is_common_handle else pa.int64())
    out["_tidb_commit_ts"] = ("_tidb_commit_ts", pa.int64())
    return out


def _conjuncts(where: object) -> Iterator[object]:
    if isinstance(where, dict) and where.get("type") == "CONJUNCTION_AND":
        for child in where.get("children") or ():
            yield from _conjuncts(child)
    elif where is not None:
        yield where


def _expression(node: object, scope: _Scope) -> tuple[_Read, Expr] | None:
    """``node`` as a filter on one table read of ``scope`` (None: not one the stream can apply)."""
    if not isinstance(node, dict):
        return None
    kind = node.get("type")
    if kind in ("CONJUNCTION_OR", "CONJUNCTION_AND", "OPERATOR_NOT"):
        children = node.get("children") or []
        parts = [p for p in (_expression(c, scope) for c in children) if p is not None]
        if not parts or len(parts) != len(children) or len({id(read) for read, _ in parts}) != 1:
            return None  # a part the stream cannot apply, or parts on different tables
        read, exprs = parts[0][0], [expr for _, expr in parts]
        if kind == "OPERATOR_NOT":
            return (read, Not(exprs[0])) if len(exprs) == 1 else None
        return read, (Or(*exprs) if kind == "CONJUNCTION_OR" else And(*exprs))
    if kind in _COMPARE:
        op = _COMPARE[str(kind)]
        left, right = node.get("left"), node.get("right")
        if _names(right) is not None and _names(left) is None:
            left, right, op = right, left, _FLIP[op]
        return _comparison(scope.column(_names(left)), op, right)
    children = node.get("children") or []
    if kind in ("COMPARE_IN", "COMPARE_NOT_IN"):
        if len(children) < 2:
            return None
        return _in(scope.column(_names(children[0])), children[1:], negated=kind == "COMPARE_NOT_IN")
    if kind in ("OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL"):
        found = scope.column(_names(children[0])) if len(children) == 1 else None
        if found is None:
            return None
        read, column, _typ = found
        return read, (IsNull(column) if kind == "OPERATOR_IS_NULL" else IsNotNull(column))
    if kind == "COMPARE_BETWEEN":
        found = scope.column(_names(node.get("input")))
        low, high = _comparison(found, ">=", node.get("lower")), _comparison(found, "<=", node.get("upper"))
        return (low[0], And(low[1], high[1])) if low is not None and high is not None else None
    if kind == "FUNCTION":
        return _prefix(node, scope)
    return None


def _names(node: object) -> list[str] | None:
    """The names of a column reference (``["o", "total"]``); None for anything else."""
    if isinstance(node, dict) and node.get("class") == "COLUMN_REF" and isinstance(node.get("column_names"), list):
        return [str(n) for n in node["column_names"]]
    return None


def _comparison(found: tuple[_Read, str, pa.DataType] | None, op: str, node: object) -> tuple[_Read, Expr] | None:
    constant = _constant(node)
    if found is None or constant is None or constant.kind == "null":
        return None
    read, column, typ = found
    if pa.types.is_floating(typ) and op not in _FLOAT_OPS:
        return None
    value = _value(constant, typ)
    return None if value is None else (read, Comparison(column, op, value))


def _in(found: tuple[_Read, str, pa.DataType] | None, nodes: list[object], negated: bool) -> tuple[_Read, Expr] | None:
    if found is None or (negated and pa.types.is_floating(found[2])):
        return None
    read, column, typ = found
    values = []
    for node in nodes:
        constant = _constant(node)
        if constant is None:
            return None
        value = None if constant.kind == "null" else _value(constant, typ)
        if value is None and constant.kind != "null":
            return None
        values.append(value)
    expr: Expr = In(column, values)
    return read, (Not(expr) if negated else expr)


def _prefix(node: dict[str, object], scope: _Scope) -> tuple[_Read, Expr] | None:
    """``col LIKE 'prefix%'``, ``col NOT LIKE 'prefix%'``, ``starts_with(col, 'prefix')`` on a
    text column."""
    name = str(node.get("function_name") or "").lower()
    children = node.get("children")
    if not isinstance(children, list):  # DuckDB gives a function's arguments as a list
        return None
    if (name not in _LIKE and name not in _PREFIX_FUNCTIONS) or len(children) != 2 or node.get("distinct") \
            or node.get("filter") or node.get("catalog"):
        return None
    found = scope.column(_names(children[0]))
    constant = _constant(children[1])
    if found is None or constant is None or constant.kind != "text" or not pa.types.is_string(found[2]):
        return None
    text = str(constant.value)
    if name in _LIKE:
        if not text.endswith("%"):
            return None
        text = text[:-1]
        if any(c in text for c in "%_\\"):
            return None
    read, column, _typ = found
    expr: Expr = StartsWith(column, text)
    return read, (Not(expr) if _LIKE.get(name) else expr)


def _constant(node: object) -> _Constant | None:
    if not isinstance(node, dict):
        return None
    if node.get("type") == "OPERATOR_CAST" and not node.get("try_cast"):
        inner = _constant(node.get("child"))
        target = str((node.get("cast_type") or {}).get("id", "")).upper()
        if inner is None or inner.kind != "text":
            return None
        text = str(inner.value)
        if target in ("DATE", "TIMESTAMP"):
            return _Constant(target.lower(), text)
        if target in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
            return _Constant("timestamptz", text)
        if target == "VARCHAR":
            return inner
        return None
    if node.get("type") != "VALUE_CONSTANT" or not isinstance(node.get("value"), dict):
        return None
    value = node["value"]
    if value.get("is_null"):
        return _Constant("null", None)
    type_id = str((value.get("type") or {}).get("id", "")).upper()
    raw = value.get("value")
    if type_id in _INTEGER_IDS:
        number = _integer(raw)
        return None if number is None else _Constant("int", number)
    if type_id == "DECIMAL":
        unscaled = _integer(raw)
        scale = (value["type"].get("type_info") or {}).get("scale")
        if unscaled is None or not isinstance(scale, int):
            return None
        return _Constant("decimal", decimal.Decimal(unscaled).scaleb(-scale))
    if type_id == "DOUBLE" and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return _Constant("double", float(raw))
    if type_id == "VARCHAR" and isinstance(raw, str):
        return _Constant("text", raw)
    return None


def _integer(raw: object) -> int | None:
    """An integer as DuckDB serialises it: a number, or a HUGEINT's ``{"upper", "lower"}``."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, dict) and set(raw) <= {"upper", "lower"}:
        upper, lower = raw.get("upper", 0), raw.get("lower", 0)
        if isinstance(upper, int) and isinstance(lower, int):
            return upper * 2 ** 64 + lower
    return None


def _value(constant: _Constant, typ: pa.DataType) -> object:
    """``constant`` as the value the store compares with a column of type ``typ`` the way
    DuckDB compares it; None when the two might differ."""
    kind, v = constant.kind, constant.value
    if pa.types.is_integer(typ) or pa.types.is_decimal(typ):
        return v if kind in ("int", "decimal") else None
    if pa.types.is_float64(typ):
        return v if kind in ("int", "decimal", "double") else None
    if pa.types.is_string(typ):
        return v if kind == "text" else None
    if pa.types.is_binary(typ):
        return v.encode("ascii") if kind == "text" and isinstance(v, str) and v.isascii() and "\\" not in v else None
    if pa.types.is_date32(typ):
        m = _DATE.match(v) if kind in ("text", "date") and isinstance(v, str) else None
        return _date(m) if m else None
    if pa.types.is_timestamp(typ) and typ.unit == "us":
        allowed = ("text", "date", "timestamp") + (("timestamptz",) if typ.tz is not None else ())
        m = _TIMESTAMP.match(v) if kind in allowed and isinstance(v, str) else None
        if m is None or (kind == "date" and m.group(4) is not None):
            return None
        offset = m.group(8)
        if offset is not None and (typ.tz is None or kind not in ("text", "timestamptz")):
            return None
        moment = _datetime(m)
        if moment is None or typ.tz is None:
            return moment
        return moment.replace(tzinfo=_zone(offset)).astimezone(dt.timezone.utc)
    return None


def _date(m: re.Match[str]) -> dt.date | None:
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def _datetime(m: re.Match[str]) -> dt.datetime | None:
    try:
        return dt.datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4) or 0),
                           int(m.group(5) or 0), int(m.group(6) or 0), int((m.group(7) or "0").ljust(6, "0")))
    except ValueError:
        return None


def _zone(offset: str | None) -> dt.timezone:
    if offset is None or offset == "Z":
        return dt.timezone.utc
    sign = -1 if offset[0] == "-" else 1
    hours, _, minutes = offset[1:].partition(":")
    return dt.timezone(sign * dt.timedelta(hours=int(hours), minutes=int(minutes or 0)))


def _when_null(expr: Expr) -> bool | None:
    """``expr`` on the NULL-padded row (every column NULL), in SQL's three values."""
    if isinstance(expr, IsNull):
        return True
    if isinstance(expr, IsNotNull):
        return False
    if isinstance(expr, Not):
        inner = _when_null(expr.child)
        return None if inner is None else not inner
    if isinstance(expr, (And, Or)):
        values = [_when_null(c) for c in expr.children]
        decisive = isinstance(expr, Or)  # TRUE decides an OR, FALSE an AND
        if decisive in values:
            return decisive
        return None if None in values else not decisive
    return None  # a comparison, IN or prefix of NULL is NULL
