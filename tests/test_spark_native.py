"""Native reads: clean stable parts read by Spark's own Parquet reader, the rest by the Python
data source, unioned (spark/native.py, scan/native.py). Every test compares the native read
with the store's own MVCC read or with the Python source alone (``native_read=false``)."""
from __future__ import annotations

import datetime as dt
import decimal
import gc
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from chispa import assert_df_equality

from flash_rig import FlashRig, wait_for
from pyspark_theflash.scan.native import split_native
from pyspark_theflash.store.deletion_vector import read_superseding
from pyspark_theflash.scan.partitions import RangeScan
from pyspark_theflash.schema import builder, spark_schema
from pyspark_theflash.schema.table_info import TableInfo
from pyspark_theflash.spark.native import handle_literal, parquet_frame
from pyspark_theflash.store import Store, StoreOptions
from pyspark_theflash.store.read import read_parts
from pyspark_theflash.upstream.tidb import make_column, record_key
from store_events import (
    DB,
    boundary,
    committed,
    common_handle,
    common_key,
    event,
    items_table,
    key,
    region,
    removed_event,
    row,
    split_event,
    table_json,
)

pytestmark = pytest.mark.spark

NATIVE_COLUMNS = [
    ("id", "BIGINT"), ("i8", "TINYINT"), ("i16", "SMALLINT"), ("i32", "INT"), ("f32", "FLOAT"),
    ("f64", "DOUBLE"), ("dec", "DECIMAL(12,2)"), ("dec38", "DECIMAL(38,10)"), ("d", "DATE"),
    ("dtm", "DATETIME(6)"), ("ts", "TIMESTAMP(6)"), ("vc", "VARCHAR(64)"), ("vb", "VARBINARY(16)"),
]


def native_row(i: int) -> dict[str, Any]:
    if i % 10 == 9:
        return {"id": i}  # every other column NULL
    return {"id": i, "i8": i % 128 - 64, "i16": -i, "i32": i * 1000, "f32": i / 4, "f64": i / 7,
            "dec": decimal.Decimal(i) / 100, "dec38": decimal.Decimal(f"{i}.0123456789"),
            "d": dt.date(2000, 1, 1) + dt.timedelta(days=i), "dtm": dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i),
            "ts": dt.datetime(2030, 6, 1, 12, 0, 0, i), "vc": f"név-{i:04d}", "vb": bytes([i % 256, 0, 255])}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("native"))
    r.start_writer(interval_s=0.05)
    yield r
    r.close()


def compact(rig: FlashRig, **options: Any) -> None:
    """What the writer's background compaction does, with the writer paused (one writer)."""
    rig.stop_writer()
    try:
        with Store.open(rig.store, options=StoreOptions(**options)) as store:
            store.compact(force=True)
    finally:
        rig.start_writer(interval_s=0.05)


def read(spark: Any, rig: FlashRig, **options: Any) -> Any:
    return spark.read.format("theflash").options(**rig.options(**options))


def split_of(df: Any) -> Any:
    native = getattr(df, "_theflash_native_read", None)
    return None if native is None else native.split


def assert_same(native: Any, python: Any) -> None:
    assert_df_equality(native, python, ignore_row_order=True, ignore_nullable=True)


def test_a_compacted_table_is_read_by_sparks_parquet_reader_with_the_same_rows(spark: Any, rig: FlashRig) -> None:
    rig.cluster.create_table("nat.every", [make_column(n, sql, not_null=(n == "id")) for n, sql in NATIVE_COLUMNS],
                             primary_key=["id"])
    with rig.cluster.txn() as t:
        for i in range(200):
            t.insert("nat.every", native_row(i))
    rig.wait_replicated("nat.every")
    ts = rig.cluster.get_ts()
    read(spark, rig, snapshot_ts=ts).load("nat.every").count()  # caught up to ts
    compact(rig)

    df = read(spark, rig, snapshot_ts=ts).load("nat.every")
    split = split_of(df)
    assert split is not None and split.pieces and split.rest == []
    plan_text = df._jdf.queryExecution().executedPlan().toString()
    assert "FileScan parquet" in plan_text and "PythonDataSource" not in plan_text
    python = read(spark, rig, snapshot_ts=ts, native_read="false").load("nat.every")
    assert split_of(python) is None
    assert df.schema.names == python.schema.names
    assert [f.dataType for f in df.schema.fields] == [f.dataType for f in python.schema.fields]
    assert_same(df, python)
    assert df.count() == 200 and df.filter("vc IS NULL").count() == 20
    # column pruning reaches the files: a two-column query reads two columns (plus none hidden)
    pruned = df.select("id", "vc")._jdf.queryExecution().executedPlan().toString()
    assert "ReadSchema: struct<id:bigint,vc:string>" in pruned
    # a user schema subset and the hidden columns, natively too
    subset = read(spark, rig, snapshot_ts=ts, hidden="_tidb_rowid,_tidb_commit_ts").schema(
        "vc string, id long, _tidb_rowid long, _tidb_commit_ts long").load("nat.every")
    subset_python = read(spark, rig, snapshot_ts=ts, native_read="false").schema(
        "vc string, id long, _tidb_rowid long, _tidb_commit_ts long").load("nat.every")
    assert split_of(subset) is not None
    assert_same(subset, subset_python)
    assert {r.id for r in subset.collect() if r._tidb_rowid == r.id} == set(range(200))
    # filters give Spark's results
    assert_same(df.filter("id BETWEEN 50 AND 59 AND i32 > 52000"), python.filter("id BETWEEN 50 AND 59 AND i32 > 52000"))


