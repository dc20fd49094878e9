"""The calls TiKV's own clients make (client-go, client-rust and the tikv-client built on it):
transactional reads and writes, pessimistic locks, and the raw API, on the mini cluster's stores.

Every call checks its region context first (``TikvServicer._region``) and then its keys against
the region's range (``key_not_in_region``), as TiKV does, so a client's region cache and retry
logic run unchanged. Transactional writes go through the Percolator store, so they reach the
change feed as the table API's transactions do (PREWRITE, COMMIT, ROLLBACK, COMMITTED rows).

Pessimistic locks live beside the Percolator store (``PessimisticLocks``): TiKV's CDC leaves
them out of the feed and its reads pass over them; a prewrite with DO_PESSIMISTIC_CHECK turns
one into an ordinary lock. The raw API (API v1) has a keyspace of its own (``RawKeyspace``):
raw keys are compared as bytes against the regions' encoded boundaries, as PD and TiKV do, and
raw writes are not in the change feed (TiKV's CDC carries raw keys only under API v2).
"""
from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pyspark_theflash.codec.tso import physical_ms
from pyspark_theflash.proto import errorpb_pb2, kvrpcpb_pb2
from pyspark_theflash.txn.status import LockInfo
from pyspark_theflash.upstream_client.errors import (
    AlreadyExistError,
    CommitTsExpiredError,
    GCTooEarlyError,
    KeyLockedError,
    RegionError,
    TxnNotFoundError,
    TxnRolledBackError,
    UpstreamError,
    WriteConflictError,
)
from pyspark_theflash.upstream.pd import Region, encode_region_key
from pyspark_theflash.upstream.percolator import DELETE, LOCK, PUT, LockRecord, Mutation, PercolatorStore

if TYPE_CHECKING:
    import grpc

_OP = {kvrpcpb_pb2.Put: PUT, kvrpcpb_pb2.Insert: PUT, kvrpcpb_pb2.Del: DELETE, kvrpcpb_pb2.Lock: LOCK}
_PB_LOCK_TYPE = {PUT: kvrpcpb_pb2.Put, DELETE: kvrpcpb_pb2.Del, LOCK: kvrpcpb_pb2.Lock}
_MAX_WAIT_S = 1.0  # the longest a pessimistic lock waits for another transaction's lock


@dataclass(frozen=True)
class PessimisticLock:
    key: bytes
    primary: bytes
    start_ts: int
    for_update_ts: int
    ttl_ms: int

    def info(self) -> kvrpcpb_pb2.LockInfo:
        return kvrpcpb_pb2.LockInfo(primary_lock=self.primary, lock_version=self.start_ts, key=self.key,
                                    lock_ttl=self.ttl_ms, lock_type=kvrpcpb_pb2.PessimisticLock,
                                    lock_for_update_ts=self.for_update_ts)


class PessimisticLocks:
    """Pessimistic locks by key; guarded by the Percolator store's ``mu``."""

    def __init__(self) -> None:
        self.by_key: dict[bytes, PessimisticLock] = {}

    def get(self, key: bytes) -> PessimisticLock | None:
        return self.by_key.get(key)

    def release(self, key: bytes, start_ts: int, for_update_ts: int = 0) -> bool:
        lock = self.by_key.get(key)
        if lock is None or lock.start_ts != start_ts or (for_update_ts and lock.for_update_ts > for_update_ts):
            return False
        del self.by_key[key]
        return True

    def release_txn(self, start_ts: int, keys: list[bytes] | None = None) -> None:
        for key in list(self.by_key) if keys is None else keys:
            self.release(key, start_ts)


