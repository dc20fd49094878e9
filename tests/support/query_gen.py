"""Seeded random Spark queries for the differential suite (``test_spark_differential.py``).

A :class:`QueryGenerator` draws queries over a set of tables described by :class:`TableModel`
(column kinds and the values the data holds, so equality and range filters find rows). A
:class:`Query` is a list of steps; each step is SQL text or a chain of DataFrame calls, and is
written with placeholders so the same query runs on TheFlash and on the reference:

* ``{T:orders:df}`` / ``{T:orders:sql}``: the table ``orders`` read through the temporary view
  of a loaded DataFrame (``df.createOrReplaceTempView``) or through
  ``CREATE TEMPORARY VIEW ... USING theflash``; the reference side reads its Parquet copy.
* ``{C:c3}``: a name the query itself creates (``CACHE TABLE c3 AS ...``), one per side.
* a :class:`Frame` starts from the long-lived loaded DataFrame of a table (``df``: the same
  object for every query of a run, as a user reuses one) or from ``spark.table(view)``.

Nothing here knows about TheFlash: the test binds placeholders to views and DataFrames.
"""
from __future__ import annotations

import datetime as dt
import decimal
import random
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

# Spark type name (DataType.typeName()) → the generator's kind of column.
KIND_OF_TYPE = {
    "byte": "int", "short": "int", "integer": "int", "long": "int",
    "decimal": "decimal", "float": "float", "double": "float",
    "date": "date", "timestamp_ntz": "ts_ntz", "timestamp": "ts",
    "string": "string", "binary": "binary", "daytimeinterval": "interval", "boolean": "bool",
}
ORDERED_KINDS = {"int", "decimal", "float", "date", "ts_ntz", "ts", "string", "binary", "interval"}

LITERAL_MAX_LEN = 40  # longer strings and blobs are left out of literals (readable failures)
LONG_SUM_BOUND = 1 << 62  # a sum of longs below this cannot overflow under ANSI mode


# --------------------------------------------------------------------------- the data's shape

@dataclass(frozen=True)
class ColumnModel:
    name: str
    kind: str                   # a value of KIND_OF_TYPE
    type_name: str              # Spark's simpleString, e.g. decimal(12,2)
    values: tuple[Any, ...]     # distinct non-NULL values the table holds, short enough for literals
    nullable_data: bool         # some row holds NULL
    summable: bool              # sum() cannot overflow (ANSI mode raises on overflow)
    averageable: bool           # avg() is exact whatever the order of rows
    low_card: bool              # few distinct values: a good GROUP BY or many-to-many join key


@dataclass(frozen=True)
class TableModel:
    name: str                            # the logical name placeholders use
    columns: tuple[ColumnModel, ...]
    key: tuple[str, ...]                 # a unique key (ORDER BY ... LIMIT, key self-joins)

    def column(self, name: str) -> ColumnModel:
        return next(c for c in self.columns if c.name == name)


def model_table(name: str, schema: Any, rows: Sequence[Mapping[str, Any]], key: Sequence[str]) -> TableModel:
    """A table's model from its Spark schema and its rows (Python values as Arrow gives them)."""
    columns = []
    for f in schema.fields:
        type_name = f.dataType.simpleString()
        kind = KIND_OF_TYPE.get(f.dataType.typeName(), "other")
        raw = [r[f.name] for r in rows]
        present = [v for v in raw if v is not None]
        distinct = _distinct(present)
        summable = averageable = False
        if kind == "int":
            total = sum(abs(int(v)) for v in present)
            summable = total < LONG_SUM_BOUND
            averageable = total < (1 << 53)  # avg of integers sums doubles: exact below 2**53
        elif kind == "decimal":
            precision, scale = (int(x) for x in re.findall(r"\d+", type_name))
            total = sum(abs(v) for v in present)
            summable = averageable = total < decimal.Decimal(10) ** (min(38, precision + 10) - scale - 1)
        literals = tuple(v for v in distinct if not isinstance(v, (str, bytes)) or len(v) <= LITERAL_MAX_LEN)
        columns.append(ColumnModel(f.name, kind, type_name, literals, len(present) < len(raw),
                                   summable, averageable, 1 < len(distinct) <= 12))
    return TableModel(name, tuple(columns), tuple(key))


