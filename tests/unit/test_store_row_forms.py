"""The store applies an Entries event's two forms — Row messages and the columnar RowBatch —
to identical results, and refuses a batch whole whichever form fails."""
from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

import pytest

from mvcc_model import DB, TABLE_NAME, StreamSpec, batches, generate_stream, rows_from_batches
from pyspark_theflash.binlog.position import Position
from pyspark_theflash.binlog.rows import MalformedRowBatchError, columnar_entries, iter_rows
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.store import CommitWithoutPrewriteError, Store, StoreOptions, UnknownTableError
from store_events import (
    DB as SHOP, commit, committed, event, items_table, key, prewrite, region, rollback, row, rows_by_id, snapshot_event,
    snapshot_lock, snapshot_write,
)

QUALIFIED = f"{DB}.{TABLE_NAME}"
T = items_table()


def columnar(ev: binlog_pb2.Event) -> binlog_pb2.Event:
    out = binlog_pb2.Event()
    out.CopyFrom(ev)
    out.entries.CopyFrom(columnar_entries(list(ev.entries.rows)))
    return out


def store_state(store: Store, last_ts: int) -> dict:
    """Everything a reader can see: rows at many ts (hidden columns included), locks, regions."""
    with store.snapshot() as view:
        locks = sorted(tuple(r) for r in view.conn().execute("SELECT * FROM locks"))  # values included
        regions = sorted((r.id, r.start_key, r.end_key, r.applied_index, r.resolved_ts, r.state)
                         for r in view.regions(True))
        tables = [t.id for t in view.tables()]
    reads = {}
    if tables:
        for ts in range(last_ts - 400, last_ts + 1, 40):
            reads[ts] = rows_from_batches(store.scan(QUALIFIED, ts, hidden=("_tidb_rowid", "_tidb_commit_ts",
                                                                             "_tidb_delmark")))
    return {"locks": locks, "regions": regions, "reads": reads}


@pytest.mark.parametrize("seed", range(4))
def test_a_stream_in_either_form_gives_the_same_store(tmp_path: Path, seed: int) -> None:
    """The generated streams hold 2PC across regions, 1PC rows, rollbacks, deletes, LOCK rows,
    splits, merges, removed regions, and lagging regions caught up by snapshots (with orphan
    commits after them); the same rows in the row form and in the columnar form must give the
    same write results after every batch and the same store."""
    as_rows = generate_stream(seed, StreamSpec(steps=250, columnar_ratio=0.0))
    as_batches = generate_stream(seed, StreamSpec(steps=250, columnar_ratio=1.0))
    entries = [i for i, e in enumerate(as_rows.events) if e.HasField("entries")]
    assert all(not as_rows.events[i].entries.HasField("batch") for i in entries)
    assert all(as_batches.events[i].entries.HasField("batch") for i in entries)
    assert [list(iter_rows(as_rows.events[i].entries)) for i in entries] == \
        [list(iter_rows(as_batches.events[i].entries)) for i in entries]

    # odd seeds: tiny limits (prewrites spill to disk, write() flushes by itself)
    options = StoreOptions(prewrite_memory_bytes=300, flush_rows=40) if seed % 2 else None
    stores = [Store.open(tmp_path / name, options=options) for name in ("rows", "batches")]
    totals: dict[str, int] = {}
    try:
        for s in stores:
            s.put_schema(DB, as_rows.table)
        rng = random.Random(seed)
        for start, end in batches(as_rows.events, rng, max_size=12):
            results = [asdict(s.write(stream.events[start:end], Position(0, end)))
                       for s, stream in zip(stores, (as_rows, as_batches))]
            for r in results:
                r.pop("flushed")
            assert results[0] == results[1], f"seed {seed}, events [{start}, {end})"
            for name, value in results[0].items():
                totals[name] = totals.get(name, 0) + value
            if rng.random() < 0.3:
                for s in stores:
                    s.flush()
                assert store_state(stores[0], as_rows.last_ts) == store_state(stores[1], as_rows.last_ts)
        for s in stores:
            s.flush()
        final = [store_state(s, as_rows.last_ts) for s in stores]
        assert final[0] == final[1]
        assert final[0]["reads"][as_rows.last_ts], "the stream left no rows: the comparison proves nothing"
    finally:
        for s in stores:
            s.close()
    assert totals["prewrites"] and totals["commits"] and totals["rollbacks"] and totals["rows"], totals