WORDS = ("almond antique aquamarine azure beige bisque black blanched blue blush brown burlywood burnished "
         "chartreuse chiffon chocolate coral cornflower cornsilk cream cyan dark deep dim dodger drab firebrick "
         "floral forest frosted gainsboro ghost goldenrod green honeydew hot indian ivory khaki lace lavender "
         "lawn lemon light lime linen magenta maroon medium metallic midnight mint misty moccasin navajo navy "
         "olive orange orchid pale papaya peach peru pink plum powder puff purple red rose rosy royal saddle "
         "salmon sandy seashell sienna sky slate smoke snow spring steel tan thistle tomato turquoise violet "
         "wheat white yellow").split()


def part_names(rig: FlashRig, table: str) -> list[str]:
    with Store.open(rig.store, readonly=True) as store, store.snapshot() as view:
        info = view.table(table)
        return [str(Path(rig.store) / p.path) for p in view.parts(int(info.id))]


def test_varied_strings_in_compacted_parts_are_read_and_dictionary_filtered_by_spark(spark: Any, rig: FlashRig) -> None:
    """TPC-H part names: 20k five-word names make one large string dictionary page per column
    chunk, which Spark's Parquet reader decompresses to dictionary-filter a pushed LIKE. The
    parts are written with a codec it reads (LZ4_RAW made it throw), and a part written
    otherwise by an older store is left to the Python reader."""
    import random

    import pyarrow.parquet as pq

    rnd = random.Random(11)
    names = [" ".join(rnd.choice(WORDS) for _ in range(5)) for _ in range(20_000)]
    rig.cluster.create_table("nat.part", [make_column("p_partkey", "BIGINT", not_null=True),
                                          make_column("p_name", "VARCHAR(55)")], primary_key=["p_partkey"])
    for start in range(0, len(names), 5_000):
        with rig.cluster.txn() as t:
            for i in range(start, start + 5_000):
                t.insert("nat.part", {"p_partkey": i, "p_name": names[i]})
    rig.wait_replicated("nat.part")
    ts = rig.cluster.get_ts()
    read(spark, rig, snapshot_ts=ts).load("nat.part").count()  # caught up to ts
    compact(rig)

    files = part_names(rig, "nat.part")
    codecs = {pq.read_metadata(f).row_group(0).column(i).compression for f in files for i in range(3)}
    assert codecs == {"ZSTD"}
    green = sorted(i for i, n in enumerate(names) if "green" in n)
    df = read(spark, rig, snapshot_ts=ts).load("nat.part")
    assert split_of(df) is not None and split_of(df).rest == []
    got = sorted(r.p_partkey for r in df.filter("p_name LIKE '%green%'").select("p_partkey").collect())
    assert got == green and len(green) > 1000
    assert df.filter("p_name = 'green green green green green'").count() == names.count("green green green green green")

    # The same part as an older store wrote it (LZ4_RAW): never handed to Spark's reader.
    for f in files:
        pq.write_table(pq.read_table(f), f, compression="lz4", use_dictionary=["p_name"])
    old = read(spark, rig, snapshot_ts=ts).load("nat.part")
    assert split_of(old) is None or split_of(old).pieces == []
    got = sorted(r.p_partkey for r in old.filter("p_name LIKE '%green%'").select("p_partkey").collect())
    assert got == green


