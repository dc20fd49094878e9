"""TiDB types through Spark's Python data source, from delta parts and from compacted stable
parts (the store's two read paths). Values are compared with what was inserted into the mini
cluster, not with a decoder of ours. (The JVM connector's types: tests/spark/test_jvm_source.py.)"""
from __future__ import annotations

import datetime as dt
import decimal
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

    check(read(spark, rig, snapshot_ts=ts).load("uns.items"), "delta parts", list(UNSIGNED_FILTERS))
    compact(rig)  # one stable part per region: pruning sees the parts' statistics of id too
    check(read(spark, rig, snapshot_ts=ts).load("uns.items"), "compacted", list(UNSIGNED_FILTERS))


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


def test_zero_dates_in_not_null_columns_read_as_null_before_and_after_compaction(spark: Any, rig: FlashRig) -> None:
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
        assert [fields[n].nullable for n in ("d", "dtm", "ts")] == [True, True, True]
        assert isinstance(fields["ts"].dataType, S.TimestampType)
        got = sorted(tuple(r) for r in df.collect())
        # collect() gives Spark TIMESTAMPs as naive local times of this process
        return [(i, d, dtm, None if t is None else t.astimezone(dt.timezone.utc)) for i, d, dtm, t in got]

    python = read(spark, rig, snapshot_ts=ts).load("zero.dates")
    assert rows(python) == expected
    assert python.filter("d IS NULL").count() == 3
    compact(rig)
    assert rows(read(spark, rig, snapshot_ts=ts).load("zero.dates")) == expected


# --- every type of docs/architecture.md's table, from delta parts and from a stable part ---------

D = decimal.Decimal
UTC = dt.timezone.utc
# (name, SQL type, values of rows 1-4 as inserted; row 5 is NULL everywhere but id)
EVERY_TYPE: list[tuple[str, str, list[Any]]] = [
    ("i8", "TINYINT", [-128, 127, 0, -1]),
    ("i16", "SMALLINT", [-32768, 32767, 7, -7]),
    ("i24", "MEDIUMINT", [-8388608, 8388607, 1, -1]),
    ("i32", "INT", [-(2**31), 2**31 - 1, 42, -42]),
    ("i64", "BIGINT", [-(2**63), 2**63 - 1, 0, 1]),
    ("u8", "TINYINT UNSIGNED", [0, 255, 1, 128]),
    ("u16", "SMALLINT UNSIGNED", [0, 65535, 1, 32768]),
    ("u24", "MEDIUMINT UNSIGNED", [0, 16777215, 1, 8388608]),
    ("u32", "INT UNSIGNED", [0, 4294967295, 1, 2**31]),
    ("u64", "BIGINT UNSIGNED", [0, 2**64 - 1, 1, 2**63]),
    ("yr", "YEAR", [1901, 2155, 0, 2000]),
    ("f32", "FLOAT", [-3.4028234663852886e38, 3.4028234663852886e38, 1.5, -1.1754943508222875e-38]),
    ("f64", "DOUBLE", [-1.7976931348623157e308, 5e-324, 0.1, -2.25e300]),
    ("dec", "DECIMAL(12,2)", [D("-9999999999.99"), D("9999999999.99"), D("0.01"), D("0")]),
    ("dec38", "DECIMAL(38,10)", [D("-9999999999999999999999999999.9999999999"),
                                 D("9999999999999999999999999999.9999999999"), D("0.0000000001"), D("-1")]),
    ("dec65", "DECIMAL(65,30)", [D("-" + "9" * 35 + "." + "9" * 30),
                                 D("12345678901234567890123456789012345.123456789012345678901234567890"),
                                 D("0"), D("-0." + "0" * 29 + "1")]),
    ("d", "DATE", [dt.date(1000, 1, 1), dt.date(9999, 12, 31), dt.date(2024, 2, 29), 0]),  # 0: 0000-00-00
    ("dtm", "DATETIME(6)", [dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
                            dt.datetime(2024, 2, 29, 12, 34, 56, 1), 0]),
    ("ts", "TIMESTAMP(6)", [dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
                            dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC),
                            dt.datetime(2000, 1, 1, tzinfo=UTC), 0]),
    ("tm", "TIME(6)", [-dt.timedelta(hours=838, minutes=59, seconds=59), dt.timedelta(hours=838, minutes=59, seconds=59),
                       dt.timedelta(microseconds=1), -dt.timedelta(seconds=1, microseconds=500000)]),
    ("ch", "CHAR(4)", ["", "abcd", "é", "😀"]),
    ("vc", "VARCHAR(64)", ["héllo wörld ✓", "", "x" * 64, "line\nbreak\t\"q\""]),
    ("txt", "TEXT", ["x" * 1000, "", "😀 emoji", "\x00nul"]),
    ("bn", "BINARY(4)", [b"\x00\x01\x02\x03", b"\xff\xff\xff\xff", b"abcd", b"\x00\x00\x00\x00"]),
    ("vb", "VARBINARY(16)", [b"", b"\xff\xfe", bytes(range(16)), b"\x00"]),
    ("bl", "BLOB", [bytes(range(256)), b"", b"\x00", b"\x80" * 3000]),
    ("en", "ENUM('red','green','blue')", ["red", "blue", "", "green"]),
    ("st", "SET('a','b','c')", ["", "a,b,c", "a,c", "b"]),
    ("js", "JSON", ['{"b": [1, 2.5, null, true, false, "s"], "a": {"y": 1e20, "x": -0.0}}',
                    '[18446744073709551615, -9223372036854775808, 0.1, 1.0E-20, "\\u00e9\\n\\"<>&\\u2028", []]',
                    '"just a string"',
                    '{"b": 1, "aa": 3.0, "B": {}, "n": null, "big": 1e15, "f": 123456.789}']),
    ("b1", "BIT(1)", [0, 1, 1, 0]),
    ("b8", "BIT(8)", [0, 255, 170, 1]),
    ("b63", "BIT(63)", [0, 2**63 - 1, 5, 2**62]),
    ("b64", "BIT(64)", [0, 2**64 - 1, 2**63, 1]),
]
# What Spark must give for the values above, written out by hand (not by a decoder of ours):
# unsigned BIGINT and BIT(64) as Decimal, DECIMAL(65,30) as its exact digits, zero dates as
# NULL, JSON as TiDB prints it (keys sorted by bytes, ", " and ": ", floats with ".0" or in
# e-notation beyond 1e15, U+2028 escaped).
SPARK_VALUES: dict[str, list[Any]] = {
    "u64": [D(0), D(2**64 - 1), D(1), D(2**63)],
    "b64": [D(0), D(2**64 - 1), D(2**63), D(1)],
    "dec65": ["-" + "9" * 35 + "." + "9" * 30, "12345678901234567890123456789012345.123456789012345678901234567890",
              "0." + "0" * 30, "-0." + "0" * 29 + "1"],
    "d": [dt.date(1000, 1, 1), dt.date(9999, 12, 31), dt.date(2024, 2, 29), None],
    "dtm": [dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
            dt.datetime(2024, 2, 29, 12, 34, 56, 1), None],
    "ts": [dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC),
           dt.datetime(2000, 1, 1, tzinfo=UTC), None],
    "js": ['{"a": {"x": -0.0, "y": 1e20}, "b": [1, 2.5, null, true, false, "s"]}',
           '[18446744073709551615, -9223372036854775808, 0.1, 1e-20, "é\\n\\"<>&\\u2028", []]',
           '"just a string"',
           '{"B": {}, "aa": 3.0, "b": 1, "big": 1e15, "f": 123456.789, "n": null}'],
}


