"""The latch over gRPC: :class:`LatchServicer` serves a :class:`LocalLatch` on a store
directory; :class:`RemoteLatch` is the client with the same semantics and error types."""
from __future__ import annotations

import json
import os
import socket
from typing import Any, Callable, Iterable, Mapping, TypeVar

import grpc

from pyspark_theflash.grpc_health import services_of
from pyspark_theflash.ports import PortInUseError, bind_grpc, grpc_server
from pyspark_theflash.latch.errors import ERROR_TYPES, LatchError
from pyspark_theflash.latch.local import LocalLatch
from pyspark_theflash.latch.protocol import DEFAULT_LEASE_TTL_S, DEFAULT_WRITE_LATCH_TTL_S, Latch
from pyspark_theflash.latch.types import FlushRequest, Lease, WriterHolder
from pyspark_theflash.proto import latch_pb2 as pb
from pyspark_theflash.proto import latch_pb2_grpc as pb_grpc

ERROR_METADATA_KEY = "theflash-error"
T = TypeVar("T")


def _lease_pb(lease: Lease) -> pb.Lease:
    return pb.Lease(lease_id=lease.lease_id, ts=lease.ts, holder=lease.holder, expires_at=lease.expires_at)


def _lease(msg: pb.Lease) -> Lease:
    return Lease(int(msg.lease_id), int(msg.ts), msg.holder, float(msg.expires_at))


def _holder_pb(h: WriterHolder) -> pb.WriterHolder:
    return pb.WriterHolder(name=h.name, host=h.host, pid=h.pid, since=h.since, expires_at=h.expires_at, token=h.token)


def _holder(msg: pb.WriterHolder) -> WriterHolder:
    return WriterHolder(msg.name, msg.host, int(msg.pid), float(msg.since), float(msg.expires_at), int(msg.token))


def _indexes_pb(indexes: Mapping[int, int] | None) -> list[pb.RegionIndex]:
    return [pb.RegionIndex(region_id=int(r), index=int(i)) for r, i in sorted((indexes or {}).items())]


def _indexes(msgs: Iterable[pb.RegionIndex]) -> dict[int, int]:
    return {int(m.region_id): int(m.index) for m in msgs}


_STATUS_CODES = {
    "LeaseRefusedError": grpc.StatusCode.FAILED_PRECONDITION,
    "LeaseNotFoundError": grpc.StatusCode.NOT_FOUND,
    "WriteLatchHeldError": grpc.StatusCode.ALREADY_EXISTS,
    "WriteLatchLostError": grpc.StatusCode.FAILED_PRECONDITION,
    "FlushRequestNotFoundError": grpc.StatusCode.NOT_FOUND,
    "FlushTimeoutError": grpc.StatusCode.DEADLINE_EXCEEDED,
}


