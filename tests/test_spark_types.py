"""TiDB types through Spark, on both read paths: the Python data source (``native_read=false``,
and any part with deltas) and Spark's own Parquet reader of compacted parts. Values are
compared with what was inserted into the mini cluster, not with a decoder of ours."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import pytest

from flash_rig import FlashRig
from pyspark_theflash.codec.time import pack_time_fields
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.tidb import make_column, record_key

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("types"))
    r.start_writer(interval_s=0.05)
    yield r
    r.close()


def read(spark: Any, rig: FlashRig, **options: Any) -> Any:
    return spark.read.format("theflash").options(**rig.options(**options))


def compact(rig: FlashRig) -> None:
    """What the writer's background compaction does, with the writer paused (one writer)."""
    rig.stop_writer()
    try:
        with Store.open(rig.store) as store:
            store.compact(force=True)
    finally:
        rig.start_writer(interval_s=0.05)


def native_split(df: Any) -> Any:
    native = getattr(df, "_theflash_native_read", None)
    return None if native is None else native.split


# --- unsigned BIGINT handles ---------------------------------------------------------------------

UNSIGNED_IDS = [1, 2, 50, 150, 2**64 - 5]
UNSIGNED_FILTERS = {
    "id > 9223372036854775808": lambda i: i > 2**63,
    "id >= 100": lambda i: i >= 100,
    "id < 100": lambda i: i < 100,
    "id = 18446744073709551611": lambda i: i == 2**64 - 5,
    "id between 2 and 150": lambda i: 2 <= i <= 150,
    "id in (2, 18446744073709551611)": lambda i: i in (2, 2**64 - 5),
    "id > 1 and v < 1000": lambda i: i > 1,
}


def test_an_unsigned_bigint_key_with_pushed_filters_reads_every_matching_id(spark: Any, rig: FlashRig) -> None:
    """The handle of 2**64-5 is the int64 -5: it lives in the region below the split at 100,
    among the small ids, and region pruning must not take that region's handle range for the
    column's range."""
    table = rig.cluster.create_table("uns.items", [make_column("id", "BIGINT UNSIGNED", not_null=True),
                                                   make_column("v", "INT")], primary_key=["id"])
    rig.cluster.split_at(record_key(table, 100))
    with rig.cluster.txn() as t:
        for i in UNSIGNED_IDS:
            t.insert("uns.items", {"id": i, "v": i % 997})
    rig.wait_replicated("uns.items")
    ts = rig.cluster.get_ts()

    def check(df: Any, path: str, conditions: list[str]) -> None:
        assert sorted(int(r.id) for r in df.collect()) == UNSIGNED_IDS, path
        for condition in conditions:
            got = sorted(int(r.id) for r in df.filter(condition).select("id").collect())
            assert got == [i for i in UNSIGNED_IDS if UNSIGNED_FILTERS[condition](i)], (path, condition)

    check(read(spark, rig, snapshot_ts=ts, native_read="false").load("uns.items"), "python source",
          list(UNSIGNED_FILTERS))
    compact(rig)  # one stable part per region: pruning sees the parts' statistics of id too
    native = read(spark, rig, snapshot_ts=ts).load("uns.items")
    assert native_split(native) is not None and native_split(native).pieces
    check(native, "native", list(UNSIGNED_FILTERS))
    check(read(spark, rig, snapshot_ts=ts, native_read="false").load("uns.items"), "python source, compacted",
          ["id > 9223372036854775808", "id < 100"])


# --- zero and impossible dates ----------------------------------------------------------------
# TiDB keeps 0000-00-00 (and, under a relaxed sql_mode, 2020-00-00 or 2021-02-30) even in NOT
# NULL columns. The documented mapping: such values read as NULL on every path, so DATE,
# DATETIME and TIMESTAMP columns are nullable in the Spark schema even when NOT NULL.

ZERO_DATES = {  # id -> (d, dtm, ts) packed values: zero, zero month/day, impossible, real
    1: (0, 0, 0),
    2: (pack_time_fields(2020, 0, 0), pack_time_fields(2020, 1, 0, 10, 0, 0), pack_time_fields(2020, 0, 5)),
    3: (pack_time_fields(2021, 2, 30), pack_time_fields(2021, 4, 31, 1, 2, 3), pack_time_fields(1999, 2, 29, 23)),
    4: (pack_time_fields(2024, 2, 29), pack_time_fields(2024, 2, 29, 23, 59, 59, 5), pack_time_fields(2038, 1, 19, 3)),
}
REAL_DATE_ROW = (4, dt.date(2024, 2, 29), dt.datetime(2024, 2, 29, 23, 59, 59, 5),
                 dt.datetime(2038, 1, 19, 3, tzinfo=dt.timezone.utc))


def test_zero_dates_in_not_null_columns_read_as_null_on_both_paths(spark: Any, rig: FlashRig) -> None:
    from pyspark.sql import types as S

    rig.cluster.create_table("zero.dates", [
        make_column("id", "BIGINT", not_null=True), make_column("d", "DATE", not_null=True),
        make_column("dtm", "DATETIME(6)", not_null=True), make_column("ts", "TIMESTAMP(6)", not_null=True),
    ], primary_key=["id"])
    with rig.cluster.txn() as t:
        for i, (d, dtm, ts) in ZERO_DATES.items():
            t.insert("zero.dates", {"id": i, "d": d, "dtm": dtm, "ts": ts})
    rig.wait_replicated("zero.dates")
    ts = rig.cluster.get_ts()
    expected = [(i, None, None, None) for i in (1, 2, 3)] + [REAL_DATE_ROW]

    def rows(df: Any) -> list[tuple[Any, ...]]:
        fields = {f.name: f for f in df.schema.fields}
        # (a native read marks every column nullable, as Spark's file sources do)
        assert [fields[n].nullable for n in ("d", "dtm", "ts")] == [True, True, True]
        assert isinstance(fields["ts"].dataType, S.TimestampType)
        got = sorted(tuple(r) for r in df.collect())
        # collect() gives Spark TIMESTAMPs as naive local times of this process
        return [(i, d, dtm, None if t is None else t.astimezone(dt.timezone.utc)) for i, d, dtm, t in got]

    python = read(spark, rig, snapshot_ts=ts, native_read="false").load("zero.dates")
    assert rows(python) == expected
    assert python.filter("d IS NULL").count() == 3
    compact(rig)
    native = read(spark, rig, snapshot_ts=ts).load("zero.dates")
    assert native_split(native) is not None and native_split(native).pieces and not native_split(native).rest
    assert rows(native) == expected
    assert rows(read(spark, rig, snapshot_ts=ts, native_read="false").load("zero.dates")) == expected
