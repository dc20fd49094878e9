"""``upstream.connect("pd://HOST:PORT[,...]")``: a reader's client of a real TiDB cluster.

What a replica's reader needs, over the protocols a TiDB cluster speaks:

- timestamps from PD's ``Tso`` stream, concurrent asks batched into one request as client-go's
  TSO dispatcher batches them (``TsoBatcher``);
- regions from PD (``ScanRegions``), each call to a region's leader store;
- TiKV's lock calls, as client-go's lock resolver makes them (txnkv/txnlock/lock_resolver.go):
  ``KvCheckTxnStatus`` on the primary's region with the caller's start ts and ``current_ts``,
  ``KvCheckSecondaryLocks`` per region of the keys, ``KvResolveLock`` per region of the keys;
  a region error (``not_leader``, ``epoch_not_match``, ``region_not_found``) makes it look the
  key's region up in PD again and retry;
- ``ReadIndex`` per region (with the read ts as ``start_ts``);
- the GC safe point (``GetGCSafePoint``) and a service safe point for read leases
  (``UpdateServiceGCSafePoint``).

A replica fed by TiKV's change-data feed has no raft index to compare a read index with:
``resolved_ts_reads`` tells the planner to wait for each region's resolved ts instead
(``scan/learner.py``). Table infos are not PD's: a pd:// reader takes them from the store.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterable, NoReturn, Protocol, Sequence, TypeVar

import grpc

from pyspark_theflash.codec import encode_region_key
from pyspark_theflash.proto import binlog_pb2, errorpb_pb2, kvrpcpb_pb2, metapb_pb2, pdpb_pb2, pdpb_pb2_grpc, tikvpb_pb2_grpc
from pyspark_theflash.txn.status import LockInfo, SecondaryLocks, TxnAction, TxnStatus
from pyspark_theflash.upstream_client.errors import PDError, SchemaError, TiKVError, UpstreamError
from pyspark_theflash.upstream_client.pd_client import PDClient, RegionInfo, parse_pd_addresses
from pyspark_theflash.upstream_client.channels import upstream_channel
from pyspark_theflash.upstream_client.txn_actions import ACTION_OF_KVRPC

_LOGICAL_BITS = 18
_OP_OF_LOCK_TYPE = {kvrpcpb_pb2.Put: binlog_pb2.PUT, kvrpcpb_pb2.Del: binlog_pb2.DELETE, kvrpcpb_pb2.Lock: binlog_pb2.LOCK}
REGION_RETRIES = 20


class _KvResponse(Protocol):
    """What ``_call_key`` reads of a TiKV response: its region error and its key error."""

    def HasField(self, field_name: str) -> bool: ...  # noqa: N802 (protobuf's name)

    @property
    def region_error(self) -> errorpb_pb2.Error: ...

    @property
    def error(self) -> kvrpcpb_pb2.KeyError: ...


_Response = TypeVar("_Response", bound=_KvResponse)


class TsoBatcher:
    """One ``Tso`` stream; asks waiting at once go out as one request for ``count`` timestamps,
    as client-go's tsoDispatcher sends them, and each gets its own of the consecutive range."""

    def __init__(self, pd: PDClient) -> None:
        self.pd = pd
        self._waiting: queue.Queue[tuple[int, queue.Queue[int | Exception]]] = queue.Queue()
        self._thread = threading.Thread(target=self._dispatch, name="tso-batcher", daemon=True)
        self._closed = False
        self._thread.start()

    def get_ts(self, count: int = 1, timeout_s: float = 30.0) -> int:
        reply: queue.Queue[int | Exception] = queue.Queue(1)
        self._waiting.put((count, reply))
        try:
            result = reply.get(timeout=timeout_s)
        except queue.Empty:
            raise PDError(f"PD {self.pd.leader} gave no timestamp within {timeout_s:g}s") from None
        if isinstance(result, Exception):
            raise result
        return int(result)

    def _dispatch(self) -> None:
        while not self._closed:
            try:
                first = self._waiting.get(timeout=0.5)
            except queue.Empty:
                continue
            batch = [first]
            while True:
                try:
                    batch.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            total = sum(n for n, _ in batch)
            try:
                last = self.pd.get_ts(total)
            except Exception as exc:  # every waiter hears it
                for _, reply in batch:
                    reply.put(exc)
                continue
            first_ts = last - total + 1
            for n, reply in batch:
                first_ts += n
                reply.put(first_ts - 1)  # the last of its n

    def close(self) -> None:
        self._closed = True


