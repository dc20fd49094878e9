"""Deciding the transaction of a lock: the one set of rules every caller uses, as client-go's
``txnkv/txnlock/lock_resolver.go`` is the one resolver of every TiDB client.

A lock names its transaction's primary key, and the primary decides (CheckTxnStatus):
committed (at commit_ts), rolled back (a lock whose TTL ran out by ``current_ts`` is rolled back
by the call; so is a transaction that left no trace, so its prewrite can never land), or alive.

Async commit (TiDB >= 5.0's default) commits a transaction as soon as every one of its locks is
written, before any commit record exists, at the greatest ``min_commit_ts`` of its locks; its
primary is never rolled back by TTL. Once the primary's TTL has run out (the client is presumed
gone) its secondaries decide, through CheckSecondaryLocks on every key the primary lists:

* a key committed: the transaction committed at that key's commit_ts;
* a key without its lock and without a commit (CheckSecondaryLocks then writes a rollback record
  there, so the prewrite can never land): the transaction is rolled back;
* every key locked: committed at the greatest min_commit_ts of the primary and all secondaries;
* a key locked without async commit: the transaction fell back to 2PC; the primary is asked
  again with ``force_sync_commit``.

``txn_status`` applies these rules and changes nothing but what the RPCs themselves write (the
mini cluster's own reads, its expired-lock ticker and its GC worker resolve on top of it).
``TxnResolver.decide`` is a reader's: a reader at ``ts`` also ignores a transaction whose
primary's min_commit_ts is above ts (it commits after ts if at all), resolves the locks of a
transaction committed at or below ts or decided by its secondaries (so no later reader decides
it again) and of one rolled back, and finds the primary of a lock that does not name one (TiKV's
change-data feed sends PREWRITE rows without it). The replica's reads (``scan/locks.py``) and
capture's resolution of stuck regions (``capture/lock_resolution.py``) both use it.
"""
from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

from pyspark_theflash.codec.tso import MAX_TS, physical_ms
from pyspark_theflash.txn.status import LockInfo, MetLock, SecondaryLocks, TxnFate, TxnStatus


class TxnRpcs(Protocol):
    """TiKV's transaction RPCs, as an upstream client or the mini cluster's store serves them."""

    def check_txn_status(self, primary: bytes, lock_ts: int, caller_start_ts: int, current_ts: int, *,
                         force_sync_commit: bool = False) -> TxnStatus: ...

    def check_secondary_locks(self, keys: Iterable[bytes], start_ts: int) -> SecondaryLocks: ...

    def resolve_lock(self, start_ts: int, commit_ts: int, keys: Iterable[bytes] | None = None) -> int: ...


class Upstream(TxnRpcs, Protocol):
    """What a reader's resolver asks of an upstream: the transaction RPCs and PD's clock."""

    def get_ts(self) -> int: ...


@runtime_checkable
class LockScanner(Protocol):
    """An upstream that lists the locks of a key range (TiKV's KvScanLock: a TiDB cluster)."""

    def scan_locks(self, start_key: bytes, end_key: bytes, max_ts: int) -> list[LockInfo]: ...


def lock_expired(start_ts: int, ttl_ms: int, current_ts: int) -> bool:
    """Has a lock's TTL (counted from the physical time of its start_ts) run out by ``current_ts``?"""
    return current_ts >= MAX_TS or physical_ms(start_ts) + ttl_ms < physical_ms(current_ts)


def secondaries_decide(primary: LockInfo, checked: SecondaryLocks) -> TxnStatus | None:
    """The fate of an async-commit transaction whose ``primary`` lock is past its TTL, from
    CheckSecondaryLocks on every secondary it lists; None when a lock is not async (the
    transaction fell back to 2PC: ask its primary again with ``force_sync_commit``)."""
    if checked.commit_ts:
        return TxnStatus.committed(int(checked.commit_ts), by_secondaries=True)
    if len(checked.locks) < len(primary.secondaries):
        return TxnStatus.rolled_back(by_secondaries=True)
    if not all(lk.use_async_commit for lk in checked.locks):
        return None
    return TxnStatus.committed(max([int(primary.min_commit_ts)] + [int(lk.min_commit_ts) for lk in checked.locks]),
                               by_secondaries=True)


