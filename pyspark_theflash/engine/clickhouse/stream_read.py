"""Reading one planned stream (``engine.partition.ScanPartition``) of a ClickHouse-engine store.

In the process that owns the store's ClickHouse directory (the writer's, or a service's) the
stream is read through that session. Anywhere else — a Spark Python worker, a script — the
directory is opened for the read and closed after it, one reader process at a time (a file
lock beside it), which works while no writer or service holds it. While the writer holds it
and serves (``writer run --serve``), it advertises its HTTP address in
``clickhouse/service.json`` and a stream read elsewhere is read through it, with the
``ServiceRead`` its caller hands in (``scan.through_service``: a read session at the stream's
ts restricted to the stream's handle ranges). Without a service the error says to start one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pyarrow as pa

from pyspark_theflash.engine.clickhouse import directory as chdir
from pyspark_theflash.engine.clickhouse.errors import ClickHouseDirectoryBusyError
from pyspark_theflash.engine.clickhouse.snapshot_read import read_snapshot
from pyspark_theflash.engine.clickhouse.tables import ClickHouseTables
from pyspark_theflash.engine.interface import ChangeReadUnsupportedError
from pyspark_theflash.engine.partition import LeaseRenewal, ScanPartition, ServiceRead

if TYPE_CHECKING:
    from pyspark_theflash.store.parts import ReadStats

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


def read_clickhouse_stream(p: ScanPartition, lease: LeaseRenewal, stats: ReadStats | None = None, *,
                           through_service: ServiceRead | None = None) -> Iterator[pa.RecordBatch]:
    """A planned partition read where no engine is open (a Spark executor, a script):
    ``read_clickhouse_partition``. ``stats`` stays as it is: ClickHouse merges a part's
    versions itself. A change read is refused: this engine keeps no versions to read changes from."""
    if p.changes_from is not None:
        raise ChangeReadUnsupportedError(
            f"a change read of {p.table}: the store's ClickHouse engine keeps no versions to read changes from; "
            "read changes from a native-engine store")
    yield from read_clickhouse_partition(p, lease, through_service=through_service)


def read_clickhouse_partition(p: ScanPartition, lease: LeaseRenewal, directory: chdir.ClickHouseDirectory | None = None,
                              through_service: ServiceRead | None = None) -> Iterator[pa.RecordBatch]:
    """The partition's rows at its ts (its handle ranges; its pinned parts are the native
    engine's business), renewing its read ``lease`` while batches flow. Without ``directory``
    (no engine open here) the store's directory is opened for the read, or, when another
    process owns it, the rows come through that process's service (``through_service``; none
    given: the directory's own error)."""
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.store.predicate import Expr

    info = TableInfo.from_json(p.table_info, db=p.db)
    predicate = Expr.from_json(p.predicate_json) if p.predicate_json else None
    lease.touch(force=True)
    columns = list(p.columns) if p.columns is not None else None
    # a partition's stream names its handles, not its partition: the service would read them
    # from every partition; and it takes no predicate
    by_service = predicate is None and not any(getattr(r, "table_id", None) is not None for r in p.ranges)
    with contextlib.ExitStack() as stack:
        if directory is None:
            url = advertised_service(p.store) if by_service and through_service is not None else None
            if through_service is not None and url is not None and _owned_elsewhere(p.store):
                yield from through_service(p, url)
                return
            try:
                directory = stack.enter_context(opened_directory(p.store))
            except ClickHouseDirectoryBusyError:
                url = advertised_service(p.store)
                if through_service is None or url is None or not by_service:
                    raise
                yield from through_service(p, url)
                return
        tables = ClickHouseTables(directory, dict)
        batches: list[pa.RecordBatch] = []
        for rng in p.ranges:
            # a partition's range: its rows are in the ClickHouse table of the partition's id
            physical = info if rng.table_id is None else dataclasses.replace(info, id=rng.table_id)
            for batch in read_snapshot(directory, physical, p.ts, (rng.lo, rng.hi), columns, predicate, p.hidden,
                                       p.batch_rows, tables.has_table(physical.id)):
                lease.touch()
                batches.append(batch)
    # the directory is let go before the rows are handed on (a slow consumer holds no lock)
    yield from batches
