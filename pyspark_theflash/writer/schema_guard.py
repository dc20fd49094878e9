"""Rows that need a newer schema than the store holds.

TiDB rows name their columns by id, and a decoder skips ids it does not know — after an ADD
COLUMN upstream that the store has not seen (no DDL event: a store that started mid-stream, a
log without DDL), rows written with the new column would silently lose it. Before a batch is
applied the writer collects, per table, the column ids its rows carry — v2 rows in one
compiled pass that decodes only the id blocks it has not just seen (``_native/row_ids.c``),
v1 rows (the old datum format, which the decoder reads row by row too) one at a time — and
compares them with every stored
version of the table; unknown ids mean "re-fetch the schema, store the new version, retry".
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.binlog.event_batch import EventBatch, parsed_events
from pyspark_theflash.proto import binlog_pb2



def _row_runs(events: Sequence[binlog_pb2.Event]) -> Iterator[binlog_rows.RowColumns]:
    """The rows of the Entries events, joined run by run as the store joins them (one array
    per field for many events, not one per event). A malformed event is left out: the store
    names it when it applies the batch."""
    if isinstance(events, EventBatch):  # its columnar events' rows are joined already
        if events.rows is not None and len(events.rows):
            yield events.rows
    entries = [e.entries for e in parsed_events(events) if e.WhichOneof("payload") == "entries"]
    i = 0
    while i < len(entries):
        run = binlog_rows.run_columns(entries[i:], [""] * (len(entries) - i))
        if len(run) == 0:
            i += 1
            continue
        yield run.rows
        i += len(run)


def _binary(column: pa.Array) -> pa.Array:
    """``column`` as a binary array (int32 offsets) without nulls (a null: empty)."""
    if column.type != pa.binary():
        column = column.cast(pa.binary())
    return pc.fill_null(column, b"") if column.null_count else column


def column_ids_by_table(events: Sequence[binlog_pb2.Event]) -> dict[int, np.ndarray]:
    """{table id: sorted unique column ids} over the row values of ``events``."""
    found: dict[int, set[int]] = {}
    for c in _row_runs(events):
        for tid, ids in _ids_of_rows(c).items():
            found.setdefault(tid, set()).update(ids)
    return {tid: np.array(sorted(ids), dtype=np.int64) for tid, ids in found.items()}


def _ids_of_rows(rows: binlog_rows.RowColumns) -> dict[int, set[int]]:
    """{table id: column ids} of the rows with a value and a record key: v2 rows in one
    compiled pass (``_native/row_ids.c``), v1 rows decoded one by one."""
    from pyspark_theflash._native import load

    keys, values = _binary(rows.keys), _binary(rows.values)
    ids: tuple[dict[int, set[int]], list[tuple[int, int]]] = load("row_ids").column_ids(
        keys.buffers()[1], keys.buffers()[2] or b"", keys.offset,
        values.buffers()[1], values.buffers()[2] or b"", values.offset, len(keys))
    found, v1_rows = ids
    if v1_rows:
        _v1_column_ids(values, v1_rows, found)
    return found


def _v1_column_ids(values: pa.Array, rows: list[tuple[int, int]], found: dict[int, set[int]]) -> None:
    """Add the column ids of the v1 rows (the old datum format) to ``found``, row by row (rows
    that do not parse are left to the decoder, which names them in its error)."""
    from pyspark_theflash.codec.errors import CodecError
    from pyspark_theflash.codec.row_v1 import decode_row_v1

    for i, table_id in rows:
        try:
            ids = decode_row_v1(values[i].as_py()).keys()
        except CodecError:
            continue
        if ids:
            found.setdefault(table_id, set()).update(ids)


def unknown_column_ids(seen: dict[int, np.ndarray], known: dict[int, set[int]]) -> dict[int, list[int]]:
    """Column ids of tables in ``known`` (tables with a stored schema) that it lacks."""
    out: dict[int, list[int]] = {}
    for tid, ids in seen.items():
        if tid in known:
            missing = [int(i) for i in ids if int(i) not in known[tid]]
            if missing:
                out[tid] = missing
    return out
