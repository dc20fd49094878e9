"""A PD client over ``pdpb.PD``: the cluster id, TSO, stores, regions, GC safe points.

It starts from the given member addresses, asks ``GetMembers`` (which needs no cluster id) for
the cluster id and the leader, and sends every other call to the leader with the cluster id in
the header. A call that fails with UNAVAILABLE (a leader that went away) or a PD error looks
the leader up again among all known members and retries, until ``timeout_s``.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, NamedTuple, Protocol, TypeVar

import grpc

from pyspark_theflash.upstream_client.errors import PDError


class PDUnavailableError(PDError):
    """No PD member answered: the cluster is down or unreachable from here."""


class PDNotGrpcError(PDUnavailableError):
    """Every PD address answered in HTTP/1: an HTTP port (TiDB's status port, say), not PD's
    client port, which serves gRPC."""


class PDUnimplementedError(PDError):
    """The PD does not serve that call (an older or newer PD)."""
from pyspark_theflash.proto import metapb_pb2, pdpb_pb2, pdpb_pb2_grpc
from pyspark_theflash.upstream_client.channels import upstream_channel

_LOGICAL_BITS = 18


class _PdResponse(Protocol):
    """What every PD response carries: its header (an error, or none)."""

    @property
    def header(self) -> pdpb_pb2.ResponseHeader: ...


_Response = TypeVar("_Response", bound=_PdResponse)


class RegionInfo(NamedTuple):
    """A region as PD has it: PD-encoded boundaries, epoch, and the store of its leader."""

    id: int
    start: bytes
    end: bytes
    version: int
    conf_ver: int
    leader_store: int

    @classmethod
    def of(cls, region: metapb_pb2.Region, leader: metapb_pb2.Peer | None) -> "RegionInfo":
        store = leader.store_id if leader is not None and leader.store_id else (
            region.peers[0].store_id if region.peers else 0)
        return cls(int(region.id), bytes(region.start_key), bytes(region.end_key),
                   int(region.region_epoch.version), int(region.region_epoch.conf_ver), int(store))


def parse_pd_addresses(spec: str) -> list[str]:
    """``HOST:PORT[,HOST:PORT...]`` (``pd://`` and ``http://`` prefixes allowed) as host:port."""
    out = []
    for part in spec.split(","):
        part = part.strip()
        for prefix in ("pd://", "http://", "https://", "grpc://"):
            if part.startswith(prefix):
                part = part[len(prefix):]
        part = part.rstrip("/")
        if not part:
            continue
        if ":" not in part:
            raise PDError(f"PD address {part!r} has no port: give HOST:PORT (PD's client port, 2379 by default)")
        out.append(part)
    if not out:
        raise PDError(f"no PD address in {spec!r}: give --pd HOST:PORT[,HOST:PORT...]")
    return out


_HTTP1 = "an HTTP/1 server answered, not gRPC"


def _why_unreachable(exc: grpc.RpcError) -> str:
    """A short reason for a failed GetMembers, from gRPC's status."""
    details = str(exc.details() or "")
    if "Failed parsing HTTP/2" in details or "Expected SETTINGS frame" in details:
        return _HTTP1
    if "Connection refused" in details:
        return "connection refused"
    if "resolving" in details or "DNS" in details or "lookup" in details:
        return "host name not found"
    if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "no answer"
    return f"{exc.code().name}: {details}"


class PDClient:
    def __init__(self, addresses: list[str] | str, timeout_s: float = 30.0, lazy: bool = False,
                 connect_timeout_s: float | None = None, first_connect_timeout_s: float | None = None) -> None:
        self.members = parse_pd_addresses(addresses) if isinstance(addresses, str) else list(addresses)
        self.timeout_s = timeout_s
        self._mu = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: pdpb_pb2_grpc.PDStub | None = None
        self.leader = ""
        self.cluster_id = 0
        self._no_batch_scan = False
        # how long to look for a leader when none answers (a reader falls back sooner)
        self.connect_timeout_s = timeout_s if connect_timeout_s is None else connect_timeout_s
        # set by interrupt(): the retry loops (up to timeout_s while PD is away) end at once
        self._interrupted = threading.Event()
        if not lazy:
            # a command line's first contact: a wrong address is reported in seconds, while a
            # running client keeps looking for a moved leader for connect_timeout_s
            self._connect(first_connect_timeout_s)

    # ------------------------------------------------------------------ members

    def _ensure(self) -> None:
        if self._stub is None:
            self._connect()

    def _connect(self, timeout_s: float | None = None) -> None:
        wait_s = self.connect_timeout_s if timeout_s is None else timeout_s
        errors: dict[str, str] = {}  # the last failure of each address
        deadline = time.monotonic() + wait_s
        while True:
            for address in list(self.members):
                channel = upstream_channel(address)
                try:
                    resp = pdpb_pb2_grpc.PDStub(channel).GetMembers(pdpb_pb2.GetMembersRequest(), timeout=5)
                except grpc.RpcError as exc:
                    channel.close()
                    errors[address] = _why_unreachable(exc)
                    continue
                channel.close()
                if resp.header.error.type:
                    errors[address] = resp.header.error.message
                    continue
                for m in resp.members:
                    for url in m.client_urls:
                        host = url.split("://", 1)[-1].rstrip("/")
                        if host not in self.members:
                            self.members.append(host)
                urls = list(resp.leader.client_urls) or [f"http://{address}"]
                leader = urls[0].split("://", 1)[-1].rstrip("/")
                with self._mu:
                    self.cluster_id = int(resp.header.cluster_id)
                    if self._channel is not None and leader == self.leader:
                        # the same leader: its channel reconnects by itself, and closing it
                        # would cancel the calls other threads have in flight on it
                        return
                    old = self._channel
                    self.leader = leader
                    self._channel = upstream_channel(leader, ("grpc.max_receive_message_length", 64 << 20))
                    self._stub = pdpb_pb2_grpc.PDStub(self._channel)
                    if old is not None:
                        # closed after the new stub is in place: a call in flight on the old
                        # channel fails and _call, seeing the stub changed, retries on the new one
                        old.close()
                return
            if errors and all(why == _HTTP1 for why in errors.values()):
                # not a PD that is down, which may come back: the wrong port, at once
                raise PDNotGrpcError(
                    f"{', '.join(errors)} answered in HTTP/1, not gRPC: an HTTP port (TiDB's status port, "
                    f"10080 by default?) given as PD's address; give PD's client port (HOST:2379 by default)")
            if time.monotonic() > deadline or self._interrupted.is_set():
                raise PDUnavailableError(
                    f"could not reach PD at {'; '.join(f'{a} ({w})' for a, w in errors.items())} within "
                    f"{wait_s:g} s: give PD's client address HOST:PORT (2379 by default) and check that PD "
                    f"runs there and is reachable from this host")
            self._interrupted.wait(0.5)

    @property
    def cluster(self) -> int:
        """The cluster id, connecting first when the client is lazy."""
        self._ensure()
        return self.cluster_id

    def header(self) -> pdpb_pb2.RequestHeader:
        return pdpb_pb2.RequestHeader(cluster_id=self.cluster_id, caller_id="theflash")

    def _call(self, fn: Callable[[pdpb_pb2_grpc.PDStub], _Response]) -> _Response:
        self._ensure()
        deadline = time.monotonic() + self.timeout_s
        while True:
            stub = self._stub
            assert stub is not None
            try:
                resp = fn(stub)
            except (grpc.RpcError, ValueError) as exc:
                if self._stub is not stub and not self._interrupted.is_set():
                    # another thread moved to a new leader and closed this channel under the
                    # call (CANCELLED in flight, ValueError on a call begun after the close)
                    continue
                if isinstance(exc, ValueError):
                    raise
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    raise PDUnimplementedError(f"PD {self.leader}: {exc.details()}") from None
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
                        or time.monotonic() > deadline or self._interrupted.is_set():
                    raise PDError(f"PD {self.leader}: {exc.code().name}: {exc.details()}") from None
                self._interrupted.wait(0.2)
                self._connect()  # the leader may have moved
                continue
            err = resp.header.error
            if err.type:
                raise PDError(f"PD {self.leader}: {pdpb_pb2.ErrorType.Name(err.type)}: {err.message}")
            return resp

    # ------------------------------------------------------------------ calls

    def get_ts(self, count: int = 1) -> int:
        """The last of ``count`` fresh timestamps from PD's Tso stream."""
        def call(stub: pdpb_pb2_grpc.PDStub) -> pdpb_pb2.TsoResponse:
            req = pdpb_pb2.TsoRequest(header=self.header(), count=count)
            resp: pdpb_pb2.TsoResponse = next(iter(stub.Tso(iter([req]), timeout=10)))
            return resp
        resp = self._call(call)
        return (int(resp.timestamp.physical) << _LOGICAL_BITS) + int(resp.timestamp.logical)

    def stores(self) -> dict[int, str]:
        """Store id -> address of every store that is not a tombstone."""
        resp = self._call(lambda s: s.GetAllStores(pdpb_pb2.GetAllStoresRequest(
            header=self.header(), exclude_tombstone_stores=True), timeout=10))
        return {int(st.id): st.address for st in resp.stores if st.state != metapb_pb2.Tombstone}

    def store_address(self, store_id: int) -> str:
        try:
            resp = self._call(lambda s: s.GetStore(pdpb_pb2.GetStoreRequest(header=self.header(), store_id=store_id),
                                                   timeout=10))
            return str(resp.store.address)
        except PDUnimplementedError:
            address = self.stores().get(store_id)
            if address is None:
                raise PDError(f"PD {self.leader} lists no store {store_id}") from None
            return address

    def scan_regions(self, start: bytes, end: bytes) -> list[RegionInfo]:
        """Every region overlapping [start, end) (PD-encoded; end b"" = +inf), in key order,
        checked to cover the range without a gap (PD's cache can be mid-update: then retried)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            out: list[RegionInfo] = []
            key = start
            while True:
                regions = self._scan_page(key, end, 256)
                for r in regions:
                    # a region's start is the end of the one before: one bytes object for both
                    # (capture keeps every region's keys: at 100,000 regions 6 MB of copies)
                    if out and out[-1].end == r.start:
                        r = r._replace(start=out[-1].end)
                    out.append(r)
                if len(regions) < 256 or not regions[-1].end or (end and regions[-1].end >= end):
                    break
                key = regions[-1].end
            if _covers(out, start, end):
                return out
            if time.monotonic() > deadline:
                raise PDError(f"PD {self.leader}: the regions of [{start.hex()}, {end.hex()}) leave a gap")
            time.sleep(0.2)

    def _scan_page(self, start: bytes, end: bytes, limit: int) -> list[RegionInfo]:
        """Up to ``limit`` regions from the one holding ``start``: BatchScanRegions (what PD
        asks clients to use), ScanRegions where a PD does not have it."""
        if not self._no_batch_scan:
            try:
                resp = self._call(lambda s: s.BatchScanRegions(pdpb_pb2.BatchScanRegionsRequest(
                    header=self.header(), ranges=[pdpb_pb2.KeyRange(start_key=start, end_key=end)], limit=limit),
                    timeout=10))
                return [RegionInfo.of(r.region, r.leader) for r in resp.regions]
            except PDUnimplementedError:
                self._no_batch_scan = True
        resp = self._call(lambda s: s.ScanRegions(pdpb_pb2.ScanRegionsRequest(
            header=self.header(), start_key=start, end_key=end, limit=limit), timeout=10))
        return [RegionInfo.of(r.region, r.leader) for r in resp.regions] or [
            RegionInfo.of(m, resp.leaders[i] if i < len(resp.leaders) else None) for i, m in enumerate(resp.region_metas)]

    def gc_safe_point(self) -> int:
        return int(self._call(lambda s: s.GetGCSafePoint(pdpb_pb2.GetGCSafePointRequest(header=self.header()),
                                                         timeout=10)).safe_point)

    def update_service_safe_point(self, service_id: str, ttl_s: int, safe_point: int) -> int:
        """Keep ``service_id``'s safe point at ``safe_point`` for ``ttl_s`` seconds; returns PD's
        least service safe point after the call (above ``safe_point``: the update was refused)."""
        resp = self._call(lambda s: s.UpdateServiceGCSafePoint(pdpb_pb2.UpdateServiceGCSafePointRequest(
            header=self.header(), service_id=service_id.encode(), TTL=ttl_s, safe_point=safe_point), timeout=10))
        return int(resp.min_safe_point)

    def interrupt(self) -> None:
        """End every retry loop now (a call in one fails instead of waiting out PD's absence):
        for a process that is stopping."""
        self._interrupted.set()

    def close(self) -> None:
        with self._mu:
            if self._channel is not None:
                self._channel.close()
                self._channel = None


def _covers(regions: list[RegionInfo], start: bytes, end: bytes) -> bool:
    if not regions or regions[0].start > start:
        return False
    for a, b in zip(regions, regions[1:]):
        if a.end != b.start:
            return False
    last = regions[-1].end
    return not last or (bool(end) and last >= end)
