"""Region admin in the store: split and merge change only the region map; a removed region
has its range deleted; a snapshot replaces its range atomically; orphan commits after it."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pyspark_theflash.store import CommitWithoutPrewriteError, Store, StoreOptions
from store_events import (
    DB,
    boundary,
    commit,
    committed,
    event,
    items_table,
    key,
    merge_event,
    prewrite,
    region,
    removed_event,
    resolved_ts,
    row,
    rows_by_id,
    snapshot_event,
    snapshot_lock,
    snapshot_write,
    split_event,
)

T = items_table()
U = items_table(table_id=101, name="others")


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "store")
    s.put_schema(DB, T.to_json())
    s.put_schema(DB, U.to_json())
    yield s
    s.close()


def names_at(store: Store, table: object, ts: int) -> dict[int, str]:
    t = store.scan_table(table, ts, hidden=["_tidb_rowid"])
    return {h: r["name"] for h, r in rows_by_id(t).items()}


def seed(store: Store, handles: range, ts: int = 100, index: int = 1) -> None:
    store.write([event(1, index, [committed(key(T, h), row(T, id=h, name=f"t{h}"), ts) for h in handles]
                    + [committed(key(U, h), row(U, id=h, name=f"u{h}"), ts) for h in handles])])
    store.flush()


def test_split_changes_only_the_region_map_and_locks_follow_their_keys(store: Store) -> None:
    seed(store, range(10))
    store.write([event(1, 2, [prewrite(key(T, 2), row(T, id=2, name="two"), 200),
                              prewrite(key(T, 8), row(T, id=8, name="eight"), 200)])])
    store.flush()
    with store.snapshot() as view:
        parts_before = [(p.path, p.rows) for p in view.parts(T.id)]
    store.write([split_event(1, 3, [region(1, b"", boundary(T, 5), 2), region(7, boundary(T, 5), b"", 2)])])
    store.flush()
    with store.snapshot() as view:
        regions = {r.id: r for r in view.regions()}
        assert set(regions) == {1, 7}
        assert (regions[1].end_key, regions[7].start_key) == (boundary(T, 5), boundary(T, 5))
        assert (regions[1].epoch_version, regions[1].applied_index, regions[7].applied_index) == (2, 3, 0)
        assert {lk.key: lk.region_id for lk in view.locks()} == {key(T, 2): 1, key(T, 8): 7}
        assert [(p.path, p.rows) for p in view.parts(T.id)] == parts_before  # data untouched
    # The moved lock commits in its new region (whose raft log starts afresh).
    store.write([event(7, 6, [commit(key(T, 8), 200, 210)]), event(1, 4, [commit(key(T, 2), 200, 210)])])
    store.flush()
    got = names_at(store, T.id, 210)
    assert (got[2], got[8], got[9]) == ("two", "eight", "t9") and len(got) == 10


def test_merge_moves_the_source_locks_into_the_target(store: Store) -> None:
    store.write([split_event(1, 2, [region(1, b"", boundary(T, 5), 2), region(7, boundary(T, 5), b"", 2)])])
    store.write([event(7, 6, [prewrite(key(T, 6), row(T, id=6, name="six"), 300)])])
    store.flush()
    store.write([merge_event(1, 3, region(7, boundary(T, 5), b"", 3), region(1, b"", b"", 3))])
    store.flush()
    with store.snapshot() as view:
        assert [(r.id, r.start_key, r.end_key, r.epoch_version) for r in view.regions()] == [(1, b"", b"", 3)]
        assert [r.state for r in view.regions(include_gone=True) if r.id == 7] == ["merged"]
        assert [lk.region_id for lk in view.locks()] == [1]
    store.write([event(1, 4, [commit(key(T, 6), 300, 310)])])
    store.flush()
    assert names_at(store, T.id, 310) == {6: "six"}


def test_a_merged_region_resolves_no_further_than_its_source_did(store: Store) -> None:
    """The source's open lock (start_ts 300) moves into the target, whose resolved ts was 500:
    the merged region promises 299 until a later resolved ts says more. Otherwise a read at
    400 would count the region resolved and read the store alone past an undecided lock."""
    store.write([split_event(1, 2, [region(1, b"", boundary(T, 5), 2), region(7, boundary(T, 5), b"", 2)])])
    store.write([event(7, 6, [prewrite(key(T, 6), row(T, id=6, name="six"), 300)]), resolved_ts(7, 7, 299),
                 resolved_ts(1, 3, 500)])
    store.write([merge_event(1, 4, region(7, boundary(T, 5), b"", 3), region(1, b"", b"", 3))])
    store.flush()
    with store.snapshot() as view:
        assert [(r.id, r.resolved_ts) for r in view.regions()] == [(1, 299)]
    store.write([event(1, 5, [commit(key(T, 6), 300, 310)]), resolved_ts(1, 6, 600)])
    store.flush()
    with store.snapshot() as view:
        assert [(r.id, r.resolved_ts) for r in view.regions()] == [(1, 600)]


def test_a_removed_region_has_its_range_deleted_for_every_table(store: Store) -> None:
    seed(store, range(10))
    store.write([split_event(1, 2, [region(1, b"", boundary(T, 5), 2), region(7, boundary(T, 5), boundary(U, 3), 2)]),
                 # a region 8 covering the rest, so the removal below touches only region 7's range
                 split_event(1, 3, [region(1, b"", boundary(T, 5), 3), region(8, boundary(U, 3), b"", 3)])])
    store.write([event(7, 6, [committed(key(T, 9), row(T, id=9, name="unflushed"), 150)])])
    store.write([removed_event(7, 7)])
    store.flush()
    assert sorted(names_at(store, T.id, 200)) == [0, 1, 2, 3, 4]
    assert sorted(names_at(store, U.id, 200)) == [3, 4, 5, 6, 7, 8, 9]
    with store.snapshot() as view:
        assert [r.id for r in view.regions()] == [1, 8]
        rows_before = sum(p.rows for p in view.parts(T.id))
    store.compact(force=True)  # the delete-range becomes physical
    with store.snapshot() as view:
        assert sum(p.rows for p in view.parts(T.id)) == 5 < rows_before
        assert view.conn().execute("SELECT COUNT(*) FROM range_tombstones").fetchone()[0] == 0
    assert sorted(names_at(store, T.id, 200)) == [0, 1, 2, 3, 4]
    assert sorted(names_at(store, U.id, 200)) == [3, 4, 5, 6, 7, 8, 9]


def test_rows_written_after_a_removal_in_the_same_batch_survive_it(store: Store) -> None:
    store.write([event(1, 1, [committed(key(T, 1), row(T, id=1, name="gone"), 100)]),
                 removed_event(1, 2),
                 # the region comes back (a new replica from a snapshot) and writes again
                 snapshot_event(1, 3, region(1), writes=[snapshot_write(key(T, 2), 110, 105, row(T, id=2, name="back"))]),
                 event(1, 4, [committed(key(T, 3), row(T, id=3, name="new"), 120)])])
    store.flush()
    assert names_at(store, T.id, 200) == {2: "back", 3: "new"}


def test_a_snapshot_replaces_its_range_atomically(store: Store) -> None:
    seed(store, range(10))
    store.write([split_event(1, 2, [region(1, b"", boundary(T, 5), 2), region(7, boundary(T, 5), b"", 2)]),
                 event(7, 6, [prewrite(key(T, 7), row(T, id=7, name="stale lock"), 150)])])
    store.flush()
    long_value = row(T, id=6, name="x" * 300)
    snap = snapshot_event(7, 20, region(7, boundary(T, 5), b"", 3), writes=[
        snapshot_write(key(T, 5), 120, 115, row(T, id=5, name="five@120")),
        snapshot_write(key(T, 5), 140, 135, row(T, id=5, name="five@140")),
        snapshot_write(key(T, 6), 130, 125, long_value, short=False),     # value from the default CF
        snapshot_write(key(T, 8), 130, 125, None),                         # a delete
        snapshot_write(key(T, 9), 130, 125, None, write_type="R"),         # a rollback: no data
    ], locks=[snapshot_lock(key(T, 8), 160, row(T, id=8, name="pending"), short=False)])
    store.write([snap])
    store.flush()
    assert names_at(store, T.id, 130) == {0: "t0", 1: "t1", 2: "t2", 3: "t3", 4: "t4",
                                          5: "five@120", 6: "x" * 300}
    assert names_at(store, T.id, 145)[5] == "five@140"
    assert sorted(names_at(store, U.id, 130)) == []  # table 101 lies inside region 7's range too
    with store.snapshot() as view:
        assert [(lk.key, lk.start_ts, lk.region_id) for lk in view.locks()] == [(key(T, 8), 160, 7)]
        (r7,) = [r for r in view.regions() if r.id == 7]
        assert (r7.applied_index, r7.snapshot_index, r7.epoch_version) == (20, 20, 3)
    store.write([event(7, 21, [commit(key(T, 8), 160, 170)])])  # the snapshot's lock commits normally
    store.flush()
    assert names_at(store, T.id, 170)[8] == "pending"


def test_a_part_lists_the_tombstones_newer_than_its_data_and_older_ones_are_not_decoded(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot leaves a range tombstone over its region's range; a part lists those made after
    its data (they hide its rows there). One no live part is older than is not even decoded (a
    store's initial copy leaves one a region: 10,000 in a store of 10,000 regions)."""
    from pyspark_theflash.store import views
    from pyspark_theflash.store.keyspace import region_handle_range

    store.write([snapshot_event(1, 1, region(1, boundary(T, 0), boundary(T, 3)),
                                writes=[snapshot_write(key(T, 1), 90, 85, row(T, id=1, name="early"))])])
    store.flush()  # a tombstone no part of the table is older than
    seed(store, range(10), index=2)
    store.write([split_event(1, 3, [region(1, b"", boundary(T, 5), 2), region(7, boundary(T, 5), b"", 2)])])
    store.write([snapshot_event(7, 20, region(7, boundary(T, 5), boundary(T, 8), 3),
                                writes=[snapshot_write(key(T, 6), 120, 115, row(T, id=6, name="six@120"))])])
    store.flush()
    seed(store, range(20, 25), ts=130, index=4)
    store.write([snapshot_event(1, 21, region(1, boundary(T, 20), boundary(T, 22), 4),
                                writes=[snapshot_write(key(T, 21), 140, 135, row(T, id=21, name="t21@140"))])])
    store.flush()
    decoded: list[tuple[bytes, bytes]] = []

    def handle_range(start: bytes, end: bytes, table_id: int, common: bool) -> object:
        decoded.append((start, end))
        return region_handle_range(start, end, table_id, common)

    monkeypatch.setattr(views, "_handle_range", handle_range)
    with store.snapshot() as view:
        parts = view.parts(T.id)
        every = view.conn().execute("SELECT start_key, end_key, version FROM range_tombstones "
                                    "ORDER BY version, tombstone_id").fetchall()
        data_version = dict(view.conn().execute("SELECT part_id, data_version FROM parts"))
    assert len(every) == 3 and len(parts) >= 3
    for p in parts:
        want = tuple(rng for start, end, version in every if version > data_version[p.part_id]
                     for rng in [region_handle_range(start, end, T.id)] if rng is not None and p.overlaps(*rng))
        assert p.tombstones == want
    assert any(p.tombstones for p in parts)
    oldest = min(data_version[p.part_id] for p in parts)
    assert sorted(decoded) == sorted((s, e) for s, e, version in every if version > oldest)
    assert len(decoded) < len(every)  # the first snapshot's is older than every part


