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
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pyspark_theflash.engine.clickhouse.errors import ClickHouseDirectoryBusyError, ClickHouseEngineError

if TYPE_CHECKING:
    from chdb.session import Session as ChdbSession

DIRECTORY = "clickhouse"
DATABASE = "flash"
OWNER_FILE = "owner.json"  # the process that has the directory open: its pid and command line
SERVICE_FILE = "service.json"  # the HTTP address of that process's service (engine.clickhouse.stream_read)

_MU = threading.Lock()
_OPEN: "ClickHouseDirectory | None" = None


class ClickHouseDirectory:
    """A store's ClickHouse directory, open in this process. ``acquire``/``release`` count the
    engine handles sharing it; the session closes with the last one. Queries are serialised."""

    def __init__(self, path: Path, session: ChdbSession, opened_in_s: float) -> None:
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
                        f"cannot open the ClickHouse directory {path}: {holder_of(path)} owns it. Read the store "
                        f"through that process's service (`theflash serve` / `theflash writer run --serve PORT`), or "
                        f"stop it first. chdb said: {exc}") from exc
                _record_owner(path)
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
            _forget_owner(self.path)

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


def _record_owner(path: Path) -> None:
    """Say, beside the data, which process has the directory open (for the error another
    process gets when it tries)."""
    import json
    import sys

    tmp = path / (OWNER_FILE + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv)[:300]}))
    os.replace(tmp, path / OWNER_FILE)


def _forget_owner(path: Path) -> None:
    import contextlib
    import json

    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        if json.loads((path / OWNER_FILE).read_text())["pid"] == os.getpid():
            os.unlink(path / OWNER_FILE)


def holder_of(path: Path) -> str:
    """Who has the ClickHouse directory ``path`` open, as a user can find it: "process PID
    (COMMAND)" and the service it advertises, or "another process" when it did not say."""
    import json

    try:
        owner = json.loads((path / OWNER_FILE).read_text())
        who = f"process {int(owner['pid'])} ({owner.get('command') or 'command unknown'})"
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        who = "another process (the store's writer, a `theflash serve` of it, or a Spark driver's service)"
    try:
        service = json.loads((path / SERVICE_FILE).read_text())
        who += f", serving at {service['http']}"
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    return who
