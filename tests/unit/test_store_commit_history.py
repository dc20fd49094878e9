"""A table's first change in (after, through] from what the store keeps (store/commit_history.py):
exactly the first commit a brute-force look at every stored version finds, over delta parts,
merged deltas and compacted stable parts that straddle ``after``; a schema change counts; below
the GC safe point the store says it cannot tell."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from pyspark_theflash.store import Store, StoreOptions
from pyspark_theflash.store.commit_history import ChangeKind, TableChange, first_change
from store_events import DB, committed, event, items_table, key, row

T = items_table()
# (handle, commit ts, name or None for a delete), one flush per group: quiet stretches between
HISTORY = [
    [(1, 100, "a"), (2, 100, "b"), (3, 105, "c")],
    [(2, 120, "b2"), (4, 120, "d")],
    [(3, 130, None)],
    [(1, 160, "a2"), (5, 161, "e")],
    [(5, 190, None), (6, 190, "f")],
]
COMMITS = sorted({ts for group in HISTORY for _, ts, _ in group})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "store", options=StoreOptions(removed_file_retention_s=0))
    s.put_schema(DB, T.to_json())
    for index, group in enumerate(HISTORY, 1):
        s.write([event(1, index, [committed(key(T, h), None if n is None else row(T, id=h, name=n), ts)
                                  for h, ts, n in group])])
        s.flush()
    yield s
    s.close()


def change(store: Store, after: int, through: int) -> TableChange | None:
    with store.snapshot() as view:
        return first_change(view, store.root, "shop.items", view.parts(T.id), after, through)


def expected(after: int, through: int) -> int | None:
    return min((ts for ts in COMMITS if after < ts <= through), default=None)


def check_every_interval(store: Store) -> None:
    for after in range(95, 200, 3):
        for through in (after, after + 1, after + 10, after + 40, 250):
            want = expected(after, through)
            got = change(store, after, through)
            assert (got.commit_ts if got is not None else None) == want, (after, through, got)
            assert got is None or got.kind is ChangeKind.ROWS


def test_the_first_commit_between_two_ts_over_delta_parts(store: Store) -> None:
    check_every_interval(store)
    assert change(store, 130, 159) is None  # quiet from 130 to 160: a read at 159 is the read at 130


def test_the_first_commit_between_two_ts_over_merged_deltas_and_compacted_stable_parts(store: Store) -> None:
    store.merge_deltas()
    check_every_interval(store)
    store.compact(force=True)
    with store.snapshot() as view:
        parts = view.parts(T.id)
    assert [p.kind for p in parts] == ["stable"] and parts[0].min_commit_ts == 100, parts
    check_every_interval(store)  # the one stable part straddles every ``after`` from 100 to 189


def test_a_schema_change_between_two_ts_is_a_change_and_below_the_safe_point_the_store_cannot_tell(
        store: Store) -> None:
    store.put_schema(DB, items_table(schema_version=2, with_price=False).to_json(), commit_ts=175)
    got = change(store, 165, 200)
    assert got is not None and (got.kind, got.commit_ts) == (ChangeKind.SCHEMA, 175), got
    assert change(store, 170, 200) == TableChange(ChangeKind.SCHEMA, 175)
    assert change(store, 150, 200) == TableChange(ChangeKind.ROWS, 160)  # rows first
    store.gc(140)
    below = change(store, 120, 200)
    assert below is not None and below.kind is ChangeKind.UNKNOWN and "GC safe point 140" in below.why, below
    assert below.describe() == f"the store cannot tell ({below.why})"
