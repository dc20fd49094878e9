"""The JVM connector (jvm-shim, ``io.theflash.spark.TheFlashTableProvider``) in a real local
Spark with the jar, reading from a real ``theflash serve`` on loopback while the types
workload inserts, updates and deletes: the same rows as the Python data source at one ts,
column pruning and exact filter pushdown in the plan, and its errors word for word."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig, wait_for
from jvm_spark import JvmSpark, RemoteError
from pyspark_theflash.service import serve
from pyspark_theflash.upstream.workloads import TYPES_TABLE, TypesWorkload, types_columns

pytestmark = pytest.mark.spark

ALL = [name for name, _, _ in types_columns()]


class Served:
    def __init__(self, rig: FlashRig, workload: TypesWorkload, http_url: str) -> None:
        self.rig, self.workload, self.http_url = rig, workload, http_url

    def fresh_ts(self, commits: int = 10) -> int:
        before = self.workload.stats.committed
        wait_for(lambda: self.workload.stats.committed >= before + commits, 60, "the workload to commit")
        return int(self.rig.cluster.get_ts())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    rig = FlashRig(tmp_path_factory.mktemp("jvm-types"))
    workload = TypesWorkload(rig.cluster, rows=300, seed=5, threads=1, rate=25)
    try:
        workload.setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TYPES_TABLE)
        with serve(rig.store, port=0) as running:
            workload.start()
            try:
                yield Served(rig, workload, running.http_url)
            finally:
                workload.stop()
        assert not workload.stats.errors, workload.stats.summary()
    finally:
        rig.close()


# -- functions run in the Spark worker with the jar (tests/support/jvm_spark.py) ---------------------
def jvm_read(spark: Any, options: dict[str, str], where: str | None, select: list[str] | None) -> pa.Table:
    df = spark.read.format("theflash").options(**options).load(TYPES_TABLE)
    if where:
        df = df.filter(where)
    if select:
        df = df.select(*select)
    return df.toArrow()


def jvm_explain(spark: Any, options: dict[str, str], where: str, select: list[str]) -> tuple[str, int]:
    df = spark.read.format("theflash").options(**options).load(TYPES_TABLE).filter(where).select(*select)
    rows = df.collect()  # through this plan: its scan has opened its read session, which explain() shows
    return df._jdf.queryExecution().executedPlan().toString(), len(rows)


def python_read(spark: Any, rig: FlashRig, ts: int, where: str | None, select: list[str] | None,
                hidden: list[str]) -> pa.Table:
    options = rig.options(snapshot_ts=ts)
    if hidden:
        options["hidden"] = ",".join(hidden)
    df = spark.read.format("theflash").options(**options).load(TYPES_TABLE)
    if where:
        df = df.filter(where)
    if select:
        df = df.select(*select)
    return df.toArrow()


def same_rows(jvm: pa.Table, python: pa.Table, what: str) -> None:
    # names and types; nullability is not compared: the Python path's native half (Spark's own
    # Parquet reader) makes every column nullable, the JVM connector keeps the table's
    assert [(f.name, f.type) for f in jvm.schema] == [(f.name, f.type) for f in python.schema], what
    jvm, python = jvm.sort_by("id"), python.sort_by("id")
    assert jvm.num_rows == python.num_rows, what
    for name in jvm.column_names:
        assert jvm.column(name).to_pylist() == python.column(name).to_pylist(), f"{what}: column {name}"


# (Spark SQL filter, selected columns (None: all), hidden columns)
CASES: list[tuple[str | None, list[str] | None, list[str]]] = [
    (None, None, ["_tidb_rowid", "_tidb_commit_ts"]),
    ("i32 > 0 AND vc LIKE 'alpha%'", ["id", "i32", "vc", "dec38", "tsz", "bl", "u64", "js"], []),
    ("d >= DATE'2020-01-20' AND en IN ('alpha', 'gamma') AND dtm < TIMESTAMP_NTZ'2024-01-02 12:00:00'",
     ["id", "u64", "b64", "d", "en", "dtm"], []),
    ("(dec < 0 OR u64 > 1000000000000) AND tsz >= TIMESTAMP'2030-06-02 00:00:00+00:00' "
     "AND bn != X'000000000000' AND f64 IS NOT NULL", None, []),
    ("NOT (en IN ('alpha', 'beta')) AND NOT (i8 <=> 3) AND i16 IS NULL OR u8 = 1", ["id", "en", "i8", "i16", "u8"], []),
]


def test_jvm_and_python_sources_read_the_same_rows_of_every_type_at_one_ts(
        spark: Any, jvm_spark: JvmSpark, served: Served) -> None:
    ts = served.fresh_ts()
    for where, select, hidden in CASES:
        options = {"server": served.http_url, "snapshot_ts": str(ts)}
        if hidden:
            options["hidden"] = ",".join(hidden)
        got = jvm_spark.call(jvm_read, options, where, select)
        expected = python_read(spark, served.rig, ts, where, select, hidden)
        assert expected.num_rows > 0 or where is not None, where
        same_rows(got, expected, f"{where} {select}")
    assert expected.column_names == ["id", "en", "i8", "i16", "u8"]


def test_explain_shows_the_pruned_read_schema_and_the_filters_the_service_evaluates(
        jvm_spark: JvmSpark, served: Served) -> None:
    options = {"server": served.http_url, "snapshot_ts": str(served.fresh_ts())}
    # i32 > 0 and the IN list go to the service; the float comparison stays with Spark (NaN)
    plan, count = jvm_spark.call(jvm_explain, options, "i32 > 0 AND en IN ('alpha', 'gamma') AND f64 > 0",
                                 ["id", "vc"])
    assert count > 0
    # the filter's columns are read only where Spark still needs them (f64)
    assert "ReadSchema: struct<id:bigint,f64:double,vc:string>" in plan, plan
    assert "PushedFilters: [i32 IS NOT NULL, i32 > 0, en IN ('alpha', 'gamma')]" in plan, plan
    assert "Filter (isnotnull(f64#" in plan and "Filter (isnotnull(i32" not in plan, plan  # handled ones are gone
    # the Spark partitions: the regions grouped by bytes (a tiny table: min_partitions' share)
    streams = re.search(r"ReadStreams: (\d+) over (\d+) regions, sized by bytes \([0-9.]+ MiB, "
                        r"partition_target_bytes 128MiB\)", plan)
    assert streams is not None, plan
    assert 1 <= int(streams[1]) <= int(streams[2]), plan
    grouped, _ = jvm_spark.call(jvm_explain, {**options, "partition_target_bytes": "1", "min_partitions": "1"},
                                "i32 > 0", ["id"])
    assert "partition_target_bytes 1)" in grouped, grouped


def jvm_failure(spark: Any, what: str, server: str) -> str:
    reader = spark.read.format("theflash").option("server", server)
    if what == "typos":
        reader.option("isolaton", "RC").option("snapshotts", "1").load(TYPES_TABLE).collect()
    elif what == "write":
        spark.range(1).write.format("theflash").option("server", server).mode("append").save(TYPES_TABLE)
    elif what == "write_default":
        spark.range(1).write.format("theflash").option("server", server).save(TYPES_TABLE)
    elif what == "stream":
        spark.readStream.format("theflash").option("server", server).load(TYPES_TABLE)
    elif what == "insert":
        spark.conf.set("theflash.server", server)
        spark.sql(f"INSERT INTO theflash.{TYPES_TABLE} (id, tag) VALUES (1, 'x')")
    elif what == "delete":
        spark.conf.set("theflash.server", server)
        spark.sql(f"DELETE FROM theflash.{TYPES_TABLE} WHERE id = 1")
    elif what == "create":
        spark.conf.set("theflash.server", server)
        spark.sql("CREATE TABLE theflash.kinds.t (id bigint)")
    elif what == "drop":
        spark.conf.set("theflash.server", server)
        spark.sql(f"DROP TABLE theflash.{TYPES_TABLE}")
    elif what == "version_malformed":
        reader.option("versionAsOf", "yesterday").load(TYPES_TABLE).collect()
    elif what == "version_negative":
        reader.option("versionAsOf", "-3").load(TYPES_TABLE).collect()
    elif what == "time_malformed":
        reader.option("timestampAsOf", "yesterday").load(TYPES_TABLE).collect()
    elif what == "version_and_time":
        reader.option("versionAsOf", "5").option("timestampAsOf", "2026-01-01").load(TYPES_TABLE).collect()
    elif what == "format_table_typo":
        reader.load("kinds.every_typ").collect()
    elif what == "format_store_missing":
        reader.option("store", "/nowhere/flash").load(TYPES_TABLE).collect()
    elif what == "catalog_table_typo":
        spark.conf.set("theflash.server", server)
        spark.sql("SELECT * FROM theflash.kinds.every_typ").collect()
    elif what == "catalog_database_typo":
        spark.conf.set("theflash.server", server)
        spark.sql("SHOW TABLES IN theflash.kind").collect()
    elif what == "catalog_database_unknown":
        spark.conf.set("theflash.server", server)
        spark.sql("SHOW TABLES IN theflash.nope").collect()
    elif what == "catalog_metadata_typo":
        spark.conf.set("theflash.server", server)
        spark.sql(f"SELECT * FROM theflash.{TYPES_TABLE}.histroy").collect()
    elif what == "stream_catalog":
        spark.conf.set("theflash.server", server)
        spark.readStream.table(f"theflash.{TYPES_TABLE}").writeStream.format("console").start().processAllAvailable()
    return "no error"


READ_ONLY = ("[THEFLASH_READ_ONLY_REPLICA] theflash tables are a read-only replica of the upstream TiDB: write to "
             "the upstream, and the changes arrive here through replication ({} is not supported) SQLSTATE: 0A000")
KNOWN = ("as_of, batch_rows, changes, changes_from, columns, endingTimestamp, endingVersion, hidden, isolation, "
         "latch, lease_ttl, lock_wait_timeout, max_rows_per_trigger, max_staleness, min_partitions, "
         "partition_target_bytes, readChangeFeed, region_wait_timeout, schema, server, snapshot, snapshot_ts, "
         "starting_ts, startingTimestamp, startingVersion, store, table, timestampAsOf, token, token_file, upstream, "
         "versionAsOf")
NEEDS_START = ('a streaming read of a theflash table streams its changes: use spark.readStream.format("theflash")'
               '.option("starting_ts", "latest") (or earliest, or a TSO), so its schema is a change stream\'s: the '
               "table's columns, then _change_type, _commit_ts, _commit_timestamp, _tidb_rowid")
ERRORS = [
    ("typos", "IllegalArgumentException", "unknown options 'isolaton' (did you mean 'isolation'?), 'snapshotts' "
                                          f"(did you mean 'snapshot_ts'?); theflash reads take: {KNOWN}"),
    ("write", "AnalysisException", READ_ONLY.format("writing a DataFrame")),
    ("write_default", "AnalysisException", READ_ONLY.format("writing a DataFrame")),
    ("stream", "IllegalArgumentException", NEEDS_START),
    ("insert", "AnalysisException", READ_ONLY.format(f"writing to {TYPES_TABLE}")),
    ("delete", "AnalysisException", READ_ONLY.format(f"deleting from {TYPES_TABLE}")),
    ("create", "AnalysisException", READ_ONLY.format("CREATE TABLE")),
    ("drop", "AnalysisException", READ_ONLY.format("DROP TABLE")),
    # Delta's names are reported as given (the Python source's too), not as snapshot_ts/as_of
    ("version_malformed", "IllegalArgumentException",
     "option versionAsOf='yesterday' is not a TSO number (physical_ms << 18 | logical)"),
    ("version_negative", "IllegalArgumentException", "option versionAsOf='-3' must be a positive TSO number"),
    ("version_and_time", "IllegalArgumentException", "give either versionAsOf or timestampAsOf, not both"),
    ("time_malformed", "IllegalArgumentException",
     "option timestampAsOf='yesterday' is not a time: write ISO-8601 like '2026-11-21 06:00:00' (UTC unless an "
     "offset such as +08:00 is given) or unix seconds"),
    # format("theflash") of a misspelt table: the store's closest tables, as the CLI and the catalog name them
    ("format_table_typo", "IllegalArgumentException",
     "the theflash store has no table kinds.every_typ; did you mean kinds.every_type? (its tables: kinds.every_type)"),
    # Spark's condition and SQLSTATE, with the store's closest tables (as store/errors.py closest_tables)
    ("catalog_table_typo", "AnalysisException",
     "[TABLE_OR_VIEW_NOT_FOUND] The table or view `theflash`.`kinds`.`every_typ` cannot be found: the theflash "
     "store has no table kinds.every_typ; did you mean theflash.kinds.every_type? (its tables: kinds.every_type). "
     "SQLSTATE: 42P01"),
    # a wrong database: Spark's SCHEMA_NOT_FOUND, with the store's closest databases and the ones it has
    ("catalog_database_typo", "AnalysisException",
     "[SCHEMA_NOT_FOUND] The schema `theflash`.`kind` cannot be found: the theflash store has no database kind; "
     "did you mean theflash.kinds? (its databases: kinds). SQLSTATE: 42704"),
    ("catalog_database_unknown", "AnalysisException",
     "[SCHEMA_NOT_FOUND] The schema `theflash`.`nope` cannot be found: the theflash store has no database nope "
     "(its databases: kinds). SQLSTATE: 42704"),
    ("catalog_metadata_typo", "AnalysisException",
     f"[TABLE_OR_VIEW_NOT_FOUND] The table or view `theflash`.`kinds`.`every_type`.`histroy` cannot be found: "
     f"table {TYPES_TABLE} has no metadata table histroy; did you mean theflash.{TYPES_TABLE}.history? (its metadata "
     "tables: history, schemas, regions, parts). SQLSTATE: 42P01"),
]


@pytest.mark.parametrize("what,kind,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_misspelt_options_and_tables_writes_ddl_and_streaming_reads_are_refused_word_for_word(
        jvm_spark: JvmSpark, served: Served, what: str, kind: str, message: str) -> None:
    with pytest.raises(RemoteError) as caught:
        jvm_spark.call(jvm_failure, what, served.http_url)
    assert (caught.value.kind, caught.value.message) == (kind, message)


def test_a_streaming_query_of_a_catalog_table_is_told_to_stream_changes_with_starting_ts(
        jvm_spark: JvmSpark, served: Served) -> None:
    with pytest.raises(RemoteError) as caught:
        jvm_spark.call(jvm_failure, "stream_catalog", served.http_url)
    assert caught.value.kind == "StreamingQueryException"
    assert f"terminated with exception: {NEEDS_START}" in caught.value.message


# -- the catalog: spark.sql.catalog.theflash = io.theflash.spark.TheFlashCatalog ---------------
def jvm_sql(spark: Any, server: str, statements: list[str], pin: int | None = None) -> list[list[tuple[Any, ...]]]:
    spark.conf.set("theflash.server", server)
    if pin is None:
        spark.conf.unset("theflash.snapshot_ts")
    else:
        spark.conf.set("theflash.snapshot_ts", str(pin))
    try:
        return [[tuple(r) for r in spark.sql(s).collect()] for s in statements]
    finally:
        spark.conf.unset("theflash.snapshot_ts")


def jvm_read_at(spark: Any, server: str, ts: int) -> list[tuple[Any, ...]]:
    rows = spark.read.format("theflash").option("server", server).option("snapshot_ts", str(ts)).load(TYPES_TABLE)
    return [tuple(r) for r in rows.selectExpr(*SUMMARY).collect()]


SUMMARY = ["count(*)", "sum(id)", "sum(i32)", "max(vc)", "sum(dec)", "max(tsz)"]


def jvm_pinned(spark: Any, server: str, store: str, upstream: str, ts: int) -> tuple[Any, ...]:
    from pyspark_theflash.spark import pinned_snapshot

    spark.conf.set("theflash.server", server)

    def summary() -> list[tuple[Any, ...]]:
        return [tuple(r) for r in spark.read.format("theflash").load(TYPES_TABLE).selectExpr(*SUMMARY).collect()]

    with pinned_snapshot(spark, store, ts=ts, upstream=upstream) as pinned:
        inside = (pinned, spark.conf.get("theflash.snapshot_ts"), summary())
    return (*inside, spark.conf.get("theflash.snapshot_ts", None))


def test_a_pinned_snapshot_holds_every_read_of_the_block_at_its_ts(jvm_spark: JvmSpark, served: Served) -> None:
    ts = served.fresh_ts()
    expected = jvm_spark.call(jvm_read_at, served.http_url, ts)
    served.fresh_ts()  # the table moves on
    pinned, conf, inside, after = jvm_spark.call(jvm_pinned, served.http_url, served.rig.store, served.rig.upstream, ts)
    assert (pinned, conf, after) == (ts, str(ts), None)
    assert inside == expected
    assert jvm_spark.call(jvm_read_at, served.http_url, served.fresh_ts()) != expected


def test_the_catalog_lists_databases_and_tables_and_describes_columns_with_their_tidb_types(
        jvm_spark: JvmSpark, served: Served) -> None:
    namespaces, tables, describe = jvm_spark.call(jvm_sql, served.http_url, [
        "SHOW NAMESPACES IN theflash", "SHOW TABLES IN theflash.kinds", "DESCRIBE TABLE theflash.kinds.every_type"])
    assert ("kinds",) in namespaces
    assert tables == [("kinds", "every_type", False)]
    columns = {name: (data_type, comment) for name, data_type, comment in describe}
    assert list(columns) == [name for name, _, _ in types_columns()]
    assert columns["dec"] == ("decimal(12,2)", "DECIMAL(12,2)")
    assert columns["u64"] == ("decimal(20,0)", "BIGINT UNSIGNED")
    assert columns["tsz"] == ("timestamp", "TIMESTAMP(6)")
    assert columns["dtm"] == ("timestamp_ntz", "DATETIME(6)")
    assert columns["en"] == ("string", "ENUM('alpha','beta','gamma')")
    assert columns["bn"] == ("binary", "BINARY(6)")


def test_sql_time_travel_with_version_and_timestamp_as_of_and_the_session_pin_read_that_snapshot(
        jvm_spark: JvmSpark, served: Served) -> None:
    from pyspark_theflash.scan.snapshot import as_of_to_ts, ts_to_datetime

    ts = served.fresh_ts()
    at = ts_to_datetime(ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]  # the ms of ts, UTC (the session's zone)
    served.fresh_ts()  # more commits after ts
    select = f"SELECT {', '.join(SUMMARY)} FROM theflash.{TYPES_TABLE}"
    by_version, by_time, latest = jvm_spark.call(jvm_sql, served.http_url, [
        f"{select} VERSION AS OF {ts}", f"{select} TIMESTAMP AS OF '{at}'", select])
    pinned, = jvm_spark.call(jvm_sql, served.http_url, [select], ts)
    assert by_version == pinned == jvm_spark.call(jvm_read_at, served.http_url, ts)
    assert by_time == jvm_spark.call(jvm_read_at, served.http_url, as_of_to_ts(at))
    assert by_version[0][0] > 0 and latest != by_version  # the workload kept writing after ts


def jvm_limit_and_statistics(spark: Any, options: dict[str, str]) -> tuple[str, int, int, int, int]:
    df = spark.read.format("theflash").options(**options).load(TYPES_TABLE).select("id", "vc")
    limited = df.limit(7)
    plan = limited._jdf.queryExecution().executedPlan().toString()
    stats = df._jdf.queryExecution().optimizedPlan().stats()
    return (plan, len(limited.collect()), df.count(), int(str(stats.rowCount().get())),
            int(str(stats.sizeInBytes())))


def test_a_limit_reaches_the_streams_and_the_optimizer_sees_the_sessions_rows_and_bytes(
        jvm_spark: JvmSpark, served: Served) -> None:
    ts = served.fresh_ts()
    plan, n, count, rows, size = jvm_spark.call(jvm_limit_and_statistics,
                                                {"server": served.http_url, "snapshot_ts": str(ts)})
    assert n == 7
    assert "PushedLimit: 7, ReadSchema: struct<id:bigint,vc:string>" in plan, plan
    # the session's estimates: every stored version counts (an upper bound), Arrow bytes of the
    # two columns, far below Spark's default size for a source that reports nothing (8 EiB)
    assert count <= rows, (count, rows)
    assert 0 < size < 64 << 20


def jvm_schema_subset(spark: Any, server: str, ts: int, schema: str) -> pa.Table:
    return (spark.read.format("theflash").option("server", server).option("snapshot_ts", str(ts)).schema(schema)
            .load(TYPES_TABLE).toArrow())


def test_a_user_schema_with_a_subset_of_the_columns_reads_those_columns(
        spark: Any, jvm_spark: JvmSpark, served: Served) -> None:
    ts = served.fresh_ts()
    got = jvm_spark.call(jvm_schema_subset, served.http_url, ts, "id BIGINT, dec DECIMAL(12,2), tsz TIMESTAMP")
    same_rows(got, python_read(spark, served.rig, ts, None, ["id", "dec", "tsz"], []), "schema subset")
    with pytest.raises(RemoteError) as caught:
        jvm_spark.call(jvm_schema_subset, served.http_url, ts, "id INT")
    assert caught.value.message == (f"column id of {TYPES_TABLE} is BIGINT, not INT: give its type in .schema(...)")


def jvm_one_dataframe_twice(spark: Any, server: str) -> tuple[list[Any], list[Any], list[Any], str]:
    import time

    def latest() -> list[Any]:
        return [tuple(r) for r in spark.read.format("theflash").option("server", server).load(TYPES_TABLE)
                .selectExpr(*SUMMARY).collect()]

    df = spark.read.format("theflash").option("server", server).load(TYPES_TABLE)
    first = [tuple(r) for r in df.selectExpr(*SUMMARY).collect()]
    deadline = time.monotonic() + 60
    fresh = latest()
    while fresh == first and time.monotonic() < deadline:  # until the workload has committed since
        fresh = latest()
    again = [tuple(r) for r in df.selectExpr(*SUMMARY).collect()]
    joined = df.alias("a").join(df.alias("b"), "id").selectExpr("count(*)").collect()[0][0]
    plan = df.selectExpr("count(*)")._jdf.queryExecution().executedPlan().toString()
    return first, again, fresh, f"{joined}|{plan}"


def test_a_dataframe_loaded_without_a_ts_reads_one_snapshot_in_every_query_made_from_it(
        jvm_spark: JvmSpark, served: Served) -> None:
    first, again, fresh, joined_and_plan = jvm_spark.call(jvm_one_dataframe_twice, served.http_url)
    joined, plan = joined_and_plan.split("|", 1)
    assert again == first and int(joined) == first[0][0]  # a self-join sees one snapshot
    assert fresh != first  # loading again reads the latest
    assert " snapshot_ts=" in plan, plan


def test_the_jvm_connector_takes_the_python_sources_options_and_its_service_ones() -> None:
    from pyspark_theflash.scan.options import OPTION_DOCS

    # stream_id, stream_columns: the jar sends its own (a digest of the checkpoint location, its
    # schema's columns), no user option of them
    assert KNOWN.split(", ") == sorted([name for name, _, _ in OPTION_DOCS
                                        if name not in ("stream_id", "stream_columns")] + ["server"], key=str.lower)


def jvm_counts(spark: Any, server: str, ts: int) -> tuple[int, int, int]:
    df = spark.read.format("theflash").option("server", server).option("snapshot_ts", str(ts)).load(TYPES_TABLE)
    return df.count(), df.filter("i32 > 0").count(), df.filter("f64 > 0").count()


def test_counts_that_read_no_column_count_every_row(spark: Any, jvm_spark: JvmSpark, served: Served) -> None:
    ts = served.fresh_ts()
    df = spark.read.format("theflash").options(**served.rig.options(snapshot_ts=ts)).load(TYPES_TABLE)
    expected = (df.count(), df.filter("i32 > 0").count(), df.filter("f64 > 0").count())
    assert jvm_spark.call(jvm_counts, served.http_url, ts) == expected and expected[0] > 0


def test_the_tables_resource_gives_the_arrow_schema_hidden_columns_and_tidb_types(served: Served) -> None:
    import base64

    from service_client import HttpReader

    status, body = HttpReader(served.http_url).json("GET", "/v1/tables")
    assert status == 200
    entry = next(t for t in body["tables"] if t["table"] == TYPES_TABLE)
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(entry["arrow_schema"])))
    assert schema.names == ALL + ["_tidb_rowid", "_tidb_commit_ts"] and entry["hidden"] == ["_tidb_rowid", "_tidb_commit_ts"]
    assert schema.field("tsz").type == pa.timestamp("us", tz="UTC") and schema.field("_tidb_commit_ts").type == pa.int64()
    tidb = {f["name"]: f["tidb_type"] for f in entry["fields"]}
    assert tidb == {name: definition for name, definition, _ in types_columns()}  # as the DDL wrote them



def test_the_jvm_connector_reads_a_clickhouse_store_as_a_native_one(spark: Any, jvm_spark: JvmSpark,
                                                                    tmp_path: Path) -> None:
    """The front ends do not change with the engine: the JVM connector reads a ClickHouse-engine
    store through the service of its writer (``writer run --engine clickhouse --serve``) while
    the types workload writes, and at one ts gets every type exactly as a native store of the
    same binlog gives it."""
    rig = FlashRig(tmp_path / "rig")
    workload = TypesWorkload(rig.cluster, rows=200, seed=11, threads=1, rate=25)
    try:
        workload.setup()
        rig.start_writer(interval_s=0.05, engine="clickhouse", serve_port=0)
        twin = rig.start_twin_writer()
        rig.wait_replicated(TYPES_TABLE)
        where = wait_for(lambda: rig.writer.status().get("serve"), 20, "the writer to publish its service")
        workload.start()
        before = workload.stats.committed
        wait_for(lambda: workload.stats.committed >= before + 20, 60, "the workload to commit")
        ts = int(rig.cluster.get_ts())
        got = jvm_spark.call(jvm_read, {"server": where["http"], "snapshot_ts": str(ts),
                                        "hidden": "_tidb_rowid,_tidb_commit_ts"}, None, None)
        expected = spark.read.format("theflash").options(
            store=twin, upstream=rig.upstream, snapshot_ts=str(ts), hidden="_tidb_rowid,_tidb_commit_ts",
        ).load(TYPES_TABLE).toArrow()  # the Python source, on the native twin
        assert expected.num_rows > 0
        same_rows(got, expected, "clickhouse store through the JVM connector")
        workload.stop()
        assert not workload.stats.errors, workload.stats.summary()
    finally:
        workload.stop()
        rig.close()


# -- times: as_of / timestampAsOf, startingTimestamp, endingTimestamp --------------------------
# Every form the Python side reads (scan/snapshot.py as_of_to_ts: unix seconds as float() reads
# them, else datetime.fromisoformat; naive = UTC), each read through the jar too (which hands
# them to the service: POST /v1/read-options).
TIME_FORMS = [
    "2026-11-21", "2026-11-21 06:00:00", "2026-11-21T06:00:00", "2026-11-21T06", "2026-11-21T06:30",
    "2026-11-21T0630", "2026-11-21T063015", "2026-11-21T06:30:15.123", "2026-11-21T06:30:15,5",
    "2026-11-21T06:30:15.123456789", "2026-11-21T06:30:15Z", "2026-11-21T14:30:15+08:00", "2026-11-21T14:30:15+0800",
    "2026-11-21T14:30:15+08", "2026-11-20T22:30:15-08:00", "2026-11-21T12:00:15+05:29:60.5", "20261121T063015",
    "20261121T063015.25Z", "2026-11-21x06:30", "2026-W47-6", "2026W476T06", "2026-W47", "1763706615", "1763706615.123",
    "1.763706615e9", "1_763_706_615", "1763706615.9999996", "１７６３７０６６１５", " 2026-11-21 06:00:00\u3000",
]
TIME_NAMES = ["timestampAsOf", "as_of", "startingTimestamp", "endingTimestamp"]
# refused by both, word for word under the name given: malformed, or outside what a TSO holds
BAD_TIMES = ["yesterday", "2026-11-21T6:00", "2026-11-21T24:00", "2026-11-21T06:00+24:00", "2026-11-21 06:00:00.",
             "2026-11", "inf", "1969-12-31", "-1", "4200-01-01"]


def time_options(name: str, text: str) -> dict[str, str]:
    if name == "startingTimestamp":
        return {"readChangeFeed": "true", "startingTimestamp": text, "endingVersion": str(1 << 62)}
    if name == "endingTimestamp":
        return {"readChangeFeed": "true", "startingVersion": "2", "endingTimestamp": text}
    return {name: text}


def jvm_times(spark: Any, server: str, name: str, texts: list[str]) -> list[tuple[str, Any]]:
    """What the jar makes of each time given as option ``name``: ("as_of", the text it sends the
    service), ("ts", the ts it reads at / changes_from) or ("refused", the message)."""
    from py4j.java_gateway import get_field
    from pyspark.errors import IllegalArgumentException

    out: list[tuple[str, Any]] = []
    for text in texts:
        options = spark._jvm.java.util.HashMap()
        for key, value in {"server": server, "table": TYPES_TABLE, **time_options(name, text)}.items():
            options.put(key, value)
        try:
            read = spark._jvm.io.theflash.spark.ReadOptions.parse(options, None, None, None)
        except IllegalArgumentException as exc:  # PySpark's, for the JVM's
            out.append(("refused", str(exc)))
            continue
        if name in ("as_of", "timestampAsOf"):
            out.append(("as_of", str(get_field(read, "asOf"))))
        else:
            request = read.request(None, None)
            out.append(("ts", int(request.get("changes_from" if name == "startingTimestamp" else "snapshot_ts"))))
    return out


def python_time(name: str, text: str) -> tuple[str, Any]:
    """The same through the Python source's options: ("ts", ts) or ("refused", the message)."""
    from pyspark_theflash.scan.errors import ScanOptionError
    from pyspark_theflash.scan.options import ScanOptions
    from pyspark_theflash.scan.snapshot import requested_ts

    try:
        options = ScanOptions.from_mapping({"store": "/nowhere", "table": TYPES_TABLE, **time_options(name, text)})
    except ScanOptionError as exc:
        return "refused", str(exc)
    if name == "startingTimestamp":
        return "ts", options.changes_from
    return "ts", requested_ts(options)


