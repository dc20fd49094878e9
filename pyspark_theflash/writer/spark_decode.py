"""Decoding a large batch's rows on Spark executors: the rows of one table are cut into
chunks, each executor decodes its chunk with ``codec.batch.decode_rows_to_arrow`` and sends
back Arrow IPC bytes, and the driver concatenates them in order. Small batches are decoded
on the driver (a Spark job costs tens of milliseconds; it pays off only for many rows)."""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from pyspark import SparkContext

    from pyspark_theflash.schema import TableInfo

log = logging.getLogger("theflash.writer.spark")

DEFAULT_MIN_ROWS = 20_000


def decode_chunk(table_json: str, db: str, columns: Sequence[str] | None, values: list[bytes], handles: list[int]) -> bytes:
    """Executor side: decode one chunk; returns it as an Arrow IPC stream."""
    from pyspark_theflash.codec.batch import decode_rows_to_arrow
    from pyspark_theflash.schema import TableInfo, row_columns

    info = TableInfo.from_json(json.loads(table_json), db=db)
    batch = decode_rows_to_arrow(values, np.asarray(handles, dtype=np.int64), row_columns(info, columns))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as out:
        out.write_batch(batch)
    stream: bytes = sink.getvalue().to_pybytes()
    return stream


class ExecutorRowDecoder:
    """The store's ``decode_rows``: ``decode_rows_to_arrow(values, handles, row_columns(table,
    columns))``, sending large inputs to the executors of ``spark_context``."""

    def __init__(self, spark_context: SparkContext, min_rows: int = DEFAULT_MIN_ROWS, partitions: int = 0) -> None:
        self.sc = spark_context
        self.min_rows = min_rows
        self.partitions = partitions or max(2, int(spark_context.defaultParallelism))
        self.executor_batches = 0
        self.executor_rows = 0

    def __call__(self, values: Sequence[bytes] | pa.Array, handles: object, table: TableInfo,
                 columns: Sequence[str] | None = None) -> pa.RecordBatch:
        from pyspark_theflash.codec.batch import decode_rows_to_arrow
        from pyspark_theflash.schema import row_columns

        n = len(values)
        if n < self.min_rows:
            return decode_rows_to_arrow(values, handles, row_columns(table, columns))
        handles = np.asarray(handles, dtype=np.int64)
        bounds = np.linspace(0, n, self.partitions + 1, dtype=np.int64)
        if isinstance(values, (pa.Array, pa.ChunkedArray)):  # the store passes Arrow binary
            values = values.to_pylist()
        chunks = [(list(values[a:b]), handles[a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        table_json, db, cols = json.dumps(table.raw), str(table.db or ""), list(columns) if columns else None
        ipc = (
            self.sc.parallelize(chunks, len(chunks))
            .map(lambda chunk: decode_chunk(table_json, db, cols, chunk[0], chunk[1]))
            .collect()
        )
        batches = [b for payload in ipc for b in pa.ipc.open_stream(payload)]
        self.executor_batches += 1
        self.executor_rows += n
        log.info("decoded %d rows of table %s on %d executor tasks", n, table.id, len(chunks))
        combined = pa.Table.from_batches(batches).combine_chunks()
        return combined.to_batches(max_chunksize=max(1, combined.num_rows))[0]
