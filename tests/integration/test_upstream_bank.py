"""The bank invariant read back from the mini cluster itself: the total balance is the same
at every ts while transfers run concurrently, with dying transactions, explicit rollbacks,
large transactions and a split/merge storm going on."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream_client.errors import TxnAbortedError
from pyspark_theflash.upstream.workloads import BankWorkload, Faults


@pytest.fixture
def cluster(tmp_path: Path):
    c = MiniCluster(tmp_path / "data", resolved_ts_interval=0.05, region_split_keys=15)
    yield c
    c.close()


def run_bank_checking_invariant(cluster: MiniCluster, workload: BankWorkload) -> list[int]:
    workload.setup()
    checked = [cluster.get_ts()]
    workload.verify(checked[0])
    workload.start()
    while workload.running():
        ts = cluster.get_ts()
        workload.verify(ts)
        checked.append(ts)
    workload.join()
    checked.append(cluster.get_ts())
    return checked


def test_total_balance_is_constant_at_every_ts_under_concurrent_transfers_and_faults(cluster: MiniCluster) -> None:
    faults = Faults(dying=0.05, rollback=0.05, large=0.05, split_merge=0.15, large_keys=10, dying_ttl_ms=100)
    bank = BankWorkload(cluster, accounts=40, initial=100, seed=7, count=250, threads=3, faults=faults)
    checked = run_bank_checking_invariant(cluster, bank)
    assert bank.stats.errors == []
    assert bank.stats.committed > 100
    assert len(checked) > 5  # read while the transfers ran
    assert bank.stats.dying > 0 and bank.stats.rolled_back > 0 and bank.stats.large > 0
    assert bank.stats.splits > 0 and bank.stats.merges > 0
    # Old snapshots stay readable and consistent (MVCC at old ts), and balances really moved.
    for ts in checked:
        assert bank.verify(ts) == 40 * 100
    assert bank.balances(checked[-1]) != bank.balances(checked[0])
    # Readers resolved every lock a dead client left behind: none is open any more.
    assert cluster.store.locks() == []


def test_transfer_conflicting_with_a_concurrent_commit_is_aborted_not_lost(cluster: MiniCluster) -> None:
    bank = BankWorkload(cluster, accounts=4, initial=10, count=0)
    bank.setup()
    slow = cluster.txn()
    row = slow.get("bank.accounts", 1)
    with cluster.txn() as fast:
        fast.update("bank.accounts", {"id": 1, "balance": fast.get("bank.accounts", 1)["balance"] - 5})
        fast.update("bank.accounts", {"id": 2, "balance": fast.get("bank.accounts", 2)["balance"] + 5})
    slow.update("bank.accounts", {"id": 1, "balance": row["balance"] - 7})
    slow.update("bank.accounts", {"id": 3, "balance": slow.get("bank.accounts", 3)["balance"] + 7})
    with pytest.raises(TxnAbortedError):
        slow.commit()
    assert bank.balances(cluster.get_ts()) == {0: 10, 1: 5, 2: 15, 3: 10}
    assert cluster.store.locks() == []


@pytest.mark.slow
def test_bank_invariant_over_a_longer_storm(cluster: MiniCluster) -> None:
    faults = Faults(dying=0.03, rollback=0.03, large=0.01, split_merge=0.1, large_keys=50)
    bank = BankWorkload(cluster, accounts=200, initial=1000, seed=3, duration_s=20, threads=4, faults=faults)
    checked = run_bank_checking_invariant(cluster, bank)
    assert bank.stats.errors == []
    for ts in checked[:: max(1, len(checked) // 50)]:
        bank.verify(ts)
