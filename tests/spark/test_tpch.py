"""TPC-H at SF 0.01, differential: the 22 queries over ``format("theflash")`` views give exactly
the rows Spark gives over ``spark.read.parquet`` of the same snapshot (tests/support/tpch_rig.py), with
``lineitem`` and ``orders`` partitioned by date range as TiDB users partition them (a year a
partition, ``tpch_rig.PARTITIONS``): their rows live under the partitions' ids, and the date
filters of the queries prune partitions.

Both read paths are checked: the Spark connector jar (the JVM DataSource V2, reading through a
service, with its column pruning and filter pushdown) and the Python data source; and, beside
Spark, the same 22 query texts sent over Arrow Flight SQL (ADBC) to `theflash serve` on the
native store, where DuckDB computes them over the read streams at the same ts (issue 52, item 6). Each side's
DataFrames are loaded once and reused, as views, by all 22 queries: a filter pushed while
planning one query must not narrow what a later query reads from the same DataFrame.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterator

import pytest

import tpch_rig
from pyspark_theflash.service import serve
from tpch_rig import TABLES, TpchDeployment

pytestmark = pytest.mark.spark

SF = 0.01
SNAPSHOT_TS = re.compile(r"snapshot_ts=(\d+)")


def plan_ts(df: Any) -> set[int]:
    """The snapshot ts values ``explain()`` of ``df`` shows (the connector's scans)."""
    return {int(m) for m in SNAPSHOT_TS.findall(df._jdf.queryExecution().executedPlan().toString())}


@pytest.fixture(scope="module")
def tpch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TpchDeployment]:
    # a resolved-ts tick of 0.25 s, not the rig's 0.05: after the load nothing is written, and the
    # 48 regions' ticks (change feed -> capture -> binlog -> writer) took a third to a half of a core
    # for the whole module, beside the Spark JVMs; the one test reading at fresh ts waits a tick more
    deployment = tpch_rig.deploy(tmp_path_factory.mktemp("tpch"), SF, partitioned=True, resolved_ts_interval=0.25)
    assert len(deployment.rig.cluster.table_info(tpch_rig.DB, "lineitem")["partition"]["definitions"]) == 8
    yield deployment
    deployment.close()


@pytest.fixture(scope="module")
def queries() -> dict[int, str]:
    got = tpch_rig.queries()
    assert sorted(got) == list(range(1, 23))
    return got


@pytest.fixture(scope="module")
def expected(spark: Any, tpch: TpchDeployment, queries: dict[int, str]) -> dict[int, list[tuple[Any, ...]]]:
    """Spark's answers over the Parquet copy of the snapshot."""
    tpch_rig.register_views(tpch_rig.parquet_frames(spark, tpch))
    answers = {n: tpch_rig.run_query(spark, n, q).rows for n, q in queries.items()}
    # TPC-H at SF 0.01 answers every query with rows (Q17's one row is NULL there), so an empty
    # answer on the theflash side cannot pass as equal by accident
    assert all(answers.values()), [n for n, rows in answers.items() if not rows]
    return answers


def differences(spark: Any, queries: dict[int, str], expected: dict[int, list[tuple[Any, ...]]]) -> dict[int, str]:
    """Run the 22 queries in order over the registered views; how each wrong answer differs."""
    out = {}
    for n, text in queries.items():
        got = tpch_rig.run_query(spark, n, text).rows
        if got != expected[n]:
            out[n] = tpch_rig.describe_difference(got, expected[n])
    return out


def jvm_differences(spark: Any, store: str, server: str, token: str, ts: int, qualified: dict[str, str],
                    queries: dict[int, str], expected: dict[int, list[tuple[Any, ...]]]) -> tuple[dict[int, str], dict]:
    """In the Spark worker with the jar: the 22 queries over views of the JVM connector, which
    reads through ``server`` (a service of any store, as ``theflash_session()`` starts), then
    the reused DataFrames' row counts."""
    spark.conf.set("theflash.server", server)
    spark.conf.set("theflash.token", token)
    frames = {name: spark.read.format("theflash").option("store", store).option("snapshot_ts", str(ts)).load(table)
              for name, table in qualified.items()}
    plan = frames["lineitem"]._jdf.queryExecution().executedPlan().toString()
    assert "TheFlashScan" in plan, plan
    tpch_rig.register_views(frames)
    return differences(spark, queries, expected), {name: df.count() for name, df in frames.items()}


