"""The engines a store may use, by name, and the one its manifest records (meta ``engine``):
what a planned partition carries to whoever reads it (``engine.readers``). ``native``
(TxnMergeTree) is the default and what a store without the record (made before engines were
switchable) uses. Below every engine implementation: the planner and the readers ask here."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark_theflash.store import Store
    from pyspark_theflash.store.views import StoreView

ENGINES = ("native", "clickhouse")
DEFAULT_ENGINE = "native"
META_KEY = "engine"


def check_engine_name(kind: str) -> str:
    if kind not in ENGINES:
        raise ValueError(f"unknown engine {kind!r}: use one of {', '.join(ENGINES)}")
    return kind


def engine_of_view(view: StoreView) -> str:
    """The engine a store view's manifest records (``native`` when none is)."""
    from pyspark_theflash.store import manifest as mf

    value = mf.get_meta(view.conn(), META_KEY)
    return str(value) if value else DEFAULT_ENGINE


def recorded_engine(store: Store) -> str:
    """The engine recorded in an open ``store.Store`` (``native`` when none is)."""
    with store.snapshot() as view:
        return engine_of_view(view)
