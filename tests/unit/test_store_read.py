"""Snapshot reads: MVCC at any ts, column pruning, filters (pruning and row filtering) that
never resurrect old versions, hidden columns, schema changes across parts."""
from __future__ import annotations

import copy
import os
import pickle
from decimal import Decimal
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pytest

from pyspark_theflash.schema import builder
from pyspark_theflash.store import PartFileError, Store, StoreOptions, read_parts
from pyspark_theflash.store.predicate import (
    AlwaysTrue,
    ColumnStats,
    Expr,
    In,
    IsNotNull,
    IsNull,
    Not,
    StartsWith,
    col,
)
from store_events import DB, committed, event, items_table, key, row, rows_by_id

T = items_table()


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "store", options=StoreOptions(row_group_rows=10))
    s.put_schema(DB, T.to_json())
    yield s
    s.close()


class Writer:
    def __init__(self, store: Store) -> None:
        self.store, self.index = store, 0

    def put(self, handle: int, commit_ts: int, name: str | None, **more: object) -> None:
        """One committed version (name None = a delete), flushed as its own part."""
        self.index += 1
        value = None if name is None else row(T, id=handle, name=name, **more)
        self.store.write([event(1, self.index, [committed(key(T, handle), value, commit_ts)])])
        self.store.flush()


def names_at(store: Store, ts: int, **kw: object) -> dict[int, str]:
    t = store.scan_table("shop.items", ts, hidden=["_tidb_rowid"], **kw)
    return {h: r["name"] for h, r in rows_by_id(t).items()}


HISTORY = [(1, 100, "a"), (1, 200, "b"), (1, 300, None), (1, 400, "c"), (2, 150, "x"), (2, 350, None)]
EXPECTED = {50: {}, 100: {1: "a"}, 150: {1: "a", 2: "x"}, 250: {1: "b", 2: "x"}, 300: {2: "x"},
            349: {2: "x"}, 350: {}, 400: {1: "c"}, 10**15: {1: "c"}}


def test_mvcc_newest_version_at_or_below_ts_and_deletes_hide(store: Store) -> None:
    w = Writer(store)
    for h, ts, name in HISTORY:
        w.put(h, ts, name)
    for ts, want in EXPECTED.items():
        assert names_at(store, ts) == want, ts
    store.compact(force=True)  # the same answers from one stable part holding every version
    with store.snapshot() as view:
        (part,) = view.parts(T.id)
        assert part.kind == "stable" and not part.single_version
    for ts, want in EXPECTED.items():
        assert names_at(store, ts) == want, ts


def test_versions_written_in_one_flush_are_all_kept(store: Store) -> None:
    store.write([event(1, 1, [committed(key(T, 1), row(T, id=1, name=n), ts) for ts, n in ((10, "p"), (20, "q"))])])
    store.flush()
    assert names_at(store, 15) == {1: "p"} and names_at(store, 25) == {1: "q"}


def test_column_pruning_and_hidden_columns(store: Store) -> None:
    Writer(store).put(7, 100, "seven", price=Decimal("2.50"))
    t = store.scan_table("shop.items", 100, columns=["price"])
    assert t.schema.names == ["price"] and t.column("price").to_pylist() == [Decimal("2.50")]
    t = store.scan_table("shop.items", 100, columns=["name"], hidden=["_tidb_rowid", "_tidb_commit_ts", "_tidb_delmark"])
    assert t.schema.names == ["name", "_tidb_rowid", "_tidb_commit_ts", "_tidb_delmark"]
    assert t.schema.field("_tidb_commit_ts").type == pa.uint64()
    assert t.to_pylist() == [{"name": "seven", "_tidb_rowid": 7, "_tidb_commit_ts": 100, "_tidb_delmark": False}]
    full = store.scan_table("shop.items", 100)
    assert full.schema.names == ["id", "name", "price"]


