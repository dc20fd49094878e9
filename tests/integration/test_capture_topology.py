"""Capture through region topology changes, against the mini cluster on the wire: every key of
the captured tables stays followed by a registration or a pending lookup (capture's invariant,
``Capture.unfollowed``, asserted by the rig's ``Running.stop``), and the binlog holds exactly
the upstream's versions (key, commit ts), none lost and none twice.

- A forced interleaving: a split during a stale reload. Regions A [.., r10), B [r10, r20),
  C [r20, ..), capture caught up; B merges into A; one of the two reloads runs first and
  registers the merged A' [.., r20); A' splits at r15 just before the other reload asks PD,
  so that reload finds A'' [.., r15) and replaces A''s registration with it. The keys
  [r15, r20) are then the new sibling N's, and before the fix nothing registered N: the
  updates of rows 15-19 never reached the binlog while capture said it had caught up.
  Every order of the two reloads and the split runs.
- A randomized test: splits, merges, a store restart, stale first registrations and random
  reload delays over a few seeds (``THEFLASH_TOPOLOGY_SEEDS`` sets how many: the slow tier
  runs 500), each comparing every version with the upstream's.
"""
from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from capture_rig import Running, apply, assert_equal_at, binlog_events, binlog_versions, options, upstream_versions
from polling import wait_for

from pyspark_theflash.codec import encode_region_key
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column, record_key

TABLE = "t.topo"


def _cluster(root: Path, **kw: Any) -> MiniCluster:
    c = MiniCluster(root / "up", None, resolved_ts_interval=0.05, expired_lock_grace_s=0.5,
                    gc_run_interval_s=None, **kw)
    c.serve(stores=2, binlog_port=None)
    return c


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MiniCluster]:
    c = _cluster(tmp_path)
    yield c
    c.close()


def _create_table(cluster: MiniCluster, rows: int) -> Any:
    info = cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")],
                                primary_key=["id"])
    with cluster.txn() as t:
        for i in range(rows):
            t.insert(TABLE, {"id": i, "v": i})
    return info


def _pd_range(region: Any) -> tuple[bytes, bytes]:
    return bytes(region.start_key), bytes(region.end_key)


def _region_at(cluster: MiniCluster, raw_key: bytes) -> Any:
    pd_key = bytes(encode_region_key(raw_key))
    return next(r for r in cluster.regions() if r.start_key <= pd_key and (not r.end_key or pd_key < r.end_key))


def _assert_binlog_is_the_upstream(cluster: MiniCluster, binlog: Path, final: int) -> None:
    held, doubled = binlog_versions(binlog_events(binlog))
    upstream = upstream_versions(cluster, final)
    assert doubled == [], f"{len(doubled)} versions reached the binlog twice: {doubled[:5]}"
    assert held == upstream, (f"{len(upstream - held)} versions the binlog lost (first {sorted(upstream - held)[:3]}), "
                              f"{len(held - upstream)} the upstream lacks")


