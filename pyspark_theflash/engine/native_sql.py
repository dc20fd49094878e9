"""The native engine as a calculator: any read-only query over the store's tables at one snapshot
ts, computed by DuckDB (embedded, in this process) over the tables' read streams.

DuckDB parses the statement, no parser of ours: ``extract_statements`` tells its kind (one
statement, a SELECT: anything else is refused naming its kind) and ``json_serialize_sql`` its
tree, which names the tables read (``BASE_TABLE``) and the columns (``COLUMN_REF``, ``STAR``,
``USING``). Each table named as ``db.table``, ``theflash.db.table`` or by a bare name that one
database of the store has becomes a view of DuckDB's catalog ``theflash`` over an Arrow stream
of the table's read session. Every session is at one ts (the ts given, or the one the query's
snapshot options choose, or the first session's fresh one) and holds its lease while the query
runs, so a join of two tables reads one snapshot. A session reads only the columns the query
names (all of them for ``*`` or a ``NATURAL`` join; if DuckDB still misses one — a column named
where this module does not look — the query runs once more with every column). A table the
query scans more than once (a self-join, a subquery) is read from the store once and kept for
the query. The WHERE conjuncts a table's stream can apply itself (a column of that table
compared with a constant, ``IN``, ``IS [NOT] NULL``, a ``LIKE`` prefix, ...: ``engine.pushed_filters``)
are pushed to its read session as a ``store.predicate`` filter, which prunes regions, parts and
row groups and filters rows; DuckDB still applies the whole WHERE to the rows it is handed, so a
pushed filter only ever saves reading. The result says what was pushed and how many rows each
table's session streamed.

The DuckDB connection reaches nothing else: no file system or network (``enable_external_access``
off), no extension loaded or installed, no Python variable taken for a table, and its settings
locked before the query runs.

Types come back as the store gives them (DECIMAL, BINARY, DATE, DATETIME, TIMESTAMP in UTC, JSON
and ENUM as text), except TIME, which DuckDB turns into an INTERVAL: an interval column without
months comes back as ``duration[us]``, the store's TIME.
"""
from __future__ import annotations

import difflib
import json
import threading
import time
from typing import TYPE_CHECKING, Iterator, Mapping, NoReturn, Sequence

import numpy as np
import pyarrow as pa

from pyspark_theflash.engine.interface import SqlQueryError, SqlResult, SqlTableNotFoundError
from pyspark_theflash.engine.pushed_filters import pushed_filters
from pyspark_theflash.store.predicate import Expr

if TYPE_CHECKING:
    from pyspark_theflash.engine.interface import Engine, EngineReadSession
    from pyspark_theflash.schema.table_info import TableInfo

CATALOG = "theflash"
COMPUTED_BY = "DuckDB"
READ_ONLY_KINDS = frozenset({"SELECT"})
SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog"})
ROW_ID = "_tidb_rowid"   # what a session reads of a table the query names no column of (count(*))
HIDDEN = ("_tidb_rowid", "_tidb_commit_ts")  # the hidden columns a query may name


class _Named:
    """What a statement reads, from DuckDB's parse tree: tables as written (catalog, schema,
    name) with how often each is scanned, the CTE names, the column names, and which tables
    need every column (``all_of``: table names or aliases; ``"*"`` for every table)."""

    def __init__(self) -> None:
        self.tables: list[tuple[str, str, str, str]] = []   # (catalog, schema, name, alias)
        self.ctes: set[str] = set()
        self.columns: set[str] = set()
        self.all_of: set[str] = set()
        self.tree: list[object] = []   # DuckDB's parse tree of the statement (``json_serialize_sql``)

    def walk(self, node: object) -> None:
        if isinstance(node, list):
            for x in node:
                self.walk(x)
            return
        if not isinstance(node, dict):
            return
        kind, cls = node.get("type"), node.get("class")
        if kind == "BASE_TABLE":
            self.tables.append((str(node.get("catalog_name") or ""), str(node.get("schema_name") or ""),
                                str(node.get("table_name") or ""), str(node.get("alias") or "")))
        elif cls == "COLUMN_REF":
            self.columns.update(str(n).lower() for n in node.get("column_names") or ())
        elif cls == "STAR":
            relation = str(node.get("relation_name") or "")
            self.all_of.add(relation.lower() if relation and not node.get("columns") else "*")
        elif kind == "JOIN" and str(node.get("ref_type", "")).upper() == "NATURAL":
            self.all_of.add("*")
        if isinstance(node.get("using_columns"), list):
            self.columns.update(str(n).lower() for n in node["using_columns"])
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            self.ctes.update(str(e.get("key", "")).lower() for e in cte_map.get("map") or () if isinstance(e, dict))
        for value in node.values():
            if isinstance(value, (dict, list)):
                self.walk(value)


