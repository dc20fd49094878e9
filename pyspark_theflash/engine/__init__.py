"""Store engines behind one interface (``Engine``): what the TheFlash API service and the
writer ask of a store — apply a batch, flush, open a read session, read a stream, compact, GC,
status. The native TxnMergeTree store is the first implementation
(``TxnMergeTreeEngine``); another engine plugs in by implementing ``Engine``."""
from __future__ import annotations

from pyspark_theflash.engine.interface import Engine, EngineReadOnlyError
from pyspark_theflash.engine.txn_merge_tree import TxnMergeTreeEngine

__all__ = ["Engine", "EngineReadOnlyError", "TxnMergeTreeEngine", "open_engine"]


def open_engine(store: str, *, readonly: bool = True, upstream: str | None = None) -> Engine:
    """The engine of the store directory ``store`` (the native TxnMergeTree engine: the only
    kind today)."""
    return TxnMergeTreeEngine.open(store, readonly=readonly, upstream=upstream)
