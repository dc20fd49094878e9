"""The write state's resolved ts as columns (store/region_board.py): a resolved ts listing
many regions in one event (TiKV CDC's form) moves them on the board; a failed batch leaves
every value as it was; a flush persists exactly the regions whose resolved ts alone moved
(and no other), pipelined or not; a reopened store reads them back."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.store import Store
from pyspark_theflash.store.errors import UnknownTableError
from pyspark_theflash.store.region_board import RegionBoard
from store_events import DB, boundary, committed, event, items_table, key, region, row, split_event

T = items_table()


def many_resolved(ts: int, region_ids: list[int]) -> binlog_pb2.Event:
    out = binlog_pb2.Event()
    out.resolved.ts = ts
    out.resolved.regions.extend(region_ids)
    return out


def resolved_in_manifest(store: Store) -> dict[int, int]:
    with store.snapshot() as view:
        return {int(r.id): int(r.resolved_ts) for r in view.regions()}


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "store")
    s.put_schema(DB, T.to_json())
    # region 1 splits into 1..4 over the table's handles
    bounds = [boundary(T, h) for h in (100, 200, 300)]
    edges = [b""] + bounds + [b""]
    s.write([event(1, 5, []), split_event(1, 6, [region(i + 1, edges[i], edges[i + 1], version=2) for i in range(4)])])
    s.flush()
    yield s
    s.close()


def test_a_resolved_ts_of_many_regions_moves_only_the_known_ones_below_it(store: Store) -> None:
    store.write([many_resolved(500, [1, 2, 3, 4, 99])])  # 99: no region the store knows
    store.write([many_resolved(400, [1, 2])])            # never backwards
    store.write([many_resolved(600, [3])])
    store.flush()
    assert resolved_in_manifest(store) == {1: 500, 2: 500, 3: 600, 4: 500}


def test_a_batch_that_fails_leaves_every_resolved_ts_as_it_was(store: Store) -> None:
    store.write([many_resolved(500, [1, 2, 3, 4])])
    store.flush()
    other = items_table(table_id=200, name="others")
    batch = [many_resolved(700, [1, 2, 3, 4]), event(2, 7, [committed(key(other, 150), row(other, id=150), 650)])]
    with pytest.raises(UnknownTableError):
        store.write(batch)
    store.flush()
    assert resolved_in_manifest(store) == {1: 500, 2: 500, 3: 500, 4: 500}
    store.put_schema(DB, other.to_json())
    store.write(batch)
    store.flush()
    assert resolved_in_manifest(store) == {1: 700, 2: 700, 3: 700, 4: 700}


def test_pipelined_flushes_persist_each_move_once_and_a_reopened_store_reads_them(store: Store, tmp_path: Path) -> None:
    store.write([many_resolved(500, [1, 2, 3, 4])])
    first = store.flush(wait=False)
    store.write([many_resolved(600, [2, 4])])
    second = store.flush(wait=False)
    a, b = first.wait(), second.wait()
    assert sorted(a.region_resolved.ids.tolist()) == [1, 2, 3, 4]
    assert sorted(b.region_resolved.ids.tolist()) == [2, 4] and b.region_resolved.ts.tolist() == [600, 600]
    assert store.flush().version == 0  # nothing moved since: no edit
    store.close()
    again = Store.open(tmp_path / "store")
    try:
        assert resolved_in_manifest(again) == {1: 500, 2: 600, 3: 500, 4: 600}
        again.write([many_resolved(600, [1, 2, 3, 4])])
        assert again.flush().region_resolved.ids.tolist() == [1, 3]  # what it persisted was read back too
    finally:
        again.close()


def test_the_board_undoes_a_batch_and_finds_moves_as_arrays() -> None:
    board = RegionBoard()
    for rid in range(1, 200):  # past its first allocation
        board.add(rid * 10, resolved_ts=5, orphan_until_ts=8 if rid == 3 else 0, persisted_ts=5)
    board.begin()
    moved, closed = board.raise_to(np.array([30, 20, 5, 30], np.int64), 9)  # 5: unknown; 30 twice
    assert moved == 3 and closed.tolist() == [30, 30]  # (listed twice: counted twice, the same values)
    assert board.moved
    board.rollback()
    ids, ts = board.moved_since_persisted(set())
    assert len(ids) == 0 and int(board.orphan_until[board.slot_of[30]]) == 8
    board.begin()
    board.raise_to(np.array([10, 20, 30], np.int64), 9)
    board.commit()
    ids, ts = board.moved_since_persisted({20})
    assert ids.tolist() == [10, 30] and ts.tolist() == [9, 9]
    board.note_persisted(ids, ts)
    board.release(20)  # its slot is taken by the next region added, zeroed
    slot = board.add(7777)
    assert board.slot_of[7777] == slot and int(board.resolved[slot]) == 0
    assert board.moved_since_persisted(set())[0].tolist() == []
    assert board.slots(np.array([7777, 20, 10], np.int64)).tolist() == [slot, -1, board.slot_of[10]]


def test_the_undo_goes_back_through_one_slot_and_array_saves_in_their_order() -> None:
    """A region saved alone (its split sets its resolved ts to 0), then raised with thousands
    by a resolved ts, then the batch fails: every value is the one before the batch."""
    board = RegionBoard()
    for rid in range(1, 5001):
        board.add(rid, resolved_ts=100, orphan_until_ts=0, persisted_ts=100)
    board.begin()
    for rid in range(1, 5001, 2):  # more than one fold of the one-slot log
        board.save_one(board.slot_of[rid])
        board.resolved[board.slot_of[rid]] = 0
    board.raise_to(np.arange(1, 5001, dtype=np.int64), 200)
    board.save_one(board.slot_of[7])
    board.resolved[board.slot_of[7]] = 5
    board.rollback()
    assert set(board.resolved[:board.used].tolist()) == {100}
