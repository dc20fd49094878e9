"""The rows of an Entries event, in either of its two forms.

An ``Entries`` event carries its rows as ``rows`` (one ``Row`` message per row: hand-built
events, logs written before the columnar form) or as ``batch``, a ``RowBatch``: one
little-endian array per field, variable-width fields in Arrow's binary layout (layout in
protos/binlog.proto). The columnar form is what the mini cluster emits, because a replica can
apply it with array operations instead of a Python step per row.

* :func:`pack_rows`, :func:`pack_columns`: rows or column arrays -> ``RowBatch``;
  :func:`columnar_entries` wraps either in an ``Entries``.
* :func:`columns`: an ``Entries`` of either form -> :class:`RowColumns` (NumPy and Arrow
  arrays; the batch form is mapped without copying and validated first, so a corrupt event is
  refused whole with :class:`MalformedRowBatchError`).
* :func:`run_columns`: consecutive events -> one :class:`RunColumns` (every field joined into
  one array, each event a slice), what a store applies a batch with.
* :func:`iter_rows`, :func:`row_count`: ``Row`` messages and the row count of either form (for
  dumps, replays, tests).
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any, Iterator, Required, Sequence, TypedDict, Union

import numpy as np
import pyarrow as pa

from pyspark_theflash.binlog.errors import BinlogError
from pyspark_theflash.codec.txn import decode_secondaries, encode_secondaries
from pyspark_theflash.proto import binlog_pb2

Row = binlog_pb2.Row
_MAX_TYPE = max(binlog_pb2.Row.Type.values())
_MAX_OP = max(binlog_pb2.OpType.values())
_TYPE_CODES = bytes(range(_MAX_TYPE + 1))
_OP_CODES = bytes(range(_MAX_OP + 1))
_INT32 = struct.Struct("<i")
_INT32_MAX = (1 << 31) - 1

# What pack_columns accepts for a variable-width column: Arrow binary, bytes objects, or an
# (n, width) uint8 matrix of fixed-width items (e.g. record keys built with NumPy).
BinaryColumn = Union[pa.Array, Sequence[bytes], np.ndarray]
# a fixed-width column of a RowBatch: one value for every row, or one per row
FixedColumn = Union[int, Sequence[int], np.ndarray, pa.Array]


class MalformedRowBatchError(BinlogError):
    """A ``RowBatch`` whose arrays do not describe ``count`` rows: the event is corrupt."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        at = f" ({where})" if where else ""
        super().__init__(f"malformed RowBatch{at}: {reason}; the event is refused whole — the binlog "
                         "is corrupt or was written by a broken producer")


def arrow_positions(which: np.ndarray) -> pa.Int64Array:
    """Positions (NumPy ints) as Arrow int64 indices for ``take``, over the array's own buffer
    where it is int64 already. Not ``pa.array``: it imports pandas on its first call (about
    34 MiB of a capture process that never uses it; docs/capture.md, "Memory per region")."""
    a = np.ascontiguousarray(which, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(a), [None, pa.py_buffer(a)])


def arrow_mask(mask: np.ndarray) -> pa.BooleanArray:
    """A NumPy bool array as an Arrow one (bit-packed), without ``pa.array`` (see ``arrow_positions``)."""
    m = np.ascontiguousarray(mask, dtype=bool)
    return pa.Array.from_buffers(pa.bool_(), len(m), [None, pa.py_buffer(np.packbits(m, bitorder="little"))])


def numpy_mask(arr: pa.BooleanArray) -> np.ndarray:
    """An Arrow bool array (nulls as false) as a NumPy one, without pandas (``to_numpy`` of
    bools imports it)."""
    n = len(arr)
    if not n:
        return np.zeros(0, bool)
    values = np.frombuffer(arr.buffers()[1], np.uint8)
    out = np.unpackbits(values, bitorder="little", count=arr.offset + n)[arr.offset:].astype(bool)
    if arr.null_count:
        out &= np.unpackbits(np.frombuffer(arr.buffers()[0], np.uint8), bitorder="little",
                             count=arr.offset + n)[arr.offset:].astype(bool)
    return out