@pytest.mark.parametrize("name", TIME_NAMES)
def test_the_jar_reads_every_time_the_python_source_reads_to_the_same_ts(jvm_spark: JvmSpark, served: Served,
                                                                         name: str) -> None:
    from pyspark_theflash.scan.snapshot import as_of_to_ts

    got = jvm_spark.call(jvm_times, served.http_url, name, TIME_FORMS)
    for text, (kind, value) in zip(TIME_FORMS, got):
        expected = python_time(name, text)
        assert expected[0] == "ts", (text, expected)
        if kind == "as_of":  # the jar sends the time; the service reads it as the Python source does
            kind, value = "ts", as_of_to_ts(value)
        assert (kind, value) == expected, text


@pytest.mark.parametrize("name", TIME_NAMES)
def test_a_bad_time_is_refused_by_the_jar_and_the_python_source_alike_under_the_name_given(
        jvm_spark: JvmSpark, served: Served, name: str) -> None:
    got = jvm_spark.call(jvm_times, served.http_url, name, BAD_TIMES)
    for text, jar in zip(BAD_TIMES, got):
        expected = python_time(name, text)
        assert jar == expected, text
        assert expected[0] == "refused" and expected[1].startswith(f"option {name}={text!r} is "), expected


# -- every other option: one set of rules, one wording ------------------------------------------
# Each refused through the jar (ReadOptions.parse, which asks the service: POST /v1/read-options)
# and by the Python source (ScanOptions.from_mapping) with the same words: the aliases under the name given,
# durations, sizes, counts and modes by the Python source's rules, the nearest option named.
REFUSED_OPTIONS: list[dict[str, str]] = [
    {"snapshot_ts": "abc"}, {"snapshot_ts": "-5"}, {"snapshot_ts": "0"}, {"versionAsOf": "x1"},
    {"snapshot_ts": "5", "versionAsOf": "6"}, {"as_of": "2026-01-01", "TIMESTAMPASOF": "2026-01-02"},
    {"snapshot_ts": "5", "as_of": "2026-01-01"}, {"versionAsOf": "5", "timestampAsOf": "2026-01-01"},
    {"snapshot": "stale"}, {"snapshot": "resolved", "snapshot_ts": "5"}, {"snapshot": "resolved", "max_staleness": "5s"},
    {"max_staleness": "5s", "as_of": "2026-01-01"}, {"max_staleness": "soon"}, {"max_staleness": "-1s"},
    {"max_staleness": "0ms"}, {"isolation": "XX"}, {"hidden": "_tidb_rowid,foo"},
    {"changes_from": "5"}, {"changes_from": "abc", "snapshot_ts": "9"}, {"changes_from": "9", "snapshot_ts": "5"},
    {"changes_from": "5", "snapshot_ts": "9", "changes": "sideways"}, {"changes": "net"},
    {"starting_ts": "latest", "snapshot_ts": "5"}, {"readChangeFeed": "maybe"}, {"startingVersion": "5"},
    {"readChangeFeed": "true"}, {"readChangeFeed": "true", "startingVersion": "abc"},
    {"readChangeFeed": "true", "startingVersion": "1"},
    {"readChangeFeed": "true", "startingVersion": "9", "endingVersion": "5"},
    {"readChangeFeed": "true", "startingVersion": "5", "startingTimestamp": "2026-01-01"},
    {"readChangeFeed": "true", "startingVersion": "5", "snapshot_ts": "9"},
    {"region_wait_timeout": "soon"}, {"region_wait_timeout": "-1s"}, {"region_wait_timeout": ""},
    {"lock_wait_timeout": "5 m s"}, {"lease_ttl": "1.5.5s"}, {"batch_rows": "0"}, {"batch_rows": "many"},
    {"batch_rows": "1__000"}, {"min_partitions": "-1"}, {"partition_target_bytes": "big"},
    {"partition_target_bytes": "64 TiB"}, {"schema": "sometimes"}, {"schema": "  "}, {"table": "nodot"},
    {"snapshto_ts": "5"}, {"tabel": "a.b"}, {"isolaton": "RC"}, {"foo": "1", "bar": "2"},
]
ACCEPTED_OPTIONS: list[dict[str, str]] = [
    {"isolation": "rc"}, {"hidden": "_tidb_rowid"}, {"region_wait_timeout": " 1.5 MS "}, {"lease_ttl": "2min"},
    {"lock_wait_timeout": ".5"}, {"batch_rows": "1_000"}, {"batch_rows": "+7"}, {"min_partitions": "\u0663"},
    {"partition_target_bytes": "64MiB"}, {"partition_target_bytes": "1.5 g"}, {"schema": "AS-OF"},
    {"schema": ""}, {"max_staleness": "2m"}, {"snapshot": "resolved"},
]
READS_TAKE = "; theflash reads take: "