class TiDBClusterClient:
    """``UpstreamClient`` of a TiDB cluster reached through PD (``pd://``)."""

    resolved_ts_reads = True  # learner reads wait on resolved ts: a feed has no raft index

    def __init__(self, address: str, timeout_s: float = 30.0) -> None:
        self.address = address
        # lazy: a reader of a replica whose upstream is gone still plans reads the store alone
        # can serve; the first call that needs PD finds out within connect_timeout_s
        self.pd = PDClient(parse_pd_addresses(address), timeout_s=timeout_s, lazy=True, connect_timeout_s=3.0)
        self.timeout_s = timeout_s
        self.tso = TsoBatcher(self.pd)
        self._mu = threading.Lock()
        self._stubs: dict[str, tuple[grpc.Channel, tikvpb_pb2_grpc.TikvStub]] = {}
        self._stores: dict[int, str] = {}

    @property
    def cluster_id(self) -> int:
        return self.pd.cluster

    # ------------------------------------------------------------------ PD

    def get_ts(self) -> int:
        return self.tso.get_ts()

    def regions(self) -> list[binlog_pb2.Region]:
        return [binlog_pb2.Region(id=r.id, start_key=r.start, end_key=r.end,
                                  epoch=binlog_pb2.RegionEpoch(version=r.version, conf_version=r.conf_ver))
                for r in self.pd.scan_regions(b"", b"")]

    def gc_safe_point(self) -> int:
        return self.pd.gc_safe_point()

    def update_gc_safe_point(self, ts: int) -> int:
        raise UpstreamError("a replica never moves a TiDB cluster's GC safe point; TiDB's GC worker does "
                            "(hold one with update_service_safe_point)")

    def update_service_safe_point(self, service_id: str, ttl_s: int, safe_point: int) -> int:
        return self.pd.update_service_safe_point(service_id, ttl_s, safe_point)

    # ------------------------------------------------------------------ TiKV

    def _stub(self, store_id: int, refresh: bool = False) -> tikvpb_pb2_grpc.TikvStub:
        with self._mu:
            address = None if refresh else self._stores.get(store_id)
        if address is None:
            address = self.pd.store_address(store_id)
        with self._mu:
            self._stores[store_id] = address
            entry = self._stubs.get(address)
            if entry is None:
                channel = upstream_channel(address)
                entry = (channel, tikvpb_pb2_grpc.TikvStub(channel))
                self._stubs[address] = entry
            return entry[1]

    def _region_of(self, raw_key: bytes) -> RegionInfo:
        resp = self.pd._call(lambda s: s.GetRegion(pdpb_pb2.GetRegionRequest(
            header=self.pd.header(), region_key=bytes(encode_region_key(raw_key)) if raw_key else b""), timeout=10))
        if not resp.region.id:
            raise PDError(f"PD {self.pd.leader} knows no region holding key {raw_key.hex()}")
        return RegionInfo.of(resp.region, resp.leader)

    def _by_region(self, keys: Iterable[bytes]) -> list[tuple[RegionInfo, list[bytes]]]:
        groups: dict[int, tuple[RegionInfo, list[bytes]]] = {}
        for key in sorted(set(keys)):
            for region, ks in groups.values():
                if key >= _raw(region.start) and (not region.end or key < _raw(region.end)):
                    ks.append(key)
                    break
            else:
                region = self._region_of(key)
                groups[region.id] = (region, [key])
        return list(groups.values())

    def _context(self, region: RegionInfo) -> kvrpcpb_pb2.Context:
        return kvrpcpb_pb2.Context(
            region_id=region.id, region_epoch=metapb_pb2.RegionEpoch(conf_ver=region.conf_ver, version=region.version),
            peer=metapb_pb2.Peer(store_id=region.leader_store), cluster_id=self.pd.cluster_id,
            request_source="theflash")

    def _call_key(self, key: bytes, call: Callable[[tikvpb_pb2_grpc.TikvStub, kvrpcpb_pb2.Context], _Response],
                  what: str) -> _Response:
        """``call`` on the region holding ``key``, following region errors back to PD."""
        last = ""
        for attempt in range(REGION_RETRIES):
            region = self._region_of(key)
            try:
                resp = call(self._stub(region.leader_store, refresh=attempt > 0), self._context(region))
            except grpc.RpcError as exc:
                last = f"store {region.leader_store}: {exc.code().name} {exc.details()}"
                time.sleep(min(1.0, 0.05 * 2 ** attempt))
                continue
            if resp.HasField("region_error"):
                last = f"region {region.id}: {resp.region_error.message or resp.region_error}"
                if resp.region_error.HasField("server_is_busy"):
                    time.sleep(min(1.0, 0.05 * 2 ** attempt))
                continue
            if resp.HasField("error"):
                err = resp.error
                if err.HasField("txn_not_found"):
                    return resp
                raise TiKVError(f"{what} of key {key.hex()}: {err.abort or err.retryable or err}")
            return resp
        raise TiKVError(f"{what} of key {key.hex()} failed {REGION_RETRIES} times; last: {last}")

    def check_txn_status(self, primary: bytes, lock_ts: int, caller_start_ts: int, current_ts: int,
                         force_sync_commit: bool = False) -> TxnStatus:
        resp = self._call_key(primary, lambda stub, ctx: stub.KvCheckTxnStatus(kvrpcpb_pb2.CheckTxnStatusRequest(
            context=ctx, primary_key=primary, lock_ts=lock_ts, caller_start_ts=caller_start_ts, current_ts=current_ts,
            rollback_if_not_exist=True, force_sync_commit=force_sync_commit, verify_is_primary=True),
            timeout=self.timeout_s), "KvCheckTxnStatus")
        # kvrpcpb's three fates: locked (lock_ttl > 0), committed (commit_version > 0), rolled back (neither)
        action = ACTION_OF_KVRPC.get(resp.action, TxnAction.NO_ACTION)
        if resp.HasField("error") and resp.error.HasField("txn_not_found"):
            return TxnStatus.rolled_back(TxnAction.LOCK_NOT_EXIST_ROLLBACK)
        if resp.lock_ttl:
            return TxnStatus.locked(int(resp.lock_ttl), _lock(resp.lock_info) if resp.HasField("lock_info") else None,
                                    action)
        if resp.commit_version:
            return TxnStatus.committed(int(resp.commit_version), action)
        return TxnStatus.rolled_back(action)

    def check_secondary_locks(self, keys: Iterable[bytes], start_ts: int) -> SecondaryLocks:
        locks: list[LockInfo] = []
        commit_ts = 0
        for region, ks in self._by_region(keys):
            resp = self._call_key(ks[0], lambda stub, ctx: stub.KvCheckSecondaryLocks(  # (called here, with this ks)
                kvrpcpb_pb2.CheckSecondaryLocksRequest(context=ctx, keys=ks, start_version=start_ts),
                timeout=self.timeout_s), "KvCheckSecondaryLocks")
            locks.extend(_lock(lk) for lk in resp.locks)
            commit_ts = commit_ts or int(resp.commit_ts)
        return SecondaryLocks(() if commit_ts else tuple(locks), commit_ts)

    def resolve_lock(self, start_ts: int, commit_ts: int, keys: Iterable[bytes] | None = None) -> int:
        """Commit (``commit_ts``) or roll back (0) the transaction's locks on ``keys``, region by
        region. A TiDB cluster is never asked to resolve a whole transaction blindly: without
        keys there is nothing to do (the caller names the keys it met)."""
        n = 0
        for region, ks in self._by_region(keys or ()):
            self._call_key(ks[0], lambda stub, ctx: stub.KvResolveLock(kvrpcpb_pb2.ResolveLockRequest(  # (called here)
                context=ctx, start_version=start_ts, commit_version=commit_ts, keys=ks), timeout=self.timeout_s),
                "KvResolveLock")
            n += len(ks)
        return n

    def scan_locks(self, start_key: bytes, end_key: bytes, max_ts: int) -> list[LockInfo]:
        """Locks with start ts <= ``max_ts`` in [start_key, end_key) (raw keys), region by region
        (``KvScanLock``): how a lock whose primary the feed did not give is found."""
        out: list[LockInfo] = []
        key = start_key
        while True:
            region = self._region_of(key)
            end = _raw(region.end)
            resp = self._call_key(key, lambda stub, ctx: stub.KvScanLock(kvrpcpb_pb2.ScanLockRequest(
                context=ctx, max_version=max_ts, start_key=key, end_key=end_key if not end or (end_key and end_key < end)
                else end), timeout=self.timeout_s), "KvScanLock")
            out.extend(_lock(lk) for lk in resp.locks)
            if not end or (end_key and end >= end_key):
                return out
            key = end

    def read_index(self, region_id: int, read_ts: int = 0) -> int:
        resp = self.pd._call(lambda s: s.GetRegionByID(pdpb_pb2.GetRegionByIDRequest(
            header=self.pd.header(), region_id=region_id), timeout=10))
        if not resp.region.id:
            from pyspark_theflash.upstream_client.errors import RegionNotFoundError

            raise RegionNotFoundError(region_id)
        region = RegionInfo.of(resp.region, resp.leader)
        key = _raw(region.start)
        got = self._call_key(key, lambda stub, ctx: stub.ReadIndex(kvrpcpb_pb2.ReadIndexRequest(
            context=ctx, start_ts=read_ts), timeout=self.timeout_s), "ReadIndex")
        return int(got.read_index)

    def read_indexes(self, region_ids: Sequence[int], read_ts: int = 0) -> dict[int, int]:
        return {rid: self.read_index(rid, read_ts) for rid in region_ids}

    # ------------------------------------------------------------------ not PD's

    def _no_schema(self, *args: object) -> NoReturn:
        raise SchemaError(f"{self.address} reaches PD and TiKV only: table infos come from TiDB's status port "
                          "(--schema-url http://HOST:STATUS_PORT) or the store")

    table_info = table_info_by_id = list_tables = scan_table = read_table = _no_schema

    def region_snapshot(self, region_id: int) -> binlog_pb2.Event:
        raise UpstreamError("a TiDB cluster gives region contents through the change-data feed (theflash capture)")

    def close(self) -> None:
        self.tso.close()
        with self._mu:
            for channel, _ in self._stubs.values():
                channel.close()
            self._stubs.clear()
        self.pd.close()


def _raw(encoded: bytes) -> bytes:
    from pyspark_theflash.codec.keys import decode_region_key

    return decode_region_key(encoded) if encoded else b""


def _lock(p: kvrpcpb_pb2.LockInfo) -> LockInfo:
    return LockInfo(bytes(p.key), bytes(p.primary_lock), int(p.lock_version), int(p.lock_ttl), int(p.txn_size),
                    _OP_OF_LOCK_TYPE.get(p.lock_type, binlog_pb2.PUT), bool(p.use_async_commit), int(p.min_commit_ts),
                    tuple(bytes(k) for k in p.secondaries))


__all__ = ["TiDBClusterClient", "TsoBatcher", "pdpb_pb2_grpc"]
