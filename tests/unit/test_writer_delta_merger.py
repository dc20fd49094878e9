"""The writer's delta merges on their own thread (writer/delta_merger.py): a round merges a
store's deltas while the caller goes on writing and flushing, reads stay the same at every ts,
its result is picked up once, and an error that ends it is raised to the caller."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyspark_theflash.store import Store, StoreOptions
from pyspark_theflash.store.compaction import CompactionResult
from pyspark_theflash.writer.delta_merger import DeltaMerger
from store_events import DB, committed, event, items_table, key, row

T = items_table()


def names_at(store: Store, ts: int) -> dict[int, str]:
    t = store.scan_table("shop.items", ts, hidden=["_tidb_rowid"])
    return {r["_tidb_rowid"]: r["name"] for r in t.to_pylist()}


def delta_parts(store: Store) -> int:
    with store.snapshot() as view:
        return sum(p.kind == "delta" for p in view.parts(T.id))


@pytest.mark.parametrize("background", [True, False], ids=["thread", "inline"])
def test_a_round_merges_while_flushes_go_on_and_reads_stay_the_same(tmp_path: Path, background: bool) -> None:
    store = Store.open(tmp_path / "s", options=StoreOptions(delta_merge_min=4))
    try:
        store.put_schema(DB, T.to_json())
        index = 0

        def flush_one(handle: int, ts: int) -> None:
            nonlocal index
            index += 1
            store.write([event(1, index, [committed(key(T, handle), row(T, id=handle, name=f"n{ts}"), ts)])])
            store.flush()

        for i in range(8):
            flush_one(i % 3, 100 + i)
        before = {ts: names_at(store, ts) for ts in range(100, 108)}
        merger = DeltaMerger(store, background=background)
        merger.start()
        for i in range(8, 12):  # flushes meanwhile: a merge that loses the race is planned again
            flush_one(i % 3, 100 + i)
        merger.join()
        done = merger.poll()
        assert done is not None and merger.poll() is None  # picked up once
        result, took = done
        assert result.partitions + result.conflicts >= 1 and took >= 0
        while delta_parts(store) >= 4:  # what a round left, merged by the next
            merger.start()
            merger.join()
            assert merger.poll() is not None
        assert {ts: names_at(store, ts) for ts in range(100, 108)} == before
        assert names_at(store, 111) == {0: "n109", 1: "n110", 2: "n111"}
    finally:
        store.close()


class FailingStore:
    def merge_deltas(self) -> CompactionResult:
        raise OSError(28, "No space left on device")


def test_the_error_that_ends_a_round_is_raised_to_the_caller_once() -> None:
    merger = DeltaMerger(FailingStore())
    merger.start()
    merger.join()
    with pytest.raises(OSError, match="No space left"):
        merger.poll()
    assert merger.poll() is None
