"""Snapshot reads in ClickHouse SQL: the rows of a table as of ts, as the store's Arrow schema.

Per handle, among versions with ``_tidb_commit_ts <= ts``, the newest (``ORDER BY handle,
commit_ts DESC LIMIT 1 BY handle``: the table is sorted by exactly that key, so ClickHouse
reads in order), dropped if it is a delete mark. Handle ranges and ts go into the inner
query (they select versions); a filter applies to the chosen version only, so it goes into the
outer query — never the inner one, where dropping a newer non-matching version would bring an
older matching one back to life. Filters that translate exactly (comparisons, IN, IS NULL,
AND/OR/NOT of those on numeric, string and boolean columns) are pushed; the whole filter is
evaluated again on the Arrow result, so a part that does not translate is still honoured.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

import pyarrow as pa

from pyspark_theflash.engine.clickhouse.column_types import from_clickhouse
from pyspark_theflash.engine.clickhouse.directory import ClickHouseDirectory
from pyspark_theflash.engine.clickhouse.tables import (
    column_name,
    handle_range_sql,
    quote_ident,
    sql_literal,
    table_name,
)
from pyspark_theflash.store import predicate as pr
from pyspark_theflash.store.txn_merge_tree import COMMIT_TS, DELMARK, ROWID

if TYPE_CHECKING:
    from pyspark_theflash.schema import ColumnInfo, TableInfo
    from pyspark_theflash.store.keyspace import Handle


def snapshot_sql(info: "TableInfo", ts: int, lo: Handle | None, hi: Handle | None, columns: Sequence[str] | None,
                 predicate: pr.Expr | None, hidden: Sequence[str]) -> tuple[str, list[str]]:
    """The SQL of a snapshot read, and the names of the user columns it selects (requested
    ones, then those only the filter needs)."""
    by_name = {c.name: c for c in info.columns}
    wanted = [c.name for c in info.columns] if columns is None else list(columns)
    extra = sorted(n for n in (predicate.columns() if predicate is not None else ()) if n in by_name and n not in wanted)
    names = wanted + extra
    inner_cols = [f"{column_name(by_name[n].id)} AS {quote_ident(n)}" for n in names]
    inner_cols += [ROWID, COMMIT_TS, DELMARK]
    where = [f"{COMMIT_TS} <= {int(ts)}"] + handle_range_sql(lo, hi)
    outer_where = [f"NOT {DELMARK}"]
    if predicate is not None:
        pushed = expr_sql(predicate, {n: by_name[n] for n in names})
        if pushed is not None:
            outer_where.append(pushed)
    out_cols = [quote_ident(n) for n in names] + [ROWID, COMMIT_TS]
    sql = (f"SELECT {', '.join(out_cols)} FROM (SELECT {', '.join(inner_cols)} FROM {table_name(info.id)} "
           f"WHERE {' AND '.join(where)} ORDER BY {ROWID}, {COMMIT_TS} DESC LIMIT 1 BY {ROWID}) "
           f"WHERE {' AND '.join(outer_where)} ORDER BY {ROWID}")
    return sql, names


def read_snapshot(directory: ClickHouseDirectory, info: "TableInfo", ts: int, handle_range: tuple[Handle | None, Handle | None],
                  columns: Sequence[str] | None, predicate: pr.Expr | None, hidden: Sequence[str],
                  batch_rows: int, table_exists: bool = True) -> Iterator[pa.RecordBatch]:
    """Rows of ``info`` visible at ``ts`` in ``handle_range``, as record batches of the store's
    output schema (``store.parts.output_schema``) — the schema the native engine returns, VIRTUAL
    generated columns computed as the native engine computes them (``store.virtual_columns``)."""
    from pyspark_theflash.store.virtual_columns import read_computing_virtual

    return read_computing_virtual(info, columns, predicate, hidden, lambda cols, pred: _read_snapshot(
        directory, info, ts, handle_range, cols, pred, hidden, batch_rows, table_exists))


def _read_snapshot(directory: ClickHouseDirectory, info: "TableInfo", ts: int, handle_range: tuple[Handle | None, Handle | None],
                   columns: Sequence[str] | None, predicate: pr.Expr | None, hidden: Sequence[str],
                   batch_rows: int, table_exists: bool = True) -> Iterator[pa.RecordBatch]:
    from pyspark_theflash.store.parts import output_schema

    schema = output_schema(info, columns, hidden)
    if not table_exists:
        return
    sql, names = snapshot_sql(info, ts, handle_range[0], handle_range[1], columns, predicate, hidden)
    result = directory.arrow(sql)
    if result.num_rows == 0:
        return
    by_name = {c.name: c for c in info.columns}
    from pyspark_theflash.schema.arrow import arrow_field

    arrays: dict[str, object] = {}
    for n in names:
        arrays[n] = from_clickhouse(result.column(n), arrow_field(by_name[n]).type)
    full = output_schema(info, names, (ROWID, COMMIT_TS))
    arrays[ROWID] = from_clickhouse(result.column(ROWID), full.field(ROWID).type)
    arrays[COMMIT_TS] = from_clickhouse(result.column(COMMIT_TS), full.field(COMMIT_TS).type)
    table = pa.table([arrays[f.name] for f in full], schema=pa.schema([f.with_nullable(True) for f in full]))
    if predicate is not None:
        table = table.filter(predicate.to_arrow(table.schema))
    table = table.select([f.name for f in schema]).cast(schema)
    for batch in table.to_batches(max_chunksize=batch_rows):
        if batch.num_rows:
            yield batch


_NUMERIC_OR_TEXT = (pa.types.is_integer, pa.types.is_floating, pa.types.is_string, pa.types.is_boolean)


def _arrow_type(col: "ColumnInfo") -> pa.DataType:
    from pyspark_theflash.schema.arrow import arrow_field

    return arrow_field(col).type


def _pushable_type(t: pa.DataType) -> bool:
    return any(f(t) for f in _NUMERIC_OR_TEXT)


def _pushable_value(t: pa.DataType, value: object) -> bool:
    if pa.types.is_string(t):
        return isinstance(value, str)
    if pa.types.is_boolean(t):
        return isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Kleene logic in ClickHouse as in Arrow: ``x OR NULL`` is true or NULL, ``x AND NULL`` false or NULL.
def _constant_unless_null_sql(column: str, answer: bool) -> str:
    c = quote_ident(column)
    return f"(({c} IS NOT NULL) OR NULL)" if answer else f"(({c} IS NULL) AND NULL)"


def _comparison_sql(b: pr.BoundComparison) -> str | None:
    if b.constant is not None:
        return _constant_unless_null_sql(b.column, b.constant)
    if b.type is None and not b.widen:
        return None
    if not b.widen and not _pushable_value(b.type, b.value):
        return None
    c = f"toFloat64({quote_ident(b.column)})" if b.widen else quote_ident(b.column)
    op = "=" if b.op == "==" else b.op
    return f"{c} {op} {sql_literal(b.value)}"


def _in_sql(b: pr.BoundIn) -> str | None:
    values = b.values.to_pylist()
    if not all(_pushable_value(pa.float64() if b.widen else b.values.type, v) for v in values):
        return None
    if not values:
        return "NULL" if b.has_null else _constant_unless_null_sql(b.column, False)
    c = f"(toFloat64({quote_ident(b.column)}) + 0.)" if b.widen else quote_ident(b.column)
    found = f"({c} IN ({', '.join(sql_literal(v) for v in values)}))"
    if b.has_null:
        return f"({found} OR NULL)"
    return f"({found} OR ({quote_ident(b.column)} IS NULL AND NULL))"


def expr_sql(e: pr.Expr, columns: "dict[str, ColumnInfo]") -> str | None:
    """``e`` as a ClickHouse condition on the chosen versions when it translates exactly, with
    the semantics of ``store.predicate`` (SQL's three values; literals bound to the column's
    type first, so ``i32 < 1.5`` is ``i32 <= 1`` and a FLOAT compares as a double);
    for an AND, the conjunction of the children that translate (the Arrow filter does the
    rest); None when nothing does."""
    if isinstance(e, pr.And):
        parts = [p for p in (expr_sql(c, columns) for c in e.children) if p is not None]
        return " AND ".join(f"({p})" for p in parts) if parts else None
    exact = _exact_sql(e, columns)
    return exact


def _exact_sql(e: pr.Expr, columns: "dict[str, ColumnInfo]") -> str | None:
    if isinstance(e, (pr.Comparison, pr.In)):
        c = columns.get(e.column)
        if c is None:
            return None
        t = _arrow_type(c)
        if not _pushable_type(t):
            return None
        if isinstance(e, pr.Comparison):
            return _comparison_sql(e.bound(t))
        return _in_sql(e.bound(t))
    if isinstance(e, pr.IsNull):
        return f"{quote_ident(e.column)} IS NULL" if e.column in columns else None
    if isinstance(e, pr.IsNotNull):
        return f"{quote_ident(e.column)} IS NOT NULL" if e.column in columns else None
    if isinstance(e, (pr.And, pr.Or)):
        parts = [_exact_sql(c, columns) for c in e.children]
        if any(p is None for p in parts):
            return None
        return f" {'AND' if isinstance(e, pr.And) else 'OR'} ".join(f"({p})" for p in parts)
    if isinstance(e, pr.Not):
        inner = _exact_sql(e.child, columns)
        return None if inner is None else f"NOT ({inner})"
    if isinstance(e, pr.AlwaysTrue):
        return "1"
    return None