def _distinct(values: Iterable[Any]) -> list[Any]:
    seen: dict[Any, Any] = {}
    for v in values:
        k = canonical(v)
        if k not in seen:
            seen[k] = v
    try:
        return sorted(seen.values())
    except TypeError:
        return list(seen.values())


# --------------------------------------------------------------------------- literals

def sql_string(text: str) -> str:
    """A Spark SQL string literal (backslash escapes, Spark's default)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _interval(v: dt.timedelta) -> str:
    us = (v.days * 86400 + v.seconds) * 1_000_000 + v.microseconds
    sign = "-" if us < 0 else ""
    us = abs(us)
    days, us = divmod(us, 86_400_000_000)
    hours, us = divmod(us, 3_600_000_000)
    minutes, us = divmod(us, 60_000_000)
    seconds, us = divmod(us, 1_000_000)
    return f"INTERVAL '{sign}{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{us:06d}' DAY TO SECOND"


def literal(column: ColumnModel, v: Any) -> str:
    """``v`` as a Spark SQL literal of ``column``'s kind (a value exactly as stored)."""
    k = column.kind
    if v is None:
        return "NULL"
    if k == "int":
        return str(int(v))
    if k == "decimal":
        return f"{format(v, 'f')}BD"
    if k == "float":
        return f"CAST('{float(v)!r}' AS DOUBLE)"  # Java parses Python's repr back to the same bits
    if k == "date":
        return f"DATE'{v.isoformat()}'"
    if k == "ts_ntz":
        return f"TIMESTAMP_NTZ'{v.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
    if k == "ts":
        utc = v.astimezone(dt.timezone.utc) if v.tzinfo else v
        return f"TIMESTAMP'{utc.strftime('%Y-%m-%d %H:%M:%S.%f')}+00:00'"
    if k == "string":
        return sql_string(v)
    if k == "binary":
        return f"X'{bytes(v).hex()}'"
    if k == "interval":
        return _interval(v)
    if k == "bool":
        return "TRUE" if v else "FALSE"
    raise ValueError(f"no literal for {column.name} of kind {k}")


def like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sql_string(escaped + "%")


# --------------------------------------------------------------------------- queries

@dataclass(frozen=True)
class Frame:
    """A DataFrame built by calls on a base: ``base`` is ``df`` (the table's long-lived loaded
    DataFrame) or ``table`` (``spark.table(view)``); ``calls`` are (method, args) where an arg is
    a string, an int, a tuple of strings or another Frame."""

    table: str
    base: str
    calls: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def then(self, method: str, *args: Any) -> "Frame":
        return Frame(self.table, self.base, self.calls + ((method, args),))

    def text(self) -> str:
        head = f"{self.table}_df" if self.base == "df" else f"spark.table(<{self.table} view>)"
        return head + "".join(f".{m}({', '.join(_arg_text(a) for a in args)})" for m, args in self.calls)


def _arg_text(a: Any) -> str:
    if isinstance(a, Frame):
        return a.text()
    if isinstance(a, tuple):
        return "[" + ", ".join(repr(x) for x in a) + "]"
    return repr(a)


@dataclass(frozen=True)
class Step:
    """One action. ``sql``: SQL text with placeholders; or ``frame`` and ``action`` ("count",
    "collect"). ``compare`` is False for statements (CACHE TABLE, UNCACHE TABLE); ``ordered``
    when the result's row order is defined (ORDER BY a unique key)."""

    sql: str | None = None
    frame: Frame | None = None
    action: str = "collect"
    compare: bool = True
    ordered: bool = False

    def text(self) -> str:
        if self.sql is not None:
            return self.sql
        assert self.frame is not None
        return f"{self.frame.text()}.{self.action}()"


@dataclass(frozen=True)
class Query:
    number: int
    kind: str
    steps: tuple[Step, ...]

    def text(self) -> str:
        return "\n".join(f"  [{i}] {s.text()}" for i, s in enumerate(self.steps))