class RawKeyspace:
    """API v1's raw keys: bytes to bytes, no versions, sorted. Thread-safe."""

    def __init__(self) -> None:
        self.mu = threading.Lock()
        self._keys: list[bytes] = []
        self._values: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        with self.mu:
            return self._values.get(key)

    def put(self, pairs: list[tuple[bytes, bytes]]) -> None:
        with self.mu:
            for key, value in pairs:
                if key not in self._values:
                    bisect.insort(self._keys, key)
                self._values[key] = value

    def delete(self, keys: list[bytes]) -> None:
        with self.mu:
            for key in keys:
                if self._values.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]

    def delete_range(self, start: bytes, end: bytes) -> None:
        with self.mu:
            lo = bisect.bisect_left(self._keys, start)
            hi = bisect.bisect_left(self._keys, end) if end else len(self._keys)
            for key in self._keys[lo:hi]:
                del self._values[key]
            del self._keys[lo:hi]

    def scan(self, start: bytes, end: bytes, limit: int, reverse: bool) -> list[tuple[bytes, bytes]]:
        """[start, end) in order, or in reverse order below ``start`` down to ``end``."""
        with self.mu:
            if reverse:
                lo = bisect.bisect_left(self._keys, end) if end else 0
                hi = bisect.bisect_left(self._keys, start) if start else len(self._keys)
                keys = self._keys[max(lo, hi - limit) if limit else lo:hi][::-1]
            else:
                lo = bisect.bisect_left(self._keys, start)
                hi = bisect.bisect_left(self._keys, end) if end else len(self._keys)
                keys = self._keys[lo:min(hi, lo + limit) if limit else hi]
            return [(k, self._values[k]) for k in keys]


_LOCK_OP = {0: kvrpcpb_pb2.Put, 1: kvrpcpb_pb2.Del, 2: kvrpcpb_pb2.Lock}


def lock_info(lock: LockRecord | LockInfo) -> kvrpcpb_pb2.LockInfo:
    """A Percolator lock as TiKV reports it (``LockInfo``)."""
    return kvrpcpb_pb2.LockInfo(
        primary_lock=lock.primary, lock_version=lock.start_ts, key=lock.key, lock_ttl=lock.ttl_ms,
        txn_size=lock.txn_size, lock_type=_LOCK_OP.get(lock.op, kvrpcpb_pb2.Put), use_async_commit=lock.use_async_commit,
        min_commit_ts=lock.min_commit_ts, secondaries=list(lock.secondaries))


def key_error(exc: Exception, store: PercolatorStore, pessimistic: PessimisticLocks | None = None) -> kvrpcpb_pb2.KeyError:
    """A store error as TiKV fills kvrpcpb.KeyError."""
    if isinstance(exc, KeyLockedError):
        lock = store.lock_of(exc.key)
        if lock is not None and lock.start_ts == exc.lock_start_ts:
            return kvrpcpb_pb2.KeyError(locked=lock_info(lock))
        plock = pessimistic.get(exc.key) if pessimistic is not None else None
        if plock is not None and plock.start_ts == exc.lock_start_ts:
            return kvrpcpb_pb2.KeyError(locked=plock.info())
        return kvrpcpb_pb2.KeyError(locked=kvrpcpb_pb2.LockInfo(
            primary_lock=exc.primary, lock_version=exc.lock_start_ts, key=exc.key, lock_ttl=exc.ttl_ms))
    if isinstance(exc, WriteConflictError):
        return kvrpcpb_pb2.KeyError(conflict=kvrpcpb_pb2.WriteConflict(
            start_ts=exc.start_ts, conflict_ts=exc.conflict_commit_ts, key=exc.key,
            conflict_commit_ts=exc.conflict_commit_ts, reason=kvrpcpb_pb2.WriteConflict.Optimistic))
    if isinstance(exc, AlreadyExistError):
        return kvrpcpb_pb2.KeyError(already_exist=kvrpcpb_pb2.AlreadyExist(key=exc.key))
    if isinstance(exc, CommitTsExpiredError):
        return kvrpcpb_pb2.KeyError(commit_ts_expired=kvrpcpb_pb2.CommitTsExpired(
            start_ts=exc.start_ts, attempted_commit_ts=exc.commit_ts, key=exc.key, min_commit_ts=exc.min_commit_ts))
    if isinstance(exc, TxnNotFoundError):
        return kvrpcpb_pb2.KeyError(txn_not_found=kvrpcpb_pb2.TxnNotFound(start_ts=exc.start_ts,
                                                                          primary_key=exc.primary))
    if isinstance(exc, TxnRolledBackError):
        # TiKV's TxnLockNotFound on commit: "txn ... lock not found", an abort the client surfaces
        return kvrpcpb_pb2.KeyError(abort=str(exc))
    return kvrpcpb_pb2.KeyError(abort=str(exc))


