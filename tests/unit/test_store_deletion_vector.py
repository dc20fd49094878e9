"""Merge-on-read with deletion vectors: a partition read at ts as (its stable part minus the
deletion vector) + (the deltas' newest versions of the vector's handles) is exactly the
partition's MVCC read, whatever the deltas hold — newer versions, deletes, versions older
than the stable part's, handles the stable part lacks — at every ts and in any sub-range."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pyspark_theflash.store import Store, StoreOptions, read_parts
import pyspark_theflash.store.deletion_vector as dv
from pyspark_theflash.store.predicate import col
from pyspark_theflash.store.parts import PartsReader, ReadStats
from pyspark_theflash.store.read import SnapshotReader
from pyspark_theflash.store.txn_merge_tree import conform_hidden
from pyspark_theflash.store.deletion_vector import DeletionVector, can_split, deletion_vector, superseding_rows
from store_events import DB, committed, event, items_table, key, row

T = items_table()
HIDDEN = ["_tidb_rowid"]


def stable_half(stable: Any, vector: DeletionVector, ts: int, lo: Any, hi: Any, root: Path) -> pa.Table:
    """The stable half by its definition, computed apart from ``store.read``: visible at ts, in
    [lo, hi), outside its tombstones, no delete marks, not a version of the vector."""
    t = conform_hidden(pq.read_table(root / stable.path))  # uint64 commit ts, as the vector's
    h = t.column("_tidb_rowid")
    keep = pc.less_equal(t.column("_tidb_commit_ts"), pa.scalar(ts, pa.uint64()))
    if lo is not None:
        keep = pc.and_(keep, pc.greater_equal(h, lo))
    if hi is not None:
        keep = pc.and_(keep, pc.less(h, hi))
    for tlo, thi in stable.tombstones:
        inside = pc.and_(pc.greater_equal(h, tlo if tlo is not None else -(1 << 63)),
                         pc.less(h, thi) if thi is not None else pa.scalar(True))
        keep = pc.and_(keep, pc.invert(inside))
    t = t.filter(keep)
    t = t.join(vector.versions, keys=["_tidb_rowid", "_tidb_commit_ts"], join_type="left anti")
    return t.filter(pc.invert(t.column("_tidb_delmark")))


def names(t: pa.Table, name_column: str) -> dict[int, str]:
    return dict(zip(t.column("_tidb_rowid").to_pylist(), t.column(name_column).to_pylist()))


def split_read(store: Store, ts: int, lo: Any = None, hi: Any = None) -> dict[int, str]:
    """The partition's rows at ts read as the two halves; they must not overlap."""
    with store.snapshot() as view:
        parts = view.parts(T.id)
    stable = max(parts, key=lambda p: (p.kind == "stable", p.rows))
    deltas = [p for p in parts if p is not stable]
    assert can_split(stable, deltas)
    vector = deletion_vector(stable, deltas, T, ts, (lo, hi), store.root)
    assert vector is not None
    # a stable part's versions come from its cached handle columns; the row-group read they
    # replace must find the same vector
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dv, "handle_index", lambda path, part: None)
        mp.setattr(dv, "_int_multi_version_vector", lambda reader, part, root, touched: dv._vector_from_rows(
            part, dv._stable_versions(reader, part, root, reader.lo, reader.hi, pa.int64()), touched, pa.int64(),
            multi_version=True))
        by_row_groups = deletion_vector(stable, deltas, T, ts, (lo, hi), store.root)
    assert by_row_groups is not None and by_row_groups.superseded.equals(vector.superseded)
    assert sorted(by_row_groups.versions.to_pylist(), key=str) == sorted(vector.versions.to_pylist(), key=str)
    superseded = vector.superseded.to_pylist()
    assert superseded == sorted(set(superseded))  # sorted, distinct
    stable_rows = stable_half(stable, vector, ts, lo, hi, store.root)
    assert len(set(stable_rows.column("_tidb_rowid").to_pylist())) == stable_rows.num_rows  # a row per handle
    old = names(stable_rows, stable.columns[1][1])
    batches = list(superseding_rows(vector.superseded, deltas, T, ts, (lo, hi), ["name"], None, HIDDEN, store.root,
                                    1000))
    new = names(pa.Table.from_batches(batches), "name") if batches else {}
    assert not set(old) & set(new), f"both halves hold {sorted(set(old) & set(new))} at ts {ts}"
    assert set(new) <= set(superseded)
    return {**old, **new}


