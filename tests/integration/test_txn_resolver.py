"""The one lock resolver (txn/resolver.py) against the mini cluster's TiKV in process: what a
reader at ts decides of a lock's transaction, and what it resolves upstream on the way."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from pyspark_theflash.codec import encode_record_key
from pyspark_theflash.txn import LockInfo, TxnAction, TxnFate, TxnResolver, TxnStatus, txn_status
from pyspark_theflash.txn.resolver import LockScanner, lock_expired
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.percolator import PUT, Mutation

from polling import wait_for

K = [encode_record_key(43, h) for h in range(6)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MiniCluster]:
    c = MiniCluster(tmp_path / "data", resolved_ts_interval=0)
    yield c
    c.close()


def locked_keys(c: MiniCluster) -> list[bytes]:
    return sorted(lk.key for lk in c.store.locks())


def ttl_runs_out(c: MiniCluster, start_ts: int, ttl_ms: int) -> None:
    """Until the cluster's clock is past a lock's TTL (counted from its start_ts)."""
    wait_for(lambda: lock_expired(start_ts, ttl_ms, c.get_ts()), 10, f"a {ttl_ms} ms TTL to run out")


def met(key: bytes, primary: bytes, start_ts: int) -> LockInfo:
    return LockInfo(key, primary, start_ts)


def test_a_fate_says_what_a_read_at_ts_sees_of_it() -> None:
    committed = TxnStatus.committed(100)
    assert committed.decided and committed.visible_at(100) and not committed.visible_at(99)
    assert TxnStatus.rolled_back().settled_for(1) and not TxnStatus.rolled_back().visible_at(1 << 60)
    pushed = TxnStatus.locked(3000, LockInfo(K[1], K[1], 10, min_commit_ts=200))
    assert pushed.commits_after(199) and pushed.settled_for(199) and not pushed.decided
    assert not pushed.settled_for(200) and not TxnStatus.locked(3000).settled_for(0)


def test_a_transaction_committed_at_or_below_ts_has_its_remaining_locks_committed(cluster: MiniCluster) -> None:
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"p"), Mutation(PUT, K[2], b"s")], K[1], start, 3000)
    commit = cluster.get_ts()
    cluster.store.commit([K[1]], start, commit)  # the client dies before the secondary
    resolver = TxnResolver(cluster)
    status = resolver.decide(met(K[2], K[1], start), commit - 1)
    assert (status.fate, status.commit_ts) == (TxnFate.COMMITTED, commit) and not status.visible_at(commit - 1)
    assert locked_keys(cluster) == [K[2]] and resolver.committed == 0  # committed after ts: left to its client
    status = resolver.decide(met(K[2], K[1], start), commit)
    assert status.visible_at(commit) and locked_keys(cluster) == [] and resolver.committed == 1
    assert cluster.store.get(K[2], commit) == b"s"


def test_a_live_transaction_is_left_alone_until_its_ttl_runs_out_then_rolled_back(cluster: MiniCluster) -> None:
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"p"), Mutation(PUT, K[2], b"s")], K[1], start, 50)
    resolver = TxnResolver(cluster)
    alive = resolver.decide(met(K[2], K[1], start), cluster.get_ts())
    assert (alive.fate, alive.ttl_ms) == (TxnFate.LOCKED, 50) and locked_keys(cluster) == [K[1], K[2]]
    ttl_runs_out(cluster, start, 50)
    gone = resolver.decide(met(K[2], K[1], start), cluster.get_ts())
    assert gone.fate is TxnFate.ROLLED_BACK and locked_keys(cluster) == [] and resolver.rolled_back == 1


def test_an_async_commit_whose_client_died_is_committed_by_its_secondaries_and_its_locks_written(
    cluster: MiniCluster,
) -> None:
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"p")], K[1], start, 1, async_commit=True, secondaries=[K[2]])
    reader = cluster.get_ts()
    cluster.read_index(cluster.regions()[0].id, reader)  # the secondary's min_commit_ts comes above the reader's ts
    commit = cluster.store.prewrite([Mutation(PUT, K[2], b"s")], K[1], start, 1, async_commit=True)
    assert commit > reader
    ttl_runs_out(cluster, start, 1)  # no commit record anywhere, yet every lock is written
    resolver = TxnResolver(cluster)
    status = resolver.decide(met(K[2], K[1], start), reader)
    # committed after the reader's ts, but decided here: its locks are committed all the same
    assert (status.fate, status.commit_ts, status.by_secondaries) == (TxnFate.COMMITTED, commit, True)
    assert locked_keys(cluster) == [] and resolver.committed == 1
    assert txn_status(cluster, K[1], start, 0, cluster.get_ts()) == TxnStatus.committed(commit)


def test_an_async_commit_with_a_secondary_never_prewritten_is_rolled_back(cluster: MiniCluster) -> None:
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"p")], K[1], start, 1, async_commit=True, secondaries=[K[2]])
    ttl_runs_out(cluster, start, 1)
    status = TxnResolver(cluster).decide(met(K[1], K[1], start), cluster.get_ts())
    assert (status.fate, status.by_secondaries) == (TxnFate.ROLLED_BACK, True) and locked_keys(cluster) == []


def test_a_primary_whose_min_commit_ts_is_above_ts_commits_after_ts_and_nothing_is_resolved(
    cluster: MiniCluster,
) -> None:
    start = cluster.get_ts()
    min_commit = cluster.store.prewrite([Mutation(PUT, K[1], b"p")], K[1], start, 1, async_commit=True,
                                        secondaries=[K[2]])
    cluster.store.prewrite([Mutation(PUT, K[2], b"s")], K[1], start, 1, async_commit=True)
    ttl_runs_out(cluster, start, 1)
    status = TxnResolver(cluster).decide(met(K[2], K[1], start), min_commit - 1)
    assert status.fate is TxnFate.LOCKED and status.commits_after(min_commit - 1)
    assert locked_keys(cluster) == [K[1], K[2]]


def test_a_lock_without_its_primary_is_decided_by_its_own_key(cluster: MiniCluster) -> None:
    """TiKV's change-data feed sends PREWRITE rows without the primary: an upstream that cannot
    scan locks (the mini cluster's own service) is asked through CheckSecondaryLocks."""
    assert not isinstance(cluster, LockScanner)
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"p"), Mutation(PUT, K[2], b"s")], K[1], start, 3000)
    commit = cluster.get_ts()
    cluster.store.commit([K[1], K[2]], start, commit)
    status = TxnResolver(cluster).decide(met(K[2], b"", start), commit)
    assert (status.fate, status.commit_ts) == (TxnFate.COMMITTED, commit)
    never = cluster.get_ts()  # a key no transaction at this ts wrote: a rollback record guards it now
    assert TxnResolver(cluster).decide(met(K[3], b"", never), never).fate is TxnFate.ROLLED_BACK


def test_an_async_commit_that_fell_back_to_2pc_is_decided_by_its_primary_alone(cluster: MiniCluster) -> None:
    start = cluster.get_ts()
    cluster.store.prewrite([Mutation(PUT, K[1], b"p")], K[1], start, 1, async_commit=True, secondaries=[K[2]])
    cluster.store.prewrite([Mutation(PUT, K[2], b"s")], K[1], start, 1)  # not async: the client fell back to 2PC
    ttl_runs_out(cluster, start, 1)
    status = TxnResolver(cluster).decide(met(K[2], K[1], start), cluster.get_ts())
    assert (status.fate, status.action, status.by_secondaries) == (TxnFate.ROLLED_BACK, TxnAction.TTL_EXPIRE_ROLLBACK,
                                                                   False)
    assert locked_keys(cluster) == []
