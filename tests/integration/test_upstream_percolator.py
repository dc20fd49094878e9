"""The mini cluster's TiKV: Percolator 2PC and 1PC, conflicts, rollbacks, CheckTxnStatus on
expired locks, ResolveLock, MVCC reads at old timestamps, read index."""
from __future__ import annotations

from pathlib import Path

import pytest

from polling import wait_for

from pyspark_theflash.binlog.rows import iter_rows
from pyspark_theflash.codec import Lock, Write, encode_record_key
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.async_commit import resolve_txn
from pyspark_theflash.txn.status import SecondaryLocks, TxnAction, TxnFate
from pyspark_theflash.upstream_client.errors import (
    CommitTsExpiredError,
    GCTooEarlyError,
    KeyLockedError,
    TxnRolledBackError,
    WriteConflictError,
)
from pyspark_theflash.upstream.percolator import DELETE, PUT, Mutation
from pyspark_theflash.upstream.tidb import Abandoned, make_column, record_key
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
    assert (status.fate, status.ttl_ms) == (TxnFate.LOCKED, 50)
    # ... after it, CheckTxnStatus rolls the primary back and says so.
    after_ttl = compose_ts(physical_ms(start) + 51, 0)
    status = cluster.check_txn_status(K[1], start, after_ttl, after_ttl)
    assert (status.fate, status.action) == (TxnFate.ROLLED_BACK, TxnAction.TTL_EXPIRE_ROLLBACK)
    assert cluster.check_txn_status(K[1], start, after_ttl, after_ttl).fate == TxnFate.ROLLED_BACK
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
    assert (status.fate, status.commit_ts) == (TxnFate.COMMITTED, commit)


def test_check_txn_status_of_an_unknown_transaction_rolls_it_back_so_it_cannot_land(cluster: MiniCluster) -> None:
    start = cluster.get_ts()
    now = cluster.get_ts()
    status = cluster.check_txn_status(K[5], start, now, now)
    assert (status.fate, status.action) == (TxnFate.ROLLED_BACK, TxnAction.LOCK_NOT_EXIST_ROLLBACK)
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
    # Resolved ts now comes per store, in batches (one ResolvedTs event per distinct ts).
    stuck = [e.resolved.ts for e in cluster.advance_resolved_ts()]
    assert stuck == [] or stuck[0] < start
    while physical_ms(cluster.get_ts()) <= physical_ms(start) + 1:  # until the 1 ms TTL is over
        pass
    assert cluster.resolve_expired_locks(grace_ms=0) == 1
    assert cluster.store.locks() == []
    (event,) = cluster.advance_resolved_ts()
    assert event.HasField("resolved") and event.resolved.ts > start


# --- async commit (TiDB >= 5.0's default), CheckSecondaryLocks, read index with a read ts ------------


def async_prewrite(c: MiniCluster, muts: list[Mutation], ttl_ms: int = 3000) -> tuple[int, int]:
    """Prewrite with async commit, one request per mutation (the first is the primary);
    returns (start_ts, commit_ts = the greatest min_commit_ts)."""
    start = c.get_ts()
    secondaries = [m.key for m in muts[1:]]
    commit = max(c.store.prewrite([m], muts[0].key, start, ttl_ms, async_commit=True, secondaries=secondaries)
                 for m in muts)
    return start, commit


def test_async_commit_locks_carry_min_commit_ts_and_the_primary_lists_the_secondaries(
    cluster: MiniCluster, sink: ListSink,
) -> None:
    start, commit = async_prewrite(cluster, [Mutation(PUT, K[1], b"p"), Mutation(PUT, K[2], b"s"), Mutation(DELETE, K[3])])
    locks = {lk.key: lk for lk in cluster.store.locks()}
    assert all(lk.use_async_commit and start < lk.min_commit_ts <= commit for lk in locks.values())
    assert locks[K[1]].secondaries == (K[2], K[3]) and locks[K[2]].secondaries == ()
    # the lock CF bytes are TiKV's txn_types Lock with its async-commit fields
    parsed = Lock.parse(locks[K[1]].to_bytes())
    assert (parsed.use_async_commit, parsed.min_commit_ts, parsed.secondaries) == (True, locks[K[1]].min_commit_ts, [K[2], K[3]])
    snap = {lk.key: Lock.parse(lk.lock) for lk in cluster.region_snapshot(1).snapshot.locks}
    assert snap[K[1]].secondaries == [K[2], K[3]] and snap[K[3]].use_async_commit
    # so do the binlog's PREWRITE rows (the cluster replays them as its write-ahead log)
    rows = {r.key: r for r in sink.rows(binlog_pb2.Row.PREWRITE)}
    assert list(rows[K[1]].secondaries) == [K[2], K[3]] and list(rows[K[2]].secondaries) == []
    assert all(r.use_async_commit and r.min_commit_ts == locks[k].min_commit_ts for k, r in rows.items())


