"""Which engine a store uses: recorded once in the manifest (meta ``engine``), checked on
every opening. ``native`` (TxnMergeTree) is the default and what a store without the record
(made before engines were switchable) uses."""
from __future__ import annotations

import os
from typing import Any

from pyspark_theflash.errors import TheFlashError

ENGINES = ("native", "clickhouse")
DEFAULT_ENGINE = "native"
META_KEY = "engine"


class EngineMismatchError(TheFlashError):
    """A store opened with an engine other than the one it records."""


def check_engine_name(kind: str) -> str:
    if kind not in ENGINES:
        raise ValueError(f"unknown engine {kind!r}: use one of {', '.join(ENGINES)}")
    return kind


def recorded_engine(store: Any) -> str:
    """The engine recorded in an open ``store.Store`` (``native`` when none is)."""
    from pyspark_theflash.store import manifest as mf

    with store.snapshot() as view:
        value = mf.get_meta(view.conn(), META_KEY)
    return str(value) if value else DEFAULT_ENGINE


def record_engine(store: Any, kind: str) -> None:
    """Record ``kind`` in a writable store that has rows of no engine yet, or check it matches
    the one recorded. Raises ``EngineMismatchError`` naming both."""
    from pyspark_theflash.store import manifest as mf

    check_engine_name(kind)
    with store.snapshot() as view:
        conn = view.conn()
        value = mf.get_meta(conn, META_KEY)
        flushed = conn.execute("SELECT COUNT(*) FROM parts").fetchone()[0]
    recorded = str(value) if value else (DEFAULT_ENGINE if flushed else None)
    if recorded is not None and recorded != kind:
        raise EngineMismatchError(
            f"store {store.root} uses the {recorded} engine, not {kind}: open it with --engine {recorded} "
            f"(or copy it into a new store directory for the {kind} engine)")
    if value is None:
        with store.editing(), mf.edit(store._conn, bump=False):
            mf.set_meta(store._conn, META_KEY, kind)


def open_writer_engine(store: Any, kind: str = DEFAULT_ENGINE) -> Any:
    """The engine of the writer's open ``store.Store``: the engine recorded (or ``kind`` for a
    new store), attached to the store (the ClickHouse engine as its row sink)."""
    record_engine(store, kind)
    if kind == "clickhouse":
        from pyspark_theflash.engine.clickhouse import ClickHouseEngine

        return ClickHouseEngine(store)
    from pyspark_theflash.engine.txn_merge_tree import TxnMergeTreeEngine

    return TxnMergeTreeEngine(store)


def engine_of_directory(path: str | os.PathLike[str]) -> str:
    """The engine a store directory records, read without opening it for writing."""
    from pyspark_theflash.store import Store

    store = Store.open(path, readonly=True)
    try:
        return recorded_engine(store)
    finally:
        store.close()
