"""gRPC's health checking protocol (``grpc.health.v1.Health``, protos/health.proto) on every gRPC
server the product starts (ports.grpc_server): the health endpoint of a process that speaks only
gRPC (``theflash latch serve``, ``theflash binlog serve``, the mini cluster's PD and TiKV), as
``/healthz`` is the writer's, capture's and the read service's. Kubernetes' gRPC probes,
``grpc_health_probe`` and load balancers ask it.

As the protocol says: ``Check`` with an empty service asks about the server as a whole, with a
service's full name (``theflash.latch.Latch``) about that service, and a name the server does not
serve is ``NOT_FOUND``. ``Watch`` sends the status and keeps the stream open until the client
leaves (``SERVICE_UNKNOWN`` for a name the server does not serve). A server that answers is
``SERVING``: these servers have no state in which they answer but cannot serve (a stopped one
refuses the connection, which every prober reads as unhealthy).
"""
from __future__ import annotations

import time
from typing import Iterable, Iterator

import grpc

from pyspark_theflash.proto import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
HEALTH_SERVICE = "grpc.health.v1.Health"
WATCH_POLL_S = 1.0  # how often a Watch stream looks whether its client went away


def services_of(*modules: object) -> list[str]:
    """The full names of the gRPC services the generated ``*_pb2`` modules declare."""
    names: list[str] = []
    for module in modules:
        descriptor = getattr(module, "DESCRIPTOR")
        names.extend(service.full_name for service in descriptor.services_by_name.values())
    return names


class HealthServicer(health_pb2_grpc.HealthServicer):
    """``SERVING`` for the server as a whole and for each of ``services``."""

    def __init__(self, services: Iterable[str]) -> None:
        self._known = frozenset(["", HEALTH_SERVICE, *services])

    def _of(self, service: str) -> health_pb2.HealthCheckResponse.ServingStatus:
        return SERVING if service in self._known else SERVICE_UNKNOWN

    def Check(self, request: health_pb2.HealthCheckRequest,
              context: grpc.ServicerContext) -> health_pb2.HealthCheckResponse:
        if request.service not in self._known:
            context.abort(grpc.StatusCode.NOT_FOUND, f"this server does not serve {request.service!r}; "
                                                     f"it serves {', '.join(sorted(self._known - {''}))}")
        return health_pb2.HealthCheckResponse(status=self._of(request.service))

    def Watch(self, request: health_pb2.HealthCheckRequest,
              context: grpc.ServicerContext) -> Iterator[health_pb2.HealthCheckResponse]:
        yield health_pb2.HealthCheckResponse(status=self._of(request.service))
        while context.is_active():  # (the status does not change while the server answers)
            time.sleep(WATCH_POLL_S)


def add_health(server: grpc.Server, services: Iterable[str]) -> HealthServicer:
    """Serve ``grpc.health.v1.Health`` on ``server`` for it and ``services``; the servicer."""
    servicer = HealthServicer(services)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer
