"""A planned read's partitions, what batch and stream reads alike hand Spark: one per stream of
a read session, and the rows an executor reads for one (datasource.py plans batch reads,
stream.py micro-batches; both are above this module)."""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Iterator, Mapping

from pyspark.sql.datasource import InputPartition

if TYPE_CHECKING:
    import pyarrow as pa

    from pyspark_theflash.scan.session import ReadSession, ReadStream
    from pyspark_theflash.spark.service_read import ServiceStream, SessionService, StreamRoute


class TheFlashPartition(InputPartition):
    """One stream of a read session: a ``scan.session.ReadStream`` of the store's files, with its
    ``route`` through the session's service when there is one (``service_read.StreamRoute``), or
    a stream of a service's session (``service_read.ServiceStream``)."""

    def __init__(self, stream: ReadStream | ServiceStream, route: StreamRoute | None = None) -> None:
        super().__init__(stream.index)
        self.stream = stream
        self.route = route


def planned_partitions(session: ReadSession, service: SessionService | None,
                       options: Mapping[str, str]) -> list[TheFlashPartition]:
    """The partitions of a read session planned on the store's files; with the session's
    ``service``, each carries its route there for an executor that does not see the store (a
    partitioned table's streams, which no handle range names, are planned again at the service,
    at the same ts)."""
    from pyspark_theflash.spark import service_read

    if service is None or not session.streams:
        return [TheFlashPartition(stream) for stream in session.streams]
    routes = service_read.routes(session.streams, service, options)
    if routes is not None:
        return [TheFlashPartition(stream, route) for stream, route in zip(session.streams, routes)]
    streams = service_read.open_at_ts(service, session.streams, options)
    session.close()  # the service's session holds the ts now
    return [TheFlashPartition(stream) for stream in streams]


def partition_batches(partition: InputPartition) -> Iterator[pa.RecordBatch]:
    """The rows of a planned partition (executor side): a service's stream over HTTP; a stream
    of the store's files from the files where this process sees the store, else by its route
    through the session's service."""
    from pyspark_theflash.scan.session import read_stream
    from pyspark_theflash.spark import service_read

    stream = getattr(partition, "stream", None)
    if stream is None:
        return iter(())  # no regions (Spark's placeholder partition for an empty plan)
    if isinstance(stream, service_read.ServiceStream):
        return service_read.read_stream(stream)
    route = getattr(partition, "route", None)
    if route is not None and not service_read.sees_store(stream.partition.store):
        return service_read.read_routed(route)
    return read_stream(stream)


def conform(batch: pa.RecordBatch, expected: pa.Schema, pa: ModuleType) -> pa.RecordBatch:
    """The batch with exactly Spark's Arrow schema: columns in Spark's order, named as
    Spark names them, of Spark's types and nullability (a cast only where the user's
    ``.schema(...)`` asked for another type). No column keeps the batch's row count
    (``scan.session.conform_batch``)."""
    if batch.schema.equals(expected):
        return batch
    if len(expected) == 0:
        return batch.select([])
    by_lower = {name.lower(): i for i, name in enumerate(batch.schema.names)}
    arrays = []
    for field in expected:
        i = by_lower[field.name.lower()]
        column = batch.column(i)
        if not column.type.equals(field.type):
            column = column.cast(field.type)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=expected)
