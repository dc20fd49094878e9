"""Planning over a store's regions as columns (``StoreView.table_region_columns``, the learner's
checks, the partitions grouped over spans) plans what the walk over the regions one by one
plans: the same ts, regions, ranges, parts, bytes and partitions, a filter pruning the same
regions; and a key range no region holds is still named. The walk is what the planner takes
where the view cannot give columns; here it is forced by a view that gives none."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyspark_theflash.codec.keys import encode_record_key, encode_region_key, index_prefix, record_prefix
from pyspark_theflash.scan import plan
from pyspark_theflash.schema import builder
from pyspark_theflash.scan.errors import MissingRegionsError
from pyspark_theflash.scan.options import HANDLE_RANGES_OPTION, format_handle_ranges
from pyspark_theflash.store import Store
from pyspark_theflash.store.predicate import col
from pyspark_theflash.store.views import StoreView
from store_events import DB, committed, event, items_table, key, region, removed_event, resolved_ts, row, split_event

T = items_table(100)
U = items_table(101, name="others")
K = builder.table(102, "keyed", [builder.column("id", "BIGINT"), builder.column("name", "VARCHAR(64)")],
                  primary_key=["id"], db=DB)  # an integer primary key: the handle is the id
TABLES = ("shop.items", "shop.others", "shop.keyed")
READ_TS = 200


def boundaries(rng: random.Random, count: int) -> list[bytes]:
    """PD-encoded split keys of every kind a region can end at: record keys of the tables
    (most), the tables' prefixes, an index key, a record key with bytes after it, a prefix of
    a record key, the extremes of the handle space."""
    raws = {encode_record_key(t.id, rng.randint(-50, 1100)) for t in (T, U, K) for _ in range(count)}
    raws |= {record_prefix(T.id)[:-2], record_prefix(T.id), index_prefix(T.id, 1), record_prefix(U.id),
             encode_record_key(T.id, rng.randint(0, 999)) + b"\x00", encode_record_key(T.id, 300)[:-3],
             encode_record_key(T.id, -(1 << 63)), encode_record_key(T.id, (1 << 63) - 1) + b"\xff",
             record_prefix(T.id)[:-1] + b"s"}
    return [encode_region_key(r) for r in sorted(raws)]


def split_store(path: Path, seed: int) -> tuple[str, list[int]]:
    """A store of ``shop.items`` and ``shop.keyed`` (handles 0..999, in three parts) and
    ``shop.others`` split into many regions at keys of every kind, every region resolved at
    READ_TS."""
    rng = random.Random(seed)
    store = Store.open(path)
    try:
        store.put_schema(DB, T.to_json())
        store.put_schema(DB, U.to_json())
        store.put_schema(DB, K.to_json())
        index = 1
        for handles in (range(0, 400), range(400, 700), range(700, 1000)):  # three parts: a filter prunes
            store.write([event(1, index, [committed(key(T, h), row(T, id=h, name=f"t{h}"), 100) for h in handles]
                               + [committed(key(U, h), row(U, id=h, name=f"u{h}"), 100) for h in handles[:20]]
                               + [committed(key(K, h), row(K, id=h, name=f"k{h}"), 100) for h in handles])])
            store.flush()
            index += 1
        cuts = boundaries(rng, rng.randint(5, 60))
        ids = [1] + rng.sample(range(2, 100_000), len(cuts))  # ids in no key order
        store.write([split_event(1, index, [region(rid, lo, hi, 2) for rid, lo, hi in
                                            zip(ids, [b""] + cuts, cuts + [b""])])])
        store.write([resolved_ts(rid, index + 1, READ_TS) for rid in ids])
        store.flush()
    finally:
        store.close()
    return str(path), ids


def without_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planner as it read the regions before: a view with no columns to give."""
    monkeypatch.setattr(StoreView, "table_region_columns", lambda self, table_id: None)


def planned(store: str, table: str, options: dict[str, str], predicate: Any = None) -> dict[str, Any]:
    with plan(store, table, {"snapshot": "resolved", **options}, predicate=predicate) as p:
        stats = dict(vars(p.stats))
        del stats["plan_s"], stats["learner_wait_s"]
        return {"ts": p.ts, "stats": stats, "version": p.manifest_version,
                "partitions": [(q.index, q.ranges, q.size_bytes) for q in p.partitions]}