def test_orphan_commits_after_a_snapshot_are_skipped_not_doubled(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "s")
    s.put_schema(DB, T.to_json())
    snap = snapshot_event(1, 10, region(1), writes=[snapshot_write(key(T, 1), 110, 100, row(T, id=1, name="in snap"))])
    s.write([snap])
    # The commit of a transaction whose write the snapshot already holds.
    result = s.write([event(1, 11, [commit(key(T, 1), 100, 110)])])
    assert result.orphan_commits == 1
    # A commit the snapshot knows nothing about is still an error.
    with pytest.raises(CommitWithoutPrewriteError):
        s.write([event(1, 12, [commit(key(T, 2), 100, 110)])])
    s.flush()
    t = s.scan_table("shop.items", 200, hidden=["_tidb_commit_ts"])
    assert t.to_pylist() == [{"id": 1, "name": "in snap", "price": None, "_tidb_commit_ts": 110}]
    s.close()
    s = Store.open(tmp_path / "s")  # after a restart the snapshot's write set is gone: still skipped
    assert s.write([event(1, 12, [commit(key(T, 1), 100, 110)])]).orphan_commits == 1
    # An orphan is never newer than the snapshot's newest write (110) ...
    with pytest.raises(CommitWithoutPrewriteError):
        s.write([event(1, 13, [commit(key(T, 3), 105, 111)])])
    # ... and none comes once the resolved ts has passed it.
    s.write([resolved_ts(1, 12, 110)])
    with pytest.raises(CommitWithoutPrewriteError):
        s.write([event(1, 13, [commit(key(T, 1), 100, 110)])])
    s.close()