def mvcc_read(store: Store, ts: int, lo: Any = None, hi: Any = None) -> dict[int, str]:
    batches = list(plain_mvcc_read_parts(store, ts, (lo, hi), ["name"], None, HIDDEN))
    return names(pa.Table.from_batches(batches), "name") if batches else {}


def plain_mvcc_read_parts(store: Store, ts: int, handle_range: Any, columns: Any, predicate: Any,
                          hidden: Any) -> list[pa.RecordBatch]:
    """The reference: every visible version of each partition sorted and the newest chosen
    (``_read_mvcc``), whatever the parts — no split, no overlay."""
    with store.snapshot() as view:
        parts = view.parts(T.id)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SnapshotReader, "read_partition", lambda self, ps: self._read_mvcc(ps))
        return list(read_parts(parts, T, ts, handle_range, columns, predicate, hidden, store.root))


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=16))
    s.put_schema(DB, T.to_json())
    yield s
    s.close()


def put(store: Store, index: int, versions: list[tuple[int, int, str | None]]) -> None:
    """Versions (handle, commit ts, name or None for a delete) as one flushed delta part."""
    store.write([event(1, index, [committed(key(T, h), None if n is None else row(T, id=h, name=n), ts)
                                  for h, ts, n in versions])])
    store.flush()


def put_random_delta(store: Store, rng: random.Random, index: int, ts: int, candidates: list[int], most: int,
                     step: int) -> int:
    """One delta part of 1..``most`` changes of random ``candidates`` (a fifth of them deletes)
    at commit ts rising from ``ts`` by 1..``step``; returns the last commit ts."""
    batch = {}
    for h in rng.sample(candidates, rng.randint(1, most)):
        ts += rng.randint(1, step)
        batch[h] = (h, ts, None if rng.random() < 0.2 else f"d{h}@{ts}")
    put(store, index, list(batch.values()))
    return ts


def test_the_two_halves_are_the_mvcc_read_for_newer_versions_deletes_and_new_handles(store: Store) -> None:
    put(store, 100, [(h, 200, f"s{h}") for h in range(64)])
    store.compact(force=True)
    put(store, 101, [(3, 300, "u3"), (40, 300, None), (100, 300, "new"), (63, 250, "u63")])
    put(store, 102, [(3, 350, "v3"), (41, 150, "old41")])  # 41: a version older than the stable's
    for ts in (100, 149, 150, 199, 200, 250, 299, 300, 349, 350, 10**6):
        assert split_read(store, ts) == mvcc_read(store, ts), ts
        for lo, hi in [(0, 32), (32, 64), (40, 41), (None, 4), (60, None)]:
            assert split_read(store, ts, lo, hi) == mvcc_read(store, ts, lo, hi), (ts, lo, hi)
    with store.snapshot() as view:
        parts = view.parts(T.id)
    stable = next(p for p in parts if p.kind == "stable")
    deltas = [p for p in parts if p is not stable]
    # at 300: 3, 40, 63 and the new 100 are superseded; 41's delta version (150) is older than
    # the stable's (200), so the stable's row stands
    at_300 = deletion_vector(stable, deltas, T, 300, (None, None), store.root)
    assert at_300 is not None and at_300.superseded.to_pylist() == [3, 40, 63, 100]
    assert sorted(at_300.versions.column("_tidb_rowid").to_pylist()) == [3, 40, 63]  # the stable's versions
    # at 150 the stable part has no visible version of 41: the delta's is the row
    at_150 = deletion_vector(stable, deltas, T, 150, (None, None), store.root)
    assert at_150 is not None and at_150.superseded.to_pylist() == [41] and at_150.versions.num_rows == 0