@pytest.fixture(scope="module", params=range(3))
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path, _ = split_store(tmp_path_factory.mktemp("split") / "store", request.param)
    yield path


@pytest.mark.parametrize("options, predicate", [
    ({}, None),
    ({"min_partitions": "3"}, None),
    ({"partition_target_bytes": "1"}, None),  # every region its own partition
    ({}, col("id") >= 700),
    ({}, (col("id") < 150) | (col("id") > 820)),
    ({HANDLE_RANGES_OPTION: format_handle_ranges([(None, 120), (310, 320), (650, None)])}, None),
    ({HANDLE_RANGES_OPTION: format_handle_ranges([(None, None)])}, col("id") < 100),
], ids=["whole", "min-partitions", "tiny-target", "filter", "filter-or", "handle-ranges", "both"])
def test_the_plan_over_columns_is_the_plan_of_the_walk(store: str, options: dict[str, str], predicate: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pruned = 0
    for table in TABLES:
        got = planned(store, table, options, predicate)
        with monkeypatch.context() as m:
            without_columns(m)
            walked = planned(store, table, options, predicate)
        assert got == walked
        assert got["ts"] == READ_TS and got["stats"]["regions"] > 0
        pruned += got["stats"]["regions_pruned"]
    if predicate is not None and not options:
        assert pruned > 0  # (the filter did prune: the comparison covers it)


def test_a_key_range_no_region_holds_is_still_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, ids = split_store(tmp_path / "store", 7)
    with Store.open(path) as s, s.snapshot() as view:
        over = [r for r, _ in view.table_regions(T.id)]
    gone = over[len(over) // 2]  # a region in the middle of the table
    with Store.open(path) as s:
        s.write([removed_event(gone.id, 100)])
        s.flush()
    with pytest.raises(MissingRegionsError) as err:
        planned(path, "shop.items", {})
    with monkeypatch.context() as m:
        without_columns(m)
        with pytest.raises(MissingRegionsError) as walked:
            planned(path, "shop.items", {})
    assert str(err.value) == str(walked.value)
    assert "handles [" in str(err.value)


@pytest.mark.parametrize("force", [False, True])
def test_the_learners_regions_behind_ts_over_columns_are_the_walks(tmp_path: Path, force: bool) -> None:
    from pyspark_theflash.scan.context import covering_physical, covering_physical_columns, table_key_range
    from pyspark_theflash.scan.learner import LearnerRead

    path, ids = split_store(tmp_path / "store", 5)
    rng = random.Random(5)
    with Store.open(path) as writer:  # some regions resolved further than others
        writer.write([resolved_ts(rid, 1000, READ_TS + rng.choice([0, 10, 20])) for rid in ids])
        writer.flush()
    with Store.open(path, readonly=True) as s, s.snapshot() as view:
        for physical in ([T.id], [U.id], [T.id, U.id]):
            def covering(v: Any, ids: list[int] = physical) -> list[Any]:
                return covering_physical(v, ids)

            def covering_columns(v: Any, ids: list[int] = physical) -> Any:
                return covering_physical_columns(v, ids)

            common: dict[str, Any] = {"snapshot": s.snapshot, "covering": covering, "upstream": None, "latch": None,
                                      "ts": READ_TS + 10, "table": "shop.items", "key_range": table_key_range(physical[0])}
            learner = LearnerRead(**common, covering_columns=covering_columns)
            walk = LearnerRead(**common)
            over = [r.id for r in covering_physical(view, physical)]
            for needed, only in [({}, None), ({over[0]: 5}, None), ({}, set(over[::2])), ({over[-1]: 1}, {over[-1]})]:
                assert learner._fresh(view, dict(needed), only, force) == walk._fresh(view, dict(needed), only, force)
            behind = learner._fresh(view, {}, None, force)
            assert 0 < len(behind) <= len(over) and (len(behind) == len(over)) == force
