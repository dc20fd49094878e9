"""The ports TheFlash listens on: one process per port, and a port in use is one sentence.

gRPC's servers set ``SO_REUSEPORT`` by default (the ``grpc.so_reuseport`` channel argument,
on in both the Python server and the C++ one under Arrow Flight): a second process given the
same port binds it too, and the kernel then spreads clients over both, so a client could be
talking to either of two clusters. Every gRPC server the product starts is built here with
``so_reuseport`` off, so its bind fails while another process listens; Arrow Flight's server,
whose options this package cannot reach, is preceded by a plain bind of the port
(``check_free``). HTTP servers (``socketserver``) set only ``SO_REUSEADDR``, which lets a
listener take a port that closed connections still hold in TIME_WAIT, never one that another
listener holds.

A port that is taken raises :class:`PortInUseError`, naming the server and the address; a
command turns it into one line naming its own option (``PortInUseError.for_option``).
"""
from __future__ import annotations

import errno
import logging
import socket
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Sequence

import grpc

from pyspark_theflash.errors import PortInUseError

__all__ = ["PortInUseError", "bind_grpc", "check_free", "grpc_server", "http_server", "refused"]

NO_REUSEPORT = ("grpc.so_reuseport", 0)


_NOT_OURS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)  # a bind's errors that mean "not this port"


def refused(server_name: str, host: str, port: int, exc: OSError) -> PortInUseError | None:
    """The PortInUseError a failed bind means, or None for any other OSError."""
    return PortInUseError(server_name, host, port, exc.strerror or "") if exc.errno in _NOT_OURS else None


def grpc_server(workers: int, name: str, services: Sequence[str],
                options: Sequence[tuple[str, object]] = ()) -> grpc.Server:
    """A gRPC server of ``workers`` threads named ``name``-N that refuses a port in use and
    answers gRPC's health checks for itself and ``services`` (the full names of the services
    the caller adds to it; grpc_health.services_of)."""
    from pyspark_theflash.grpc_health import add_health

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name),
                         options=[NO_REUSEPORT, *options])
    add_health(server, services)
    return server


def bind_grpc(server: grpc.Server, server_name: str, host: str, port: int) -> int:
    """Add an insecure port to ``server``; the port bound. A port in use raises PortInUseError
    (gRPC returns 0 or raises RuntimeError, by version). The port is tried first, so that a
    taken one is this one sentence and not also a line of gRPC's own log."""
    check_free(server_name, host, port)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise PortInUseError(server_name, host, port) from exc
    if not bound:
        raise PortInUseError(server_name, host, port)
    return int(bound)


def check_free(server_name: str, host: str, port: int) -> None:
    """Raise PortInUseError if another process listens on host:port (0 is always free). For a
    server that turns SO_REUSEPORT on itself, which would otherwise share the port."""
    if not port:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a listener would: TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise refused(server_name, host, port, exc) or exc


class _QuietHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server whose failed connections (a client that reset it, a scraper
    gone mid-request) go to the log at debug level, not as a traceback on stderr, which
    ``socketserver`` prints by default."""

    def handle_error(self, request: object, client_address: object) -> None:
        logging.getLogger("theflash.http").debug("connection from %s ended with an error", client_address,
                                                 exc_info=True)


def http_server(server_name: str, host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A threading HTTP server on host:port; a port in use raises PortInUseError."""
    try:
        return _QuietHTTPServer((host, port), handler)
    except OSError as exc:
        raise refused(server_name, host, port, exc) or exc