class LatchServicer(pb_grpc.LatchServicer):
    """Serves one store's latch; every call is the LocalLatch call of the same name."""

    def __init__(self, latch: LocalLatch) -> None:
        self.latch = latch

    def _call(self, context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except LatchError as exc:
            name = type(exc).__name__
            context.set_trailing_metadata(((ERROR_METADATA_KEY, name),))
            context.abort(_STATUS_CODES.get(name, grpc.StatusCode.FAILED_PRECONDITION), str(exc))
        except ValueError as exc:
            context.set_trailing_metadata(((ERROR_METADATA_KEY, "ValueError"),))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise AssertionError("unreachable: context.abort raises")

    def AcquireLease(self, req: pb.AcquireLeaseRequest, ctx: grpc.ServicerContext) -> pb.Lease:
        return self._call(ctx, lambda: _lease_pb(self.latch.acquire_lease(req.ts, req.ttl_s, req.holder)))

    def RenewLease(self, req: pb.RenewLeaseRequest, ctx: grpc.ServicerContext) -> pb.Lease:
        return self._call(ctx, lambda: _lease_pb(self.latch.renew_lease(req.lease_id, req.ttl_s, req.late_ok)))

    def ReleaseLease(self, req: pb.ReleaseLeaseRequest, ctx: grpc.ServicerContext) -> pb.Empty:
        self._call(ctx, lambda: self.latch.release_lease(req.lease_id))
        return pb.Empty()

    def ListLeases(self, req: pb.ListLeasesRequest, ctx: grpc.ServicerContext) -> pb.ListLeasesResponse:
        return self._call(ctx, lambda: pb.ListLeasesResponse(leases=[_lease_pb(x) for x in self.latch.leases()]))

    def AcquireWriteLatch(self, req: pb.AcquireWriteLatchRequest, ctx: grpc.ServicerContext) -> pb.WriterHolder:
        return self._call(
            ctx, lambda: _holder_pb(self.latch.acquire_write_latch(req.name, req.ttl_s, host=req.host, pid=req.pid))
        )

    def RenewWriteLatch(self, req: pb.RenewWriteLatchRequest, ctx: grpc.ServicerContext) -> pb.WriterHolder:
        return self._call(ctx, lambda: _holder_pb(self.latch.renew(req.token, req.ttl_s)))

    def ReleaseWriteLatch(self, req: pb.ReleaseWriteLatchRequest, ctx: grpc.ServicerContext) -> pb.Empty:
        self._call(ctx, lambda: self.latch.release(req.token))
        return pb.Empty()

    def Holder(self, req: pb.HolderRequest, ctx: grpc.ServicerContext) -> pb.HolderResponse:
        h = self._call(ctx, self.latch.holder)
        return pb.HolderResponse(held=False) if h is None else pb.HolderResponse(held=True, holder=_holder_pb(h))

    def RequestFlush(self, req: pb.RequestFlushRequest, ctx: grpc.ServicerContext) -> pb.RequestFlushResponse:
        rid = self._call(ctx, lambda: self.latch.request_flush(list(req.region_ids), _indexes(req.read_index)))
        return pb.RequestFlushResponse(request_id=rid)

    def PendingFlushes(self, req: pb.PendingFlushesRequest, ctx: grpc.ServicerContext) -> pb.PendingFlushesResponse:
        pending = self._call(ctx, self.latch.pending_flushes)
        return pb.PendingFlushesResponse(
            requests=[
                pb.FlushRequest(
                    request_id=r.request_id,
                    region_ids=list(r.region_ids),
                    read_index=_indexes_pb(r.read_index),
                    requested_at=r.requested_at,
                )
                for r in pending
            ]
        )

    def CompleteFlush(self, req: pb.CompleteFlushRequest, ctx: grpc.ServicerContext) -> pb.Empty:
        self._call(ctx, lambda: self.latch.complete_flush(req.request_id, _indexes(req.applied)))
        return pb.Empty()

    def WaitFlush(self, req: pb.WaitFlushRequest, ctx: grpc.ServicerContext) -> pb.WaitFlushResponse:
        applied = self._call(ctx, lambda: self.latch.wait_flush(req.request_id, req.timeout_s))
        return pb.WaitFlushResponse(applied=_indexes_pb(applied))

    def SetWriterInterval(self, req: pb.SetWriterIntervalRequest, ctx: grpc.ServicerContext) -> pb.Empty:
        self._call(ctx, lambda: self.latch.set_writer_interval(req.interval_s, req.persist))
        return pb.Empty()

    def WriterInterval(self, req: pb.WriterIntervalRequest, ctx: grpc.ServicerContext) -> pb.WriterIntervalResponse:
        value = self._call(ctx, self.latch.writer_interval)
        return pb.WriterIntervalResponse(set=value is not None, interval_s=value or 0.0)

    def PublishWriterStatus(self, req: pb.PublishWriterStatusRequest, ctx: grpc.ServicerContext) -> pb.Empty:
        self._call(ctx, lambda: self.latch.publish_writer_status(req.token, json.loads(req.status_json)))
        return pb.Empty()

    def Status(self, req: pb.StatusRequest, ctx: grpc.ServicerContext) -> pb.StatusResponse:
        return pb.StatusResponse(status_json=json.dumps(self._call(ctx, self.latch.status)))


def serve(store_path: str, port: int = 0, host: str = "127.0.0.1", max_workers: int = 16) -> tuple[grpc.Server, int, LocalLatch]:
    """Start a latch server for the store at ``store_path``; returns (server, bound port, latch)."""
    latch = LocalLatch(store_path)
    server = grpc_server(max_workers, "latch", services_of(pb))
    pb_grpc.add_LatchServicer_to_server(LatchServicer(latch), server)
    try:
        bound = bind_grpc(server, "the latch service", host, port)
    except PortInUseError:
        latch.close()
        raise
    server.start()
    return server, bound, latch


class RemoteLatch(Latch):
    """A latch reached over gRPC (``grpc://host:port``)."""

    # Every call but WaitFlush answers at once; a dead server fails fast instead of hanging.
    CALL_TIMEOUT_S = 30.0

    def __init__(self, address: str) -> None:
        target = address.removeprefix("grpc://")
        self.address = address
        self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.LatchStub(self._channel)

    def _call(self, method: str, request: object, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout or self.CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            name = dict(exc.trailing_metadata() or ()).get(ERROR_METADATA_KEY)
            if name == "ValueError":
                raise ValueError(exc.details()) from None
            if name in ERROR_TYPES:
                raise ERROR_TYPES[name](exc.details()) from None
            raise LatchError(
                f"latch service {self.address} failed on {method}: {exc.code().name} {exc.details()}"
            ) from exc

    def acquire_lease(self, ts: int, ttl_s: float = DEFAULT_LEASE_TTL_S, holder: str = "") -> Lease:
        holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        return _lease(self._call("AcquireLease", pb.AcquireLeaseRequest(ts=ts, ttl_s=ttl_s, holder=holder)))

    def renew_lease(self, lease_id: int, ttl_s: float = DEFAULT_LEASE_TTL_S, late_ok: bool = False) -> Lease:
        return _lease(self._call("RenewLease", pb.RenewLeaseRequest(lease_id=lease_id, ttl_s=ttl_s, late_ok=late_ok)))

    def release_lease(self, lease_id: int) -> None:
        self._call("ReleaseLease", pb.ReleaseLeaseRequest(lease_id=lease_id))

    def leases(self) -> list[Lease]:
        return [_lease(m) for m in self._call("ListLeases", pb.ListLeasesRequest()).leases]

    def acquire_write_latch(
        self, holder: str = "writer", ttl_s: float = DEFAULT_WRITE_LATCH_TTL_S, *, host: str | None = None, pid: int | None = None
    ) -> WriterHolder:
        req = pb.AcquireWriteLatchRequest(
            name=holder, host=host or socket.gethostname(), pid=os.getpid() if pid is None else pid, ttl_s=ttl_s
        )
        return _holder(self._call("AcquireWriteLatch", req))

    def renew(self, token: int, ttl_s: float = DEFAULT_WRITE_LATCH_TTL_S) -> WriterHolder:
        return _holder(self._call("RenewWriteLatch", pb.RenewWriteLatchRequest(token=token, ttl_s=ttl_s)))

    def release(self, token: int) -> None:
        self._call("ReleaseWriteLatch", pb.ReleaseWriteLatchRequest(token=token))

    def holder(self) -> WriterHolder | None:
        resp = self._call("Holder", pb.HolderRequest())
        return _holder(resp.holder) if resp.held else None

    def request_flush(self, region_ids: Iterable[int], read_index: Mapping[int, int] | None = None) -> int:
        req = pb.RequestFlushRequest(region_ids=[int(r) for r in region_ids], read_index=_indexes_pb(read_index))
        return int(self._call("RequestFlush", req).request_id)

    def pending_flushes(self) -> list[FlushRequest]:
        resp = self._call("PendingFlushes", pb.PendingFlushesRequest())
        return [
            FlushRequest(int(r.request_id), tuple(int(x) for x in r.region_ids), _indexes(r.read_index), float(r.requested_at))
            for r in resp.requests
        ]

    def has_pending_flush(self, after_request_id: int = 0) -> bool:
        return any(r.request_id > after_request_id for r in self.pending_flushes())

    def complete_flush(self, request_id: int, applied: Mapping[int, int] | None = None) -> None:
        self._call("CompleteFlush", pb.CompleteFlushRequest(request_id=request_id, applied=_indexes_pb(applied)))

    def wait_flush(self, request_id: int, timeout_s: float) -> dict[int, int]:
        req = pb.WaitFlushRequest(request_id=request_id, timeout_s=timeout_s)
        return _indexes(self._call("WaitFlush", req, timeout=timeout_s + self.CALL_TIMEOUT_S).applied)

    def set_writer_interval(self, interval_s: float, persist: bool = False) -> None:
        self._call("SetWriterInterval", pb.SetWriterIntervalRequest(interval_s=interval_s, persist=persist))

    def writer_interval(self) -> float | None:
        resp = self._call("WriterInterval", pb.WriterIntervalRequest())
        return float(resp.interval_s) if resp.set else None

    def publish_writer_status(self, token: int, status: Mapping[str, object]) -> None:
        self._call("PublishWriterStatus", pb.PublishWriterStatusRequest(token=token, status_json=json.dumps(dict(status))))

    def status(self) -> dict[str, object]:
        status: dict[str, object] = json.loads(self._call("Status", pb.StatusRequest()).status_json)
        return status

    def close(self) -> None:
        self._channel.close()