def test_the_22_queries_on_reused_views_of_the_jvm_connector_equal_spark_on_parquet(
        jvm_spark: Any, tpch: TpchDeployment, queries: dict[int, str], expected: dict[int, list[tuple[Any, ...]]]) -> None:
    token = "tpch-token"
    with serve(any_store=True, port=0, token=token) as service:
        wrong, counts = jvm_spark.call(jvm_differences, tpch.rig.store, service.http_url, token, tpch.ts,
                                       {name: tpch.qualified(name) for name in TABLES}, queries, expected)
    assert not wrong, f"{len(wrong)}/22 TPC-H queries differ from Parquet: {wrong}"
    # the same DataFrames, after 22 queries' filters were pushed through them, still hold everything
    assert counts == tpch.rows


# The Python source, Flight SQL and the views each counted at a ts of their own run all 22 in
# the slow run; by default seven that between them take every table and the shapes the 22 have:
# aggregates over a date range (1), joins with date filters (3), a six-way join (5), LIKE over a
# join (9), an outer join with NOT LIKE (13), an IN subquery with GROUP BY ... HAVING (18), EXISTS
# and NOT EXISTS (21). The jar's reused views run all 22 always.
PYTHON_DEFAULT = (1, 3, 5, 9, 13, 18, 21)


def default_or_all(queries: dict[int, str]) -> dict[int, str]:
    """All 22 in the slow run (THEFLASH_SLOW), PYTHON_DEFAULT's seven by default."""
    return queries if os.environ.get("THEFLASH_SLOW") else {n: queries[n] for n in PYTHON_DEFAULT}


def jvm_explored(spark: Any, store: str, server: str, token: str, qualified: dict[str, str], queries: dict[int, str],
                 expected: dict[int, list[tuple[Any, ...]]]) -> dict[str, Any]:
    """Data exploration as users do it (issue 49): each table loaded as a view with no ts of its
    own and counted (so each is read at a ts of its own), then the 22 queries over the views.
    Returns the counts, the ts each view was read at, and per query how it went: its answer's
    difference from Parquet, a refusal, or the ts its plan shows."""
    spark.conf.set("theflash.server", server)
    spark.conf.set("theflash.token", token)
    spark.conf.unset("theflash.snapshot_ts")
    spark.conf.unset("theflash.mixed_snapshots")
    counts, read_at = {}, {}
    for name, table in qualified.items():
        spark.read.format("theflash").option("store", store).load(table).createOrReplaceTempView(name)
        counts[name] = spark.table(name).count()  # a look at each table: it is read now
        read_at[name] = sorted(plan_ts(spark.table(name)))
    wrong, refused, stamps = {}, {}, {}
    for n, text in queries.items():
        df = spark.sql(text)
        try:
            got = tpch_rig.canonical(df.collect())
        except Exception as exc:  # MixedSnapshotsException: PySpark's IllegalArgumentException
            refused[n] = str(exc).splitlines()[0]
            continue
        stamps[n] = sorted(plan_ts(df))
        if got != expected[n]:
            wrong[n] = tpch_rig.describe_difference(got, expected[n])
    return {"counts": counts, "read_at": read_at, "wrong": wrong, "refused": refused, "stamps": stamps}