def jvm_option_refusals(spark: Any, server: str, cases: list[dict[str, str]]) -> list[str]:
    """What ReadOptions.parse says of each set of options: "accepted" or its message."""
    from pyspark.errors import IllegalArgumentException

    out = []
    for case in cases:
        options = spark._jvm.java.util.HashMap()
        for key, value in {"server": server, "table": TYPES_TABLE, **case}.items():
            options.put(key.lower(), value)  # as Spark hands a source its options
        try:
            spark._jvm.io.theflash.spark.ReadOptions.parse(options, None, None, None)
            out.append("accepted")
        except IllegalArgumentException as exc:
            out.append(str(exc))
    return out


def python_option_refusal(case: dict[str, str]) -> str:
    from pyspark_theflash.scan.errors import ScanOptionError
    from pyspark_theflash.scan.options import ScanOptions

    try:
        ScanOptions.from_mapping({"store": "/nowhere", "table": TYPES_TABLE, **case})
    except ScanOptionError as exc:
        return str(exc)
    return "accepted"


def test_every_read_option_is_refused_by_the_jar_and_the_python_source_in_the_same_words(
        jvm_spark: JvmSpark, served: Served) -> None:
    from pyspark_theflash.scan.options import option_names

    jar = jvm_spark.call(jvm_option_refusals, served.http_url, REFUSED_OPTIONS + ACCEPTED_OPTIONS)
    for case, said in zip(ACCEPTED_OPTIONS, jar[len(REFUSED_OPTIONS):]):
        assert (said, python_option_refusal(case)) == ("accepted", "accepted"), case
    for case, said in zip(REFUSED_OPTIONS, jar):
        python = python_option_refusal(case)
        assert python != "accepted", case
        if READS_TAKE in python:  # the same words; each lists the options its own path takes
            assert said.split(READS_TAKE)[0] == python.split(READS_TAKE)[0], case
            assert python.split(READS_TAKE)[1] == ", ".join(option_names()), case
            assert said.split(READS_TAKE)[1] == KNOWN, case
        else:
            assert said == python, case
    # the nearest option, by the same rule in both
    assert "(did you mean 'table'?)" in jar[REFUSED_OPTIONS.index({"tabel": "a.b"})]
    assert "(did you mean 'isolation'?)" in jar[REFUSED_OPTIONS.index({"isolaton": "RC"})]


