"""The engine as a calculator: a whole SQL query over the store's tables at one snapshot ts,
run by ClickHouse next to the data (``theflash sql``).

Each ``db.table`` the query names becomes the table's snapshot at ts (the same SQL a read
stream runs: newest version per handle at or below ts, delete marks dropped, columns by their
current names). The snapshot ts comes from the read session machinery, as every read's does:
one ts for the whole query (given, or a fresh one from upstream), a read lease per table held
while the query runs, learner read and lock resolution.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Mapping, Protocol, Sequence

import pyarrow as pa

from pyspark_theflash.engine.clickhouse.errors import ClickHouseEngineError, SqlQueryError
from pyspark_theflash.engine.clickhouse.snapshot_read import snapshot_sql
from pyspark_theflash.engine.interface import SqlResult

if TYPE_CHECKING:
    from pyspark_theflash.engine.clickhouse.directory import ClickHouseDirectory
    from pyspark_theflash.engine.clickhouse.tables import ClickHouseTables
    from pyspark_theflash.engine.interface import EngineReadSession, QuerySnapshot
    from pyspark_theflash.schema.table_info import TableInfo

__all__ = ["SqlResult", "refuse_writes", "run_sql", "snapshot_query", "store_typed", "tables_named"]

_QUALIFIED = re.compile(r"`?\b([A-Za-z_][\w]*)`?\.`?([A-Za-z_][\w]*)\b`?")


class ClickHouseEngineSql(Protocol):
    """What the calculator needs of the ClickHouse engine (``engine.ClickHouseEngine``, which
    calls it): its tables, snapshots and sessions, and its ClickHouse directory and tables."""

    directory: ClickHouseDirectory
    tables_ch: ClickHouseTables

    def tables(self) -> list[TableInfo]: ...

    def query_snapshot(self, tables: Sequence[str], options: Mapping[str, object] | None = None,
                       read: Sequence[tuple[str, int]] = ()) -> QuerySnapshot: ...

    def open_read_session(self, table: str, *, snapshot_ts: int | None = None, as_of: str | None = None,
                          columns: Sequence[str] | None = None, filter: object = None, isolation: str | None = None,
                          options: Mapping[str, object] | None = None) -> EngineReadSession: ...


def tables_named(engine: ClickHouseEngineSql, sql: str) -> list[TableInfo]:
    """The store's tables (``TableInfo``) that ``sql`` names as ``db.table``, in order."""
    known = {f"{t.db}.{t.name}".lower(): t for t in engine.tables()}
    named: list[TableInfo] = []
    for m in _QUALIFIED.finditer(sql):
        info = known.get(f"{m.group(1)}.{m.group(2)}".lower())
        if info is not None and info not in named:
            named.append(info)
    if not named:
        import difflib

        written = [f"{m.group(1)}.{m.group(2)}" for m in _QUALIFIED.finditer(sql)]
        hints = [f"{w} (did you mean {close[0]}?)" for w in written
                 for close in [difflib.get_close_matches(w.lower(), list(known), n=1)] if close]
        raise SqlQueryError(
            f"the query names none of the store's tables{': ' + ', '.join(hints) if hints else ''}; "
            f"its tables are {', '.join(sorted(known)) or 'none yet'}, named as db.table")
    return named


_READ_ONLY = re.compile(r"^\s*(\(\s*)*(select|with|explain|show|describe|desc)\b", re.IGNORECASE)


# Statements that change data or the schema: refused as writes (the store is a replica).
_WRITES = frozenset(("insert", "update", "delete", "replace", "upsert", "merge", "alter", "create", "drop", "truncate",
                     "rename", "optimize", "attach", "detach", "exchange", "move", "grant", "revoke", "set", "system",
                     "kill", "use", "load", "backup", "restore", "undrop", "check"))


def refuse_writes(sql: str) -> None:
    """The store is a replica of TiDB: ``theflash sql`` runs queries (SELECT, WITH, ...) only.
    A write is refused as a write; anything else that is no query (``SELEC 1``) as no valid SELECT."""
    if _READ_ONLY.match(sql):
        return
    word = (re.findall(r"[A-Za-z_]+|\S", sql.lstrip("( \t\r\n")) or ["(empty)"])[0]
    if word.lower() in _WRITES:
        raise SqlQueryError(f"theflash sql runs read-only queries (SELECT ... FROM db.table); {word!r} is not one: "
                            "the store is a replica of a TiDB table, change the table in TiDB")
    raise SqlQueryError(f"the query is not a valid SELECT: it begins with {word!r}; theflash sql runs SELECT (or WITH, "
                        "EXPLAIN, SHOW, DESCRIBE) queries, e.g. \"SELECT status, count() FROM shop.orders GROUP BY status\"")