def test_filter_applies_to_the_chosen_version_never_resurrecting_an_old_one(store: Store) -> None:
    w = Writer(store)
    w.put(1, 100, "old")      # part 1: stats say name = 'old'
    w.put(1, 200, "new")      # part 2: stats say name = 'new' (cannot match name == 'old')
    w.put(2, 100, "old")
    assert names_at(store, 150, predicate=col("name") == "old") == {1: "old", 2: "old"}
    assert names_at(store, 250, predicate=col("name") == "old") == {2: "old"}
    assert names_at(store, 250, predicate=col("name") == "new") == {1: "new"}
    store.compact(force=True)
    assert names_at(store, 250, predicate=col("name") == "old") == {2: "old"}


def test_filters_prune_partitions_and_row_groups_without_opening_them(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=10, partition_max_rows=50))
    s.put_schema(DB, T.to_json())
    s.write([event(1, 1, [committed(key(T, h), row(T, id=h, name=f"n{h:03d}"), 100) for h in range(100)])])
    s.flush()
    s.compact(force=True)  # 100 rows > 50: the partition splits in two stable parts
    with s.snapshot() as view:
        parts = sorted(view.parts(T.id), key=lambda p: p.min_handle)
    assert len(parts) == 2 and all(p.single_version for p in parts)
    # A part the filter rules out is never opened: remove its file and the read still works.
    os.unlink(s.root / parts[1].path)
    got = s.scan_table("shop.items", 100, predicate=(col("id") >= 10) & (col("id") < 20))
    assert got.column("id").to_pylist() == list(range(10, 20))
    with pytest.raises(PartFileError):
        s.scan_table("shop.items", 100, predicate=col("id") == 99)
    s.close()


def test_every_filter_form_filters_rows(store: Store) -> None:
    store.write([event(1, 1, [committed(key(T, h), row(T, id=h, name=n, price=p), 100) for h, n, p in
                              ((1, "apple", Decimal("1.00")), (2, "banana", None), (3, "avocado", Decimal("3.00")))])])
    store.flush()

    def ids(pred: Expr) -> list[int]:
        return sorted(store.scan_table("shop.items", 100, predicate=pred).column("id").to_pylist())

    assert ids(col("id") != 2) == [1, 3]
    assert ids(col("id") <= 2) == [1, 2]
    assert ids(col("id") > 1) == [2, 3]
    assert ids(In("name", ["banana", "kiwi"])) == [2]
    assert ids(IsNull("price")) == [2]
    assert ids(IsNotNull("price")) == [1, 3]
    assert ids(StartsWith("name", "a")) == [1, 3]
    assert ids((col("id") == 1) | (col("id") == 3)) == [1, 3]
    assert ids(Not(col("price") > Decimal("2"))) == [1]  # NULL price is neither > 2 nor not
    assert ids(AlwaysTrue()) == [1, 2, 3]


def test_predicates_prune_by_statistics_conservatively() -> None:
    stats = {"x": ColumnStats(10, 20, 0, 5), "s": ColumnStats("b", "d", 1, 5), "n": ColumnStats(None, None, 5, 5)}
    assert (col("x") == 15).might_match(stats) and not (col("x") == 21).might_match(stats)
    assert not (col("x") < 10).might_match(stats) and (col("x") <= 10).might_match(stats)
    assert not (col("x") > 20).might_match(stats) and (col("x") != 15).might_match(stats)
    assert not In("x", [1, 30]).might_match(stats) and In("x", [1, 12]).might_match(stats)
    assert not IsNull("x").might_match(stats) and IsNull("s").might_match(stats)
    assert not IsNotNull("n").might_match(stats) and not (col("n") == 1).might_match(stats)
    assert StartsWith("s", "c").might_match(stats) and not StartsWith("s", "e").might_match(stats)
    assert not Not(col("x") >= 10).might_match(stats)  # NOT (x >= 10) is x < 10
    assert Not(StartsWith("s", "c")).might_match(stats)  # cannot prove: keep
    assert (col("missing") == 1).might_match(stats)
    assert (col("x") == "text").might_match(stats)  # incomparable: keep


