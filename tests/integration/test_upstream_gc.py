"""The mini cluster's GC never blocks TSO, reads or commits: a run takes the store's lock in
short steps (one transaction in phase 1, one slice of keys in phase 2), never across its whole
work. The structural form of "GC every minute, no stall over 1 s" (``bench/gc_stall.py``
measures the stalls of a long bank run)."""
from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from polling import wait_for
from pyspark_theflash.upstream_client.client import GrpcUpstreamClient
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream_client.errors import GCTooEarlyError, UpstreamError
from pyspark_theflash.upstream.gc_worker import GCRun, GCWorker
from pyspark_theflash.upstream.workloads import BankWorkload


class GCHeldInsideItsWork(GCWorker):
    """A GC worker whose run stops after its first collecting step until ``release`` is set:
    the run is under way (safe point fenced, locks decided, keys listed, one slice collected)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.inside = threading.Event()
        self.release = threading.Event()

    def _collect_step(self, safe_point: int, keys: list[bytes]) -> int:
        dropped = super()._collect_step(safe_point, keys)
        if not self.inside.is_set():
            self.inside.set()
            assert self.release.wait(60), "the test never released the GC run"
        return dropped


def test_tso_reads_and_commits_go_on_while_a_gc_run_is_held_inside_its_work(tmp_path: Path) -> None:
    cluster = MiniCluster(tmp_path / "data", resolved_ts_interval=0.05)
    client = None
    try:
        client = GrpcUpstreamClient(cluster.serve(binlog_port=None)["upstream"], timeout_s=5)
        bank = BankWorkload(cluster, accounts=30, seed=11)
        bank.setup()
        rng = random.Random(11)
        for _ in range(40):  # versions for GC to drop
            bank.step(rng)
        old_ts = cluster.get_ts()
        for _ in range(10):
            bank.step(rng)
        gc = GCHeldInsideItsWork(cluster.store, cluster.tso, life_time_s=0.0, run_interval_s=None)
        runs: list[GCRun] = []
        gc_thread = threading.Thread(target=lambda: runs.append(gc.run(cluster.get_ts())), daemon=True)
        gc_thread.start()
        assert gc.inside.wait(30), "the GC run never reached its collecting step"

        # The run is held inside its work: TSO, a read, a commit and resolved ts go on over the wire.
        ts = client.get_ts()
        assert ts > old_ts
        scan = client.read_table("bank.accounts")
        assert scan.ts > ts and sum(int(r["balance"]) for r in scan.rows) == bank.total
        committed = bank.stats.committed
        bank.step(rng)
        assert bank.stats.committed == committed + 1
        region = cluster.store.regions.all()[0]
        resolved = region.resolved_ts
        wait_for(lambda: region.resolved_ts > resolved, 10, "resolved ts to advance while GC runs")
        assert gc_thread.is_alive() and not runs, "the GC run finished before the reads: nothing was held"

        gc.release.set()
        gc_thread.join(30)
        assert runs and runs[0].versions_dropped > 0, runs
        with pytest.raises((GCTooEarlyError, UpstreamError)):
            client.read_table("bank.accounts", old_ts)  # what GC dropped is gone: the run did its work
        assert sum(int(r["balance"]) for r in client.read_table("bank.accounts").rows) == bank.total
    finally:
        if client is not None:
            client.close()
        cluster.close()


def test_a_transaction_prewritten_below_the_safe_point_after_gc_decided_the_locks_cannot_commit_below_it(
        tmp_path: Path) -> None:
    """The fence that makes short steps safe: once a run has started at safe point S, no
    async-commit or 1PC transaction commits at or below S, so phase 2 never drops a commit
    record a lock it did not see still needs."""
    from pyspark_theflash.codec import encode_record_key
    from pyspark_theflash.upstream.percolator import PUT, Mutation

    cluster = MiniCluster(tmp_path / "data", resolved_ts_interval=0)
    try:
        key = bytes(encode_record_key(77, 1))
        early_start = cluster.get_ts()  # a transaction that began before the safe point
        safe_point = cluster.get_ts()
        cluster.run_gc(safe_point)
        min_commit = cluster.store.prewrite([Mutation(PUT, key, b"late")], key, early_start, 3000, async_commit=True)
        assert min_commit > safe_point
        assert cluster.store.one_pc([Mutation(PUT, bytes(encode_record_key(77, 2)), b"x")], early_start) > safe_point
    finally:
        cluster.close()