def settle_async_commit(rpcs: TxnRpcs, status: TxnStatus, primary_key: bytes, start_ts: int,
                        caller_start_ts: int, current_ts: int) -> TxnStatus:
    """``status`` (CheckTxnStatus' answer), or, for an async-commit primary whose TTL ran out by
    ``current_ts``, the fate its secondaries decide."""
    lock = status.lock
    if status.fate is not TxnFate.LOCKED or lock is None or not lock.use_async_commit:
        return status
    if not lock_expired(start_ts, status.ttl_ms, current_ts):
        return status
    decided = secondaries_decide(lock, rpcs.check_secondary_locks(lock.secondaries, start_ts))
    if decided is None:
        return rpcs.check_txn_status(primary_key, start_ts, caller_start_ts, current_ts, force_sync_commit=True)
    return decided


def txn_status(rpcs: TxnRpcs, primary_key: bytes, start_ts: int, caller_start_ts: int, current_ts: int) -> TxnStatus:
    """The fate of the transaction started at ``start_ts`` (primary ``primary_key``): committed,
    rolled back, or still locked (alive: its TTL has not run out by ``current_ts``)."""
    status = rpcs.check_txn_status(primary_key, start_ts, caller_start_ts, current_ts)
    return settle_async_commit(rpcs, status, primary_key, start_ts, caller_start_ts, current_ts)


class TxnResolver:
    """A reader's lock resolver over ``upstream``. ``decide(lock, ts)`` is the fate of the
    lock's transaction for a read at ``ts``, with its locks resolved upstream when it is decided
    (see the module's doc). Counts what it did: ``committed`` (transactions committed upstream on
    a reader's behalf), ``rolled_back`` (rolled back, or found rolled back)."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.committed = 0
        self.rolled_back = 0

    def decide(self, lock: MetLock, ts: int, keys: list[bytes] | None = None) -> TxnStatus:
        """``keys``: the transaction's locked keys the reader met, the ones resolved upstream (a
        TiDB cluster resolves locks region by region, the keys named); None lets the mini
        cluster's service resolve them all. LOCKED: alive, or committing after ts
        (``TxnStatus.commits_after``)."""
        start_ts = int(lock.start_ts)
        primary_key = bytes(lock.primary) or self._primary_of(lock)
        if not primary_key:
            # The key's lock is gone: CheckSecondaryLocks says whether it committed (it left a
            # rollback record if not, so its fate cannot change any more).
            found = self.upstream.check_secondary_locks([bytes(lock.key)], start_ts)
            if found.locks:
                primary_key = bytes(found.locks[0].primary)
            elif found.commit_ts:
                status = TxnStatus.committed(int(found.commit_ts))
                if status.commit_ts <= ts:
                    self._resolve(start_ts, status, keys)
                return status
            else:
                status = TxnStatus.rolled_back()
                self._resolve(start_ts, status, keys)
                return status
        now = self.upstream.get_ts()
        status = self.upstream.check_txn_status(primary_key, start_ts, ts, now)
        if status.commits_after(ts):
            return status
        status = settle_async_commit(self.upstream, status, primary_key, start_ts, ts, now)
        # a transaction decided by its secondaries has no commit record yet: write them (client-go
        # does), so no later reader has to decide it again
        if status.fate is TxnFate.ROLLED_BACK or \
                (status.fate is TxnFate.COMMITTED and (status.commit_ts <= ts or status.by_secondaries)):
            self._resolve(start_ts, status, keys)
        return status

    def _primary_of(self, lock: MetLock) -> bytes:
        """The primary of a lock from TiKV's change-data feed (its PREWRITE rows carry none):
        the key's own lock upstream names it, through KvScanLock over the key (a TiDB cluster).
        Empty when the upstream cannot scan locks or the key's lock is gone."""
        if not isinstance(self.upstream, LockScanner):
            return b""
        key, start_ts = bytes(lock.key), int(lock.start_ts)
        for found in self.upstream.scan_locks(key, key + b"\x00", start_ts):
            if bytes(found.key) == key and int(found.start_ts) == start_ts:
                return bytes(found.primary)
        return b""

    def _resolve(self, start_ts: int, status: TxnStatus, keys: list[bytes] | None) -> None:
        """Commit or roll back the transaction's locks on ``keys`` (all of them: None) upstream."""
        if status.fate is TxnFate.COMMITTED:
            self.upstream.resolve_lock(start_ts, status.commit_ts, keys)
            self.committed += 1
        else:
            self.upstream.resolve_lock(start_ts, 0, keys)
            self.rolled_back += 1
