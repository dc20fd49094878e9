"""`theflash capture` against the mini cluster on the wire: PD (pdpb.PD), TiKV stores
(cdcpb.ChangeData) and TiDB's status port, over real gRPC on loopback. Each test replicates
into a binlog, applies it with the writer, and compares the store with the upstream's own
rows at the same ts (``scan_table``: TiDB's stale read), including ts before capture started.
"""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from capture_rig import (
    TABLES,
    Running,
    apply,
    assert_equal_at,
    binlog_events,
    binlog_versions,
    options,
    region_indexes_in_log_order,
    run_workloads,
    upstream_versions,
)
from polling import wait_for

from pyspark_theflash.binlog import Position, prune, region_runs
from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.capture import Capture, CaptureError, state_json
from pyspark_theflash.codec.key_ranges import KeyRange
from pyspark_theflash.upstream_client.pd_client import PDClient
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column, record_key
from pyspark_theflash.upstream.workloads import Faults


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MiniCluster]:
    c = MiniCluster(tmp_path / "up", tmp_path / "upstream-log", resolved_ts_interval=0.05, region_split_keys=25,
                    expired_lock_grace_s=0.5, gc_run_interval_s=None)
    c.serve(stores=2)
    yield c
    c.close()


def test_capture_replicates_history_and_changes_with_splits_merges_ddl_and_dying_transactions(
        cluster: MiniCluster, tmp_path: Path) -> None:
    faults = Faults(dying=0.05, rollback=0.05, large=0.03, split_merge=0.1, schema=0.05, dying_ttl_ms=100)
    bank, orders = run_workloads(cluster, faults)
    cluster.change_feed.batch_window_s = 0.05  # messages of many regions' events, as TiKV sends
    before = [cluster.get_ts()]
    bank.start()
    orders.start()
    time.sleep(0.3)
    before.append(cluster.get_ts())  # history written before capture started
    running = Running(options(cluster, tmp_path / "binlog"))
    bank.join()
    orders.join()
    assert bank.stats.errors == [] and orders.stats.errors == []
    final = cluster.get_ts()
    running.wait_caught_up(final)
    # the stores serve EventFeedV2: capture probed it and multiplexes its registrations on it
    assert {s.method for s in running.capture.streams.values()} == {"EventFeedV2"}
    running.stop()
    apply(tmp_path / "binlog", tmp_path / "store")
    rng = random.Random(7)
    stamps = before + sorted(rng.randrange(before[0], final) for _ in range(4)) + [final]
    assert sum(assert_equal_at(cluster, tmp_path / "store", TABLES, ts) for ts in stamps) > 0


