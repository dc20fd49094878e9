"""Capture over 2,000 regions on two TiKV stores: live rows spread over them (messages of many
regions' events), splits and merges while it runs, and a store restart that breaks every
registration of that store at once. The replica equals the upstream, row for row, at 5 ts."""
from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pytest

from capture_rig import Running, apply, assert_equal_at, options
from polling import wait_for

from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column, record_key

TABLE = "t.many"
ROWS = 10_000  # 5 rows a region: 2,000 regions
SPLIT_KEYS = 5


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MiniCluster]:
    c = MiniCluster(tmp_path / "up", tmp_path / "upstream-log", resolved_ts_interval=0.1, region_split_keys=SPLIT_KEYS,
                    expired_lock_grace_s=0.5, gc_run_interval_s=None)
    c.serve(stores=2)
    yield c
    c.close()


@pytest.mark.slow  # about a minute quiet (2,000 regions' registrations and snapshots through the mini cluster)
def test_two_thousand_regions_on_two_stores_through_splits_merges_and_a_store_restart(cluster: MiniCluster,
                                                                                     tmp_path: Path) -> None:
    table = cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("v", "BIGINT")],
                                 primary_key=["id"])
    cluster.bulk_insert(TABLE, pa.table({"id": pa.array(range(ROWS), pa.int64()), "v": pa.array([0] * ROWS, pa.int64())}),
                        txn_rows=500)
    regions = [r for r in cluster.regions() if r.start_key or r.end_key]
    assert len(regions) >= 2_000, len(regions)
    stamps = [cluster.get_ts()]
    cluster.change_feed.batch_window_s = 0.02  # messages of many regions' events, as TiKV sends
    running = Running(options(cluster, tmp_path / "binlog", retry_backoff_s=0.05))
    rng = random.Random(50)
    done = threading.Event()

    writes_done = [0]

    def writes() -> None:  # 2PC transactions of a few rows each, over random regions
        while not done.is_set():
            ids = rng.sample(range(ROWS), 4)
            cluster.run_txn(lambda t: [t.update(TABLE, {"id": i, "v": rng.randint(1, 10**9)}) for i in ids],
                            one_pc=False)
            writes_done[0] += 1

    writer = threading.Thread(target=writes, name="many-regions-writes")
    writer.start()
    try:
        running.wait_caught_up(cluster.get_ts(), timeout_s=300)
        stamps.append(cluster.get_ts())
        # splits and merges while rows come
        for i in range(20):
            cluster.split_at(record_key(table, rng.randrange(ROWS)))
        stamps.append(cluster.get_ts())
        live = sorted(cluster.regions(), key=lambda r: r.start_key)
        for left, right in list(zip(live, live[1:]))[:200:10]:
            cluster.merge_regions(right.id, left.id)
        stamps.append(cluster.get_ts())
        # store 2 restarts: every registration on it fails at once
        on_store_2 = {f.id for f in running.capture.feeds.values() if f.store_id == 2}
        assert on_store_2, "no region's leader on store 2"
        cluster.store_servers[1].stop()
        wait_for(lambda: not on_store_2 & {f.id for f in running.capture.feeds.values()
                                           if f.store_id == 2 and f.initialized},
                 30, "capture to see store 2's registrations fail")
        cluster.store_servers[1].start()
        committed = writes_done[0]
        wait_for(lambda: writes_done[0] >= committed + 50, 60, "50 more transactions after the restart")
    finally:
        done.set()
        writer.join()
    final = cluster.get_ts()
    stamps.append(final)
    running.wait_caught_up(final, timeout_s=300)
    running.stop()
    apply(tmp_path / "binlog", tmp_path / "store")
    assert len(stamps) == 5
    assert sum(assert_equal_at(cluster, tmp_path / "store", (TABLE,), ts) for ts in stamps) == 5 * ROWS