@dataclass(frozen=True)
class RowColumns:
    """The rows of one Entries event as columns, in row order."""

    types: np.ndarray       # uint8, Row.Type
    ops: np.ndarray         # uint8, OpType
    start_ts: np.ndarray    # uint64
    commit_ts: np.ndarray   # uint64
    ttl: np.ndarray         # uint64
    txn_size: np.ndarray    # uint64
    keys: pa.BinaryArray
    values: pa.BinaryArray
    primaries: pa.BinaryArray

    def __len__(self) -> int:
        return len(self.types)

    def all_of_type(self, row_type: int) -> bool:
        return bool((self.types == row_type).all())

    def take(self, which: np.ndarray) -> "RowColumns":
        """The rows ``which`` (positions), copied."""
        idx = arrow_positions(which)
        return RowColumns(self.types[which], self.ops[which], self.start_ts[which], self.commit_ts[which],
                          self.ttl[which], self.txn_size[which], self.keys.take(idx), self.values.take(idx),
                          self.primaries.take(idx))

    def slice(self, lo: int, hi: int) -> "RowColumns":
        """Rows lo..hi, without a copy."""
        n = hi - lo
        return RowColumns(self.types[lo:hi], self.ops[lo:hi], self.start_ts[lo:hi], self.commit_ts[lo:hi],
                          self.ttl[lo:hi], self.txn_size[lo:hi], self.keys.slice(lo, n), self.values.slice(lo, n),
                          self.primaries.slice(lo, n))


@dataclass(frozen=True)
class RunColumns:
    """The rows of a run of Entries events joined into one :class:`RowColumns` (one array per
    field for the whole run): event j holds rows ``starts[j]`` to ``starts[j + 1]``. A store
    applies a batch of events a run at a time, so per-event work is a slice, not an array."""

    rows: RowColumns
    starts: np.ndarray  # int64, one entry more than events

    def __len__(self) -> int:
        return len(self.starts) - 1

    def span(self, j: int) -> tuple[int, int]:
        return int(self.starts[j]), int(self.starts[j + 1])

    def event(self, j: int) -> RowColumns:
        """Event j's rows (a slice, no copy)."""
        return self.rows.slice(*self.span(j))

    @functools.cached_property
    def all_committed(self) -> np.ndarray:
        """Per event: are all its rows COMMITTED (1PC writes, staged as they are)."""
        return self.events_all_of_type(Row.COMMITTED)

    def events_all_of_type(self, row_type: int) -> np.ndarray:
        """Per event: are all its rows of ``row_type`` (True for an event of no rows)."""
        other = np.zeros(len(self.rows) + 1, dtype=np.int64)
        np.cumsum(self.rows.types != row_type, out=other[1:])
        same: np.ndarray = other[self.starts[1:]] == other[self.starts[:-1]]
        return same


def row_count(entries: binlog_pb2.Entries) -> int:
    """How many rows an Entries event carries (either form; not validated)."""
    return int(entries.batch.count) if entries.HasField("batch") else len(entries.rows)


def columns(entries: binlog_pb2.Entries, where: str = "") -> RowColumns:
    """The rows of ``entries`` as columns. The batch form is validated and mapped without a
    copy; ``where`` (e.g. "region 3 index 9") goes into the error message."""
    if entries.HasField("batch"):
        if len(entries.rows):
            raise MalformedRowBatchError(where, f"the event carries both {len(entries.rows)} rows and a RowBatch; "
                                                "an Entries event uses one form")
        return _batch_columns(entries.batch, where)
    return _row_columns(entries.rows)


def run_columns(entries: Sequence[binlog_pb2.Entries], wheres: Sequence[str]) -> RunColumns:
    """The rows of consecutive Entries events joined into one :class:`RunColumns`, validated as
    :func:`columns` validates one event. It covers the longest prefix of ``entries`` that
    parses and whose variable-width fields fit one array (int32 offsets); an event it stops
    before is either malformed (``columns`` of it raises, naming ``wheres[k]``) or starts the
    next run. Batch-form events are joined from their raw fields without a per-event array."""
    if all(e.HasField("batch") and not len(e.rows) for e in entries):
        joined = _join_batches([e.batch for e in entries])
        if joined is not None:
            return joined
    events = entries[:_fitting_prefix(entries)]
    parts = []
    for e, where in zip(events, wheres):
        try:
            parts.append(columns(e, where))
        except MalformedRowBatchError:
            break
    return join_columns(parts)


