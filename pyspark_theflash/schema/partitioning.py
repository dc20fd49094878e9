"""TiDB's partitioned tables: the ``partition`` object of a table info, where a row goes, and
which partitions a filter can skip.

A partitioned table's info (``model.TableInfo.Partition``, ``model.PartitionInfo``) carries
``partition: {type, expr, columns, enable, definitions: [{id, name, less_than, in_values}], num}``
with ``type`` 1 RANGE, 2 HASH, 3 LIST, 4 KEY; ``columns`` (names) for RANGE COLUMNS, LIST
COLUMNS and KEY; ``less_than`` the bounds as SQL text (``"100"``, ``"'1995-01-01'"``,
``"MAXVALUE"``) and ``in_values`` a list of value tuples as SQL text (``[["1"], ["NULL"]]``,
``[["DEFAULT"]]``). Each definition's ``id`` is a *physical* table id: TiDB writes the rows of
a partition under ``t{id}_r{handle}`` and the logical table id holds no rows.

TheFlash keeps one physical table per partition id in its store, each a ``TableInfo`` with the
logical table's columns, the partition's id, and ``partition_of`` naming the logical table
(``physical_table_json``, ``physical_tables_of``). A read of the logical table at ts reads the partitions its info at
ts lists: what TiDB's stale read at ts reads. ``Partitioning.prune`` keeps the partitions a
pushed filter can match.

Routing (``Partitioning.locate``) follows TiDB for RANGE, RANGE COLUMNS, LIST, LIST COLUMNS and
HASH (``abs(expr % num)``, NULL into partition 0). The partitioning expression may be a column,
``YEAR(col)``, ``TO_DAYS(col)`` or ``col DIV n``. KEY partitioning places rows by a hash of the
key columns that is *not* MySQL's ``KEY`` hash: the mini cluster routes by it, the store never
needs it (a replica reads whatever each partition holds), and a filter never prunes a KEY table.
"""
from __future__ import annotations

import copy
import datetime as dt
import decimal
import re
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, TypedDict, Final

from pyspark_theflash.codec import column_types as T
from pyspark_theflash.schema.column_stats import ColumnStats
from pyspark_theflash.schema.errors import SchemaError
from pyspark_theflash.schema.info_json import PartitionDefinitionJson, PartitionInfoJson, TableInfoJson
from pyspark_theflash.schema.table_info import ColumnInfo, TableInfo, name_json


class PrunablePredicate(Protocol):
    """What pruning asks of a pushed filter (store.predicate.Predicate, a box above this one)."""

    def might_match(self, stats: Mapping[str, ColumnStats]) -> bool: ...

    def pinned_values(self, column: str) -> list[object] | None: ...


RANGE, HASH, LIST, KEY = 1, 2, 3, 4
TYPE_NAMES = {RANGE: "RANGE", HASH: "HASH", LIST: "LIST", KEY: "KEY"}
MAXVALUE = "MAXVALUE"
PARTITION_OF: Final = "partition_of"  # key of a physical partition's table info: the logical table


class PartitionDefinitionSpec(TypedDict, total=False):
    """One partition as a caller writes it (``build_partition_json``): ``{"name": "p0",
    "less_than": ["100"]}`` or ``{"name": "p0", "in_values": [["1"], ["2"]]}``; bounds are SQL
    text (other values are written with ``str``). ``id``: a physical id already chosen."""

    name: str
    less_than: Sequence[object] | None
    in_values: Sequence[Sequence[object]] | None
    id: int


class PartitionSpec(TypedDict, total=False):
    """PARTITION BY as a caller writes it: ``{"type": "RANGE COLUMNS", "columns": ["d"],
    "definitions": [...]}``, or ``{"type": "HASH", "expr": "id", "num": 4}``."""

    type: str
    expr: str
    columns: Sequence[str]
    definitions: Sequence[PartitionDefinitionSpec]
    num: int


class NoPartitionError(SchemaError):
    """A row no partition of the table takes (TiDB: 'Table has no partition for value ...')."""


@dataclass(frozen=True)
class PartitionDefinition:
    id: int
    name: str
    less_than: tuple[str, ...] = ()
    in_values: tuple[tuple[str, ...], ...] = ()

    def to_json(self) -> PartitionDefinitionJson:
        return {"id": self.id, "name": name_json(self.name),
                "less_than": list(self.less_than) or None,
                "in_values": [list(v) for v in self.in_values] or None}


