"""Which store a request reads: the one store a service was started for (``theflash serve
--store DIR``, the writer's ``--serve``), or any store a read names (the service
``theflash_session()`` starts in its own process for the Spark connector).

A read names its store with the request's ``store`` field (the connector sends its ``store``
option). A service of one store refuses a read that names another: without that check a read
would silently answer from whichever store the service happens to serve.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, ContextManager, Iterator, Protocol

from pyspark_theflash.service.errors import BadRequestError, ServiceError

if TYPE_CHECKING:
    from pyspark_theflash.engine.interface import Engine

log = logging.getLogger("theflash.service")


def same_store(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


class StoreResolver(Protocol):
    """Which engine serves the store a request names (``OneStore``, ``AnyStore``)."""

    def get(self, store: str | None) -> Engine: ...

    def hold(self, store: str | None) -> ContextManager[Engine]: ...

    def close(self) -> None: ...


class OneStore:
    """The engine of the one store the service serves."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, store: str | None) -> Engine:
        """The engine, when ``store`` (None: not named) is this service's store."""
        if store is not None and not same_store(store, str(self.engine.root)):
            raise BadRequestError(f"this service serves the store at {self.engine.root}, not {store}: send the read "
                                  "to the service of that store, or leave the store out", code="wrong_store")
        return self.engine

    @contextlib.contextmanager
    def hold(self, store: str | None) -> Iterator[Engine]:
        """``get`` for a request that uses the engine for a while (planning a session, a query)."""
        yield self.get(store)

    def close(self) -> None:
        """The engine belongs to whoever opened it."""


class AnyStore:
    """Each store a read names, opened read-only on its first read and kept open while
    reads come; at most ``max_open`` at once (the least recently used one with no session
    open is closed first).

    A ClickHouse-engine store is let go as soon as nothing reads it (``let_go_idle``, from the
    service's upkeep): its ClickHouse directory belongs to one process at a time, so holding
    it between reads would shut out ``theflash sql``, a writer or another service."""

    def __init__(self, *, upstream: str | None = None, max_open: int = 8, idle_grace_s: float = 1.0) -> None:
        self._upstream = upstream
        self._max_open = max(1, int(max_open))
        self._idle_grace_s = idle_grace_s  # a get() this recent may still be using the engine
        self._mu = threading.Lock()
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._holders: dict[str, int] = {}  # root -> requests holding its engine (hold())
        self._last_get: dict[str, float] = {}
        self.in_use: Callable[[Engine], bool] = lambda engine: False  # set by the service: does a session read it?

    def get(self, store: str | None) -> Engine:
        if not store:
            raise BadRequestError("this service reads any store its reads name: give the store directory "
                                  "(the request's store field, the connector's store option)", code="invalid_option")
        root = os.path.realpath(store)
        with self._mu:
            engine = self._engines.get(root)
            if engine is None:
                from pyspark_theflash.engine import open_engine
                from pyspark_theflash.scan.engine_sessions import PlannedSessions
                from pyspark_theflash.store.errors import StoreNotFoundError

                try:
                    engine = self._engines[root] = open_engine(
                        root, readonly=True, sessions=PlannedSessions(upstream=self._upstream))
                except StoreNotFoundError as exc:
                    raise ServiceError(str(exc), code="unknown_store", status=404) from None
            self._engines.move_to_end(root)
            self._last_get[root] = time.monotonic()
            if len(self._engines) > self._max_open:  # over: some were in use when the last one opened
                self._evict(keep=root)
            return engine

    @contextlib.contextmanager
    def hold(self, store: str | None) -> Iterator[Engine]:
        """``get`` for a request that uses the engine for a while (planning a session, a
        query): the engine is not let go before the request is done."""
        engine = self.get(store)
        root = os.path.realpath(str(store))
        with self._mu:
            self._holders[root] = self._holders.get(root, 0) + 1
        try:
            yield engine
        finally:
            with self._mu:
                self._holders[root] -= 1
                self._last_get[root] = time.monotonic()

    def let_go_idle(self) -> list[str]:
        """Close the ClickHouse-engine stores that no request holds and no session reads (and
        that no ``get`` touched within the grace); returns their roots."""
        now = time.monotonic()
        closing = []
        with self._mu:
            for root, engine in list(self._engines.items()):
                if (getattr(engine, "kind", None) == "clickhouse" and not self._holders.get(root)
                        and now - self._last_get.get(root, 0.0) >= self._idle_grace_s and not self.in_use(engine)):
                    del self._engines[root]
                    closing.append((root, engine))
        for root, engine in closing:
            log.info("letting go of the ClickHouse store %s: nothing reads it", root)
            engine.close()
        return [root for root, _ in closing]

    def _evict(self, keep: str) -> None:
        """Close the least recently read stores without a session down to ``max_open``; never
        ``keep``, the one being handed out (more stay open while sessions read them all)."""
        for root in list(self._engines):
            if len(self._engines) <= self._max_open:
                return
            engine = self._engines[root]
            if root == keep or self.in_use(engine):
                continue
            del self._engines[root]
            log.info("closing store %s (least recently read of %d open)", root, self._max_open + 1)
            engine.close()

    def engines(self) -> list[Engine]:
        with self._mu:
            return list(self._engines.values())

    def close(self) -> None:
        with self._mu:
            engines, self._engines = list(self._engines.values()), OrderedDict()
        for engine in engines:
            engine.close()
