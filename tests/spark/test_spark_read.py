"""Reading TheFlash from Spark: real Spark local mode, a real mini cluster and writer, the
store in between. Each test states a behaviour a user relies on."""
from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from chispa import assert_df_equality

from conftest import ROOT
from flash_rig import FlashRig, wait_for
from pyspark_theflash.codec.tso import compose_ts, physical_ms
from pyspark_theflash.scan import plan
from pyspark_theflash.upstream.tidb import make_column, record_key

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("flash"))
    r.start_writer(interval_s=0.05)
    yield r
    r.close()


def read(spark: Any, rig: FlashRig, **options: Any) -> Any:
    return spark.read.format("theflash").options(**rig.options(**options))


def make_table(rig: FlashRig, name: str, rows: int, regions: int = 1, extra: list | None = None) -> dict:
    """``name`` (id BIGINT primary key, balance BIGINT, owner VARCHAR) with ``rows`` rows,
    split into ``regions`` regions, replicated to the store."""
    columns = [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT"),
               make_column("owner", "VARCHAR(32)")] + (extra or [])
    table = rig.cluster.create_table(name, columns, primary_key=["id"])
    step = max(1, rows // regions)
    for handle in range(step, rows, step):
        rig.cluster.split_at(record_key(table, handle))
    if rows:
        with rig.cluster.txn() as t:
            for i in range(rows):
                t.insert(name, {"id": i, "balance": 100 + i, "owner": f"owner-{i:03d}"})
        rig.wait_replicated(name)  # the writer learns a table from its first rows
    return table


# --- discovery, registration, SQL ------------------------------------------------------------

DISCOVERY_SCRIPT = r"""
import json, sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate())
# no upstream option: the address the writer recorded in the store
df = spark.read.format("theflash").option("store", sys.argv[1]).load(sys.argv[2])
print("ROWS=" + json.dumps(sorted((r.id, r.balance) for r in df.filter("id < 3").collect())))
spark.stop()
"""


def test_theflash_is_found_without_registering_in_a_fresh_spark(rig: FlashRig, tmp_path: Path) -> None:
    """A plain SparkSession (no session helper, no register call, filter pushdown left off)
    finds the package's DefaultSource by the name ``theflash`` and reads with nothing but the
    store (the upstream address is the one the writer recorded)."""
    make_table(rig, "disc.accounts", 5)
    script = tmp_path / "discover.py"
    script.write_text(DISCOVERY_SCRIPT)
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    proc = subprocess.run([sys.executable, str(script), rig.store, "disc.accounts"],
                          capture_output=True, text=True, timeout=240, env=env, cwd=str(ROOT))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ROWS=")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    assert json.loads(lines[0][5:]) == [[0, 100], [1, 101], [2, 102]]


def test_explicit_registration_and_sql_temporary_view(spark: Any, rig: FlashRig) -> None:
    from pyspark_theflash.spark.datasource import TheFlashDataSource

    make_table(rig, "sqlv.accounts", 10)
    spark.dataSource.register(TheFlashDataSource)
    spark.sql(
        f"CREATE OR REPLACE TEMPORARY VIEW sqlv_accounts USING theflash "
        f"OPTIONS (store '{rig.store}', upstream '{rig.upstream}', table 'sqlv.accounts')"
    )
    row = spark.sql("SELECT count(*) AS n, sum(balance) AS total FROM sqlv_accounts WHERE id >= 5").collect()[0]
    assert (row.n, row.total) == (5, sum(100 + i for i in range(5, 10)))


def test_the_python_sources_workers_import_the_installed_pyspark_from_this_packages_daemon(
        spark: Any, rig: FlashRig) -> None:
    """theflash_session(jvm=False) gives the session this package's worker daemon: a Python worker
    imports PySpark as installed (compiled once), not from Spark's pyspark.zip, which Python would
    compile again in every worker; and the source reads through such workers (spark/worker_daemon.py)."""
    from pyspark_theflash.spark.worker_daemon import DAEMON_CONF, MODULE

    def worker_imports(_: Any) -> tuple[str, str]:  # (defined here: pickled by value, not by module)
        import sys

        import pyspark

        return pyspark.__file__ or "", str(sys.modules["__main__"].__spec__.name)

    assert spark.conf.get(DAEMON_CONF) == MODULE
    [(pyspark_file, main)] = spark.sparkContext.parallelize([0], 1).map(worker_imports).collect()
    assert main == MODULE
    assert ".zip" not in pyspark_file and Path(pyspark_file).parent.name == "pyspark", pyspark_file
    make_table(rig, "daemon.t", 5)
    assert sorted(r.id for r in read(spark, rig).load("daemon.t").collect()) == [0, 1, 2, 3, 4]


def test_the_suites_spark_jvm_maps_the_machines_class_archive(spark: Any) -> None:
    """The test machine's Spark conf (tests/support/machine_spark_conf.py) has every Spark JVM of
    the suite map the class archive the set-up command made (tests/support/spark_class_archive.py):
    about a third of a short JVM's CPU. The JDK maps it only where it fits this JDK, these jars and
    this class path, and says nothing where it does not, so this checks that it does fit."""
    import spark_class_archive

    archive = spark_class_archive.installed()
    assert archive is not None, (f"{spark_class_archive.ARCHIVE} is missing: the set-up command makes it; run "
                                 "scripts/bootstrap.sh (or python tests/support/spark_class_archive.py install)")
    pid = spark._jvm.java.lang.ProcessHandle.current().pid()
    mapped = {line.split(maxsplit=5)[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
              if len(line.split(maxsplit=5)) == 6}
    assert str(archive) in mapped, (f"the Spark JVM (pid {pid}) does not map {archive}: made for another JDK or "
                                    "other jars; run scripts/bootstrap.sh to make it again")
    class_path = spark._jvm.java.lang.System.getProperty("java.class.path").split(os.pathsep)
    assert os.environ["SPARK_CONF_DIR"].rstrip("/") in [p.rstrip("/") for p in class_path]  # still there, after


# --- types ------------------------------------------------------------------------------------

TYPE_COLUMNS = [
    ("id", "BIGINT"), ("i8", "TINYINT"), ("i16", "SMALLINT"), ("i24", "MEDIUMINT"), ("i32", "INT"),
    ("u8", "TINYINT UNSIGNED"), ("u16", "SMALLINT UNSIGNED"), ("u24", "MEDIUMINT UNSIGNED"),
    ("u32", "INT UNSIGNED"), ("u64", "BIGINT UNSIGNED"), ("yr", "YEAR"), ("f32", "FLOAT"), ("f64", "DOUBLE"),
    ("dec", "DECIMAL(12,2)"), ("dec38", "DECIMAL(38,10)"), ("dec50", "DECIMAL(50,5)"),
    ("d", "DATE"), ("dtm", "DATETIME(6)"), ("ts", "TIMESTAMP(6)"), ("tm", "TIME(3)"),
    ("ch", "CHAR(4)"), ("vc", "VARCHAR(64)"), ("txt", "TEXT"), ("bn", "BINARY(4)"), ("vb", "VARBINARY(16)"),
    ("bl", "BLOB"), ("en", "ENUM('red','green','blue')"), ("st", "SET('a','b','c')"), ("js", "JSON"),
    ("b8", "BIT(8)"), ("b64", "BIT(64)"),
]

TYPE_ROWS = [
    {"id": 1, "i8": -128, "i16": -32768, "i24": -8388608, "i32": -2147483648, "u8": 255, "u16": 65535,
     "u24": 16777215, "u32": 4294967295, "u64": 18446744073709551615, "yr": 2155, "f32": 1.5, "f64": -2.25e300,
     "dec": decimal.Decimal("-1234567890.12"), "dec38": decimal.Decimal("1234567890123456789012345678.0123456789"),
     "dec50": decimal.Decimal("123456789012345678901234567890123456789012345.12345"),
     "d": dt.date(1000, 1, 1), "dtm": dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
     "ts": dt.datetime(2038, 1, 19, 3, 14, 7, 123456), "tm": dt.timedelta(hours=-838, minutes=-59, seconds=-59),
     "ch": "abcd", "vc": "héllo wörld ✓", "txt": "x" * 300, "bn": b"\x00\x01\x02\x03", "vb": b"\xff\xfe",
     "bl": bytes(range(256)), "en": "blue", "st": "a,c", "js": {"k": [1, 2.5, None, True, "s"]},
     "b8": 255, "b64": 18446744073709551615},
    {"id": 2, "i8": 127, "i16": 32767, "i24": 8388607, "i32": 2147483647, "u8": 0, "u16": 0, "u24": 0, "u32": 0,
     "u64": 0, "yr": 1901, "f32": -0.0, "f64": 0.1, "dec": decimal.Decimal("0.01"), "dec38": decimal.Decimal("0"),
     "dec50": decimal.Decimal("-0.00001"), "d": dt.date(9999, 12, 31), "dtm": dt.datetime(1000, 1, 1),
     "ts": dt.datetime(1970, 1, 1, 0, 0, 1), "tm": dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=1000),
     "ch": "", "vc": "", "txt": "", "bn": b"z", "vb": b"", "bl": b"", "en": "red", "st": "", "js": [],
     "b8": 0, "b64": 1},
    {"id": 3},  # every other column NULL
]


def spark_value(value: Any, spark_type: Any) -> Any:
    """The mini cluster's decoded value as Spark holds it for the column's Spark type."""
    from pyspark.sql import types as T

    if value is None:
        return None
    if isinstance(spark_type, T.DecimalType) and not isinstance(value, decimal.Decimal):
        return decimal.Decimal(value)
    if isinstance(spark_type, T.StringType) and isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(spark_type, T.BinaryType):
        return bytearray(value)
    if isinstance(spark_type, T.TimestampType):
        # collect() gives Spark TIMESTAMPs as naive local times of this Python process
        return value.astimezone().replace(tzinfo=None) if value.tzinfo else value
    return value


def test_every_tidb_type_round_trips_from_the_mini_cluster_to_spark(spark: Any, rig: FlashRig) -> None:
    from pyspark.sql import types as T

    rig.cluster.create_table("types.every", [make_column(n, sql) for n, sql in TYPE_COLUMNS], primary_key=["id"])
    with rig.cluster.txn() as t:
        for row in TYPE_ROWS:
            t.insert("types.every", row)
    rig.wait_replicated("types.every")
    actual = read(spark, rig).load("types.every")
    expected_rows = rig.cluster.scan_table("types.every")
    assert len(expected_rows) == len(TYPE_ROWS)
    schema = actual.schema
    expected = spark.createDataFrame(
        [tuple(spark_value(r[f.name], f.dataType) for f in schema.fields) for r in expected_rows], schema)
    # the Spark types a TiDB user expects
    types = {f.name: f.dataType for f in schema.fields}
    assert types["u64"] == T.DecimalType(20, 0) and types["ts"] == T.TimestampType()
    assert types["dtm"] == T.TimestampNTZType() and types["dec"] == T.DecimalType(12, 2)
    assert types["u32"] == T.LongType() and types["i24"] == T.IntegerType() and types["yr"] == T.ShortType()
    assert_df_equality(actual.orderBy("id"), expected.orderBy("id"))
    # and the values are the ones written (not only what the cluster decodes back)
    got = {r.id: r for r in actual.collect()}
    assert got[1].u64 == decimal.Decimal(2**64 - 1) and got[1].vc == "héllo wörld ✓"
    assert got[1].dtm == dt.datetime(2024, 2, 29, 23, 59, 59, 999999) and got[2].en == "red"
    assert json.loads(got[1].js) == {"k": [1, 2.5, None, True, "s"]} and got[1].b64 == decimal.Decimal(2**64 - 1)
    assert all(v is None for k, v in got[3].asDict().items() if k != "id")


def test_a_clustered_table_with_a_composite_primary_key_reads_like_the_cluster(spark: Any, rig: FlashRig) -> None:
    # Clustered common handle: record keys are t{id}_r + memcomparable (country, customer_id),
    # the store's handle is those bytes. Rows of several regions and updates included.
    rig.cluster.create_table("clus.customers", [
        make_column("country", "CHAR(2)", not_null=True), make_column("customer_id", "BIGINT", not_null=True),
        make_column("name", "VARCHAR(32)"), make_column("credit", "DECIMAL(10,2)"),
    ], primary_key=["country", "customer_id"], clustered=True)
    with rig.cluster.txn() as t:
        for i in range(60):
            t.insert("clus.customers", {"country": ["CN", "DE", "FR", "US"][i % 4], "customer_id": i,
                                        "name": f"c{i}", "credit": decimal.Decimal(i) / 4})
    table_id = rig.cluster.table_info("clus", "customers")["id"]
    from pyspark_theflash.upstream.tidb import record_key
    rig.cluster.split_at(record_key(rig.cluster.table_info("clus", "customers"), ("FR", 0)))
    with rig.cluster.txn() as t:
        t.update("clus.customers", {"country": "DE", "customer_id": 1, "name": "renamed"})
        t.delete("clus.customers", ("US", 3))
    rig.wait_replicated("clus.customers")
    ts = rig.cluster.get_ts()
    actual = read(spark, rig, snapshot_ts=ts).load("clus.customers")
    expected = {(r["country"], r["customer_id"]): (r["name"], r["credit"]) for r in rig.cluster.scan_table("clus.customers", ts)}
    got = {(r.country, r.customer_id): (r.name, r.credit) for r in actual.collect()}
    assert table_id and len(got) == 59 and got == expected
    assert got[("DE", 1)][0] == "renamed" and ("US", 3) not in got


# --- projections, filters, hidden columns -------------------------------------------------------

def test_a_user_schema_with_a_subset_of_columns_reads_only_those(spark: Any, rig: FlashRig) -> None:
    make_table(rig, "proj.accounts", 20)
    by_schema = spark.read.format("theflash").options(**rig.options()).schema("balance long, id long").load("proj.accounts")
    assert by_schema.columns == ["balance", "id"]
    assert sorted(by_schema.collect()) == sorted((100 + i, i) for i in range(20))
    by_option = read(spark, rig, columns="owner,id").load("proj.accounts")
    assert by_option.columns == ["owner", "id"]
    assert sorted(tuple(r) for r in by_option.collect()) == sorted((f"owner-{i:03d}", i) for i in range(20))
    # TiDB names are case-insensitive: a user schema may spell them otherwise, filters too
    upper = spark.read.format("theflash").options(**rig.options()).schema("ID long, BALANCE long").load("proj.accounts")
    assert [tuple(r) for r in upper.filter("ID = 3").collect()] == [(3, 103)]


def test_filters_over_the_python_source_give_spark_results(spark: Any, rig: FlashRig) -> None:
    table = make_table(rig, "filt.accounts", 0)
    # ten flushes of ten rows each, one region each: parts with narrow id ranges
    for batch in range(10):
        with rig.cluster.txn() as t:
            for i in range(batch * 10, batch * 10 + 10):
                t.insert("filt.accounts", {"id": i, "balance": i % 7, "owner": None if i % 5 == 0 else f"o{i}"})
        if batch:
            rig.cluster.split_at(record_key(table, batch * 10))
        rig.wait_replicated("filt.accounts")
        with plan(rig.store, "filt.accounts", rig.options()):
            pass  # a learner read: this batch is flushed (its own parts) before the next one
    # The Python source takes no pushed filters (spark/datasource.py): Spark applies each to
    # every row.
    df = read(spark, rig, partition_target_bytes=1).load("filt.accounts")
    assert df.rdd.getNumPartitions() == 10
    cases = {
        "id = 42": [42],
        "id >= 95": list(range(95, 100)),
        "id in (3, 57, 1000)": [3, 57],
        "owner is null and id < 30": [0, 5, 10, 15, 20, 25],
        "owner like 'o9%'": [9] + [i for i in range(90, 100) if i % 5],
        "not (id < 98)": [98, 99],
        "id not in (1, 2) and id < 4": [0, 3],
        "balance = 3 and id < 40": [i for i in range(40) if i % 7 == 3],
    }
    for condition, ids in cases.items():
        got = sorted(r.id for r in df.filter(condition).select("id").collect())
        assert got == ids, condition
    assert df.count() == 100  # and none of those filters narrowed a later query


def test_hidden_columns_are_readable_on_request(spark: Any, rig: FlashRig) -> None:
    rig.cluster.create_table("hid.accounts", [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")],
                             primary_key=["id"])
    with rig.cluster.txn() as t:
        t.insert("hid.accounts", {"id": 7, "v": 1})
    first_commit = t.commit_ts
    with rig.cluster.txn() as t:
        t.update("hid.accounts", {"id": 7, "v": 2})
    rig.wait_replicated("hid.accounts")
    df = read(spark, rig, hidden="_tidb_rowid,_tidb_commit_ts").load("hid.accounts")
    assert df.columns == ["id", "v", "_tidb_rowid", "_tidb_commit_ts"]
    row = df.collect()[0]
    assert (row.id, row.v, row._tidb_rowid, row._tidb_commit_ts) == (7, 2, 7, t.commit_ts)
    old = read(spark, rig, hidden="_tidb_commit_ts", snapshot_ts=first_commit).load("hid.accounts").collect()[0]
    assert (old.v, old._tidb_commit_ts) == (1, first_commit)
    assert "_tidb_rowid" not in read(spark, rig).load("hid.accounts").columns


# --- snapshots ----------------------------------------------------------------------------------

def test_snapshot_ts_and_as_of_read_the_past(spark: Any, rig: FlashRig) -> None:
    make_table(rig, "past.accounts", 3)
    before = rig.cluster.get_ts()
    with rig.cluster.txn() as t:
        t.update("past.accounts", {"id": 0, "balance": 999})
    now = read(spark, rig).load("past.accounts").filter("id = 0").collect()[0].balance
    then = read(spark, rig, snapshot_ts=before).load("past.accounts").filter("id = 0").collect()[0].balance
    as_of = dt.datetime.fromtimestamp(physical_ms(before) / 1000 - 0.001, dt.timezone.utc).isoformat()
    then_as_of = read(spark, rig, as_of=as_of).load("past.accounts").filter("id = 0").collect()[0].balance
    assert (now, then, then_as_of) == (999, 100, 100)


def test_a_ts_below_the_safe_point_or_in_the_future_is_refused_with_the_range(spark: Any, rig: FlashRig) -> None:
    make_table(rig, "range.accounts", 2)
    old = rig.cluster.get_ts()
    safe = rig.cluster.get_ts()
    # capture's and the readers' PD service safe points hold GC at what they still need: drop
    # them for this test (they set theirs again, but PD ignores one below the safe point GC reached)
    from pyspark_theflash.upstream.pd_service import GC_WORKER_SERVICE

    def gc_to_safe() -> bool:
        points = rig.cluster.service_safe_points
        for service, (point, _expires) in points.live().items():
            if service != GC_WORKER_SERVICE and point < safe:
                points.update(service, 0, 0)
        return rig.cluster.update_gc_safe_point(safe) >= safe

    wait_for(gc_to_safe, 20, "GC to reach the safe point")
    with pytest.raises(Exception, match=rf"snapshot ts {old} .* below the GC safe point.*readable snapshots are \[{safe}, \d+\]"):
        read(spark, rig, snapshot_ts=old).load("range.accounts").collect()
    future = compose_ts(physical_ms(rig.cluster.get_ts()) + 3_600_000, 0)
    with pytest.raises(Exception, match=rf"snapshot ts {future} .* in the future.*readable snapshots are \[{safe}, \d+\]"):
        read(spark, rig, snapshot_ts=future).load("range.accounts").collect()


def test_pinning_a_session_without_the_connector_is_refused_not_ignored(spark: Any, rig: FlashRig) -> None:
    """The Python source never sees the session conf: a pin it ignored would read the latest
    data. (The pin through the connector: tests/spark/test_jvm_source.py.)"""
    from pyspark_theflash.spark import pinned_snapshot

    pin = pinned_snapshot(spark, rig.store, upstream=rig.upstream)
    with pytest.raises(RuntimeError, match=r"pinned_snapshot\(\) pins reads of the connector jar.*option snapshot_ts"):
        pin.__enter__()  # refused on entering the block, before any read
    assert spark.conf.get("theflash.snapshot_ts", None) is None


# --- learner read and locks -----------------------------------------------------------------------

def test_a_read_waits_for_a_lagging_region_then_sees_its_data(spark: Any, rig: FlashRig) -> None:
    from pyspark_theflash.latch import connect

    make_table(rig, "lag.accounts", 4, regions=2)
    rig.stop_writer()
    with rig.cluster.txn() as t:
        t.insert("lag.accounts", {"id": 100, "balance": 1, "owner": "late"})
    latch = connect(rig.store)

    assert not latch.pending_flushes()
    restarted: list[bool] = []

    def restart_when_the_reader_waits() -> None:
        wait_for(lambda: latch.pending_flushes(), 60, "the reader's flush request")
        restarted.append(True)
        rig.start_writer()

    helper = threading.Thread(target=restart_when_the_reader_waits)
    helper.start()
    try:
        rows = read(spark, rig, region_wait_timeout="60s").load("lag.accounts").collect()
    finally:
        helper.join(60)
        if not rig.writer_running:
            rig.start_writer()
    assert restarted, "the read did not wait for the lagging region"
    assert sorted(r.id for r in rows) == [0, 1, 2, 3, 100]


def test_a_read_times_out_naming_the_lagging_regions_when_the_writer_is_stopped(spark: Any, rig: FlashRig) -> None:
    make_table(rig, "stall.accounts", 2)
    rig.stop_writer()
    try:
        with rig.cluster.txn() as t:
            t.insert("stall.accounts", {"id": 50, "balance": 1})
        # through pd:// the learner read waits on each region's resolved ts
        with pytest.raises(Exception, match=r"did not catch up within 1s \(region \d+: (applied \d+ < needed \d+ \(lag \d+ entries\)|resolved ts \d+ < \d+)"
                                            r".*writer (is )?running"):
            read(spark, rig, region_wait_timeout="1s").load("stall.accounts").collect()
    finally:
        rig.start_writer()


def test_a_lock_of_a_dead_transaction_is_resolved(spark: Any, rig: FlashRig) -> None:
    from pyspark_theflash.upstream.tidb import Abandoned

    table = make_table(rig, "dead.accounts", 4)
    t = rig.cluster.txn(one_pc=False, ttl_ms=400, after_prewrite=lambda _: (_ for _ in ()).throw(Abandoned()))
    t.update("dead.accounts", {"id": 1, "balance": -1})
    t.update("dead.accounts", {"id": 2, "balance": -2})
    with pytest.raises(Abandoned):
        t.commit()
    key = record_key(table, 1)
    assert [lk.start_ts for lk in rig.cluster.store.locks() if lk.key == key] == [t.start_ts]
    rows = read(spark, rig).load("dead.accounts").collect()
    assert sorted((r.id, r.balance) for r in rows) == [(0, 100), (1, 101), (2, 102), (3, 103)]
    # the reader rolled the dead transaction back upstream: its locks are gone
    assert not [lk for lk in rig.cluster.store.locks() if lk.start_ts == t.start_ts]


def test_a_committed_transaction_with_pending_secondaries_is_resolved_and_read(spark: Any, rig: FlashRig) -> None:
    table = make_table(rig, "half.accounts", 10, regions=2)
    t = rig.cluster.txn(one_pc=False)
    t.update("half.accounts", {"id": 1, "balance": 0})     # primary, region 1
    t.update("half.accounts", {"id": 8, "balance": 209})   # secondary, region 2
    keys = t.prewrite()
    commit_ts = rig.cluster.get_ts()
    rig.cluster.store.commit(keys[:1], t.start_ts, commit_ts)  # the client dies before the secondaries
    secondary = record_key(table, 8)
    assert [lk.start_ts for lk in rig.cluster.store.locks() if lk.key == secondary] == [t.start_ts]
    rows = read(spark, rig).load("half.accounts").collect()
    balances = {r.id: r.balance for r in rows}
    assert (balances[1], balances[8]) == (0, 209)
    assert sum(balances.values()) == sum(100 + i for i in range(10))
    assert not [lk for lk in rig.cluster.store.locks() if lk.start_ts == t.start_ts]


def test_a_read_at_a_ts_matches_upstream_row_for_row_while_async_commit_transactions_are_half_done(
    spark: Any, rig: FlashRig,
) -> None:
    """TiDB >= 5.0 commits with async commit: a transaction is committed once every lock is
    written, and a client may die anywhere. A Spark read at ts must give exactly the rows the
    upstream holds at ts, whatever state those transactions were left in."""
    from pyspark_theflash.upstream.tidb import Abandoned

    name = "halfasync.accounts"
    make_table(rig, name, 40, regions=4)  # regions split at ids 10, 20, 30

    def die(*_: Any) -> None:
        raise Abandoned()

    def commit_primary_then_die(t: Any) -> None:
        rig.cluster.store.commit(list(t.mutations)[:1], t.start_ts, t.commit_ts)
        raise Abandoned()

    def left_half_done(t: Any, *changes: tuple[str, int, int]) -> Any:
        for op, i, balance in changes:
            if op == "update":
                t.update(name, {"id": i, "balance": balance})
            elif op == "insert":
                t.insert(name, {"id": i, "balance": balance, "owner": "new"})
            else:
                t.delete(name, i)
        with pytest.raises(Abandoned):
            t.commit()
        return t

    with rig.cluster.txn(async_commit=True) as done:  # an ordinary async commit over two regions
        done.update(name, {"id": 1, "balance": 1})
        done.update(name, {"id": 31, "balance": 131})
    every_lock = left_half_done(rig.cluster.txn(async_commit=True, ttl_ms=300, after_prewrite=die),
                                ("update", 2, 0), ("update", 12, 0), ("delete", 22, 0), ("insert", 40, 7))
    some_missing = left_half_done(rig.cluster.txn(async_commit=True, ttl_ms=300, after_prewrite_batch=die),
                                  ("update", 3, -3), ("update", 13, -13), ("delete", 23, 0))
    primary_only = left_half_done(rig.cluster.txn(async_commit=True, ttl_ms=300, after_prewrite=commit_primary_then_die),
                                  ("update", 4, 44), ("update", 34, 434))
    left_half_done(rig.cluster.txn(one_pc=False, ttl_ms=300, after_prewrite=die), ("update", 5, -5), ("update", 15, -15))
    late = rig.cluster.txn(async_commit=True)  # starts before ts, prewrites after the read
    late.update(name, {"id": 6, "balance": 6})
    late.update(name, {"id": 36, "balance": 36})
    assert {lk.start_ts for lk in rig.cluster.store.locks()} >= {every_lock.start_ts, some_missing.start_ts}

    ts = rig.cluster.get_ts()
    first = sorted((r.asDict() for r in read(spark, rig, snapshot_ts=ts).load(name).collect()), key=lambda r: r["id"])
    assert late.commit() > ts  # its locks' min_commit_ts are above a ts already read
    again = sorted((r.asDict() for r in read(spark, rig, snapshot_ts=ts).load(name).collect()), key=lambda r: r["id"])
    upstream = sorted(rig.cluster.scan_table(name, ts), key=lambda r: r["id"])
    assert first == upstream == again
    got = {r["id"]: r["balance"] for r in first}
    assert (got[1], got[31]) == (1, 131)                              # committed
    assert (got[2], got[12], 22 in got, got[40]) == (0, 0, False, 7)  # every lock written: committed
    assert (got[3], got[13], 23 in got) == (103, 113, True)           # a secondary missing: rolled back
    assert (got[4], got[34]) == (44, 434)                             # primary committed: committed
    assert (got[5], got[15], got[6], got[36]) == (105, 115, 106, 136)  # 2PC client died; committed after ts
    assert every_lock.commit_ts <= ts and primary_only.commit_ts <= ts
    assert not {lk.start_ts for lk in rig.cluster.store.locks()} & {every_lock.start_ts, some_missing.start_ts,
                                                                     primary_only.start_ts}


def test_the_python_sources_own_errors_reach_the_user_without_a_traceback_through_the_package(
        spark: Any, rig: FlashRig) -> None:
    """An unknown table, a bad option, a snapshot in the future: Spark wraps the worker's
    traceback into its exception; of TheFlash's frames only the method Spark called is left
    (spark/user_errors.py), and the message says what to do."""
    make_table(rig, "plain.accounts", 2)
    future = compose_ts(physical_ms(rig.cluster.get_ts()) + 3_600_000, 0)
    for attempt, says in (
            (lambda: read(spark, rig).load("plain.acounts").schema, r"did you mean plain\.accounts\b"),
            (lambda: read(spark, rig, snapshot_ts="yesterday").load("plain.accounts").collect(), "snapshot_ts"),
            (lambda: read(spark, rig, snapshot_ts=future).load("plain.accounts").collect(), "in the future")):
        with pytest.raises(Exception, match=says) as caught:
            attempt()
        text = str(caught.value)
        ours = [line for line in text.splitlines() if "pyspark_theflash" in line and line.strip().startswith("File ")]
        assert len(ours) <= 1, text
        assert "During handling of the above exception" not in text and "The above exception was the direct cause" \
            not in text, text


def test_said_plainly_cuts_theflash_errors_to_one_frame_and_leaves_other_exceptions_whole() -> None:
    import traceback

    from pyspark_theflash.errors import TheFlashError
    from pyspark_theflash.spark.user_errors import FRAME_FILE, said_plainly

    def deep(n: int, exc: BaseException) -> None:
        if n:
            deep(n - 1, exc)
        try:
            raise KeyError("inner")
        except KeyError:
            raise exc

    @said_plainly
    def planned(exc: BaseException) -> None:
        deep(5, exc)

    @said_plainly
    def rows(exc: BaseException) -> Any:
        yield 1
        deep(5, exc)

    for call in (lambda e: planned(e), lambda e: list(rows(e))):
        with pytest.raises(TheFlashError) as ours:
            call(TheFlashError("no table x.y; did you mean x.z?"))
        frames = traceback.extract_tb(ours.value.__traceback__)
        assert [f.name for f in frames if f.filename == FRAME_FILE] and not [f for f in frames if f.name == "deep"]
        assert ours.value.__cause__ is None and ours.value.__suppress_context__
        with pytest.raises(ValueError) as bug:
            call(ValueError("a bug"))
        assert len([f for f in traceback.extract_tb(bug.value.__traceback__) if f.name == "deep"]) == 6


def test_the_one_frame_pyspark_keeps_of_a_theflash_error_is_the_wrappers_however_the_package_is_installed() -> None:
    """PySpark's simplified traceback (what a worker prints) keeps the frames from the first one
    whose file is not under pyspark's directory, a prefix test that this package's files pass when
    installed from a wheel beside pyspark (.../site-packages/pyspark_theflash/...): then every frame
    is "pyspark's" and the traceback is printed whole. The wrapper's frame names FRAME_FILE."""
    import os
    import traceback

    import pyspark
    from pyspark.util import try_simplify_traceback

    from pyspark_theflash.errors import TheFlashError
    from pyspark_theflash.spark.user_errors import FRAME_FILE, said_plainly

    root = os.path.dirname(pyspark.__file__)
    assert f"{root}_theflash/spark/user_errors.py".startswith(root)  # the wheel layout passes for pyspark's

    @said_plainly
    def schema() -> None:
        raise TheFlashError("no store at /nowhere: check the path")

    # the worker's own frame (create_data_source.py's main) calling the data source's method and
    # catching what it raises, as the worker does before it formats the traceback
    worker: dict[str, Any] = {"method": schema}
    exec(compile("def main():\n    try:\n        method()\n    except BaseException as exc:\n        return exc\n",
                 f"{root}/sql/worker/create_data_source.py", "exec"), worker)
    caught = worker["main"]()
    assert isinstance(caught, TheFlashError)
    kept = try_simplify_traceback(caught.__traceback__)
    assert kept is not None
    assert [f.filename for f in traceback.extract_tb(kept)] == [FRAME_FILE]
    # the same wrapper named by its module's path as a wheel installs it: nothing is outside
    # pyspark, nothing is simplified, and the worker prints the traceback whole
    wheel = said_plainly(schema.__wrapped__)  # type: ignore[attr-defined]
    wheel.__code__ = wheel.__code__.replace(co_filename=f"{root}_theflash/spark/user_errors.py")
    worker["method"] = wheel
    assert try_simplify_traceback(worker["main"]().__traceback__) is None


@pytest.mark.parametrize("options, says", [
    ({"store": "/nowhere/flash"}, "StoreNotFoundError: no store at /nowhere/flash"),
    ({"store": "/nowhere/flash", "isolaton": "RC"}, "did you mean 'isolation'?"),
])
def test_a_python_source_error_through_spark_is_its_message_without_a_traceback(
        spark: Any, options: dict[str, str], says: str) -> None:
    """What a PySpark user sees of the Python source's user error (issue 52, item 5): Spark's
    condition, then the error's own line, no traceback (the worker is told to leave it out:
    spark/user_errors.py). Fails if a frame comes back or the message moves."""
    with pytest.raises(Exception) as caught:
        spark.read.format("theflash").options(**options).load("t.x").collect()
    lines = [line for line in str(caught.value).splitlines() if line.strip()]
    assert lines[0].startswith("[PYTHON_DATA_SOURCE_ERROR] "), lines
    assert not [line for line in lines if "Traceback" in line or line.strip().startswith('File "')], lines
    assert len(lines) <= 3 and any(says in line for line in lines), lines


def test_a_python_source_error_in_a_task_is_its_message_without_a_traceback(spark: Any, tmp_path: Path) -> None:
    """A TheFlashError raised while a task reads (``read``, in an executor's Python worker, not
    the planner's): the part files of a planned read are gone, and the task's error is the
    message alone, as the planner's are."""
    from one_region_writes import T1, Upstream
    from pyspark_theflash.store import Store
    from store_events import DB

    store = Store.open(tmp_path / "s")
    store.put_schema(DB, T1.to_json())
    ts = Upstream(store).commit([(h, f"n{h}") for h in range(50)])
    store.flush()
    store.close()
    df = spark.read.format("theflash").options(store=str(tmp_path / "s"), snapshot_ts=str(ts)).load(f"{DB}.{T1.name}")
    assert df.count() == 50
    for part in (tmp_path / "s" / "tables").rglob("*.arrow"):
        part.unlink()
    with pytest.raises(Exception) as caught:
        df.collect()
    lines = [line for line in str(caught.value).splitlines() if line.strip()]
    assert not [line for line in lines if "Traceback" in line or line.strip().startswith('File "')], lines
    assert any("PartMissingError: part file" in line and "theflash store verify" in line for line in lines), lines
    assert len(lines) <= 3, lines
