"""How a planned partition is read, by the engine its store records (``ScanPartition.engine``,
from ``engine.selection``): the one place that maps an engine's name to its partition reader.
A Spark executor or a service thread reads a partition with no engine object at hand, so
``scan.read.read_partition`` asks here, handing in what the reader needs from above: the
read's lease (``LeaseRenewal``) and, for a store whose files another process owns, the read
through that process's service (``ServiceRead``). An open engine's ``Engine.read_partition`` is
the same reader (the ClickHouse engine's through its own ClickHouse session)."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Iterator, Protocol

import pyarrow as pa

from pyspark_theflash.engine.kinds import DEFAULT_ENGINE
from pyspark_theflash.engine.native_read import read_native_partition
from pyspark_theflash.engine.partition import LeaseRenewal, ScanPartition, ServiceRead

if TYPE_CHECKING:
    from pyspark_theflash.store.parts import ReadStats


class PartitionReader(Protocol):
    def __call__(self, p: ScanPartition, lease: LeaseRenewal,
                 stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]: ...


def partition_reader(kind: str = DEFAULT_ENGINE, *, through_service: ServiceRead | None = None) -> PartitionReader:
    """The partition reader of the engine named ``kind`` (``native`` unless a store records
    another); ``through_service``: how it reads through the service of a process that owns the
    store's files, when it must (the ClickHouse engine's directory)."""
    if kind == "clickhouse":
        from pyspark_theflash.engine.clickhouse.stream_read import read_clickhouse_stream

        return functools.partial(read_clickhouse_stream, through_service=through_service)
    return read_native_partition
