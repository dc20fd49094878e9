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
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pyspark_theflash.engine.clickhouse.errors import ClickHouseEngineError
from pyspark_theflash.engine.clickhouse.snapshot_read import snapshot_sql


@dataclass(frozen=True)
class SqlResult:
    ts: int
    tables: tuple[str, ...]
    result: pa.Table
    seconds: float


def run_sql(engine: Any, sql: str, snapshot_ts: int | None = None) -> SqlResult:
    """Run ``sql`` (ClickHouse SQL naming tables as ``db.table``) over the store of ``engine``
    (a ``ClickHouseEngine``) at one snapshot ts."""
    import time

    known = {f"{t.db}.{t.name}".lower(): t for t in engine.tables()}
    pattern = re.compile(r"`?\b([A-Za-z_][\w]*)`?\.`?([A-Za-z_][\w]*)\b`?")
    named = []
    for m in pattern.finditer(sql):
        q = f"{m.group(1)}.{m.group(2)}".lower()
        if q in known and q not in named:
            named.append(q)
    if not named:
        raise ClickHouseEngineError(
            f"the query names none of the store's tables ({', '.join(sorted(known)) or 'none yet'}); "
            "name them as db.table")
    sessions = []
    try:
        ts = snapshot_ts
        for q in named:  # one ts for every table: the first session's
            session = engine.open_read_session(q, snapshot_ts=ts)
            sessions.append(session)
            ts = int(session.ts)
        assert ts is not None
        subqueries = {}
        for q in named:
            info = known[q]
            for table in engine.tables_ch.table_ids():
                if table == info.id:
                    break
            else:
                engine.tables_ch.ensure_table(info)  # no row flushed yet: an empty table
            inner, _names = snapshot_sql(info, ts, None, None, None, None, ())
            subqueries[q] = inner
        rewritten = pattern.sub(lambda m: f"({subqueries[f'{m.group(1)}.{m.group(2)}'.lower()]})"
                                if f"{m.group(1)}.{m.group(2)}".lower() in subqueries else m.group(0), sql)
        t0 = time.monotonic()
        result = engine.directory.arrow(rewritten)
        return SqlResult(ts, tuple(named), result, time.monotonic() - t0)
    finally:
        for session in sessions:
            session.close()