def test_predicates_round_trip_through_json() -> None:
    import datetime as dt

    pred = ((col("a") >= 3) & ~In("b", [b"\x00\xff", "s"]) | IsNull("c")
            | (col("d") == Decimal("1.25")) | (col("e") < dt.datetime(2024, 1, 2, 3, 4, 5)) | StartsWith("f", "pre")
            | (col("g") == 1.5) | (col("h") == dt.date(2020, 1, 1)))
    back = Expr.from_json(pred.to_json())
    assert back.to_json() == pred.to_json()
    assert back.columns() == frozenset("abcdefgh")


def test_schema_changes_read_across_old_and_new_parts(store: Store) -> None:
    Writer(store).put(1, 100, "before", price=Decimal("9.99"))
    v2 = items_table(schema_version=2, extra=[builder.column("qty", "INT", default=7)])
    store.put_schema(DB, v2.to_json())
    store.write([event(1, 50, [committed(key(T, 2), row(v2, id=2, name="after", qty=3), 200)])])
    store.flush()
    t = store.scan_table("shop.items", 300)
    assert t.schema.names == ["id", "name", "price", "qty"]
    assert sorted(t.to_pylist(), key=lambda r: r["id"]) == [
        {"id": 1, "name": "before", "price": Decimal("9.99"), "qty": 7},  # origin default
        {"id": 2, "name": "after", "price": None, "qty": 3}]
    v3_json = copy.deepcopy(v2.to_json())
    v3_json["cols"] = [c for c in v3_json["cols"] if c["name"]["L"] != "price"]
    v3_json["schema_version"] = 3
    store.put_schema(DB, v3_json)
    t = store.scan_table("shop.items", 300)
    assert t.schema.names == ["id", "name", "qty"]
    assert sorted(t.column("qty").to_pylist()) == [3, 7]
    with store.snapshot() as view:
        assert [c.name for c in view.schema_at("shop.items", 1).columns] == ["id", "name", "price"]
    store.compact(force=True)  # the rewritten part has the newest schema and the same rows
    assert sorted(store.scan_table("shop.items", 300).to_pylist(), key=lambda r: r["id"]) == [
        {"id": 1, "name": "before", "qty": 7}, {"id": 2, "name": "after", "qty": 3}]


def test_read_parts_is_a_pure_function_of_a_pinned_part_list(store: Store) -> None:
    w = Writer(store)
    for h, ts, name in HISTORY:
        w.put(h, ts, name)
    with store.snapshot() as view:
        info = view.table("shop.items")
        parts = pickle.loads(pickle.dumps(view.parts(info.id)))
    batches = list(read_parts(parts, info, 250, None, ["name"], None, ["_tidb_rowid"], store.root))
    got = {r["_tidb_rowid"]: r["name"] for b in batches for r in b.to_pylist()}
    assert got == EXPECTED[250]


def test_scan_by_handle_range_and_by_region(store: Store) -> None:
    store.write([event(1, 1, [committed(key(T, h), row(T, id=h, name="r"), 100) for h in range(10)])])
    store.flush()
    t = store.scan_table("shop.items", 100, handle_range=(3, 6))
    assert sorted(t.column("id").to_pylist()) == [3, 4, 5]
    from store_events import boundary, region, split_event

    store.write([split_event(1, 2, [region(1, b"", boundary(T, 4), 2), region(2, boundary(T, 4), b"", 2)])])
    store.flush()
    assert sorted(store.scan_table("shop.items", 100, region_id=2).column("id").to_pylist()) == [4, 5, 6, 7, 8, 9]
    assert sorted(store.scan_table("shop.items", 100, region_id=1).column("id").to_pylist()) == [0, 1, 2, 3]
    with store.snapshot() as view:
        (r2,) = [r for r in view.regions() if r.id == 2]
        assert view.region_handle_range(r2, T.id) == (4, None)
        assert view.region_handle_range(r2, T.id - 1) is None  # wholly before the region
        assert view.region_handle_range(r2, T.id + 1) == (None, None)  # wholly inside it


