"""The ClickHouse data directory of a store, and the one chdb session that owns it.

chdb runs one embedded ClickHouse server per process, on one data path: a second path in the
same process is refused while the first is open, and a second process on the same path is
refused too. So a store's ClickHouse directory (``<store>/clickhouse``) is owned by one
process — the writer's, or a service's — and every engine handle of that store in the process
shares its session; other processes read through ``theflash serve`` (or ``writer run --serve``).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from pyspark_theflash.engine.clickhouse.errors import ClickHouseDirectoryBusyError, ClickHouseEngineError

DIRECTORY = "clickhouse"
DATABASE = "flash"

_MU = threading.Lock()
_OPEN: "ClickHouseDirectory | None" = None


class ClickHouseDirectory:
    """A store's ClickHouse directory, open in this process. ``acquire``/``release`` count the
    engine handles sharing it; the session closes with the last one. Queries are serialised."""

    def __init__(self, path: Path, session: Any, opened_in_s: float) -> None:
        self.path = path
        self.opened_in_s = opened_in_s
        self._session = session
        self._users = 0
        self._query_mu = threading.RLock()

    @classmethod
    def acquire(cls, store_root: str | os.PathLike[str]) -> "ClickHouseDirectory":
        global _OPEN
        path = Path(store_root).resolve() / DIRECTORY
        with _MU:
            if _OPEN is not None and _OPEN.path != path:
                raise ClickHouseDirectoryBusyError(
                    f"this process already has the ClickHouse engine of {_OPEN.path.parent} open; chdb runs one "
                    f"ClickHouse data directory per process, so {path.parent} cannot be opened beside it: close the "
                    "other store's engine first, or read this one through its own `theflash serve`")
            if _OPEN is None:
                path.mkdir(parents=True, exist_ok=True)
                t0 = time.monotonic()
                from chdb import session as chdb_session

                try:
                    session = chdb_session.Session(str(path))
                except RuntimeError as exc:
                    raise ClickHouseDirectoryBusyError(
                        f"cannot open the ClickHouse directory {path}: another process owns it (the store's writer, or "
                        f"a `theflash serve` of it). Read the store through that process's service (`theflash serve` / "
                        f"`theflash writer run --serve PORT`), or stop it first. chdb said: {exc}") from exc
                _OPEN = cls(path, session, time.monotonic() - t0)
                _OPEN.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
            _OPEN._users += 1
            return _OPEN

    def release(self) -> None:
        global _OPEN
        with _MU:
            self._users -= 1
            if self._users > 0:
                return
            if _OPEN is self:
                _OPEN = None
            with self._query_mu:
                self._session.close()

    def execute(self, sql: str, theflash_input: pa.Table | None = None) -> None:
        """A statement with no result. ``theflash_input``: an Arrow table the SQL reads as
        ``Python(theflash_input)``."""
        self._run(sql, "CSV", theflash_input)

    def arrow(self, sql: str) -> pa.Table:
        """A query's result as one Arrow table."""
        return self._run(sql, "ArrowTable", None)

    def scalar(self, sql: str) -> Any:
        t = self.arrow(sql)
        return t.column(0)[0].as_py() if t.num_rows else None

    def _run(self, sql: str, fmt: str, theflash_input: pa.Table | None) -> Any:
        # chdb's Python(name) table function resolves `name` among the calling frame's
        # variables: `theflash_input` is a local of this frame on purpose.
        with self._query_mu:
            try:
                return self._session.query(sql, fmt)
            except RuntimeError as exc:
                raise ClickHouseEngineError(f"ClickHouse ({self.path}) failed: {exc}\nSQL: {sql[:1500]}") from exc
