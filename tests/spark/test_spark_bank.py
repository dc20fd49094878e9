"""The bank invariant read through Spark while the bank workload runs: transfers between
accounts keep the total constant, so every consistent snapshot sums to the same total —
whatever regions split or merge and whichever transactions die half-way."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine_stores import ENGINES
from flash_rig import FlashRig, wait_for
from pyspark_theflash.upstream.workloads import BankWorkload, Faults

pytestmark = pytest.mark.spark

TABLE = "bank.accounts"


def run_bank(spark: Any, root: Path, accounts: int, snapshots: int, per_query: int, faults: Faults,
             engine: str = "native") -> None:
    from pyspark.sql import functions as F

    rig = FlashRig(root)
    try:
        bank = BankWorkload(rig.cluster, accounts=accounts, initial=1000, threads=2, seed=11, faults=faults)
        bank.setup()
        # the ClickHouse engine's writer owns its ClickHouse directory: Spark's workers read
        # through the service it runs (--serve)
        rig.start_writer(interval_s=0.05, **({"engine": "clickhouse", "serve_port": 0} if engine == "clickhouse" else {}))
        rig.wait_replicated(TABLE)
        bank.start()
        checked: list[tuple[int, int, int]] = []
        try:
            while len(checked) < snapshots:
                # snapshot ts taken while transfers, dying transactions and splits go on
                stamps = []
                for _ in range(per_query):
                    before = bank.stats.committed
                    wait_for(lambda: bank.stats.committed > before, 30, "the workload to commit")
                    stamps.append(rig.cluster.get_ts())
                # one Spark job reads every snapshot (a union of scans: no shuffle)
                frames = [
                    spark.read.format("theflash").options(**rig.options(snapshot_ts=ts)).schema("balance long")
                    .load(TABLE).select(F.lit(ts).alias("ts"), "balance")
                    for ts in stamps
                ]
                union = frames[0]
                for frame in frames[1:]:
                    union = union.unionByName(frame)
                per_ts: dict[int, list[int]] = {ts: [] for ts in stamps}
                for row in union.collect():
                    per_ts[row.ts].append(row.balance)
                checked += [(ts, sum(b), len(b)) for ts, b in per_ts.items()]
        finally:
            bank.stop()
        assert len({ts for ts, _, _ in checked}) >= snapshots
        wrong = [(ts, total, n) for ts, total, n in checked if total != bank.total or n != accounts]
        assert not wrong, f"bank invariant broken at {wrong[:5]} (want total {bank.total} over {accounts} accounts)"
        stats = bank.stats
        # the faults did happen while we read
        assert stats.committed > snapshots and stats.dying > 0 and stats.splits + stats.merges > 0, stats.summary()
        assert not stats.errors, stats.errors[:3]
        # the cluster itself agrees at the last snapshot
        assert bank.verify(checked[-1][0]) == bank.total
    finally:
        rig.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_bank_total_is_exact_at_20_snapshots_during_transfers_dying_transactions_and_splits(
        spark: Any, tmp_path: Path, engine: str) -> None:
    run_bank(spark, tmp_path, accounts=30, snapshots=20, per_query=20,
             faults=Faults(dying=0.05, rollback=0.05, split_merge=0.1, dying_ttl_ms=300), engine=engine)


@pytest.mark.slow
def test_bank_total_is_exact_at_100_snapshots_under_heavier_faults(spark: Any, tmp_path: Path) -> None:
    run_bank(spark, tmp_path, accounts=200, snapshots=100, per_query=5,
             faults=Faults(dying=0.1, rollback=0.05, large=0.02, split_merge=0.2, dying_ttl_ms=300))
