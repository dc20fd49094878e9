"""``shop.items`` (store_events.items_table) written to a store as the binlog would write it: one
region, each commit followed by its resolved ts, TSOs of the last minute (Delta readers check
time travel against retention). For the publication's tests that need a store with rows, not
the mini cluster."""
from __future__ import annotations

import time

from pyspark_theflash.schema import builder
from pyspark_theflash.store import Store
from store_events import committed, event, items_table, key, resolved_ts, row

T1 = items_table()
T2 = items_table(schema_version=2, extra=[builder.column("qty", "INT", default=7, origin_default=7)])  # ADD COLUMN qty


class Upstream:
    def __init__(self, store: Store) -> None:
        self.store, self.index, self.table = store, 0, T1
        self.now_ms = int(time.time() * 1000) - 60_000

    def ts(self) -> int:
        self.now_ms += 7
        return self.now_ms << 18

    def commit(self, changes: list[tuple[int, str | None]]) -> int:
        """Upserts (handle, name) and deletes (handle, None) in one transaction: its commit ts."""
        ts = self.ts()
        extra = {"qty": 100} if self.table is T2 else {}
        rows = [committed(key(self.table, h), None if n is None else row(self.table, id=h, name=n, price=None, **extra), ts)
                for h, n in changes]
        self.index += 2
        self.store.write([event(1, self.index - 1, rows)])
        self.store.write([resolved_ts(1, self.index, ts)])
        return ts