@pytest.mark.parametrize("first", ["merged-source", "merged-target"])
@pytest.mark.parametrize("split", ["before-first-lookup", "before-second-lookup", "after-both-lookups"])
def test_a_region_split_off_during_a_stale_reload_is_registered_and_loses_no_row(
        cluster: MiniCluster, tmp_path: Path, first: str, split: str) -> None:
    info = _create_table(cluster, 30)
    assert cluster.split_at(record_key(info, 10)) and cluster.split_at(record_key(info, 20))
    a, b = _region_at(cluster, record_key(info, 0)), _region_at(cluster, record_key(info, 10))
    a_range, b_range = _pd_range(a), _pd_range(b)
    running = Running(options(cluster, tmp_path / "binlog", retry_backoff_s=0.05, retry_jitter=0.0))
    capture = running.capture
    try:
        running.wait_caught_up(cluster.get_ts())
        # The order of the two lookups, and where the split falls among them, is forced by
        # hooks on capture's own calls; PD, the stores and the feed are the cluster's, on the wire.
        order = [b_range, a_range] if first == "merged-source" else [a_range, b_range]
        looked_up: list[tuple[bytes, bytes]] = []
        split_done = threading.Event()
        load_range, scan_regions = capture._load_range, capture.pd.scan_regions

        def split_now() -> None:
            if not split_done.is_set():
                assert cluster.split_at(record_key(info, 15))
                split_done.set()

        def forced_load_range(start: bytes, end: bytes, dropped: Any = None) -> None:
            rng = (start, end)
            if rng in order and rng not in looked_up and order[len(looked_up)] != rng:
                # not its turn: again in a moment, as a later backoff would have it
                capture.pending_reload.append((time.monotonic() + 0.05, start, end, dropped))
                return
            load_range(start, end, dropped)
            if rng in order and rng not in looked_up:
                looked_up.append(rng)

        def forced_scan_regions(start: bytes, end: bytes) -> Any:
            turn = {"before-first-lookup": 0, "before-second-lookup": 1}.get(split)
            if turn is not None and (start, end) in order and order.index((start, end)) == turn == len(looked_up):
                split_now()
            return scan_regions(start, end)

        capture._load_range = forced_load_range  # type: ignore[method-assign]
        capture.pd.scan_regions = forced_scan_regions  # type: ignore[method-assign]
        cluster.merge_regions(b.id, a.id)
        wait_for(lambda: running.error is not None or len(looked_up) == 2, 30, "both lookups to run")
        assert running.error is None, running.error
        split_now()  # after both lookups, where it did not fall before
        with cluster.txn() as t:
            for i in range(5, 25):  # the split-off keys among them: 15..19
                t.update(TABLE, {"id": i, "v": 1000 + i})
        final = cluster.get_ts()
        running.wait_caught_up(final, timeout_s=30)
    finally:
        running.stop()  # asserts that no range went unfollowed
    _assert_binlog_is_the_upstream(cluster, tmp_path / "binlog", final)
    apply(tmp_path / "binlog", tmp_path / "store")
    assert assert_equal_at(cluster, tmp_path / "store", (TABLE,), final) == 30


def test_caught_up_is_never_true_while_a_range_is_followed_by_nothing(cluster: MiniCluster, tmp_path: Path) -> None:
    """Whatever the regions around it say, a key range no registration follows is not caught up:
    the check reports it by name and looks it up again."""
    info = _create_table(cluster, 30)
    assert cluster.split_at(record_key(info, 10)) and cluster.split_at(record_key(info, 20))
    running = Running(options(cluster, tmp_path / "binlog"))
    capture = running.capture
    try:
        now = cluster.get_ts()
        running.wait_caught_up(now)
        middle = _region_at(cluster, record_key(info, 10))
        # a registration lost without a trace: no feed, no pending lookup (what the bug did)
        assert not capture._followed_gaps(with_reloads=True)
        feed = capture.feeds[middle.id]
        capture.table.remove(feed)  # (its row in the region table, and with it its entry in ``feeds``)
        assert capture._followed_gaps(with_reloads=False) == [(feed.start, feed.end)]
        assert not capture.caught_up(now)
        capture._registrations_changed = True  # as any registration's end or start sets it
        running.wait_caught_up(cluster.get_ts(), timeout_s=30)  # found, looked up, registered again
        assert capture.unfollowed == [(feed.start, feed.end)]
        capture.unfollowed.clear()  # the planted loss, not a bug of capture's
    finally:
        running.stop()


