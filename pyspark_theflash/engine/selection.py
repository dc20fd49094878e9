"""Which engine a store uses: recorded once in the manifest (meta ``engine``, ``engine.kinds``),
checked on every opening; the writer's engine opened by the name recorded."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark_theflash.engine.interface import Engine
from pyspark_theflash.engine.kinds import (
    DEFAULT_ENGINE,
    ENGINES,
    META_KEY,
    check_engine_name,
    engine_of_view,
    recorded_engine,
)
from pyspark_theflash.errors import TheFlashError

if TYPE_CHECKING:
    from pyspark_theflash.engine.txn_merge_tree import TxnMergeTreeEngine
    from pyspark_theflash.store import Store

__all__ = ["DEFAULT_ENGINE", "ENGINES", "META_KEY", "EngineMismatchError", "check_engine_name", "engine_of_view",
           "open_writer_engine", "record_engine", "recorded_engine"]


class EngineMismatchError(TheFlashError):
    """A store opened with an engine other than the one it records."""


def record_engine(store: Store, kind: str) -> None:
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
        store.commit(mf.ManifestEdit(bump=False, meta=((META_KEY, kind),)))


def open_writer_engine(store: Store, kind: str = DEFAULT_ENGINE) -> TxnMergeTreeEngine:
    """The engine of the writer's open ``store.Store``: the engine recorded (or ``kind`` for a
    new store), attached to the store (the ClickHouse engine as its row sink). It opens no read
    sessions: the writer serves them from an engine of their own (``service.serve``)."""
    record_engine(store, kind)
    if kind == "clickhouse":
        from pyspark_theflash.engine.clickhouse import ClickHouseEngine

        return ClickHouseEngine(store)
    from pyspark_theflash.engine.txn_merge_tree import TxnMergeTreeEngine

    return TxnMergeTreeEngine(store)
