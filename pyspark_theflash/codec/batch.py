"""Many TiDB row values -> one Arrow RecordBatch, vectorised over rows.

The values are joined into one numpy byte buffer with a start offset per row. The common
case — rows of one length whose v2 headers (column ids and end offsets included) are all the
first row's: one writer, one schema version, fixed-width columns — is found by comparing each
row's header with the first row's as 8-byte words; then every value of a column sits at one
distance from its row start, and a fixed-width column is read from one strided view of the
rows (or one gather), with no per-row bounds, states or validity. Otherwise v2 headers are
read for all rows at once and rows are grouped by header shape (large flag, not-null count,
null count) and then by their column-id block, so each group has one fixed column layout.
Per output column that gives, for every row, the (start, end) of its value or "NULL" or
"absent" (origin default). Bytes at row offsets in arithmetic progression (rows of one length,
back to back) are read through a strided view rather than gathered, and copied as one
``V<width>`` item per row (about ten times faster than copying bytes). Values are then decoded per column with numpy over all rows:
integers by byte width, memcomparable floats by bit flips, strings by gathering bytes behind
Arrow offsets, packed times by bit arithmetic, DECIMAL(p<=18) by combining the MyDecimal
words in int64, ENUM/SET through a dictionary. JSON, wide DECIMALs, v1 rows and rows whose
header does not parse take the per-row path (`codec.row.decode_row`) and are merged back in
their original order; that path also raises the errors, naming the row index.

The columns read are a `codec.row_columns.RowColumns` (`schema.row_columns(table, columns)`
builds it from a table's schema). Types are exactly its `schema` (`schema.arrow_schema(table,
columns)`); values equal what `decode_row` gives, converted by `record_batch_from_rows` (the
per-row reference).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.codec import column_types as T
from pyspark_theflash.codec.errors import CodecError, ColumnValueOutOfRangeError
from pyspark_theflash.codec.row import (
    FLOAT32_MAX,
    decode_row,
    float_out_of_range,
    int_out_of_range,
    origin_default_value,
    value_from_v2,
)
from pyspark_theflash.codec.row_columns import RowColumn, RowColumns
from pyspark_theflash.codec.row_v2 import BadRowError, CODEC_VER, FLAG_CHECKSUM, FLAG_LARGE

_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_VALUE, _NULL, _ABSENT, _NOT_FAST = 0, 1, 2, 3
_US_PER_DAY = 86_400_000_000


class BatchDecodeError(BadRowError):
    """A row of a batch that cannot be decoded; the message names the row index."""


class BatchValueOutOfRangeError(BatchDecodeError, ColumnValueOutOfRangeError):
    """A value of a batch that its column's type cannot hold (see ``ColumnValueOutOfRangeError``):
    names the table, the row's index and handle, the column and the value, as ``decode_row``
    does for the same row. The decoder never writes a wrapped or zeroed value instead."""


def decode_rows_to_arrow(values: Sequence[bytes] | pa.Array | pa.ChunkedArray, handles: object,
                         columns: RowColumns, rows: np.ndarray | None = None) -> pa.RecordBatch:
    """Decode row values (v2 or v1) into a RecordBatch of `columns.schema`.

    `values` are bytes objects or a pyarrow binary array (read in place, without a copy).
    `rows`, when given, are the positions in `values` of the rows to decode, in output order
    (a selection without copying the values); `handles` then has one entry per selected row.

    `handles` are the int handles of the rows (used for the handle column, `columns.handle_id`;
    may be None when the table has none; errors name them).

    A value its column's type cannot hold raises `BatchValueOutOfRangeError` (where
    `decode_row` raises `ColumnValueOutOfRangeError`); other bad rows `BatchDecodeError`."""
    try:
        return _decode_rows(values, handles, columns, rows)
    except ColumnValueOutOfRangeError as e:
        n = len(values) if rows is None else len(rows)
        handle = None
        if e.row is not None and handles is not None and not columns.common_handle:
            given = np.asarray(handles)
            handle = int(given[e.row]) if given.shape == (n,) else None
        raise e.located(table=columns.label, handle=handle, rows=n, cls=BatchValueOutOfRangeError) from None


def _decode_rows(values: Sequence[bytes] | pa.Array | pa.ChunkedArray, handles: object, columns: RowColumns,
                 rows: np.ndarray | None) -> pa.RecordBatch:
    schema, cols = columns.schema, columns.columns
    n = len(values) if rows is None else len(rows)
    if n == 0:
        return pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema],
                                          schema=schema)
    if not cols:  # e.g. count(*): n rows of no columns
        return pa.RecordBatch.from_struct_array(pa.nulls(n, pa.struct([])))
    handle_id = columns.handle_id
    handle_arr = _handles_array(handles, n) if handle_id is not None else None

    buf, starts, lengths = _row_buffer(values)
    if rows is not None:
        starts, lengths = starts[rows], lengths[rows]

    shared = _shared_header(buf, starts, lengths)
    if shared is not None:
        return _decode_shared(buf, starts, shared, cols, schema, handle_id, handle_arr)
    layout = _parse_layouts(buf, starts, lengths, cols)
    fast = layout.rows  # indices of rows decoded vectorised
    slow = np.setdiff1d(np.arange(n), fast, assume_unique=True) if len(fast) < n else fast[:0]

    arrays: list[pa.Array] = []
    if len(fast):
        for j, (col, field) in enumerate(zip(cols, schema)):
            if handle_arr is not None and col.id == handle_id:
                arrays.append(_handle_column(col, field.type, handle_arr[fast], fast))
                continue
            arrays.append(_decode_column(buf, col, field.type, layout.start[j], layout.end[j],
                                         layout.state[j], fast))
        fast_batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    if not len(slow):
        return fast_batch
    slow_rows = []
    for i in slow.tolist():
        try:
            slow_rows.append(decode_row(buf[starts[i]:starts[i] + lengths[i]].tobytes(), columns,
                                        None if handle_arr is None else int(handle_arr[i])))
        except ColumnValueOutOfRangeError as e:
            raise e.located(row=i) from None
        except CodecError as e:
            raise BatchDecodeError(f"row {i} of {n} (table {columns.table_name}, id {columns.table_id}): "
                                   f"{e}") from e
    slow_batch = record_batch_from_rows(slow_rows, columns)
    if not len(fast):
        return slow_batch
    order = np.empty(n, dtype=np.int64)
    order[fast] = np.arange(len(fast))
    order[slow] = len(fast) + np.arange(len(slow))
    merged = pa.Table.from_batches([fast_batch, slow_batch]).combine_chunks()
    return merged.take(pa.array(order)).to_batches(max_chunksize=n)[0]


def _row_buffer(values: Sequence[bytes] | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One byte buffer holding every row value, with each row's start and length. A pyarrow
    binary array is used in place (no copy); a sequence of bytes is joined once."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if not (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)):
            raise BatchDecodeError(f"row values must be a binary array, got {values.type}")
        if values.null_count:
            k = int(np.flatnonzero(~np.asarray(values.is_valid()))[0])
            raise BatchDecodeError(f"row {k} of {len(values)} has a NULL value; a row value is bytes")
        width = np.int64 if pa.types.is_large_binary(values.type) else np.int32
        _, offsets_buf, data_buf = values.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=width)[values.offset:values.offset + len(values) + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        starts = offsets[:-1].astype(np.int64)
        return data, starts, np.diff(offsets).astype(np.int64)
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    starts = np.zeros(len(values), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return np.frombuffer(b"".join(values), dtype=np.uint8), starts, lengths


def record_batch_from_rows(rows: Sequence[Mapping[str, object]], columns: RowColumns) -> pa.RecordBatch:
    """The per-row path: `decode_row` dicts -> RecordBatch of `columns.schema`."""
    schema = columns.schema
    arrays = []
    for col, field in zip(columns.columns, schema):
        vals = [r[field.name] for r in rows]
        arrays.append(pa.array(_python_for_arrow(col, field.type, vals), type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _python_for_arrow(col: RowColumn, tp: pa.DataType, vals: list[Any]) -> list[Any]:
    """decode_row's Python values -> what pa.array accepts for the column's Arrow type."""
    if pa.types.is_decimal(tp) and col.tp not in T.DECIMAL_TYPES:
        return [None if v is None else Decimal(v) for v in vals]  # uint64 and BIT(64)
    if pa.types.is_string(tp) and col.tp in T.DECIMAL_TYPES:
        # DECIMAL beyond 38 digits: the plain digits TiDB prints (str() would give 0E-30)
        return [None if v is None else decimal_text(v) for v in vals]
    return vals


def decimal_text(v: Any) -> str:
    """A DECIMAL as TiDB prints it: plain digits, every digit of the scale ("0.000", "-1.50")."""
    d = Decimal(v)
    return format(d.copy_abs() if d.is_zero() else d, "f")


# ---------------------------------------------------------------------------------------------
# headers


class _Layouts:
    """Per output column j and fast row k: state[j][k] (value/null/absent), start/end bytes."""

    def __init__(self, rows: np.ndarray, start: list[np.ndarray], end: list[np.ndarray],
                 state: list[np.ndarray]) -> None:
        self.rows, self.start, self.end, self.state = rows, start, end, state


def _gather(buf: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """(len(at), width) bytes starting at each offset (all within buf; may be a read-only view
    of buf): ``_RowBytes`` of the offsets."""
    return _RowBytes(buf, at).at(0, width)


def _le(block: np.ndarray, width: int, signed: bool = False) -> np.ndarray:
    """Little-endian ints from a (k, m*width) byte block -> (k, m) (a view when it can be)."""
    dtype = np.dtype(f"<{'i' if signed else 'u'}{width}")
    if block.strides[-1] != 1:
        block = np.ascontiguousarray(block)
    return block.view(dtype).reshape(block.shape[0], -1)


def _packed(block: np.ndarray) -> np.ndarray:
    """A (k, width) byte block (e.g. a strided view of each row's bytes) copied to contiguous
    bytes, one width-byte item per row: copying items, not single bytes, is ~10x faster."""
    k, width = block.shape
    if width and block.strides[-1] == 1:
        return np.ascontiguousarray(block.view(f"V{width}")).view(np.uint8).reshape(k, width)
    return np.ascontiguousarray(block)


def _rows_equal_first(block: np.ndarray) -> bool:
    """Whether every row of a (k, width) byte block equals its first row."""
    k, width = block.shape
    if width >= 8 and block.strides[-1] == 1:
        # as 8-byte words (the last one overlapping): integer compares, not bytes or memcmp
        for at in (*range(0, width - 7, 8), width - 8):
            words = block[:, at:at + 8].view("<u8").reshape(k)
            if not (words == words[0]).all():
                return False
        return True
    return bool((block == block[0]).all())


def _parse_layouts(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                   cols: Sequence[RowColumn]) -> _Layouts:
    n = len(starts)
    cand = np.flatnonzero(lengths >= 6) if not (lengths >= 6).all() else np.arange(n)
    s = starts[cand]
    head = _gather(buf, s, 6)  # version, flags, not-null count, null count
    if len(cand) and _rows_equal_first(head):  # the common case: one header shape
        keep_all = head[0, 0] == CODEC_VER and (head[0, 1] & ~np.uint8(FLAG_LARGE | FLAG_CHECKSUM)) == 0
        if not keep_all:
            cand, s = cand[:0], s[:0]
        flags = np.broadcast_to(head[0, 1] if keep_all else np.uint8(0), (len(cand),))
        nn0, nu0 = int(head[0, 2]) | int(head[0, 3]) << 8, int(head[0, 4]) | int(head[0, 5]) << 8
        shape_key = np.broadcast_to(np.int64((int(head[0, 1] & FLAG_LARGE) << 40) | (nn0 << 20) | nu0),
                                    (len(cand),))
    else:
        ver, flags = head[:, 0], head[:, 1]
        keep = (ver == CODEC_VER) & ((flags & ~np.uint8(FLAG_LARGE | FLAG_CHECKSUM)) == 0)
        cand, s, flags, head = cand[keep], s[keep], flags[keep], head[keep]
        nn = head[:, 2].astype(np.int64) | (head[:, 3].astype(np.int64) << 8)
        nu = head[:, 4].astype(np.int64) | (head[:, 5].astype(np.int64) << 8)
        large = (flags & FLAG_LARGE).astype(np.int64)
        shape_key = (large << 40) | (nn << 20) | nu
    ncols = len(cols)
    col_ids = np.array([c.id for c in cols], dtype=np.int64)

    # Per output column, for all n rows: state (_NOT_FAST until a layout claims the row),
    # start and end byte of the value in buf. Allocated only when more than one layout is seen.
    state = start = end = None

    shapes, shape_of = _group(shape_key)
    for g, key in enumerate(shapes.tolist()):
        sel = np.flatnonzero(shape_of == g) if len(shapes) > 1 else slice(None)
        is_large = bool(key >> 40)
        n_nn, n_nu = (key >> 20) & 0xFFFFF, key & 0xFFFFF
        id_size, off_size = (4, 4) if is_large else (1, 2)
        n_ids = n_nn + n_nu
        rows_g, s_g, flags_g = cand[sel], s[sel], flags[sel]
        values_start = 6 + n_ids * id_size + n_nn * off_size
        fits = lengths[rows_g] >= values_start
        if not fits.all():
            rows_g, s_g, flags_g = rows_g[fits], s_g[fits], flags_g[fits]
        if not len(rows_g):
            continue
        # column ids and end offsets of every row in one gather
        block = _gather(buf, s_g + 6, values_start - 6)
        raw_ids, raw_offs = block[:, :n_ids * id_size], block[:, n_ids * id_size:]
        offs = _le(raw_offs, off_size).astype(np.int64) if n_nn \
            else np.zeros((len(rows_g), 0), dtype=np.int64)
        # validate: offsets non-decreasing, values (+ checksum) end exactly at the row's end
        last = offs[:, -1] if n_nn else np.zeros(len(rows_g), dtype=np.int64)
        good: np.ndarray = np.ones(len(rows_g), bool)
        if n_nn > 1:
            down = offs[:, 1:] < offs[:, :-1]
            if down.any():
                good = np.logical_not(down.any(axis=1))
        expect = values_start + last
        has_ck = (flags_g & FLAG_CHECKSUM) != 0
        if has_ck.any():
            ck_at = np.minimum(s_g + expect, len(buf) - 1)
            ck = buf[ck_at]
            ck_ok = ((ck & 0x07) <= 2) & ((ck & 0xF0) == 0)
            expect = expect + np.where(has_ck, 1 + np.where(ck & 0x08, 8, 4), 0)
            good &= ~has_ck | ck_ok
        good &= expect == lengths[rows_g]
        if not good.all():
            rows_g, s_g, raw_ids, offs = rows_g[good], s_g[good], raw_ids[good], offs[good]
        if not len(rows_g):
            continue
        # group by the column-id block; usually one layout per shape (same bytes in every row)
        if n_ids == 0 or _rows_equal_first(raw_ids):
            layouts = _le(raw_ids[:1], id_size).astype(np.int64) if n_ids else np.zeros((1, 0), np.int64)
            layout_of = None
        else:
            layouts, layout_of = _group_rows(_le(raw_ids, id_size).astype(np.int64))
        if layout_of is None and len(rows_g) == n:
            # Every row has this one layout (so rows_g is 0..n-1): each column's value bounds
            # are rows of one (n_nn + 1, n) array of absolute offsets, nothing to scatter.
            return _one_layout(layouts[0], n_nn, s_g + values_start, offs, col_ids)
        if state is None or start is None or end is None:  # all three or none
            state = np.full((ncols, n), _NOT_FAST, dtype=np.uint8)
            start = np.zeros((ncols, n), dtype=np.int64)
            end = np.zeros((ncols, n), dtype=np.int64)
        for li, id_row in enumerate(layouts):
            lsel = np.flatnonzero(layout_of == li) if layout_of is not None else slice(None)
            rows_sel, base = rows_g[lsel], s_g[lsel] + values_start
            offs_l = offs[lsel]
            # every row (rows_sel is then 0..n-1): slices, not fancy indexing
            rows_l: np.ndarray | slice = slice(None) if len(rows_sel) == n else rows_sel
            pos = {int(cid): k for k, cid in enumerate(id_row.tolist())}
            for j, cid in enumerate(col_ids.tolist()):
                k = pos.get(cid)
                if k is None:
                    state[j, rows_l] = _ABSENT
                elif k >= n_nn:
                    state[j, rows_l] = _NULL
                else:
                    state[j, rows_l] = _VALUE
                    start[j, rows_l] = base + (offs_l[:, k - 1] if k else 0)
                    end[j, rows_l] = base + offs_l[:, k]
    if state is None or start is None or end is None:  # no row has a fast layout
        empty = np.zeros(0, dtype=np.int64)
        return _Layouts(empty, [empty] * ncols, [empty] * ncols, [np.zeros(0, np.uint8)] * ncols)
    if ncols == 0:
        rows = cand
    else:
        rows = np.flatnonzero(state[0] != _NOT_FAST)
        if len(rows) < n:
            state, start, end = state[:, rows], start[:, rows], end[:, rows]
    return _Layouts(rows, list(start), list(end), list(state))


class _SharedHeader:
    """The v2 header every row of a batch carries byte for byte (column ids and end offsets
    included), validated once: value k of every row lies at ``span(k)`` from the row start."""

    def __init__(self, ids: np.ndarray, n_nn: int, values_start: int, offs: np.ndarray) -> None:
        self.pos = {int(cid): k for k, cid in enumerate(ids.tolist())}
        self.n_nn, self.values_start, self.offs = n_nn, values_start, offs

    def span(self, k: int) -> tuple[int, int]:
        return self.values_start + (int(self.offs[k - 1]) if k else 0), self.values_start + int(self.offs[k])


def _shared_header(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> _SharedHeader | None:
    """The header of rows of one length whose v2 headers are all the first row's — every
    column of fixed width, e.g. ints, floats, dates, CHARs (one writer, one schema version: the
    common case). None when the rows are not like that (or carry a checksum, or the header is
    bad: the general path then sends the rows to decode_row, which says why)."""
    n = len(starts)
    if not n or int(lengths[0]) < 6 or not (lengths == lengths[0]).all():
        return None
    length, first = int(lengths[0]), int(starts[0])
    ver, flags = int(buf[first]), int(buf[first + 1])
    if ver != CODEC_VER or flags & ~FLAG_LARGE:
        return None
    n_nn = int(buf[first + 2]) | int(buf[first + 3]) << 8
    n_nu = int(buf[first + 4]) | int(buf[first + 5]) << 8
    id_size, off_size = (4, 4) if flags & FLAG_LARGE else (1, 2)
    n_ids = n_nn + n_nu
    values_start = 6 + n_ids * id_size + n_nn * off_size
    if length < values_start:
        return None
    rows = _RowBytes(buf, starts)
    header = rows.at(0, values_start)
    if not _rows_equal_first(header):
        return None
    row = header[:1]
    ids = _le(row[:, 6:6 + n_ids * id_size], id_size).astype(np.int64)[0] if n_ids else np.zeros(0, np.int64)
    offs = _le(row[:, 6 + n_ids * id_size:], off_size).astype(np.int64)[0] if n_nn else np.zeros(0, np.int64)
    if (n_nn and (np.diff(offs) < 0).any()) or values_start + (int(offs[-1]) if n_nn else 0) != length:
        return None
    return _SharedHeader(ids, n_nn, values_start, offs)


class _RowBytes:
    """Bytes at one distance from every row start. Rows at offsets in arithmetic progression
    (rows of one length back to back, the common case) give a strided view, no copy; others
    index a 1-D array of `width`-byte items that overlap in buf (one index per value, not per
    byte; about twice as fast as indexing the rows of a 2-D window view). The progression is
    checked once for all the columns read."""

    def __init__(self, buf: np.ndarray, starts: np.ndarray) -> None:
        self.buf, self.starts = buf, starts
        self.step: int | None = None
        k = len(starts)
        if k > 2:
            first, step = int(starts[0]), int(starts[1] - starts[0])
            if step > 0 and int(starts[-1]) == first + step * (k - 1) and (np.diff(starts) == step).all():
                self.step = step

    def at(self, offset: int, width: int) -> np.ndarray:
        """(rows, width) bytes starting ``offset`` bytes into each row (may be a read-only view)."""
        k, buf = len(self.starts), self.buf
        if width == 0 or k == 0:
            return np.zeros((k, width), dtype=np.uint8)
        if self.step is not None:
            return np.ndarray((k, width), dtype=np.uint8, buffer=buf, offset=int(self.starts[0]) + offset,
                              strides=(self.step, 1))
        items = np.ndarray((len(buf) - width + 1,), dtype=f"V{width}", buffer=buf, strides=(1,))
        out: np.ndarray = items[self.starts + offset if offset else self.starts].view(np.uint8).reshape(k, width)
        return out


def _decode_shared(buf: np.ndarray, starts: np.ndarray, shared: _SharedHeader, cols: Sequence[RowColumn],
                   schema: pa.Schema, handle_id: int | None, handles: np.ndarray | None) -> pa.RecordBatch:
    """Rows sharing one header: each column's values sit at one distance from the row start
    and have one width, so a column of a fixed-width type is read from one strided view and
    needs no per-row bounds, states or validity; the other columns take ``_decode_column``."""
    n = len(starts)
    rows = _RowBytes(buf, starts)
    every = np.arange(n)
    arrays: list[pa.Array] = []
    for col, field in zip(cols, schema):
        if col.id == handle_id:
            assert handles is not None
            arrays.append(_handle_column(col, field.type, handles, every))
            continue
        k = shared.pos.get(col.id)
        if k is not None and k < shared.n_nn:
            lo, hi = shared.span(k)
            arr = _fixed_slot(rows.at(lo, hi - lo), col, field.type, every)
            if arr is None:
                arr = _decode_column(buf, col, field.type, starts + lo, starts + hi,
                                     np.full(n, _VALUE, dtype=np.uint8), every)
        else:
            state = np.full(n, _ABSENT if k is None else _NULL, dtype=np.uint8)
            arr = _decode_column(buf, col, field.type, every, every, state, every)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _fixed_slot(block: np.ndarray, col: RowColumn, tp: pa.DataType, rows: np.ndarray) -> pa.Array | None:
    """One column's values, not NULL and all ``block.shape[1]`` bytes wide, decoded from the
    (rows, width) bytes; None for a type or width without this path (``_decode_column`` then
    decodes, or says what is wrong)."""
    width = block.shape[1]
    t = col.tp
    if t in T.INTEGER_TYPES or t == T.TYPE_YEAR or t == T.TYPE_BIT:
        if width not in (1, 2, 4, 8):
            return None
        signed = not col.unsigned and t != T.TYPE_BIT
        v = _le(block, width, signed).reshape(-1).astype(np.int64 if signed else np.uint64, copy=False)
        return _int_to_arrow(v, None, tp, col, rows) if signed else _unsigned_to_arrow(v, None, tp, col, rows)
    if t in T.FLOAT_TYPES and width == 8:
        return _float_array(_memcomparable_floats(block), None, tp, col, rows)
    if t in T.STRING_TYPES or t == T.TYPE_GEOMETRY:
        n = block.shape[0]
        offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64) if width else np.zeros(n + 1, np.int64)
        return _binary_as(_packed(block).reshape(-1), offsets, None, 0, tp)
    return None


def _shared_layout(id_row: np.ndarray, n_nn: int, col_ids: Sequence[int], n: int,
                   span: Callable[[int], tuple[np.ndarray, np.ndarray]]) -> _Layouts:
    """The layouts of n rows sharing one column-id block ``id_row`` (the first ``n_nn`` ids not
    null): per wanted column, ``span(k)`` = (starts, ends) of the rows' k-th value, or NULL, or
    absent (origin default)."""
    pos = {int(cid): k for k, cid in enumerate(id_row.tolist())}
    zeros = np.zeros(n, dtype=np.int64)
    start, end, state = [], [], []
    for cid in col_ids:
        k = pos.get(int(cid))
        if k is not None and k < n_nn:
            lo, hi = span(k)
            start.append(lo)
            end.append(hi)
            state.append(np.full(n, _VALUE, dtype=np.uint8))
        else:
            start.append(zeros)
            end.append(zeros)
            state.append(np.full(n, _ABSENT if k is None else _NULL, dtype=np.uint8))
    return _Layouts(np.arange(n), start, end, state)


def _one_layout(id_row: np.ndarray, n_nn: int, base: np.ndarray, offs: np.ndarray,
                col_ids: np.ndarray) -> _Layouts:
    """The layouts of n rows that all share one column-id block: value k of row i spans
    [bounds[k, i], bounds[k + 1, i]) with bounds[0] = the row's values start."""
    n = len(base)
    bounds = np.empty((n_nn + 1, n), dtype=np.int64)
    bounds[0] = base
    np.add(offs.T, base, out=bounds[1:])
    return _shared_layout(id_row, n_nn, col_ids.tolist(), n, lambda k: (bounds[k], bounds[k + 1]))


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_inverse=True) with a fast path for all-equal keys."""
    if len(keys) and (keys == keys[0]).all():
        return keys[:1], np.zeros(len(keys), dtype=np.int64)
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.reshape(-1)


_HASH_MULTIPLIERS = np.random.default_rng(20240521).integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)


def _group_rows(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a 2-D int block and each row's group: hash the rows to uint64 and group
    the hashes (np.unique(axis=0) sorts void records and is far slower), then verify exactly."""
    m, w = block.shape
    if w == 0:
        return np.zeros((1, 0), dtype=block.dtype), np.zeros(m, dtype=np.int64)
    if (block == block[0]).all():
        return block[:1], np.zeros(m, dtype=np.int64)
    mult = _HASH_MULTIPLIERS[:w] if w <= len(_HASH_MULTIPLIERS) else None
    if mult is not None:
        with np.errstate(over="ignore"):
            h = (block.astype(np.uint64) * mult).sum(axis=1, dtype=np.uint64)
        uniq, first, inv = np.unique(h, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        layouts = block[first]
        if (layouts[inv] == block).all():  # no hash collision
            return layouts, inv
    layouts, inv = np.unique(block, axis=0, return_inverse=True)
    return layouts, inv.reshape(-1)


def _handles_array(handles: object, n: int) -> np.ndarray:
    if handles is None:
        raise BatchDecodeError("the table's primary key is the row handle, so decode_rows_to_arrow "
                               "needs the handles of the rows; got None")
    arr = np.asarray(handles, dtype=np.int64)
    if arr.shape != (n,):
        raise BatchDecodeError(f"got {arr.shape[0] if arr.ndim else 0} handle(s) for {n} row value(s)")
    return arr


# ---------------------------------------------------------------------------------------------
# columns


def _validity(valid: np.ndarray | None) -> tuple[pa.Buffer | None, int]:
    """Arrow's validity bitmap and null count of ``valid`` (None: every value present)."""
    if valid is None:
        return None, 0
    nulls = int(len(valid) - np.count_nonzero(valid))
    if nulls == 0:
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), nulls