# --------------------------------------------------------------------------- comparing results

def canonical(v: Any) -> Any:
    """A value as a hashable key that tells apart what Spark tells apart: float bits (0.0 vs
    -0.0, NaN payloads aside), Decimal scale, naive vs aware datetimes."""
    if v is None:
        return ("null",)
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, float):
        return ("float", struct.pack(">d", v) if v == v else b"nan")
    if isinstance(v, decimal.Decimal):
        return ("dec", str(v))
    if isinstance(v, (bytes, bytearray, memoryview)):
        return ("bin", bytes(v))
    if isinstance(v, dt.datetime):
        return ("dtm", v.isoformat())
    if isinstance(v, (list, tuple)):
        return ("seq", tuple(canonical(x) for x in v))
    if isinstance(v, dict):
        return ("map", tuple(sorted((canonical(k), canonical(x)) for k, x in v.items())))
    return (type(v).__name__, v)


def canonical_rows(rows: Iterable[Any]) -> list[tuple[Any, ...]]:
    return [tuple(canonical(v) for v in row) for row in rows]


def differences(expected: Sequence[tuple[Any, ...]], got: Sequence[tuple[Any, ...]], ordered: bool,
                limit: int = 5) -> str | None:
    """None when equal (as lists when ``ordered``, else as multisets); else what differs."""
    if ordered and list(expected) == list(got):
        return None
    e, g = Counter(expected), Counter(got)
    if not ordered and e == g:
        return None
    missing = list((e - g).elements())
    extra = list((g - e).elements())
    lines = [f"expected {len(expected)} row(s), got {len(got)}"]
    if ordered and not missing and not extra:
        lines.append("same rows in another order")
    if missing:
        lines.append(f"missing ({len(missing)}): " + "; ".join(_row_text(r) for r in missing[:limit]))
    if extra:
        lines.append(f"extra ({len(extra)}): " + "; ".join(_row_text(r) for r in extra[:limit]))
    return "\n    ".join(lines)


def _row_text(row: tuple[Any, ...]) -> str:
    def one(c: Any) -> str:
        tag, *rest = c
        if tag == "float":
            return repr(struct.unpack(">d", rest[0])[0]) if rest[0] != b"nan" else "nan"
        if tag == "null":
            return "NULL"
        if tag == "bin":
            return "0x" + rest[0].hex()[:24]
        value = rest[0]
        text = value if isinstance(value, str) else repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return "(" + ", ".join(one(c) for c in row) + ")"


# --------------------------------------------------------------------------- the generator

@dataclass(frozen=True)
class JoinEdge:
    """Tables that join on column pairs (``unique``: the right side's columns are a key)."""

    left: str
    right: str
    pairs: tuple[tuple[str, str], ...]
    unique: bool