def test_without_a_snapshot_a_commit_without_prewrite_is_an_error(store: Store) -> None:
    with pytest.raises(CommitWithoutPrewriteError, match="region 1 index 5"):
        store.write([event(1, 5, [commit(key(T, 1), 100, 110)])])


def test_clustered_common_handle_tables_are_replicated_with_binary_handles(tmp_path: Path) -> None:
    from store_events import codes_table, common_handle, common_key

    c = codes_table()
    s = Store.open(tmp_path / "s", options=StoreOptions(partition_max_rows=3))
    s.put_schema(DB, c.to_json())
    codes = ["a", "b", "bb", "c", "d"]
    s.write([event(1, 1, [committed(common_key(c, code.encode()), row(c, code=code, qty=i), 100)
                          for i, code in enumerate(codes)]),
             event(1, 2, [prewrite(common_key(c, b"b"), row(c, code="b", qty=99), 110)]),
             event(1, 3, [commit(common_key(c, b"b"), 110, 120), committed(common_key(c, b"c"), None, 120)])])
    s.flush()
    t = s.scan_table("shop.codes", 120, hidden=["_tidb_rowid"])
    assert t.schema.field("_tidb_rowid").type == pa.binary()
    got = {r["code"]: (r["qty"], r["_tidb_rowid"]) for r in t.to_pylist()}
    assert got == {"a": (0, common_handle(b"a")), "b": (99, common_handle(b"b")),
                   "bb": (2, common_handle(b"bb")), "d": (4, common_handle(b"d"))}
    assert s.compact(force=True).splits == 1  # partitions split on binary handles too
    assert {r["code"]: r["qty"] for r in s.scan_table("shop.codes", 115).to_pylist()} == {
        "a": 0, "b": 1, "bb": 2, "c": 3, "d": 4}
    # A region boundary inside the table maps to a binary handle range.
    s.write([split_event(1, 4, [region(1, b"", boundary(c, common_key(c, b"bb")), 2),
                                region(2, boundary(c, common_key(c, b"bb")), b"", 2)])])
    s.flush()
    assert sorted(r["code"] for r in s.scan_table("shop.codes", 120, region_id=2).to_pylist()) == ["bb", "d"]
    s.write([removed_event(1, 5)])
    s.flush()
    assert sorted(r["code"] for r in s.scan_table("shop.codes", 120).to_pylist()) == ["bb", "d"]
    s.close()


