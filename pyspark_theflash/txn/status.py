"""A transaction's fate, as TiKV's transaction RPCs tell it: one type for every caller.

TiKV's ``kvrpcpb.CheckTxnStatusResponse`` tells three fates apart by its numbers: locked
(``lock_ttl`` > 0; with ``lock_info``, the primary lock), committed (``commit_version`` > 0)
and rolled back (neither); ``action`` says what the call did on the way (``kvrpcpb.Action``: it
rolled back a lock whose TTL ran out, or left a rollback record for a transaction that left no
trace, ...). ``kvrpcpb.CheckSecondaryLocksResponse`` decides an async-commit transaction whose
primary is past its TTL: every key locked (one ``LockInfo`` each), or a key committed
(``commit_ts``), or neither (a key rolled back). client-go folds both answers into one
``TxnStatus`` (``txnkv/txnlock/lock_resolver.go``), and so do we: the mini cluster's store
(``upstream/percolator.py``), the clients of an upstream (``upstream_client/client.py``,
``upstream_client/tidb_cluster.py``) and the lock resolver (``txn/resolver.py``) all answer with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class TxnFate(Enum):
    """Where a transaction stands, as CheckTxnStatus tells it."""

    LOCKED = "locked"            # its primary lock is there: alive, or an async commit its secondaries decide
    COMMITTED = "committed"      # at commit_ts
    ROLLED_BACK = "rolled_back"  # a rollback record guards its keys: its prewrites can never land


class TxnAction(Enum):
    """What CheckTxnStatus did to the transaction (``kvrpcpb.Action``). The values are the names
    the mini cluster's Upstream service sends in ``CheckTxnStatusResponse.action``."""

    NO_ACTION = ""
    TTL_EXPIRE_ROLLBACK = "ttl_expire_rollback"
    LOCK_NOT_EXIST_ROLLBACK = "lock_not_exist_rollback"
    MIN_COMMIT_TS_PUSHED = "min_commit_ts_pushed"
    TTL_EXPIRE_PESSIMISTIC_ROLLBACK = "ttl_expire_pessimistic_rollback"
    LOCK_NOT_EXIST_DO_NOTHING = "lock_not_exist_do_nothing"

    @classmethod
    def named(cls, name: str) -> "TxnAction":
        """The action of a name on the wire; one this side does not know did nothing it acts on."""
        return _ACTION_OF_NAME.get(name, cls.NO_ACTION)


_ACTION_OF_NAME = {a.value: a for a in TxnAction}


class MetLock(Protocol):
    """A lock a reader met: the store's ``LockInfo`` or one of TiKV's (empty ``primary``: a
    PREWRITE row of TiKV's change-data feed, which carries none)."""

    @property
    def key(self) -> bytes: ...
    @property
    def primary(self) -> bytes: ...
    @property
    def start_ts(self) -> int: ...


class LockFields(MetLock, Protocol):
    """Anything shaped like a Percolator lock (the mini cluster's ``LockRecord``, a lock of TiKV)."""

    @property
    def ttl_ms(self) -> int: ...
    @property
    def txn_size(self) -> int: ...
    @property
    def op(self) -> int: ...
    @property
    def use_async_commit(self) -> bool: ...
    @property
    def min_commit_ts(self) -> int: ...
    @property
    def secondaries(self) -> tuple[bytes, ...]: ...


@dataclass(frozen=True)
class LockInfo:
    """A lock as TiKV's ``kvrpcpb.LockInfo`` describes it: the primary lock in a ``TxnStatus``,
    the locks CheckSecondaryLocks and ScanLock find."""

    key: bytes
    primary: bytes
    start_ts: int
    ttl_ms: int = 0
    txn_size: int = 0
    op: int = 0  # binlog OpType: PUT 0, DELETE 1, LOCK 2
    use_async_commit: bool = False
    min_commit_ts: int = 0  # a commit below it is refused; 0 = none
    secondaries: tuple[bytes, ...] = ()  # the primary lock of an async-commit transaction

    @classmethod
    def of(cls, lock: LockFields) -> "LockInfo":
        """From any lock with these attribute names (the mini cluster's ``LockRecord``)."""
        return cls(bytes(lock.key), bytes(lock.primary), int(lock.start_ts), int(lock.ttl_ms), int(lock.txn_size),
                   int(lock.op), bool(lock.use_async_commit), int(lock.min_commit_ts),
                   tuple(bytes(k) for k in lock.secondaries))


@dataclass(frozen=True)
class TxnStatus:
    """A transaction's fate. ``commit_ts``: when COMMITTED. ``ttl_ms``: when LOCKED, the lock's
    TTL counted from the physical time of its start_ts. ``lock``: when LOCKED, the primary lock
    if the answer carried it (its ``use_async_commit`` says the secondaries decide, its
    ``min_commit_ts`` how low the transaction can still commit). ``by_secondaries``: decided by
    CheckSecondaryLocks (an async commit whose client is gone), so no commit or rollback record
    exists yet: the decider writes them."""

    fate: TxnFate
    commit_ts: int = 0
    ttl_ms: int = 0
    action: TxnAction = TxnAction.NO_ACTION
    lock: LockInfo | None = None
    by_secondaries: bool = False

    @classmethod
    def locked(cls, ttl_ms: int, lock: LockInfo | None = None,
               action: TxnAction = TxnAction.NO_ACTION) -> "TxnStatus":
        return cls(TxnFate.LOCKED, 0, ttl_ms, action, lock)

    @classmethod
    def committed(cls, commit_ts: int, action: TxnAction = TxnAction.NO_ACTION,
                  by_secondaries: bool = False) -> "TxnStatus":
        return cls(TxnFate.COMMITTED, commit_ts, 0, action, None, by_secondaries)

    @classmethod
    def rolled_back(cls, action: TxnAction = TxnAction.NO_ACTION, by_secondaries: bool = False) -> "TxnStatus":
        return cls(TxnFate.ROLLED_BACK, 0, 0, action, None, by_secondaries)

    @property
    def decided(self) -> bool:
        """Committed or rolled back: it can no longer change."""
        return self.fate is not TxnFate.LOCKED

    def visible_at(self, ts: int) -> bool:
        """Its writes are part of a snapshot at ``ts``."""
        return self.fate is TxnFate.COMMITTED and 0 < self.commit_ts <= ts

    def commits_after(self, ts: int) -> bool:
        """Still locked, but its primary's min_commit_ts is above ``ts``: it commits after ts if
        at all (a commit below a lock's min_commit_ts is refused)."""
        return self.fate is TxnFate.LOCKED and self.lock is not None and self.lock.min_commit_ts > ts

    def settled_for(self, ts: int) -> bool:
        """What a read at ``ts`` sees of it can no longer change: decided, or committing after ts."""
        return self.decided or self.commits_after(ts)


@dataclass(frozen=True)
class SecondaryLocks:
    """CheckSecondaryLocks' answer, as TiKV gives it: one lock per key while every key is
    locked; else ``commit_ts`` of a committed key, or neither (a key rolled back: a rollback
    record now guards it)."""

    locks: tuple[LockInfo, ...] = ()
    commit_ts: int = 0