def _in_region(key: bytes, region: Region) -> bool:
    return key >= region.start and (not region.end or key < region.end)


def _raw_in_region(key: bytes, region: Region) -> bool:
    """A raw key against the region's encoded boundaries, compared as bytes (API v1 raw)."""
    return key >= encode_region_key(region.start) and (not region.end or key < encode_region_key(region.end))


def _not_in_region(key: bytes, region: Region, encoded: bool = False) -> errorpb_pb2.Error:
    start, end = (encode_region_key(region.start), encode_region_key(region.end)) if encoded else (region.start, region.end)
    return errorpb_pb2.Error(message=f"key {key.hex()} is not in region {region.id}",
                             key_not_in_region=errorpb_pb2.KeyNotInRegion(key=key, region_id=region.id,
                                                                         start_key=start, end_key=end))


class _Cluster(Protocol):
    """What the calls use of the mini cluster (``cluster.MiniCluster``, which imports this module)."""

    @property
    def store(self) -> PercolatorStore: ...


class _Topology(Protocol):
    @property
    def pessimistic_locks(self) -> PessimisticLocks: ...

    @property
    def raw_keyspace(self) -> RawKeyspace: ...


class _Server(Protocol):
    """What the calls use of the store server they serve (``tikv_stores.StoreServer``, which
    imports this module)."""

    @property
    def topology(self) -> _Topology: ...


