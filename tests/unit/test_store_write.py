"""The store's write path: Percolator matching, atomic batches, idempotent replay, flush."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyspark_theflash.codec.keys import encode_index_key
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.store import (
    CommitWithoutPrewriteError,
    ReadOnlyStoreError,
    Store,
    StoreOptions,
    UnknownTableError,
)
from store_events import (
    DB,
    commit,
    committed,
    event,
    items_table,
    key,
    prewrite,
    resolved_ts,
    rollback,
    row,
    rows_by_id,
)

T = items_table()


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "store")
    s.put_schema(DB, T.to_json())
    yield s
    s.close()


def names_at(store: Store, ts: int) -> dict[int, str]:
    return {h: r["name"] for h, r in rows_by_id(store.scan_table("shop.items", ts, hidden=["_tidb_rowid"])).items()}


def test_prewrite_then_commit_is_visible_from_commit_ts_after_flush(store: Store) -> None:
    k = key(T, 1)
    store.write([event(1, 5, [prewrite(k, row(T, id=1, name="a"), start_ts=100)])], (0, 1))
    store.write([event(1, 6, [commit(k, 100, 110)])], (0, 2))
    assert names_at(store, 200) == {}  # not flushed yet: readers see only flushed state
    store.flush()
    assert names_at(store, 109) == {}
    assert names_at(store, 110) == {1: "a"}
    assert names_at(store, 10**12) == {1: "a"}


def test_delete_commit_hides_the_row_from_its_commit_ts(store: Store) -> None:
    k = key(T, 3)
    store.write([event(1, 5, [committed(k, row(T, id=3, name="x"), 100)]),
                 event(1, 6, [prewrite(k, None, 120)]),
                 event(1, 7, [commit(k, 120, 130)])])
    store.flush()
    assert names_at(store, 129) == {3: "x"}
    assert names_at(store, 130) == {}


def test_lock_op_commits_no_data(store: Store) -> None:
    k = key(T, 4)
    from store_events import LOCK

    store.write([event(1, 5, [committed(k, row(T, id=4, name="keep"), 100)]),
                 event(1, 6, [prewrite(k, None, 120, op=LOCK)]),
                 event(1, 7, [commit(k, 120, 130)])])
    store.write([event(1, 8, [committed(k, None, 140, op=LOCK)]),  # a 1PC lock alone: a column-wise batch
                 event(1, 9, [committed(key(T, 5), row(T, id=5, name="five"), 150), committed(k, None, 150, op=LOCK)])])
    store.flush()
    assert names_at(store, 200) == {4: "keep", 5: "five"}
    with store.snapshot() as view:
        assert view.locks() == []


def test_rollback_drops_the_prewrite_and_a_later_commit_is_an_error(store: Store) -> None:
    k = key(T, 7)
    store.write([event(1, 5, [prewrite(k, row(T, id=7, name="r"), 100)]), event(1, 6, [rollback(k, 100)])])
    store.flush()
    with store.snapshot() as view:
        assert view.locks() == []
    with pytest.raises(CommitWithoutPrewriteError) as exc:
        store.write([event(1, 7, [commit(k, 100, 110)])])
    msg = str(exc.value)
    assert "region 1" in msg and "table 100 handle 7" in msg and "start_ts 100" in msg and "index 7" in msg
    assert names_at(store, 200) == {}


def test_commit_matches_prewrite_by_key_and_start_ts(store: Store) -> None:
    k = key(T, 8)
    store.write([event(1, 5, [prewrite(k, row(T, id=8, name="first"), 100)])])
    with pytest.raises(CommitWithoutPrewriteError):
        store.write([event(1, 6, [commit(k, 99, 110)])])  # wrong start_ts
    store.write([event(1, 6, [commit(k, 100, 110)])])
    store.flush()
    assert names_at(store, 110) == {8: "first"}


def test_a_batch_that_fails_applies_nothing_and_can_be_retried(store: Store) -> None:
    other = items_table(table_id=200, name="others")
    k1, k2 = key(T, 1), key(other, 1)
    batch = [event(1, 5, [prewrite(k1, row(T, id=1, name="p"), 100)]),
             event(1, 6, [committed(key(T, 2), row(T, id=2, name="c"), 90)]),
             event(1, 7, [committed(k2, row(other, id=1, name="o"), 95)])]
    with pytest.raises(UnknownTableError) as exc:
        store.write(batch, (0, 77))
    assert exc.value.table_id == 200 and exc.value.region_id == 1 and "put_schema" in str(exc.value)
    store.flush()
    with store.snapshot() as view:
        assert view.locks() == []                       # the prewrite was undone
        assert view.position() is None                  # the position did not move
        assert [r.applied_index for r in view.regions()] in ([], [0])
    store.put_schema(DB, other.to_json())
    result = store.write(batch, (0, 77))
    assert (result.applied, result.skipped, result.rows) == (3, 0, 2)
    store.flush()
    assert names_at(store, 100) == {2: "c"}
    assert rows_by_id(store.scan_table(200, 100))[1]["name"] == "o"
    with store.snapshot() as view:
        assert [(lk.key, lk.start_ts) for lk in view.locks()] == [(k1, 100)]
        assert view.position() == (0, 77)


def test_events_at_or_below_the_applied_index_are_skipped(store: Store) -> None:
    k = key(T, 1)
    batch = [event(1, 5, [committed(k, row(T, id=1, name="once"), 100)]),
             event(1, 6, [prewrite(key(T, 2), row(T, id=2, name="two"), 110)]),
             event(1, 7, [commit(key(T, 2), 110, 120)])]
    store.write(batch)
    store.flush()
    again = store.write(batch)  # a replay after a crash re-delivers the same events
    assert (again.applied, again.skipped) == (0, 3)
    store.flush()
    t = store.scan_table("shop.items", 200, hidden=["_tidb_rowid", "_tidb_commit_ts"])
    assert sorted((r["_tidb_rowid"], r["_tidb_commit_ts"]) for r in t.to_pylist()) == [(1, 100), (2, 120)]
    with store.snapshot() as view:
        assert sum(p.rows for p in view.parts(T.id)) == 2  # no version stored twice


def test_a_reader_never_sees_the_lock_gone_before_the_data(tmp_path: Path) -> None:
    writer = Store.open(tmp_path / "s")
    writer.put_schema(DB, T.to_json())
    reader = Store.open(tmp_path / "s", readonly=True)
    k = key(T, 5)
    writer.write([event(1, 5, [prewrite(k, row(T, id=5, name="v"), 100)])])
    writer.flush()
    writer.write([event(1, 6, [commit(k, 100, 110)])])
    with reader.snapshot() as view:  # committed in memory only: the lock is still what readers see
        assert [lk.start_ts for lk in view.locks(T.id, 5, 6)] == [100]
    assert names_at(reader, 200) == {}
    writer.flush()
    with reader.snapshot() as view:
        assert view.locks(T.id) == []
    assert names_at(reader, 200) == {5: "v"}
    reader.close()
    writer.close()


def test_locks_filter_by_table_and_handle_range(store: Store) -> None:
    store.write([event(1, 5, [prewrite(key(T, h), row(T, id=h, name="x"), 100 + h) for h in (1, 5, 9)])])
    store.flush()
    with store.snapshot() as view:
        assert [lk.start_ts for lk in view.locks(T.id, 2, 9)] == [105]
        assert len(view.locks(T.id)) == 3 and view.locks(999) == []


def test_rows_of_ignored_tables_and_index_keys_are_dropped(store: Store) -> None:
    store.ignore_table(300, "other", "skipped")
    idx_key = encode_index_key(T.id, 1, [])
    result = store.write([event(1, 5, [committed(key(300, 1), b"\x80\x00\x00\x00\x00\x00", 100),
                                       committed(idx_key, b"0", 100),
                                       committed(key(T, 1), row(T, id=1, name="kept"), 100)])])
    assert result.rows == 1
    store.flush()
    assert names_at(store, 100) == {1: "kept"}


def manifest_version(store: Store) -> int:
    with store.snapshot() as view:
        return int(view.version)


def test_a_batch_carrying_a_ddl_commits_once_with_its_ddl_inside_the_flushs_edit(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "s")
    try:
        s.write([event(1, 1, [])], (0, 1))
        s.flush()
        before = manifest_version(s)
        new = items_table(200, name="fresh")
        ddl = binlog_pb2.Event(ddl=binlog_pb2.Ddl(
            type=binlog_pb2.Ddl.CREATE_TABLE, commit_ts=90, schema_version=7, db=DB, table_id=new.id,
            table_info=json.dumps(new.to_json()).encode()))
        result = s.write([ddl, event(1, 2, [committed(key(new, 1), row(new, id=1, name="a"), 100)])], (0, 2))
        assert result.rows == 1 and s.replicates(new.id)  # the DDL is known to the batch's rows at once
        assert manifest_version(s) == before  # and not committed ahead of them
        with s.snapshot() as view:
            assert new.id not in view.histories()
        assert s.flush().version == before + 1  # one edit: the table, its lifetime, its rows, the position
        with s.snapshot() as view:
            assert view.histories()[new.id].created_ts == 90 and view.position() == (0, 2)
        assert {h: r["name"] for h, r in rows_by_id(s.scan_table("shop.fresh", 100, hidden=["_tidb_rowid"])).items()} \
            == {1: "a"}
    finally:
        s.close()


def test_resolved_ts_only_moves_forward_whatever_its_index(store: Store) -> None:
    store.write([event(1, 5, []), resolved_ts(1, 5, 500), resolved_ts(1, 3, 400), resolved_ts(1, 9, 450)])
    store.flush()
    with store.snapshot() as view:
        (r,) = view.regions()
        assert (r.resolved_ts, r.applied_index) == (500, 5)


def test_write_flushes_by_itself_past_the_row_threshold(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "s", options=StoreOptions(flush_rows=3, flush_deadline_s=3600))
    s.put_schema(DB, T.to_json())
    r1 = s.write([event(1, 5, [committed(key(T, h), row(T, id=h, name="a"), 100) for h in (1, 2)])], (0, 5))
    assert r1.flushed is None and not s.flush_due()
    r2 = s.write([event(1, 6, [committed(key(T, 3), row(T, id=3, name="a"), 100)])], (0, 6))
    assert r2.flushed is not None and r2.flushed.rows == 3 and r2.flushed.position == (0, 6)
    assert len(names_at(s, 100)) == 3
    s.close()


def test_flush_is_due_after_the_deadline(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "s", options=StoreOptions(flush_deadline_s=0.0))
    s.put_schema(DB, T.to_json())
    assert not s.flush_due()  # nothing applied yet
    s.write([event(1, 5, [committed(key(T, 1), row(T, id=1, name="a"), 100)])])
    assert s.flush_due()
    s.flush()
    assert not s.flush_due()
    s.close()


def test_reopen_restores_open_locks_regions_and_position(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "s")
    s.put_schema(DB, T.to_json())
    k = key(T, 1)
    s.write([event(1, 5, [prewrite(k, row(T, id=1, name="later"), 100)])], (3, 4096))
    s.flush()
    s.close()
    s = Store.open(tmp_path / "s")
    with s.snapshot() as view:
        assert view.position() == (3, 4096)
    assert s.write([event(1, 5, [prewrite(k, b"dup", 100)])]).skipped == 1
    s.write([event(1, 6, [commit(k, 100, 110)])])
    s.flush()
    assert names_at(s, 110) == {1: "later"}
    s.close()


def test_big_uncommitted_transaction_spills_and_commits_intact(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "s", options=StoreOptions(prewrite_memory_bytes=4096))
    s.put_schema(DB, T.to_json())
    n = 300
    rows = [prewrite(key(T, h), row(T, id=h, name="v" * 50 + str(h)), 1000, primary=key(T, 0)) for h in range(n)]
    s.write([event(1, 5, rows)])
    st = s.status()
    assert st["open_prewrites"] == n and st["prewrite_memory_bytes"] <= 4096
    s.flush()  # the open locks, values included, are persisted from the spill file
    s.close()
    s = Store.open(tmp_path / "s", options=StoreOptions(prewrite_memory_bytes=4096))
    s.write([event(1, 6, [commit(key(T, h), 1000, 1010) for h in range(n)])])
    s.flush()
    got = names_at(s, 1010)
    assert len(got) == n and got[123] == "v" * 50 + "123"
    assert s.status()["open_prewrites"] == 0
    s.close()


def test_a_readonly_store_refuses_writes(tmp_path: Path) -> None:
    Store.open(tmp_path / "s").close()
    r = Store.open(tmp_path / "s", readonly=True)
    with pytest.raises(ReadOnlyStoreError):
        r.write([])
    r.close()


@pytest.mark.parametrize("newest", [470653517890060290, (1 << 63) + 5])
def test_parquet_parts_store_the_commit_ts_signed_when_it_fits_and_read_back_unsigned_exactly(
        tmp_path: Path, newest: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pyspark_theflash.store.txn_merge_tree import HIDDEN_FIELDS, conform_hidden, write_part

    t = pa.table({"_tidb_rowid": pa.array([1, 2, 3], pa.int64()),
                  "_tidb_commit_ts": pa.array([newest - 7, newest - 1, newest], pa.uint64()),
                  "_tidb_delmark": [False, True, False]}, schema=pa.schema(HIDDEN_FIELDS))
    written = write_part(tmp_path, "tables/1/p1/stable-x.parquet", t, [], 16, table_id=1, partition=(1, None, None),
                         kind="stable", schema_version=1)
    stored = pq.read_table(tmp_path / written.path)
    fits = newest < 1 << 63
    assert stored.schema.field("_tidb_commit_ts").type == (pa.int64() if fits else pa.uint64())
    assert conform_hidden(stored).equals(t)
    assert (written.min_commit_ts, written.max_commit_ts) == (newest - 7, newest)


def test_parquet_parts_dictionary_encode_only_the_string_columns_with_repeated_values(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pyspark_theflash.store.txn_merge_tree import HIDDEN_FIELDS, conform_hidden, write_part

    n = 5000
    t = pa.table({"name": [f"name-{i:08d}" for i in range(n)],            # every value distinct
                  "color": [("red", "green", "blue")[i % 3] for i in range(n)],
                  "note": pa.array([None] * n, pa.string()),
                  "_tidb_rowid": pa.array(range(n), pa.int64()),
                  "_tidb_commit_ts": pa.array([100] * n, pa.uint64()),
                  "_tidb_delmark": [False] * n},
                 schema=pa.schema([pa.field("name", pa.string()), pa.field("color", pa.string()),
                                   pa.field("note", pa.string()), *HIDDEN_FIELDS]))
    written = write_part(tmp_path, "tables/1/p1/stable-x.parquet", t, [1, 2, 3], 1024, table_id=1,
                         partition=(1, None, None), kind="stable", schema_version=1)
    f = pq.ParquetFile(tmp_path / written.path)
    encodings = {f.metadata.row_group(0).column(i).path_in_schema: f.metadata.row_group(0).column(i).encodings
                 for i in range(f.metadata.num_columns)}
    # the columns are named by their ids (c1: name, c2: color, c3: note)
    assert "RLE_DICTIONARY" not in encodings["c1"]
    assert "RLE_DICTIONARY" in encodings["c2"]
    assert "RLE_DICTIONARY" in encodings["c3"]
    assert conform_hidden(f.read()).rename_columns(t.column_names).equals(t)


def test_a_parquet_part_names_its_columns_by_column_id_with_field_ids_and_an_ipc_delta_by_name(
        tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pyspark_theflash.store.txn_merge_tree import HIDDEN_FIELDS, HIDDEN_NAMES, names_columns_by_id, write_part

    t = pa.table({"name": ["a", "b"], "price": pa.array([1, 2], pa.int64()),
                  "_tidb_rowid": pa.array([1, 2], pa.int64()), "_tidb_commit_ts": pa.array([100, 100], pa.uint64()),
                  "_tidb_delmark": [False, False]},
                 schema=pa.schema([pa.field("name", pa.string()), pa.field("price", pa.int64()), *HIDDEN_FIELDS]))
    stable = write_part(tmp_path, "tables/1/p1/stable-x.parquet", t, [7, 3], 1024, table_id=1,
                        partition=(1, None, None), kind="stable", schema_version=1)
    assert stable.columns == ((7, "c7"), (3, "c3")) and names_columns_by_id(stable)
    schema = pq.read_schema(tmp_path / stable.path)
    assert schema.names == ["c7", "c3", *HIDDEN_NAMES]
    assert [(schema.field(n).metadata or {}).get(b"PARQUET:field_id") for n in schema.names] == \
        [b"7", b"3", None, None, None]
    assert set(dict(stable.stats)) == {7, 3} and dict(stable.stats)[3].max == 2
    delta = write_part(tmp_path, "tables/1/p1/delta-x.arrow", t, [7, 3], 1024, table_id=1,
                       partition=(1, None, None), kind="delta", schema_version=1)
    assert delta.columns == ((7, "name"), (3, "price")) and not names_columns_by_id(delta)
    assert pa.ipc.open_file(str(tmp_path / delta.path)).schema.names == ["name", "price", *HIDDEN_NAMES]
