"""The mini cluster's PD on the wire: ``pdpb.PD`` as PD serves it.

Members (one PD, its own leader), the TSO stream, the stores of ``tikv_stores.Topology``,
region lookups and scans in PD's encoded key form, and the GC safe points: the cluster's
(``GetGCSafePoint``; ``UpdateGCSafePoint`` runs the GC worker at it) and the services'
(``UpdateServiceGCSafePoint``, ``ServiceSafePoints``): the mini cluster's GC never collects at
or above the least of them, as TiDB's GC worker honours PD's.

Every request but GetMembers must carry the cluster id: another id is refused with
FAILED_PRECONDITION, as PD refuses it.
"""
from __future__ import annotations

import bisect

import threading
import time
from typing import TYPE_CHECKING, Iterator, Protocol

import grpc

from pyspark_theflash.grpc_health import services_of
from pyspark_theflash.ports import bind_grpc, grpc_server
from pyspark_theflash.upstream.pd import GCSafePoint, Region, encode_region_key
from pyspark_theflash.proto import pdpb_pb2, pdpb_pb2_grpc
from pyspark_theflash.upstream_client.errors import UpstreamError

if TYPE_CHECKING:
    from pyspark_theflash.upstream.percolator import PercolatorStore
    from pyspark_theflash.upstream.topology import Topology
    from pyspark_theflash.upstream.tso import TimestampOracle

GC_WORKER_SERVICE = b"gc_worker"  # TiDB's GC worker's own entry: it never expires
_LOGICAL_BITS = 18


class ServiceSafePoints:
    """PD's service GC safe points (pd/pkg/gc/safepoint.go): per service a safe point and an
    expiry. The least live one bounds GC. An update below that least is not applied (no
    error: the caller compares with the returned minimum); TTL <= 0 removes the service's."""

    def __init__(self, gc_safe_point: GCSafePoint) -> None:
        self._mu = threading.Lock()
        self._points: dict[bytes, tuple[int, float]] = {}
        self._gc = gc_safe_point  # the cluster's GCSafePoint: gc_worker's entry follows it

    def _live(self, now: float) -> dict[bytes, tuple[int, float]]:
        self._points = {s: v for s, v in self._points.items() if v[1] > now}
        points = dict(self._points)
        points[GC_WORKER_SERVICE] = (self._gc.value, float("inf"))
        return points

    def live(self) -> dict[bytes, tuple[int, float]]:
        """Every live service safe point (the GC worker's included): service -> (safe point,
        expiry as a time.time())."""
        with self._mu:
            return self._live(time.time())

    def minimum(self) -> tuple[bytes, int, float]:
        """(service id, safe point, seconds left) of the least live service safe point."""
        with self._mu:
            now = time.time()
            service, (point, expires) = min(self._live(now).items(), key=lambda kv: (kv[1][0], kv[0]))
            return service, point, expires - now

    def ceiling(self) -> int:
        """The least live safe point of the services other than the GC worker: where its next
        run must stop (MAX when there is none)."""
        with self._mu:
            points = [p for s, (p, _) in self._live(time.time()).items() if s != GC_WORKER_SERVICE]
        return min(points, default=(1 << 64) - 1)

    def of(self, service: bytes) -> int | None:
        """The live safe point of ``service``, None when it has none."""
        with self._mu:
            entry = self._live(time.time()).get(service)
        return None if entry is None else entry[0]

    def update(self, service: bytes, ttl_s: int, safe_point: int) -> tuple[bytes, int, float]:
        if service == GC_WORKER_SERVICE:
            raise UpstreamError("the service id gc_worker is TiDB's GC worker's own")
        with self._mu:
            now = time.time()
            if ttl_s <= 0:
                self._points.pop(service, None)
            else:
                least = min(p for p, _ in self._live(now).values())
                if safe_point >= least:
                    self._points[service] = (safe_point, now + ttl_s)
        return self.minimum()



class ClusterOfPD(Protocol):
    """What PD answers from: the mini cluster (``cluster.MiniCluster``)."""

    @property
    def cluster_id(self) -> int: ...

    @property
    def tso(self) -> TimestampOracle: ...

    @property
    def store(self) -> PercolatorStore: ...

    @property
    def gc(self) -> GCSafePoint: ...

    @property
    def service_safe_points(self) -> ServiceSafePoints: ...

    def served_topology(self) -> Topology: ...

    def update_gc_safe_point(self, ts: int) -> int: ...