def _name(v: object) -> str:
    if isinstance(v, Mapping):
        return str(v.get("O", v.get("L", "")))
    return str(v)


_COLUMN_RE = re.compile(r"^\s*`?([A-Za-z_][A-Za-z0-9_$]*)`?\s*$")
_FUNC_RE = re.compile(r"^\s*(year|to_days)\s*\(\s*`?([A-Za-z_][A-Za-z0-9_$]*)`?\s*\)\s*$", re.I)
_DIV_RE = re.compile(r"^\s*`?([A-Za-z_][A-Za-z0-9_$]*)`?\s+div\s+(\d+)\s*$", re.I)


def _to_days(d: dt.date) -> int:
    """MySQL's TO_DAYS: days since year 0 (date 0000-01-01 is day 1)."""
    if isinstance(d, dt.datetime):
        d = d.date()
    return int(d.toordinal()) + 365


@dataclass(frozen=True)
class Partitioning:
    """One table's ``partition`` object."""

    type: int
    expr: str
    columns: tuple[str, ...]
    definitions: tuple[PartitionDefinition, ...]
    num: int
    enable: bool = True

    # ---- JSON
    @classmethod
    def from_json(cls, d: PartitionInfoJson) -> "Partitioning":
        defs = tuple(PartitionDefinition(
            id=int(x["id"]), name=_name(x.get("name")),
            less_than=tuple(str(v) for v in (x.get("less_than") or ())),
            in_values=tuple(tuple(str(v) for v in vs) for vs in (x.get("in_values") or ())),
        ) for x in (d.get("definitions") or ()))
        kind = int(d.get("type") or RANGE)
        if kind not in TYPE_NAMES:
            raise SchemaError(f"partition type {kind} is not one TiDB has (1 RANGE, 2 HASH, 3 LIST, 4 KEY)")
        return cls(type=kind, expr=str(d.get("expr") or ""), columns=tuple(_name(c) for c in (d.get("columns") or ())),
                   definitions=defs, num=int(d.get("num") or len(defs)), enable=bool(d.get("enable", True)))

    def to_json(self) -> PartitionInfoJson:
        return {"type": self.type, "expr": self.expr,
                "columns": [name_json(c) for c in self.columns] or None,
                "enable": self.enable, "definitions": [p.to_json() for p in self.definitions], "num": self.num}

    # ---- facts
    @property
    def type_name(self) -> str:
        kind = TYPE_NAMES[self.type]
        return f"{kind} COLUMNS" if self.columns and self.type in (RANGE, LIST) else kind

    @property
    def physical_ids(self) -> tuple[int, ...]:
        return tuple(p.id for p in self.definitions)

    def definition(self, physical_id: int) -> PartitionDefinition:
        for p in self.definitions:
            if p.id == physical_id:
                return p
        raise SchemaError(f"no partition with id {physical_id}; the partitions are "
                          f"{[(p.name, p.id) for p in self.definitions]}")

    def by_name(self, name: str) -> PartitionDefinition:
        for p in self.definitions:
            if p.name.lower() == name.lower():
                return p
        raise SchemaError(f"no partition {name!r}; the partitions are {[p.name for p in self.definitions]}")

    def key_columns(self) -> tuple[str, ...]:
        """The columns partitioning reads (the expression's one column, or ``columns``)."""
        if self.columns:
            return self.columns
        m = _COLUMN_RE.match(self.expr) or _FUNC_RE.match(self.expr) or _DIV_RE.match(self.expr)
        if m is None:
            raise SchemaError(f"partition expression {self.expr!r} is not one TheFlash evaluates "
                              "(a column, YEAR(col), TO_DAYS(col) or col DIV n)")
        return (m.group(2) if m.re is _FUNC_RE else m.group(1),)

    def _expr_fn(self) -> Callable[[Any], object]:
        m = _FUNC_RE.match(self.expr)
        if m is not None:
            fn = m.group(1).lower()
            return (lambda v: v.year) if fn == "year" else _to_days
        m = _DIV_RE.match(self.expr)
        if m is not None:
            n = int(m.group(2))
            return lambda v: int(v) // n if int(v) >= 0 else -((-int(v)) // n)  # DIV truncates toward zero
        return lambda v: v

    # ---- routing (TiDB's locatePartition)
    def locate(self, table: "TableInfo", row: Mapping[str, object]) -> int:
        """The physical id of the partition a row (``{column: value}``) belongs in."""
        return self.router(table)([_get(row, c) for c in self.key_columns()])

    def router(self, table: "TableInfo") -> Callable[[Sequence[Any]], int]:
        """``locate`` with the bounds worked out once: takes the values of ``key_columns()``."""
        bounds = self.bounds(table) if self.type in (RANGE, LIST) else []
        fn = None if self.columns else self._expr_fn()

        def route(values: Sequence[Any]) -> int:
            return self._route(table, values, bounds, fn)

        return route

    def _route(self, table: "TableInfo", values: Sequence[Any], bounds: list[Any],
               fn: Callable[[Any], object] | None) -> int:
        if self.type == KEY:
            key = "\x00".join("" if v is None else str(v) for v in values).encode()
            return self.definitions[zlib.crc32(key) % len(self.definitions)].id
        if fn is None:
            point = tuple(values)
        else:
            v = values[0]
            point = (None if v is None else fn(v),)
        if self.type == HASH:
            v = point[0]
            idx = 0 if v is None else abs(int(v)) % self.num
            return self.definitions[idx].id
        if self.type == RANGE:
            for p, lt in zip(self.definitions, bounds):
                if _tuple_less(point, lt):
                    return p.id
            raise NoPartitionError(f"table {table.qualified_name} has no partition for value {_show(point)}")
        default = None
        for p, values_in in zip(self.definitions, bounds):
            for candidate in values_in:
                if candidate == "DEFAULT":
                    default = p.id
                elif tuple(candidate) == point:
                    return p.id
        if default is not None:
            return default
        raise NoPartitionError(f"table {table.qualified_name} has no partition for value {_show(point)}")

    def bounds(self, table: "TableInfo") -> list[Any]:
        """Per partition: RANGE its ``less_than`` as a typed tuple (None = MAXVALUE); LIST its
        typed value tuples ("DEFAULT" for the default partition)."""
        cols = [table.column_any(c) for c in self.key_columns()]
        fn_typed = not self.columns and (_FUNC_RE.match(self.expr) or _DIV_RE.match(self.expr))
        kinds = [None if fn_typed else c for c in cols]
        if self.type == RANGE:
            return [tuple(None if s.upper() == MAXVALUE else parse_literal(s, k) for s, k in zip(p.less_than, kinds))
                    for p in self.definitions]
        out = []
        for p in self.definitions:
            vals: list[object] = []
            for vs in p.in_values:
                if len(vs) == 1 and vs[0].upper() == "DEFAULT":
                    vals.append("DEFAULT")
                else:
                    vals.append(tuple(parse_literal(s, k) for s, k in zip(vs, kinds)))
            out.append(vals)
        return out

    # ---- pruning
    def prune(self, table: "TableInfo", predicate: PrunablePredicate | None) -> tuple[list[int], list[str]]:
        """(physical ids a row matching ``predicate`` may be in, names of partitions pruned).
        Exact where it prunes: a partition is skipped only when no value it can hold matches."""
        ids = list(self.physical_ids)
        if predicate is None or self.type == KEY:
            return ids, []
        try:
            keep = self._keep(table, predicate)
        except Exception:  # a bound or value of an odd type: read every partition
            return ids, []
        return ([p.id for p, k in zip(self.definitions, keep) if k],
                [p.name for p, k in zip(self.definitions, keep) if not k])

    def _keep(self, table: "TableInfo", predicate: PrunablePredicate) -> list[bool]:
        n = len(self.definitions)
        keys = self.key_columns()
        plain = bool(self.columns) or _COLUMN_RE.match(self.expr) is not None
        if not plain:
            return [True] * n
        col = table.column_any(keys[0])
        if col is None:
            return [True] * n
        name = col.name
        if self.type == HASH:
            wanted = predicate.pinned_values(name)
            if wanted is None:
                return [True] * n
            hit = {self.locate(table, {name: v}) for v in wanted}
            return [p.id in hit for p in self.definitions]
        bounds = self.bounds(table)
        keep = []
        if self.type == RANGE:
            lowest = _lowest(col)
            prev: object = lowest
            for i, lt in enumerate(bounds):
                hi = lt[0]
                stats = {name: ColumnStats(prev, _just_below(hi) if hi is not None else _highest(col),
                                           None if i == 0 else 0, None)}
                if prev is None or (hi is None and _highest(col) is None):
                    keep.append(True)  # an open side of a type without bounds: cannot tell
                else:
                    keep.append(bool(predicate.might_match(stats)))
                prev = hi
            return keep
        for values_in in bounds:  # LIST: min/max of its values (conservative), DEFAULT keeps
            if any(v == "DEFAULT" for v in values_in):
                keep.append(True)
                continue
            firsts = [v[0] for v in values_in]
            nulls = sum(1 for v in firsts if v is None)
            present = [v for v in firsts if v is not None]
            stats = {name: ColumnStats(min(present) if present else None, max(present) if present else None,
                                       1 if nulls else 0, None if nulls or not present else len(present))}
            if not present:
                keep.append(nulls > 0 and bool(predicate.might_match(
                    {name: ColumnStats(None, None, 1, 1)})))
            else:
                keep.append(bool(predicate.might_match(stats)))
        return keep