def expected_rows(columns: list[str]) -> list[dict[str, Any]]:
    rows = []
    for r in range(4):
        row: dict[str, Any] = {"id": r + 1}
        for name, _, inserted in EVERY_TYPE:
            if name in columns:
                row[name] = SPARK_VALUES[name][r] if name in SPARK_VALUES else inserted[r]
        rows.append(row)
    rows.append({"id": 5, **{name: None for name, _, _ in EVERY_TYPE if name in columns}})
    return rows


def collected(df: Any) -> list[dict[str, Any]]:
    """Rows as Python values comparable with ``expected_rows``: binaries as bytes, Spark
    TIMESTAMPs (naive local times in collect()) as UTC."""
    from pyspark.sql import types as S

    tz_columns = {f.name for f in df.schema.fields if isinstance(f.dataType, S.TimestampType)}
    out = []
    for r in df.collect():
        row = r.asDict()
        for k, v in row.items():
            if isinstance(v, bytearray):
                row[k] = bytes(v)
            elif k in tz_columns and v is not None:
                row[k] = v.astimezone(UTC)
        out.append(row)
    return sorted(out, key=lambda row: row["id"])


def assert_rows(got: list[dict[str, Any]], want: list[dict[str, Any]], path: str) -> None:
    assert [r["id"] for r in got] == [r["id"] for r in want], path
    for g, w in zip(got, want):
        for name in w:
            assert (type(g[name]), g[name]) == (type(w[name]), w[name]), (path, g["id"], name)


def test_every_type_round_trips_exactly_from_delta_and_stable_parts(spark: Any, rig: FlashRig) -> None:
    from pyspark.sql import types as S

    rig.cluster.create_table("types.all", [make_column("id", "BIGINT", not_null=True)]
                             + [make_column(name, sql) for name, sql, _ in EVERY_TYPE], primary_key=["id"])
    with rig.cluster.txn() as t:
        for r in range(4):
            t.insert("types.all", {"id": r + 1, **{name: values[r] for name, _, values in EVERY_TYPE}})
        t.insert("types.all", {"id": 5})
    rig.wait_replicated("types.all")
    ts = rig.cluster.get_ts()
    every = [name for name, _, _ in EVERY_TYPE]

    python = read(spark, rig, snapshot_ts=ts).load("types.all")
    types = {f.name: f.dataType for f in python.schema.fields}
    assert types["dec65"] == S.StringType() and types["b64"] == S.DecimalType(20, 0)
    assert types["u64"] == S.DecimalType(20, 0) and types["u32"] == S.LongType() and types["js"] == S.StringType()
    assert_rows(collected(python), expected_rows(every), "python source, delta parts")

    compact(rig)
    assert_rows(collected(read(spark, rig, snapshot_ts=ts).load("types.all")), expected_rows(every),
                "python source, stable part")