class ClientCalls:
    """TikvServicer's calls for TiKV's own clients (mixed into ``tikv_stores.TikvServicer``)."""

    cluster: _Cluster
    server: _Server
    _region: Callable[[kvrpcpb_pb2.Context], tuple[Any, errorpb_pb2.Error | None]]

    @property
    def _pessimistic(self) -> PessimisticLocks:
        return self.server.topology.pessimistic_locks

    @property
    def _raw(self) -> RawKeyspace:
        return self.server.topology.raw_keyspace

    def _keys_region(self, ctx: kvrpcpb_pb2.Context, keys: list[bytes],
                     encoded: bool = False) -> tuple[Any, errorpb_pb2.Error | None]:
        region, err = self._region(ctx)
        if err is not None:
            return None, err
        inside = _raw_in_region if encoded else _in_region
        for key in keys:
            if not inside(key, region):
                return None, _not_in_region(key, region, encoded)
        return region, None

    # ------------------------------------------------------------ reads

    def _read(self, key: bytes, ts: int) -> bytes | None:
        return self.cluster.store.get(key, ts)

    def KvGet(self, request: kvrpcpb_pb2.GetRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.GetResponse:
        key = bytes(request.key)
        _, err = self._keys_region(request.context, [key])
        if err is not None:
            return kvrpcpb_pb2.GetResponse(region_error=err)
        try:
            value = self._read(key, request.version)
        except (KeyLockedError, GCTooEarlyError) as exc:
            return kvrpcpb_pb2.GetResponse(error=key_error(exc, self.cluster.store))
        if value is None:
            return kvrpcpb_pb2.GetResponse(not_found=True)
        return kvrpcpb_pb2.GetResponse(value=value)

    def KvBatchGet(self, request: kvrpcpb_pb2.BatchGetRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.BatchGetResponse:
        keys = [bytes(k) for k in request.keys]
        _, err = self._keys_region(request.context, keys)
        if err is not None:
            return kvrpcpb_pb2.BatchGetResponse(region_error=err)
        pairs = []
        for key in keys:
            try:
                value = self._read(key, request.version)
            except KeyLockedError as exc:
                pairs.append(kvrpcpb_pb2.KvPair(key=key, error=key_error(exc, self.cluster.store)))
                continue
            except GCTooEarlyError as exc:
                return kvrpcpb_pb2.BatchGetResponse(error=key_error(exc, self.cluster.store))
            if value is not None:
                pairs.append(kvrpcpb_pb2.KvPair(key=key, value=value))
        return kvrpcpb_pb2.BatchGetResponse(pairs=pairs)

    def KvScan(self, request: kvrpcpb_pb2.ScanRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.ScanResponse:
        """Forward: [start_key, end_key); reverse: below start_key down to end_key (kvproto).
        Both clamped to the region. A locked key is a pair with its error, as TiKV answers."""
        region, err = self._region(request.context)
        if err is not None:
            return kvrpcpb_pb2.ScanResponse(region_error=err)
        store = self.cluster.store
        lo, hi = (bytes(request.end_key), bytes(request.start_key)) if request.reverse else (
            bytes(request.start_key), bytes(request.end_key))
        lo = max(lo, region.start)
        if region.end and (not hi or hi > region.end):
            hi = region.end
        pairs: list[kvrpcpb_pb2.KvPair] = []
        try:
            with store.mu:
                keys = list(store.keys_in(lo, hi))
                if request.reverse:
                    keys.reverse()
                for key in keys:
                    if request.limit and len(pairs) >= request.limit:
                        break
                    try:
                        value = self._read(key, request.version)
                    except KeyLockedError as exc:
                        pairs.append(kvrpcpb_pb2.KvPair(key=key, error=key_error(exc, store)))
                        continue
                    if value is not None:
                        pairs.append(kvrpcpb_pb2.KvPair(key=key, value=b"" if request.key_only else value))
        except GCTooEarlyError as exc:
            return kvrpcpb_pb2.ScanResponse(error=key_error(exc, store))
        return kvrpcpb_pb2.ScanResponse(pairs=pairs)

    # ------------------------------------------------------------ 2PC

    def _assert(self, m: kvrpcpb_pb2.Mutation, start_ts: int) -> kvrpcpb_pb2.KeyError | None:
        """kvproto's Mutation.assertion against the newest committed version (TiKV checks it on
        prewrite when assertion_level is not Off)."""
        store = self.cluster.store
        key = bytes(m.key)
        newest = next((v for v in store.versions_of(key) if v.write_type in ("P", "D")), None)
        exists = newest is not None and newest.write_type == "P"
        if (m.assertion == kvrpcpb_pb2.Exist) != exists:
            return kvrpcpb_pb2.KeyError(assertion_failed=kvrpcpb_pb2.AssertionFailed(
                start_ts=start_ts, key=key, assertion=m.assertion,
                existing_start_ts=newest.start_ts if newest else 0, existing_commit_ts=newest.commit_ts if newest else 0))
        return None

    def KvPrewrite(self, request: kvrpcpb_pb2.PrewriteRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.PrewriteResponse:
        keys = [bytes(m.key) for m in request.mutations]
        region, err = self._keys_region(request.context, keys)
        if err is not None:
            return kvrpcpb_pb2.PrewriteResponse(region_error=err)
        store, plocks = self.cluster.store, self._pessimistic
        start_ts = request.start_version
        actions = list(request.pessimistic_actions)
        with store.mu:
            errors: list[kvrpcpb_pb2.KeyError] = []
            mutations: list[Mutation] = []
            pessimistic: set[bytes] = set()
            for i, m in enumerate(request.mutations):
                key = bytes(m.key)
                plock = plocks.get(key)
                if plock is not None and plock.start_ts != start_ts:
                    errors.append(kvrpcpb_pb2.KeyError(locked=plock.info()))
                    continue
                lock = store.lock_of(key)
                if lock is not None and lock.start_ts != start_ts:
                    errors.append(key_error(KeyLockedError(key, lock.start_ts, lock.primary, lock.ttl_ms), store))
                    continue
                if i < len(actions) and actions[i] == kvrpcpb_pb2.PrewriteRequest.DO_PESSIMISTIC_CHECK:
                    if plock is None and (lock is None or lock.start_ts != start_ts):
                        own = store._find_version(key, start_ts)
                        if own is None or own.write_type == "R":
                            errors.append(kvrpcpb_pb2.KeyError(abort=(
                                f"PessimisticLockNotFound: key {key.hex()} of the transaction started at "
                                f"{start_ts} holds no pessimistic lock (it was rolled back or expired)")))
                            continue
                    pessimistic.add(key)
                if m.assertion != kvrpcpb_pb2.Assertion.Value("None") and request.assertion_level != kvrpcpb_pb2.Off:
                    failed = self._assert(m, start_ts)
                    if failed is not None:
                        errors.append(failed)
                        continue
                if m.op in (kvrpcpb_pb2.Insert, kvrpcpb_pb2.CheckNotExists) and not request.skip_constraint_check:
                    newest = next((v for v in store.versions_of(key) if v.write_type in ("P", "D")), None)
                    if newest is not None and newest.write_type == "P" and newest.commit_ts <= start_ts:
                        errors.append(kvrpcpb_pb2.KeyError(already_exist=kvrpcpb_pb2.AlreadyExist(key=key)))
                        continue
                if m.op == kvrpcpb_pb2.CheckNotExists:
                    continue
                if m.op not in _OP:
                    errors.append(kvrpcpb_pb2.KeyError(abort=f"mutation op {kvrpcpb_pb2.Op.Name(m.op)} cannot be prewritten"))
                    continue
                mutations.append(Mutation(_OP[m.op], key, bytes(m.value) if m.op != kvrpcpb_pb2.Del else b""))
            if errors:
                return kvrpcpb_pb2.PrewriteResponse(errors=errors)
            if not mutations:
                return kvrpcpb_pb2.PrewriteResponse()
            primary = bytes(request.primary_lock)
            try:
                if request.try_one_pc and not pessimistic:
                    commit_ts = store.one_pc(mutations, start_ts)
                    return kvrpcpb_pb2.PrewriteResponse(one_pc_commit_ts=commit_ts)
                min_commit_ts = store.prewrite(
                    mutations, primary, start_ts, request.lock_ttl, async_commit=request.use_async_commit,
                    secondaries=[bytes(k) for k in request.secondaries], pessimistic_keys=frozenset(pessimistic),
                    min_commit_ts=request.min_commit_ts)
            except (KeyLockedError, WriteConflictError, TxnRolledBackError, AlreadyExistError, RegionError) as exc:
                if isinstance(exc, TxnRolledBackError):
                    # TiKV: a prewrite meeting its own rollback is a write conflict, reason SelfRolledBack
                    return kvrpcpb_pb2.PrewriteResponse(errors=[kvrpcpb_pb2.KeyError(conflict=kvrpcpb_pb2.WriteConflict(
                        start_ts=start_ts, conflict_ts=start_ts, key=exc.key, primary=primary,
                        conflict_commit_ts=start_ts, reason=kvrpcpb_pb2.WriteConflict.SelfRolledBack))])
                ke = key_error(exc, store, plocks)
                if ke.HasField("conflict"):
                    ke.conflict.primary = primary
                return kvrpcpb_pb2.PrewriteResponse(errors=[ke])
            for key in pessimistic:  # now ordinary locks
                plocks.release(key, start_ts)
            return kvrpcpb_pb2.PrewriteResponse(min_commit_ts=min_commit_ts if request.use_async_commit else 0)

    def KvCommit(self, request: kvrpcpb_pb2.CommitRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.CommitResponse:
        keys = [bytes(k) for k in request.keys]
        _, err = self._keys_region(request.context, keys)
        if err is not None:
            return kvrpcpb_pb2.CommitResponse(region_error=err)
        store = self.cluster.store
        with store.mu:
            try:
                store.commit(keys, request.start_version, request.commit_version)
            except (TxnRolledBackError, CommitTsExpiredError, UpstreamError) as exc:
                return kvrpcpb_pb2.CommitResponse(error=key_error(exc, store))
        return kvrpcpb_pb2.CommitResponse(commit_version=request.commit_version)

    def _rollback(self, keys: list[bytes], start_ts: int) -> kvrpcpb_pb2.KeyError | None:
        store = self.cluster.store
        with store.mu:
            self._pessimistic.release_txn(start_ts, keys)
            try:
                store.rollback(keys, start_ts)
            except UpstreamError as exc:  # committed: TiKV's Committed error, an abort
                return kvrpcpb_pb2.KeyError(abort=str(exc))
        return None

    def KvBatchRollback(self, request: kvrpcpb_pb2.BatchRollbackRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.BatchRollbackResponse:
        keys = [bytes(k) for k in request.keys]
        _, err = self._keys_region(request.context, keys)
        if err is not None:
            return kvrpcpb_pb2.BatchRollbackResponse(region_error=err)
        return kvrpcpb_pb2.BatchRollbackResponse(error=self._rollback(keys, request.start_version))

    def KvCleanup(self, request: kvrpcpb_pb2.CleanupRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.CleanupResponse:
        """Roll the key back unless it committed (then its commit_version) or its lock is alive
        at current_ts (then the lock, as TiKV answers)."""
        key = bytes(request.key)
        _, err = self._keys_region(request.context, [key])
        if err is not None:
            return kvrpcpb_pb2.CleanupResponse(region_error=err)
        store = self.cluster.store
        with store.mu:
            lock = store.lock_of(key)
            if (lock is not None and lock.start_ts == request.start_version and request.current_ts
                    and physical_ms(lock.start_ts) + lock.ttl_ms >= physical_ms(request.current_ts)):
                return kvrpcpb_pb2.CleanupResponse(error=key_error(
                    KeyLockedError(key, lock.start_ts, lock.primary, lock.ttl_ms), store))
            own = store._find_version(key, request.start_version)
            if own is not None and own.write_type != "R":
                return kvrpcpb_pb2.CleanupResponse(commit_version=own.commit_ts)
            ke = self._rollback([key], request.start_version)
        return kvrpcpb_pb2.CleanupResponse(error=ke)

    def KvTxnHeartBeat(self, request: kvrpcpb_pb2.TxnHeartBeatRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.TxnHeartBeatResponse:
        primary = bytes(request.primary_lock)
        _, err = self._keys_region(request.context, [primary])
        if err is not None:
            return kvrpcpb_pb2.TxnHeartBeatResponse(region_error=err)
        store, plocks = self.cluster.store, self._pessimistic
        with store.mu:
            plock = plocks.get(primary)
            if plock is not None and plock.start_ts == request.start_version:
                if request.advise_lock_ttl > plock.ttl_ms:
                    plock = PessimisticLock(plock.key, plock.primary, plock.start_ts, plock.for_update_ts,
                                            request.advise_lock_ttl)
                    plocks.by_key[primary] = plock
                return kvrpcpb_pb2.TxnHeartBeatResponse(lock_ttl=plock.ttl_ms)
            try:
                ttl = store.heartbeat(primary, request.start_version, request.advise_lock_ttl)
            except TxnNotFoundError as exc:
                return kvrpcpb_pb2.TxnHeartBeatResponse(error=key_error(exc, store))
        return kvrpcpb_pb2.TxnHeartBeatResponse(lock_ttl=ttl)

    # ------------------------------------------------------------ pessimistic locks

    def KvPessimisticLock(self, request: kvrpcpb_pb2.PessimisticLockRequest,
                          context: grpc.ServicerContext) -> kvrpcpb_pb2.PessimisticLockResponse:
        """Lock keys for update at for_update_ts (TiKV's acquire_pessimistic_lock). All or none:
        on an error no key of the request is locked. A lock of another transaction is waited for
        up to wait_timeout (at most a second; 0 = no wait, < 0 = none) and then answered as
        ``locked`` for the client to resolve; a newer commit than for_update_ts is a write
        conflict (reason PessimisticRetry) the client retries at a new for_update_ts."""
        keys = [bytes(m.key) for m in request.mutations]
        _, err = self._keys_region(request.context, keys)
        if err is not None:
            return kvrpcpb_pb2.PessimisticLockResponse(region_error=err)
        deadline = time.monotonic() + (min(request.wait_timeout / 1000, _MAX_WAIT_S) if request.wait_timeout > 0 else 0)
        while True:
            resp, waiting = self._pessimistic_lock_once(request, keys)
            if not waiting or time.monotonic() >= deadline:
                return resp
            time.sleep(0.005)

    def _pessimistic_lock_once(self, request: kvrpcpb_pb2.PessimisticLockRequest,
                               keys: list[bytes]) -> tuple[kvrpcpb_pb2.PessimisticLockResponse, bool]:
        store, plocks = self.cluster.store, self._pessimistic
        start_ts, for_update_ts = request.start_version, request.for_update_ts
        primary = bytes(request.primary_lock)
        with store.mu:
            values: list[bytes] = []
            not_founds: list[bool] = []
            granted: list[bytes] = []
            for key in keys:
                plock = plocks.get(key)
                if plock is not None and plock.start_ts != start_ts:
                    return kvrpcpb_pb2.PessimisticLockResponse(errors=[kvrpcpb_pb2.KeyError(locked=plock.info())]), True
                lock = store.lock_of(key)
                if lock is not None and lock.start_ts != start_ts:
                    return kvrpcpb_pb2.PessimisticLockResponse(errors=[key_error(
                        KeyLockedError(key, lock.start_ts, lock.primary, lock.ttl_ms), store)]), True
                own = store._find_version(key, start_ts)
                if own is not None and own.write_type == "R":
                    return kvrpcpb_pb2.PessimisticLockResponse(errors=[kvrpcpb_pb2.KeyError(abort=(
                        f"PessimisticLockRolledBack: the transaction started at {start_ts} was rolled back "
                        f"on key {key.hex()}"))]), False
                newest = next((v for v in store.versions_of(key) if v.write_type != "R"), None)
                if newest is not None and newest.commit_ts > for_update_ts:
                    return kvrpcpb_pb2.PessimisticLockResponse(errors=[kvrpcpb_pb2.KeyError(
                        conflict=kvrpcpb_pb2.WriteConflict(
                            start_ts=start_ts, conflict_ts=for_update_ts, key=key, primary=primary,
                            conflict_commit_ts=newest.commit_ts, reason=kvrpcpb_pb2.WriteConflict.PessimisticRetry))]), False
                value = None
                if request.return_values or request.check_existence or request.lock_only_if_exists:
                    value = self._latest_value(key)
                    values.append(value or b"")
                    not_founds.append(value is None)
                if request.lock_only_if_exists and value is None:
                    continue
                if lock is None:  # already prewritten by this transaction: nothing to lock
                    granted.append(key)
            for key in granted:
                old = plocks.get(key)
                plocks.by_key[key] = PessimisticLock(key, primary, start_ts, max(for_update_ts, old.for_update_ts if old else 0),
                                                     request.lock_ttl)
            resp = kvrpcpb_pb2.PessimisticLockResponse(not_founds=not_founds)
            if request.return_values:
                resp.values.extend(values)
            return resp, False

    def _latest_value(self, key: bytes) -> bytes | None:
        store = self.cluster.store
        for v in store.versions_of(key):
            if v.write_type in ("L", "R"):
                continue
            return store.value_of(key, v) if v.write_type == "P" else None
        return None

    def KVPessimisticRollback(self, request: kvrpcpb_pb2.PessimisticRollbackRequest,
                              context: grpc.ServicerContext) -> kvrpcpb_pb2.PessimisticRollbackResponse:
        keys = [bytes(k) for k in request.keys]
        _, err = self._keys_region(request.context, keys)
        if err is not None:
            return kvrpcpb_pb2.PessimisticRollbackResponse(region_error=err)
        with self.cluster.store.mu:
            for key in keys:
                self._pessimistic.release(key, request.start_version, request.for_update_ts)
        return kvrpcpb_pb2.PessimisticRollbackResponse()

    def pessimistic_status(self, request: kvrpcpb_pb2.CheckTxnStatusRequest) -> kvrpcpb_pb2.CheckTxnStatusResponse | None:
        """CheckTxnStatus of a primary that holds only a pessimistic lock: alive (its LockInfo)
        or expired (released: TTLExpirePessimisticRollback). None: no such lock. Caller holds mu."""
        primary = bytes(request.primary_key)
        plock = self._pessimistic.get(primary)
        if plock is None or plock.start_ts != request.lock_ts:
            return None
        if physical_ms(plock.start_ts) + plock.ttl_ms < physical_ms(request.current_ts):
            self._pessimistic.release_txn(plock.start_ts)
            return kvrpcpb_pb2.CheckTxnStatusResponse(action=kvrpcpb_pb2.TTLExpirePessimisticRollback)
        return kvrpcpb_pb2.CheckTxnStatusResponse(lock_ttl=plock.ttl_ms, lock_info=plock.info())

    # ------------------------------------------------------------ raw API

    def RawGet(self, request: kvrpcpb_pb2.RawGetRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.RawGetResponse:
        key = bytes(request.key)
        _, err = self._keys_region(request.context, [key], encoded=True)
        if err is not None:
            return kvrpcpb_pb2.RawGetResponse(region_error=err)
        value = self._raw.get(key)
        return kvrpcpb_pb2.RawGetResponse(not_found=True) if value is None else kvrpcpb_pb2.RawGetResponse(value=value)

    def RawBatchGet(self, request: kvrpcpb_pb2.RawBatchGetRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.RawBatchGetResponse:
        keys = [bytes(k) for k in request.keys]
        _, err = self._keys_region(request.context, keys, encoded=True)
        if err is not None:
            return kvrpcpb_pb2.RawBatchGetResponse(region_error=err)
        pairs = [kvrpcpb_pb2.KvPair(key=k, value=v) for k in keys if (v := self._raw.get(k)) is not None]
        return kvrpcpb_pb2.RawBatchGetResponse(pairs=pairs)

    def RawPut(self, request: kvrpcpb_pb2.RawPutRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.RawPutResponse:
        key = bytes(request.key)
        _, err = self._keys_region(request.context, [key], encoded=True)
        if err is not None:
            return kvrpcpb_pb2.RawPutResponse(region_error=err)
        self._raw.put([(key, bytes(request.value))])
        return kvrpcpb_pb2.RawPutResponse()

    def RawBatchPut(self, request: kvrpcpb_pb2.RawBatchPutRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.RawBatchPutResponse:
        pairs = [(bytes(p.key), bytes(p.value)) for p in request.pairs]
        _, err = self._keys_region(request.context, [k for k, _ in pairs], encoded=True)
        if err is not None:
            return kvrpcpb_pb2.RawBatchPutResponse(region_error=err)
        self._raw.put(pairs)
        return kvrpcpb_pb2.RawBatchPutResponse()

    def RawDelete(self, request: kvrpcpb_pb2.RawDeleteRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.RawDeleteResponse:
        key = bytes(request.key)
        _, err = self._keys_region(request.context, [key], encoded=True)
        if err is not None:
            return kvrpcpb_pb2.RawDeleteResponse(region_error=err)
        self._raw.delete([key])
        return kvrpcpb_pb2.RawDeleteResponse()

    def RawBatchDelete(self, request: kvrpcpb_pb2.RawBatchDeleteRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.RawBatchDeleteResponse:
        keys = [bytes(k) for k in request.keys]
        _, err = self._keys_region(request.context, keys, encoded=True)
        if err is not None:
            return kvrpcpb_pb2.RawBatchDeleteResponse(region_error=err)
        self._raw.delete(keys)
        return kvrpcpb_pb2.RawBatchDeleteResponse()

    def _raw_span(self, region: Any, lo: bytes, hi: bytes) -> tuple[bytes, bytes]:
        start, end = encode_region_key(region.start), encode_region_key(region.end)
        lo = max(lo, start)
        if end and (not hi or hi > end):
            hi = end
        return lo, hi

    def RawDeleteRange(self, request: kvrpcpb_pb2.RawDeleteRangeRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.RawDeleteRangeResponse:
        region, err = self._region(request.context)
        if err is not None:
            return kvrpcpb_pb2.RawDeleteRangeResponse(region_error=err)
        lo, hi = self._raw_span(region, bytes(request.start_key), bytes(request.end_key))
        if not hi or lo < hi:
            self._raw.delete_range(lo, hi)
        return kvrpcpb_pb2.RawDeleteRangeResponse()

    def RawScan(self, request: kvrpcpb_pb2.RawScanRequest, context: grpc.ServicerContext) -> kvrpcpb_pb2.RawScanResponse:
        region, err = self._region(request.context)
        if err is not None:
            return kvrpcpb_pb2.RawScanResponse(region_error=err)
        if request.reverse:  # start_key is the upper bound (exclusive), end_key the lower
            lo, hi = self._raw_span(region, bytes(request.end_key), bytes(request.start_key))
            pairs = self._raw.scan(hi, lo, request.limit, reverse=True)
        else:
            lo, hi = self._raw_span(region, bytes(request.start_key), bytes(request.end_key))
            pairs = self._raw.scan(lo, hi, request.limit, reverse=False)
        return kvrpcpb_pb2.RawScanResponse(kvs=[kvrpcpb_pb2.KvPair(key=k, value=b"" if request.key_only else v)
                                                for k, v in pairs])
