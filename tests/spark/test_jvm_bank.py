"""The bank invariant through the JVM connector: while transfers, dying transactions and
region splits go on, every snapshot a Spark job reads through the jar (one union of scans,
no Python in the read path) sums to the bank's total over all accounts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flash_rig import FlashRig, wait_for
from jvm_spark import JvmSpark
from pyspark_theflash.service import serve
from pyspark_theflash.upstream.workloads import BankWorkload, Faults

pytestmark = pytest.mark.spark

TABLE = "bank.accounts"


def jvm_totals(spark: Any, server: str, stamps: list[int]) -> list[tuple[int, int, int]]:
    from pyspark.sql import functions as F

    frames = [spark.read.format("theflash").option("server", server).option("snapshot_ts", str(ts)).load(TABLE)
              .select(F.lit(ts).alias("ts"), "balance") for ts in stamps]
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    rows = union.groupBy("ts").agg(F.sum("balance").alias("total"), F.count("*").alias("n")).collect()
    return [(r.ts, r.total, r.n) for r in rows]


def test_bank_total_is_exact_through_the_jvm_connector_during_transfers_dying_transactions_and_splits(
        jvm_spark: JvmSpark, tmp_path: Path) -> None:
    accounts, snapshots, per_query = 30, 20, 10
    rig = FlashRig(tmp_path, via="capture")  # the bank through capture and pd://
    try:
        bank = BankWorkload(rig.cluster, accounts=accounts, initial=1000, threads=2, seed=13,
                            faults=Faults(dying=0.05, rollback=0.05, split_merge=0.1, dying_ttl_ms=300))
        bank.setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TABLE)
        with serve(rig.store, port=0) as running:
            bank.start()
            checked: list[tuple[int, int, int]] = []
            try:
                while len(checked) < snapshots:
                    stamps = []
                    for _ in range(per_query):
                        before = bank.stats.committed
                        wait_for(lambda: bank.stats.committed > before, 30, "the workload to commit")
                        stamps.append(int(rig.cluster.get_ts()))
                    checked += jvm_spark.call(jvm_totals, running.http_url, stamps)
            finally:
                bank.stop()
        assert len({ts for ts, _, _ in checked}) >= snapshots
        wrong = [(ts, total, n) for ts, total, n in checked if total != bank.total or n != accounts]
        assert not wrong, f"bank invariant broken at {wrong[:5]} (want total {bank.total} over {accounts} accounts)"
        stats = bank.stats
        assert stats.committed > snapshots and stats.splits + stats.merges > 0, stats.summary()
        assert not stats.errors, stats.errors[:3]
    finally:
        rig.close()
