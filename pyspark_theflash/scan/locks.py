"""Lock resolution for a snapshot read (Percolator, as TiDB's lock resolver does it).

A lock with start_ts <= ts belongs to a transaction that may commit at or below ts, so the
read cannot ignore it. ``txn.TxnResolver`` decides its transaction by the rules every caller
shares (``txn/resolver.py``: the primary's CheckTxnStatus; an async commit past its TTL decided
by CheckSecondaryLocks on its secondaries), and this module acts on the answer:

* committed at commit_ts <= ts: its locks are committed upstream (ResolveLock); wait until the
  store has applied that commit — the read must see the data;
* committed after ts, rolled back, or locked with a min_commit_ts above ts: invisible at ts;
  ignore it (a rolled-back transaction's leftover locks are cleaned up upstream on the way);
* alive: back off with jitter and ask again until its TTL runs out, when CheckTxnStatus rolls
  it back (or, for async commit, its secondaries decide).

Fates are cached per transaction (start_ts) for the life of one query.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, NoReturn

from pyspark_theflash.scan.errors import LockResolveTimeoutError, UpstreamUnreachableError
from pyspark_theflash.scan.learner import LearnerRead, close_view
from pyspark_theflash.txn.resolver import TxnResolver
from pyspark_theflash.txn.status import SecondaryLocks, TxnStatus

if TYPE_CHECKING:
    from pyspark_theflash.store.views import LockInfo, StoreView
    from pyspark_theflash.upstream_client.client import UpstreamClient

OP_LOCK = 2  # binlog OpType.LOCK
BACKOFF_FIRST_S = 0.02
BACKOFF_MAX_S = 1.0
BACKOFF_ASK_AGAIN_S = 0.2  # a live transaction met while waiting on resolved ts is asked again after this


class _NoUpstream:
    """The upstream of a read the store serves alone: there is none to decide a lock with."""

    def _refuse(self) -> NoReturn:
        raise UpstreamUnreachableError("this read is served from the store alone (at a ts it has resolved), with no "
                                       "upstream to decide a lock's transaction with")

    def get_ts(self) -> int:
        self._refuse()

    def check_txn_status(self, primary: bytes, lock_ts: int, caller_start_ts: int, current_ts: int, *,
                         force_sync_commit: bool = False) -> TxnStatus:
        self._refuse()

    def check_secondary_locks(self, keys: Iterable[bytes], start_ts: int) -> SecondaryLocks:
        self._refuse()

    def resolve_lock(self, start_ts: int, commit_ts: int, keys: Iterable[bytes] | None = None) -> int:
        self._refuse()


@dataclass
class LockResolver:
    """Resolves the locks a snapshot read at ``ts`` meets. ``locks(view)`` lists the locks
    of a store view it is to decide: the table's (what the read sees), or while a read on
    resolved ts waits, every lock of the regions over the table's range (what holds them)."""

    upstream: UpstreamClient | None  # None: a read the store serves alone (at a ts it has resolved)
    learner: LearnerRead
    locks: Callable[[StoreView], list[LockInfo]]
    ts: int
    decisions: dict[int, TxnStatus] = field(default_factory=dict)  # start_ts -> a fate settled for ts
    backoffs: int = 0
    asked_at: dict[int, float] = field(default_factory=dict)  # decide_pending: when a live txn was asked
    txns: TxnResolver = field(init=False)

    def __post_init__(self) -> None:
        self.txns = TxnResolver(self.upstream if self.upstream is not None else _NoUpstream())

    @property
    def resolved(self) -> int:
        """Transactions committed upstream on our behalf."""
        return self.txns.committed

    @property
    def rolled_back(self) -> int:
        """Transactions rolled back (TTL expired) or found rolled back."""
        return self.txns.rolled_back

    def _fate(self, lock: LockInfo, keys: list[bytes] | None = None) -> TxnStatus | None:
        """The transaction's fate as far as ts sees it, or None while it is alive. ``keys``: the
        transaction's locked keys the read met, the ones resolved upstream (None: all of them)."""
        status = self.txns.decide(lock, self.ts, keys)
        return status if status.settled_for(self.ts) else None

    def _keys_by_txn(self, pending: list[LockInfo]) -> dict[int, list[bytes]] | None:
        if not getattr(self.upstream, "resolved_ts_reads", False):
            return None
        out: dict[int, list[bytes]] = {}
        for lk in pending:
            out.setdefault(int(lk.start_ts), []).append(bytes(lk.key))
        return out

    def timeout_error(self, alive: list[LockInfo], timeout_s: float) -> LockResolveTimeoutError:
        lock = alive[0]
        primary = bytes(lock.primary).hex() or "not in the change-data feed"
        return LockResolveTimeoutError(
            f"reading {self.learner.table} at ts {self.ts}: {len(alive)} lock(s) still unresolved "
            f"remain after {timeout_s:g}s, e.g. key {bytes(lock.key).hex()} of the transaction started "
            f"at {lock.start_ts} (primary {primary}, ttl {lock.ttl} ms); it may still "
            "commit at or below ts. Retry, raise lock_wait_timeout, read an older snapshot_ts, or use "
            "isolation RC to skip lock checks"
        )

    def pending_alive(self, view: StoreView) -> list[LockInfo]:
        """The locks at or below ts in ``view`` whose transaction is not decided yet."""
        return [lk for lk in self.locks(view) if int(lk.start_ts) <= self.ts and int(lk.op) != OP_LOCK
                and int(lk.start_ts) not in self.decisions]

    def decide_pending(self, view: StoreView) -> None:
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
            decision = self._fate(lock, None if keys is None else keys[start_ts])
            if decision is not None:
                self.decisions[start_ts] = decision

    def run(self, view: StoreView, deadline: float, timeout_s: float) -> StoreView:
        """Resolve until no lock at or below ts can still change what ts sees; returns the
        store view in which that holds."""
        attempt = 0
        waited: set[int] = set()
        while True:
            # a LOCK-type lock (SELECT ... FOR UPDATE) changes no data: reads ignore it, as TiKV's do
            pending = [lk for lk in self.locks(view) if int(lk.start_ts) <= self.ts and int(lk.op) != OP_LOCK]
            keys = self._keys_by_txn(pending)
            alive: list[LockInfo] = []
            alive_ts: set[int] = set()
            wait_regions: set[int] = set()
            for lock in pending:
                decision = self.decisions.get(int(lock.start_ts))
                if decision is None and int(lock.start_ts) in alive_ts:
                    alive.append(lock)  # asked about this transaction a moment ago
                    continue
                if decision is None:
                    decision = self._fate(lock, None if keys is None else keys[int(lock.start_ts)])
                    if decision is None:
                        alive.append(lock)
                        alive_ts.add(int(lock.start_ts))
                        continue
                    self.decisions[int(lock.start_ts)] = decision
                if decision.visible_at(self.ts):
                    if int(lock.start_ts) in waited:
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
