"""One snapshot ts per Spark query through the connector jar (its QuerySnapshotRule).

While the orders workload writes (an order and its items in one transaction, a cancellation
deleting both in one), an item without its order exists at no ts: the LEFT ANTI JOIN of
order_items against orders is 0 in every query, whether the query names catalog tables in
SQL, joins format("theflash") DataFrames or runs a three-table CTE, as long as the query reads
every table at one ts. ``explain()`` of each query shows that one ts. The same holds for the
two-table bank: the sum over bank.checking and bank.savings is the bank's total in every query.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from flash_rig import FlashRig, wait_for
from jvm_spark import JvmSpark
from pyspark_theflash.service import serve
from pyspark_theflash.upstream.workloads import Faults, OrdersWorkload, TwoTableBankWorkload

pytestmark = pytest.mark.spark

ANTI_JOIN = ("SELECT count(*) AS orphans FROM theflash.shop.order_items i "
             "LEFT ANTI JOIN theflash.shop.orders o ON i.order_id = o.id")
# orders whose customer is missing, plus items whose order is missing: three tables, one ts
CTE = """
WITH o AS (SELECT id, country, customer_id FROM theflash.shop.orders),
     i AS (SELECT order_id FROM theflash.shop.order_items),
     c AS (SELECT country, customer_id FROM theflash.shop.customers)
SELECT (SELECT count(*) FROM i LEFT ANTI JOIN o ON i.order_id = o.id)
     + (SELECT count(*) FROM o LEFT ANTI JOIN c ON o.country = c.country AND o.customer_id = c.customer_id)
  AS orphans
