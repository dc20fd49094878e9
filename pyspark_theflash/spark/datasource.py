"""The ``theflash`` Python data source: translation only.

    spark.read.format("theflash").option("store", DIR).load("db.table")

When Spark calls what (PySpark 4.2):

* ``DataFrameReader.load()`` → a planner worker builds ``TheFlashDataSource(options)`` and
  calls ``schema()`` (unless the user gave ``.schema(...)``): the store's current schema.
* Query planning → another worker calls ``reader(schema)`` and ``partitions()``: a read
  session (``scan.session``; snapshot ts, read lease, learner read, lock resolution, pinned
  parts) is opened there, on the driver's machine, and each of its streams is one partition. Spark keeps the result with the loaded DataFrame, so repeated
  actions on one DataFrame read the same snapshot; load again for a fresh one. That worker
  sees this read's options only, never the query around it: each table of a query takes its
  own ts here (the connector jar's session extension gives a query one ts; docs/reading.md),
  and the first query of an application seen reading two ts warns (``spark/plan_journal.py``).
* Execution → each executor task calls ``read(partition)``, which reads its stream
  (``read_stream``: renews the lease, reads the pinned parts) into Arrow batches of exactly
  the schema Spark expects.

Where the store's files are not visible (an executor on another host), the read goes through a
read service (``spark/service_read.py``): always with option ``server``; without it, through the
session's service (``theflash_session()``'s, ``THEFLASH_SERVER``) wherever the store is not at the
read's path: a planner that does not see the store opens the session at the service, and an
executor that does not see it reads its stream's route there (the stream's handle ranges at its
ts) instead of the files.

The reader does not implement ``pushFilters``. PySpark 4.2.1 keeps the reader planned during
filter pushdown on the data source object that every scan of one loaded DataFrame shares, and
later scans of that DataFrame (a query without a pushable filter, the other side of a
self-join) run that reader: a pushed filter would narrow queries it was never written in
(``tests/spark/test_spark_filter_scope.py`` holds the contract and a guard that fails once Spark
scopes pushdown to the scan). So every filter stays in Spark for the rows this source hands
over. The connector jar (``theflash_session()``) pushes filters and prunes columns, per scan.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

from pyspark_theflash.scan.options import HIDDEN_READABLE, ScanOptions
from pyspark_theflash.spark.partitions import TheFlashPartition, conform, partition_batches, planned_partitions
from pyspark_theflash.spark.user_errors import said_plainly

if TYPE_CHECKING:
    import pyarrow as pa

    from pyspark_theflash.scan.bearer_token import BearerToken
    from pyspark_theflash.schema.table_info import TableInfo
    from pyspark_theflash.spark.stream import TheFlashStreamReader


def _table_info(options: ScanOptions) -> TableInfo:
    """The store's schema of the table (current, or at the read's ts with ``schema=as_of``); the upstream's when the writer has not
    stored it yet (a fresh store: the read's learner read will bring it in)."""
    from pyspark_theflash.scan.context import connect_upstream, open_store, upstream_address, upstream_table
    from pyspark_theflash.scan.schema_at import no_table_at_ts, read_table

    with open_store(options.store) as store:  # this worker's one open of the store
        with store.snapshot() as view:
            info = read_table(store, view, options.table, options)
            address = upstream_address(options, view)
            if info is None and options.schema == "as_of" and options.requested_ts():
                raise no_table_at_ts(view, options, int(options.requested_ts() or 0))
        if info is not None:
            return info
        client = connect_upstream(options, address)
        try:
            return upstream_table(client, options, store)
        finally:
            client.close()


class TheFlashDataSource(DataSource):
    """A transaction-consistent snapshot of one TiDB table from a TheFlash store."""

    @classmethod
    def name(cls) -> str:
        return "theflash"

    @said_plainly
    def schema(self) -> StructType:
        from pyspark_theflash.schema import spark_schema
        from pyspark_theflash.spark import service_read

        server = service_read.server_of(self.options)
        service = None if server is not None else service_read.session_service(self.options)
        options = ScanOptions.from_mapping(service_read.scan_options(self.options))
        if service is not None and not service_read.sees_store(options.store):
            return _service_spark_schema(service.server, self.options, options, service.token)
        if server is not None and not service_read.sees_store(options.store):
            return _service_spark_schema(server, self.options, options)
        info = _table_info(options)
        if options.changes_from is not None or "starting_ts" in {k.lower() for k in self.options}:
            # a change read or a stream (spark/stream.py): the table's columns, then the change columns
            return change_spark_schema(info, list(options.columns) or None)
        return spark_schema(info, list(options.columns) or None, tuple(options.hidden))

    @said_plainly
    def reader(self, schema: StructType) -> DataSourceReader:
        streaming = sorted({"starting_ts", "max_rows_per_trigger"} & {k.lower() for k in self.options})
        if streaming:
            from pyspark_theflash.scan.errors import ScanOptionError

            raise ScanOptionError(f"option(s) {streaming} are for spark.readStream; a batch read of changes takes "
                                  "changes_from and snapshot_ts")
        return TheFlashReader(self.options, schema)

    @said_plainly
    def streamReader(self, schema: StructType) -> TheFlashStreamReader:
        from pyspark_theflash.spark.stream import TheFlashStreamReader

        return TheFlashStreamReader(self.options, schema)


class TheFlashReader(DataSourceReader):
    """Plans once (``partitions``), reads each partition (``read``)."""

    def __init__(self, options: Mapping[str, str], schema: StructType) -> None:
        from pyspark_theflash.spark import service_read

        self.options = dict(options)
        self.schema = schema
        self.server = service_read.server_of(self.options)
        names = [f.name for f in schema.fields]
        if ScanOptions.from_mapping(service_read.scan_options(self.options)).changes_from is not None:  # a change read: the session takes them all
            self.hidden: tuple[str, ...] = ()
            self.columns = tuple(names)
            return
        self.hidden = tuple(n for n in names if n in HIDDEN_READABLE)
        self.columns = tuple(n for n in names if n not in HIDDEN_READABLE)

    @said_plainly
    def partitions(self) -> Sequence[InputPartition]:
        import time

        from pyspark_theflash.scan.session import open_read_session
        from pyspark_theflash.spark import service_read
        from pyspark_theflash.spark.plan_journal import record_planning

        started = time.time()
        service = None if self.server is not None else service_read.session_service(self.options)
        store = str(service_read.scan_options(self.options).get("store", ""))
        server = self.server
        if service is not None and not service_read.sees_store(store):
            server = service.server  # the planner does not see the store: the session's service plans
        if server is not None:
            # the service holds the session's lease: executors read its streams over HTTP
            streams = service_read.open_session(server, self.options, self.columns + self.hidden, service)
            if streams:
                record_planning(streams[0].table, streams[0].ts, started)
            return [TheFlashPartition(stream) for stream in streams]
        # Executors renew the lease while they read; this planner worker may be gone by then.
        session = open_read_session(store, None, options=self.options, columns=self.columns + self.hidden,
                                    keep_alive=False)
        # one query, several snapshots: this source cannot prevent it, so it says so (once)
        record_planning(session.table, session.ts, started)
        return planned_partitions(session, service, self.options)

    @said_plainly
    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        from pyspark.sql.pandas.types import to_arrow_schema

        expected = to_arrow_schema(self.schema, timezone="UTC")
        for batch in partition_batches(partition):
            yield conform(batch, expected, pa)


def _service_spark_schema(server: str, raw: Mapping[str, str], options: ScanOptions,
                          token: BearerToken | None = None) -> StructType:
    """The read's Spark schema from the service's Arrow schema of the table (a planning machine
    that does not see the store): its visible columns (or ``columns``), then ``hidden``; a change
    read's or a stream's, the table's columns then the change columns
    (``store.changes.change_schema``: ``_tidb_rowid`` of the table's handle type)."""
    import pyarrow as pa
    from pyspark.sql import types as S

    from pyspark_theflash.scan.errors import ScanOptionError
    from pyspark_theflash.schema.spark import spark_type_of_arrow
    from pyspark_theflash.spark import service_read
    from pyspark_theflash.store.changes import (CHANGE_COLUMNS, CHANGE_COMMIT_TIMESTAMP, CHANGE_COMMIT_TS,
                                                CHANGE_TYPE)
    from pyspark_theflash.store.txn_merge_tree import ROWID

    arrow = service_read.table_schema(server, raw, token)
    by_lower = {f.name.lower(): f for f in arrow}
    changes = options.changes_from is not None or "starting_ts" in {str(k).lower() for k in raw}
    names = list(options.columns) or [f.name for f in arrow if f.name not in HIDDEN_READABLE]
    if not changes:
        names += [h for h in options.hidden if h not in names]
    missing = [n for n in names if n.lower() not in by_lower]
    if missing:
        raise ScanOptionError(f"column(s) {missing} are not in {options.table} (the service at {server})")
    fields = [S.StructField(by_lower[n.lower()].name, spark_type_of_arrow(by_lower[n.lower()].type),
                            nullable=by_lower[n.lower()].nullable) for n in names]
    if changes:
        types = {CHANGE_TYPE: pa.string(), CHANGE_COMMIT_TS: pa.int64(),
                 CHANGE_COMMIT_TIMESTAMP: pa.timestamp("us", tz="UTC"), ROWID: by_lower[ROWID].type}
        fields += [S.StructField(n, spark_type_of_arrow(types[n]), nullable=False) for n in CHANGE_COLUMNS]
    return S.StructType(fields)


def change_spark_schema(info: TableInfo, columns: Sequence[str] | None) -> StructType:
    """The Spark schema of a change read (``store.changes.change_schema``)."""
    from pyspark.sql import types as S

    from pyspark_theflash.schema import spark_schema
    from pyspark_theflash.schema.spark import spark_type_of_arrow
    from pyspark_theflash.store.changes import CHANGE_COLUMNS, change_schema

    base = spark_schema(info, columns, ())
    arrow = change_schema(info, columns)
    return S.StructType([*base.fields, *(S.StructField(name, spark_type_of_arrow(arrow.field(name).type),
                                                       nullable=False) for name in CHANGE_COLUMNS)])