def _get(row: Mapping[str, object], name: str) -> object:
    if name in row:
        return row[name]
    for k, v in row.items():
        if k.lower() == name.lower():
            return v
    return None


def _show(point: Sequence[object]) -> str:
    return ", ".join("NULL" if v is None else str(v) for v in point)


def _tuple_less(point: Sequence[Any], lt: Sequence[Any]) -> bool:
    """``point < lt`` as MySQL compares RANGE (COLUMNS) bounds: NULL below every value,
    MAXVALUE (None in ``lt``) above every value."""
    for v, b in zip(point, lt):
        if b is None:
            return True
        if v is None:
            return True
        if v < b:
            return True
        if v > b:
            return False
    return False


def _just_below(bound: object) -> object:
    """The greatest value below a RANGE bound (bounds are exclusive), where the type has one;
    else the bound (pruning then keeps the partition for a filter equal to it: conservative)."""
    if isinstance(bound, bool):
        return bound
    if isinstance(bound, int):
        return bound - 1
    if isinstance(bound, dt.datetime):
        return bound - dt.timedelta(microseconds=1)
    if isinstance(bound, dt.date):
        return bound - dt.timedelta(days=1)
    return bound


def _lowest(col: "ColumnInfo") -> object:
    if col.tp in T.INTEGER_TYPES:
        return 0 if col.unsigned else -(1 << 63)
    if col.tp in (T.TYPE_DATE, T.TYPE_NEWDATE):
        return dt.date.min
    if col.tp in (T.TYPE_DATETIME, T.TYPE_TIMESTAMP):
        return dt.datetime.min
    if col.tp in T.STRING_TYPES:
        return ""
    return None


