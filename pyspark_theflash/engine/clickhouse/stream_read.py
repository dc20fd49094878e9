"""Reading one planned stream (``scan.partitions.ScanPartition``) of a ClickHouse-engine store.

In the process that owns the store's ClickHouse directory (the writer's, or a service's) the
stream is read through that session. Anywhere else — a Spark Python worker, a script — the
directory is opened for the read and closed after it, one reader process at a time (a file
lock beside it), which works while no writer or service holds it. While the writer holds it
and serves (``writer run --serve``), it advertises its HTTP address in
``clickhouse/service.json`` and a stream read elsewhere is read through it: a read session at
the stream's ts restricted to the stream's handle ranges, carrying the read's bearer token
when the service needs one (``scan.bearer_token``). Without a service the error says to start
one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import http.client
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa

from pyspark_theflash.engine.clickhouse import directory as chdir
from pyspark_theflash.engine.clickhouse.errors import (
    ClickHouseDirectoryBusyError,
    ClickHouseEngineError,
    ServiceTokenRefusedError,
)
from pyspark_theflash.engine.clickhouse.snapshot_read import read_snapshot
from pyspark_theflash.engine.clickhouse.tables import ClickHouseTables
from pyspark_theflash.scan.errors import ChangeReadUnsupportedError
from pyspark_theflash.scan.lease import LeaseKeeper
from pyspark_theflash.scan.partitions import ScanPartition

if TYPE_CHECKING:
    from pyspark_theflash.scan.bearer_token import BearerToken
    from pyspark_theflash.store.parts import ReadStats

log = logging.getLogger(__name__)
_LOCAL = threading.Lock()
SERVICE_FILE = chdir.SERVICE_FILE


def advertise_service(store: str, http_url: str) -> None:
    """Record, in the store's ClickHouse directory, the HTTP address of the service of the
    process that owns it (written to a temporary name and renamed in)."""
    path = Path(store).resolve() / chdir.DIRECTORY
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (SERVICE_FILE + ".tmp")
    tmp.write_text(json.dumps({"http": http_url, "pid": os.getpid()}))
    os.replace(tmp, path / SERVICE_FILE)


def withdraw_service(store: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(Path(store).resolve() / chdir.DIRECTORY / SERVICE_FILE)


def advertised_service(store: str) -> str | None:
    try:
        return str(json.loads((Path(store).resolve() / chdir.DIRECTORY / SERVICE_FILE).read_text())["http"])
    except (FileNotFoundError, ValueError, KeyError):
        return None


def _owned_elsewhere(store: str) -> bool:
    """Whether a live process other than this one advertises the directory's service: then it
    owns the directory, and opening it here would only fail (chdb prints a lock error to
    stderr for every try)."""
    try:
        pid = int(json.loads((Path(store).resolve() / chdir.DIRECTORY / SERVICE_FILE).read_text())["pid"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False  # a stale advertisement: its process is gone
    except PermissionError:
        return True  # alive, another user's
    return True


@contextlib.contextmanager
def opened_directory(store: str) -> Iterator[chdir.ClickHouseDirectory]:
    """The store's ClickHouse directory for a read: the session this process already has, or
    one opened for the read under the readers' file lock."""
    path = Path(store).resolve() / chdir.DIRECTORY
    with chdir._MU:
        current = chdir._OPEN
        shared = current is not None and current.path == path
        if shared:
            assert current is not None
            current._users += 1
    if shared:
        assert current is not None
        try:
            yield current
        finally:
            current.release()
        return
    path.mkdir(parents=True, exist_ok=True)
    with _LOCAL, open(path / "readers.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            directory = chdir.ClickHouseDirectory.acquire(store)
            try:
                yield directory
            finally:
                directory.release()
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def read_clickhouse_stream(p: ScanPartition, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
    """A planned partition read where no engine is open (a Spark executor, a script):
    ``read_clickhouse_partition``. ``stats`` stays as it is: ClickHouse merges a part's
    versions itself. A change read is refused: this engine keeps no versions to read changes from."""
    if p.changes_from is not None:
        raise ChangeReadUnsupportedError(
            f"a change read of {p.table}: the store's ClickHouse engine keeps no versions to read changes from; "
            "read changes from a native-engine store")
    yield from read_clickhouse_partition(p)


def read_clickhouse_partition(p: ScanPartition,
                              directory: chdir.ClickHouseDirectory | None = None) -> Iterator[pa.RecordBatch]:
    """The partition's rows at its ts (its handle ranges; its pinned parts are the native
    engine's business), renewing its read lease while batches flow."""
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.store.predicate import Expr

    info = TableInfo.from_json(p.table_info, db=p.db)
    predicate = Expr.from_json(p.predicate_json) if p.predicate_json else None
    keeper = LeaseKeeper(p)
    keeper.touch(force=True)
    columns = list(p.columns) if p.columns is not None else None
    # a partition's stream names its handles, not its partition: the service would read them
    # from every partition; and it takes no predicate
    by_service = predicate is None and not any(getattr(r, "table_id", None) is not None for r in p.ranges)
    with contextlib.ExitStack() as stack:
        if directory is None:
            url = advertised_service(p.store) if by_service else None
            if url is not None and _owned_elsewhere(p.store):
                yield from read_through_service(p, url)
                return
            try:
                directory = stack.enter_context(opened_directory(p.store))
            except ClickHouseDirectoryBusyError:
                url = advertised_service(p.store)
                if url is None or not by_service:
                    raise
                yield from read_through_service(p, url)
                return
        tables = ClickHouseTables(directory, dict)
        batches: list[pa.RecordBatch] = []
        for rng in p.ranges:
            # a partition's range: its rows are in the ClickHouse table of the partition's id
            physical = info if rng.table_id is None else dataclasses.replace(info, id=rng.table_id)
            for batch in read_snapshot(directory, physical, p.ts, (rng.lo, rng.hi), columns, predicate, p.hidden,
                                       p.batch_rows, tables.has_table(physical.id)):
                keeper.touch()
                batches.append(batch)
    # the directory is let go before the rows are handed on (a slow consumer holds no lock)
    yield from batches


def read_through_service(p: Any, url: str) -> Iterator[pa.RecordBatch]:
    """The partition's rows from the service of the process that owns the store's ClickHouse
    directory: a session at the partition's ts over exactly its handle ranges. A stream whose
    body ends before Arrow's end-of-stream marker (the service failed mid-stream, stopped, or the
    connection was cut) raises ``StreamTruncatedError``: never fewer rows than the partition has.

    Every call carries the read's bearer token (``p.token``: options token / token_file, else
    this process's THEFLASH_TOKEN) for a service started with a token file; a 401 raises
    ``ServiceTokenRefusedError`` naming where the token came from."""
    from urllib.parse import urlparse

    from pyspark_theflash.scan.bearer_token import sent_token
    from pyspark_theflash.scan.options import format_handle_ranges
    from pyspark_theflash.service.stream_body import read_stream_body

    columns = list(p.columns) if p.columns is not None else [c.name for c in _table_columns(p)]
    request = {"table": p.table, "snapshot_ts": int(p.ts), "columns": columns + list(p.hidden),
               "handle_ranges": format_handle_ranges([(r.lo, r.hi) for r in p.ranges]),
               "batch_rows": int(p.batch_rows)}
    token = sent_token(p.token)
    auth = {"Authorization": token.header()} if token is not None else {}
    where = urlparse(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    refused = (f"the service at {url} (the process owning {p.store}'s ClickHouse directory) refused a read of "
               f"{p.table} at ts {p.ts}")
    # one connection per request: a stream cut mid-way leaves its connection unusable
    conn = http.client.HTTPConnection(host, port, timeout=600)
    try:
        conn.request("POST", "/v1/read-sessions", body=json.dumps(request),
                     headers={"Content-Type": "application/json", **auth})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status == 401:
        raise _token_refused(refused, body, token)
    if response.status != 201:
        raise ClickHouseEngineError(f"{refused}: {response.status} {body[:500]!r}")
    session = json.loads(body)
    batches: list[pa.RecordBatch] = []
    try:
        for stream in session["streams"]:
            conn = http.client.HTTPConnection(host, port, timeout=600)
            try:
                conn.request("GET", stream["url"], headers=auth)
                response = conn.getresponse()
                if response.status == 401:
                    raise _token_refused(f"{refused} (stream {stream['index']} of read session {session['id']})",
                                         response.read(), token)
                if response.status != 200:
                    raise ClickHouseEngineError(f"stream {stream['index']} of read session {session['id']} of {url}: "
                                                f"{response.status} {response.read()[:500]!r}")
                batches.extend(read_stream_body(response, session=session["id"], stream=int(stream["index"]),
                                                url=url.rstrip("/") + stream["url"]))
            finally:
                conn.close()
    finally:
        _release(host, port, session["id"], auth)
    # the session is released before the rows are handed on (a slow consumer holds no lease)
    yield from batches


def _token_refused(refused: str, body: bytes, token: BearerToken | None) -> ServiceTokenRefusedError:
    """The error for a 401: the service's own answer, then where the token sent came from."""
    from pyspark_theflash.scan.bearer_token import unauthenticated_advice

    try:
        answer = str(json.loads(body)["error"]["message"])
    except (ValueError, TypeError, KeyError):
        answer = body[:500].decode("utf-8", "replace")
    return ServiceTokenRefusedError(f"{refused}: answered 401 unauthenticated: {answer}; "
                                    f"{unauthenticated_advice(token)}", token.source if token is not None else None)


def _release(host: str, port: int, session_id: str, auth: dict[str, str]) -> None:
    """Release a read session of the service; if that fails (the service gone), its lease
    expires by its TTL, and the read's own outcome is what the caller sees."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("DELETE", f"/v1/read-sessions/{session_id}", headers=auth)
        conn.getresponse().read()
    except (http.client.HTTPException, OSError) as exc:
        log.warning("releasing read session %s of the service at %s:%d failed (%s); its lease expires by its TTL",
                    session_id, host, port, exc)
    finally:
        conn.close()


def _table_columns(p: Any) -> list[Any]:
    from pyspark_theflash.schema import TableInfo

    return list(TableInfo.from_json(p.table_info, db=p.db).columns)
