"""Reading one planned stream (``scan.partitions.ScanPartition``) of a ClickHouse-engine store.

In the process that owns the store's ClickHouse directory (the writer's, or a service's) the
stream is read through that session. Anywhere else — a Spark Python worker, a script — the
directory is opened for the read and closed after it, one reader process at a time (a file
lock beside it), which works while no writer or service holds it; while one does, the error
says to read through its service (``theflash serve`` / ``writer run --serve``).
"""
from __future__ import annotations

import contextlib
import fcntl
import threading
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from pyspark_theflash.engine.clickhouse import directory as chdir
from pyspark_theflash.engine.clickhouse.snapshot_read import read_snapshot
from pyspark_theflash.engine.clickhouse.tables import ClickHouseTables

_LOCAL = threading.Lock()


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


def read_clickhouse_partition(p: Any, directory: chdir.ClickHouseDirectory | None = None) -> Iterator[pa.RecordBatch]:
    """The partition's rows at its ts (its handle ranges; its pinned parts are the native
    engine's business), renewing its read lease while batches flow."""
    from pyspark_theflash.scan.read import _LeaseKeeper
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.store.predicate import Expr

    info = TableInfo.from_json(p.table_info, db=p.db)
    predicate = Expr.from_json(p.predicate_json) if p.predicate_json else None
    keeper = _LeaseKeeper(p)
    keeper.touch(force=True)
    columns = list(p.columns) if p.columns is not None else None
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = stack.enter_context(opened_directory(p.store))
        exists = ClickHouseTables(directory, dict).has_table(info.id)
        batches: list[pa.RecordBatch] = []
        for rng in p.ranges:
            for batch in read_snapshot(directory, info, p.ts, (rng.lo, rng.hi), columns, predicate, p.hidden,
                                       p.batch_rows, exists):
                keeper.touch()
                batches.append(batch)
    # the directory is let go before the rows are handed on (a slow consumer holds no lock)
    yield from batches