def test_async_commit_primary_is_not_rolled_back_by_its_ttl_and_every_lock_written_means_committed(
    cluster: MiniCluster, sink: ListSink,
) -> None:
    start, commit = async_prewrite(cluster, [Mutation(PUT, K[1], b"p"), Mutation(PUT, K[2], b"s")], ttl_ms=1)
    # the client dies here, before any commit record: the transaction is committed all the same
    after_ttl = compose_ts(physical_ms(start) + 50, 0)
    status = cluster.check_txn_status(K[1], start, after_ttl, after_ttl)
    assert status.fate == TxnFate.LOCKED and status.lock is not None and status.lock.use_async_commit
    assert status.lock.secondaries == (K[2],) and not sink.rows(binlog_pb2.Row.ROLLBACK)
    checked = cluster.check_secondary_locks([K[2]], start)
    assert [lk.key for lk in checked.locks] == [K[2]] and checked.commit_ts == 0
    # a reader meeting the lock decides it as client-go does: committed at the greatest min_commit_ts
    with pytest.raises(KeyLockedError):
        cluster.store.get(K[2], commit)
    decided = resolve_txn(cluster.store, K[1], start, commit, after_ttl)
    assert (decided.fate, decided.commit_ts) == (TxnFate.COMMITTED, commit)
    assert cluster.store.locks() == []
    assert cluster.store.get(K[2], commit) == b"s" and cluster.store.get(K[2], commit - 1) is None
    assert cluster.check_txn_status(K[1], start, after_ttl, after_ttl).commit_ts == commit


def test_async_commit_with_a_secondary_never_prewritten_is_rolled_back_and_its_late_prewrite_fails(
    cluster: MiniCluster,
) -> None:
    start = cluster.get_ts()
    # the client prewrote the primary, then died before the secondary's request
    cluster.store.prewrite([Mutation(PUT, K[1], b"p")], K[1], start, 1, async_commit=True, secondaries=[K[2]])
    checked = cluster.check_secondary_locks([K[2]], start)
    assert (checked.locks, checked.commit_ts) == ((), 0)  # missing: a rollback record now guards it
    with pytest.raises(TxnRolledBackError):
        cluster.store.prewrite([Mutation(PUT, K[2], b"s")], K[1], start, 1, async_commit=True)
    after_ttl = compose_ts(physical_ms(start) + 50, 0)
    assert resolve_txn(cluster.store, K[1], start, after_ttl, after_ttl).fate == TxnFate.ROLLED_BACK
    assert cluster.store.locks() == [] and cluster.store.get(K[1], cluster.get_ts()) is None


def test_check_secondary_locks_reports_the_commit_ts_of_a_committed_secondary(cluster: MiniCluster) -> None:
    start, commit = async_prewrite(cluster, [Mutation(PUT, K[1], b"p"), Mutation(PUT, K[2], b"s")])
    cluster.store.commit([K[2]], start, commit)  # the client committed one key, then died
    checked = cluster.check_secondary_locks([K[2]], start)
    assert (checked.locks, checked.commit_ts) == ((), commit)
    with pytest.raises(CommitTsExpiredError):
        cluster.store.commit([K[1]], start, commit - 1)  # never below a lock's min_commit_ts


def test_async_commit_transaction_of_the_table_api_commits_at_the_greatest_min_commit_ts(tmp_path: Path) -> None:
    c = MiniCluster(tmp_path / "d", resolved_ts_interval=0)
    try:
        c.create_table("a.t", [make_column("id", "BIGINT"), make_column("v", "INT")], primary_key=["id"])
        table = c.table_info("a", "t")
        c.split_at(record_key(table, 5))
        sink = ListSink()
        c.store.listeners.append(sink.append)
        with c.txn(async_commit=True) as t:  # two regions: async commit, not 1PC
            t.insert("a.t", {"id": 1, "v": 10})
            t.insert("a.t", {"id": 7, "v": 70})
        prewrites = sink.rows(binlog_pb2.Row.PREWRITE)
        assert len(prewrites) == 2 and all(r.use_async_commit for r in prewrites)
        assert t.commit_ts == max(r.min_commit_ts for r in prewrites)
        assert {r.commit_ts for r in sink.rows(binlog_pb2.Row.COMMIT)} == {t.commit_ts}
        with c.txn(async_commit=True) as t1:  # one region: 1PC, as TiDB
            t1.update("a.t", {"id": 1, "v": 11})
        assert len(sink.rows(binlog_pb2.Row.PREWRITE)) == 2 and sink.rows(binlog_pb2.Row.COMMITTED)
        assert sorted((r["id"], r["v"]) for r in c.scan_table("a.t")) == [(1, 11), (7, 70)]
    finally:
        c.close()


