"""Reading one planned partition of the native (TxnMergeTree) engine: a pure function of the
partition (``store.read.read_parts`` over its pinned parts), run on a Spark executor or a
service thread. No Spark imports.

Before and while reading, the query's read lease is renewed (the ``LeaseRenewal`` the caller
hands in: ``scan.lease.LeaseKeeper``) so GC and compaction keep what the snapshot needs. If the
lease has already expired (a DataFrame re-used long after it was planned), the read takes a new
lease at the same ts — refused if GC has passed ts, which is then reported — and re-pins the
parts from the current manifest when a pinned part file has been compacted away since planning.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterator

import pyarrow as pa

from pyspark_theflash.engine.partition import LeaseRenewal, RangeScan, ScanPartition

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.store import Store
    from pyspark_theflash.store.predicate import Expr
    from pyspark_theflash.store.parts import ReadStats


def read_native_partition(p: ScanPartition, lease: LeaseRenewal, stats: ReadStats | None = None,
                          store: Store | None = None) -> Iterator[pa.RecordBatch]:
    """The partition's rows at its ts, as Arrow batches of the store's Arrow schema for the
    partition's columns (see ``schema.arrow_schema``), renewing the read's ``lease`` while
    batches flow. ``stats``: the read's deletion-vector
    rows and fresh-tail rows are added to it (``store.parts.ReadStats``; a change read adds none).
    ``store``: the partition's store, open (an engine's own); without it (a Spark executor) a
    re-pin opens the store for its one look at the manifest."""
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.store.predicate import Expr

    table_info = TableInfo.from_json(p.table_info, db=p.db)
    predicate = Expr.from_json(p.predicate_json) if p.predicate_json else None
    lease.touch(force=True)
    for rng in p.ranges:
        if lease.replaced and not _parts_present(rng, p.store):
            rng = _repin(p, rng, int(table_info.id), store)
        for batch in _read_range(rng, table_info, p, predicate, stats):
            lease.touch()
            yield from _rebatch(batch, p.batch_rows)


def _parts_present(rng: RangeScan, root: str) -> bool:
    return all(os.path.exists(os.path.join(root, p.path)) for p in rng.parts)


def _repin(p: ScanPartition, rng: RangeScan, table_id: int, opened: Store | None) -> RangeScan:
    from pyspark_theflash.store import Store

    if opened is not None and os.path.realpath(opened.root) != os.path.realpath(p.store):
        opened = None  # an engine handed another store's partition: read the partition's own
    store = opened if opened is not None else Store.open(p.store, readonly=True)
    try:
        with store.snapshot() as view:
            parts = tuple(view.parts(rng.table_id if rng.table_id is not None else table_id, rng.lo, rng.hi))
    finally:
        if opened is None:
            store.close()
    return RangeScan(rng.region_ids, rng.lo, rng.hi, parts, rng.size_bytes, rng.table_id)


def _rebatch(batch: pa.RecordBatch, rows: int) -> Iterator[pa.RecordBatch]:
    if batch.num_rows <= rows:
        yield batch
        return
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


def _read_range(rng: RangeScan, table_info: TableInfo, p: ScanPartition, predicate: Expr | None,
                stats: ReadStats | None) -> Iterator[pa.RecordBatch]:
    from pyspark_theflash.store.read import read_parts

    columns = list(p.columns) if p.columns is not None else None
    if p.changes_from is not None:
        from pyspark_theflash.store.changes import read_changes

        return read_changes(list(rng.parts), table_info, p.changes_from, p.ts, (rng.lo, rng.hi), columns,
                            p.store, p.batch_rows, net=p.changes_net)
    return read_parts(list(rng.parts), table_info, p.ts, (rng.lo, rng.hi), columns, predicate, p.hidden,
                      p.store, p.batch_rows, stats=stats)