def jvm_summary(spark: Any, options: dict[str, str]) -> list[tuple[Any, ...]]:
    rows = spark.read.format("theflash").options(**options).load(TYPES_TABLE)
    return [tuple(r) for r in rows.selectExpr(*SUMMARY).collect()]


def test_a_jar_read_as_of_a_compact_time_with_a_colonless_offset_reads_its_ts(
        jvm_spark: JvmSpark, served: Served) -> None:
    import datetime as dt

    from pyspark_theflash.scan.snapshot import as_of_to_ts, ts_to_datetime

    ts = served.fresh_ts()
    at = (ts_to_datetime(ts) + dt.timedelta(hours=8)).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "+0800"
    served.fresh_ts()  # more commits after it
    got = jvm_spark.call(jvm_summary, {"server": served.http_url, "timestampAsOf": at})
    assert got == jvm_spark.call(jvm_read_at, served.http_url, as_of_to_ts(at))
    assert got != jvm_spark.call(jvm_summary, {"server": served.http_url})  # not the latest


def test_a_store_the_service_does_not_serve_is_one_line_through_the_jar(jvm_spark: JvmSpark, served: Served) -> None:
    """The service's error reaches PySpark as its message (an IllegalArgumentException), not as a
    Py4JJavaError carrying the JVM's stack."""
    with pytest.raises(RemoteError) as caught:
        jvm_spark.call(jvm_failure, "format_store_missing", served.http_url)
    assert caught.value.kind == "IllegalArgumentException", caught.value.kind
    message = caught.value.message
    assert len(message.strip().splitlines()) == 1 and "\tat " not in message, message
    assert "/nowhere/flash" in message, message