def join_columns(parts: Sequence[RowColumns]) -> RunColumns:
    """Events' columns joined into one :class:`RunColumns` (their binary fields must fit int32
    offsets together, as :func:`run_columns` ensures)."""
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    starts = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    if len(parts) == 1:
        return RunColumns(parts[0], starts)
    if not parts:
        return RunColumns(_row_columns([]), starts)

    def cat(name: str) -> pa.Array | np.ndarray:
        items = [getattr(p, name) for p in parts]
        return pa.concat_arrays(items) if isinstance(items[0], pa.Array) else np.concatenate(items)

    return RunColumns(RowColumns(*(cat(f) for f in _FIELDS)), starts)


_FIELDS = ("types", "ops", "start_ts", "commit_ts", "ttl", "txn_size", "keys", "values", "primaries")


def _fitting_prefix(entries: Sequence[binlog_pb2.Entries]) -> int:
    """How many events from the first one keep every joined binary field within int32
    offsets (at least one: a single event always fits)."""
    total = 0
    for k, e in enumerate(entries):
        total += e.ByteSize()  # bounds each of its fields
        if total > _INT32_MAX and k:
            return k
    return len(entries)


def _join_batches(batches: Sequence[binlog_pb2.RowBatch]) -> RunColumns | None:
    """``RowBatch`` events joined field by field (bytes concatenated, offsets rebased), checked
    as a whole; None if any event is malformed or the joined bytes of a field overflow int32
    offsets (``run_columns`` then finds where to stop)."""
    counts = [int(b.count) for b in batches]
    n = sum(counts)
    starts = np.zeros(len(batches) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])

    def fixed(name: str, width: int, dtype: str, optional: bool) -> np.ndarray | None:
        raws = [getattr(b, name) for b in batches]
        for raw, k in zip(raws, counts):
            if len(raw) != k * width and (raw or not optional):
                return None
        if optional and not any(raws):
            return np.zeros(n, dtype=dtype)
        return np.frombuffer(b"".join(raw or bytes(k * width) for raw, k in zip(raws, counts)), dtype=dtype)

    def binary(name: str, optional: bool) -> pa.BinaryArray | None:
        raw_offsets = [getattr(b, name + "_offsets") for b in batches]
        datas = [getattr(b, name + "_data") for b in batches]
        if not any(raw_offsets) and not any(datas) and (optional or n == 0):
            return _empty_binary(n)
        sizes = [len(d) for d in datas]
        if sum(sizes) > _INT32_MAX:
            return None
        # each event's offsets, shifted by the bytes before it, written into one array
        offsets = np.empty(n + 1, dtype="<i4")
        offsets[0] = 0
        base = 0
        for j, (off, size, k) in enumerate(zip(raw_offsets, sizes, counts)):
            lo = int(starts[j])
            if not off and not size and (optional or k == 0):
                offsets[lo + 1:lo + k + 1] = base
                continue
            if len(off) != 4 * (k + 1):
                return None
            own = np.frombuffer(off, dtype="<i4")
            if own[0] != 0 or own[-1] != size:
                return None
            np.add(own[1:], base, out=offsets[lo + 1:lo + k + 1])
            base += size
        if (offsets[1:] < offsets[:-1]).any():
            return None
        return pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(datas))])

    types = fixed("types", 1, "u1", optional=False)
    ops = fixed("ops", 1, "u1", optional=False)
    if types is None or ops is None or types.tobytes().translate(None, _TYPE_CODES) \
            or ops.tobytes().translate(None, _OP_CODES):
        return None
    fields = [types, ops, fixed("start_ts", 8, "<u8", optional=False), fixed("commit_ts", 8, "<u8", optional=True),
              fixed("ttl", 8, "<u8", optional=True), fixed("txn_size", 8, "<u8", optional=True),
              binary("key", optional=False), binary("value", optional=True), binary("primary", optional=True)]
    if any(f is None for f in fields):
        return None
    try:  # checked event by event, not joined: the store has no use for them
        for b in batches:
            if b.min_commit_ts or b.async_commit or b.secondaries_offsets or b.secondaries_data:
                _check_lock_fields(b, "")
    except MalformedRowBatchError:
        return None
    return RunColumns(RowColumns(*fields), starts)  # type: ignore[arg-type]