@pytest.mark.parametrize("seed", range(6))
def test_random_histories_read_the_same_through_both_halves(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    handles = list(range(0, 1200, 3))  # 400 rows: the vectors stay under MAX_VECTOR_SHARE of them
    ts = 1000
    index = 100
    put(store, index, [(h, ts, f"s{h}") for h in handles])
    store.compact(force=True)
    stamps = [ts]
    for round_ in range(rng.randint(1, 5)):  # deltas stay smaller than the stable part (can_split)
        if round_ == 2 and seed % 2:
            store.compact(force=True)  # versions newer than the safe point stay: a multi-version stable part
        index += 1
        ts = put_random_delta(store, rng, index, ts, handles + list(range(1200, 1220)), most=15, step=5)
        stamps.append(ts)
    for at in sorted({rng.randint(990, ts + 2) for _ in range(12)} | set(stamps)):
        lo = rng.choice([None, 0, 150, 601])
        hi = rng.choice([None, 300, 900, 1219])
        if lo is not None and hi is not None and lo >= hi:
            lo = None
        assert split_read(store, at, lo, hi) == mvcc_read(store, at, lo, hi), (seed, at, lo, hi)


def test_a_partition_whose_deltas_outweigh_its_stable_part_is_not_split(store: Store) -> None:
    put(store, 100, [(h, 200, "s") for h in range(10)])
    store.compact(force=True)
    put(store, 101, [(h, 300, "d") for h in range(20)])
    with store.snapshot() as view:
        parts = view.parts(T.id)
    stable = next(p for p in parts if p.kind == "stable")
    assert not can_split(stable, [p for p in parts if p is not stable])  # a plain MVCC read is cheaper


def test_a_stable_part_keeping_newer_versions_drops_the_replaced_ones(store: Store) -> None:
    put(store, 100, [(h, 200, f"s{h}") for h in range(40)])
    put(store, 101, [(3, 300, "u3"), (7, 310, None)])
    store.compact(force=True)  # safe point 0: every version stays, in one stable part
    with store.snapshot() as view:
        (stable,) = view.parts(T.id)
    assert not stable.single_version
    vector = deletion_vector(stable, [], T, 400, (None, None), store.root)
    assert vector is not None and vector.superseded.to_pylist() == []
    assert sorted(zip(vector.versions.column("_tidb_rowid").to_pylist(),
                      vector.versions.column("_tidb_commit_ts").to_pylist())) == [(3, 200), (7, 200)]
    assert deletion_vector(stable, [], T, 250, (None, None), store.root).versions.num_rows == 0
    put(store, 102, [(3, 350, "v3")])
    for ts in (199, 200, 300, 310, 350, 400):
        assert split_read(store, ts) == mvcc_read(store, ts), ts


def test_vectors_found_by_the_handle_index_and_by_row_groups_have_one_schema(store: Store) -> None:
    put(store, 100, [(h, 200, f"s{h}") for h in range(64)])
    store.compact(force=True)
    put(store, 101, [(3, 300, "u3"), (40, 300, None)])
    with store.snapshot() as view:
        parts = view.parts(T.id)
    stable = next(p for p in parts if p.kind == "stable")
    deltas = [p for p in parts if p is not stable]
    by_index = deletion_vector(stable, deltas, T, 300, (None, None), store.root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dv, "handle_index", lambda path, part: None)
        by_row_groups = deletion_vector(stable, deltas, T, 300, (None, None), store.root)
    assert by_index is not None and by_row_groups is not None
    assert by_index.versions.schema == by_row_groups.versions.schema
    assert pa.concat_tables([by_index.versions, by_row_groups.versions]).num_rows == 4


def test_a_multi_version_parts_cached_versions_are_the_row_group_reads_in_every_range_and_tombstone(
        store: Store) -> None:
    """``_all_stable_versions`` slices the cached handle columns by binary search: the same
    versions as the row-group read's masks, for ranges and tombstones cutting anywhere."""
    import dataclasses

    put(store, 100, [(h, 200, f"s{h}") for h in range(0, 600, 2)])
    put(store, 101, [(h, 300, f"u{h}") for h in range(0, 600, 10)])
    store.compact(force=True)  # safe point 0: both versions of every tenth handle stay
    with store.snapshot() as view:
        (stable,) = view.parts(T.id)
    assert not stable.single_version
    rng = random.Random(7)
    bounds = [None, -5, 0, 1, 2, 99, 100, 301, 598, 599, 600, 700]
    checked = 0
    for _ in range(80):
        tombstones = tuple((rng.choice(bounds), rng.choice(bounds)) for _ in range(rng.randint(0, 2)))
        part = dataclasses.replace(stable, tombstones=tuple((a, b) for a, b in tombstones
                                                            if a is None or b is None or a < b))
        lo, hi = rng.choice(bounds), rng.choice(bounds)
        if lo is not None and hi is not None and lo >= hi:
            continue
        ts = rng.choice([150, 200, 250, 300, 400])
        reader = PartsReader(store.root, T, ts, (lo, hi), [], None, (), 1 << 30)
        handles, commit_ts = dv._all_stable_versions(reader, part, store.root)
        read = dv._stable_versions(reader, part, store.root, lo, hi, pa.int64())
        cached = [{"_tidb_rowid": int(h), "_tidb_commit_ts": int(c)} for h, c in zip(handles, commit_ts)]
        assert cached == read.to_pylist(), (ts, lo, hi, part.tombstones)
        checked += len(cached)
    assert checked > 1000


@pytest.mark.parametrize("seed", range(8))
def test_reads_of_a_multi_version_stable_part_and_its_deltas_are_the_plain_mvcc_read(store: Store, seed: int) -> None:
    """What every reader of the store runs (``read_parts``: the service's streams, the Python
    source): a partition whose stable part keeps several versions of some handles, as under
    live writes, is read as the stable half minus its deletion vector plus the deltas' newest
    versions of the superseded handles. Row for row the plain MVCC read, in every column,
    range, filter and ts, hidden columns included."""
    rng = random.Random(100 + seed)
    handles = list(range(0, 1500, 3))
    ts = 1000
    put(store, 100, [(h, ts, f"s{h}") for h in handles])
    index = 101
    for _ in range(2):  # versions newer than the safe point (0): the compacted stable part keeps them
        index += 1
        ts += 10
        put(store, index, [(h, ts, None if rng.random() < 0.1 else f"m{h}@{ts}")
                           for h in rng.sample(handles, 40)])
    store.compact(force=True)
    with store.snapshot() as view:
        (stable,) = view.parts(T.id)
    assert not stable.single_version
    stamps = [1000, 1010, 1020]
    for _ in range(rng.randint(1, 4)):
        index += 1
        ts = put_random_delta(store, rng, index, ts, handles + list(range(1500, 1530)), most=25, step=4)
        stamps.append(ts)
    with store.snapshot() as view:
        parts = view.parts(T.id)
    split_stable, deltas = dv.stable_and_deltas(parts)
    assert split_stable.part_id == stable.part_id and dv.can_split(split_stable, deltas)
    filters = [None, col("id") >= 600, (col("name") == "s3") | (col("id") < 90)]
    for at in sorted({rng.randint(995, ts + 2) for _ in range(6)} | set(stamps)):
        lo = rng.choice([None, 0, 150, 601])
        hi = rng.choice([None, 300, 900, 1519])
        if lo is not None and hi is not None and lo >= hi:
            lo = None
        for predicate in filters:
            for columns, hidden in ((None, ("_tidb_rowid", "_tidb_commit_ts")), (["name"], ("_tidb_rowid",))):
                with store.snapshot() as view:
                    got = list(read_parts(view.parts(T.id), T, at, (lo, hi), columns, predicate, hidden, store.root))
                want = plain_mvcc_read_parts(store, at, (lo, hi), columns, predicate, hidden)
                got_t = pa.Table.from_batches(got) if got else None
                want_t = pa.Table.from_batches(want) if want else None
                if want_t is None or got_t is None:
                    assert got_t is None or got_t.num_rows == 0, (seed, at, lo, hi)
                    assert want_t is None or want_t.num_rows == 0, (seed, at, lo, hi)
                    continue
                assert got_t.schema == want_t.schema
                assert got_t.sort_by("_tidb_rowid").to_pylist() == want_t.sort_by("_tidb_rowid").to_pylist(), (
                    seed, at, lo, hi, str(predicate), columns)


def test_the_split_read_is_taken_for_a_multi_version_stable_part(store: Store) -> None:
    """The test above would pass on the plain MVCC read too: this one checks the split is
    what runs, so the cost of a read follows the deltas."""
    put(store, 100, [(h, 200, f"s{h}") for h in range(64)])
    put(store, 101, [(3, 300, "u3")])
    store.compact(force=True)
    put(store, 102, [(5, 400, "u5")])
    with store.snapshot() as view:
        parts = view.parts(T.id)
    assert not any(p.single_version for p in parts if p.kind == "stable")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SnapshotReader, "_read_mvcc", lambda self, ps: pytest.fail("the plain MVCC read ran"))
        got = pa.Table.from_batches(list(read_parts(parts, T, 500, None, ["name"], None, HIDDEN, store.root)))
    rows = names(got, "name")
    assert len(rows) == 64 and rows[3] == "u3" and rows[5] == "u5" and rows[6] == "s6"