def test_a_client_dying_between_prewrites_leaves_a_transaction_readers_roll_back(tmp_path: Path) -> None:
    c = MiniCluster(tmp_path / "d", resolved_ts_interval=0)
    try:
        c.create_table("a.t", [make_column("id", "BIGINT"), make_column("v", "INT")], primary_key=["id"])
        table = c.table_info("a", "t")
        c.split_at(record_key(table, 5))
        dead = c.txn(async_commit=True, ttl_ms=1, after_prewrite_batch=lambda _t, _n: (_ for _ in ()).throw(Abandoned()))
        dead.insert("a.t", {"id": 1, "v": 10})
        dead.insert("a.t", {"id": 7, "v": 70})
        with pytest.raises(Abandoned):
            dead.commit()
        assert [lk.key for lk in c.store.locks()] == [record_key(table, 1)]  # the primary only
        committed = c.txn(async_commit=True, ttl_ms=1, after_prewrite=lambda _t: (_ for _ in ()).throw(Abandoned()))
        committed.insert("a.t", {"id": 2, "v": 20})
        committed.insert("a.t", {"id": 8, "v": 80})
        with pytest.raises(Abandoned):
            committed.commit()
        while physical_ms(c.get_ts()) <= physical_ms(committed.start_ts) + 1:  # until the 1 ms TTLs are over
            pass
        assert sorted((r["id"], r["v"]) for r in c.scan_table("a.t")) == [(2, 20), (8, 80)]
        assert c.store.locks() == []
        assert c.check_txn_status(record_key(table, 2), committed.start_ts, c.get_ts(), c.get_ts()).commit_ts \
            == committed.commit_ts
    finally:
        c.close()


def test_a_read_index_at_ts_keeps_a_later_async_commit_above_ts(tmp_path: Path) -> None:
    c = MiniCluster(tmp_path / "d", resolved_ts_interval=0)
    try:
        start = c.get_ts()   # a transaction begins ...
        ts = c.get_ts()      # ... a replica takes its read ts and the read index at it ...
        index = c.read_index(1, ts)
        # ... and only then does the transaction prewrite: its commit must land above ts, or a
        # read at ts, already past this read index, would miss a row committed at or below ts
        commit = c.store.prewrite([Mutation(PUT, K[1], b"late")], K[1], start, 3000, async_commit=True)
        assert commit > ts and c.read_index(1) == index + 1
        c.store.commit([K[1]], start, commit)
        assert c.store.get(K[1], ts) is None and c.store.get(K[1], commit) == b"late"
        # the same for a 1PC transaction, and for a read at ts in the cluster itself
        start2 = c.get_ts()
        ts2 = c.get_ts() + (10_000 << 18)  # a read at a ts ahead of the TSO
        assert c.store.get(K[2], ts2) is None
        assert c.store.one_pc([Mutation(PUT, K[2], b"x")], start2) > ts2
    finally:
        c.close()


def test_restart_replays_async_commit_locks_from_the_log_as_they_were(tmp_path: Path) -> None:
    c = MiniCluster(tmp_path / "d", binlog_dir=tmp_path / "log", resolved_ts_interval=0)
    start, commit = async_prewrite(c, [Mutation(PUT, K[1], b"p"), Mutation(PUT, K[2], b"s")])
    before = {lk.key: lk for lk in c.store.locks()}
    c._writer.close()  # a crash: no checkpoint at close, the log is all there is after the first one
    c._db.close()
    c.closed = True
    c._stop.set()
    c = MiniCluster(tmp_path / "d", binlog_dir=tmp_path / "log", resolved_ts_interval=0)
    try:
        assert c.replayed_events > 0
        assert {lk.key: lk for lk in c.store.locks()} == before
        assert c.store.max_ts > commit  # a read before the restart stays below any later commit
    finally:
        c.close()