@pytest.mark.parametrize("form", ["rows", "columnar"])
def test_a_snapshot_deletes_rows_staged_before_it_and_orphan_commits_are_skipped(tmp_path: Path, form: str) -> None:
    """Within one batch: 1PC rows staged before a region snapshot are deleted by it (the
    snapshot is the truth for its range), rows after it stay; after it, a commit whose write
    the snapshot holds is skipped and one whose lock it holds commits normally."""
    wrap = columnar if form == "columnar" else (lambda ev: ev)
    with Store.open(tmp_path / "s") as s:
        s.put_schema(SHOP, T.to_json())
        snap = snapshot_event(1, 10, region(1), writes=[snapshot_write(key(T, 1), 110, 100, row(T, id=1, name="snap"))],
                              locks=[snapshot_lock(key(T, 2), 120, row(T, id=2, name="locked"))])
        result = s.write([
            wrap(event(1, 5, [committed(key(T, 5), row(T, id=5, name="before"), 90),
                              committed(key(T, 6), row(T, id=6, name="before"), 91)])),
            snap,
            wrap(event(1, 11, [commit(key(T, 1), 100, 110), commit(key(T, 2), 120, 130),
                               committed(key(T, 7), row(T, id=7, name="after"), 140)])),
        ])
        assert (result.orphan_commits, result.commits, result.rows) == (1, 5, 3)  # commits count the orphan
        s.flush()
        assert names_at(s, 200) == {1: "snap", 2: "locked", 7: "after"}


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "store")
    s.put_schema(SHOP, T.to_json())
    yield s
    s.close()


def names_at(store: Store, ts: int) -> dict[int, str]:
    return {h: r["name"] for h, r in rows_by_id(store.scan_table("shop.items", ts, hidden=["_tidb_rowid"])).items()}


def nothing_applied(store: Store) -> None:
    store.flush()
    with store.snapshot() as view:
        assert view.locks() == []
        assert view.position() is None
        assert [r.applied_index for r in view.regions()] in ([], [0])
    assert store.buffered_rows == 0


def test_columnar_committed_rows_then_an_unknown_table_apply_nothing(store: Store) -> None:
    other = items_table(table_id=200, name="others")
    batch = [columnar(event(1, 5, [prewrite(key(T, 1), row(T, id=1, name="p"), 100)])),
             columnar(event(1, 6, [committed(key(T, 2), row(T, id=2, name="c"), 90),
                                   committed(key(T, 3), None, 91)])),
             columnar(event(1, 7, [committed(key(other, 1), row(other, id=1, name="o"), 95)]))]
    with pytest.raises(UnknownTableError) as exc:
        store.write(batch, (0, 77))
    assert exc.value.table_id == 200 and exc.value.region_id == 1
    nothing_applied(store)
    store.put_schema(SHOP, other.to_json())
    result = store.write(batch, (0, 77))
    assert (result.applied, result.prewrites, result.rows) == (3, 1, 3)  # a delete mark is a row
    store.flush()
    assert names_at(store, 100) == {2: "c"}


def test_a_malformed_batch_after_good_events_applies_nothing(store: Store) -> None:
    good = columnar(event(1, 5, [committed(key(T, 1), row(T, id=1, name="a"), 90)]))
    bad = columnar(event(1, 6, [prewrite(key(T, 2), row(T, id=2, name="b"), 100)]))
    bad.entries.batch.start_ts = b"\0" * 7
    with pytest.raises(MalformedRowBatchError, match=r"region 1 index 6.*start_ts holds 7 bytes"):
        store.write([good, bad], (0, 9))
    nothing_applied(store)
    assert store.write([good], (0, 9)).rows == 1


def test_a_columnar_commit_without_prewrite_applies_nothing(store: Store) -> None:
    batch = [columnar(event(1, 5, [prewrite(key(T, 1), row(T, id=1, name="a"), 100),
                                   committed(key(T, 2), row(T, id=2, name="b"), 95)])),
             columnar(event(1, 6, [commit(key(T, 1), 100, 110), commit(key(T, 9), 101, 111)]))]
    with pytest.raises(CommitWithoutPrewriteError) as exc:
        store.write(batch)
    assert exc.value.start_ts == 101 and "handle 9" in str(exc.value)
    nothing_applied(store)


def test_one_columnar_event_is_applied_in_row_order(store: Store) -> None:
    """Prewrite, commit, rollback and a 1PC row of the same keys inside one event."""
    k1, k2 = key(T, 1), key(T, 2)
    ev = columnar(event(1, 5, [
        prewrite(k1, row(T, id=1, name="first"), 100), commit(k1, 100, 110),
        prewrite(k1, None, 120), commit(k1, 120, 130),                     # then deleted
        prewrite(k2, row(T, id=2, name="never"), 140), rollback(k2, 140),
        committed(k2, row(T, id=2, name="one-pc"), 150),
        prewrite(k2, row(T, id=2, name="locked"), 160, op=binlog_pb2.LOCK),  # a lock changes no data
        committed(k1, None, 170, op=binlog_pb2.LOCK),
    ]))
    result = store.write([ev])
    assert (result.prewrites, result.commits, result.rollbacks, result.rows) == (4, 4, 1, 3)
    store.flush()
    assert names_at(store, 115) == {1: "first"}
    assert names_at(store, 135) == {}
    assert names_at(store, 200) == {2: "one-pc"}
    with store.snapshot() as view:
        assert [(lk.key, lk.start_ts, lk.op) for lk in view.locks()] == [(k2, 160, binlog_pb2.LOCK)]
