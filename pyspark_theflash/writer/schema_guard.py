"""Rows that need a newer schema than the store holds.

TiDB rows name their columns by id, and a decoder skips ids it does not know — after an ADD
COLUMN upstream that the store has not seen (no DDL event: a store that started mid-stream, a
log without DDL), rows written with the new column would silently lose it. Before a batch is
applied the writer collects, per table, the column ids its rows carry — v2 rows vectorised
(one byte buffer, headers read per header shape with numpy), v1 rows (the old datum format,
which the decoder reads row by row too) one at a time — and compares them with every stored
version of the table; unknown ids mean "re-fetch the schema, store the new version, retry".
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.binlog.event_batch import EventBatch, parsed_events
from pyspark_theflash.proto import binlog_pb2

_ROW_V2 = 0x80
_FLAG_LARGE = 0x01
_KEY_HEAD = 11  # 't' + 8-byte memcomparable table id + '_r'


def _row_runs(events: Iterable[binlog_pb2.Event]) -> Iterator[binlog_rows.RowColumns]:
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


def _rows_with_values(events: Iterable[binlog_pb2.Event]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(table id per row, value buffer, value start, value length) of the rows that carry a
    value, from the columnar view of the Entries events (either form)."""
    table_ids: list[np.ndarray] = []
    values: list[pa.Array] = []
    for c in _row_runs(events):
        has_value = pc.binary_length(c.values).to_numpy(zero_copy_only=False) > 0
        if not has_value.any():
            continue
        mask = pa.array(has_value)
        table_ids.append(_table_ids(c.keys.filter(mask)))
        values.append(c.values.filter(mask))
    if not values:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros(8, dtype=np.uint8), empty, empty
    joined = pa.concat_arrays(values).cast(pa.large_binary())
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)[joined.offset:joined.offset + len(joined) + 1]
    data = joined.buffers()[2]
    # 8 zero bytes after the data: header reads of a short value stay inside the buffer
    buf = np.concatenate([np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8),
                          np.zeros(8, dtype=np.uint8)])
    return np.concatenate(table_ids), buf, offsets[:-1].astype(np.int64), np.diff(offsets).astype(np.int64)


def _table_ids(keys: pa.Array) -> np.ndarray:
    """Table id per record key (-1 for keys that are not record keys), read from the keys'
    offsets and bytes directly (a slice and a cast of every key cost more than the rest)."""
    n = len(keys)
    if keys.type != pa.binary():
        keys = keys.cast(pa.binary())
    offsets = np.frombuffer(keys.buffers()[1], np.int32)[keys.offset:keys.offset + n + 1].astype(np.int64)
    data_buf = keys.buffers()[2]
    if not n or data_buf is None:
        return np.full(n, -1, np.int64)
    data = np.frombuffer(data_buf, np.uint8)
    if len(data) < _KEY_HEAD:  # no key long enough to be a record key
        return np.full(n, -1, np.int64)
    at = offsets[:-1]
    ok = (offsets[1:] - at) >= _KEY_HEAD
    at = np.where(ok, at, 0)
    ok &= (data[at] == ord("t")) & (data[at + 9] == ord("_")) & (data[at + 10] == ord("r"))
    at = np.where(ok, at, 0)
    raw = data[at[:, None] + np.arange(1, 9)].copy().view(">u8").reshape(n) ^ np.uint64(1 << 63)
    return np.where(ok, raw.astype(np.int64), -1)


def column_ids_by_table(events: Iterable[binlog_pb2.Event]) -> dict[int, np.ndarray]:
    """{table id: sorted unique column ids} over the v2 row values of ``events``."""
    table_ids, buf, starts, lengths = _rows_with_values(events)
    if not len(table_ids):
        return {}
    v2 = (lengths >= 6) & (buf[starts] == _ROW_V2) & (table_ids >= 0)
    rows = np.flatnonzero(v2)
    s = starts[rows]
    large = (buf[s + 1] & _FLAG_LARGE).astype(np.int64)
    n_ids = (buf[s + 2].astype(np.int64) | (buf[s + 3].astype(np.int64) << 8)) + (
        buf[s + 4].astype(np.int64) | (buf[s + 5].astype(np.int64) << 8)
    )
    width = np.where(large == 1, 4, 1)
    fits = lengths[rows] >= 6 + n_ids * width
    rows, s, large, n_ids = rows[fits], s[fits], large[fits], n_ids[fits]
    found: dict[int, set[int]] = {}
    _v1_column_ids(table_ids, buf, starts, lengths, found)
    shape = (large << 32) | n_ids
    for key in np.unique(shape):
        sel = shape == key
        k, w = int(key & 0xFFFFFFFF), 4 if key >> 32 else 1
        if k == 0:
            continue
        raw = buf[(s[sel] + 6)[:, None] + np.arange(k * w)]  # (rows, k * w): each row's id bytes
        tids = table_ids[rows[sel]]
        for tid in np.unique(tids):
            per_table = raw if len(tids) == 1 or tids.min() == tids.max() else raw[tids == tid]
            # rows of one table nearly always carry the same ids: compare with the first row
            # and decode only the distinct ones (no sort of every row's ids)
            other = ~(per_table == per_table[0]).all(axis=1)
            distinct = np.concatenate([per_table[:1], np.unique(per_table[other], axis=0)]) if other.any() \
                else per_table[:1]
            block = distinct.reshape(-1, k, w).astype(np.int64)
            ids = (block << (8 * np.arange(w))).sum(axis=2)  # little-endian ids, (distinct rows, k)
            found.setdefault(int(tid), set()).update(np.unique(ids).tolist())
    return {tid: np.array(sorted(ids), dtype=np.int64) for tid, ids in found.items()}


def _v1_column_ids(table_ids: np.ndarray, buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                   found: dict[int, set[int]]) -> None:
    """Add the column ids of the v1 rows (first byte not 0x80) to ``found``, row by row (rows
    that do not parse are left to the decoder, which names them in its error)."""
    from pyspark_theflash.codec.errors import CodecError
    from pyspark_theflash.codec.row_v1 import decode_row_v1

    ok = (lengths > 0) & (table_ids >= 0)
    v1 = np.flatnonzero(ok)
    v1 = v1[buf[starts[v1]] != _ROW_V2]
    for i in v1.tolist():
        try:
            ids = decode_row_v1(buf[starts[i]:starts[i] + lengths[i]].tobytes()).keys()
        except CodecError:
            continue
        if ids:
            found.setdefault(int(table_ids[i]), set()).update(ids)


def unknown_column_ids(seen: dict[int, np.ndarray], known: dict[int, set[int]]) -> dict[int, list[int]]:
    """Column ids of tables in ``known`` (tables with a stored schema) that it lacks."""
    out: dict[int, list[int]] = {}
    for tid, ids in seen.items():
        if tid in known:
            missing = [int(i) for i in ids if int(i) not in known[tid]]
            if missing:
                out[tid] = missing
    return out
