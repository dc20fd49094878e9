"""Reading one planned partition (runs on a Spark executor or a service thread; no Spark imports).

A partition names the engine of its store (``ScanPartition.engine``, recorded in the store's
manifest), and that engine reads it (``engine.readers``): the native engine reads its pinned
parts (``engine.native_read``), the ClickHouse engine queries ClickHouse, or reads through the
service of the process that owns its directory (``scan.through_service``). Either renews the
query's read lease while batches flow, with the ``scan.lease.LeaseKeeper`` handed to it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import pyarrow as pa

from pyspark_theflash.engine.partition import ScanPartition
from pyspark_theflash.engine.readers import partition_reader
from pyspark_theflash.scan.lease import LeaseKeeper
from pyspark_theflash.scan.through_service import read_through_service

if TYPE_CHECKING:
    from pyspark_theflash.store.parts import ReadStats

__all__ = ["read_partition"]


def read_partition(p: ScanPartition, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
    """The partition's rows at its ts, as Arrow batches of the store's Arrow schema for the
    partition's columns (see ``schema.arrow_schema``). ``stats``: the read's deletion-vector
    rows and fresh-tail rows are added to it (``store.parts.ReadStats``; a change read and the
    ClickHouse engine add none)."""
    keeper = LeaseKeeper(p)  # scan's own upkeep of the read's lease, handed down with the partition
    yield from partition_reader(p.engine, through_service=read_through_service)(p, keeper, stats)
