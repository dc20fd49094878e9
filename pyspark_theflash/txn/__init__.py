"""A transaction's fate and the one lock resolver (DESIGN.md's ``txn`` box, below binlog,
upstream, capture and scan).

* ``status.py``: ``TxnFate`` (locked, committed, rolled back), ``TxnAction`` (what CheckTxnStatus
  did), ``LockInfo`` (a lock as kvrpcpb describes it), ``TxnStatus`` (the one value for a
  transaction's fate) and ``SecondaryLocks`` (CheckSecondaryLocks' answer).
* ``resolver.py``: the rules (primary, async-commit secondaries, TTL, commit or rollback):
  ``txn_status`` for the mini cluster's own store, ``TxnResolver.decide(lock, ts)`` for a reader
  (the replica's reads and capture alike).
"""
from __future__ import annotations

from pyspark_theflash.txn.resolver import TxnResolver, lock_expired, txn_status
from pyspark_theflash.txn.status import LockInfo, SecondaryLocks, TxnAction, TxnFate, TxnStatus

__all__ = ["LockInfo", "SecondaryLocks", "TxnAction", "TxnFate", "TxnResolver", "TxnStatus", "lock_expired",
           "txn_status"]