@dataclass
class QueryGenerator:
    seed: int
    tables: Mapping[str, TableModel]
    edges: Sequence[JoinEdge]
    rng: random.Random = field(init=False)
    _number: int = field(default=0, init=False)
    _cache_names: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._kinds: list[tuple[str, Callable[[], tuple[Step, ...]]]] = [
            ("filter_select", self._filter_select), ("filter_count", self._filter_count),
            ("aggregate", self._aggregate), ("self_join", self._self_join), ("join", self._join),
            ("semi_anti", self._semi_anti), ("in_subquery", self._in_subquery),
            ("scalar_subquery", self._scalar_subquery), ("cte_twice", self._cte_twice),
            ("set_op", self._set_op), ("order_limit", self._order_limit), ("cache", self._cache),
            ("frame_filter", self._frame_filter), ("frame_aggregate", self._frame_aggregate),
            ("frame_self_join", self._frame_self_join), ("frame_reuse", self._frame_reuse),
        ]
        self._weights = [14, 8, 10, 10, 6, 6, 5, 4, 7, 5, 4, 4, 8, 4, 5, 6]

    # -- the public surface
    def query(self) -> Query:
        kind, make = self.rng.choices(self._kinds, weights=self._weights)[0]
        self._number += 1
        return Query(self._number, kind, make())

    def queries(self, n: int) -> list[Query]:
        return [self.query() for _ in range(n)]

    # -- pieces
    def _table(self) -> TableModel:
        return self.tables[self.rng.choice(sorted(self.tables))]

    def _ref(self, table: TableModel, via: str | None = None) -> str:
        return "{T:" + table.name + ":" + (via or self.rng.choice(("df", "sql"))) + "}"

    def _columns(self, table: TableModel, lo: int = 1, hi: int = 5) -> list[ColumnModel]:
        return self.rng.sample(list(table.columns), min(len(table.columns), self.rng.randint(lo, hi)))

    def _value(self, c: ColumnModel) -> Any:
        r = self.rng
        if c.values and r.random() < 0.85:
            return r.choice(c.values)
        return self._random_value(c)

    def _random_value(self, c: ColumnModel) -> Any:
        r = self.rng
        k = c.kind
        if k == "int":
            bits = {"tinyint": 7, "smallint": 15, "int": 31, "bigint": 63}.get(c.type_name, 31)
            return r.choice([0, 1, -1, r.randint(-(1 << bits), (1 << bits) - 1)])
        if k == "decimal":
            precision, scale = (int(x) for x in re.findall(r"\d+", c.type_name))
            digits = max(1, min(precision - scale, 6))
            return decimal.Decimal(r.randint(-(10 ** digits) + 1, 10 ** digits - 1)).scaleb(-scale) if scale else \
                decimal.Decimal(r.randint(0, 10 ** digits - 1))
        if k == "float":
            return r.choice([0.0, -0.0, 1.5, -1e300, r.uniform(-1e6, 1e6)])
        if k == "date":
            return dt.date(2020, 1, 1) + dt.timedelta(days=r.randrange(-400, 400))
        if k == "ts_ntz":
            return dt.datetime(2024, 1, 1) + dt.timedelta(seconds=r.randrange(-10**7, 10**7))
        if k == "ts":
            return dt.datetime(2030, 6, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=r.randrange(-10**7, 10**7))
        if k == "string":
            return r.choice(["", "a", "zz", "note ", "customer 1", "Beta", "ü"])
        if k == "binary":
            return r.randbytes(r.randrange(0, 7))
        if k == "interval":
            return dt.timedelta(seconds=r.randrange(-86400 * 30, 86400 * 30))
        return None

    def _atom(self, table: TableModel, alias: str = "") -> str:
        r = self.rng
        c = r.choice([c for c in table.columns if c.kind != "other"])
        name = alias + (c.name.upper() if r.random() < 0.1 else c.name)  # Spark resolves names in any case
        ops = ["=", "<>", "<", "<=", ">", ">=", "in", "not_in", "is_null", "is_not_null", "between", "null_safe"]
        if c.kind == "string":
            ops += ["like", "like", "not_like"]
        if c.kind not in ORDERED_KINDS:
            ops = ["=", "<>", "in", "is_null", "is_not_null"]
        op = r.choice(ops)
        if op == "is_null":
            return f"{name} IS NULL"
        if op == "is_not_null":
            return f"{name} IS NOT NULL"
        if op in ("in", "not_in"):
            values = {canonical(v): v for v in (self._value(c) for _ in range(r.randint(1, 4)))}
            items = ", ".join(literal(c, v) for v in values.values())
            return f"{name} {'NOT IN' if op == 'not_in' else 'IN'} ({items})"
        if op == "between":
            a, b = self._value(c), self._value(c)
            try:
                a, b = sorted((a, b))
            except TypeError:
                pass
            return f"{name} BETWEEN {literal(c, a)} AND {literal(c, b)}"
        if op in ("like", "not_like"):
            v = self._value(c) or ""
            prefix = v[: r.randint(min(1, len(v)), min(3, len(v)))]
            return f"{name} {'NOT LIKE' if op == 'not_like' else 'LIKE'} {like_prefix(prefix)}"
        if op == "null_safe":
            v = None if r.random() < 0.3 else self._value(c)
            return f"{name} <=> {literal(c, v)}"
        return f"{name} {op} {literal(c, self._value(c))}"

    def predicate(self, table: TableModel, alias: str = "", depth: int = 0) -> str:
        r = self.rng
        roll = r.random()
        if depth >= 2 or roll < 0.45:
            return self._atom(table, alias)
        if roll < 0.55:
            return f"NOT ({self.predicate(table, alias, depth + 1)})"
        op = "AND" if roll < 0.8 else "OR"
        return f"({self.predicate(table, alias, depth + 1)} {op} {self.predicate(table, alias, depth + 1)})"

    def _projection(self, table: TableModel, alias: str = "") -> list[str]:
        out = []
        for c in self._columns(table):
            name = alias + c.name
            roll = self.rng.random()
            if roll < 0.7:
                out.append(name)
            elif roll < 0.8:
                out.append(f"{name} IS NULL")
            elif c.kind == "string" and roll < 0.9:
                out.append(f"length({name})")
            elif c.kind == "binary":
                out.append(f"hex({name})")
            elif c.kind in ("int", "decimal", "date", "ts_ntz", "string"):
                out.append(f"CAST({name} AS STRING)")
            else:
                out.append(name)
        # distinct output names: Spark allows duplicates, but a CACHE TABLE ... AS SELECT does not
        return [f"{e} AS o{i}" for i, e in enumerate(out)]

    def _aggregates(self, table: TableModel, alias: str = "") -> list[str]:
        r = self.rng
        out = ["count(*)"]
        for c in self._columns(table, 1, 4):
            name = alias + c.name
            choices = [f"count({name})", f"count(DISTINCT {name})"]
            if c.summable:
                choices.append(f"sum({name})")
            if c.averageable:
                choices.append(f"avg({name})")
            if c.kind in ORDERED_KINDS and c.kind != "float":  # min/max of 0.0 and -0.0 depend on row order
                choices += [f"min({name})", f"max({name})"]
            out.append(r.choice(choices))
        return out

    def _group_column(self, table: TableModel) -> ColumnModel:
        low = [c for c in table.columns if c.low_card]
        return self.rng.choice(low or list(table.columns))

    # -- query kinds (SQL)
    def _filter_select(self) -> tuple[Step, ...]:
        t = self._table()
        cols = ", ".join(self._projection(t))
        where = self.predicate(t)
        distinct = "DISTINCT " if self.rng.random() < 0.15 else ""
        return (Step(f"SELECT {distinct}{cols} FROM {self._ref(t)} WHERE {where}"),)

    def _filter_count(self) -> tuple[Step, ...]:
        t = self._table()
        return (Step(f"SELECT count(*) FROM {self._ref(t)} WHERE {self.predicate(t)}"),)

    def _aggregate(self, table: TableModel | None = None, ref: str | None = None) -> tuple[Step, ...]:
        t = table or self._table()
        g = self._group_column(t)
        aggs = ", ".join(self._aggregates(t))
        having = " HAVING count(*) > 1" if self.rng.random() < 0.2 else ""
        where = f" WHERE {self.predicate(t)}" if self.rng.random() < 0.8 else ""
        return (Step(f"SELECT {g.name}, {aggs} FROM {ref or self._ref(t)}{where} GROUP BY {g.name}{having}"),)

    def _self_join(self) -> tuple[Step, ...]:
        t = self._table()
        via = self.rng.choice(("df", "sql"))
        left, right = self._ref(t, via), self._ref(t, via if self.rng.random() < 0.75 else None)
        pa, pb = self.predicate(t, "a."), self.predicate(t, "b.")
        if self.rng.random() < 0.6:
            on = " AND ".join(f"a.{k} = b.{k}" for k in t.key)
            how = self.rng.choice(["JOIN", "JOIN", "LEFT JOIN", "FULL OUTER JOIN"])
            if how == "JOIN":
                cols = ", ".join(self._projection(t, "a.")[:2] + [e.replace(" AS o", " AS p") for e in self._projection(t, "b.")[:2]])
                return (Step(f"SELECT {cols} FROM {left} a {how} {right} b ON {on} WHERE {pa} AND {pb}"),)
            keys = ", ".join([f"a.{k} AS ak{i}" for i, k in enumerate(t.key)] + [f"b.{k} AS bk{i}" for i, k in enumerate(t.key)])
            return (Step(f"SELECT {keys} FROM (SELECT * FROM {left} WHERE {self.predicate(t)}) a {how} "
                         f"(SELECT * FROM {right} WHERE {self.predicate(t)}) b ON {on}"),)
        g = self._group_column(t)
        return (Step(f"SELECT count(*), count(DISTINCT a.{t.key[0]}) FROM {left} a JOIN {right} b "
                     f"ON a.{g.name} = b.{g.name} WHERE {pa} AND {pb}"),)

    def _join(self) -> tuple[Step, ...]:
        e = self.rng.choice(list(self.edges))
        lt, rt = self.tables[e.left], self.tables[e.right]
        on = " AND ".join(f"a.{lc} = b.{rc}" for lc, rc in e.pairs)
        how = self.rng.choice(["JOIN", "LEFT JOIN", "RIGHT JOIN"])
        where = f" WHERE {self.predicate(lt, 'a.')} AND {self.predicate(rt, 'b.')}" if how == "JOIN" else ""
        if e.unique and self.rng.random() < 0.6:
            cols = ", ".join(self._projection(lt, "a.")[:3] + [x.replace(" AS o", " AS p") for x in self._projection(rt, "b.")[:3]])
            if how != "JOIN":
                left = f"(SELECT * FROM {self._ref(lt)} WHERE {self.predicate(lt)})"
                right = f"(SELECT * FROM {self._ref(rt)} WHERE {self.predicate(rt)})"
                return (Step(f"SELECT {cols} FROM {left} a {how} {right} b ON {on}"),)
            return (Step(f"SELECT {cols} FROM {self._ref(lt)} a {how} {self._ref(rt)} b ON {on}{where}"),)
        g = self._group_column(lt)
        return (Step(f"SELECT a.{g.name}, count(*), {self._aggregates(rt, 'b.')[-1]} FROM {self._ref(lt)} a "
                     f"{how} {self._ref(rt)} b ON {on}{where} GROUP BY a.{g.name}"),)

    def _semi_anti(self) -> tuple[Step, ...]:
        if self.rng.random() < 0.5:
            t = self._table()
            lt = rt = t
            pairs: tuple[tuple[str, str], ...] = tuple((k, k) for k in t.key)
        else:
            e = self.rng.choice(list(self.edges))
            lt, rt, pairs = self.tables[e.left], self.tables[e.right], e.pairs
            if self.rng.random() < 0.5:
                lt, rt, pairs = rt, lt, tuple((b, a) for a, b in pairs)
        on = " AND ".join(f"a.{x} = b.{y}" for x, y in pairs)
        cols = ", ".join(self._projection(lt, "a."))
        how = self.rng.choice(["LEFT SEMI JOIN", "LEFT ANTI JOIN", "EXISTS", "NOT EXISTS"])
        if how.endswith("EXISTS"):
            return (Step(f"SELECT {cols} FROM {self._ref(lt)} a WHERE {self.predicate(lt, 'a.')} AND {how} "
                         f"(SELECT 1 FROM {self._ref(rt)} b WHERE {on} AND {self.predicate(rt, 'b.')})"),)
        return (Step(f"SELECT {cols} FROM {self._ref(lt)} a {how} "
                     f"(SELECT * FROM {self._ref(rt)} WHERE {self.predicate(rt)}) b ON {on} WHERE {self.predicate(lt, 'a.')}"),)

    def _in_subquery(self) -> tuple[Step, ...]:
        t = self._table()
        c = self.rng.choice([c for c in t.columns if c.kind != "other"])
        neg = "NOT " if self.rng.random() < 0.3 else ""
        cols = ", ".join(self._projection(t))
        return (Step(f"SELECT {cols} FROM {self._ref(t)} WHERE {c.name} {neg}IN "
                     f"(SELECT {c.name} FROM {self._ref(t)} WHERE {self.predicate(t)}) AND {self.predicate(t)}"),)

    def _scalar_subquery(self) -> tuple[Step, ...]:
        t = self._table()
        ordered = [c for c in t.columns if c.kind in ORDERED_KINDS]
        c = self.rng.choice(ordered)
        fn = self.rng.choice(["min", "max"])
        op = self.rng.choice(["<", ">=", "="])
        return (Step(f"SELECT count(*), count({c.name}) FROM {self._ref(t)} WHERE {c.name} {op} "
                     f"(SELECT {fn}({c.name}) FROM {self._ref(t)} WHERE {self.predicate(t)}) OR {self.predicate(t)}"),)

    def _cte_twice(self) -> tuple[Step, ...]:
        t = self._table()
        via = self.rng.choice(("df", "sql"))
        head = (f"WITH x AS (SELECT * FROM {self._ref(t, via)} WHERE {self.predicate(t)}), "
                f"y AS (SELECT * FROM {self._ref(t, via)} WHERE {self.predicate(t)}) ")
        roll = self.rng.random()
        if roll < 0.4:
            return (Step(head + "SELECT (SELECT count(*) FROM x), (SELECT count(*) FROM y), "
                                "(SELECT count(*) FROM x JOIN y USING (" + ", ".join(t.key) + "))"),)
        if roll < 0.7:
            cols = ", ".join(c.name for c in self._columns(t, 1, 3))
            return (Step(head + f"SELECT {cols} FROM x UNION ALL SELECT {cols} FROM y"),)
        g = self._group_column(t)
        return (Step(head + f"SELECT x.{g.name}, count(*) FROM x LEFT JOIN y ON x.{g.name} = y.{g.name} "
                            f"GROUP BY x.{g.name}"),)

    def _set_op(self) -> tuple[Step, ...]:
        t = self._table()
        cols = ", ".join(c.name for c in self._columns(t, 1, 4))
        op = self.rng.choice(["UNION", "UNION ALL", "INTERSECT", "EXCEPT", "INTERSECT ALL", "EXCEPT ALL"])
        via = self.rng.choice(("df", "sql"))
        return (Step(f"SELECT {cols} FROM {self._ref(t, via)} WHERE {self.predicate(t)} {op} "
                     f"SELECT {cols} FROM {self._ref(t, via)} WHERE {self.predicate(t)}"),)

    def _order_limit(self) -> tuple[Step, ...]:
        t = self._table()
        cols = ", ".join([f"{k} AS k{i}" for i, k in enumerate(t.key)] + self._projection(t))
        order = ", ".join(t.key) + (" DESC" if self.rng.random() < 0.5 else "")
        n = self.rng.choice([1, 3, 10, 50])
        return (Step(f"SELECT {cols} FROM {self._ref(t)} WHERE {self.predicate(t)} ORDER BY {order} LIMIT {n}",
                     ordered=True),)

    def _cache(self) -> tuple[Step, ...]:
        """CACHE TABLE of a filtered query, or of a whole view, then queries over it."""
        t = self._table()
        self._cache_names += 1
        if self.rng.random() < 0.5:
            name = "{C:cached" + str(self._cache_names) + "}"
            steps = [Step(f"CACHE TABLE {name} AS SELECT * FROM {self._ref(t)} WHERE {self.predicate(t)}", compare=False)]
            steps += [Step(f"SELECT count(*) FROM {name}"),
                      Step(f"SELECT {', '.join(self._projection(t))} FROM {name} WHERE {self.predicate(t)}"),
                      *self._aggregate(t, name)]
            steps += [Step(f"UNCACHE TABLE {name}", compare=False), Step(f"DROP VIEW {name}", compare=False)]
            return tuple(steps)
        via = self.rng.choice(("df", "sql"))
        view = self._ref(t, via)
        steps = [Step(f"CACHE TABLE {view}", compare=False),
                 Step(f"SELECT count(*) FROM {view} WHERE {self.predicate(t)}"),
                 Step(f"SELECT count(*) FROM {view}"),
                 Step(f"SELECT {', '.join(self._projection(t))} FROM {view} WHERE {self.predicate(t)}"),
                 Step(f"UNCACHE TABLE {view}", compare=False),
                 Step(f"SELECT count(*) FROM {view} WHERE {self.predicate(t)}"),
                 Step(f"SELECT count(*) FROM {view}")]
        return tuple(steps)

    # -- query kinds (DataFrame API)
    def _frame(self, t: TableModel) -> Frame:
        return Frame(t.name, self.rng.choice(["df", "df", "table"]))

    def _frame_filter(self) -> tuple[Step, ...]:
        t = self._table()
        f = self._frame(t).then("filter", self.predicate(t))
        if self.rng.random() < 0.5:
            return (Step(frame=f, action="count"),)
        return (Step(frame=f.then("selectExpr", *self._projection(t))),)

    def _frame_aggregate(self) -> tuple[Step, ...]:
        t = self._table()
        g = self._group_column(t)
        f = self._frame(t)
        if self.rng.random() < 0.7:
            f = f.then("filter", self.predicate(t))
        aggs = tuple(f"{a} AS a{i}" for i, a in enumerate(self._aggregates(t)))
        return (Step(frame=f.then("groupBy", g.name).then("agg_exprs", *aggs)),)

    def _frame_self_join(self) -> tuple[Step, ...]:
        t = self._table()
        base = self._frame(t)
        left = base.then("filter", self.predicate(t)).then("alias", "a")
        right = base.then("filter", self.predicate(t)).then("alias", "b")
        how = self.rng.choice(["inner", "left", "left_anti", "left_semi"])
        joined = left.then("join_on", right, tuple(t.key), how)
        keys = tuple(f"a.{k}" for k in t.key)
        if how in ("left_anti", "left_semi"):
            return (Step(frame=joined.then("selectExpr", *keys)),)
        return (Step(frame=joined.then("selectExpr", *keys, *(f"b.{k} AS b_{k}" for k in t.key))),)

    def _frame_reuse(self) -> tuple[Step, ...]:
        """The issue's repro, generalised: actions on one DataFrame with different filters in
        between (a filter pushed for one must not narrow the next)."""
        t = self._table()
        base = self._frame(t)
        steps = [Step(frame=base, action="count")]
        for _ in range(self.rng.randint(2, 3)):
            steps.append(Step(frame=base.then("filter", self.predicate(t)), action="count"))
            steps.append(Step(frame=base, action="count"))
        steps.append(Step(frame=base.then("filter", self.predicate(t)).then("selectExpr", *t.key)))
        steps.append(Step(frame=base.then("selectExpr", *t.key)))
        return tuple(steps)


# --------------------------------------------------------------------------- running a frame

def build_frame(frame: Frame, base: Callable[[Frame], Any]) -> Any:
    """The DataFrame of ``frame``; ``base(frame)`` gives the starting DataFrame."""
    df = base(frame)
    for method, args in frame.calls:
        if method == "agg_exprs":
            from pyspark.sql import functions as F

            df = df.agg(*(F.expr(a) for a in args))
        elif method == "join_on":
            other, on, how = args
            df = df.join(build_frame(other, base), list(on), how)
        elif method == "selectExpr":
            df = df.selectExpr(*args)
        else:
            df = getattr(df, method)(*args)
    return df


PLACEHOLDER = re.compile(r"\{([TC]):([A-Za-z0-9_]+)(?::(df|sql))?\}")


def render(sql: str, table_view: Callable[[str, str], str], created: Callable[[str], str]) -> str:
    """``sql`` with its placeholders bound: ``table_view(table, "df"|"sql")`` names a table's
    view, ``created(name)`` a name the query creates."""
    def bind(m: re.Match[str]) -> str:
        if m.group(1) == "T":
            return table_view(m.group(2), m.group(3) or "df")
        return created(m.group(2))
    return PLACEHOLDER.sub(bind, sql)
