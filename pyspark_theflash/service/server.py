"""``serve(...)``: the TheFlash API service of one store, Flight and HTTP, in this process
(``theflash serve``, or inside the writer's process with ``theflash writer run --serve``)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark_theflash.service.auth import read_token_file
from pyspark_theflash.service.core import ReadService
from pyspark_theflash.service.flight import FlightService
from pyspark_theflash.service.http import HttpLimits, HttpService

if TYPE_CHECKING:
    from pyspark_theflash.engine.interface import Engine
    from pyspark_theflash.writer.options import WriterOptions

log = logging.getLogger("theflash.service")
DEFAULT_HOST = "127.0.0.1"


@dataclass
class RunningService:
    """A started service; ``close()`` stops both front ends and releases every session."""

    service: ReadService
    flight: FlightService
    http: HttpService
    owns_engine: bool

    @property
    def flight_location(self) -> str:
        return f"grpc://{self.flight.host}:{self.flight.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.http.host}:{self.http.port}"

    def close(self) -> None:
        self.http.close()
        self.flight.shutdown()
        self.service.close()
        if self.owns_engine and self.service.engine is not None:  # owns_engine: serve() opened it
            self.service.engine.close()

    def __enter__(self) -> "RunningService":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(store: str | None = None, *, engine: Engine | None = None, any_store: bool = False, host: str = DEFAULT_HOST,
          port: int = 0, http_port: int | None = None, token: str | None = None, token_file: str | None = None,
          upstream: str | None = None, keeper_interval_s: float = 1.0,
          http_limits: HttpLimits | None = None) -> RunningService:
    """Serve the store at ``store`` (opened read-only beside its writer), or ``engine``, or with
    ``any_store`` each store a read names (``service/stores.py``): Flight on ``port``, HTTP on
    ``http_port`` (default ``port + 1``; any free port when ``port`` is 0).
    ``token`` / ``token_file``: require ``Authorization: Bearer <token>`` on every call.
    ``http_limits``: the HTTP front end's worker pool and timeouts (``service.http.HttpLimits``)."""
    if token_file is not None:
        token = read_token_file(token_file)
    if sum(x for x in (store is not None, engine is not None, any_store)) != 1:
        raise ValueError("serve() serves a store directory, an engine, or any store: one of them")
    owns_engine = engine is None and not any_store
    if any_store:
        from pyspark_theflash.service.stores import AnyStore

        service = ReadService(stores=AnyStore(upstream=upstream), token=token, keeper_interval_s=keeper_interval_s)
    else:
        if engine is None:
            from pyspark_theflash.engine import open_engine
            from pyspark_theflash.scan.engine_sessions import PlannedSessions

            engine = open_engine(str(store), readonly=True, sessions=PlannedSessions(upstream=upstream))
        service = ReadService(engine, token=token, keeper_interval_s=keeper_interval_s)
    flight = http = None
    try:
        flight = FlightService(service, host, port)
        if http_port is None:
            http_port = flight.port + 1 if port else 0
        http = HttpService(service, host, http_port, limits=http_limits)
    except BaseException:
        if flight is not None:
            flight.shutdown()
        service.close()
        if owns_engine and engine is not None:  # owns_engine: opened above
            engine.close()
        raise
    running = RunningService(service, flight, http, owns_engine)
    log.info("serving %s: Flight %s, HTTP %s%s", "any store" if engine is None else f"store {engine.root}",
             running.flight_location, running.http_url,
             " (bearer token required)" if token else "")
    return running


def serve_beside_writer(opts: WriterOptions) -> RunningService:
    """The read service a writer runs in its own process (``writer run --serve``): its store
    opened read-only, as any reader's, its flush requests reaching the writer through the
    latch. What the entry points hand ``Writer(serve=...)``."""
    return serve(opts.store, host=opts.serve_host, port=opts.serve_port or 0, http_port=opts.serve_http_port,
                 token_file=opts.serve_token_file, upstream=opts.upstream)