def test_spark_sql_prints_each_user_error_as_its_message_without_a_stack(served: Served, tmp_path: Path) -> None:
    """spark-sql prints the stack of any exception that is not a SparkThrowable of a SQLSTATE
    outside XX (and its driver logs it as an ERROR): the connector's refusals are such
    SparkThrowables (UserErrorException, ServiceException, ServiceUnreachableException), so
    each statement below is answered by its message alone, one line, naming what is wrong and
    what to do. Four catalogs: the service's own store, a store it does not serve, no service,
    and a store whose writer stopped, whose read waits: after 2 s it says so once in Spark's log
    (WARN), naming the table, the furthest region and its lag, then times out in one line.
    A write is refused as an AnalysisException without a cause, which spark-sql prints as its
    sentence alone: the last statement, so spark-sql's exit status is its refusal's (with
    hive.cli.errors.ignore the status is the last statement's). This covers what
    test_spark_sql_prints_the_read_only_refusal_as_its_one_sentence checked in a spark-sql run of
    its own, one JVM start more (issue 54)."""
    import os
    import subprocess
    import sys

    from pyspark_theflash.spark.jar import jar_path
    from pyspark_theflash.upstream.tidb import make_column

    stalled = FlashRig(tmp_path / "stalled")
    stalled.cluster.create_table("st.w", [make_column("id", "BIGINT", not_null=True)], primary_key=["id"])
    stalled.start_writer(interval_s=0.05)
    with stalled.cluster.txn() as t:
        t.insert("st.w", {"id": 1})
    stalled.wait_replicated("st.w")
    # the row read back at a ts after its commit: the store then holds the table's region too (the
    # wait notice names it), not only its schema (a loaded run once stopped the writer in between)
    assert stalled.read_at(stalled.store, "st.w", stalled.cluster.get_ts()).column("id").to_pylist() == [1]
    stalled.stop_writer()
    with stalled.cluster.txn() as t:  # a commit the store will not see
        t.insert("st.w", {"id": 2})
    stalled_service = serve(stalled.store, port=0)

    statements = {
        f"SELECT count(*) FROM theflash.{TYPES_TABLE} VERSION AS OF 'yesterday'":
            ["option VERSION AS OF='yesterday' is not a TSO number"],
        f"SELECT count(*) FROM theflash.{TYPES_TABLE} VERSION AS OF 1":
            [f"table {TYPES_TABLE} ", f"(theflash service {served.http_url}: 404 unknown_table)"],  # not yet created
        "SELECT count(*) FROM theflash.kinds.every_typ": ["did you mean theflash.kinds.every_type?"],
        "SHOW TABLES IN theflash.kind": ["did you mean theflash.kinds?"],
        f"SELECT count(*) FROM elsewhere.{TYPES_TABLE}":
            ["/nowhere/flash", f"(theflash service {served.http_url}: 400 wrong_store)"],
        f"SELECT count(*) FROM gone.{TYPES_TABLE}":
            ["cannot reach the theflash service at http://127.0.0.1:9", "theflash serve --store DIR"],
        "SELECT count(*) FROM stalled.st.w": ["reading st.w at ts ", "did not catch up within 6s", "writer status",
                                              f"(theflash service {stalled_service.http_url}: 504 timeout)"],
        f"INSERT INTO theflash.{TYPES_TABLE} (id) VALUES (1)": [READ_ONLY.format(f"writing to {TYPES_TABLE}")],
    }
    bin_dir = Path(sys.executable).parent
    catalogs = {"theflash": {"server": served.http_url},
                "elsewhere": {"server": served.http_url, "store": "/nowhere/flash"},
                "gone": {"server": "http://127.0.0.1:9"},
                "stalled": {"server": stalled_service.http_url, "region_wait_timeout": "6s"}}
    conf = [w for name, settings in catalogs.items() for w in (
        "--conf", f"spark.sql.catalog.{name}=io.theflash.spark.TheFlashCatalog",
        *(x for key, value in settings.items() for x in ("--conf", f"spark.sql.catalog.{name}.{key}={value}")))]
    try:
        done = subprocess.run(
            [str(bin_dir / "spark-sql"), "--jars", str(jar_path()), *conf, "--conf", "spark.ui.enabled=false",
             "--hiveconf", "hive.cli.errors.ignore=true", "-e", "; ".join(statements)],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
            env={**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"})
    finally:
        stalled_service.close()
        stalled.close()
    waits = [line for line in done.stderr.splitlines() if " WARN ServiceClient: " in line]
    assert len(waits) == 1, done.stderr[-5000:]
    assert "theflash: reading st.w waits for the store's regions to reach the read's ts (1 region(s)" in waits[0]
    assert " s behind the upstream); is the writer applying the binlog" in waits[0], waits[0]
    said = [line for line in done.stderr.splitlines() if line.strip() and " WARN " not in line
            and not line.startswith(("WARNING:", "Using Spark's", "To adjust", "Spark master:", "Setting default"))]
    assert len(said) == len(statements), done.stderr[-5000:]
    for line, names in zip(said, statements.values()):
        assert all(name in line for name in names), (names, line)
    assert said[-1] == READ_ONLY.format(f"writing to {TYPES_TABLE}"), said[-1]  # the refusal's sentence alone
    assert done.returncode != 0, done.stderr[-5000:]  # the last statement, the write, failed spark-sql
    assert "\tat " not in done.stderr and " ERROR " not in done.stderr, done.stderr[-5000:]
    assert "Exception:" not in done.stderr, done.stderr[-5000:]


# -- the form the service answers and the jar keeps (POST /v1/read-options) ---------------------
FORM_OPTIONS = [
    {"store": "/data/flash", "versionAsOf": "77", "isolation": "rc", "columns": "a, b", "hidden": "_tidb_rowid",
     "batch_rows": "1_000", "min_partitions": "3", "schema": "current", "lease_ttl": "2m"},
    {"timestampAsOf": "2026-11-21 06:00:00", "snapshot": " Fresh ", "region_wait_timeout": "5s"},
    {"max_staleness": "5s", "partition_target_bytes": "64MiB", "lock_wait_timeout": "1m"},
    {"readChangeFeed": "true", "startingVersion": "5", "endingVersion": "9", "changes": "net"},
    {"readChangeFeed": "true", "startingVersion": "5"},
]


def jvm_forms(spark: Any, server: str, cases: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Each field of what ReadOptions.parse keeps, read from the JVM object."""
    from py4j.java_gateway import get_field

    out = []
    for case in cases:
        options = spark._jvm.java.util.HashMap()
        for key, value in {"server": server, "table": TYPES_TABLE, **case}.items():
            options.put(key.lower(), value)
        read = spark._jvm.io.theflash.spark.ReadOptions.parse(options, None, None, None)
        out.append({
            "table": get_field(read, "table"), "store": get_field(read, "store"),
            "snapshot_ts": get_field(read, "snapshotTs"), "as_of": get_field(read, "asOf"),
            "isolation": get_field(read, "isolation"), "snapshot": get_field(read, "snapshot"),
            "max_staleness": get_field(read, "maxStaleness"), "columns": list(get_field(read, "columns")),
            "hidden": list(get_field(read, "hidden")), "request": dict(get_field(read, "requestOptions")),
            "feed_from": get_field(read, "feedFrom"), "raw": dict(get_field(read, "raw")),
        })
    return out


def test_every_field_of_the_services_form_is_what_the_jar_keeps_and_what_docs_name(
        jvm_spark: JvmSpark, served: Served) -> None:
    """The service writes the form (scan/options.py connector_read_form); the jar reads it
    (ReadOptions.java): each field, read back from the JVM, is the service's value; docs/service.md
    names the same fields."""
    from pyspark_theflash.scan.options import connector_read_form

    jar = jvm_spark.call(jvm_forms, served.http_url, FORM_OPTIONS)
    for case, kept in zip(FORM_OPTIONS, jar):
        form = connector_read_form({k.lower(): v for k, v in {"server": served.http_url, "table": TYPES_TABLE,
                                                                **case}.items()})
        assert kept == form, case
    assert jar[0]["snapshot_ts"] == 77 and jar[0]["request"]["min_streams"] == "3" and jar[0]["isolation"] == "RC"
    assert jar[4]["feed_from"] == 4 and jar[4]["raw"]["starting_ts"] == "4"
    docs = (Path(__file__).resolve().parents[2] / "docs" / "service.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| `POST /v1/read-options`"))
    named = re.search(r'\{"options": \{([^}]*)\}\}', row)
    assert named, row
    assert [f.strip().strip('"') for f in named.group(1).split(",")] == list(jar[0]), row