@pytest.mark.parametrize("rollback_first", [False, True])
def test_an_async_commit_at_another_transactions_start_ts_shares_the_record_with_its_rollback(
    cluster: MiniCluster, rollback_first: bool,
) -> None:
    start = cluster.get_ts()
    other = cluster.get_ts()  # another transaction's start_ts ...
    cluster.read_index(1, other - 1)
    commit = cluster.store.prewrite([Mutation(PUT, K[1], b"a")], K[1], start, 3000, async_commit=True)
    assert commit == other  # ... is exactly where this one commits (max_ts + 1)
    if rollback_first:  # e.g. CheckSecondaryLocks of the other transaction, while K[1] holds our lock
        assert cluster.check_secondary_locks([K[1]], other) == SecondaryLocks((), 0)
    cluster.store.commit([K[1]], start, commit)
    if not rollback_first:
        assert cluster.check_secondary_locks([K[1]], other) == SecondaryLocks((), 0)
    # one record at (K[1], other): the commit, flagged with the other's rollback (TiKV's overlapped rollback)
    writes = [(k, ts, Write.parse(w)) for k, ts, w in cluster.store.dump()[0] if k == K[1]]
    assert [(ts, w.write_type, w.start_ts, w.has_overlapped_rollback) for _, ts, w in writes] == [(other, "P", start, True)]
    assert cluster.store.get(K[1], other) == b"a"
    with pytest.raises(TxnRolledBackError):
        cluster.store.prewrite([Mutation(PUT, K[1], b"late")], K[1], other, 3000)
    now = cluster.get_ts()
    assert cluster.check_txn_status(K[1], other, now, now).fate == TxnFate.ROLLED_BACK
    assert cluster.check_txn_status(K[1], start, now, now).commit_ts == commit
    cluster.checkpoint()  # (key, commit_ts) is unique in the saved write CF


# --- GC as TiDB's GC worker runs it -------------------------------------------------------------------


def test_gc_resolves_a_committed_transactions_open_secondary_before_it_collects_its_primary(
    cluster: MiniCluster, sink: ListSink,
) -> None:
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"p1"), Mutation(PUT, K[2], b"s1")], K[1], start, 3000)
    commit = cluster.get_ts()
    cluster.store.commit([K[1]], start, commit)  # the client dies before committing the secondary
    two_pc(cluster, [Mutation(PUT, K[1], b"p2")])  # a newer version of the primary: GC drops the old one
    safe_point = cluster.get_ts()
    assert cluster.update_gc_safe_point(safe_point) == safe_point
    # the secondary was committed before the primary's record went; nothing was rolled back
    assert cluster.store.locks() == []
    assert cluster.store.get(K[2], safe_point) == b"s1"
    assert [(r.key, r.commit_ts) for r in sink.rows(binlog_pb2.Row.COMMIT) if r.start_ts == start] == [
        (K[1], commit), (K[2], commit)]
    assert not [r for r in sink.rows(binlog_pb2.Row.ROLLBACK) if r.start_ts == start]


def test_gc_rolls_back_a_dead_transaction_below_the_safe_point_and_decides_async_ones_by_secondaries(
    cluster: MiniCluster,
) -> None:
    dead = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"x"), Mutation(PUT, K[2], b"y")], K[1], dead, 3_600_000)
    start, commit = async_prewrite(cluster, [Mutation(PUT, K[3], b"a"), Mutation(PUT, K[4], b"b")], ttl_ms=3_600_000)
    run = cluster.run_gc(cluster.get_ts())
    assert run.txns_resolved == 2 and cluster.store.locks() == []
    ts = cluster.get_ts()
    assert [cluster.store.get(k, ts) for k in K[1:5]] == [None, None, b"a", b"b"]
    assert commit <= run.safe_point  # committed at its greatest min_commit_ts, below the safe point


def test_the_gc_worker_advances_the_safe_point_to_now_minus_its_life_time(tmp_path: Path) -> None:
    c = MiniCluster(tmp_path / "d", resolved_ts_interval=0, gc_life_time_s=2.0)
    try:
        before = physical_ms(c.get_ts())
        run = c.run_gc()
        after = physical_ms(c.get_ts())
        assert before - 2000 <= physical_ms(run.safe_point) <= after - 2000
        assert c.gc_safe_point() == run.safe_point
    finally:
        c.close()
    c = MiniCluster(tmp_path / "d", resolved_ts_interval=0)  # the safe point survives a restart
    try:
        assert c.gc_safe_point() == run.safe_point and c.gc_worker.life_time_s == 600.0  # TiDB's 10 min
    finally:
        c.close()


def test_the_gc_worker_runs_on_its_interval(tmp_path: Path) -> None:
    c = MiniCluster(tmp_path / "d", resolved_ts_interval=0.02, gc_life_time_s=0.0, gc_run_interval_s=0.05)
    try:
        first = wait_for(lambda: c.gc_safe_point(), 10, "a first scheduled GC run")
        wait_for(lambda: c.gc_safe_point() > first, 10, "a second scheduled GC run")
    finally:
        c.close()