def _highest(col: "ColumnInfo") -> object:
    if col.tp in T.INTEGER_TYPES:
        return (1 << 64) if col.unsigned else (1 << 63)
    if col.tp in (T.TYPE_DATE, T.TYPE_NEWDATE):
        return dt.date.max
    if col.tp in (T.TYPE_DATETIME, T.TYPE_TIMESTAMP):
        return dt.datetime.max
    return None


def parse_literal(text: str, col: "ColumnInfo | None") -> object:
    """A bound or list value as TiDB keeps it (SQL text) in the column's Python type; with no
    column (an expression's value) an integer."""
    s = text.strip()
    if s.upper() == "NULL":
        return None
    quoted = len(s) >= 2 and s[0] == s[-1] and s[0] in "'\""
    if quoted:
        s = s[1:-1].replace("''", "'")
    elif s.startswith("_") and "'" in s:  # a charset introducer: _utf8mb4'x'
        s = s[s.index("'") + 1:-1]
    if col is None:
        return int(s)
    if col.tp in T.INTEGER_TYPES:
        return int(s)
    if col.tp in (T.TYPE_DATE, T.TYPE_NEWDATE):
        return dt.date.fromisoformat(s[:10])
    if col.tp in (T.TYPE_DATETIME, T.TYPE_TIMESTAMP):
        return dt.datetime.fromisoformat(s)
    if col.tp == T.TYPE_NEWDECIMAL:
        return decimal.Decimal(s)
    if col.tp in (T.TYPE_FLOAT, T.TYPE_DOUBLE):
        return float(s)
    return s