def test_rows_of_a_clustered_table_without_schema_ask_for_it_instead_of_vanishing(tmp_path: Path) -> None:
    # Common-handle record keys are longer than 19 bytes; the store must not take them for
    # non-record keys before it knows the table, or a clustered table is silently lost.
    from pyspark_theflash.store import UnknownTableError
    from store_events import codes_table, common_key

    c = codes_table()
    s = Store.open(tmp_path / "s")
    batch = [event(1, 1, [committed(common_key(c, b"a"), row(c, code="a", qty=7), 100)])]
    with pytest.raises(UnknownTableError) as err:
        s.write(batch)
    assert err.value.table_id == c.id
    s.put_schema(DB, c.to_json())
    s.write(batch)
    s.flush()
    assert s.scan_table("shop.codes", 100).to_pylist() == [{"code": "a", "qty": 7}]
    s.close()


def test_a_long_record_key_of_an_int_handle_table_is_a_clear_error(store: Store) -> None:
    from pyspark_theflash.store import MalformedRecordKeyError

    with pytest.raises(MalformedRecordKeyError, match=f"table {T.id} has an int handle"):
        store.write([event(1, 1, [committed(key(T, 1) + b"\x00", row(T, id=1), 100)])])


def test_common_handles_of_many_tables_mixed_in_one_batch_decode(tmp_path: Path) -> None:
    # Keys of several tables in one batch make the store filter the key array per table
    # before slicing off the handles (an array shape pyarrow's binary_slice mishandled).
    from store_events import codes_table, common_key

    c = codes_table()
    s = Store.open(tmp_path / "s")
    s.put_schema(DB, c.to_json())
    s.put_schema(DB, T.to_json())
    codes = [f"code-{i:03d}-{'x' * (i % 7)}" for i in range(30)]
    rows = []
    for i, code in enumerate(codes):
        rows.append(committed(common_key(c, code.encode()), row(c, code=code, qty=i), 100))
        rows.append(committed(key(T, i), row(T, id=i, name=f"n{i}"), 100))
    s.write([event(1, 1, rows)])
    s.flush()
    assert {r["code"]: r["qty"] for r in s.scan_table("shop.codes", 100).to_pylist()} == {c_: i for i, c_ in enumerate(codes)}
    assert len(s.scan_table("shop.items", 100)) == 30
    s.close()