@pytest.mark.parametrize("seed", range(6))
def test_versions_found_by_binary_search_are_those_the_hash_join_finds(seed: int) -> None:
    """A stable part's rows minus a vector's versions: the binary search over sorted int
    handles (runs of several versions, vector versions the part does not hold, handles below
    and above every row) marks exactly the rows the general hash-join path marks."""
    import numpy as np

    from pyspark_theflash.store import read as store_read

    rng = random.Random(seed)
    rows = []
    for h in sorted(rng.sample(range(-500, 500), 300)):
        for ts in sorted(rng.sample(range(100, 200), rng.choice([1, 1, 2, 3, 5]))):
            rows.append((h, ts))
    t = pa.table({"_tidb_rowid": pa.array([h for h, _ in rows], pa.int64()),
                  "_tidb_commit_ts": pa.array([ts for _, ts in rows], pa.uint64())})
    held = rng.sample(rows, 60)
    absent = [(rng.randrange(-600, 600), rng.randrange(100, 200)) for _ in range(40)]  # mostly not in t
    picked = sorted(held + absent)
    versions = pa.table({"_tidb_rowid": pa.array([h for h, _ in picked], pa.int64()),
                         "_tidb_commit_ts": pa.array([ts for _, ts in picked], pa.uint64())})
    fast = store_read._not_versions_sorted(t.column("_tidb_rowid").to_numpy(), t.column("_tidb_commit_ts").to_numpy(),
                                           versions)
    # the general path: the same table with its rows shuffled (not sorted: no binary search)
    order = np.random.default_rng(seed).permutation(t.num_rows)
    shuffled = t.take(pa.array(order))
    general = store_read._not_versions(shuffled, pc.unique(versions.column("_tidb_rowid")), versions)
    unshuffled = np.empty(t.num_rows, dtype=bool)
    unshuffled[order] = general.to_numpy(zero_copy_only=False)
    assert fast is not None
    assert fast.to_numpy(zero_copy_only=False).tolist() == unshuffled.tolist()
    dropped = {rows[i] for i in np.flatnonzero(~fast.to_numpy(zero_copy_only=False))}
    assert dropped == set(held) | (set(absent) & set(rows))