def iter_rows(entries: binlog_pb2.Entries, where: str = "") -> Iterator[binlog_pb2.Row]:
    """``Row`` messages of either form, in order (built one by one from a batch)."""
    if not entries.HasField("batch"):
        yield from entries.rows
        return
    c = columns(entries, where)
    lk = _batch_lock_columns(entries.batch, where)
    fields = zip(c.types.tolist(), c.ops.tolist(), c.start_ts.tolist(), c.commit_ts.tolist(), c.ttl.tolist(),
                 c.txn_size.tolist(), c.keys.to_pylist(), c.values.to_pylist(), c.primaries.to_pylist(),
                 lk.min_commit_ts.tolist(), lk.use_async_commit.tolist(), lk.secondaries.to_pylist())
    for t, op, start_ts, commit_ts, ttl, txn_size, key, value, primary, min_commit_ts, use_async, secs in fields:
        yield Row(type=t, op=op, start_ts=start_ts, commit_ts=commit_ts, key=key, value=value, primary=primary,
                  ttl=ttl, txn_size=txn_size, min_commit_ts=min_commit_ts, use_async_commit=use_async,
                  secondaries=decode_secondaries(secs) if secs else ())


def columnar_entries(rows: Sequence[binlog_pb2.Row]) -> binlog_pb2.Entries:
    """An Entries event in the columnar form holding ``rows``."""
    return binlog_pb2.Entries(batch=pack_rows(rows))


def pack_rows(rows: Sequence[binlog_pb2.Row]) -> binlog_pb2.RowBatch:
    """``Row`` messages -> one ``RowBatch``."""
    if not any(r.use_async_commit or r.min_commit_ts or r.secondaries for r in rows):
        return pack_columns(
            types=np.fromiter((r.type for r in rows), np.uint8, len(rows)),
            ops=np.fromiter((r.op for r in rows), np.uint8, len(rows)),
            start_ts=np.fromiter((r.start_ts for r in rows), np.uint64, len(rows)),
            commit_ts=np.fromiter((r.commit_ts for r in rows), np.uint64, len(rows)),
            ttl=np.fromiter((r.ttl for r in rows), np.uint64, len(rows)),
            txn_size=np.fromiter((r.txn_size for r in rows), np.uint64, len(rows)),
            keys=[r.key for r in rows], values=[r.value for r in rows], primaries=[r.primary for r in rows])
    return pack_columns(
        types=np.fromiter((r.type for r in rows), np.uint8, len(rows)),
        ops=np.fromiter((r.op for r in rows), np.uint8, len(rows)),
        start_ts=np.fromiter((r.start_ts for r in rows), np.uint64, len(rows)),
        commit_ts=np.fromiter((r.commit_ts for r in rows), np.uint64, len(rows)),
        ttl=np.fromiter((r.ttl for r in rows), np.uint64, len(rows)),
        txn_size=np.fromiter((r.txn_size for r in rows), np.uint64, len(rows)),
        keys=[r.key for r in rows], values=[r.value for r in rows], primaries=[r.primary for r in rows],
        min_commit_ts=np.fromiter((r.min_commit_ts for r in rows), np.uint64, len(rows)),
        use_async_commit=np.fromiter((r.use_async_commit for r in rows), np.uint8, len(rows)),
        secondaries=[encode_secondaries(list(r.secondaries)) if r.secondaries else b"" for r in rows])


class PackedColumns(TypedDict, total=False):
    """``pack_columns``' columns, for a caller that passes them on."""

    types: Required[FixedColumn]
    ops: Required[FixedColumn]
    keys: Required[BinaryColumn]
    start_ts: FixedColumn
    commit_ts: FixedColumn
    values: BinaryColumn | None
    primaries: BinaryColumn | None
    ttl: FixedColumn
    txn_size: FixedColumn
    min_commit_ts: FixedColumn
    use_async_commit: FixedColumn
    secondaries: BinaryColumn | None