def test_rows_committed_after_ts_in_a_clean_part_stay_invisible(spark: Any, rig: FlashRig) -> None:
    rig.cluster.create_table("nat.later", [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")],
                             primary_key=["id"])
    with rig.cluster.txn() as t:
        for i in range(50):
            t.insert("nat.later", {"id": i, "v": i})
    rig.wait_replicated("nat.later")
    before = rig.cluster.get_ts()
    with rig.cluster.txn() as t:  # new handles only: each keeps one version
        for i in range(50, 80):
            t.insert("nat.later", {"id": i, "v": i})
    after = rig.cluster.get_ts()
    read(spark, rig, snapshot_ts=after).load("nat.later").count()
    compact(rig)
    old = read(spark, rig, snapshot_ts=before).load("nat.later")
    assert split_of(old) is not None and split_of(old).pieces and split_of(old).pieces[0].newer_than_ts
    assert sorted(r.id for r in old.collect()) == list(range(50))
    assert sorted(r.id for r in read(spark, rig, snapshot_ts=after).load("nat.later").collect()) == list(range(80))


def test_parts_store_commit_ts_signed_and_parts_written_unsigned_read_the_same(spark: Any, rig: FlashRig) -> None:
    """Stable parts store ``_tidb_commit_ts`` as signed INT64, delta-encoded with the handle, so
    Spark reads a BIGINT; parts an older store wrote (unsigned, read as DECIMAL(20,0)) read the
    same rows, versions newer than ts and older ones in the same file included."""
    import pyarrow.parquet as pq

    from pyspark_theflash.store.txn_merge_tree import conform_hidden

    rig.cluster.create_table("nat.versions", [make_column("id", "BIGINT", not_null=True), make_column("v", "BIGINT")],
                             primary_key=["id"])
    with rig.cluster.txn() as t:
        for i in range(600):
            t.insert("nat.versions", {"id": i, "v": i})
    with rig.cluster.txn() as t:
        for i in range(0, 600, 20):
            t.update("nat.versions", {"id": i, "v": -i})
    middle = rig.cluster.get_ts()
    with rig.cluster.txn() as t:
        for i in range(0, 600, 50):
            t.update("nat.versions", {"id": i, "v": 1000 + i})
        t.delete("nat.versions", 7)
    latest = rig.cluster.get_ts()
    read(spark, rig, snapshot_ts=latest).load("nat.versions").count()  # caught up
    compact(rig)  # no GC: every version stays, several per handle in one stable part
    expected_middle = {i: -i if i % 20 == 0 else i for i in range(600)}
    expected_latest = {i: 1000 + i if i % 50 == 0 else -i if i % 20 == 0 else i for i in range(600) if i != 7}

    files = part_names(rig, "nat.versions")
    assert files and all(f.endswith(".parquet") for f in files)
    for f in files:
        meta = pq.read_metadata(f)
        assert pq.read_schema(f).field("_tidb_commit_ts").type == "int64"
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        for hidden in ("_tidb_rowid", "_tidb_commit_ts"):
            assert "DELTA_BINARY_PACKED" in meta.row_group(0).column(names.index(hidden)).encodings

    def check(signed: bool) -> None:
        for ts, expected in ((middle, expected_middle), (latest, expected_latest)):
            df = read(spark, rig, snapshot_ts=ts).load("nat.versions")
            split = split_of(df)
            assert split is not None and split.pieces and split.rest == [], split
            assert {p.signed_commit_ts for p in split.pieces} == {signed}
            # several versions per handle: dropped by (handle, commit ts), not by handle alone
            assert all(p.dropped_handles is None for p in split.pieces)
            assert any(p.deletion_vector is not None for p in split.pieces)
            assert {r.id: r.v for r in df.collect()} == expected
            assert_same(df, read(spark, rig, snapshot_ts=ts, native_read="false").load("nat.versions"))
            assert ("_tidb_commit_ts:decimal(20,0)" in executed_plan(df)) == (not signed)

    check(signed=True)
    # The same parts as a store before signed commit ts wrote them.
    for f in files:
        pq.write_table(conform_hidden(pq.read_table(f)), f, compression="zstd", use_dictionary=False)
        assert pq.read_schema(f).field("_tidb_commit_ts").type == "uint64"
    check(signed=False)


@pytest.mark.parametrize("delta_half", ["driver", "python"])
def test_partitions_with_deltas_are_read_natively_minus_a_deletion_vector_and_the_deltas_beside(
        spark: Any, rig: FlashRig, delta_half: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The delta halves are read on the driver into a local relation when small, else by the
    Python source's tasks (forced here by a zero row limit)."""
    import pyspark_theflash.spark.native as spark_native

    if delta_half == "python":
        monkeypatch.setattr(spark_native, "INLINE_DELTA_ROWS", 0)
    table_name = f"nat.mixed_{delta_half}"
    rig.cluster.create_table(table_name, [make_column("id", "BIGINT", not_null=True), make_column("v", "BIGINT"),
                                           make_column("s", "VARCHAR(16)")], primary_key=["id"])
    table = rig.cluster.table_info("nat", table_name.split(".")[1])
    rig.cluster.split_at(record_key(table, 300))
    with rig.cluster.txn() as t:
        for i in range(600):
            t.insert(table_name, {"id": i, "v": i, "s": f"s{i}"})
    rig.wait_replicated(table_name)
    read(spark, rig).load(table_name).count()
    compact(rig, partition_max_rows=150)  # several TxnMergeTree partitions
    with rig.cluster.txn() as t:  # deltas in the partition(s) of handles 10..29
        for i in range(10, 30):
            t.update(table_name, {"id": i, "v": -i})
        t.delete(table_name, 5)
    ts = rig.cluster.get_ts()
    df = read(spark, rig, snapshot_ts=ts).load(table_name)
    split = split_of(df)
    # every partition is read by Spark's Parquet reader; the ones with deltas minus the handles
    # the deltas supersede, which (and only which) the Python source reads from the deltas
    assert split is not None and split.pieces and split.rest == [] and split.overlays, split
    vectors = sorted(h for p in split.pieces if p.deletion_vector is not None
                     for h in p.deletion_vector.column("_tidb_rowid").to_pylist())
    assert vectors == [5] + list(range(10, 30))  # the stable versions the deltas supersede
    plan_text = executed_plan(df)
    assert "FileScan parquet" in plan_text and "LeftAnti" in plan_text
    if delta_half == "python":
        assert "BatchScan theflash" in plan_text
    else:  # the superseding rows themselves, read when the DataFrame was planned
        assert "BatchScan theflash" not in plan_text and "LocalTableScan [id" in plan_text
    python = read(spark, rig, snapshot_ts=ts, native_read="false").load(table_name)
    assert_same(df, python)
    got = {r.id: r.v for r in df.collect()}
    assert len(got) == 599 and 5 not in got and got[10] == -10 and got[29] == -29 and got[599] == 599
    assert_same(df.filter("v < 0 OR id > 590"), python.filter("v < 0 OR id > 590"))
    assert df.filter("v < 0").count() == 20
    # a compaction between planning and running: the delta half was read at planning, or the
    # Python half reads the deltas its driver pinned (the lease keeps their files); the native
    # half the stable files, minus the vector
    planned = read(spark, rig, snapshot_ts=ts).load(table_name)
    assert split_of(planned).overlays
    compact(rig, partition_max_rows=150)
    assert {r.id: r.v for r in planned.collect()} == got


def test_the_lease_of_a_native_dataframe_keeps_its_files_through_compaction_and_gc(spark: Any, rig: FlashRig) -> None:
    rig.cluster.create_table("nat.leased", [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")],
                             primary_key=["id"])
    with rig.cluster.txn() as t:
        for i in range(40):
            t.insert("nat.leased", {"id": i, "v": 1})
    rig.wait_replicated("nat.leased")
    read(spark, rig).load("nat.leased").count()
    compact(rig)
    df = read(spark, rig).load("nat.leased")  # planned now: ts, lease, parts
    assert split_of(df) is not None
    with rig.cluster.txn() as t:
        for i in range(40):
            t.update("nat.leased", {"id": i, "v": 2})
    wait_for(lambda: read(spark, rig, native_read="false").load("nat.leased").filter("v = 2").count() == 40, 30,
             "the update to be replicated")
    rig.stop_writer()
    try:
        # No retention: only the lease keeps the files.
        with Store.open(rig.store, options=StoreOptions(removed_file_retention_s=0)) as store:
            store.gc(rig.cluster.get_ts())  # held back at the DataFrame's ts by its lease
            store.compact(force=True)
            store.delete_obsolete_files()
    finally:
        rig.start_writer(interval_s=0.05)
    assert all(Path(p.path).exists() for p in split_of(df).pieces)
    assert {r.v for r in df.collect()} == {1}  # the snapshot it was planned at
    assert {r.v for r in read(spark, rig).load("nat.leased").collect()} == {2}
    del df
    gc.collect()


def test_native_read_false_and_tables_with_types_parquet_cannot_give_back_use_the_python_source(
        spark: Any, rig: FlashRig) -> None:
    rig.cluster.create_table("nat.timed", [make_column("id", "BIGINT", not_null=True), make_column("tm", "TIME(3)"),
                                           make_column("u", "INT UNSIGNED")], primary_key=["id"])
    with rig.cluster.txn() as t:
        for i in range(10):
            t.insert("nat.timed", {"id": i, "tm": dt.timedelta(seconds=i), "u": 2**32 - 1 - i})
    rig.wait_replicated("nat.timed")
    read(spark, rig).load("nat.timed").count()
    compact(rig)
    df = read(spark, rig).load("nat.timed")
    assert split_of(df) is None  # TIME is a duration Parquet keeps as plain INT64
    assert sorted((r.id, r.tm, r.u) for r in df.collect()) == [
        (i, dt.timedelta(seconds=i), 2**32 - 1 - i) for i in range(10)]
    # but a query of its other columns is native
    assert split_of(read(spark, rig).schema("id long").load("nat.timed")) is not None
    with pytest.raises(Exception, match="native_read"):
        read(spark, rig, native_read="sometimes").load("nat.timed")


# --- the store level: tombstones and versions, against the store's own MVCC read ---------------

def overlay_rows(split: Any, parts: Any, info: Any, ts: int, needed: list[str], root: Path) -> list[tuple[Any, ...]]:
    """What the Python half reads of the split's deletion vectors: the deltas' newer rows."""
    by_id = {p.part_id: p for p in parts}
    return [tuple(r.values()) for pin in split.overlays
            for b in read_superseding(by_id[pin.stable_part], [by_id[d] for d in pin.delta_parts], info, ts,
                                      (pin.lo, pin.hi), needed, None, (), str(root), 1000)
            for r in b.to_pylist()]


def test_native_pieces_give_exactly_the_stores_rows_with_tombstones_and_newer_versions(
        spark: Any, tmp_path: Path) -> None:
    t = items_table()
    store = Store.open(tmp_path / "s")
    store.put_schema(DB, table_json(t))
    rows = [committed(key(t, h), row(t, id=h, name=f"n{h}", price=decimal.Decimal(h) / 4), 100 + h)
            for h in range(100)]
    store.write([event(1, 1, rows)])
    store.flush()
    store.compact(force=True)  # one stable part, versions 100..199
    # newer versions of a few handles (a delta part), then region 1 splits at handle 60 and
    # the replica loses region 2 = [60, +inf): a delete-range newer than both parts
    store.write([event(1, 2, [committed(key(t, h), row(t, id=h, name="late"), 500) for h in range(3)])])
    store.write([split_event(1, 3, [region(1, b"", boundary(t, 60)), region(2, boundary(t, 60), b"")]),
                 removed_event(2, 4)])
    store.flush()
    for ts in (150, 180, 400, 600):
        expected = sorted(tuple(r.values()) for r in store.scan_table(f"{DB}.items", ts).to_pylist())
        with store.snapshot() as view:
            info = view.table(f"{DB}.items")
            parts = tuple(view.parts(t.id))
        plan = SimpleNamespace(table_info=info, ts=ts, store=str(tmp_path / "s"), partitions=[
            SimpleNamespace(ranges=(RangeScan((1,), None, None, parts, 0),))])
        needed = [c.name for c in info.columns]
        split = split_native(plan, needed)
        from pyspark_theflash.schema import spark_schema

        target = spark_schema(info, needed, ())
        native = []
        if split.pieces:
            native = [tuple(r) for r in parquet_frame(spark, ts, split.pieces, target).collect()]
        from pyspark_theflash.store.read import read_parts

        rest = [tuple(r.values()) for lo, hi in split.rest
                for b in read_parts(list(parts), info, ts, (lo, hi), needed, None, (), str(tmp_path / "s"))
                for r in b.to_pylist()]
        rest += overlay_rows(split, parts, info, ts, needed, tmp_path / "s")
        assert sorted(native + rest, key=repr) == sorted(expected, key=repr), ts
    store.close()


# --- clustered (common-handle) tables: the handle is the key's memcomparable bytes -------------

# Key values on both sides of the bytes where signed and unsigned comparison part: int keys
# around 0 (memcomparable 0x7f.. / 0x80..), strings with bytes >= 0x80 and strings that are
# prefixes of each other.
CLUSTERED_KEYS: dict[str, Any] = {
    "int_int": SimpleNamespace(
        columns=[make_column("a", "BIGINT", not_null=True), make_column("b", "INT", not_null=True)],
        key_names=["a", "b"], key=lambda i: {"a": i // 3 - 60, "b": i % 3 - 1},
        splits=[(-30, 0), (0, 0), (0, 1), (45, -1)],
        updated=range(0, 160, 11), deleted=range(7, 160, 19),  # the low keys: some partitions only
        key_filters=["a BETWEEN -5 AND 5", "b = -1 AND a < 0", "a >= 0"]),
    "varchar_int": SimpleNamespace(
        columns=[make_column("name", "VARCHAR(16)", not_null=True), make_column("n", "INT", not_null=True)],
        key_names=["name", "n"], key=lambda i: {"name": ["", "a", "ab", "a\u00ff", "z", "\u00e9t\u00e9", "\u00e9", "\u65e5\u672c"][i % 8]
                       + ("" if i % 16 < 8 else "x"), "n": i - 180},
        splits=[("a", 0), ("ab", -1), ("z", -200), ("\u00e9", 0)],
        updated=range(1, 400, 16), deleted=range(2, 400, 48),  # names 'a' and 'ab': some partitions only
        key_filters=["name = 'ab' AND n > -100", "name >= '\u00e9'", "name LIKE 'a%' OR n = 0"]),
}


def clustered_row(kind: str, i: int) -> dict[str, Any]:
    return {**CLUSTERED_KEYS[kind].key(i), "v": None if i % 11 == 0 else f"v-{i % 37}",
            "amount": decimal.Decimal(i * 7 % 1000) / 100, "day": dt.date(2001, 1, 1) + dt.timedelta(days=i)}


def compact_into_partitions(rig: FlashRig, rounds: int, **options: Any) -> None:
    """Compaction rounds with small partitions: each round splits every oversized partition
    at its median handle."""
    rig.stop_writer()
    try:
        with Store.open(rig.store, options=StoreOptions(**options)) as store:
            for _ in range(rounds):
                store.compact(force=True)
    finally:
        rig.start_writer(interval_s=0.05)


def upstream_rows(rig: FlashRig, table: str, ts: int, columns: list[str]) -> list[tuple[Any, ...]]:
    return sorted((tuple(r[c] for c in columns) for r in rig.cluster.scan_table(table, ts)), key=repr)


def rows_of(df: Any) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in df.collect()), key=repr)


def same_types(native: Any, python: Any) -> bool:
    return [(f.name, f.dataType) for f in native.schema.fields] == [(f.name, f.dataType) for f in python.schema.fields]


def executed_plan(df: Any) -> str:
    return str(df._jdf.queryExecution().executedPlan().toString())


@pytest.mark.parametrize("kind", sorted(CLUSTERED_KEYS))
def test_a_clustered_composite_key_table_is_read_natively_like_python_and_upstream(
        spark: Any, rig: FlashRig, kind: str) -> None:
    spec = CLUSTERED_KEYS[kind]
    table = f"natc.{kind}"
    rig.cluster.create_table(table, spec.columns + [
        make_column("v", "VARCHAR(32)"), make_column("amount", "DECIMAL(10,2)"), make_column("day", "DATE"),
    ], primary_key=spec.key_names, clustered=True)
    info = rig.cluster.table_info(*table.split("."))
    assert info["is_common_handle"]
    for split in spec.splits:
        rig.cluster.split_at(record_key(info, split))
    with rig.cluster.txn() as t:
        for i in range(360):
            t.insert(table, clustered_row(kind, i))
    rig.wait_replicated(table)
    loaded = rig.cluster.get_ts()
    with rig.cluster.txn() as t:  # new keys, committed after `loaded`: in the clean parts too
        for i in range(360, 400):
            t.insert(table, clustered_row(kind, i))
    before_changes = rig.cluster.get_ts()
    assert read(spark, rig, snapshot_ts=before_changes, native_read="false").load(table).count() == 400
    compact_into_partitions(rig, rounds=3, partition_max_rows=80, row_group_rows=16)
    columns = read(spark, rig, native_read="false").load(table).columns

    for ts, expected_rows in ((loaded, 360), (before_changes, 400)):
        df = read(spark, rig, snapshot_ts=ts).load(table)
        split = split_of(df)
        assert split is not None and len(split.pieces) >= 4 and split.rest == [], split
        assert all(p.binary_handle and (p.lo is None or isinstance(p.lo, bytes)) for p in split.pieces)
        assert any(p.newer_than_ts for p in split.pieces) == (ts == loaded)
        plan_text = executed_plan(df)
        assert "FileScan parquet" in plan_text and "BatchScan theflash" not in plan_text, plan_text
        python = read(spark, rig, snapshot_ts=ts, native_read="false").load(table)
        assert same_types(df, python)
        expected = upstream_rows(rig, table, ts, columns)
        assert len(expected) == expected_rows
        assert rows_of(df) == expected == rows_of(python)

    # updates and deletes after compaction: delta parts in some partitions (read as their stable
    # part minus a deletion vector, the deltas' rows read on the driver), new versions and delete
    # marks of keys the clean parts still hold
    with rig.cluster.txn() as t:
        for i in spec.updated:
            t.update(table, {**spec.key(i), "v": f"updated-{i}"})
        for i in spec.deleted:
            t.delete(table, tuple(spec.key(i)[k] for k in spec.key_names))
    changed = rig.cluster.get_ts()
    df = read(spark, rig, snapshot_ts=changed).load(table)
    python = read(spark, rig, snapshot_ts=changed, native_read="false").load(table)
    split = split_of(df)
    assert split is not None and split.pieces and split.overlays, split
    assert any(p.deletion_vector is not None and p.binary_handle for p in split.pieces)
    assert all(isinstance(b, bytes) for rng in split.rest for b in rng if b is not None)
    plan_text = executed_plan(df)
    assert "FileScan parquet" in plan_text and "LeftAnti" in plan_text, plan_text
    assert ("BatchScan theflash" in plan_text) == bool(split.rest), plan_text
    expected = upstream_rows(rig, table, changed, columns)
    assert len(expected) == 400 - len(spec.deleted)
    assert sum(1 for r in expected if str(r[columns.index("v")]).startswith("updated-")) > 5

    # one DataFrame, several actions with different filters (on key and other columns): each
    # sees its own filter only
    assert df.count() == len(expected)
    for condition in spec.key_filters + ["v LIKE 'updated-%'", "amount > 5 AND day < DATE'2001-06-01'"]:
        got = rows_of(df.filter(condition))
        assert got and got == rows_of(python.filter(condition)), condition
    assert df.count() == len(expected)
    assert rows_of(df) == expected == rows_of(python)
    # the handle itself, natively: the same bytes the Python source gives
    hidden = read(spark, rig, snapshot_ts=changed, hidden="_tidb_rowid").load(table)
    assert split_of(hidden) is not None and split_of(hidden).pieces
    assert rows_of(hidden) == rows_of(read(spark, rig, snapshot_ts=changed, hidden="_tidb_rowid",
                                           native_read="false").load(table))
    # an earlier ts on the same parts: the deltas are invisible, everything is native again
    again = read(spark, rig, snapshot_ts=before_changes).load(table)
    assert split_of(again).rest == [] and rows_of(again) == upstream_rows(rig, table, before_changes, columns)


def pairs_table(table_id: int = 500) -> TableInfo:
    """``shop.pairs``: a clustered (VARBINARY, BIGINT) key: handles with any byte."""
    cols = [builder.column("k", "VARBINARY(16)", primary_key=True), builder.column("n", "BIGINT", primary_key=True),
            builder.column("v", "INT")]
    return builder.table(table_id, "pairs", cols, primary_key=["k", "n"], db=DB)


PAIR_KEYS = [(k, n) for k in (b"", b"\x00", b"a", b"a\x00", b"a\x7f", b"a\x80", b"a\xff", b"ab", b"abcdefgh",
                              b"abcdefghi", b"\x7f", b"\x80", b"\xff", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff")
             for n in (-(1 << 63), -1, 0, 1, (1 << 63) - 1)]


def test_binary_handle_conditions_order_as_the_store_at_the_byte_boundaries(spark: Any, tmp_path: Path) -> None:
    # Spark compares BINARY as unsigned bytes, a proper prefix first, and prunes Parquet row
    # groups by BINARY statistics: both must agree with Python's bytes order, in which the
    # store cuts partitions, regions and tombstones. Handles and range bounds straddle 0x7f /
    # 0x80 / 0xff and are prefixes of one another.
    t = pairs_table()
    handles = sorted(common_handle(k, n) for k, n in PAIR_KEYS)
    bounds = sorted({h[:cut] for h in handles for cut in (1, 2, 9, len(h))} | {h + b"\x00" for h in handles[::7]}
                    | {b"\x7f", b"\x80", b"\x03\x80", b"\x01a\x80", b"\xff"})
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=4))
    store.put_schema(DB, table_json(t))
    store.write([event(1, 1, [committed(common_key(t, k, n), row(t, k=k, n=n, v=i), 100 + i)
                              for i, (k, n) in enumerate(PAIR_KEYS)])])
    store.flush()
    store.compact(force=True)
    with store.snapshot() as view:
        info = view.table(f"{DB}.pairs")
        parts = tuple(view.parts(t.id))
    assert len(parts) == 1 and parts[0].path.endswith(".parquet")
    piece = split_native(SimpleNamespace(table_info=info, ts=10**6, store=str(tmp_path / "s"), partitions=[
        SimpleNamespace(ranges=(RangeScan((1,), None, None, parts, 0),))]), ["v"]).pieces[0]
    assert piece.binary_handle
    # one query: every bound against every handle, as Spark orders them
    file_df = spark.read.parquet(piece.path)
    exprs = ["_tidb_rowid"] + [f"_tidb_rowid >= {handle_literal(b)} AS ge{i}" for i, b in enumerate(bounds)]
    got = {bytes(r[0]): list(r[1:]) for r in file_df.selectExpr(*exprs).collect()}
    assert sorted(got) == handles
    assert {h: v for h, v in got.items()} == {h: [h >= b for b in bounds] for h in handles}
    # and through the native read's own conditions, over row groups of 4 that Spark may skip by statistics
    target = spark_schema(info, ["k", "n", "v"], ("_tidb_rowid",))
    for lo, hi in [(None, b"\x01a\x80"), (b"\x01a\x80", b"\x01a\xff"), (b"\x01\x7f", None),
                   (b"\x01\x7f\x00", b"\x01\x80\x01"), (handles[3] + b"\x00", handles[40][:5]),
                   (handles[17], handles[18])]:
        plan = SimpleNamespace(table_info=info, ts=10**6, store=str(tmp_path / "s"), partitions=[
            SimpleNamespace(ranges=(RangeScan((1,), lo, hi, parts, 0),))])
        split = split_native(plan, ["k", "n", "v"])
        assert split.rest == [] and len(split.pieces) == 1, (lo, hi)
        frame = parquet_frame(spark, 10**6, split.pieces, target)
        # the bounds reach the Parquet reader (row groups pruned by their BINARY statistics)
        assert re.search(r"PushedFilters: \[[^\]]*(GreaterThanOrEqual|LessThan)\(_tidb_rowid", executed_plan(frame))
        expected = sorted(h for h in handles if (lo is None or h >= lo) and (hi is None or h < hi))
        assert expected, (lo, hi)
        assert sorted(bytes(r._tidb_rowid) for r in frame.collect()) == expected, (lo, hi)
    store.close()


def test_native_pieces_of_a_clustered_table_give_the_stores_rows_with_tombstones_and_newer_versions(
        spark: Any, tmp_path: Path) -> None:
    t = pairs_table(501)
    store = Store.open(tmp_path / "s", options=StoreOptions(partition_max_rows=25, row_group_rows=8))
    store.put_schema(DB, table_json(t))
    keys = sorted(PAIR_KEYS, key=lambda kn: common_handle(*kn))
    store.write([event(1, 1, [committed(common_key(t, k, n), row(t, k=k, n=n, v=i), 100 + i)
                              for i, (k, n) in enumerate(keys)])])
    store.flush()
    for _ in range(3):
        store.compact(force=True)  # partitions of at most 25 handles, split at binary medians
    # newer versions and deletes of a few keys (a delta), then the region splits at a key in
    # the middle and the replica loses the right half: a delete-range newer than every part
    cut = common_key(t, *keys[47])
    store.write([event(1, 2, [committed(common_key(t, k, n), row(t, k=k, n=n, v=-1), 500) for k, n in keys[:3]]
                       + [committed(common_key(t, *keys[10]), None, 510)])])
    store.write([split_event(1, 3, [region(1, b"", boundary(t, cut)), region(2, boundary(t, cut), b"")]),
                 removed_event(2, 4)])
    store.flush()
    with store.snapshot() as view:
        info = view.table(f"{DB}.pairs")
        parts = tuple(view.parts(t.id))
    assert len({p.partition_id for p in parts}) >= 3 and any(p.tombstones for p in parts)
    needed = [c.name for c in info.columns]
    target = spark_schema(info, needed, ())
    for ts in (130, 160, 505, 600):
        expected = sorted(tuple(r.values()) for r in store.scan_table(f"{DB}.pairs", ts).to_pylist())
        plan = SimpleNamespace(table_info=info, ts=ts, store=str(tmp_path / "s"), partitions=[
            SimpleNamespace(ranges=(RangeScan((1,), None, None, parts, 0),))])
        split = split_native(plan, needed)
        assert split.pieces, ts
        native = [tuple(r) for r in parquet_frame(spark, ts, split.pieces, target).collect()]
        rest = [tuple(r.values()) for lo, hi in split.rest
                for b in read_parts(list(parts), info, ts, (lo, hi), needed, None, (), str(tmp_path / "s"))
                for r in b.to_pylist()]
        rest += overlay_rows(split, parts, info, ts, needed, tmp_path / "s")
        assert sorted(native + rest) == expected, ts
    store.close()
