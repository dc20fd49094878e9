"""TiDB types through Spark, on both read paths: the Python data source (``native_read=false``,
and any part with deltas) and Spark's own Parquet reader of compacted parts. Values are
compared with what was inserted into the mini cluster, not with a decoder of ours."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from flash_rig import FlashRig
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