def pack_columns(*, types: FixedColumn, ops: FixedColumn, keys: BinaryColumn, start_ts: FixedColumn = 0,
                 commit_ts: FixedColumn = 0, values: BinaryColumn | None = None,
                 primaries: BinaryColumn | None = None, ttl: FixedColumn = 0, txn_size: FixedColumn = 0,
                 min_commit_ts: FixedColumn = 0, use_async_commit: FixedColumn = 0,
                 secondaries: BinaryColumn | None = None, out: binlog_pb2.RowBatch | None = None
                 ) -> binlog_pb2.RowBatch:
    """Column arrays -> one ``RowBatch``. ``keys`` fixes the row count; a scalar for a
    fixed-width column applies to every row; a column that is zero (or empty) for every row
    is left empty, as the format allows. ``secondaries`` items are
    ``codec.txn.encode_secondaries`` bytes (empty: none). ``out``: an empty RowBatch inside
    the message it goes into (``event.snapshot.batch``) to fill in place — protobuf copies a
    sub-message given to a constructor, slowly for megabytes (~2 us a row of a snapshot)."""
    n = len(keys)
    key_offsets, key_data = _binary_layout(keys, n, "keys")
    batch = binlog_pb2.RowBatch() if out is None else out
    batch.count = n
    batch.types = _fixed(types, n, np.uint8, "types")
    batch.ops = _fixed(ops, n, np.uint8, "ops")
    batch.start_ts = _fixed(start_ts, n, np.uint64, "start_ts")
    batch.key_offsets, batch.key_data = key_offsets, key_data
    for name, col in (("commit_ts", commit_ts), ("ttl", ttl), ("txn_size", txn_size), ("min_commit_ts", min_commit_ts)):
        if isinstance(col, int) and col == 0:  # the default: the column is left empty
            continue
        arr = np.broadcast_to(np.asarray(col, dtype=np.uint64), (n,))
        if arr.any():
            setattr(batch, name, _fixed(arr, n, np.uint64, name))
    flags = np.broadcast_to(np.asarray(use_async_commit, dtype=np.uint8), (n,))
    if not (isinstance(use_async_commit, int) and use_async_commit == 0) and flags.any():
        batch.async_commit = _fixed(flags, n, np.uint8, "use_async_commit")
    for prefix, col in (("value", values), ("primary", primaries), ("secondaries", secondaries)):
        if col is None:
            continue
        offsets, data = _binary_layout(col, n, prefix if prefix == "secondaries" else prefix + "s")
        if data:
            setattr(batch, prefix + "_offsets", offsets)
            setattr(batch, prefix + "_data", data)
    return batch


def _fixed(col: FixedColumn, n: int, dtype: type[np.generic], name: str) -> bytes:
    little = _LITTLE.get(dtype)
    if little is None:
        little = _LITTLE[dtype] = np.dtype(dtype).newbyteorder("<")
    if type(col) is np.ndarray and col.dtype == little and col.shape == (n,) and col.flags.c_contiguous:
        return col.tobytes()  # (a snapshot's and a match's columns: as they are)
    arr = np.asarray(col)
    if arr.ndim == 0:
        arr = np.broadcast_to(arr, (n,))
    if arr.shape != (n,):
        raise ValueError(f"{name}: {arr.shape[0] if arr.ndim else 1} items for {n} rows")
    return np.ascontiguousarray(arr, dtype=little).tobytes()


_LITTLE: dict[Any, np.dtype[Any]] = {}  # a fixed-width column's dtype -> its little-endian form


def _binary_layout(col: BinaryColumn, n: int, name: str) -> tuple[bytes, bytes]:
    """(offsets, data) of Arrow's binary layout for a column of ``n`` items."""
    if isinstance(col, np.ndarray) and col.ndim == 2:
        if col.shape[0] != n:
            raise ValueError(f"{name}: {col.shape[0]} items for {n} rows")
        width = col.shape[1]
        if n * width > _INT32_MAX:
            raise ValueError(f"{name}: {n * width} bytes do not fit one RowBatch (int32 offsets)")
        offsets = np.arange(0, (n + 1) * width, width, dtype="<i4") if width else np.zeros(n + 1, "<i4")
        return offsets.tobytes(), np.ascontiguousarray(col, dtype=np.uint8).tobytes()
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if len(arr) != n:
            raise ValueError(f"{name}: {len(arr)} items for {n} rows")
        if arr.null_count:
            raise ValueError(f"{name}: NULL items (a key or value is bytes, maybe empty)")
        if arr.type == pa.binary():  # int32 offsets: as they are, less the first (a slice's)
            offsets = np.frombuffer(arr.buffers()[1], dtype="<i4")[arr.offset:arr.offset + n + 1]
            base = int(offsets[0]) if n else 0
            data_buf = arr.buffers()[2]
            data = b"" if data_buf is None or not n else data_buf[base:int(offsets[-1])].to_pybytes()
            return (offsets - np.int32(base) if base else offsets).tobytes(), data
        arr = arr.cast(pa.large_binary())  # other offsets widened first
        offsets64 = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + n + 1]
        base = int(offsets64[0]) if n else 0
        data_buf = arr.buffers()[2]
        # only this slice's bytes: a slice of a large array must not copy all of its buffer
        data = b"" if data_buf is None or not n else data_buf[base:int(offsets64[-1])].to_pybytes()
        offsets64 = offsets64 - base
    else:
        items = list(col)
        if len(items) != n:
            raise ValueError(f"{name}: {len(items)} items for {n} rows")
        data = b"".join(items)
        offsets64 = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, items), np.int64, n), out=offsets64[1:])
    if len(data) > _INT32_MAX:
        raise ValueError(f"{name}: {len(data)} bytes do not fit one RowBatch (int32 offsets); split the event")
    return offsets64.astype("<i4").tobytes(), data


