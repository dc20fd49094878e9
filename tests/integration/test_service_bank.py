"""The bank invariant read through Arrow Flight while transfers run under the demo's faults
(transactions dying half-way with their locks left behind, rollbacks, region splits and
merges): every snapshot the service serves sums to the same total."""
from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.service import serve
from pyspark_theflash.upstream.workloads import BankWorkload, Faults
from service_client import FlightReader

TABLE = "bank.accounts"


def run_bank(root: Path, accounts: int, snapshots: int, faults: Faults) -> None:
    rig = FlashRig(root, via="capture")
    try:
        bank = BankWorkload(rig.cluster, accounts=accounts, initial=1000, threads=2, seed=17, faults=faults)
        bank.setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TABLE)
        with serve(rig.store, port=0) as running:
            reader = FlightReader(running.flight_location)
            bank.start()
            checked: list[tuple[int, int, int]] = []
            try:
                for i in range(snapshots):
                    before = bank.stats.committed
                    wait_for(lambda: bank.stats.committed > before, 30, "the workload to commit")
                    # every other read lets the service take the latest ts itself
                    request = {"table": TABLE, "columns": ["balance"], "min_streams": 4}
                    if i % 2:
                        request["snapshot_ts"] = rig.cluster.get_ts()
                    table, session = reader.read(request)
                    checked.append((session["ts"], pc.sum(table.column("balance")).as_py(), table.num_rows))
            finally:
                bank.stop()
                reader.close()
        wrong = [(ts, total, n) for ts, total, n in checked if total != bank.total or n != accounts]
        assert not wrong, f"bank invariant broken at {wrong[:5]} (want total {bank.total} over {accounts} accounts)"
        assert len({ts for ts, _, _ in checked}) == snapshots
        stats = bank.stats
        assert stats.committed > snapshots and stats.dying > 0 and stats.splits + stats.merges > 0, stats.summary()
        assert not stats.errors, stats.errors[:3]
        assert bank.verify(checked[-1][0]) == bank.total
    finally:
        rig.close()


def test_bank_total_is_exact_at_16_flight_snapshots_during_transfers_dying_transactions_and_splits(
        tmp_path: Path) -> None:
    run_bank(tmp_path, accounts=30, snapshots=16,
             faults=Faults(dying=0.05, rollback=0.05, split_merge=0.1, dying_ttl_ms=300))


@pytest.mark.slow
def test_bank_total_is_exact_at_200_flight_snapshots_under_heavier_faults(tmp_path: Path) -> None:
    run_bank(tmp_path, accounts=200, snapshots=200,
             faults=Faults(dying=0.1, rollback=0.05, large=0.02, split_merge=0.2, dying_ttl_ms=300))
