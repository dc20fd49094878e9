"""``spark.readStream.format("theflash")`` for sessions without the connector jar: PySpark's
``DataSourceStreamReader`` over a ``scan.change_stream.ChangeStream`` (translation only).

PySpark asks a Python source for one schema whatever the read (``DataSource.schema()`` does not
know whether a batch or a stream will follow), so a jar-less stream names ``starting_ts``
(``latest``, ``earliest`` or a TSO): with it the schema is a change read's (the table's columns,
then ``_change_type``, ``_commit_ts``, ``_commit_timestamp``, ``_tidb_rowid``). The jar's
``MicroBatchStream`` needs no such hint.

Each micro-batch is one read session (the snapshot at the start, then change reads), one
partition per stream; offsets, admission control and the lease are the ``ChangeStream``'s.
Through a read service (option ``server``, or the session's service where the store is not
visible: ``spark/service_read.py``) they are the service's (``ServiceChangeStream``), and each
micro-batch is a read session there, as the connector jar's stream is.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

from pyspark.sql.datasource import DataSourceStreamReader, InputPartition
from pyspark.sql.types import StructType

from pyspark_theflash.spark.partitions import TheFlashPartition, conform, partition_batches, planned_partitions
from pyspark_theflash.spark.user_errors import said_plainly

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.streaming.datasource import ReadLimit

STREAM_HINT = "starting_ts"


class TheFlashStreamReader(DataSourceStreamReader):
    def __init__(self, options: Mapping[str, str], schema: StructType) -> None:
        from pyspark_theflash.scan.change_stream import ChangeStream
        from pyspark_theflash.scan.errors import ScanOptionError
        from pyspark_theflash.scan.options import change_feed_options

        # Delta's readChangeFeed + startingVersion/startingTimestamp: a stream from there (starting_ts)
        self.options = change_feed_options({str(k).lower(): v for k, v in dict(options).items()}, stream=True)
        if STREAM_HINT not in self.options:
            raise ScanOptionError(
                'a streaming read of theflash without the connector jar needs option("starting_ts", "latest") (or '
                "earliest, or a TSO): PySpark asks a Python source for one schema for batch and stream reads, and "
                "this option says the schema is a change stream's")
        from pyspark_theflash.spark import service_read

        self.schema = schema
        self.store = str(self.options.get("store", ""))
        self.table = str(self.options.get("table") or self.options.get("path") or "")
        self.columns = tuple(f.name for f in schema.fields)  # the table's, then CHANGE_COLUMNS
        server = service_read.server_of(self.options)
        self.service = None if server is not None else service_read.session_service(self.options)
        if self.service is not None and not service_read.sees_store(self.store):
            server = self.service.server  # the planner does not see the store: the session's service streams
        self.remote: service_read.ServiceChangeStream | None = None
        self.local: ChangeStream | None = None  # it opens the store once and keeps it open until stop()
        if server is not None:
            self.remote = service_read.ServiceChangeStream(server, self.table, self.options, self.columns,
                                                           self.service)
            self.stream: ChangeStream | service_read.ServiceChangeStream = self.remote
        else:
            self.local = ChangeStream(self.store, self.table,
                                      {**self.options, "stream_columns": json.dumps(self.columns)})
            self.stream = self.local

    @said_plainly
    def initialOffset(self) -> dict[str, object]:
        return self.stream.initial_offset().to_dict()

    def getDefaultReadLimit(self) -> ReadLimit:
        from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

        return ReadMaxRows(self.stream.max_rows) if self.stream.max_rows else ReadAllAvailable()

    @said_plainly
    def latestOffset(self, start: dict[str, object], limit: object) -> dict[str, object]:
        from pyspark.sql.streaming.datasource import ReadMaxRows

        from pyspark_theflash.scan.change_stream import StreamOffset

        max_rows = limit.max_rows if isinstance(limit, ReadMaxRows) else None
        return self.stream.latest_offset(StreamOffset.from_dict(start), max_rows).to_dict()

    @said_plainly
    def partitions(self, start: dict[str, object], end: dict[str, object]) -> Sequence[InputPartition]:
        from pyspark_theflash.scan.change_stream import StreamOffset, reraise_expired
        from pyspark_theflash.scan.session import open_read_session

        options = self.stream.batch_options(StreamOffset.from_dict(start), StreamOffset.from_dict(end))
        if options is None:
            return []
        if self.remote is not None:  # the service's read session; it holds the lease
            return [TheFlashPartition(stream) for stream in self.remote.open_batch(options, self.columns)]
        assert self.local is not None, "a stream is the service's (remote) or this process's (local)"
        try:
            # executors renew the session's lease while they read; this worker may be gone by then.
            # Planned with the stream's open store.
            session = open_read_session(self.local.opened_store(), self.table, options=options,
                                        columns=self.columns, keep_alive=False)
        except Exception as exc:
            reraise_expired(exc, self.table)
            raise
        return planned_partitions(session, self.service, options)

    @said_plainly
    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        from pyspark.sql.pandas.types import to_arrow_schema

        expected = to_arrow_schema(self.schema, timezone="UTC")
        for batch in partition_batches(partition):
            yield conform(batch, expected, pa)

    @said_plainly
    def commit(self, end: dict[str, object]) -> None:
        from pyspark_theflash.scan.change_stream import StreamOffset

        self.stream.commit(StreamOffset.from_dict(end))

    def stop(self) -> None:
        self.stream.stop()