def vectors_by_layout_and_by_row_groups(store: Store, stable: Any, deltas: Any, ts: int, lo: Any,
                                         hi: Any) -> tuple[Any, Any]:
    """A multi-version int-handle part's vector at ts in [lo, hi) as reads compute it (from the
    part's cached layout) and from its row groups (the reference)."""
    by_layout = deletion_vector(stable, deltas, T, ts, (lo, hi), store.root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dv, "_int_multi_version_vector", lambda reader, part, root, touched: dv._vector_from_rows(
            part, dv._stable_versions(reader, part, root, reader.lo, reader.hi, pa.int64()), touched, pa.int64(),
            multi_version=True))
        by_row_groups = deletion_vector(stable, deltas, T, ts, (lo, hi), store.root)
    return by_layout, by_row_groups


@pytest.mark.parametrize("seed", range(4))
def test_a_multi_version_parts_layout_gives_the_vector_the_row_group_read_gives(store: Store, seed: int) -> None:
    """At a ts after every version of a multi-version part (a read after the compaction that
    wrote it), the vector comes from the part's layout, worked out once and sliced per range:
    the same versions and superseded handles as from the part's row groups, for any range."""
    rng = random.Random(seed)
    put(store, 100, [(h, 200, f"s{h}") for h in range(0, 2000)])
    put(store, 101, [(h, 300 + h % 7, f"u{h}") for h in rng.sample(range(2000), 150)])
    put(store, 102, [(h, 320 + h % 5, f"w{h}") for h in rng.sample(range(2000), 60)])
    store.compact(force=True)  # safe point 0: every version stays in the stable part
    ts = put_random_delta(store, rng, 103, 400, list(range(-20, 2020)), 40, 3)
    ts = put_random_delta(store, rng, 104, ts, list(range(-20, 2020)), 40, 3)
    with store.snapshot() as view:
        parts = view.parts(T.id)
    stable = next(p for p in parts if p.kind == "stable")
    deltas = [p for p in parts if p.kind == "delta"]
    assert not stable.single_version and stable.max_commit_ts < ts
    bounds = [None, -5, 0, 1, 57, 100, 101, 250, 999, 1000, 1999, 2000, 2500]
    for _ in range(30):
        lo, hi = rng.choice(bounds), rng.choice(bounds)
        if lo is not None and hi is not None and lo >= hi:
            continue
        read_ts = rng.choice([stable.max_commit_ts, ts, ts + 10])
        by_layout, by_row_groups = vectors_by_layout_and_by_row_groups(store, stable, deltas, read_ts, lo, hi)
        assert by_layout.superseded.to_pylist() == by_row_groups.superseded.to_pylist(), (lo, hi, read_ts)
        assert sorted(by_layout.versions.to_pylist(), key=str) == sorted(by_row_groups.versions.to_pylist(), key=str)
    assert dv._version_layouts.get(str(store.root / stable.path), lambda: pytest.fail("never cached"))