"""
SNAPSHOT_TS = re.compile(r"snapshot_ts=(\d+)")
# The slow tests' queries per way of asking (the issue's 1,000; THEFLASH_QUERY_RUNS=N for fewer)
SLOW_RUNS = int(os.environ.get("THEFLASH_QUERY_RUNS", "1000"))


def progress(label: str, done: int, runs: int, started: float) -> None:
    """A line every 50 runs of a long loop (seen with ``pytest -s``): a 1,000-run test takes an hour."""
    if runs >= 100 and done % 50 == 0:
        print(f"[{label}] {done}/{runs} runs, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def plan_ts(df: Any) -> set[int]:
    """The snapshot ts values ``explain()`` of ``df`` shows (its executed plan, subqueries too)."""
    return {int(m) for m in SNAPSHOT_TS.findall(df._jdf.queryExecution().executedPlan().toString())}


def jvm_orphans(spark: Any, server: str, runs: int) -> list[tuple[str, int, list[int]]]:
    """``runs`` times each way of asking: (way, orphans, the ts explain shows)."""
    spark.conf.set("theflash.server", server)
    spark.conf.unset("theflash.snapshot_ts")
    out = []
    started = time.monotonic()
    for run in range(runs):
        progress("orders", run, runs, started)
        sql = spark.sql(ANTI_JOIN)
        out.append(("sql", sql.collect()[0][0], sorted(plan_ts(sql))))
        items = spark.read.format("theflash").option("server", server).load("shop.order_items")
        orders = spark.read.format("theflash").option("server", server).load("shop.orders")
        frames = items.join(orders, items.order_id == orders.id, "left_anti").groupBy().count()
        out.append(("dataframes", frames.collect()[0][0], sorted(plan_ts(frames))))
        spark.read.format("theflash").option("server", server).load("shop.orders").createOrReplaceTempView("o_view")
        mixed = spark.sql("SELECT count(*) FROM theflash.shop.order_items i LEFT ANTI JOIN o_view o "
                          "ON i.order_id = o.id")
        out.append(("catalog and format", mixed.collect()[0][0], sorted(plan_ts(mixed))))
        cte = spark.sql(CTE)
        out.append(("cte", cte.collect()[0][0], sorted(plan_ts(cte))))
    return out


@pytest.fixture(scope="module")
def orders_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlashRig, Any, str]]:
    rig = FlashRig(tmp_path_factory.mktemp("query-snapshot"))
    try:
        workload = OrdersWorkload(rig.cluster, seed=27, rate=50, threads=2,
                                  faults=Faults(dying=0.02, rollback=0.02, split_merge=0.02, dying_ttl_ms=300))
        workload.setup()
        rig.start_writer(interval_s=0.05)
        for table in ("shop.orders", "shop.order_items", "shop.customers"):
            rig.wait_replicated(table)
        with serve(rig.store, port=0) as running:
            workload.start()
            try:
                before = workload.stats.committed
                wait_for(lambda: workload.stats.committed > before + 20, 60, "the orders workload to commit")
                yield rig, workload, running.http_url
            finally:
                workload.stop()
    finally:
        rig.close()


def check_orphans(jvm_spark: JvmSpark, orders_rig: tuple[FlashRig, Any, str], runs: int) -> None:
    rig, workload, server = orders_rig
    committed = workload.stats.committed
    seen = jvm_spark.call(jvm_orphans, server, runs, timeout=max(600, 60 * runs))  # 4 queries a run
    wrong = [s for s in seen if s[1] != 0]
    assert not wrong, f"{len(wrong)} of {len(seen)} queries saw items without their order: {wrong[:5]}"
    several = [s for s in seen if len(s[2]) != 1]
    assert not several, f"explain() shows other than one snapshot_ts: {several[:5]}"
    assert len({s[2][0] for s in seen}) >= runs, "each query took a fresh ts"
    assert workload.stats.committed > committed, "the workload wrote while the queries ran"
    assert not workload.stats.errors, workload.stats.errors[:3]


def test_an_item_is_never_without_its_order_in_sql_dataframes_views_and_a_three_table_cte_while_orders_commit(
        jvm_spark: JvmSpark, orders_rig: tuple[FlashRig, Any, str]) -> None:
    check_orphans(jvm_spark, orders_rig, runs=8)


@pytest.mark.slow
def test_an_item_is_never_without_its_order_over_many_queries(
        jvm_spark: JvmSpark, orders_rig: tuple[FlashRig, Any, str]) -> None:
    check_orphans(jvm_spark, orders_rig, runs=SLOW_RUNS)  # SLOW_RUNS queries each way, 4 * SLOW_RUNS in all


def jvm_snapshot_shapes(spark: Any, server: str) -> dict[str, Any]:
    """Queries of several shapes: the ts each one's plan shows, and how a DataFrame already read
    shares its ts with the tables joined to it."""
    spark.conf.set("theflash.server", server)
    spark.conf.unset("theflash.snapshot_ts")
    shapes = {
        "self_join": "SELECT count(*) FROM theflash.shop.orders a JOIN theflash.shop.orders b ON a.id = b.id",
        "scalar_subqueries": "SELECT (SELECT count(*) FROM theflash.shop.orders) - "
                             "(SELECT count(DISTINCT order_id) FROM theflash.shop.order_items)",
        "in_subquery": "SELECT count(*) FROM theflash.shop.order_items WHERE order_id NOT IN "
                       "(SELECT id FROM theflash.shop.orders)",
        "union": "SELECT id FROM theflash.shop.orders UNION ALL SELECT order_id FROM theflash.shop.order_items "
                 "UNION ALL SELECT customer_id FROM theflash.shop.customers",
    }
    out: dict[str, Any] = {name: sorted(plan_ts(spark.sql(q))) for name, q in shapes.items()}
    spark.sql("CREATE OR REPLACE TEMPORARY VIEW orders_and_items AS SELECT o.id, i.sku FROM theflash.shop.orders o "
              "JOIN theflash.shop.order_items i ON o.id = i.order_id")
    out["sql_view"] = sorted(plan_ts(spark.sql("SELECT count(*) FROM orders_and_items")))
    orders = spark.read.format("theflash").option("server", server).load("shop.orders")
    orders.count()
    first = sorted(plan_ts(orders.groupBy().count()))
    items = spark.read.format("theflash").option("server", server).load("shop.order_items")
    joined = sorted(plan_ts(items.join(orders, items.order_id == orders.id)))
    again = sorted(plan_ts(orders.groupBy().count()))
    out["read_then_joined"] = (first, joined, again)
    # Delta's and Iceberg's option names: a fixed ts, which the query's ts leaves alone
    pinned = first[0] - 1
    aliased = spark.read.format("theflash").option("server", server).option("versionAsOf", str(pinned)).load(
        "shop.orders")
    out["version_as_of"] = (pinned, sorted(plan_ts(aliased.join(items, items.order_id == aliased.id))))
    return out


def test_every_shape_of_query_reads_one_ts_and_a_dataframe_already_read_lends_its_ts_to_the_tables_joined_to_it(
        jvm_spark: JvmSpark, orders_rig: tuple[FlashRig, Any, str]) -> None:
    shapes = jvm_spark.call(jvm_snapshot_shapes, orders_rig[2])
    first, joined, again = shapes.pop("read_then_joined")
    pinned, both = shapes.pop("version_as_of")
    assert both == sorted({pinned, first[0]}), (pinned, both)  # the alias pins orders; items keep the query's
    for name, stamps in shapes.items():
        assert len(stamps) == 1, (name, stamps)
    assert len({s[0] for s in shapes.values()}) == len(shapes), f"each query took its own fresh ts: {shapes}"
    assert len(first) == 1 and joined == first and again == first, (first, joined, again)


# -- the two-table bank ---------------------------------------------------------------------
def jvm_bank_totals(spark: Any, server: str, runs: int) -> list[tuple[str, int, list[int]]]:
    spark.conf.set("theflash.server", server)
    spark.conf.unset("theflash.snapshot_ts")
    out = []
    started = time.monotonic()
    for run in range(runs):
        progress("bank", run, runs, started)
        sql = spark.sql("SELECT (SELECT sum(balance) FROM theflash.bank.checking) + "
                        "(SELECT sum(balance) FROM theflash.bank.savings)")
        out.append(("sql", int(sql.collect()[0][0]), sorted(plan_ts(sql))))
        checking = spark.read.format("theflash").option("server", server).load("bank.checking")
        savings = spark.read.format("theflash").option("server", server).load("bank.savings")
        union = checking.select("balance").unionByName(savings.select("balance")).groupBy().sum("balance")
        out.append(("dataframes", int(union.collect()[0][0]), sorted(plan_ts(union))))
    return out


def check_bank_totals(jvm_spark: JvmSpark, root: Path, runs: int) -> None:
    rig = FlashRig(root)
    try:
        bank = TwoTableBankWorkload(rig.cluster, accounts=20, seed=7, rate=50, threads=2,
                                    faults=Faults(dying=0.03, rollback=0.03, split_merge=0.03, dying_ttl_ms=300))
        bank.setup()
        rig.start_writer(interval_s=0.05)
        for table in bank.tables:
            rig.wait_replicated(table)
        with serve(rig.store, port=0) as running:
            bank.start()
            try:
                before = bank.stats.committed
                wait_for(lambda: bank.stats.committed > before + 20, 60, "the bank to commit transfers")
                seen = jvm_spark.call(jvm_bank_totals, running.http_url, runs, timeout=max(600, 30 * runs))
                during = bank.stats.committed - before
            finally:
                bank.stop()
        wrong = [s for s in seen if s[1] != bank.total]
        assert not wrong, f"{len(wrong)} of {len(seen)} queries broke the total {bank.total}: {wrong[:5]}"
        assert all(len(s[2]) == 1 for s in seen), seen
        assert len({s[2][0] for s in seen}) >= runs, "each query took a fresh ts"
        assert during > 40 and not bank.stats.errors, (bank.stats.summary(), bank.stats.errors[:3])
    finally:
        rig.close()


def test_the_sum_over_checking_and_savings_is_exact_in_every_query_while_transfers_cross_the_two_tables(
        jvm_spark: JvmSpark, tmp_path: Path) -> None:
    check_bank_totals(jvm_spark, tmp_path, runs=10)


@pytest.mark.slow
def test_the_sum_over_checking_and_savings_is_exact_over_many_queries(jvm_spark: JvmSpark, tmp_path: Path) -> None:
    check_bank_totals(jvm_spark, tmp_path, runs=SLOW_RUNS)  # SLOW_RUNS queries each way (SQL, DataFrames)
