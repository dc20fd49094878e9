"""Async commit in the mini cluster: when TiDB would use it, and deciding a transaction a lock
of the mini cluster's own store belongs to.

The rules (the primary decides; an async-commit primary past its TTL is decided by its
secondaries through CheckSecondaryLocks; a secondary that is not async means the transaction fell
back to 2PC) are ``txn/resolver.py``'s, the same the replica's reader and capture use.
``resolve_txn`` applies them to the mini cluster's store in process (its transactions' reads, its
expired-lock ticker, its GC worker) and resolves every remaining lock of a decided transaction.
"""
from __future__ import annotations

from typing import Sequence

from pyspark_theflash.txn.resolver import txn_status
from pyspark_theflash.txn.status import TxnFate, TxnStatus
from pyspark_theflash.upstream.percolator import PercolatorStore

# TiDB's tidb_async_commit_keys_limit and the total key size it allows: a bigger transaction
# commits with 2PC (its primary lock would carry too many secondaries).
ASYNC_COMMIT_KEYS_LIMIT = 256
ASYNC_COMMIT_TOTAL_KEY_SIZE_LIMIT = 4096


def fits_async_commit(keys: Sequence[bytes]) -> bool:
    """Whether TiDB would use async commit for a transaction over ``keys``."""
    return len(keys) <= ASYNC_COMMIT_KEYS_LIMIT and sum(map(len, keys)) <= ASYNC_COMMIT_TOTAL_KEY_SIZE_LIMIT


def resolve_txn(store: PercolatorStore, primary: bytes, start_ts: int, caller_start_ts: int,
                current_ts: int) -> TxnStatus:
    """The fate of the transaction started at ``start_ts`` (primary ``primary``; LOCKED while
    its TTL has not run out by ``current_ts``), then, once decided, every remaining lock of it
    committed or rolled back."""
    status = txn_status(store, primary, start_ts, caller_start_ts, current_ts)
    if status.fate is TxnFate.COMMITTED:
        store.resolve_lock(start_ts, status.commit_ts)
    elif status.fate is TxnFate.ROLLED_BACK:
        store.resolve_lock(start_ts, 0)
    return status