class PDMembers:
    """The PD members of a mini cluster and which one leads. Only the leader serves; a
    follower answers GetMembers (naming the leader) and refuses the rest with UNAVAILABLE,
    so a client follows a leader change as it does with a real PD."""

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.leader = 0

    def member(self, i: int) -> pdpb_pb2.Member:
        address = self.addresses[i]
        return pdpb_pb2.Member(name=f"pd-{i}", member_id=i + 1, client_urls=[f"http://{address}"],
                               peer_urls=[f"http://{address}"], binary_version="8.5.0")

    def transfer_leader(self, to: int | None = None) -> int:
        self.leader = (self.leader + 1) % len(self.addresses) if to is None else to
        return self.leader


class _PdRequest(Protocol):
    """What every PD request carries: its header (the cluster id the caller expects)."""

    @property
    def header(self) -> pdpb_pb2.RequestHeader: ...


class PDServicer(pdpb_pb2_grpc.PDServicer):
    def __init__(self, cluster: ClusterOfPD, members: PDMembers, index: int) -> None:
        self.cluster = cluster
        self.members = members
        self.index = index

    def _header(self) -> pdpb_pb2.ResponseHeader:
        return pdpb_pb2.ResponseHeader(cluster_id=self.cluster.cluster_id)

    def _check(self, request: _PdRequest, context: grpc.ServicerContext) -> None:
        if self.members.leader != self.index:
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f"not leader; the leader is {self.members.addresses[self.members.leader]}")
        got = request.header.cluster_id
        if got != self.cluster.cluster_id:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"mismatch cluster id, need {self.cluster.cluster_id} but got {got}")

    def GetMembers(self, request: pdpb_pb2.GetMembersRequest, context: grpc.ServicerContext) -> pdpb_pb2.GetMembersResponse:
        m = self.members
        leader = m.member(m.leader)
        return pdpb_pb2.GetMembersResponse(header=self._header(), members=[m.member(i) for i in range(len(m.addresses))],
                                           leader=leader, etcd_leader=leader)

    def Tso(self, request_iterator: Iterator[pdpb_pb2.TsoRequest], context: grpc.ServicerContext) -> Iterator[pdpb_pb2.TsoResponse]:
        for request in request_iterator:
            self._check(request, context)
            count = max(1, request.count)
            ts = self.cluster.tso.get_ts(count)
            yield pdpb_pb2.TsoResponse(header=self._header(), count=count, timestamp=pdpb_pb2.Timestamp(
                physical=ts >> _LOGICAL_BITS, logical=ts & ((1 << _LOGICAL_BITS) - 1)))

    def GetStore(self, request: pdpb_pb2.GetStoreRequest, context: grpc.ServicerContext) -> pdpb_pb2.GetStoreResponse:
        self._check(request, context)
        topology = self.cluster.served_topology()
        if request.store_id not in topology.store_ids:
            return pdpb_pb2.GetStoreResponse(header=pdpb_pb2.ResponseHeader(
                cluster_id=self.cluster.cluster_id,
                error=pdpb_pb2.Error(type=pdpb_pb2.UNKNOWN, message=f"invalid store ID {request.store_id}, not found")))
        return pdpb_pb2.GetStoreResponse(header=self._header(), store=topology.meta_store(request.store_id))

    def GetAllStores(self, request: pdpb_pb2.GetAllStoresRequest, context: grpc.ServicerContext) -> pdpb_pb2.GetAllStoresResponse:
        self._check(request, context)
        topology = self.cluster.served_topology()
        return pdpb_pb2.GetAllStoresResponse(header=self._header(),
                                             stores=[topology.meta_store(s) for s in topology.store_ids])

    def _region_response(self, region: Region) -> pdpb_pb2.GetRegionResponse:
        topology = self.cluster.served_topology()
        meta = topology.meta_region(region)
        return pdpb_pb2.GetRegionResponse(header=self._header(), region=meta, leader=meta.peers[0])

    def GetRegion(self, request: pdpb_pb2.GetRegionRequest, context: grpc.ServicerContext) -> pdpb_pb2.GetRegionResponse:
        self._check(request, context)
        key = bytes(request.region_key)
        with self.cluster.store.mu:
            regions = self.cluster.store.regions.all()
            # PD compares bytes: a transactional client sends encoded keys, a raw client raw ones
            i = bisect.bisect_right(regions, key, key=lambda r: encode_region_key(r.start)) - 1
            return self._region_response(regions[max(i, 0)])

    def GetRegionByID(self, request: pdpb_pb2.GetRegionByIDRequest, context: grpc.ServicerContext) -> pdpb_pb2.GetRegionResponse:
        self._check(request, context)
        with self.cluster.store.mu:
            try:
                return self._region_response(self.cluster.store.regions.get(request.region_id))
            except UpstreamError:
                return pdpb_pb2.GetRegionResponse(header=self._header())  # no region: PD leaves it empty

    def _scan(self, start_key: bytes, end_key: bytes, limit: int) -> list[pdpb_pb2.Region]:
        topology = self.cluster.served_topology()
        out = []
        with self.cluster.store.mu:
            for region in self.cluster.store.regions.all():  # by byte comparison, as PD
                if region.end and encode_region_key(region.end) <= start_key:
                    continue
                if end_key and encode_region_key(region.start) >= end_key:
                    break
                meta = topology.meta_region(region)
                out.append(pdpb_pb2.Region(region=meta, leader=meta.peers[0]))
                if 0 < limit <= len(out):
                    break
        return out

    def ScanRegions(self, request: pdpb_pb2.ScanRegionsRequest, context: grpc.ServicerContext) -> pdpb_pb2.ScanRegionsResponse:
        self._check(request, context)
        regions = self._scan(bytes(request.start_key), bytes(request.end_key), request.limit)
        return pdpb_pb2.ScanRegionsResponse(header=self._header(), regions=regions,
                                            region_metas=[r.region for r in regions], leaders=[r.leader for r in regions])

    def BatchScanRegions(self, request: pdpb_pb2.BatchScanRegionsRequest,
                         context: grpc.ServicerContext) -> pdpb_pb2.BatchScanRegionsResponse:
        self._check(request, context)
        seen: set[int] = set()
        out: list[pdpb_pb2.Region] = []
        for r in request.ranges:
            for region in self._scan(bytes(r.start_key), bytes(r.end_key), 0):
                if region.region.id not in seen:
                    seen.add(region.region.id)
                    out.append(region)
        if request.limit > 0:
            out = out[:request.limit]
        return pdpb_pb2.BatchScanRegionsResponse(header=self._header(), regions=out)

    def GetGCSafePoint(self, request: pdpb_pb2.GetGCSafePointRequest, context: grpc.ServicerContext) -> pdpb_pb2.GetGCSafePointResponse:
        self._check(request, context)
        return pdpb_pb2.GetGCSafePointResponse(header=self._header(), safe_point=self.cluster.gc.value)

    def UpdateGCSafePoint(self, request: pdpb_pb2.UpdateGCSafePointRequest,
                          context: grpc.ServicerContext) -> pdpb_pb2.UpdateGCSafePointResponse:
        self._check(request, context)
        return pdpb_pb2.UpdateGCSafePointResponse(header=self._header(),
                                                  new_safe_point=self.cluster.update_gc_safe_point(request.safe_point))

    def UpdateServiceGCSafePoint(self, request: pdpb_pb2.UpdateServiceGCSafePointRequest,
                                 context: grpc.ServicerContext) -> pdpb_pb2.UpdateServiceGCSafePointResponse:
        self._check(request, context)
        try:
            service, point, ttl = self.cluster.service_safe_points.update(bytes(request.service_id), request.TTL,
                                                                          request.safe_point)
        except UpstreamError as exc:
            return pdpb_pb2.UpdateServiceGCSafePointResponse(header=pdpb_pb2.ResponseHeader(
                cluster_id=self.cluster.cluster_id, error=pdpb_pb2.Error(type=pdpb_pb2.INVALID_VALUE, message=str(exc))))
        return pdpb_pb2.UpdateServiceGCSafePointResponse(
            header=self._header(), service_id=service, min_safe_point=point,
            TTL=int(min(ttl, float(1 << 62))))


class PDServer:
    """The PD gRPC servers of a mini cluster: ``members`` of them on ``host``, the first on
    ``port`` (0: any), the first leading. ``address`` lists them all (``pd://a,b``)."""

    def __init__(self, cluster: ClusterOfPD, host: str = "127.0.0.1", port: int = 0, members: int = 1) -> None:
        self.members = PDMembers()
        self._servers: list[grpc.Server] = []
        for i in range(max(1, members)):
            server = grpc_server(16, f"pd-{i}", services_of(pdpb_pb2))
            bound = bind_grpc(server, "PD", host, port if i == 0 else 0)
            self.members.addresses.append(f"{host}:{bound}")
            pdpb_pb2_grpc.add_PDServicer_to_server(PDServicer(cluster, self.members, i), server)
            server.start()
            self._servers.append(server)
        self.address = ",".join(self.members.addresses)

    def transfer_leader(self, to: int | None = None) -> str:
        """Make another member the leader (the next one by default); returns its address."""
        return self.members.addresses[self.members.transfer_leader(to)]

    def close(self) -> None:
        for server in self._servers:
            server.stop(grace=0).wait()
