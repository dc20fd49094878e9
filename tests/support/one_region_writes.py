"""A store written as the binlog writes it, for the Delta tests: one region of the items table
(store_events.items_table), each commit of rows followed by its resolved ts, with TSOs of the
current minute (Delta's time travel checks retention against the clock)."""
from __future__ import annotations

import random
import time
from typing import Any, Callable

from pyspark_theflash.store import Store
from store_events import DB, committed, event, items_table, key, resolved_ts, row

T1 = items_table()
COLUMNS = ["id", "name", "price"]


class Upstream:
    """Writes to the store as the binlog would: one region, commits then its resolved ts."""

    def __init__(self, store: Store) -> None:
        self.store, self.index, self.now_ms = store, 0, int(time.time() * 1000) - 60_000

    def commit(self, changes: list[tuple[int, str | None]]) -> int:
        """Upserts (id, name) and deletes (id, None) of T1 in one commit, then its resolved ts."""
        self.now_ms += 7
        ts = self.now_ms << 18
        rows = [committed(key(T1, h), None if n is None else row(T1, id=h, name=n, price=None), ts) for h, n in changes]
        self.index += 1
        self.store.write([event(1, self.index, rows)])
        self.index += 1
        self.store.write([resolved_ts(1, self.index, ts)])
        return ts


def own_rows(store: Store, ts: int) -> list[tuple[Any, ...]]:
    """TheFlash's own read of T1 at ``ts``, by id."""
    t = store.scan_table(T1.id, ts, columns=COLUMNS).sort_by("id")
    return [tuple(r.values()) for r in t.to_pylist()]


def same_commits(stores: list[Store], rounds: int, seed: int, compact_every: int = 2,
                 after_round: Callable[[], object] | None = None) -> list[int]:
    """The same commits of T1 to each store, on one clock: 1,500 rows, then ``rounds`` rounds of
    300 upserts and deletes, each store flushed after each round and compacted (the removed
    files deleted) every ``compact_every`` rounds; ``after_round`` after each. Returns the ts of
    the seed and of each round's commit."""
    rng = random.Random(seed)
    ups = [Upstream(s) for s in stores]
    for up in ups[1:]:
        up.now_ms = ups[0].now_ms
    for s in stores:
        s.put_schema(DB, T1.to_json())
    tss = [[up.commit([(h, f"seed{h}") for h in range(1_500)]) for up in ups][0]]
    for n in range(rounds):
        changes = [(h, None if rng.random() < 0.2 else f"r{n}-{h}") for h in rng.sample(range(1_800), 300)]
        tss.append([up.commit(changes) for up in ups][0])
        for s in stores:
            s.flush()
            if n % compact_every == compact_every - 1:
                s.compact(force=True)
                s.delete_obsolete_files()
        if after_round is not None:
            after_round()
    return tss
