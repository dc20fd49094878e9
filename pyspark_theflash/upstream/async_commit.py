"""Deciding the fate of a transaction a reader meets a lock of, as client-go's lock resolver
does since TiDB 5.0 made async commit the default.

An ordinary (2PC) transaction is decided by its primary: CheckTxnStatus says committed, rolled
back (a lock whose TTL ran out is rolled back by the call), or alive. An async-commit
transaction is committed as soon as every one of its locks is written, before any commit
record exists, at ``max(min_commit_ts)`` of its locks; its primary is never rolled back by
TTL. Once the primary's TTL has run out (the client is presumed gone) its secondaries decide,
through CheckSecondaryLocks on every key the primary lists:

* a key committed: the transaction committed at that key's commit_ts;
* a key without its lock and without a commit (CheckSecondaryLocks then writes a rollback
  record there, so the prewrite can never land): the transaction is rolled back;
* every key locked: committed at the greatest min_commit_ts of the primary and all secondaries;
* a key locked without async commit: the transaction fell back to 2PC; ask the primary again
  with ``force_sync_commit``.

A lock's ``min_commit_ts`` above a reader's ts means the transaction cannot commit at or
below it (a commit below the lock's min_commit_ts is refused): such a reader can ignore it.

``async_commit_outcome`` is the rule (used by the replica's reader over gRPC, scan/locks.py);
``txn_outcome``/``resolve_txn`` apply it to the mini cluster's own store in process (its
transactions' reads, its expired-lock ticker, its GC worker).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from pyspark_theflash.codec.tso import MAX_TS, physical_ms
from pyspark_theflash.upstream.percolator import PercolatorStore, TxnState

# TiDB's tidb_async_commit_keys_limit and the total key size it allows: a bigger transaction
# commits with 2PC (its primary lock would carry too many secondaries).
ASYNC_COMMIT_KEYS_LIMIT = 256
ASYNC_COMMIT_TOTAL_KEY_SIZE_LIMIT = 4096


class AsyncCommitOutcome(NamedTuple):
    state: str  # 'committed' | 'rolled_back' | 'fallback' (a lock is not async: ask the primary as 2PC)
    commit_ts: int


def fits_async_commit(keys: Sequence[bytes]) -> bool:
    """Whether TiDB would use async commit for a transaction over ``keys``."""
    return len(keys) <= ASYNC_COMMIT_KEYS_LIMIT and sum(map(len, keys)) <= ASYNC_COMMIT_TOTAL_KEY_SIZE_LIMIT


def lock_expired(start_ts: int, ttl_ms: int, current_ts: int) -> bool:
    """Has a lock's TTL (counted from the physical time of its start_ts) run out by ``current_ts``?"""
    return current_ts >= MAX_TS or physical_ms(start_ts) + ttl_ms < physical_ms(current_ts)


def async_commit_outcome(primary: Any, secondaries: int, locks: Sequence[Any], commit_ts: int) -> AsyncCommitOutcome:
    """The fate of an async-commit transaction from CheckSecondaryLocks on its ``secondaries``
    keys: the ``locks`` found (objects with ``use_async_commit`` and ``min_commit_ts``) and the
    ``commit_ts`` of a committed key (0 = none); ``primary`` is its primary lock."""
    if commit_ts:
        return AsyncCommitOutcome("committed", int(commit_ts))
    if len(locks) < secondaries:
        return AsyncCommitOutcome("rolled_back", 0)
    if not all(lk.use_async_commit for lk in locks):
        return AsyncCommitOutcome("fallback", 0)
    return AsyncCommitOutcome(
        "committed", max([int(primary.min_commit_ts)] + [int(lk.min_commit_ts) for lk in locks]),
    )


def txn_outcome(store: PercolatorStore, primary: bytes, start_ts: int, caller_start_ts: int,
                current_ts: int) -> TxnState:
    """The fate of the transaction started at ``start_ts`` (primary ``primary``): committed,
    rolled back, or still locked (alive: its TTL has not run out by ``current_ts``)."""
    status = store.check_txn_status(primary, start_ts, caller_start_ts, current_ts)
    lock = status.lock
    if status.state != "locked" or lock is None or not lock.use_async_commit:
        return status
    if not lock_expired(start_ts, status.ttl_ms, current_ts):
        return status
    checked = store.check_secondary_locks(lock.secondaries, start_ts)
    outcome = async_commit_outcome(lock, len(lock.secondaries), checked.locks, checked.commit_ts)
    if outcome.state == "fallback":
        return store.check_txn_status(primary, start_ts, caller_start_ts, current_ts, force_sync_commit=True)
    return TxnState(outcome.state, outcome.commit_ts, 0, "async_commit_" + outcome.state)


def resolve_txn(store: PercolatorStore, primary: bytes, start_ts: int, caller_start_ts: int,
                current_ts: int) -> TxnState:
    """``txn_outcome``, then commit or roll back every remaining lock of a decided transaction."""
    status = txn_outcome(store, primary, start_ts, caller_start_ts, current_ts)
    if status.state != "locked":
        store.resolve_lock(start_ts, status.commit_ts if status.state == "committed" else 0)
    return status
