"""Stores as the shared store tests drive them, for either engine.

``open_store(root, engine, options)`` is a ``store.Store`` for ``native``; for ``clickhouse``
it is the same ``Store`` (apply, flush, compaction, manifest) with the ClickHouse engine
attached, whose ``scan``/``scan_table``/``gc``/``close`` go through the engine: rows are read
from ClickHouse, GC collects ClickHouse versions too. Same methods, same results expected.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from pyspark_theflash.store import Store, StoreOptions

ENGINES = ("native", "clickhouse")


class ClickHouseStore:
    """A ``Store`` whose reads and GC are the ClickHouse engine's."""

    def __init__(self, store: Store, engine: Any) -> None:
        self._store = store
        self.engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def scan(self, table: Any, ts: int, **kwargs: Any) -> Any:
        return self.engine.scan(table, ts, **kwargs)

    def scan_table(self, table: Any, ts: int, **kwargs: Any) -> pa.Table:
        from pyspark_theflash.store.parts import output_schema
        from pyspark_theflash.store.store import table_for_read

        with self._store.snapshot() as view:
            info = table_for_read(view, table, ts, kwargs.get("schema", "current"))
        batches = list(self.engine.scan(info, ts, **kwargs))
        return pa.Table.from_batches(batches, schema=output_schema(info, kwargs.get("columns"), kwargs.get("hidden", ())))

    def gc(self, safe_point: int) -> Any:
        return self.engine.gc(safe_point)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> "ClickHouseStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(root: str | Path, engine: str = "native", options: StoreOptions | None = None,
               readonly: bool = False) -> Any:
    store = Store.open(str(root), readonly=readonly, options=options)
    if engine == "native":
        return store
    from pyspark_theflash.engine.clickhouse import ClickHouseEngine
    from pyspark_theflash.engine.selection import record_engine

    try:
        if not readonly:
            record_engine(store, engine)
        return ClickHouseStore(store, ClickHouseEngine(store))
    except BaseException:
        store.close()
        raise