def test_resolved_ts_travels_per_store_in_batches_and_reaches_every_listed_region(tmp_path: Path) -> None:
    """TiKV's CDC sends one ResolvedTs per store per tick listing its regions, not an event
    per region: an idle cluster of many regions logs one event a tick. The store raises every
    listed region it knows (never past a region's own lock-bounded ts) and passes over the
    others; a replayed batch changes nothing."""
    from pyspark_theflash.binlog import open_source
    from pyspark_theflash.proto import binlog_pb2
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column, record_key

    with MiniCluster(tmp_path / "cluster", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0) as up:
        table = up.create_table("db.t", [make_column("id", "BIGINT", not_null=True), make_column("v", "BIGINT")],
                                primary_key=["id"])
        up.run_txn(lambda t: [t.insert("db.t", {"id": i, "v": i}) for i in range(60)])
        for h in range(2, 60, 2):
            up.split_at(record_key(table, h))
        regions = [r.id for r in up.regions()]
        assert len(regions) > 30
        idle = up.advance_resolved_ts()
        assert len(idle) == 1 and sorted(idle[0].resolved.regions) == sorted(regions)
        # A region with an open lock resolves below it: its own event, at a lower ts (the ts
        # taken here puts start_ts - 1 above the idle tick's, so that region moves too).
        up.get_ts()
        locked = up.txn(one_pc=False)
        locked.insert("db.t", {"id": 1007, "v": 0})
        locked.prewrite()
        moved = up.advance_resolved_ts()
        assert len(moved) == 2 and sorted(len(e.resolved.regions) for e in moved) == [1, len(regions) - 1]
        low, high = sorted(moved, key=lambda e: e.resolved.ts)
        assert low.resolved.ts < locked.start_ts < high.resolved.ts
        locked.rollback()
        with open_source(str(tmp_path / "binlog")) as source:
            events = [pe.event for pe in source.read(100_000, 0.5)]
    per_region = [e for e in events if e.WhichOneof("payload") == "resolved_ts"]
    assert per_region == [] and sum(e.WhichOneof("payload") == "resolved" for e in events) == 3

    with Store.open(tmp_path / "store") as store:
        store.write(events)
        store.write([binlog_pb2.Event(resolved=binlog_pb2.ResolvedTs(regions=[999_999], ts=high.resolved.ts))])
        store.write(events)  # replayed: nothing moves
        store.write(idle)  # an older ts never lowers a region's
        store.flush()
        with store.snapshot() as view:
            states = {r.id: r.resolved_ts for r in view.regions()}
    locked_region = low.resolved.regions[0]
    assert set(states) == set(regions)  # the unknown region was passed over, not invented
    assert states[locked_region] == low.resolved.ts
    assert all(ts == high.resolved.ts for rid, ts in states.items() if rid != locked_region)