def refuse_writes(sql: str) -> None:
    """The store is a replica of TiDB: one read-only statement (a SELECT, WITH ... SELECT,
    VALUES, FROM-first) runs; anything else is refused naming its kind."""
    import duckdb

    if not sql.strip():
        raise SqlQueryError("the query is empty; give a SELECT, e.g. \"SELECT count(*) FROM db.table\"")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlQueryError(f"DuckDB cannot read the query: {one_line(exc)}") from None
    if len(statements) != 1:
        raise SqlQueryError(f"the query holds {len(statements)} statements; send one SELECT at a time")
    kind = statements[0].type.name
    if kind not in READ_ONLY_KINDS:
        raise SqlQueryError(f"{kind} is not a read-only query: the store is a replica of TiDB tables and runs SELECT "
                            "only" + ("; run the SELECT itself" if kind == "EXPLAIN" else
                                      "; change the tables in TiDB, the replica follows"))


def statement_reads(sql: str) -> _Named:
    """The tables and columns ``sql`` (one SELECT) names, from DuckDB's parse tree."""
    import duckdb

    with duckdb.connect() as con:
        row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        raise SqlQueryError(f"DuckDB cannot read the query: {tree.get('error_message') or tree}")
    named = _Named()
    statements = tree.get("statements")
    named.tree = list(statements) if isinstance(statements, list) else []
    named.walk(named.tree)
    return named


def resolve_tables(named: _Named, tables: Sequence[TableInfo], root: str) -> dict[tuple[str, str], TableInfo]:
    """Each table the statement reads, as the DuckDB (schema, name) it is written with → the
    store's ``TableInfo``. A bare name is the one table of that name the store has; a name the
    store lacks fails with the nearest ones."""
    by_qualified = {f"{t.db}.{t.name}".lower(): t for t in tables}
    by_name: dict[str, list[TableInfo]] = {}
    for t in tables:
        by_name.setdefault(str(t.name).lower(), []).append(t)
    out: dict[tuple[str, str], TableInfo] = {}
    for catalog, schema, name, _alias in named.tables:
        if not schema:
            if catalog or name.lower() in named.ctes:
                continue
            found = by_name.get(name.lower(), [])
            if len(found) > 1:
                raise SqlQueryError(f"table {name} is in more than one database of the store "
                                    f"({', '.join(sorted(f'{t.db}.{t.name}' for t in found))}): name it as db.table")
            if found:
                out[("main", name.lower())] = found[0]
                continue
            _unknown(name, list(by_qualified), root)
        if schema.lower() in SYSTEM_SCHEMAS and not catalog:
            continue
        info = by_qualified.get(f"{schema}.{name}".lower())
        if info is None or (catalog and catalog.lower() != CATALOG):
            _unknown(".".join(p for p in (catalog, schema, name) if p), list(by_qualified), root)
        out[(schema.lower(), name.lower())] = info
    return out