def test_the_22_queries_over_views_each_counted_at_its_own_ts_first_are_answered_at_the_newest_and_equal_parquet(
        jvm_spark: Any, tpch: TpchDeployment, queries: dict[int, str], expected: dict[int, list[tuple[Any, ...]]]) -> None:
    """Issue 49: TPC-H loaded once and not written since; each view counted (each read at a
    fresh ts of its own), then the queries (default_or_all): none refused (20 of the 22 were),
    each reads its tables at one ts, the newest its tables were read at, and equals Spark over
    the Parquet copy."""
    token = "tpch-token"
    chosen = default_or_all(queries)
    with serve(any_store=True, port=0, token=token) as service:
        got = jvm_spark.call(jvm_explored, tpch.rig.store, service.http_url, token,
                             {name: tpch.qualified(name) for name in TABLES}, chosen, expected)
    assert got["counts"] == tpch.rows
    read_at = {name: stamps[0] for name, stamps in got["read_at"].items()}
    assert all(len(stamps) == 1 for stamps in got["read_at"].values()), got["read_at"]
    assert len(set(read_at.values())) == len(TABLES), f"each view was read at a ts of its own: {read_at}"
    assert not got["refused"], f"{len(got['refused'])}/{len(chosen)} TPC-H queries refused: {got['refused']}"
    assert not got["wrong"], f"{len(got['wrong'])}/{len(chosen)} TPC-H queries differ from Parquet: {got['wrong']}"
    assert len(got["stamps"]) == len(chosen)
    several = {n: s for n, s in got["stamps"].items() if len(s) != 1}
    assert not several, f"queries read at more than one ts: {several}"
    # each query at the newest ts its own tables were read at (Q5: six tables, the newest of six)
    newest = max(read_at.values())
    assert got["stamps"][1] == [read_at["lineitem"]], (got["stamps"][1], read_at)
    assert got["stamps"][5][0] == max(read_at[t] for t in ("customer", "orders", "lineitem", "supplier", "nation",
                                                            "region"))
    assert all(read_at["region"] <= s[0] <= newest for s in got["stamps"].values() if s), got["stamps"]


def test_the_22_queries_on_reused_views_through_the_python_source_equal_spark_on_parquet(
        spark: Any, tpch: TpchDeployment, queries: dict[int, str], expected: dict[int, list[tuple[Any, ...]]]) -> None:
    frames = tpch_rig.theflash_frames(spark, tpch)
    tpch_rig.register_views(frames)
    chosen = default_or_all(queries)

    wrong = differences(spark, chosen, expected)

    assert not wrong, f"{len(wrong)}/{len(chosen)} TPC-H queries differ from Parquet: {wrong}"
    assert {name: frames[name].count() for name in TABLES} == tpch.rows
    assert {name: spark.table(name).count() for name in TABLES} == tpch.rows


def test_the_22_queries_over_flight_sql_on_the_native_store_equal_spark_on_parquet(
        tpch: TpchDeployment, queries: dict[int, str], expected: dict[int, list[tuple[Any, ...]]]) -> None:
    """ADBC's Flight SQL driver sends each query text as it is (bare table names: the store has
    one database holding them) with the deployment's ts in the snapshot header; DuckDB answers
    over the read streams of the tables each names, all at that ts. Each answer is read twice on
    the client: as ADBC's Arrow table, and by a client-side DuckDB scanning ADBC's record batch
    reader (how DuckDB users query a Flight SQL server through ADBC). Numbers compare by value:
    DuckDB averages a DECIMAL as a double where Spark keeps a DECIMAL. By default the seven of
    PYTHON_DEFAULT (every table, every shape); all 22 in the slow run."""
    flight_sql = pytest.importorskip("adbc_driver_flightsql.dbapi")
    import duckdb

    chosen = default_or_all(queries)
    wrong = {}
    client = duckdb.connect()  # a DuckDB on the client's side, reading the answers ADBC streams
    with serve(tpch.rig.store, port=0) as service, flight_sql.connect(service.flight_location, autocommit=True) as conn:
        for n, text in chosen.items():
            for via in ("adbc", "duckdb"):
                with conn.cursor() as cur:
                    cur.adbc_statement.set_options(
                        **{"adbc.flight.sql.rpc.call_header.x-theflash-snapshot-ts": str(tpch.ts)})
                    cur.execute(text)
                    if via == "adbc":
                        rows = [tuple(r.values()) for r in cur.fetch_arrow_table().to_pylist()]
                    else:
                        rows = client.from_arrow(cur.fetch_record_batch()).fetchall()
                got = tpch_rig.canonical(rows)
                if not tpch_rig.numerically_equal(got, expected[n]):
                    wrong[f"{n} ({via})"] = tpch_rig.describe_difference(got, expected[n])
        assert service.service.metrics.value("theflash_service_sessions_active") == 0
    assert not wrong, f"{len(wrong)}/{len(chosen)} TPC-H queries over Flight SQL differ from Spark on Parquet: {wrong}"
