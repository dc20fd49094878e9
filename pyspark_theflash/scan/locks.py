"""Lock resolution for a snapshot read (Percolator, as TiDB's lock resolver does it).

A lock with start_ts <= ts belongs to a transaction that may commit at or below ts, so the
read cannot ignore it. Its primary key decides (CheckTxnStatus):

* committed at commit_ts <= ts: commit the rest of its locks upstream (ResolveLock), then
  wait until the store has applied that commit — the read must see the data;
* committed after ts, or rolled back: invisible at ts; ignore (a rolled-back transaction's
  leftover locks are cleaned up upstream on the way);
* alive: back off with jitter and ask again until its TTL runs out, when CheckTxnStatus rolls
  it back.

Async commit (TiDB >= 5.0's default), as client-go's resolver handles it: the primary lock
CheckTxnStatus returns says so and is never rolled back by its TTL. Its min_commit_ts above ts
means the transaction commits after ts if at all (ignore it); otherwise, once its TTL ran out,
CheckSecondaryLocks on every secondary decides (``upstream/async_commit.py``): a key committed
-> committed at its ts; a key missing -> rolled back (a rollback record now guards it); all
locked -> committed at the greatest min_commit_ts. A lock that is not async on a secondary
means the transaction fell back to 2PC: its primary is asked again with force_sync_commit.

Decisions are cached per transaction (start_ts) for the life of one query.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pyspark_theflash.scan.errors import LockResolveTimeoutError
from pyspark_theflash.scan.learner import LearnerRead, close_view
from pyspark_theflash.upstream.async_commit import async_commit_outcome, lock_expired

OP_LOCK = 2  # binlog OpType.LOCK
BACKOFF_FIRST_S = 0.02
BACKOFF_MAX_S = 1.0
BACKOFF_ASK_AGAIN_S = 0.2  # a live transaction met while waiting on resolved ts is asked again after this


@dataclass(frozen=True)
class TxnDecision:
    start_ts: int
    state: str          # committed | rolled_back | after_ts (min_commit_ts > ts: commits after ts if at all)
    commit_ts: int      # 0 unless committed

    def visible_at(self, ts: int) -> bool:
        return self.state == "committed" and 0 < self.commit_ts <= ts


@dataclass
class LockResolver:
    """Resolves the locks a snapshot read at ``ts`` meets. ``locks(view)`` lists the locks
    of a store view it is to decide: the table's (what the read sees), or while a read on
    resolved ts waits, every lock of the regions over the table's range (what holds them)."""

    upstream: Any
    learner: LearnerRead
    locks: Callable[[Any], list[Any]]
    ts: int
    decisions: dict[int, TxnDecision] = field(default_factory=dict)
    resolved: int = 0        # transactions committed upstream on our behalf
    rolled_back: int = 0     # transactions rolled back (TTL expired) or found rolled back
    backoffs: int = 0
    asked_at: dict[int, float] = field(default_factory=dict)  # decide_pending: when a live txn was asked

    def _check(self, lock: Any, keys: list[bytes] | None = None) -> TxnDecision | None:
        """The transaction's fate, or None while it is alive. ``keys``: the transaction's locked
        keys the read met, the ones resolved upstream (a TiDB cluster resolves locks region by
        region, the keys named); None lets the mini cluster's service resolve them all."""
        start_ts = int(lock.start_ts)
        primary_key = bytes(lock.primary)
        if not primary_key:
            # A lock from TiKV's change-data feed: its PREWRITE rows carry no primary. The key's
            # own lock upstream names it: KvScanLock over the key (a TiDB cluster), or
            # CheckSecondaryLocks, which answers with the lock whatever kind it is. No lock
            # left means the key is committed (CheckSecondaryLocks gives the commit ts) or
            # rolled back.
            scan = getattr(self.upstream, "scan_locks", None)
            key = bytes(lock.key)
            if scan is not None:
                found_locks = [lk for lk in scan(key, key + b"\x00", start_ts)
                               if bytes(lk.key) == key and int(lk.start_ts) == start_ts]
                if found_locks:
                    primary_key = bytes(found_locks[0].primary)
        if not primary_key:
            found = self.upstream.check_secondary_locks([bytes(lock.key)], start_ts)
            if found.locks:
                primary_key = bytes(found.locks[0].primary)
            elif int(found.commit_ts):
                commit_ts = int(found.commit_ts)
                if commit_ts <= self.ts:
                    self.upstream.resolve_lock(start_ts, commit_ts, keys)
                    self.resolved += 1
                return TxnDecision(start_ts, "committed", commit_ts)
            else:
                self.upstream.resolve_lock(start_ts, 0, keys)
                self.rolled_back += 1
                return TxnDecision(start_ts, "rolled_back", 0)
        now = self.upstream.get_ts()
        status = self.upstream.check_txn_status(primary_key, start_ts, self.ts, now)
        state = str(getattr(status, "state", status)).lower()
        primary = getattr(status, "lock", None)
        decided_by_secondaries = False
        if state == "locked" and primary is not None:
            if int(primary.min_commit_ts) > self.ts:
                return TxnDecision(start_ts, "after_ts", 0)  # a commit below min_commit_ts is refused
            if primary.use_async_commit:
                if not lock_expired(start_ts, int(status.ttl_ms), now):
                    return None
                checked = self.upstream.check_secondary_locks(list(primary.secondaries), start_ts)
                outcome = async_commit_outcome(primary, len(primary.secondaries), checked.locks, checked.commit_ts)
                if outcome.state == "fallback":
                    status = self.upstream.check_txn_status(primary_key, start_ts, self.ts, now,
                                                            force_sync_commit=True)
                    state = str(status.state).lower()
                else:
                    state, status, decided_by_secondaries = outcome.state, outcome, True
        if state == "committed":
            commit_ts = int(status.commit_ts)
            # a transaction decided by its secondaries has no commit record yet: write them
            # (client-go does), so no later reader has to decide it again
            if commit_ts <= self.ts or decided_by_secondaries:
                self.upstream.resolve_lock(start_ts, commit_ts, keys)
                self.resolved += 1
            return TxnDecision(start_ts, "committed", commit_ts)
        if state in ("rolled_back", "rolledback", "rollback"):
            self.upstream.resolve_lock(start_ts, 0, keys)
            self.rolled_back += 1
            return TxnDecision(start_ts, "rolled_back", 0)
        return None

    def _keys_by_txn(self, pending: list[Any]) -> dict[int, list[bytes]] | None:
        if not getattr(self.upstream, "resolved_ts_reads", False):
            return None
        out: dict[int, list[bytes]] = {}
        for lk in pending:
            out.setdefault(int(lk.start_ts), []).append(bytes(lk.key))
        return out

    def timeout_error(self, alive: list[Any], timeout_s: float) -> LockResolveTimeoutError:
        lock = alive[0]
        primary = bytes(lock.primary).hex() or "not in the change-data feed"
        return LockResolveTimeoutError(
            f"reading {self.learner.table} at ts {self.ts}: {len(alive)} lock(s) still unresolved "
            f"remain after {timeout_s:g}s, e.g. key {bytes(lock.key).hex()} of the transaction started "
            f"at {lock.start_ts} (primary {primary}, ttl {lock.ttl} ms); it may still "
            "commit at or below ts. Retry, raise lock_wait_timeout, read an older snapshot_ts, or use "
            "isolation RC to skip lock checks"
        )

    def pending_alive(self, view: Any) -> list[Any]:
        """The locks at or below ts in ``view`` whose transaction is not decided yet."""
        return [lk for lk in self.locks(view) if int(lk.start_ts) <= self.ts and int(lk.op) != OP_LOCK
                and int(lk.start_ts) not in self.decisions]

    def decide_pending(self, view: Any) -> None:
        """Ask about the transactions of the locks at or below ts in ``view`` not decided yet;
        a decided one is resolved upstream on the way (what a learner read on resolved ts
        needs: a lock holds TiKV's resolved ts back until it is resolved)."""
        pending = [lk for lk in self.locks(view) if int(lk.start_ts) <= self.ts and int(lk.op) != OP_LOCK]
        keys = self._keys_by_txn(pending)
        asked: set[int] = set()
        for lock in pending:
            start_ts = int(lock.start_ts)
            if start_ts in self.decisions or start_ts in asked or \
                    time.monotonic() - self.asked_at.get(start_ts, 0.0) < BACKOFF_ASK_AGAIN_S:
                continue
            asked.add(start_ts)
            self.asked_at[start_ts] = time.monotonic()
            decision = self._check(lock, None if keys is None else keys[start_ts])
            if decision is not None:
                self.decisions[start_ts] = decision

    def run(self, view: Any, deadline: float, timeout_s: float) -> Any:
        """Resolve until no lock at or below ts can still change what ts sees; returns the
        store view in which that holds."""
        attempt = 0
        waited: set[int] = set()
        while True:
            # a LOCK-type lock (SELECT ... FOR UPDATE) changes no data: reads ignore it, as TiKV's do
            pending = [lk for lk in self.locks(view) if int(lk.start_ts) <= self.ts and int(lk.op) != OP_LOCK]
            keys = self._keys_by_txn(pending)
            alive: list[Any] = []
            alive_ts: set[int] = set()
            wait_regions: set[int] = set()
            for lock in pending:
                decision = self.decisions.get(int(lock.start_ts))
                if decision is None and int(lock.start_ts) in alive_ts:
                    alive.append(lock)  # asked about this transaction a moment ago
                    continue
                if decision is None:
                    decision = self._check(lock, None if keys is None else keys[int(lock.start_ts)])
                    if decision is None:
                        alive.append(lock)
                        alive_ts.add(int(lock.start_ts))
                        continue
                    self.decisions[decision.start_ts] = decision
                if decision.visible_at(self.ts):
                    if decision.start_ts in waited:
                        alive.append(lock)  # still in the store after a catch-up: back off, look again
                    else:
                        wait_regions.add(int(lock.region_id))
            if not alive and not wait_regions:
                return view
            if wait_regions:
                # The commit reaches the store through the binlog: a fresh read index of the
                # lock's regions covers it; then look again (the lock must be gone).
                close_view(view)
                view = self.learner.run(deadline, timeout_s, only=wait_regions, force=True)
                waited.update(int(lk.start_ts) for lk in pending if int(lk.region_id) in wait_regions)
                if not alive:
                    continue
            now = time.monotonic()
            if now >= deadline:
                raise self.timeout_error(alive, timeout_s)
            self.backoffs += 1
            pause = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * (2 ** attempt)) * random.uniform(0.5, 1.5)
            time.sleep(min(pause, max(0.0, deadline - now)))
            attempt += 1
            close_view(view)
            view = self.learner.snapshot()