def partitioning_of(table: TableInfo) -> Partitioning | None:
    """The table's ``partition`` info (its partitions and their physical ids), or None."""
    d = table.raw.get("partition")
    return Partitioning.from_json(d) if d else None


def physical_ids_of(table: TableInfo) -> tuple[int, ...]:
    """The table ids that hold the table's rows: its partitions' ids, or its own id."""
    p = partitioning_of(table)
    return p.physical_ids if p is not None else (table.id,)


def physical_tables_of(table: TableInfo) -> list[TableInfo]:
    """One table info per partition (``physical_table_json``); [] unpartitioned."""
    p = partitioning_of(table)
    if p is None:
        return []
    raw = table.to_json()
    return [TableInfo.from_json(physical_table_json(raw, pid), db=table.db) for pid in p.physical_ids]


def physical_table_json(logical: TableInfoJson, physical_id: int) -> TableInfoJson:
    """The table info of one partition as the store keeps it: the logical table's columns and
    schema version under the partition's id, without ``partition``, with ``partition_of``."""
    partition = logical["partition"]
    if partition is None:
        raise SchemaError(f"table {logical['id']} is not partitioned: it has no partition {physical_id}")
    part = Partitioning.from_json(partition).definition(physical_id)
    out = copy.deepcopy(logical)
    out.pop("partition", None)
    out["id"] = int(physical_id)
    out[PARTITION_OF] = {"id": int(logical["id"]), "partition": part.name}
    return out


def partition_clause(spec: PartitionInfoJson) -> str:
    """``PARTITION BY ...`` of a partition spec, for DDL queries in the log."""
    p = Partitioning.from_json(spec)
    inner = ", ".join(f"`{c}`" for c in p.columns) if p.columns else p.expr
    return f"PARTITION BY {p.type_name}({inner})"


def build_partition_json(kind: str, *, expr: str = "", columns: Iterable[str] = (),
                         definitions: Sequence[PartitionDefinitionSpec] = (), num: int = 0,
                         alloc_id: Callable[[], int]) -> PartitionInfoJson:
    """TiDB's ``partition`` object for ``PARTITION BY kind``: ``definitions`` as
    ``{"name": "p0", "less_than": ["100"]}`` / ``{"name": "p0", "in_values": [["1"], ["2"]]}``
    (HASH and KEY: ``num`` partitions p0..p{num-1}); each gets a physical id from ``alloc_id``."""
    k = kind.strip().upper()
    kind_type = {"RANGE": RANGE, "RANGE COLUMNS": RANGE, "HASH": HASH, "LIST": LIST, "LIST COLUMNS": LIST,
                 "KEY": KEY}.get(k)
    if kind_type is None:
        raise SchemaError(f"partition type {kind!r}: use RANGE, RANGE COLUMNS, LIST, LIST COLUMNS, HASH or KEY")
    cols = list(columns)
    if kind_type in (HASH, KEY) and not definitions:
        if num <= 0:
            raise SchemaError(f"PARTITION BY {k} needs PARTITIONS n (num >= 1)")
        definitions = [{"name": f"p{i}"} for i in range(num)]
    if not definitions:
        raise SchemaError(f"PARTITION BY {k} needs partition definitions")
    defs = [definition_json(d, alloc_id()) for d in definitions]
    return {"type": kind_type, "expr": expr if not cols else "", "columns": [name_json(c) for c in cols] or None,
            "enable": True, "definitions": defs, "num": len(defs)}


def definition_json(d: PartitionDefinitionSpec, physical_id: int) -> PartitionDefinitionJson:
    return {"id": int(physical_id), "name": name_json(str(d["name"])),
            "less_than": [str(v) for v in d.get("less_than") or ()] or None,
            "in_values": [[str(v) for v in vs] for vs in d.get("in_values") or ()] or None}