def test_a_split_and_a_merge_reach_the_binlog_as_admin_events_from_pd(cluster: MiniCluster, tmp_path: Path) -> None:
    table = cluster.create_table("t.sm", [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")],
                                 primary_key=["id"])
    cluster.run_txn(lambda t: [t.insert("t.sm", {"id": i, "v": i}) for i in range(20)])
    # lookups in the order their errors came (no jitter): the merge's source is looked up before
    # the target's new registration has written its snapshot, which is when the merge is written
    # (once the target's snapshot of the merged range is in, that snapshot alone sets the shape)
    running = Running(options(cluster, tmp_path / "binlog", retry_jitter=0.0))
    try:
        running.wait_caught_up(cluster.get_ts())
        before = {r.id for r in cluster.regions()}
        assert cluster.split_at(record_key(table, 10))
        (born,) = {r.id for r in cluster.regions()} - before
        parent = next(r.id for r in cluster.regions() if r.id in before and r.end_key == next(
            b.start_key for b in cluster.regions() if b.id == born))
        cluster.run_txn(lambda t: t.update("t.sm", {"id": 15, "v": 150}))
        running.wait_caught_up(cluster.get_ts())
        cluster.merge_regions(born, parent)
        cluster.run_txn(lambda t: t.update("t.sm", {"id": 16, "v": 160}))
        final = cluster.get_ts()
        running.wait_caught_up(final)
    finally:
        running.stop()
    admin = [ev for ev in binlog_events(tmp_path / "binlog") if ev.HasField("admin")]
    splits = [ev for ev in admin if ev.admin.HasField("split") and ev.region_id == parent]
    assert splits and {r.id for r in splits[0].admin.split.regions} == {parent, born}
    merges = [ev for ev in admin if ev.admin.HasField("merge")]
    assert [(m.admin.merge.source.id, m.admin.merge.target.id, m.region_id) for m in merges] == [(born, parent, parent)]
    apply(tmp_path / "binlog", tmp_path / "store")
    assert_equal_at(cluster, tmp_path / "store", ("t.sm",), final)
    with Store.open(str(tmp_path / "store"), readonly=True) as s:
        assert {r["id"]: r["v"] for r in s.scan_table("t.sm", final).to_pylist()}[16] == 160


def test_a_long_transaction_holds_resolved_ts_and_its_commit_arrives(cluster: MiniCluster, tmp_path: Path) -> None:
    cluster.create_table("t.long", [make_column("id", "BIGINT", not_null=True), make_column("v", "VARCHAR(300)")],
                         primary_key=["id"])
    cluster.run_txn(lambda t: t.insert("t.long", {"id": 1, "v": "a"}))
    prewritten = threading.Event()
    commit_now = threading.Event()
    txn = cluster.txn(one_pc=False, ttl_ms=60_000,
                      after_prewrite=lambda _t: (prewritten.set(), commit_now.wait(30)))
    txn.insert("t.long", {"id": 2, "v": "x" * 300})  # a value too long to ride in the COMMIT row
    txn.update("t.long", {"id": 1, "v": "b"})
    held = cluster.get_ts()
    txn_thread = threading.Thread(target=txn.commit)
    running = Running(options(cluster, tmp_path / "binlog"))
    try:
        txn_thread.start()
        assert prewritten.wait(30)
        time.sleep(0.5)  # several resolved-ts ticks while the lock is open
        assert not running.capture.caught_up(held + (1 << 18) * 1000)
        commit_now.set()
        txn_thread.join(30)
        final = cluster.get_ts()
        running.wait_caught_up(final)
    finally:
        commit_now.set()
        running.stop()
    apply(tmp_path / "binlog", tmp_path / "store")
    assert_equal_at(cluster, tmp_path / "store", ("t.long",), final)
    with Store.open(str(tmp_path / "store"), readonly=True) as s:
        assert {r["id"]: r["v"] for r in s.scan_table("t.long", final).to_pylist()} == {1: "b", 2: "x" * 300}


def test_capture_resolves_the_locks_of_an_abandoned_transaction_that_hold_a_region_back(tmp_path: Path) -> None:
    """A client dies after prewrite: nothing upstream resolves its locks (this cluster, as
    TiKV, leaves them to readers and GC), so the region's resolved ts stops at them until
    capture, as TiCDC, decides the transaction (rolled back: its TTL ran out)."""
    from pyspark_theflash.upstream.tidb import Abandoned

    cluster = MiniCluster(tmp_path / "up", tmp_path / "upstream-log", resolved_ts_interval=0.05,
                          expired_lock_grace_s=None, gc_run_interval_s=None)
    cluster.serve(stores=2)
    try:
        cluster.create_table("t.dead", [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")],
                             primary_key=["id"])
        cluster.run_txn(lambda t: (t.insert("t.dead", {"id": 1, "v": 1}), t.insert("t.dead", {"id": 2, "v": 2})))
        dying = cluster.txn(one_pc=False, ttl_ms=200, after_prewrite=lambda _t: (_ for _ in ()).throw(Abandoned()))
        dying.update("t.dead", {"id": 1, "v": 10})
        dying.update("t.dead", {"id": 2, "v": 20})
        with pytest.raises(Abandoned):
            dying.commit()
        cluster.run_txn(lambda t: t.insert("t.dead", {"id": 3, "v": 3}))
        after = cluster.get_ts()
        assert cluster.store.txn_locks_at_or_below(after)  # left behind: nobody upstream resolves them
        running = Running(options(cluster, tmp_path / "binlog", resolve_locks_after_s=0.5, resolve_locks_interval_s=1.0))
        try:
            running.wait_caught_up(after, timeout_s=30)  # only if the abandoned locks were resolved
            assert running.capture.lock_resolver is not None and running.capture.lock_resolver.resolved_txns >= 1
        finally:
            running.stop()
        apply(tmp_path / "binlog", tmp_path / "store")
        assert_equal_at(cluster, tmp_path / "store", ("t.dead",), after)
        with Store.open(str(tmp_path / "store"), readonly=True) as s:
            assert {r["id"]: r["v"] for r in s.scan_table("t.dead", after).to_pylist()} == {1: 1, 2: 2, 3: 3}
        assert cluster.store.txn_locks_at_or_below(after) == []  # capture rolled them back upstream
    finally:
        cluster.close()


def test_regions_registered_again_after_splits_and_merges_scan_only_what_the_replica_lacks(
        cluster: MiniCluster, tmp_path: Path) -> None:
    """A region registered again over keys capture has covered (a split, a merge, a region
    error) asks the feed for the versions above what the replica holds (checkpoint_ts > 0) and
    writes those it lacks as an incremental snapshot (since_ts): nothing rescanned whole,
    nothing doubled, nothing lost. The binlog's versions, applied as the writer applies them,
    are exactly the upstream's, and the replica equals upstream at several ts."""
    bank, orders = run_workloads(cluster, Faults(split_merge=0.15, rollback=0.05, dying=0.03, dying_ttl_ms=200),
                                 count=200, rate=80)
    running = Running(options(cluster, tmp_path / "binlog"))
    began = cluster.get_ts()
    running.wait_caught_up(began)
    bank.start()
    orders.start()
    bank.join()
    orders.join()
    assert bank.stats.errors == [] and orders.stats.errors == []
    final = cluster.get_ts()
    running.wait_caught_up(final)
    skipped = running.capture.rows_skipped
    running.stop()
    events = binlog_events(tmp_path / "binlog")
    snapshots = [ev.snapshot for ev in events if ev.WhichOneof("payload") == "snapshot"]
    incremental = [s for s in snapshots if s.since_ts]
    whole = [s for s in snapshots if not s.since_ts]
    assert bank.stats.splits + bank.stats.merges + orders.stats.splits + orders.stats.merges >= 10
    # every region once at the start; every registration after that from what the replica holds
    assert len(whole) == len({s.region.id for s in whole}) and len(incremental) >= 10, (len(whole), len(incremental))
    assert skipped > 0  # the scans gave versions the replica held, and they were not written again
    held, doubled = binlog_versions(events)
    assert doubled == []
    upstream = upstream_versions(cluster, final)
    assert held == upstream, (f"{len(held - upstream)} versions the upstream lacks, "
                              f"{len(upstream - held)} versions the binlog lost")
    apply(tmp_path / "binlog", tmp_path / "store")
    rng = random.Random(5)
    stamps = [began] + sorted(rng.randrange(began, final) for _ in range(3)) + [final]
    assert sum(assert_equal_at(cluster, tmp_path / "store", TABLES, ts) for ts in stamps) > 0


def test_a_region_the_replica_retires_has_its_registration_ended_not_fed(cluster: MiniCluster, tmp_path: Path) -> None:
    """The writer retires every region a snapshot, split or merge overlaps in part (store/apply.py).
    Capture mirrors that rule: a registration whose region was retired writes no more rows (its
    keys outside the newer region's claim would reach a region without its locks: a COMMIT
    without PREWRITE) and its range is looked up again; a split naming it is no longer written."""
    from pyspark_theflash.capture.feed_columns import decode_change_data
    from pyspark_theflash.capture.region_feed import RegionFeed
    from pyspark_theflash.capture.tasks import HeldRows
    from pyspark_theflash.codec import encode_region_key
    from pyspark_theflash.codec.keys import encode_record_key
    from pyspark_theflash.proto import cdcpb_pb2

    raw = {name: encode_record_key(500, h) for name, h in (("b", 100), ("c", 150), ("d", 200), ("f", 300))}

    def k(name: bytes) -> bytes:  # keys b < c < d < f: records 100, 150, 200 and 300 of table 500
        return bytes(encode_region_key(raw[name.decode()]))

    capture = Capture(options(cluster, tmp_path / "binlog"))
    try:
        old = RegionFeed(70, k(b"b"), k(b"f"), version=5, conf_ver=1, store_id=1, gen=1, initialized=True)
        capture.table.add(old)  # (a current registration: the region table's)
        for ev in capture._snapshot_events(old, binlog_pb2.RegionSnapshot(region=old.region_proto())):
            capture._absorb(ev)  # as _release takes in each event it writes
        assert old.written and 70 in capture.introduced
        # region 71 (split off 70 upstream, a newer epoch) writes its snapshot over [d, f) first
        born = RegionFeed(71, k(b"d"), k(b"f"), version=6, conf_ver=1, store_id=2, gen=2, initialized=True)
        capture.table.add(born)
        (snap,) = capture._snapshot_events(born, binlog_pb2.RegionSnapshot(region=born.region_proto()))
        capture._absorb(snap)
        assert old.discarded and 70 not in capture.feeds and 70 not in capture.introduced
        assert [r[3] for r in capture.pending_reload] == [old]  # its range is looked up again
        # a transaction of a key at b..d (no newer claim covers it) of the ended registration: its
        # rows match (the feed's rules hold) but are not written
        Ev = cdcpb_pb2.Event
        msg = cdcpb_pb2.ChangeDataEvent(events=[Ev(region_id=70, request_id=old.gen, entries=Ev.Entries(entries=[
            Ev.Row(type=Ev.PREWRITE, op_type=Ev.Row.PUT, start_ts=10, key=raw["c"], value=b"v"),
            Ev.Row(type=Ev.COMMIT, op_type=Ev.Row.PUT, start_ts=10, commit_ts=11, key=raw["c"])]))])
        rows = old.take_columns(decode_change_data(msg.SerializeToString()).rows)
        assert rows is not None and rows.count == 2
        assert capture._build(HeldRows(old, rows)) == []
        assert 71 in capture.introduced and capture.feeds[71] is born and not born.discarded
        # the region's claim is what the replica's ranges keep of it (no second copy of its keys),
        # and so after a restart from the state file
        claim = capture.claims.of(71, KeyRange(born.start, born.end))
        assert claim is not None and capture.introduced.get(71) is claim
        # the state the loop hands to the background save is the state as of taking it: what
        # changes while it is written (a region's snapshot: its claim, range, index and resume
        # floor; a resolved ts) is not in it
        taken, before = capture._state_now(), state_json.dumps(capture._state_now())
        late = RegionFeed(72, k(b"b"), k(b"c"), version=7, conf_ver=1, store_id=1, gen=3, initialized=True)
        capture.table.add(late)
        capture._append(capture._snapshot_events(late, binlog_pb2.RegionSnapshot(region=late.region_proto())))
        capture.resolved.add(np.array([71, 72], np.int64), 777)
        after = json.loads(state_json.dumps(capture._state_now()))
        assert after["claims"] != json.loads(before)["claims"] and "72" in after["indexes"] and "72" in after["resolved"]
        assert state_json.dumps(taken) == before
        capture._save_state()
    finally:  # never run: its binlog writer and PD client are all it opened
        capture.writer.close()
        capture.pd.close()
    again = Capture(options(cluster, tmp_path / "binlog"))
    try:
        kept = again.introduced.get(71)
        assert kept is not None and (kept.start, kept.end) == (born.start, born.end)
        assert kept is again.claims.of(71, kept)
        assert [rid for rid, _ in again.introduced.sorted_items()] == [71, 72]
    finally:
        again.writer.close()
        again.pd.close()


def test_a_registration_that_ended_with_rows_waiting_writes_none_of_them_once_its_region_is_retired(
        cluster: MiniCluster, tmp_path: Path) -> None:
    """A registration can end (an epoch error, a reload that found its region narrower) with live
    rows still waiting for the DDL frontier, and a newer region's snapshot over part of its range
    can be released before them: the writer has then retired the whole region, caches and all.
    Its waiting rows are not written (the COMMIT of a PREWRITE the retirement dropped: the
    writer stopped with CommitWithoutPrewriteError in a CI run of the test above), whether they
    wait as one region's event or in an event of many, and the binlog applies."""
    from pyspark_theflash.capture.feed_columns import LiveBatch, decode_change_data
    from pyspark_theflash.capture.region_feed import RegionFeed
    from pyspark_theflash.capture.tasks import HeldRows, HeldRuns, HeldSnapshot
    from pyspark_theflash.codec import encode_region_key
    from pyspark_theflash.codec.keys import encode_record_key
    from pyspark_theflash.proto import cdcpb_pb2
    from pyspark_theflash.upstream_client.pd_client import RegionInfo

    Ev = cdcpb_pb2.Event
    raw = {name: encode_record_key(500, h) for name, h in (("b", 100), ("c", 150), ("d", 200), ("f", 300))}

    def k(name: str) -> bytes:  # keys b < c < d < f: records 100, 150, 200 and 300 of table 500
        return bytes(encode_region_key(raw[name]))

    def live(feed: RegionFeed, *rows: cdcpb_pb2.Event.Row) -> LiveBatch:  # one message's rows of ``feed``
        msg = cdcpb_pb2.ChangeDataEvent(events=[Ev(region_id=feed.id, request_id=feed.gen,
                                                   entries=Ev.Entries(entries=list(rows)))])
        cols = feed.take_columns(decode_change_data(msg.SerializeToString()).rows)
        assert cols is not None
        return cols

    capture = Capture(options(cluster, tmp_path / "binlog"))
    try:
        # region 70 over [b, f): its snapshot, then a PREWRITE at c, written
        old = RegionFeed(70, k("b"), k("f"), version=5, conf_ver=1, store_id=1, gen=1, initialized=True)
        capture.table.add(old)
        capture._hold(0, HeldSnapshot(old, binlog_pb2.RegionSnapshot(region=old.region_proto())))
        capture._hold(0, HeldRows(old, live(old, Ev.Row(type=Ev.PREWRITE, op_type=Ev.Row.PUT, start_ts=10,
                                                        key=raw["c"], value=b"v"))))
        capture.frontier = 1 << 62
        capture._release()
        # region 71, split off 70 over [d, f), registered by another range's reload: its snapshot
        # waits; then 70's COMMIT at c (outside 71's keys) waits behind it; then 70's
        # registration ends (its epoch error) with that row still held
        born = RegionFeed(71, k("d"), k("f"), version=6, conf_ver=1, store_id=2, gen=2, initialized=True)
        capture.table.add(born)
        capture._hold(0, HeldSnapshot(born, binlog_pb2.RegionSnapshot(region=born.region_proto())))
        capture._hold(11, HeldRows(old, live(old, Ev.Row(type=Ev.COMMIT, op_type=Ev.Row.PUT, start_ts=10,
                                                         commit_ts=11, key=raw["c"]))))
        capture._drop(old, "epoch_not_match", 0.0)
        assert len(capture.ended_waiting) == 1
        capture._release()
        assert old.discarded and not born.discarded and 70 not in capture.introduced
        assert len(capture.ended_waiting) == 0  # (nothing it took waits any more)
        # the same, its rows in an event of many regions (``HeldRuns``): a registration ended by a
        # reload that found its region at a newer epoch (``_register``'s replacing it)
        again = RegionFeed(70, k("b"), k("d"), version=6, conf_ver=1, store_id=1, gen=3, initialized=True)
        capture.table.add(again)
        capture._hold(0, HeldSnapshot(again, binlog_pb2.RegionSnapshot(region=again.region_proto())))
        capture._hold(0, HeldRows(again, live(again, Ev.Row(type=Ev.PREWRITE, op_type=Ev.Row.PUT, start_ts=20,
                                                            key=raw["b"], value=b"w"))))
        capture._release()
        assert again.written and 70 in capture.introduced
        right = RegionFeed(72, k("c"), k("d"), version=7, conf_ver=1, store_id=2, gen=4, initialized=True)
        capture.table.add(right)
        capture._hold(0, HeldSnapshot(right, binlog_pb2.RegionSnapshot(region=right.region_proto())))
        commit_b = cdcpb_pb2.ChangeDataEvent(events=[Ev(region_id=70, request_id=again.gen, entries=Ev.Entries(
            entries=[Ev.Row(type=Ev.COMMIT, op_type=Ev.Row.PUT, start_ts=20, commit_ts=21, key=raw["b"])]))])
        assert capture._on_live_message(1, decode_change_data(commit_b.SerializeToString()))
        assert isinstance(capture.fifo[-1][1], HeldRuns)
        capture._register(RegionInfo(id=70, start=k("b"), end=k("c"), version=7, conf_ver=1, leader_store=1))
        assert capture.feeds[70] is not again and len(capture.ended_waiting) == 1
        capture._release()
        assert again.discarded and not right.discarded and len(capture.ended_waiting) == 0
    finally:
        capture.writer.close()
        capture.pd.close()
    written = [(int(ev.region_id), ev.WhichOneof("payload")) for ev in binlog_events(tmp_path / "binlog")]
    assert written == [(70, "snapshot"), (70, "entries"), (71, "snapshot"),
                       (70, "snapshot"), (70, "entries"), (72, "snapshot")]
    apply(tmp_path / "binlog", tmp_path / "store")  # (the writer's CommitWithoutPrewriteError, before)


def test_a_message_of_many_regions_is_one_binlog_event_meaning_each_regions_own(cluster: MiniCluster,
                                                                                 tmp_path: Path) -> None:
    """A feed message whose events are live rows of several initialised registrations is matched in
    one call and written as one event of many regions (binlog format 3): its runs are exactly the
    events each region's rows alone make (``LiveEvents.columns_event``), a discarded registration's rows are
    left out, one whose rows break the feed's rules is dropped without its rows, and each region's
    binlog index goes on from its own."""
    from pyspark_theflash.capture.feed_columns import decode_change_data
    from pyspark_theflash.capture.region_feed import RegionFeed
    from pyspark_theflash.codec import encode_region_key
    from pyspark_theflash.codec.keys import encode_record_key
    from pyspark_theflash.proto import cdcpb_pb2

    Ev = cdcpb_pb2.Event

    def key(h: int) -> bytes:
        return encode_record_key(500, h)

    capture = Capture(options(cluster, tmp_path / "binlog"))
    try:
        feeds = []
        for i in range(4):  # regions 80..83 over handles [100i, 100i + 100)
            f = RegionFeed(80 + i, bytes(encode_region_key(key(100 * i))), bytes(encode_region_key(key(100 * i + 100))),
                           version=5, conf_ver=1, store_id=1, gen=10 + i, initialized=True, resolved_ts=50)
            capture.table.add(f)
            for ev in capture._snapshot_events(f, binlog_pb2.RegionSnapshot(region=f.region_proto())):
                capture._append([ev])
            feeds.append(f)

        def prewrite(h: int, ts: int) -> Ev.Row:
            return Ev.Row(type=Ev.PREWRITE, op_type=Ev.Row.PUT, start_ts=ts, key=key(h), value=b"v%d" % h)

        def commit(h: int, ts: int) -> Ev.Row:
            return Ev.Row(type=Ev.COMMIT, op_type=Ev.Row.PUT, start_ts=ts, commit_ts=ts + 1, key=key(h))

        def event(f: RegionFeed, *rows: Ev.Row) -> Ev:
            return Ev(region_id=f.id, request_id=f.gen, entries=Ev.Entries(entries=list(rows)))

        a, b, c, d = feeds
        d.discarded = True  # retired in the replica: nothing more of it is written
        message = cdcpb_pb2.ChangeDataEvent(events=[
            event(a, prewrite(1, 100), prewrite(2, 100)), event(b, prewrite(101, 102)),
            event(c, commit(201, 104)),  # a COMMIT without its PREWRITE: c is dropped, its rows unwritten
            event(d, prewrite(301, 106)), event(a, commit(1, 100), commit(2, 100)),  # a again, after others
            event(b, commit(101, 102))])
        capture.frontier = 1 << 62
        before = capture.events_written
        capture._on_events(1, decode_change_data(message.SerializeToString()))
        capture._release()
        assert capture.events_written == before + 1
        assert c.id not in capture.feeds and [r[3] for r in capture.pending_reload] == [c]
        (many,) = binlog_events(tmp_path / "binlog", expand=False)[-1:]
        assert region_runs.has_runs(many) and (many.region_id, many.index) == (0, 0)
        runs = region_runs.split(many)
        assert [(e.region_id, e.index, e.epoch.version) for e in runs] == [(80, 2, 5), (81, 2, 5)]

        def rows(e: binlog_pb2.Event) -> list[tuple[int, int, int, bytes]]:
            return [(r.type, r.start_ts, r.commit_ts, r.key) for r in binlog_rows.iter_rows(e.entries)]

        P, C = binlog_pb2.Row.PREWRITE, binlog_pb2.Row.COMMIT
        assert rows(runs[0]) == [(P, 100, 0, key(1)), (P, 100, 0, key(2)), (C, 100, 101, key(1)), (C, 100, 101, key(2))]
        assert rows(runs[1]) == [(P, 102, 0, key(101)), (C, 102, 103, key(101))]
        # the resolved ts of all of them in one message: the current initialised registrations move
        resolved = cdcpb_pb2.ChangeDataEvent(resolved_ts=cdcpb_pb2.ResolvedTs(regions=[80, 81, 82, 83, 99], ts=200))
        capture._on_events(1, decode_change_data(resolved.SerializeToString()))
        capture._release()
        (last,) = binlog_events(tmp_path / "binlog", expand=False)[-1:]
        assert sorted(last.resolved.regions) == [80, 81, 83] and last.resolved.ts == 200
        assert (a.resolved_ts, b.resolved_ts, d.resolved_ts) == (200, 200, 200)
    finally:  # never run: its binlog writer and PD client are all it opened
        capture.writer.close()
        capture.pd.close()


def test_regions_answering_epoch_not_match_at_first_and_a_restarted_store(cluster: MiniCluster, tmp_path: Path) -> None:
    cluster.change_feed.stale_first_registration = True
    cluster.change_feed.event_feed_v2 = False  # stores as a TiKV before 7.5: EventFeed only
    bank, orders = run_workloads(cluster, Faults(split_merge=0.1), count=150)
    bank.start()
    orders.start()
    running = Running(options(cluster, tmp_path / "binlog"))
    time.sleep(0.5)
    cluster.store_servers[1].stop()  # TiKV store 2 goes down: its streams break
    time.sleep(0.3)
    cluster.store_servers[1].start()
    bank.join()
    orders.join()
    final = cluster.get_ts()
    running.wait_caught_up(final)
    assert {s.method for s in running.capture.streams.values()} == {"EventFeed"}  # the probe fell back
    running.stop()
    apply(tmp_path / "binlog", tmp_path / "store")
    assert_equal_at(cluster, tmp_path / "store", TABLES, final)


def test_capture_holds_a_pd_service_safe_point_that_bounds_gc(cluster: MiniCluster, tmp_path: Path) -> None:
    bank, orders = run_workloads(cluster, count=20)
    running = Running(options(cluster, tmp_path / "binlog", gc_update_s=0.1))
    try:
        running.wait_caught_up(cluster.get_ts())
        point = cluster.service_safe_points.of(running.capture.service_id.encode())
        assert point is not None and running.capture.service_id.startswith("theflash-capture-")
        now = cluster.get_ts()
        run = cluster.run_gc(now)  # TiDB's GC worker asks for now; PD's service safe point caps it
        assert run.safe_point <= point < now
    finally:
        running.stop()


def test_tables_selects_and_bad_names_are_refused(cluster: MiniCluster, tmp_path: Path) -> None:
    bank, orders = run_workloads(cluster, count=30)
    bank.start()
    bank.join()
    with pytest.raises(CaptureError, match="nosuch.table"):
        Capture(options(cluster, tmp_path / "bad", tables=["nosuch.table"])).run()
    running = Running(options(cluster, tmp_path / "binlog", tables=["bank.accounts"]))
    final = cluster.get_ts()
    running.wait_caught_up(final)
    running.stop()
    tables_in_log = {json.loads(ev.ddl.table_info)["name"]["O"] for ev in binlog_events(tmp_path / "binlog")
                     if ev.HasField("ddl")}
    assert tables_in_log == {"accounts"}
    apply(tmp_path / "binlog", tmp_path / "store")
    assert_equal_at(cluster, tmp_path / "store", ("bank.accounts",), final)


def test_pd_client_speaks_to_the_mini_clusters_pd(cluster: MiniCluster) -> None:
    pd = PDClient(cluster.pd_address)
    try:
        assert pd.cluster_id == cluster.cluster_id
        a, b = pd.get_ts(), pd.get_ts(count=10)
        assert b >= a + 10
        assert sorted(pd.stores()) == [1, 2]
        regions = pd.scan_regions(b"", b"")
        assert [r.id for r in regions] == [r.id for r in cluster.regions()]
        assert regions[0].start == b"" and regions[-1].end == b""
    finally:
        pd.close()


def test_pd_calls_in_flight_survive_another_thread_moving_to_a_new_leader(cluster: MiniCluster) -> None:
    """A thread that reconnects (the leader moved, or PD timed out) closes the old channel:
    calls other threads have in flight on it fail CANCELLED and are retried on the new one,
    not raised (a service's reads failed with "CANCELLED: Channel closed!")."""
    pd = PDClient(cluster.pd_address)
    stop = threading.Event()
    errors: list[BaseException] = []
    stamps: list[int] = []

    def ask() -> None:
        while not stop.is_set():
            try:
                stamps.append(pd.get_ts())
                pd.stores()
            except BaseException as exc:  # noqa: BLE001 - the test reports any
                errors.append(exc)
                return

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(40):
            answered = len(stamps)
            pd.leader = "moved-away:1"  # makes _connect swap channels, as a leader change does
            pd._connect()
            # the next swap once a call was answered on the new channel (or a thread failed)
            wait_for(lambda: len(stamps) > answered or bool(errors), 10, "a call on the new channel")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        pd.close()
    assert not errors, errors[:3]
    assert len(stamps) > 40 and len(set(stamps)) == len(stamps)  # every call answered, each ts fresh


def test_capture_and_the_writer_survive_sigkill_and_resume(cluster: MiniCluster, tmp_path: Path) -> None:
    """`theflash capture` and `theflash writer run` as processes, each killed with SIGKILL at
    random moments while the workloads write and restarted each time, then capture run to
    --until-ts and the writer to --until-caught-up: the replica equals upstream."""
    bank, orders = run_workloads(cluster, Faults(split_merge=0.05, rollback=0.05), count=400, rate=80)
    bank.start()
    orders.start()
    binlog, store = tmp_path / "binlog", tmp_path / "store"
    theflash = [sys.executable, "-m", "pyspark_theflash"]
    capture = theflash + ["capture", "--pd", cluster.pd_address.removeprefix("pd://"),
                          "--tidb", f"http://{cluster.status_address}", "--binlog", str(binlog)]
    writer = theflash + ["writer", "run", "--binlog", f"file://{binlog}", "--store", str(store),
                         "--interval", "50ms"]
    rng = random.Random(3)
    for _ in range(3):
        procs = [subprocess.Popen(capture, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        time.sleep(rng.uniform(0.5, 1.0))
        procs.append(subprocess.Popen(writer, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(rng.uniform(1.0, 2.5))
        rng.shuffle(procs)
        for proc in procs:  # in random order, a moment apart
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            time.sleep(rng.uniform(0, 0.3))
    bank.join()
    orders.join()
    final = cluster.get_ts()
    done = subprocess.run(capture + ["--until-ts", str(final)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    applied = subprocess.run(writer + ["--until-caught-up"], capture_output=True, text=True, timeout=120)
    assert applied.returncode == 0, applied.stderr[-2000:]
    assert_equal_at(cluster, store, TABLES, final)
    kinds = {ev.WhichOneof("payload") for ev in binlog_events(binlog)}
    assert {"ddl", "snapshot", "resolved"} <= kinds


def test_a_capture_restarted_without_its_state_file_numbers_each_region_on_from_what_its_binlog_holds(
        cluster: MiniCluster, tmp_path: Path) -> None:
    """A capture killed before its first state save, or whose capture-state.json was lost, reads
    its binlog from the first event to learn each region's last index: the events it writes next
    are above what the writer applied, so the writer applies them and the replica equals
    upstream (numbered from 1 again, the writer took them as applied and skipped them)."""
    cluster.create_table("t.restart", [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")],
                         primary_key=["id"])
    cluster.run_txn(lambda t: [t.insert("t.restart", {"id": i, "v": i}) for i in range(40)])
    binlog, store = tmp_path / "binlog", tmp_path / "store"
    first = Running(options(cluster, binlog))
    first.wait_caught_up(cluster.get_ts())
    first.stop()
    apply(binlog, store)
    (binlog / "capture-state.json").unlink()
    cluster.run_txn(lambda t: [t.update("t.restart", {"id": i, "v": -i}) for i in range(0, 40, 3)])
    final = cluster.get_ts()
    second = Running(options(cluster, binlog))
    second.wait_caught_up(final)
    second.stop()
    apply(binlog, store)
    for rid, seen in region_indexes_in_log_order(binlog).items():
        assert all(a < b for a, b in zip(seen, seen[1:])), f"region {rid}'s events are numbered {seen}"
    assert_equal_at(cluster, store, ("t.restart",), final)


def test_a_capture_without_its_state_file_on_a_pruned_binlog_is_refused(cluster: MiniCluster, tmp_path: Path) -> None:
    """Without the state file, the pruned segments held indexes capture can no longer learn."""
    cluster.create_table("t.pruned", [make_column("id", "BIGINT", not_null=True), make_column("v", "VARCHAR(200)")],
                         primary_key=["id"])
    cluster.run_txn(lambda t: [t.insert("t.pruned", {"id": i, "v": "x" * 200}) for i in range(60)])
    binlog = tmp_path / "binlog"
    running = Running(options(cluster, binlog, segment_bytes=4096))
    running.wait_caught_up(cluster.get_ts())
    running.stop()
    newest = max(int(p.stem) for p in binlog.glob("*.binlog"))
    assert newest > 1, "the binlog rotated"
    assert prune(binlog, Position(newest, 0))
    (binlog / "capture-state.json").unlink()
    with pytest.raises(CaptureError, match="capture-state.json.*pruned"):
        Capture(options(cluster, binlog))


def test_the_command_line_path_a_user_runs_with_a_status_port_without_ddl_history(cluster: MiniCluster,
                                                                                  tmp_path: Path) -> None:
    """As checked from outside: `capture --until-ts T`, then `writer run --until-caught-up`,
    then the store read at T — against a cluster whose feed refuses each region's first
    registration with epoch_not_match, whose COMMIT rows carry no long value, and whose status
    port serves table infos but no /ddl/history (the binlog then carries CREATE TABLE from
    /schema)."""
    from pyspark_theflash.upstream.status_server import StatusServer

    cluster.change_feed.stale_first_registration = True
    cluster.create_table("app.docs", [make_column("id", "BIGINT", not_null=True), make_column("body", "TEXT"),
                                      make_column("n", "INT")], primary_key=["id"])
    for i in range(40):
        cluster.run_txn(lambda t, i=i: t.insert("app.docs", {"id": i, "body": "x" * (i * 20), "n": i}), one_pc=False)
    for i in range(0, 40, 3):
        cluster.run_txn(lambda t, i=i: t.update("app.docs", {"id": i, "body": "y" * 400, "n": -i}), one_pc=False)
    cluster.run_txn(lambda t: t.delete("app.docs", 7), one_pc=False)
    status = StatusServer(cluster.catalog)  # no /ddl/history
    try:
        until = cluster.get_ts()
        binlog, store = tmp_path / "binlog", tmp_path / "store"
        theflash = [sys.executable, "-m", "pyspark_theflash"]
        done = subprocess.run(theflash + ["capture", "--pd", cluster.pd_address.removeprefix("pd://"), "--tidb",
                                          f"http://{status.address}", "--binlog", str(binlog), "--until-ts", str(until)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        applied = subprocess.run(theflash + ["writer", "run", "--binlog", f"file://{binlog}", "--store", str(store),
                                             "--until-caught-up"], capture_output=True, text=True, timeout=120)
        assert applied.returncode == 0, applied.stderr[-2000:]
        assert_equal_at(cluster, store, ("app.docs",), until)
        with Store.open(str(store), readonly=True) as s:
            rows = {r["id"]: r for r in s.scan_table("app.docs", until).to_pylist()}
        assert 7 not in rows and rows[3]["body"] == "y" * 400 and rows[4]["body"] == "x" * 80
    finally:
        status.close()


def test_regions_waiting_for_a_lock_look_are_each_held_once_with_the_newest_word_longest_stalled_first() -> None:
    """The lock resolver's to-do list cannot grow past the regions capture follows, however far
    looking lags behind the capture loop's offers (a queue of offers made the resolver decide a
    dying transaction's locks ~30 s after it was asked, failing a reader's 30 s wait), and a
    region a lock holds still comes before regions that lag more but move."""
    from pyspark_theflash.capture.lock_resolution import LaggingRegion, LaggingSet

    def ts(ms: int) -> int:
        return ms << 18

    waiting = LaggingSet(lag_ms=1000, interval_s=2.0)
    held = LaggingRegion(3, b"", b"", ts(15_000))  # a lock holds it: its resolved ts stands still
    for tick in range(500):  # the capture loop offers far more often than anyone takes
        moving = [LaggingRegion(rid, b"", b"", ts(10_000 + tick * 10 + rid)) for rid in (1, 2)]
        waiting.offer(ts(20_000 + tick * 10), moving + [held], at=tick / 100)
    assert len(waiting) == 3
    now_ts, first = waiting.take(at=5.0)
    assert first == held and now_ts == ts(24_990)  # stalled longest, though 1 and 2 lag more; the newest now
    now_ts, second = waiting.take(at=5.0)
    assert second.id == 1 and second.resolved_ts == ts(15_000 - 10 + 1)  # then the most lagging, its newest word
    caught_up = LaggingRegion(2, b"", b"", ts(24_500))  # within lag_ms of now
    waiting.offer(ts(25_000), [LaggingRegion(1, b"", b"", ts(15_000)), caught_up, held], at=5.1)
    assert len(waiting) == 0  # 1 and 3 were looked at 0.1 s ago; 2 caught up
    waiting.offer(ts(25_100), [held], at=5.2)  # 1 and 2 no longer followed (dropped)
    assert len(waiting) == 0 and waiting.take(timeout_s=0.05) is None
    waiting.offer(ts(28_000), [held], at=8.0)  # its interval passed: waiting again
    assert waiting.take(at=8.0) == (ts(28_000), held)
    waiting.close()
    assert waiting.take() is None


def test_capture_stops_on_every_sigterm_it_gets_while_it_runs(cluster: MiniCluster, tmp_path: Path) -> None:
    """`theflash capture` stops on SIGTERM and exits 0, however the signal lands: its handler
    sets the stop from a thread of its own (stop_signals.py: Event.set inside a handler can
    deadlock the main thread waiting on that event). Ten runs, each stopped as soon as it has
    written its first state."""
    import signal

    from pyspark_theflash.upstream.status_server import StatusServer

    cluster.create_table("app.ticks", [make_column("id", "BIGINT", not_null=True)], primary_key=["id"])
    cluster.run_txn(lambda t: t.insert("app.ticks", {"id": 1}))
    status = StatusServer(cluster.catalog)
    try:
        for run in range(10):
            binlog = tmp_path / f"binlog-{run}"
            proc = subprocess.Popen([sys.executable, "-m", "pyspark_theflash", "capture", "--pd",
                                     cluster.pd_address.removeprefix("pd://"), "--tidb", f"http://{status.address}",
                                     "--binlog", str(binlog)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                wait_for(lambda: (binlog / "capture-state.json").exists() or proc.poll() is not None, 60,
                         "capture to write its first state")
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(30) == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        status.close()