@pytest.mark.parametrize("seed", range(8))
def test_a_multi_version_parts_layout_at_an_earlier_ts_gives_the_vector_the_row_group_read_gives(
        store: Store, seed: int) -> None:
    """At a ts before some of a multi-version part's versions (a query's snapshot taken before
    the compaction that wrote the part), the vector comes from the part's cached layout as it
    stood at ts: for a handle changed after ts, its newest version visible at ts is the row,
    and a handle created after ts has none. The same versions and superseded handles as from
    the part's row groups, in any range."""
    rng = random.Random(50 + seed)
    put(store, 100, [(h, 200, f"s{h}") for h in range(0, 2000, 2)])
    put(store, 101, [(h, 300 + h % 7, f"u{h}") for h in rng.sample(range(2000), 150)])  # odd ones: new at 300+
    put(store, 102, [(h, 320 + h % 5, None if h % 3 == 0 else f"w{h}") for h in rng.sample(range(2000), 60)])
    store.compact(force=True)  # safe point 0: every version stays in the stable part
    # deltas applied after the compaction: commits at ts among the stable part's versions (a
    # region that applies late), of handles it holds and of handles it created after ts, and later
    put_random_delta(store, rng, 103, 140, list(range(-20, 2020)), 40, 5)
    put_random_delta(store, rng, 104, 400, list(range(-20, 2020)), 40, 3)
    with store.snapshot() as view:
        parts = view.parts(T.id)
    stable = next(p for p in parts if p.kind == "stable")
    deltas = [p for p in parts if p.kind == "delta"]
    assert not stable.single_version and stable.max_commit_ts > 320
    bounds = [None, -5, 0, 1, 57, 100, 101, 250, 999, 1000, 1999, 2000, 2500]
    earlier = [150, 200, 299, 300, 303, 306, 320, 322, stable.max_commit_ts - 1]
    checked = 0
    for _ in range(40):
        lo, hi = rng.choice(bounds), rng.choice(bounds)
        if lo is not None and hi is not None and lo >= hi:
            continue
        read_ts = rng.choice(earlier)
        by_layout, by_row_groups = vectors_by_layout_and_by_row_groups(store, stable, deltas, read_ts, lo, hi)
        assert (by_layout is None) == (by_row_groups is None), (lo, hi, read_ts)
        if by_layout is None:
            continue
        assert by_layout.superseded.to_pylist() == by_row_groups.superseded.to_pylist(), (lo, hi, read_ts)
        assert sorted(by_layout.versions.to_pylist(), key=str) == sorted(by_row_groups.versions.to_pylist(), key=str)
        checked += len(by_layout)
        assert split_read(store, read_ts, lo, hi) == mvcc_read(store, read_ts, lo, hi), (lo, hi, read_ts)
    assert checked > 100


