"""The Upstream gRPC service (protos/upstream.proto) in front of a MiniCluster."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterable, Iterator, NoReturn, Protocol

import grpc

from pyspark_theflash.grpc_health import services_of
from pyspark_theflash.ports import bind_grpc, grpc_server
from pyspark_theflash.proto import binlog_pb2, upstream_pb2, upstream_pb2_grpc
from pyspark_theflash.upstream_client.client import lock_to_proto, status_to_proto
from pyspark_theflash.upstream_client.errors import RegionNotFoundError, SchemaError, UpstreamError

if TYPE_CHECKING:
    from pyspark_theflash.schema.info_json import TableInfoJson
    from pyspark_theflash.txn.status import SecondaryLocks
    from pyspark_theflash.upstream.percolator import PercolatorStore
    from pyspark_theflash.upstream.tso import TimestampOracle

SCAN_CHUNK_ROWS = 4096  # rows per ScanTable response (gRPC messages stay far below 4 MiB for TiDB-sized rows)
CLUSTER_ID = 0x7468_6566_6C61_7368  # "theflash": one fixed id, the mini cluster is one cluster


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    """``context.abort``: it ends the call by raising (grpc ships no types that say so)."""
    context.abort(code, details)
    raise AssertionError("grpc's ServicerContext.abort returned")


class ServedCluster(Protocol):
    """What the Upstream service answers from: the mini cluster (``cluster.MiniCluster``)."""

    @property
    def tso(self) -> TimestampOracle: ...

    @property
    def store(self) -> PercolatorStore: ...

    @property
    def status_address(self) -> str: ...

    @property
    def binlog_address(self) -> str: ...

    def regions(self) -> list[binlog_pb2.Region]: ...

    def read_index(self, region_id: int, read_ts: int = 0) -> int: ...

    def check_secondary_locks(self, keys: Iterable[bytes], start_ts: int) -> SecondaryLocks: ...

    def resolve_lock(self, start_ts: int, commit_ts: int, keys: Iterable[bytes] | None = None) -> int: ...

    def gc_safe_point(self) -> int: ...

    def update_gc_safe_point(self, ts: int) -> int: ...

    def region_snapshot(self, region_id: int) -> binlog_pb2.Event: ...

    def scan_records(self, qualified: str, ts: int | None = None
                     ) -> tuple[int, TableInfoJson, list[tuple[bytes, bytes]]]: ...


class UpstreamServicer(upstream_pb2_grpc.UpstreamServicer):
    def __init__(self, cluster: ServedCluster) -> None:
        self.cluster = cluster

    def GetTS(self, request: upstream_pb2.GetTSRequest, context: grpc.ServicerContext) -> upstream_pb2.GetTSResponse:
        return upstream_pb2.GetTSResponse(ts=self.cluster.tso.get_ts(max(1, request.count)))

    def GetRegions(self, request: upstream_pb2.GetRegionsRequest, context: grpc.ServicerContext) -> upstream_pb2.GetRegionsResponse:
        return upstream_pb2.GetRegionsResponse(regions=self.cluster.regions())

    def ReadIndex(self, request: upstream_pb2.ReadIndexRequest, context: grpc.ServicerContext) -> upstream_pb2.ReadIndexResponse:
        try:
            return upstream_pb2.ReadIndexResponse(index=self.cluster.read_index(request.region_id, request.start_ts))
        except RegionNotFoundError as err:
            return upstream_pb2.ReadIndexResponse(error=str(err))

    def CheckTxnStatus(self, request: upstream_pb2.CheckTxnStatusRequest, context: grpc.ServicerContext) -> upstream_pb2.CheckTxnStatusResponse:
        try:
            s = self.cluster.store.check_txn_status(
                request.primary_key, request.lock_ts, request.caller_start_ts, request.current_ts,
                rollback_if_not_exist=request.rollback_if_not_exist, force_sync_commit=request.force_sync_commit,
            )
        except UpstreamError as err:
            _abort(context, grpc.StatusCode.NOT_FOUND, str(err))
        return status_to_proto(s)

    def CheckSecondaryLocks(self, request: upstream_pb2.CheckSecondaryLocksRequest,
                            context: grpc.ServicerContext) -> upstream_pb2.CheckSecondaryLocksResponse:
        try:
            s = self.cluster.check_secondary_locks(list(request.keys), request.start_version)
        except UpstreamError as err:
            return upstream_pb2.CheckSecondaryLocksResponse(error=str(err))
        return upstream_pb2.CheckSecondaryLocksResponse(locks=[lock_to_proto(lk) for lk in s.locks], commit_ts=s.commit_ts)

    def ResolveLock(self, request: upstream_pb2.ResolveLockRequest, context: grpc.ServicerContext) -> upstream_pb2.ResolveLockResponse:
        try:
            n = self.cluster.resolve_lock(request.start_ts, request.commit_ts, list(request.keys) or None)
        except UpstreamError as err:
            return upstream_pb2.ResolveLockResponse(error=str(err))
        return upstream_pb2.ResolveLockResponse(resolved=n)

    def GetGCSafePoint(self, request: upstream_pb2.GCSafePointRequest, context: grpc.ServicerContext) -> upstream_pb2.GCSafePointResponse:
        return upstream_pb2.GCSafePointResponse(safe_point=self.cluster.gc_safe_point())

    def UpdateGCSafePoint(self, request: upstream_pb2.UpdateGCSafePointRequest, context: grpc.ServicerContext) -> upstream_pb2.GCSafePointResponse:
        return upstream_pb2.GCSafePointResponse(safe_point=self.cluster.update_gc_safe_point(request.safe_point))

    def GetRegionSnapshot(self, request: upstream_pb2.RegionSnapshotRequest, context: grpc.ServicerContext) -> binlog_pb2.Event:
        try:
            event: binlog_pb2.Event = self.cluster.region_snapshot(request.region_id)
            return event
        except RegionNotFoundError as err:
            _abort(context, grpc.StatusCode.NOT_FOUND, str(err))

    def ScanTable(self, request: upstream_pb2.ScanTableRequest, context: grpc.ServicerContext) -> Iterator[upstream_pb2.ScanTableResponse]:
        try:
            ts, info, pairs = self.cluster.scan_records(f"{request.db}.{request.table}", request.ts or None)
        except SchemaError as err:
            _abort(context, grpc.StatusCode.NOT_FOUND, str(err))
        except UpstreamError as err:  # e.g. ts below the GC safe point
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(err))
        yield upstream_pb2.ScanTableResponse(table_info=json.dumps(info).encode(), db=request.db, ts=ts)
        for at in range(0, len(pairs), SCAN_CHUNK_ROWS):
            chunk = pairs[at:at + SCAN_CHUNK_ROWS]
            yield upstream_pb2.ScanTableResponse(keys=[k for k, _ in chunk], values=[v for _, v in chunk])

    def GetClusterInfo(self, request: upstream_pb2.ClusterInfoRequest, context: grpc.ServicerContext) -> upstream_pb2.ClusterInfoResponse:
        return upstream_pb2.ClusterInfoResponse(
            status_address=self.cluster.status_address, binlog_address=self.cluster.binlog_address,
            cluster_id=CLUSTER_ID,
        )


class UpstreamServer:
    """A running Upstream gRPC server; ``address`` is host:port."""

    def __init__(self, server: grpc.Server, address: str) -> None:
        self._server = server
        self.address = address

    def close(self, grace_s: float = 1.0) -> None:
        self._server.stop(grace_s).wait()


def serve_upstream(cluster: ServedCluster, host: str = "127.0.0.1", port: int = 0, workers: int = 8) -> UpstreamServer:
    """Serve ``cluster`` over gRPC on host:port (0 = a port chosen by the OS)."""
    server = grpc_server(workers, "upstream-grpc", services_of(upstream_pb2))
    upstream_pb2_grpc.add_UpstreamServicer_to_server(UpstreamServicer(cluster), server)
    bound = bind_grpc(server, "the Upstream service", host, port)
    server.start()
    return UpstreamServer(server, f"{host}:{bound}")
