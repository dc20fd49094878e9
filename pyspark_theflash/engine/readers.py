"""How a planned partition is read, by the engine its store records (``ScanPartition.engine``,
from ``engine.selection``): the one place that maps an engine's name to its partition reader.
A Spark executor or a service thread reads a partition with no engine object at hand, so
``scan.read.read_partition`` asks here; an open engine's ``Engine.read_partition`` is the same
reader (the ClickHouse engine's through its own ClickHouse session)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Protocol

import pyarrow as pa

from pyspark_theflash.engine.native_read import read_native_partition
from pyspark_theflash.engine.kinds import DEFAULT_ENGINE

if TYPE_CHECKING:
    from pyspark_theflash.scan.partitions import ScanPartition
    from pyspark_theflash.store.parts import ReadStats


class PartitionReader(Protocol):
    def __call__(self, p: ScanPartition, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]: ...


def partition_reader(kind: str = DEFAULT_ENGINE) -> PartitionReader:
    """The partition reader of the engine named ``kind`` (``native`` unless a store records another)."""
    if kind == "clickhouse":
        from pyspark_theflash.engine.clickhouse.stream_read import read_clickhouse_stream

        return read_clickhouse_stream
    return read_native_partition
