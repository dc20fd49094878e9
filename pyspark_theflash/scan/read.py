"""Reading one planned partition (runs on a Spark executor; no Spark imports).

The partition names its parts; reading them is a pure function of the partition
(``store.read.read_parts``). Before and while reading, the query's read lease is renewed so
GC and compaction keep what the snapshot needs. If the lease has already expired (a
DataFrame re-used long after it was planned), the read takes a new lease at the same ts —
refused if GC has passed ts, which is then reported — and re-pins the parts from the
current manifest when a pinned part file has been compacted away since planning.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa

from pyspark_theflash.scan.errors import ChangeReadUnsupportedError, SnapshotExpiredError
from pyspark_theflash.scan.lease import default_holder
from pyspark_theflash.scan.partitions import RangeScan, ScanPartition

if TYPE_CHECKING:
    from pyspark_theflash.store.read import ReadStats

log = logging.getLogger(__name__)

_LATCHES: dict[tuple[str, str | None], Any] = {}
_LATCHES_MU = threading.Lock()


def _latch(p: ScanPartition) -> Any:
    """One latch handle per (store, address) per process: executors read many partitions."""
    key = (p.store, p.latch)
    with _LATCHES_MU:
        handle = _LATCHES.get(key)
        if handle is None:
            from pyspark_theflash.latch import connect

            handle = _LATCHES[key] = connect(p.store, p.latch)
        return handle


class LeaseKeeper:
    """Renews the partition's lease at most every third of its TTL while batches flow."""

    def __init__(self, p: ScanPartition) -> None:
        self.p = p
        self.lease_id = p.lease_id
        self.renewed_at = 0.0
        self.replaced = False

    def touch(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.renewed_at < self.p.lease_ttl_s / 3.0:
            return
        from pyspark_theflash.latch import LeaseNotFoundError, LeaseRefusedError

        latch = _latch(self.p)
        if self.lease_id is not None:
            try:
                latch.renew_lease(self.lease_id, self.p.lease_ttl_s, late_ok=True)
                self.renewed_at = now
                return
            except LeaseNotFoundError:
                pass
        try:
            lease = latch.acquire_lease(self.p.lease_ts, self.p.lease_ttl_s, default_holder(f"scan {self.p.table} (re-pinned)"))
        except LeaseRefusedError as exc:
            raise SnapshotExpiredError(
                f"reading {self.p.table} at ts {self.p.ts}: the query's read lease expired and the store has "
                f"garbage-collected past ts since ({exc}); re-run the query (load the DataFrame again) for a "
                "fresh snapshot, or raise the option lease_ttl"
            ) from exc
        self.lease_id = int(lease.lease_id)
        self.renewed_at = now
        self.replaced = True


def _parts_present(rng: RangeScan, root: str) -> bool:
    return all(os.path.exists(os.path.join(root, p.path)) for p in rng.parts)


def _repin(p: ScanPartition, rng: RangeScan, table_id: int) -> RangeScan:
    from pyspark_theflash.store import Store

    view = Store.open(p.store, readonly=True).snapshot()
    parts = tuple(view.parts(rng.table_id if rng.table_id is not None else table_id, rng.lo, rng.hi))
    return RangeScan(rng.region_ids, rng.lo, rng.hi, parts, rng.size_bytes, rng.table_id)


def _rebatch(batch: pa.RecordBatch, rows: int) -> Iterator[pa.RecordBatch]:
    if batch.num_rows <= rows:
        yield batch
        return
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


def read_partition(p: ScanPartition, stats: "ReadStats | None" = None) -> Iterator[pa.RecordBatch]:
    """The partition's rows at its ts, as Arrow batches of the store's Arrow schema for the
    partition's columns (see ``schema.arrow_schema``). ``stats``: the read's deletion-vector
    rows and fresh-tail rows are added to it (``store.read.ReadStats``; a change read and the
    ClickHouse engine add none)."""
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.store.predicate import Expr

    if getattr(p, "engine", "native") == "clickhouse":
        if p.changes_from is not None:
            raise ChangeReadUnsupportedError(
                f"a change read of {p.table}: the store's ClickHouse engine keeps no versions to read changes from; "
                "read changes from a native-engine store")
        from pyspark_theflash.engine.clickhouse.stream_read import read_clickhouse_partition

        yield from read_clickhouse_partition(p)
        return
    table_info = TableInfo.from_json(p.table_info, db=p.db)
    predicate = Expr.from_json(p.predicate_json) if p.predicate_json else None
    keeper = LeaseKeeper(p)
    keeper.touch(force=True)
    for rng in p.ranges:
        if keeper.replaced and not _parts_present(rng, p.store):
            rng = _repin(p, rng, int(table_info.id))
        for batch in _read_range(rng, table_info, p, predicate, stats):
            keeper.touch()
            yield from _rebatch(batch, p.batch_rows)


def _read_range(rng: RangeScan, table_info: Any, p: ScanPartition, predicate: Any,
                stats: "ReadStats | None") -> Iterator[pa.RecordBatch]:
    from pyspark_theflash.store.read import read_parts

    if p.changes_from is not None:
        from pyspark_theflash.store.changes import read_changes

        columns = list(p.columns) if p.columns is not None else None
        return read_changes(list(rng.parts), table_info, p.changes_from, p.ts, (rng.lo, rng.hi), columns,
                            p.store, p.batch_rows, net=p.changes_net)
    columns = list(p.columns) if p.columns is not None else None
    return read_parts(list(rng.parts), table_info, p.ts, (rng.lo, rng.hi), columns, predicate, p.hidden,
                      p.store, p.batch_rows, stats=stats)
