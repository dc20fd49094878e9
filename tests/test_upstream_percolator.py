"""The mini cluster's TiKV: Percolator 2PC and 1PC, conflicts, rollbacks, CheckTxnStatus on
expired locks, ResolveLock, MVCC reads at old timestamps, read index."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyspark_theflash.binlog.rows import iter_rows
from pyspark_theflash.codec import Lock, Write, encode_record_key
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.errors import (
    GCTooEarlyError,
    KeyLockedError,
    TxnRolledBackError,
    WriteConflictError,
)
from pyspark_theflash.upstream.percolator import DELETE, PUT, Mutation
from pyspark_theflash.codec.tso import compose_ts, physical_ms


class ListSink:
    def __init__(self) -> None:
        self.events: list[binlog_pb2.Event] = []

    def append(self, events: list[binlog_pb2.Event]) -> None:
        self.events.extend(events)

    def rows(self, row_type: int) -> list[binlog_pb2.Row]:
        return [r for e in self.events if e.HasField("entries") for r in iter_rows(e.entries) if r.type == row_type]


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def cluster(tmp_path: Path, sink: ListSink):
    c = MiniCluster(tmp_path / "data", sink=sink, resolved_ts_interval=0)
    yield c
    c.close()


K = [encode_record_key(42, h) for h in range(10)]


def two_pc(c: MiniCluster, muts: list[Mutation]) -> tuple[int, int]:
    start = c.get_ts()
    c.store.prewrite(muts, muts[0].key, start, 3000)
    commit = c.get_ts()
    c.store.commit([muts[0].key], start, commit)
    c.store.commit([m.key for m in muts[1:]], start, commit)
    return start, commit


def test_two_phase_commit_makes_values_visible_only_from_commit_ts(cluster: MiniCluster, sink: ListSink) -> None:
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"one"), Mutation(PUT, K[2], b"x" * 300)], K[1], start, 3000)
    with pytest.raises(KeyLockedError) as err:
        cluster.store.get(K[1], cluster.get_ts())
    assert err.value.lock_start_ts == start and err.value.primary == K[1]
    commit = cluster.get_ts()
    cluster.store.commit([K[1]], start, commit)
    cluster.store.commit([K[2]], start, commit)
    assert cluster.store.get(K[1], commit) == b"one"
    assert cluster.store.get(K[2], commit) == b"x" * 300
    assert cluster.store.get(K[1], commit - 1) is None
    assert [r.key for r in sink.rows(binlog_pb2.Row.PREWRITE)] == [K[1], K[2]]
    assert [(r.key, r.commit_ts) for r in sink.rows(binlog_pb2.Row.COMMIT)] == [(K[1], commit), (K[2], commit)]


def test_short_values_are_inlined_in_write_records_and_long_ones_kept_in_default(cluster: MiniCluster) -> None:
    _, commit = two_pc(cluster, [Mutation(PUT, K[1], b"s" * 255), Mutation(PUT, K[2], b"l" * 256)])
    snap = cluster.region_snapshot(1).snapshot
    by_key = {w.key: w for w in snap.writes}
    short, long = Write.parse(by_key[K[1]].write), Write.parse(by_key[K[2]].write)
    assert short.write_type == "P" and short.short_value == b"s" * 255 and by_key[K[1]].value == b""
    assert long.short_value is None and by_key[K[2]].value == b"l" * 256
    assert by_key[K[1]].commit_ts == commit


def test_one_pc_commits_single_region_transaction_as_committed_rows(cluster: MiniCluster, sink: ListSink) -> None:
    start = cluster.get_ts()
    commit = cluster.store.one_pc([Mutation(PUT, K[3], b"v3"), Mutation(PUT, K[4], b"v4")], start)
    assert commit > start
    assert cluster.store.get(K[3], commit) == b"v3"
    rows = sink.rows(binlog_pb2.Row.COMMITTED)
    assert [(r.key, r.value, r.start_ts, r.commit_ts) for r in rows] == [(K[3], b"v3", start, commit), (K[4], b"v4", start, commit)]
    assert not sink.rows(binlog_pb2.Row.PREWRITE)


def test_prewrite_after_a_newer_commit_is_a_write_conflict(cluster: MiniCluster) -> None:
    old_start = cluster.get_ts()
    two_pc(cluster, [Mutation(PUT, K[1], b"new")])
    with pytest.raises(WriteConflictError):
        cluster.store.prewrite([Mutation(PUT, K[1], b"stale")], K[1], old_start, 3000)


def test_prewrite_on_a_key_locked_by_another_transaction_fails(cluster: MiniCluster) -> None:
    a = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"a")], K[1], a, 3000)
    b = cluster.get_ts()
    with pytest.raises(KeyLockedError) as err:
        cluster.store.prewrite([Mutation(PUT, K[1], b"b")], K[1], b, 3000)
    assert err.value.lock_start_ts == a


def test_rollback_drops_locks_and_blocks_a_late_commit(cluster: MiniCluster, sink: ListSink) -> None:
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"a"), Mutation(DELETE, K[2])], K[1], start, 3000)
    assert cluster.store.rollback([K[1], K[2]], start) == 2
    assert cluster.store.get(K[1], cluster.get_ts()) is None
    with pytest.raises(TxnRolledBackError):
        cluster.store.commit([K[1]], start, cluster.get_ts())
    with pytest.raises(TxnRolledBackError):
        cluster.store.prewrite([Mutation(PUT, K[1], b"a")], K[1], start, 3000)
    assert {r.key for r in sink.rows(binlog_pb2.Row.ROLLBACK)} == {K[1], K[2]}


def test_killed_after_prewrite_transaction_is_rolled_back_by_check_txn_status_after_its_ttl(
    cluster: MiniCluster, sink: ListSink,
) -> None:
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"p"), Mutation(PUT, K[2], b"s")], K[1], start, 50)
    # The client dies here. Before the TTL runs out the transaction counts as alive ...
    within_ttl = compose_ts(physical_ms(start) + 10, 0)
    status = cluster.check_txn_status(K[1], start, within_ttl, within_ttl)
    assert (status.state, status.ttl_ms) == ("locked", 50)
    # ... after it, CheckTxnStatus rolls the primary back and says so.
    after_ttl = compose_ts(physical_ms(start) + 51, 0)
    status = cluster.check_txn_status(K[1], start, after_ttl, after_ttl)
    assert (status.state, status.action) == ("rolled_back", "ttl_expire_rollback")
    assert cluster.check_txn_status(K[1], start, after_ttl, after_ttl).state == "rolled_back"
    assert [r.key for r in sink.rows(binlog_pb2.Row.ROLLBACK)] == [K[1]]
    # The secondary is still locked until a reader resolves it.
    assert [lk.key for lk in cluster.store.locks()] == [K[2]]
    assert cluster.resolve_lock(start, 0) == 1
    assert cluster.store.locks() == []
    assert cluster.store.get(K[2], cluster.get_ts()) is None


def test_check_txn_status_reports_commit_ts_of_a_committed_transaction(cluster: MiniCluster) -> None:
    start, commit = two_pc(cluster, [Mutation(PUT, K[1], b"a"), Mutation(PUT, K[2], b"b")])
    now = cluster.get_ts()
    status = cluster.check_txn_status(K[1], start, now, now)
    assert (status.state, status.commit_ts) == ("committed", commit)


def test_check_txn_status_of_an_unknown_transaction_rolls_it_back_so_it_cannot_land(cluster: MiniCluster) -> None:
    start = cluster.get_ts()
    now = cluster.get_ts()
    status = cluster.check_txn_status(K[5], start, now, now)
    assert (status.state, status.action) == ("rolled_back", "lock_not_exist_rollback")
    with pytest.raises(TxnRolledBackError):
        cluster.store.prewrite([Mutation(PUT, K[5], b"late")], K[5], start, 3000)


def test_resolve_lock_commits_remaining_secondaries_after_primary_committed(cluster: MiniCluster, sink: ListSink) -> None:
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, k, b"v%d" % i) for i, k in enumerate(K[1:4])], K[1], start, 3000)
    commit = cluster.get_ts()
    cluster.store.commit([K[1]], start, commit)  # the client dies before the secondaries
    now = cluster.get_ts()
    status = cluster.check_txn_status(K[1], start, now, now)
    assert status.commit_ts == commit
    assert cluster.resolve_lock(start, status.commit_ts, [K[2]]) == 1
    assert cluster.resolve_lock(start, status.commit_ts) == 1
    assert [cluster.store.get(k, commit) for k in K[1:4]] == [b"v0", b"v1", b"v2"]
    assert sorted(r.key for r in sink.rows(binlog_pb2.Row.COMMIT)) == sorted(K[1:4])


def test_mvcc_reads_see_each_version_at_its_ts_until_gc(cluster: MiniCluster) -> None:
    history = []
    for i in range(4):
        _, commit = two_pc(cluster, [Mutation(PUT, K[1], b"v%d" % i)])
        history.append(commit)
    _, deleted_at = two_pc(cluster, [Mutation(DELETE, K[1])])
    for i, ts in enumerate(history):
        assert cluster.store.get(K[1], ts) == b"v%d" % i
        assert cluster.store.get(K[1], ts - 1) == (b"v%d" % (i - 1) if i else None)
    assert cluster.store.get(K[1], deleted_at) is None
    assert cluster.update_gc_safe_point(history[2]) == history[2]
    assert cluster.update_gc_safe_point(history[0]) == history[2]  # never backwards
    assert cluster.store.get(K[1], history[2]) == b"v2"
    assert cluster.store.get(K[1], history[3]) == b"v3"
    with pytest.raises(GCTooEarlyError):
        cluster.store.get(K[1], history[1])
    commits = [w.commit_ts for w in cluster.region_snapshot(1).snapshot.writes]
    assert sorted(commits) == sorted([history[2], history[3], deleted_at])


def test_read_index_is_the_regions_last_raft_index(cluster: MiniCluster, sink: ListSink) -> None:
    before = cluster.read_index(1)
    two_pc(cluster, [Mutation(PUT, K[1], b"a"), Mutation(PUT, K[2], b"b")])
    # prewrite (one entry for the region), commit primary, commit secondary
    assert cluster.read_index(1) == before + 3
    assert max(e.index for e in sink.events if e.region_id == 1) == cluster.read_index(1)


def test_snapshot_carries_open_locks_as_lock_bytes(cluster: MiniCluster) -> None:
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"a"), Mutation(PUT, K[2], b"z" * 400)], K[1], start, 1234)
    snap = cluster.region_snapshot(1)
    assert snap.index == cluster.read_index(1)
    locks = {lk.key: (Lock.parse(lk.lock), lk.value) for lk in snap.snapshot.locks}
    assert locks[K[1]][0].primary == K[1] and locks[K[1]][0].start_ts == start and locks[K[1]][0].ttl == 1234
    assert locks[K[1]][0].short_value == b"a"
    assert locks[K[2]][0].short_value is None and locks[K[2]][1] == b"z" * 400


def test_restart_keeps_data_locks_regions_and_never_reuses_a_ts(tmp_path: Path) -> None:
    c = MiniCluster(tmp_path / "d", resolved_ts_interval=0)
    _, commit = two_pc(c, [Mutation(PUT, K[1], b"kept")])
    start = c.get_ts()
    c.store.prewrite([Mutation(PUT, K[2], b"open")], K[2], start, 3000)
    c.split_at(K[2])
    index2 = c.read_index(2)
    last = c.get_ts()
    c.close()
    c = MiniCluster(tmp_path / "d", resolved_ts_interval=0)
    try:
        assert c.get_ts() > last
        assert c.store.get(K[1], commit) == b"kept"
        assert [(lk.key, lk.start_ts) for lk in c.store.locks()] == [(K[2], start)]
        assert [r.id for r in c.regions()] == [1, 2] and c.read_index(2) == index2
    finally:
        c.close()


def test_split_and_merge_bump_epochs_and_emit_admin_events(cluster: MiniCluster, sink: ListSink) -> None:
    left, right = cluster.split_region(1, K[5])
    assert (left.id, right.id, left.epoch.version, right.epoch.version) == (1, 2, 2, 2)
    assert left.end_key == right.start_key != b""
    merged = cluster.merge_regions(2, 1)
    assert (merged.id, merged.start_key, merged.end_key) == (1, b"", b"")
    assert merged.epoch.version == 4
    admins = [e for e in sink.events if e.HasField("admin")]
    assert [a.admin.WhichOneof("cmd") for a in admins] == ["split", "merge"]
    assert admins[1].region_id == 1 and admins[1].admin.merge.source.id == 2


@pytest.mark.parametrize("limit", [{"region_split_keys": 4}, {"region_split_bytes": 300}])
def test_regions_split_by_themselves_past_the_configured_size(tmp_path: Path, limit: dict[str, int]) -> None:
    sink = ListSink()
    c = MiniCluster(tmp_path / "d", sink=sink, resolved_ts_interval=0, **limit)
    try:
        for i in range(20):
            c.store.one_pc([Mutation(PUT, encode_record_key(7, i), b"v" * 40)], c.get_ts())
        regions = c.regions()
        assert len(regions) > 2
        assert [r.start_key for r in regions[1:]] == [r.end_key for r in regions[:-1]]
        assert regions[0].start_key == b"" and regions[-1].end_key == b""
        splits = [e for e in sink.events if e.HasField("admin") and e.admin.HasField("split")]
        assert len(splits) == len(regions) - 1
        # Every key is still readable, whichever region holds it now.
        ts = c.get_ts()
        assert all(c.store.get(encode_record_key(7, i), ts) == b"v" * 40 for i in range(20))
    finally:
        c.close()


def test_the_cluster_resolves_long_expired_locks_so_resolved_ts_moves_on(cluster: MiniCluster) -> None:
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"p"), Mutation(PUT, K[2], b"s")], K[1], start, 1)
    stuck = [e.resolved_ts for e in cluster.advance_resolved_ts()]
    assert stuck == [] or stuck[0] < start
    while physical_ms(cluster.get_ts()) <= physical_ms(start) + 1:  # until the 1 ms TTL is over
        pass
    assert cluster.resolve_expired_locks(grace_ms=0) == 1
    assert cluster.store.locks() == []
    (event,) = cluster.advance_resolved_ts()
    assert event.resolved_ts > start
