"""A resolved ts is what makes applied rows readable, so at the head of the log the writer
flushes one that moved as soon as no flush is in flight, instead of waiting out
``--flush-interval`` (that wait was most of commit -> readable at 10,000 regions). Here the
flush interval is ten minutes and nothing else asks for a flush (the store is read alone, with
no flush request), so only that rule can make the commits readable within the test."""
from __future__ import annotations

import random
from pathlib import Path

from flash_rig import FlashRig, wait_for
from pyspark_theflash.store import Store
from pyspark_theflash.store.manifest import MANIFEST_FILE
from pyspark_theflash.upstream.workloads import BankWorkload


def least_persisted_resolved_ts(store: str, upstream_regions: set[int]) -> int:
    """The least resolved ts the store has persisted over every region the upstream has now: 0
    while the store has not yet registered one of them (the least over the regions it knows
    passed while the bank's region was not among them, and the read at ts was empty: a CI run)."""
    if not (Path(store) / MANIFEST_FILE).exists():  # (the writer not started yet)
        return 0
    with Store.open(store, readonly=True) as s, s.snapshot() as view:
        persisted = {r.id: int(r.resolved_ts) for r in view.regions()}
    return min((persisted.get(region, 0) for region in upstream_regions), default=0)


def test_a_moved_resolved_ts_is_flushed_without_waiting_out_the_flush_interval(tmp_path: Path) -> None:
    rig = FlashRig(tmp_path)
    try:
        bank = BankWorkload(rig.cluster, accounts=40, initial=100)
        bank.setup()
        rig.start_writer(interval_s=0.05, flush_interval_s=600.0)
        rng = random.Random(5)
        for round_ in range(3):
            for _ in range(20):
                bank.step(rng)
            ts = rig.cluster.get_ts()
            wait_for(lambda: least_persisted_resolved_ts(rig.store, {r.id for r in rig.cluster.regions()}) >= ts, 60,
                     f"round {round_}: the writer to persist a resolved ts past {ts}")
            with Store.open(rig.store, readonly=True) as s:
                replica = sorted(s.scan_table(bank.table, ts).to_pylist(), key=lambda r: r["id"])
            upstream = sorted(rig.cluster.scan_table(bank.table, ts), key=lambda r: r["id"])
            assert replica == upstream and len(replica) == bank.accounts
            assert sum(r["balance"] for r in replica) == bank.total
    finally:
        rig.close()