def read_stats(store: Store, ts: int, predicate: Any = None) -> tuple[int, int, int]:
    """(rows, deletion-vector rows, fresh-tail rows) of the table's read at ts."""
    with store.snapshot() as view:
        parts = view.parts(T.id)
    stats = ReadStats()
    rows = sum(b.num_rows for b in read_parts(parts, T, ts, None, ["name"], predicate, HIDDEN, store.root,
                                              stats=stats))
    return rows, stats.deletion_vector_rows, stats.fresh_tail_rows


def test_a_split_read_counts_the_vectors_versions_and_the_rows_the_deltas_give(store: Store) -> None:
    put(store, 100, [(h, 200, f"s{h}") for h in range(64)])
    store.compact(force=True)
    assert read_stats(store, 10**6) == (64, 0, 0)  # the stable part alone
    put(store, 101, [(3, 300, "u3"), (40, 300, None), (100, 300, "new"), (63, 250, "u63")])
    put(store, 102, [(3, 350, "v3"), (41, 150, "old41")])
    # the stable versions of 3, 40 (deleted) and 63 are dropped; 3, 63 and the new 100 come from
    # the deltas; 41's delta version is older than the stable's, which stands
    assert read_stats(store, 10**6) == (64 - 1 + 1, 3, 3)
    assert read_stats(store, 260) == (64, 1, 1)  # only 63 changed by then
    # a filter narrows the rows returned, not the vector
    assert read_stats(store, 10**6, col("name") == "new") == (1, 3, 1)


def test_reads_without_a_split_count_the_rows_of_delta_parts(store: Store) -> None:
    put(store, 100, [(h, 200, f"d{h}") for h in range(30)])
    assert read_stats(store, 10**6) == (30, 0, 30)  # never compacted: one delta, read whole
    put(store, 101, [(2, 300, "u2"), (5, 300, None), (50, 300, "new")])
    assert read_stats(store, 10**6) == (30, 0, 30)  # the overlay read of a big delta: every row a delta's
    store.compact(force=True)  # safe point 0: the stable part keeps 2's and 5's first versions, its vector drops them
    assert read_stats(store, 10**6) == (30, 2, 0)
    put(store, 102, [(h, 400, f"e{h}") for h in range(100, 160)])  # deltas outweigh the stable part: MVCC
    assert read_stats(store, 10**6) == (90, 0, 60)