def _topology_run(root: Path, seed: int) -> None:
    """One seed: a table under updates, random splits and merges, a store restart and stale
    first registrations, capture's lookups delayed at random; the binlog is then the upstream's
    versions, exactly, and the replica equals the upstream at the final ts."""
    rng = random.Random(seed)
    cluster = _cluster(root, region_split_keys=rng.choice([None, 12, 30]))
    try:
        cluster.change_feed.stale_first_registration = rng.random() < 0.5
        cluster.change_feed.event_feed_v2 = rng.random() < 0.7
        rows = 60
        info = _create_table(cluster, rows)
        for k in sorted(rng.sample(range(1, rows), rng.randint(1, 5))):
            cluster.split_at(record_key(info, k))
        running = Running(options(cluster, root / "binlog", retry_backoff_s=rng.choice([0.01, 0.05, 0.2]),
                                  retry_jitter=rng.choice([0.0, 1.0, 4.0]), jitter_seed=seed))
        # PD answers a lookup late at times, so the topology moves while capture looks it up
        pd_delay, scan_regions = random.Random(seed + 2), running.capture.pd.scan_regions

        def slow_scan_regions(start: bytes, end: bytes) -> Any:
            time.sleep(pd_delay.choice([0.0, 0.0, 0.005, 0.03, 0.1]))
            return scan_regions(start, end)

        running.capture.pd.scan_regions = slow_scan_regions  # type: ignore[method-assign]
        try:
            if rng.random() < 0.5:
                running.wait_caught_up(cluster.get_ts())
            stop = threading.Event()
            errors: list[BaseException] = []

            def write() -> None:
                wr = random.Random(seed + 1)
                try:
                    while not stop.is_set():
                        with cluster.txn() as t:
                            for i in wr.sample(range(rows), 3):
                                t.update(TABLE, {"id": i, "v": wr.randrange(1 << 20)})
                        time.sleep(0.005)  # pacing: the load, not a wait for anything
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            restarted = False
            for _ in range(rng.randint(6, 14)):
                action = rng.random()
                regions = [r for r in cluster.regions() if r.end_key and r.start_key
                           and bytes(r.start_key) >= bytes(encode_region_key(record_key(info, 0)))]
                if action < 0.35:
                    cluster.split_at(record_key(info, rng.randrange(1, rows)))
                elif action < 0.85 and len(regions) >= 2:
                    i = rng.randrange(len(regions) - 1)
                    src, dst = (regions[i], regions[i + 1]) if rng.random() < 0.5 else (regions[i + 1], regions[i])
                    merged = cluster.merge_regions(src.id, dst.id)
                    if rng.random() < 0.5:  # and the merged region splits again while capture follows the merge
                        time.sleep(rng.choice([0.0, 0.01, 0.03, 0.08]))
                        inside = [k for k in range(1, rows) if _region_at(cluster, record_key(info, k)).id == merged.id
                                  and bytes(encode_region_key(record_key(info, k))) > bytes(merged.start_key)]
                        if inside:
                            cluster.split_at(record_key(info, rng.choice(inside)))
                elif not restarted:
                    restarted = True
                    server = cluster.store_servers[rng.randrange(len(cluster.store_servers))]
                    server.stop()
                    time.sleep(rng.choice([0.05, 0.2]))
                    server.start()
                time.sleep(rng.choice([0.0, 0.01, 0.05, 0.15]))
            stop.set()
            writer.join(10)
            assert errors == [], errors
            final = cluster.get_ts()
            running.wait_caught_up(final, timeout_s=60)
        finally:
            running.stop()
        _assert_binlog_is_the_upstream(cluster, root / "binlog", final)
        apply(root / "binlog", root / "store")
        assert assert_equal_at(cluster, root / "store", (TABLE,), final) == rows
    finally:
        cluster.close()


SEEDS = int(os.environ.get("THEFLASH_TOPOLOGY_SEEDS", "3"))


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_topology_changes_lose_and_double_no_version(tmp_path: Path, seed: int) -> None:
    _topology_run(tmp_path, seed)


@pytest.mark.slow
def test_random_topology_changes_over_500_seeds(tmp_path: Path) -> None:
    for seed in range(1000, 1500):
        try:
            _topology_run(tmp_path / str(seed), seed)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {exc}") from exc