def _row_columns(rows: Sequence[binlog_pb2.Row]) -> RowColumns:
    n = len(rows)
    return RowColumns(
        types=np.fromiter((r.type for r in rows), np.uint8, n),
        ops=np.fromiter((r.op for r in rows), np.uint8, n),
        start_ts=np.fromiter((r.start_ts for r in rows), np.uint64, n),
        commit_ts=np.fromiter((r.commit_ts for r in rows), np.uint64, n),
        ttl=np.fromiter((r.ttl for r in rows), np.uint64, n),
        txn_size=np.fromiter((r.txn_size for r in rows), np.uint64, n),
        keys=pa.array([r.key for r in rows], type=pa.binary()),
        values=pa.array([r.value for r in rows], type=pa.binary()),
        primaries=pa.array([r.primary for r in rows], type=pa.binary()))


def _batch_fixed(batch: binlog_pb2.RowBatch, where: str, name: str, width: int, dtype: str,
                 optional: bool) -> np.ndarray:
    n = int(batch.count)
    raw = getattr(batch, name)
    if optional and not raw:
        return np.zeros(n, dtype=dtype)
    if len(raw) != n * width:
        allowed = " (or empty: 0 for every row)" if optional else ""
        raise MalformedRowBatchError(where, f"{name} holds {len(raw)} bytes, expected {width} x count {n} = "
                                            f"{n * width}{allowed}")
    return np.frombuffer(raw, dtype=dtype)


def _batch_binary(batch: binlog_pb2.RowBatch, where: str, name: str, optional: bool) -> pa.BinaryArray:
    n = int(batch.count)
    raw_offsets, data = getattr(batch, name + "_offsets"), getattr(batch, name + "_data")
    if (optional or n == 0) and not raw_offsets and not data:
        return _empty_binary(n)
    if len(raw_offsets) != 4 * (n + 1):
        raise MalformedRowBatchError(where, f"{name}_offsets holds {len(raw_offsets)} bytes, expected 4 x "
                                            f"(count {n} + 1) = {4 * (n + 1)}")
    first, last = _INT32.unpack_from(raw_offsets, 0)[0], _INT32.unpack_from(raw_offsets, 4 * n)[0]
    if first != 0 or last != len(data):
        raise MalformedRowBatchError(where, f"{name}_offsets run from {first} to {last}, "
                                            f"expected 0 to the {len(data)} bytes of {name}_data")
    arr = pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(raw_offsets), pa.py_buffer(data)])
    try:
        arr.validate(full=True)  # offsets non-decreasing (in C++; numpy only to name the row)
    except pa.ArrowInvalid:
        offsets = np.frombuffer(raw_offsets, dtype="<i4")
        row = int(np.flatnonzero(np.diff(offsets) < 0)[0])
        raise MalformedRowBatchError(where, f"{name}_offsets decrease at row {row} "
                                            f"({int(offsets[row])} -> {int(offsets[row + 1])})") from None
    return arr


@dataclass(frozen=True)
class LockColumns:
    """The async-commit fields of an Entries event's rows (``Row`` fields 10-12), in row order.
    A replica's store does not need them (a reader learns a transaction's async-commit state
    from its primary upstream); the mini cluster's replay of its own log does."""

    min_commit_ts: np.ndarray      # uint64
    use_async_commit: np.ndarray   # bool
    secondaries: pa.BinaryArray    # codec.txn.encode_secondaries bytes, empty = none


def lock_columns(entries: binlog_pb2.Entries, where: str = "") -> LockColumns:
    """The async-commit fields of ``entries`` (either form), validated as :func:`columns` does."""
    if not entries.HasField("batch"):
        rows = entries.rows
        return LockColumns(
            np.fromiter((r.min_commit_ts for r in rows), np.uint64, len(rows)),
            np.fromiter((r.use_async_commit for r in rows), np.bool_, len(rows)),
            pa.array([encode_secondaries(list(r.secondaries)) if r.secondaries else b"" for r in rows],
                     type=pa.binary()))
    return _batch_lock_columns(entries.batch, where)