def clickhouse_refusal(exc: ClickHouseEngineError) -> SqlQueryError:
    """ClickHouse's error on a rewritten query as one line, without the rewritten SQL."""
    text = str(exc.__cause__ or exc).strip().splitlines()[0] if str(exc.__cause__ or exc).strip() else str(exc)
    text = re.sub(r"\s*\(version [^)]*\)\s*$", "", text)
    text = re.sub(r"^.*?(Code: \d+\.)", r"\1", text)
    return SqlQueryError(f"ClickHouse refused the query: {text[:400]}")


def store_typed(result: pa.Table, named: list[TableInfo]) -> pa.Table:
    """ClickHouse's answer with the store's types back where ClickHouse has no twin for them.

    ClickHouse keeps BINARY/BLOB as String and TIME as Int64: a result column named as a column
    of the tables the query reads (one type among them) that comes back in that stored form is
    cast back to the column's type (bytes, duration, zone-less timestamp). Any other String
    column whose values are not all UTF-8 (``SELECT token AS t``, ``substring(token, 1, 2)``)
    is bytes too, for the whole column: text that is not UTF-8 cannot be printed as text."""
    from pyspark_theflash.engine.clickhouse.column_types import from_clickhouse
    from pyspark_theflash.schema.arrow import arrow_field

    stored: dict[str, set[pa.DataType]] = {}
    for info in named:
        for c in info.columns:
            stored.setdefault(c.name, set()).add(arrow_field(c).type)
    columns = []
    for name, column in zip(result.column_names, result.columns):
        types = stored.get(name, set())
        t = next(iter(types)) if len(types) == 1 else None
        if t is not None and _stored_form(column.type, t):
            column = from_clickhouse(column, t)
        elif pa.types.is_string(column.type) and not _all_utf8(column):
            column = column.cast(pa.binary())
        columns.append(column)
    return pa.table(columns, names=result.column_names)


def _stored_form(got: pa.DataType, t: pa.DataType) -> bool:
    """``got`` is how ClickHouse gives back a column the store types as ``t``."""
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return bool(pa.types.is_string(got))
    if pa.types.is_duration(t) or pa.types.is_time32(t) or pa.types.is_time64(t):
        return bool(pa.types.is_int64(got))
    if pa.types.is_timestamp(t):
        return bool(pa.types.is_timestamp(got) and got.unit == t.unit)
    return False


def _all_utf8(column: pa.ChunkedArray) -> bool:
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def snapshot_query(engine: ClickHouseEngineSql, sql: str, ts: int) -> str:
    """``sql`` with each ``db.table`` of the store replaced by its snapshot at ``ts``. The
    caller holds the read leases that keep ts readable."""
    subqueries = {}
    for info in tables_named(engine, sql):
        engine.tables_ch.ensure_table(info)  # a table no flush has reached yet reads as empty
        subqueries[f"{info.db}.{info.name}".lower()] = snapshot_sql(info, ts, None, None, None, None, ())[0]

    def replace(m: "re.Match[str]") -> str:
        inner = subqueries.get(f"{m.group(1)}.{m.group(2)}".lower())
        return m.group(0) if inner is None else f"({inner})"

    return _QUALIFIED.sub(replace, sql)


def run_sql(engine: ClickHouseEngineSql, sql: str, snapshot_ts: int | None = None,
            options: Mapping[str, object] | None = None) -> SqlResult:
    """Run ``sql`` (ClickHouse SQL naming tables as ``db.table``) over the store of ``engine``
    (a ``ClickHouseEngine``) at one snapshot ts: the read sessions of the tables it names (one
    ts, leases held while it runs, learner read, lock resolution) pick and keep the ts."""
    import time

    refuse_writes(sql)
    named = tables_named(engine, sql)
    sessions = []
    try:
        ts = snapshot_ts
        # --snapshot resolved / --max-staleness: one ts for every table, chosen as a query's is
        choice = {k: v for k, v in dict(options or {}).items() if k in ("snapshot", "max_staleness") and v}
        if ts is None and choice:
            ts = int(engine.query_snapshot([f"{i.db}.{i.name}" for i in named], choice)["ts"])
        for info in named:  # one ts for every table: the first session's
            session = engine.open_read_session(f"{info.db}.{info.name}", snapshot_ts=ts)
            sessions.append(session)
            ts = int(session.ts)
        assert ts is not None
        rewritten = snapshot_query(engine, sql, ts)
        t0 = time.monotonic()
        try:
            result = engine.directory.arrow(rewritten)
        except ClickHouseEngineError as exc:
            raise clickhouse_refusal(exc) from exc
        seconds = time.monotonic() - t0
        return SqlResult(ts, tuple(f"{i.db}.{i.name}" for i in named), store_typed(result, named), seconds)
    finally:
        for session in sessions:
            session.close()