def _unknown(written: str, known: list[str], root: str) -> NoReturn:
    close = difflib.get_close_matches(written.lower().removeprefix(CATALOG + "."), known, n=1)
    listed = ", ".join(sorted(known)[:20]) + (", ..." if len(known) > 20 else "")
    raise SqlTableNotFoundError(f"the store at {root} has no table {written}"
                                f"{f' (did you mean {close[0]}?)' if close else ''}; its tables: "
                                f"{listed or 'none yet'}, named as db.table")


def session_columns(info: TableInfo, named: _Named, aliases: set[str]) -> list[str] | None:
    """The columns a table's session reads: those the statement names (None: every column)."""
    if "*" in named.all_of or named.all_of & aliases:
        extra = [h for h in HIDDEN if h in named.columns]
        return None if not extra else [c.name for c in info.columns] + extra
    columns = [c.name for c in info.columns if c.name.lower() in named.columns]
    columns += [h for h in HIDDEN if h in named.columns]
    return columns or [ROW_ID]


class _TableStream:
    """One table's rows at its session's ts, as an Arrow stream DuckDB scans (the PyCapsule
    stream interface): read from the store when a scan pulls its first batch; with ``keep``,
    read once and kept for the scans after it."""

    def __init__(self, engine: Engine, session: EngineReadSession, keep: bool) -> None:
        self.engine, self.session, self.keep = engine, session, keep
        self._lock = threading.Lock()
        self._kept: list[pa.RecordBatch] | None = None
        self.rows_read = 0  # the rows read from the store (once for a kept stream)

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        reader = pa.RecordBatchReader.from_batches(self.session.schema, self._batches())
        return reader.__arrow_c_stream__(requested_schema)

    def _read(self) -> Iterator[pa.RecordBatch]:
        for n in range(len(self.session.streams)):
            for batch in self.engine.read_stream(self.session, n):
                self.rows_read += batch.num_rows
                yield batch

    def _batches(self) -> Iterator[pa.RecordBatch]:
        if not self.keep:
            yield from self._read()
            return
        with self._lock:
            if self._kept is None:
                self._kept = list(self._read())
        yield from self._kept


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def one_line(exc: BaseException) -> str:
    """DuckDB's error as one line: its message without the query excerpt and caret."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    kept = [ln for ln in lines if not ln.startswith("LINE ") and set(ln) != {"^"}]
    return " ".join(kept)[:600] or type(exc).__name__


def computed(sql: str, streams: Mapping[tuple[str, str], _TableStream]) -> pa.Table:
    """``sql`` run by a DuckDB connection that holds the views ``streams`` and nothing else."""
    import duckdb

    con = duckdb.connect(config={"python_enable_replacements": False, "autoload_known_extensions": False,
                                 "autoinstall_known_extensions": False})
    try:
        con.execute(f"ATTACH ':memory:' AS {CATALOG}")
        con.execute(f"USE {CATALOG}")
        con.execute("SET TimeZone = 'UTC'")  # TIMESTAMP columns are UTC instants
        for i, ((schema, name), stream) in enumerate(streams.items()):
            source = f"__theflash_stream_{i}"
            con.register(source, stream)
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(schema)}")
            con.execute(f"CREATE VIEW {_quoted(schema)}.{_quoted(name)} AS SELECT * FROM {_quoted(source)}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        got = con.execute(sql).arrow()
        return got.read_all() if isinstance(got, pa.RecordBatchReader) else got
    finally:
        con.close()


def store_typed(result: pa.Table) -> pa.Table:
    """DuckDB's answer in the store's types: an interval column with no months (a TIME column,
    or a difference of them) back to ``duration[us]``."""
    columns = [_as_duration(c) if c.type == pa.month_day_nano_interval() else c for c in result.columns]
    return pa.table(columns, names=result.column_names)


_MONTH_DAY_NANO = np.dtype([("months", "<i4"), ("days", "<i4"), ("nanoseconds", "<i8")])


def _as_duration(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """An interval column as ``duration[us]`` when no value has months (those have no length
    in time); as it is otherwise."""
    chunks = []
    for chunk in column.chunks:
        values = np.frombuffer(chunk.buffers()[1], _MONTH_DAY_NANO, count=len(chunk) + chunk.offset)[chunk.offset:]
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        if bool(np.any(values["months"][valid] != 0)):
            return column
        micros = values["days"].astype(np.int64) * 86_400_000_000 + values["nanoseconds"] // 1000
        chunks.append(pa.array(micros, pa.int64(), mask=~valid).cast(pa.duration("us")))
    return pa.chunked_array(chunks, pa.duration("us"))


def run_sql(engine: Engine, sql: str, snapshot_ts: int | None = None,
            options: Mapping[str, object] | None = None, *, push_filters: bool = True) -> SqlResult:
    """Run ``sql`` (DuckDB SQL, tables named ``db.table``) over the store of ``engine`` (the
    native engine, opened with read sessions) at one snapshot ts. ``push_filters``: hand each
    table's read session the WHERE conjuncts it can apply (``engine.pushed_filters``); off, every
    row of every table is streamed and DuckDB alone filters (the same answer, more reading)."""
    import duckdb

    refuse_writes(sql)
    named = statement_reads(sql)
    infos = resolve_tables(named, engine.tables(), str(engine.root))
    unique = list({id(i): i for i in infos.values()}.values())
    scans = {id(i): 0 for i in unique}
    aliases: dict[int, set[str]] = {id(i): set() for i in unique}
    for _catalog, schema, name, alias in named.tables:
        info = infos.get(((schema or "main").lower(), name.lower()))
        if info is not None:
            scans[id(info)] += 1
            aliases[id(info)].update(a.lower() for a in (name, alias) if a)
    filters: dict[int, Expr] = {}
    if push_filters and unique:
        filters = pushed_filters(named.tree, lambda node: infos.get(
            (str(node.get("schema_name") or "main").lower(), str(node.get("table_name") or "").lower())))
    options = dict(options or {})
    ts = snapshot_ts
    choice = {k: v for k, v in options.items() if k in ("snapshot", "max_staleness") and v}
    if ts is None and choice and unique:
        ts = int(engine.query_snapshot([f"{i.db}.{i.name}" for i in unique], choice)["ts"])
    given_as_of = options.get("as_of") if ts is None else None
    as_of = None if given_as_of is None else str(given_as_of)
    started = time.monotonic()
    sessions: list[EngineReadSession] = []
    read: dict[int, _TableStream] = {}

    def open_streams(every_column: bool) -> dict[tuple[str, str], _TableStream]:
        nonlocal ts, as_of
        by_table: dict[int, _TableStream] = {}
        for info in unique:
            columns = None if every_column else session_columns(info, named, aliases[id(info)])
            session = engine.open_read_session(f"{info.db}.{info.name}", snapshot_ts=ts, as_of=as_of, columns=columns,
                                               filter=filters.get(id(info)))
            sessions.append(session)
            ts, as_of = int(session.ts), None  # every table at the first session's ts
            by_table[id(info)] = read[id(info)] = _TableStream(engine, session, keep=scans[id(info)] > 1)
        return {key: by_table[id(info)] for key, info in infos.items()}

    try:
        try:
            result = computed(sql, open_streams(every_column=False))
        except duckdb.BinderException:
            if not unique:
                raise
            result = computed(sql, open_streams(every_column=True))  # a column named where we did not look
    except duckdb.Error as exc:
        raise SqlQueryError(f"DuckDB refused the query: {one_line(exc)}") from None
    finally:
        for session in sessions:
            session.close()
    return SqlResult(int(ts or 0), tuple(f"{i.db}.{i.name}" for i in unique), store_typed(result),
                     time.monotonic() - started, COMPUTED_BY,
                     pushed_filters={f"{i.db}.{i.name}": filters[id(i)] for i in unique if id(i) in filters},
                     rows_read={f"{i.db}.{i.name}": read[id(i)].rows_read for i in unique if id(i) in read})