def _batch_lock_columns(batch: binlog_pb2.RowBatch, where: str) -> LockColumns:
    flags = _batch_fixed(batch, where, "async_commit", 1, "u1", optional=True)
    if flags.size and int(flags.max()) > 1:
        row = int(np.flatnonzero(flags > 1)[0])
        raise MalformedRowBatchError(where, f"row {row} has async_commit {int(flags[row])}, not 0 or 1")
    return LockColumns(_batch_fixed(batch, where, "min_commit_ts", 8, "<u8", optional=True), flags.astype(np.bool_),
                       _batch_binary(batch, where, "secondaries", optional=True))


def _check_lock_fields(batch: binlog_pb2.RowBatch, where: str) -> None:
    """Refuse a batch whose async-commit arrays are malformed, without building them (the
    store's apply path has no use for them): lengths, flag values and the offsets' ends checked
    on the raw bytes (a few microseconds); anything off is handed to ``_batch_lock_columns``
    to name it. Offsets decreasing inside are caught where the arrays are read
    (``lock_columns``, ``iter_rows``)."""
    n = int(batch.count)
    mc, flags, offsets, data = batch.min_commit_ts, batch.async_commit, batch.secondaries_offsets, batch.secondaries_data
    ok = len(mc) in (0, 8 * n) and len(flags) in (0, n) and not flags.translate(None, b"\x00\x01")
    if ok and (offsets or data):
        ok = (len(offsets) == 4 * (n + 1) and _INT32.unpack_from(offsets, 0)[0] == 0
              and _INT32.unpack_from(offsets, 4 * n)[0] == len(data))
    if not ok:
        _batch_lock_columns(batch, where)


def batch_columns(batch: binlog_pb2.RowBatch, where: str = "") -> RowColumns:
    """The rows of one ``RowBatch`` (an Entries event's or a region snapshot's) as columns,
    validated and mapped without a copy."""
    return _batch_columns(batch, where)


def _batch_columns(batch: binlog_pb2.RowBatch, where: str) -> RowColumns:
    def fixed(name: str, width: int, dtype: str, optional: bool) -> np.ndarray:
        return _batch_fixed(batch, where, name, width, dtype, optional)

    def binary(name: str, optional: bool) -> pa.BinaryArray:
        return _batch_binary(batch, where, name, optional)

    types = fixed("types", 1, "u1", optional=False)
    ops = fixed("ops", 1, "u1", optional=False)
    # bytes.translate deleting every valid code leaves the invalid ones (a C loop, no NumPy)
    if batch.types.translate(None, _TYPE_CODES):
        row = int(np.flatnonzero(types > _MAX_TYPE)[0])
        raise MalformedRowBatchError(where, f"row {row} has type {int(types[row])}, not a Row.Type")
    if batch.ops.translate(None, _OP_CODES):
        row = int(np.flatnonzero(ops > _MAX_OP)[0])
        raise MalformedRowBatchError(where, f"row {row} has op {int(ops[row])}, not an OpType")
    if batch.min_commit_ts or batch.async_commit or batch.secondaries_offsets or batch.secondaries_data:
        _check_lock_fields(batch, where)  # a corrupt event is refused whole, these fields too
    return RowColumns(
        types=types, ops=ops,
        start_ts=fixed("start_ts", 8, "<u8", optional=False),
        commit_ts=fixed("commit_ts", 8, "<u8", optional=True),
        ttl=fixed("ttl", 8, "<u8", optional=True),
        txn_size=fixed("txn_size", 8, "<u8", optional=True),
        keys=binary("key", optional=False),
        values=binary("value", optional=True),
        primaries=binary("primary", optional=True))


def _empty_binary(n: int) -> pa.BinaryArray:
    """``n`` empty byte strings."""
    return pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(bytes(4 * (n + 1))), pa.py_buffer(b"")])


__all__ = ["LockColumns", "MalformedRowBatchError", "RowColumns", "RunColumns", "batch_columns", "columnar_entries",
           "columns",
           "iter_rows", "join_columns", "lock_columns", "pack_columns", "pack_rows", "row_count", "run_columns"]
