"""Reads through ``pd://``: a replica fed by ``theflash capture`` read with TSO from PD, a
learner read on resolved ts and lock resolution over TiKV's RPCs — against the mini cluster
on the wire, compared with the upstream's own rows at the same ts."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.scan import SnapshotTsOutOfRangeError, plan
from pyspark_theflash.scan.gc_hold import service_id
from pyspark_theflash.scan.read import read_partition
from pyspark_theflash.upstream_client.client import connect
from pyspark_theflash.upstream.tidb import Abandoned
from pyspark_theflash.upstream.workloads import BankWorkload, Faults

TABLE = "bank.accounts"


def balances(p: Any) -> dict[int, int]:
    table = pa.Table.from_batches([b for part in p.partitions for b in read_partition(part)])
    return dict(zip(table.column("id").to_pylist(), table.column("balance").to_pylist()))


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path, via="capture", pd_members=2, region_split_keys=20, expired_lock_grace_s=0.5)
    try:
        yield r
    finally:
        r.close()


def test_bank_reads_through_pd_are_exact_through_dying_transactions_splits_and_a_pd_leader_change(rig: FlashRig) -> None:
    assert rig.upstream.startswith("pd://") and "," in rig.upstream
    bank = BankWorkload(rig.cluster, accounts=30, initial=100, seed=5, threads=2, rate=150,
                        faults=Faults(dying=0.05, rollback=0.05, split_merge=0.05, dying_ttl_ms=200))
    bank.setup()
    rig.start_writer(interval_s=0.05)
    rig.wait_replicated(TABLE)
    bank.start()
    try:
        checked = 0
        for i in range(12):
            if i == 5:
                rig.cluster.pd_server.transfer_leader()  # readers, capture and the writer follow it
            with plan(rig.store, TABLE, rig.options()) as p:
                got = balances(p)
                want = {r["id"]: r["balance"] for r in rig.cluster.scan_table(TABLE, p.ts)}
                assert got == want, f"at {p.ts}: {len(got)} accounts, upstream {len(want)}"
                assert sum(got.values()) == bank.total
                checked += 1
            time.sleep(0.1)
    finally:
        bank.stop()
    assert checked == 12 and bank.stats.errors == []


def test_a_read_of_a_feed_lock_finds_its_primary_and_resolves_it_over_tikv(rig: FlashRig) -> None:
    """TiKV's feed gives PREWRITE rows no primary: the store holds the lock with none, and
    the read learns it from the key's own lock upstream (CheckSecondaryLocks), then decides
    the transaction by its primary (CheckTxnStatus) and resolves it (ResolveLock)."""
    bank = BankWorkload(rig.cluster, accounts=10, initial=100, seed=1, count=1, threads=1)
    bank.setup()
    rig.start_writer(interval_s=0.05)
    rig.wait_replicated(TABLE)
    t = rig.cluster.txn(one_pc=False, ttl_ms=200, after_prewrite=lambda _: (_ for _ in ()).throw(Abandoned()))
    t.update(TABLE, {"id": 1, "balance": 50})
    t.update(TABLE, {"id": 2, "balance": 150})
    with pytest.raises(Abandoned):
        t.commit()
    time.sleep(0.3)  # its TTL runs out: CheckTxnStatus rolls it back
    with plan(rig.store, TABLE, rig.options()) as p:
        assert p.stats.txns_rolled_back >= 1
        assert (balances(p)[1], balances(p)[2]) == (100, 100)
    assert not [lk for lk in rig.cluster.store.locks() if lk.start_ts == t.start_ts]


def test_a_long_read_holds_pds_service_safe_point_under_a_short_gc_life_time(tmp_path: Path) -> None:
    rig = FlashRig(tmp_path, via="capture", gc_life_time_s=0.5, gc_run_interval_s=0.2)
    try:
        bank = BankWorkload(rig.cluster, accounts=10, initial=100, seed=1, count=1, threads=1)
        bank.setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TABLE)
        p = plan(rig.store, TABLE, rig.options(lease_ttl="1s"))
        try:
            want = {r["id"]: r["balance"] for r in rig.cluster.scan_table(TABLE, p.ts)}
            for i in range(20):  # versions above p.ts: GC would collect the ones p.ts reads
                rig.cluster.run_txn(lambda t, i=i: t.update(TABLE, {"id": i % 10, "balance": 100 + i}))
            deadline = time.monotonic() + 3  # several GC runs and lease renewals, past the life time
            while time.monotonic() < deadline:
                held = rig.cluster.service_safe_points.of(service_id(rig.store).encode())
                assert held is not None and held <= p.ts
                assert rig.cluster.gc_safe_point() <= p.ts
                time.sleep(0.2)
            assert rig.cluster.scan_table(TABLE, p.ts)  # TiDB's stale read at p.ts still works
            assert balances(p) == want
        finally:
            p.close()
        # with the lease gone the hold expires and GC moves on
        wait_for(lambda: rig.cluster.gc_safe_point() > p.ts, 10, "GC to pass the released read")
        with pytest.raises(SnapshotTsOutOfRangeError, match=str(rig.cluster.gc_safe_point())):
            plan(rig.store, TABLE, rig.options(snapshot_ts=p.ts))
    finally:
        rig.close()


def test_tso_through_pd_is_batched_and_follows_the_leader(rig: FlashRig) -> None:
    import threading

    client = connect(rig.upstream)
    try:
        got: list[int] = []
        mu = threading.Lock()

        def ask() -> None:
            for _ in range(50):
                ts = client.get_ts()
                with mu:
                    got.append(ts)

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for th in threads:
            th.start()
        rig.cluster.pd_server.transfer_leader()
        for th in threads:
            th.join(30)
        assert len(got) == 400 and len(set(got)) == 400  # every caller its own ts
        assert client.get_ts() > max(got)
        assert client.gc_safe_point() == rig.cluster.gc_safe_point()
    finally:
        client.close()


def test_the_writer_on_capture_asks_tikv_for_no_read_index(rig: FlashRig) -> None:
    """Capture numbers the binlog's events itself, so TiKV's raft read index says nothing of a
    region's lag in them: the writer's status loop must not ask each region's leader for one
    (it did, every second, blocking the binlog's application under splits)."""
    store = rig.cluster.store
    asked: list[int] = []
    real = store.read_index

    def counting(region_id: int, *args: Any) -> int:
        asked.append(region_id)
        return real(region_id, *args)

    bank = BankWorkload(rig.cluster, accounts=20, initial=100, seed=3, count=60, threads=1)
    bank.setup()
    rig.start_writer(interval_s=0.05, progress_interval_s=0.05)
    bank.start()
    bank.join()
    rig.wait_replicated("bank.accounts")
    writer = rig.writer
    assert writer is not None
    rounds: list[float] = []
    refresh = writer._refresh_upstream_lag

    def counted_round() -> None:
        refresh()
        rounds.append(time.monotonic())

    store.read_index = counting  # the real server's answer, counted from here on
    writer._refresh_upstream_lag = counted_round  # type: ignore[method-assign]
    try:
        wait_for(lambda: len(rounds) >= 10, 30, "ten rounds of the writer's status loop")
    finally:
        store.read_index = real
        writer._refresh_upstream_lag = refresh  # type: ignore[method-assign]
    published = rig.writer.progress.to_status()  # type: ignore[union-attr]
    assert published["state"] == "running" and published["regions"]
    assert asked == []