def test_filter_literals_bind_to_their_column_types() -> None:
    import datetime as dt

    t = pa.table({"ts": pa.array([dt.datetime(2024, 1, 1), dt.datetime(2024, 6, 1)], pa.timestamp("us", "UTC")),
                  "i": pa.array([1, 2], pa.int8()), "d": pa.array([Decimal("1.50"), Decimal("3.25")], pa.decimal128(10, 2))})
    assert t.filter((col("ts") > dt.datetime(2024, 3, 1)).to_arrow(t.schema)).num_rows == 1  # naive = UTC
    assert t.filter((col("i") < 1000).to_arrow(t.schema)).num_rows == 2  # out of int8 range: still exact
    assert t.filter((col("d") > Decimal("1.505")).to_arrow(t.schema)).num_rows == 1  # finer scale than the column
    assert t.filter(In("ts", [dt.datetime(2024, 6, 1)]).to_arrow(t.schema)).num_rows == 1


def test_a_stable_part_with_small_deltas_reads_like_full_mvcc(tmp_path: Path) -> None:
    """Deltas over a big stable part: only the handles the deltas touch go through MVCC;
    the rest of the stable is read (and its row groups pruned) as it is."""
    s = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=8))
    s.put_schema(DB, T.to_json())
    w = Writer(s)
    s.write([event(1, 100, [committed(key(T, h), row(T, id=h, name=f"s{h}"), 200) for h in range(64)])])
    s.flush()
    s.compact(force=True)
    w.index = 100  # the seed was raft index 100
    model = {h: [(200, f"s{h}")] for h in range(64)}
    for h, ts, name in [(3, 300, "u3"), (40, 300, None), (41, 150, "old41"), (63, 250, "u63"), (100, 300, "new")]:
        w.put(h, ts, name)
        model.setdefault(h, []).append((ts, name))
    with s.snapshot() as view:
        kinds = sorted(p.kind for p in view.parts(T.id))
    assert kinds == ["delta"] * 5 + ["stable"]

    def expected(ts: int, pred: Callable[[str], bool] = lambda n: True) -> dict[int, str]:
        out = {}
        for h, versions in model.items():
            visible = [v for v in versions if v[0] <= ts]
            if visible:
                name = max(visible)[1]
                if name is not None and pred(name):
                    out[h] = name
        return out

    for ts in (100, 149, 150, 200, 260, 300, 400):
        assert names_at(s, ts) == expected(ts), ts
        assert names_at(s, ts, predicate=col("name") == "s3") == expected(ts, lambda n: n == "s3"), ts
        assert names_at(s, ts, predicate=col("name") == "s40") == expected(ts, lambda n: n == "s40"), ts
        # The stable's row group cannot match 'old41', but it holds the newer version of 41.
        assert names_at(s, ts, predicate=col("name") == "old41") == expected(ts, lambda n: n == "old41"), ts
        assert names_at(s, ts, predicate=StartsWith("name", "u")) == expected(ts, lambda n: n.startswith("u")), ts
        assert names_at(s, ts, predicate=col("id") >= 60) == {h: n for h, n in expected(ts).items() if h >= 60}, ts
    s.close()


def test_a_scan_of_no_columns_still_counts_rows(store: Store) -> None:
    store.write([event(1, 1, [committed(key(T, h), row(T, id=h, name="r"), 100) for h in range(5)]
                    + [committed(key(T, 2), None, 110)])])
    store.flush()
    batches = list(store.scan("shop.items", 200, columns=[]))
    assert sum(b.num_rows for b in batches) == 4 and all(b.num_columns == 0 for b in batches)