def _fixed_array(tp: pa.DataType, data: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    validity, nulls = _validity(valid)
    return pa.Array.from_buffers(tp, len(data), [validity, pa.py_buffer(np.ascontiguousarray(data))],
                                 null_count=nulls)


def _handle_column(col: RowColumn, tp: pa.DataType, handles: np.ndarray, rows: np.ndarray) -> pa.Array:
    if col.unsigned:
        return _unsigned_to_arrow(handles.view(np.uint64), None, tp, col, rows)
    return _int_to_arrow(handles, None, tp, col, rows)


def _int_to_arrow(v: np.ndarray, valid: np.ndarray | None, tp: pa.DataType, col: RowColumn,
                  rows: np.ndarray) -> pa.Array:
    """int64/uint64 values as ``tp`` (an Arrow int type); a value ``tp`` cannot hold raises
    (``rows``: the batch row of each value, for the error) rather than wrapping."""
    dtype = np.dtype(tp.to_pandas_dtype())
    if v.dtype != dtype and len(v):
        info = np.iinfo(dtype)
        # invalid (NULL) slots hold 0, which every int type holds
        if int(v.max()) > info.max or (v.dtype.kind == "i" and int(v.min()) < info.min):
            bad = (v > info.max) if v.dtype.kind == "u" else (v < info.min) | (v > info.max)
            if valid is not None:
                bad &= valid
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise int_out_of_range(col, int(v[k])).located(row=int(rows[k]))
    return _fixed_array(tp, v.astype(dtype, copy=False), valid)


def _unsigned_to_arrow(v: np.ndarray, valid: np.ndarray | None, tp: pa.DataType, col: RowColumn,
                       rows: np.ndarray) -> pa.Array:
    if pa.types.is_decimal(tp):  # BIGINT UNSIGNED / BIT(64): 128-bit little-endian, high word 0
        words = np.zeros((len(v), 2), dtype=np.uint64)
        words[:, 0] = v if valid is None else np.where(valid, v, 0)
        return _fixed_array(tp, words, valid)
    return _int_to_arrow(v, valid, tp, col, rows)


def _float_array(f: np.ndarray, valid: np.ndarray | None, tp: pa.DataType, col: RowColumn,
                 rows: np.ndarray) -> pa.Array:
    """float64 values as ``tp``; for float32 (FLOAT) a finite value beyond its range raises."""
    if pa.types.is_float32(tp):
        big = np.abs(f) > FLOAT32_MAX
        if big.any():
            big &= np.isfinite(f)
            if valid is not None:
                big &= valid
            if big.any():
                k = int(np.flatnonzero(big)[0])
                raise float_out_of_range(col, float(f[k])).located(row=int(rows[k]))
        f = f.astype(np.float32)
    return _fixed_array(tp, f, valid)


def _read_ints(buf: np.ndarray, start: np.ndarray, length: np.ndarray, valid: np.ndarray,
               signed: bool, col: RowColumn, rows: np.ndarray) -> np.ndarray:
    """Ints stored little-endian in 1/2/4/8 bytes -> int64 (signed) or uint64."""
    all_valid = bool(valid.all())
    if all_valid and len(length):
        width = int(length[0])
        if width in (1, 2, 4, 8) and (length == width).all():  # one width, no NULLs: one gather
            return _le(_gather(buf, start, width), width, signed).reshape(-1).astype(
                np.int64 if signed else np.uint64, copy=False)
    out = np.zeros(len(start), dtype=np.int64 if signed else np.uint64)
    handled = ~valid
    for width in (1, 2, 4, 8):
        sel = np.flatnonzero(valid & (length == width))
        if not len(sel):
            continue
        handled[sel] = True
        vals = _le(_gather(buf, start[sel], width), width, signed).reshape(-1)
        out[sel] = vals
    if not handled.all():
        k = int(np.flatnonzero(~handled)[0])
        raise BatchDecodeError(f"row {int(rows[k])}: column {col.name} (id {col.id}, {col.type_name}) "
                               f"has a {int(length[k])}-byte integer value; row v2 uses 1, 2, 4 or 8")
    return out


def _decode_column(buf: np.ndarray, col: RowColumn, tp: pa.DataType, start: np.ndarray,
                   end: np.ndarray, state: np.ndarray, rows: np.ndarray) -> pa.Array:
    valid = state == _VALUE
    length = end - start
    t = col.tp
    if t in T.INTEGER_TYPES or t == T.TYPE_YEAR or t == T.TYPE_BIT:
        signed = not col.unsigned and t != T.TYPE_BIT
        v = _read_ints(buf, start, length, valid, signed, col, rows)
        arr = _int_to_arrow(v, valid, tp, col, rows) if signed else _unsigned_to_arrow(v, valid, tp, col, rows)
    elif t in T.FLOAT_TYPES:
        arr = _floats(buf, start, length, valid, col, rows, tp)
    elif t in (T.TYPE_DATE, T.TYPE_NEWDATE, T.TYPE_DATETIME, T.TYPE_TIMESTAMP):
        packed = _read_ints(buf, start, length, valid, False, col, rows)
        arr = _times(packed, valid, col, tp)
    elif t == T.TYPE_DURATION:
        ns = _read_ints(buf, start, length, valid, True, col, rows)
        us = np.where(ns < 0, -((-ns) // 1000), ns // 1000)
        arr = _fixed_array(tp, us, valid)
    elif t in T.STRING_TYPES or t == T.TYPE_GEOMETRY:
        arr = _strings(buf, start, length, valid, col, tp)
    elif t == T.TYPE_ENUM:
        idx = _read_ints(buf, start, length, valid, False, col, rows)
        arr = _enums(idx, valid, col, rows)
    elif t == T.TYPE_SET:
        mask = _read_ints(buf, start, length, valid, False, col, rows)
        arr = _sets(mask, valid, col, rows)
    elif t in T.DECIMAL_TYPES and pa.types.is_decimal(tp):
        arr = _decimals(buf, start, length, valid, col, tp, rows)
    else:  # JSON, wide decimals: per value
        arr = _per_value(buf, start, end, valid, col, tp, rows)
    absent = state == _ABSENT
    if absent.any():
        default = origin_default_value(col)
        if default is not None:
            (scalar,) = _python_for_arrow(col, tp, [default])
            arr = pc.if_else(pa.array(absent), pa.scalar(scalar, type=tp), arr)
    return arr


def _floats(buf: np.ndarray, start: np.ndarray, length: np.ndarray, valid: np.ndarray,
            col: RowColumn, rows: np.ndarray, tp: pa.DataType) -> pa.Array:
    bad = valid & (length != 8)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise BatchDecodeError(f"row {int(rows[k])}: column {col.name} (id {col.id}) has a "
                               f"{int(length[k])}-byte float value; row v2 uses 8")
    if valid.all():
        f = _memcomparable_floats(_gather(buf, start, 8))
    else:
        f = np.zeros(len(start), dtype=np.float64)
        sel = np.flatnonzero(valid)
        if len(sel):
            f[sel] = _memcomparable_floats(_gather(buf, start[sel], 8))
    return _float_array(f, valid, tp, col, rows)


def _memcomparable_floats(block: np.ndarray) -> np.ndarray:
    """(k, 8) bytes of codec.EncodeFloat -> k float64: big-endian bits whose sign bit was
    flipped (for a positive value) or every bit (for a negative one)."""
    u = (block if block.strides[-1] == 1 else np.ascontiguousarray(block)).view(">u8").reshape(-1).astype(np.uint64)
    mask = u >> np.uint64(63)  # 1: was positive -> clear the sign bit; 0: was negative -> flip all
    mask -= np.uint64(1)
    mask |= np.uint64(1 << 63)
    u ^= mask
    return u.view(np.float64)


def _strings(buf: np.ndarray, start: np.ndarray, length: np.ndarray, valid: np.ndarray,
             col: RowColumn, tp: pa.DataType) -> pa.Array:
    lens = np.where(valid, length, 0)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    total = int(offsets[-1])
    if len(lens) and valid.all() and (lens == lens[0]).all():
        # every value has the same width (CHAR-like): one strided gather, no per-byte index
        data = _packed(_gather(buf, start, int(lens[0]))).reshape(-1)
    else:
        idx = np.repeat(start - offsets[:-1], lens) + np.arange(total, dtype=np.int64)
        data = buf[idx]
    validity, nulls = _validity(valid)
    return _binary_as(data, offsets, validity, nulls, tp)


def _binary_as(data: np.ndarray, offsets: np.ndarray, validity: pa.Buffer | None, nulls: int,
               tp: pa.DataType) -> pa.Array:
    """Bytes behind int64 ``offsets`` as an Arrow array of ``tp`` (binary, or text: invalid
    UTF-8 is replaced as decode_row does)."""
    big = int(offsets[-1]) > np.iinfo(np.int32).max
    buffers = [validity, pa.py_buffer(offsets if big else offsets.astype(np.int32)), pa.py_buffer(data)]
    if not pa.types.is_binary(tp) and (not len(data) or int(data.max()) < 0x80):
        # ASCII is valid UTF-8: text without a validating cast
        arr = pa.Array.from_buffers(pa.large_string() if big else pa.string(), len(offsets) - 1, buffers,
                                    null_count=nulls)
        return arr if arr.type == tp else arr.cast(tp)
    arr = pa.Array.from_buffers(pa.large_binary() if big else pa.binary(), len(offsets) - 1, buffers,
                                null_count=nulls)
    if pa.types.is_binary(tp):
        return arr.cast(tp) if big else arr
    try:
        return arr.cast(pa.large_string() if big else pa.string()).cast(tp)
    except pa.ArrowInvalid:  # invalid UTF-8: replace as decode_row does
        vals = [None if v is None else v.decode("utf-8", errors="replace") for v in arr.to_pylist()]
        return pa.array(vals, type=tp)


def _times(packed: np.ndarray, valid: np.ndarray, col: RowColumn, tp: pa.DataType) -> pa.Array:
    p = packed.astype(np.uint64)
    us = (p & np.uint64(0xFFFFFF)).astype(np.int64)
    ymdhms = p >> np.uint64(24)
    hms = (ymdhms & np.uint64(0x1FFFF)).astype(np.int64)
    ymd = (ymdhms >> np.uint64(17)).astype(np.int64)
    day = ymd & 0x1F
    ym = ymd >> 5
    year, month = ym // 13, ym % 13
    hour, minute, second = hms >> 12, (hms >> 6) & 0x3F, hms & 0x3F
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    mdays = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)[month]
    mdays = mdays + ((month == 2) & leap)
    real = (valid & (year >= 1) & (year <= 9999) & (month >= 1) & (day >= 1) & (day <= mdays)
            & (hour < 24) & (minute < 60) & (second < 60) & (us < 1_000_000))
    days = _days_from_civil(np.where(real, year, 1970), np.where(real, month, 1),
                            np.where(real, day, 1))
    if pa.types.is_date32(tp):
        return _fixed_array(tp, days.astype(np.int32), real)
    ts = days * _US_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1_000_000 + us
    return _fixed_array(tp, np.where(real, ts, 0), real)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days: np.ndarray = era * 146097 + doe - 719468
    return days


def _enums(idx: np.ndarray, valid: np.ndarray, col: RowColumn, rows: np.ndarray) -> pa.Array:
    bad = valid & (idx > len(col.elems))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise BatchDecodeError(f"row {int(rows[k])}: ENUM column {col.name} (id {col.id}) holds "
                               f"index {int(idx[k])}, but it has {len(col.elems)} element(s)")
    dictionary = pa.array([""] + list(col.elems), type=pa.string())
    indices = pa.array(np.where(valid, idx, 0).astype(np.int32), mask=~valid)
    return pa.DictionaryArray.from_arrays(indices, dictionary).dictionary_decode()


def _sets(mask: np.ndarray, valid: np.ndarray, col: RowColumn, rows: np.ndarray) -> pa.Array:
    n_el = len(col.elems)
    bad = valid & ((mask >> np.uint64(n_el)) != 0) if n_el < 64 else np.zeros(len(mask), bool)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise BatchDecodeError(f"row {int(rows[k])}: SET column {col.name} (id {col.id}) holds "
                               f"bitmask {int(mask[k]):#x}, beyond its {n_el} element(s)")
    uniq, inv = np.unique(np.where(valid, mask, 0), return_inverse=True)
    names = [",".join(e for i, e in enumerate(col.elems) if int(m) >> i & 1) for m in uniq.tolist()]
    indices = pa.array(inv.reshape(-1).astype(np.int32), mask=~valid)
    return pa.DictionaryArray.from_arrays(indices, pa.array(names, type=pa.string())).dictionary_decode()


def _decimals(buf: np.ndarray, start: np.ndarray, length: np.ndarray, valid: np.ndarray,
              col: RowColumn, tp: pa.DataType, rows: np.ndarray) -> pa.Array:
    """DECIMAL(p<=38, s) stored with the column's own precision and frac: the MyDecimal words
    combined into the unscaled value (int64 for p <= 18, else a (hi, lo) uint64 pair), written
    as decimal128's little-endian two's complement; other rows go per value."""
    p, s = tp.precision, tp.scale
    digits_int = p - s
    w_int, lead = divmod(digits_int, 9)
    w_frac, trail = divmod(s, 9)
    size = _DIG2BYTES[lead] + 4 * w_int + 4 * w_frac + _DIG2BYTES[trail]
    sel = np.flatnonzero(valid)
    head_ok = np.zeros(len(start), bool)
    if len(sel):
        hdr = _gather(buf, start[sel], 2)
        head_ok[sel] = (hdr[:, 0] == p) & (hdr[:, 1] == s) & (length[sel] == 2 + size)
    fast = np.flatnonzero(head_ok)
    words = np.zeros((len(start), 2), dtype=np.uint64)
    if len(fast):
        raw = _gather(buf, start[fast] + 2, size).astype(np.int64)
        negative = (raw[:, 0] & 0x80) == 0
        raw[:, 0] ^= 0x80
        raw = np.where(negative[:, None], raw ^ 0xFF, raw)
        chunks = ([(_DIG2BYTES[lead], lead)] if lead else []) + [(4, 9)] * (w_int + w_frac) \
            + ([(_DIG2BYTES[trail], trail)] if trail else [])
        wide = p > 18
        val = np.zeros(len(fast), dtype=np.int64)
        hi = lo = np.zeros(len(fast), dtype=np.uint64)
        pos = 0
        for nbytes, ndig in chunks:
            word = np.zeros(len(fast), dtype=np.int64)
            for b in range(nbytes):
                word = (word << 8) | raw[:, pos + b]
            pos += nbytes
            if (word >= 10 ** ndig).any():
                k = int(fast[np.flatnonzero(word >= 10 ** ndig)[0]])
                raise BatchDecodeError(f"row {int(rows[k])}: DECIMAL column {col.name} (id {col.id}) "
                                       f"has a MyDecimal word above {ndig} digits")
            if wide:
                hi, lo = _mul_add_u128(hi, lo, 10 ** ndig, word.astype(np.uint64))
            else:
                val = val * 10 ** ndig + word
        if wide:
            neg_lo = ~lo + np.uint64(1)
            neg_hi = ~hi + (neg_lo == 0).astype(np.uint64)
            words[fast, 0] = np.where(negative, neg_lo, lo)
            words[fast, 1] = np.where(negative, neg_hi, hi)
        else:
            unscaled = np.where(negative, -val, val)
            words[fast, 0] = unscaled.view(np.uint64)
            words[fast, 1] = (unscaled >> 63).view(np.uint64)
    arr = _fixed_array(tp, words, head_ok)
    other = valid & ~head_ok
    if other.any():
        odd = _per_value(buf, start, start + length, other, col, tp, rows)
        arr = pc.if_else(pa.array(other), odd, arr)
    return arr


_MASK32 = np.uint64(0xFFFFFFFF)


def _mul_add_u128(hi: np.ndarray, lo: np.ndarray, m: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) * m + w in 128-bit unsigned arithmetic, for m, w < 2**32 (uint64 arrays wrap)."""
    mm = np.uint64(m)
    p0 = (lo & _MASK32) * mm  # < 2**62
    p1 = (lo >> np.uint64(32)) * mm  # < 2**62
    t = p0 + ((p1 & _MASK32) << np.uint64(32))
    carry = (t < p0).astype(np.uint64) + (p1 >> np.uint64(32))
    t2 = t + w
    carry += (t2 < t).astype(np.uint64)
    return hi * mm + carry, t2


def _per_value(buf: np.ndarray, start: np.ndarray, end: np.ndarray, valid: np.ndarray,
               col: RowColumn, tp: pa.DataType, rows: np.ndarray) -> pa.Array:
    """Rare types (JSON, wide or re-scaled DECIMAL): decode each value with codec.row."""
    data = buf.tobytes() if len(buf) < 1 << 16 else buf.data  # ndarray.data: memoryview(buf)
    vals: list[object] = [None] * len(start)
    for k in np.flatnonzero(valid).tolist():
        try:
            vals[k] = value_from_v2(col, bytes(data[int(start[k]):int(end[k])]))
        except ColumnValueOutOfRangeError as e:
            raise e.located(row=int(rows[k])) from None
        except CodecError as e:
            raise BatchDecodeError(f"row {int(rows[k])}: {e}") from e
    return pa.array(_python_for_arrow(col, tp, vals), type=tp)


__all__ = ["BatchDecodeError", "decode_rows_to_arrow", "record_batch_from_rows"]
