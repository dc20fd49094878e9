"""The writer's store rounds on their own thread (writer/store_rounds.py): a delta merge or a
compaction round runs while the caller goes on writing and flushing, reads stay the same at every
ts, one round at a time, its result is picked up once, and an error that ends it is raised to the
caller."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyspark_theflash.store import Store, StoreOptions
from pyspark_theflash.store.compaction import CompactionResult
from pyspark_theflash.writer.store_rounds import StoreRounds
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
        rounds: StoreRounds[CompactionResult] = StoreRounds(background=background)
        assert rounds.start("delta-merge", store.merge_deltas)
        for i in range(8, 12):  # flushes meanwhile: a merge that loses the race is planned again
            flush_one(i % 3, 100 + i)
        rounds.join()
        done = rounds.poll()
        assert done is not None and rounds.poll() is None  # picked up once
        assert done.kind == "delta-merge" and done.result.partitions + done.result.conflicts >= 1
        while delta_parts(store) >= 4:  # what a round left, merged by the next
            rounds.start("delta-merge", store.merge_deltas)
            rounds.join()
            assert rounds.poll() is not None
        assert rounds.start("compaction", lambda: store.compact(force=True))
        for i in range(12, 14):
            flush_one(i % 3, 100 + i)
        rounds.join()
        compacted = rounds.poll()
        assert compacted is not None and compacted.kind == "compaction"
        assert {ts: names_at(store, ts) for ts in range(100, 108)} == before
        assert names_at(store, 113) == {0: "n112", 1: "n113", 2: "n111"}
    finally:
        store.close()


class FailingStore:
    def merge_deltas(self) -> CompactionResult:
        raise OSError(28, "No space left on device")


def test_one_round_at_a_time_and_the_error_that_ends_one_is_raised_to_the_caller_once() -> None:
    import threading

    gate = threading.Event()
    rounds: StoreRounds[CompactionResult] = StoreRounds()
    assert rounds.start("compaction", lambda: (gate.wait(), CompactionResult())[1])
    assert not rounds.start("delta-merge", FailingStore().merge_deltas) and rounds.running
    assert rounds.poll() is None  # (running)
    gate.set()
    rounds.join()
    assert rounds.poll() is not None
    assert rounds.start("delta-merge", FailingStore().merge_deltas)
    rounds.join()
    with pytest.raises(OSError, match="No space left"):
        rounds.poll()
    assert rounds.poll() is None
