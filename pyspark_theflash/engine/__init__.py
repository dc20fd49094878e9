"""Store engines behind one interface (``Engine``): what the TheFlash API service and the
writer ask of a store — apply a batch, flush, open a read session, read a stream, compact, GC,
status. Two implement it: the native TxnMergeTree store (``TxnMergeTreeEngine``, engine
``native``) and ClickHouse in-process via chdb (``ClickHouseEngine``, engine ``clickhouse``).
A store records its engine (``engine.selection``); ``open_engine`` opens whichever it records.
Read sessions are the planner's: an engine opened for them is handed ``ReadSessions``
(``scan.engine_sessions.PlannedSessions``)."""
from __future__ import annotations

from pyspark_theflash.engine.interface import (
    ChangeReadUnsupportedError,
    Engine,
    EngineReadOnlyError,
    NoReadSessionsError,
    ReadSessions,
    SqlQueryError,
    SqlResult,
    SqlTableNotFoundError,
)
from pyspark_theflash.engine.selection import ENGINES, EngineMismatchError, open_writer_engine, recorded_engine
from pyspark_theflash.engine.txn_merge_tree import TxnMergeTreeEngine

__all__ = ["ENGINES", "ChangeReadUnsupportedError", "Engine", "EngineMismatchError", "EngineReadOnlyError",
           "NoReadSessionsError", "ReadSessions", "SqlQueryError", "SqlResult", "SqlTableNotFoundError",
           "TxnMergeTreeEngine", "open_engine", "open_writer_engine",
           "recorded_engine"]


def open_engine(store: str, *, readonly: bool = True, engine: str | None = None,
                sessions: ReadSessions | None = None) -> Engine:
    """The engine of the store directory ``store``: the one it records (``engine``, when
    given, must be that one: ``EngineMismatchError`` otherwise). ``sessions``: how it opens
    read sessions (``scan.engine_sessions.PlannedSessions``; closed with the engine)."""
    from pyspark_theflash.store import Store

    st = Store.open(store, readonly=readonly)
    try:
        recorded = recorded_engine(st)
        if engine is not None and engine != recorded:
            raise EngineMismatchError(f"store {store} uses the {recorded} engine, not {engine}: open it with "
                                      f"--engine {recorded}")
        if recorded == "clickhouse":
            from pyspark_theflash.engine.clickhouse import ClickHouseEngine

            return ClickHouseEngine(st, sessions=sessions)
        return TxnMergeTreeEngine(st, sessions=sessions)
    except BaseException:
        st.close()
        raise
