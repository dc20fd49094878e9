"""The writer follows its regions' progress (`writer status`, the flush requests' applied
indexes) from each flush's own region rows, not by listing every region of the manifest after
every flush (a fifth of the writer's time at 10,000 regions). Through splits and merges, what it
follows must be the manifest's live regions, index for index and ts for ts."""
from __future__ import annotations

import random
from pathlib import Path

from flash_rig import FlashRig, wait_for
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.tidb import record_key
from pyspark_theflash.upstream.workloads import BankWorkload

ACCOUNTS = 60


def manifest_regions(store: str) -> dict[int, tuple[int, int]]:
    with Store.open(store, readonly=True) as s, s.snapshot() as view:
        return {int(r.id): (int(r.applied_index), int(r.resolved_ts)) for r in view.regions()}


def caught_up(rig: FlashRig) -> None:
    """Until the manifest lists every region of the upstream, each resolved past now."""
    upstream = {int(r.id) for r in rig.cluster.regions()}
    ts = rig.cluster.get_ts()
    wait_for(lambda: {rid for rid, (_, resolved) in manifest_regions(rig.store).items() if resolved >= ts}
             >= upstream, 60, "the writer to resolve every region of the upstream past now")


def test_the_regions_the_writer_follows_are_the_manifests_through_splits_and_merges(tmp_path: Path) -> None:
    rig = FlashRig(tmp_path)
    try:
        bank = BankWorkload(rig.cluster, accounts=ACCOUNTS, initial=100)
        bank.setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated("bank.accounts")
        table = rig.cluster.table_info("bank", "accounts")
        rng = random.Random(7)
        for handle in sorted(rng.sample(range(1, ACCOUNTS), 8)):
            rig.cluster.split_at(record_key(table, handle))
        for _ in range(30):
            bank.step(rng)
        caught_up(rig)  # the split-born regions persisted (and followed) before they merge away
        live = sorted(rig.cluster.regions(), key=lambda r: r.start_key)
        merged = 0
        for left, right in list(zip(live, live[1:]))[1::3]:
            rig.cluster.merge_regions(right.id, left.id)
            merged += 1
        for _ in range(30):
            bank.step(rng)
        caught_up(rig)
        writer = rig.writer
        assert writer is not None
        rig.stop_writer()  # its last flush settled: progress and manifest stand still
        followed = {rid: (r.applied_index, r.resolved_ts) for rid, r in writer.progress.regions.items()}
        persisted = manifest_regions(rig.store)
        assert merged >= 2 and set(persisted) == {int(r.id) for r in rig.cluster.regions()}, (merged, persisted)
        assert followed == persisted
    finally:
        rig.close()
