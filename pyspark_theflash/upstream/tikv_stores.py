"""The mini cluster's TiKV stores on the wire: ``tikvpb.Tikv`` and ``cdcpb.ChangeData``.

The mini cluster keeps one Percolator store in its process; on the wire it shows
``stores`` TiKV processes, each a gRPC server of its own on loopback. Every region has one
peer, on its leader store (``Topology``), and a store answers only for the regions it leads:
any other gets ``not_leader`` naming the leader, as TiKV does. A store server can be stopped
and started again on the same port (a TiKV restart); ``transfer_leader`` moves a region to
another store (its feed registrations end with ``not_leader``).

The transactional calls here are the ones a replica's reader makes (client-go's lock resolver
and read index): KvCheckTxnStatus, KvCheckSecondaryLocks, KvResolveLock, KvScanLock, ReadIndex;
those TiKV's own clients make for transactions and the raw API are in ``client_calls.py``.
Each checks the request's region context first: unknown region → ``region_not_found``, stale
epoch version → ``epoch_not_match`` with the region as it is, another leader → ``not_leader``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import grpc

from pyspark_theflash.grpc_health import services_of
from pyspark_theflash.ports import bind_grpc, grpc_server
from pyspark_theflash.proto import cdcpb_pb2, cdcpb_pb2_grpc, errorpb_pb2, kvrpcpb_pb2, tikvpb_pb2, tikvpb_pb2_grpc
from pyspark_theflash.txn.status import TxnFate
from pyspark_theflash.upstream.change_feed import ChangeDataServicer, ChangeFeed
from pyspark_theflash.upstream.client_calls import ClientCalls, lock_info
from pyspark_theflash.upstream_client.errors import RegionNotFoundError, UpstreamError
from pyspark_theflash.upstream.topology import Topology
from pyspark_theflash.upstream_client.txn_actions import KVRPC_OF_ACTION

if TYPE_CHECKING:
    from pyspark_theflash.upstream.percolator import PercolatorStore


class ClusterOfStores(Protocol):
    """What the store servers need of the mini cluster that lays them out (``cluster.MiniCluster``):
    its Percolator store, and its cluster id for the change feed they serve."""

    @property
    def cluster_id(self) -> int: ...

    @property
    def store(self) -> PercolatorStore: ...

    def served_topology(self) -> Topology: ...


class TikvServicer(ClientCalls, tikvpb_pb2_grpc.TikvServicer):
    """``tikvpb.Tikv`` of one store: the lock and read-index calls here, a TiKV client's
    transactional and raw calls in ``client_calls.ClientCalls``."""

    server: StoreServer  # (ClientCalls needs less of it)

    def __init__(self, cluster: ClusterOfStores, server: "StoreServer") -> None:
        self.cluster = cluster
        self.server = server

    def _region(self, ctx: kvrpcpb_pb2.Context) -> tuple[Any, errorpb_pb2.Error | None]:
        store = self.cluster.store
        with store.mu:
            try:
                region = store.regions.get(int(ctx.region_id))
            except (RegionNotFoundError, KeyError, UpstreamError):
                return None, errorpb_pb2.Error(message=f"region {ctx.region_id} not found",
                                               region_not_found=errorpb_pb2.RegionNotFound(region_id=ctx.region_id))
            topology = self.server.topology
            leader = topology.leader_store(region.id)
            if leader != self.server.store_id:
                return None, errorpb_pb2.Error(message=f"peer is not leader for region {region.id}",
                                               not_leader=errorpb_pb2.NotLeader(region_id=region.id,
                                                                                leader=topology.peer(region.id, leader)))
            if ctx.HasField("region_epoch") and ctx.region_epoch.version != region.version:
                return None, errorpb_pb2.Error(message=f"epoch not match for region {region.id}",
                                               epoch_not_match=errorpb_pb2.EpochNotMatch(
                                                   current_regions=[topology.meta_region(region)]))
            return region, None

    def KvCheckTxnStatus(self, request: kvrpcpb_pb2.CheckTxnStatusRequest,
                         context: grpc.ServicerContext) -> kvrpcpb_pb2.CheckTxnStatusResponse:
        _, err = self._region(request.context)
        if err is not None:
            return kvrpcpb_pb2.CheckTxnStatusResponse(region_error=err)
        with self.cluster.store.mu:
            pessimistic = self.pessimistic_status(request)
        if pessimistic is not None:
            return pessimistic
        try:
            s = self.cluster.store.check_txn_status(
                bytes(request.primary_key), request.lock_ts, request.caller_start_ts, request.current_ts,
                rollback_if_not_exist=request.rollback_if_not_exist, force_sync_commit=request.force_sync_commit)
        except UpstreamError as exc:
            return kvrpcpb_pb2.CheckTxnStatusResponse(error=kvrpcpb_pb2.KeyError(
                txn_not_found=kvrpcpb_pb2.TxnNotFound(start_ts=request.lock_ts, primary_key=request.primary_key),
                abort=str(exc)))
        resp = kvrpcpb_pb2.CheckTxnStatusResponse(action=KVRPC_OF_ACTION.get(s.action, kvrpcpb_pb2.NoAction))
        if s.fate is TxnFate.COMMITTED:
            resp.commit_version = s.commit_ts
        elif s.fate is TxnFate.LOCKED:
            resp.lock_ttl = max(1, s.ttl_ms)
            if s.lock is not None:
                resp.lock_info.CopyFrom(lock_info(s.lock))
        return resp

    def KvCheckSecondaryLocks(self, request: kvrpcpb_pb2.CheckSecondaryLocksRequest,
                              context: grpc.ServicerContext) -> kvrpcpb_pb2.CheckSecondaryLocksResponse:
        _, err = self._region(request.context)
        if err is not None:
            return kvrpcpb_pb2.CheckSecondaryLocksResponse(region_error=err)
        s = self.cluster.store.check_secondary_locks([bytes(k) for k in request.keys], request.start_version)
        return kvrpcpb_pb2.CheckSecondaryLocksResponse(locks=[lock_info(lk) for lk in s.locks], commit_ts=s.commit_ts)

    def KvResolveLock(self, request: kvrpcpb_pb2.ResolveLockRequest,
                      context: grpc.ServicerContext) -> kvrpcpb_pb2.ResolveLockResponse:
        region, err = self._region(request.context)
        if err is not None:
            return kvrpcpb_pb2.ResolveLockResponse(region_error=err)
        store = self.cluster.store
        txns = [(t.txn, t.status) for t in request.txn_infos] or [(request.start_version, request.commit_version)]
        for start_ts, commit_ts in txns:
            keys = [bytes(k) for k in request.keys] or [
                lk.key for lk in store.locks(region.start, region.end) if lk.start_ts == start_ts]
            if not commit_ts:
                with store.mu:
                    self._pessimistic.release_txn(start_ts, [bytes(k) for k in request.keys] or None)
            if keys:
                store.resolve_lock(start_ts, commit_ts, keys)
        return kvrpcpb_pb2.ResolveLockResponse()

    def KvScanLock(self, request: kvrpcpb_pb2.ScanLockRequest,
                   context: grpc.ServicerContext) -> kvrpcpb_pb2.ScanLockResponse:
        region, err = self._region(request.context)
        if err is not None:
            return kvrpcpb_pb2.ScanLockResponse(region_error=err)
        start = max(bytes(request.start_key), region.start)
        end = bytes(request.end_key)
        if region.end and (not end or end > region.end):
            end = region.end
        locks = [lk for lk in self.cluster.store.locks(start, end) if lk.start_ts <= request.max_version]
        if request.limit:
            locks = locks[:request.limit]
        return kvrpcpb_pb2.ScanLockResponse(locks=[lock_info(lk) for lk in locks])

    def ReadIndex(self, request: kvrpcpb_pb2.ReadIndexRequest,
                  context: grpc.ServicerContext) -> kvrpcpb_pb2.ReadIndexResponse:
        region, err = self._region(request.context)
        if err is not None:
            return kvrpcpb_pb2.ReadIndexResponse(region_error=err)
        return kvrpcpb_pb2.ReadIndexResponse(read_index=self.cluster.store.read_index(region.id, request.start_ts))


class StoreServer:
    """One TiKV store on the wire: a gRPC server with Tikv and ChangeData on ``host:port``."""

    def __init__(self, cluster: ClusterOfStores, feed: ChangeFeed, topology: Topology, store_id: int,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.cluster, self.feed, self.topology, self.store_id = cluster, feed, topology, store_id
        self.host = host
        self.port = port
        self._server: grpc.Server | None = None
        self.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """Start serving (again, on the same port after ``stop``)."""
        server = grpc_server(16, f"tikv-{self.store_id}", services_of(tikvpb_pb2, cdcpb_pb2),
                             [("grpc.max_send_message_length", 64 << 20)])
        tikvpb_pb2_grpc.add_TikvServicer_to_server(TikvServicer(self.cluster, self), server)
        cdcpb_pb2_grpc.add_ChangeDataServicer_to_server(ChangeDataServicer(self.feed, self), server)
        port = bind_grpc(server, f"TiKV store {self.store_id}", self.host, self.port)
        self.port = port
        self.topology.addresses[self.store_id] = self.address
        server.start()
        self._server = server

    def stop(self) -> None:
        """Stop serving: open change-data streams end, as when a TiKV goes down."""
        if self._server is None:
            return
        self.feed.end_all(self.store_id, "store stopped")
        self._server.stop(grace=0).wait()
        self._server = None

    close = stop


__all__ = ["StoreServer", "Topology", "TikvServicer", "cdcpb_pb2"]
