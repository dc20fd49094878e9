"""Vectorised encoders: columns of values -> TiDB bytes, one Arrow binary array per column.

The inverse of ``codec.batch`` (which decodes many rows at once): the same byte forms as the
per-value encoders (``row_v2.encode_value_v2``, ``datum.encode_key``, ``keys.*``), computed
with NumPy over whole columns, so a bulk load encodes a million rows without a Python loop
per row. Inputs are already the column's storage values (checked and converted by the
caller: ints as int64/uint64, packed times as uint64, decimals as unscaled integers); the
encoders raise ``CodecError`` subclasses only for values that have no encoding at all.

* row v2 values:  ``int_values``, ``uint_values`` (smallest of 1/2/4/8 little-endian bytes),
  ``float_values`` (8 memcomparable bytes), ``decimal_values`` (precision, frac, MyDecimal)
* row v2 rows:    ``encode_rows_v2(ids, values)`` (a NULL item is a NULL column)
* key datums:     ``int_key_datums``, ``uint_key_datums``, ``float_key_datums``,
  ``decimal_key_datums``, ``bytes_key_datums`` (flag byte + memcomparable form)
* record keys:    ``int_record_keys(table_id, handles)``,
  ``common_handle_record_keys(table_id, datum_columns)``
* packed times:   ``pack_dates(days)``, ``pack_timestamps(micros)``
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.codec.datum import BYTES_FLAG, DECIMAL_FLAG, FLOAT_FLAG, INT_FLAG, UINT_FLAG
from pyspark_theflash.codec.decimal import DIG2BYTES, DIGITS_PER_WORD, WORD_SIZE, decimal_bin_size
from pyspark_theflash.codec.errors import BadDecimalError, ValueOutOfRangeError
from pyspark_theflash.codec.keys import record_prefix
from pyspark_theflash.codec.row_v2 import CODEC_VER, FLAG_LARGE, HEADER_SIZE

_SIGN = np.uint64(1 << 63)
_SMALL_IDS_MAX = 0xFF
_SMALL_VALUES_MAX = 0xFFFF

# ------------------------------------------------------------------------------ building blocks


def fixed_binary(matrix: np.ndarray, valid: np.ndarray | None = None) -> pa.BinaryArray:
    """Row i of an (n, w) uint8 matrix as item i; ``valid`` False makes the item NULL (and empty)."""
    n, w = matrix.shape
    if valid is None or valid.all():
        offsets = np.arange(0, (n + 1) * w, w, dtype=np.int32) if w else np.zeros(n + 1, np.int32)
        data = np.ascontiguousarray(matrix, dtype=np.uint8)
        return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return ragged_binary(matrix, np.where(valid, w, 0), valid)


def ragged_binary(matrix: np.ndarray, lengths: np.ndarray, valid: np.ndarray | None = None) -> pa.BinaryArray:
    """The first ``lengths[i]`` bytes of row i of an (n, w) uint8 matrix as item i."""
    n, w = matrix.shape
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 1 << 31:
        raise ValueOutOfRangeError(f"{offsets[-1]} bytes in one binary column; encode fewer rows at a time")
    keep = np.arange(w, dtype=np.int64)[None, :] < lengths[:, None]
    data = matrix[keep]  # row-major: each row's kept bytes, rows in order
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(np.ascontiguousarray(data))]
    null_count = 0
    if valid is not None and not valid.all():
        buffers[0] = pa.py_buffer(np.packbits(valid, bitorder="little"))
        null_count = int(n - np.count_nonzero(valid))
    return pa.Array.from_buffers(pa.binary(), n, buffers, null_count=null_count)


def lengths_of(arr: pa.Array) -> np.ndarray:
    """Byte length of each item of a binary/string array (0 for NULL), as int64."""
    lengths: np.ndarray = pc.fill_null(pc.binary_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return lengths


def _le_bytes(values: np.ndarray, width: int = 8) -> np.ndarray:
    """(n, width) little-endian bytes of an integer array (its low ``width`` bytes)."""
    return np.ascontiguousarray(values.astype("<u8", copy=False)).view(np.uint8).reshape(-1, 8)[:, :width]


def _be_bytes(values: np.ndarray) -> np.ndarray:
    """(n, 8) big-endian bytes of a uint64 array."""
    return np.ascontiguousarray(values.astype(">u8")).view(np.uint8).reshape(-1, 8)


def _with_flag(flag: int, body: np.ndarray) -> np.ndarray:
    out = np.empty((body.shape[0], body.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = flag
    out[:, 1:] = body
    return out


# ------------------------------------------------------------------------------ row v2 values


def int_values(values: np.ndarray, valid: np.ndarray | None = None) -> pa.BinaryArray:
    """Row v2 INT values: each int64 in the smallest of 1/2/4/8 little-endian bytes."""
    v = np.asarray(values, dtype=np.int64)
    width = np.full(v.shape, 8, dtype=np.int64)
    width[(v >= -(1 << 31)) & (v < 1 << 31)] = 4
    width[(v >= -(1 << 15)) & (v < 1 << 15)] = 2
    width[(v >= -(1 << 7)) & (v < 1 << 7)] = 1
    return _sized(_le_bytes(v.view(np.uint64)), width, valid)


def uint_values(values: np.ndarray, valid: np.ndarray | None = None) -> pa.BinaryArray:
    """Row v2 UINT values (also ENUM, SET, BIT and packed times): smallest unsigned width."""
    v = np.asarray(values, dtype=np.uint64)
    width = np.full(v.shape, 8, dtype=np.int64)
    width[v < np.uint64(1 << 32)] = 4
    width[v < np.uint64(1 << 16)] = 2
    width[v < np.uint64(1 << 8)] = 1
    return _sized(_le_bytes(v), width, valid)


def _sized(matrix: np.ndarray, width: np.ndarray, valid: np.ndarray | None) -> pa.BinaryArray:
    if valid is not None and not valid.all():
        width = np.where(valid, width, 0)
    return ragged_binary(matrix, width, valid)


def _float_cmp_u64(values: np.ndarray) -> np.ndarray:
    """The order-preserving uint64 of float64s (``codec.number.float_to_cmp_uint64``)."""
    u = np.asarray(values, dtype=np.float64).view(np.uint64)
    negative = (u & _SIGN) != 0
    return np.where(negative, ~u, u | _SIGN)


def float_values(values: np.ndarray, valid: np.ndarray | None = None) -> pa.BinaryArray:
    """Row v2 FLOAT/DOUBLE values: 8 memcomparable big-endian bytes of the float64."""
    return fixed_binary(_be_bytes(_float_cmp_u64(values)), valid)


def _decimal_bin(unscaled: np.ndarray, precision: int, frac: int) -> np.ndarray:
    """(n, bin size) MyDecimal binary forms (``decimal.decimal_to_bin``) of int64 unscaled
    values ``value * 10**frac``; exact for precision <= 18."""
    size = decimal_bin_size(precision, frac)
    u = np.asarray(unscaled, dtype=np.int64)
    negative = u < 0
    a = np.abs(u).astype(np.uint64)
    digits_int = precision - frac
    int_part, frac_part = np.divmod(a, np.uint64(10**frac))
    if digits_int < 19 and bool((int_part >= np.uint64(10**digits_int)).any()):
        bad = int(np.flatnonzero(int_part >= np.uint64(10**digits_int))[0])
        raise BadDecimalError(f"decimal #{bad} (unscaled {int(u[bad])}) overflows DECIMAL({precision},{frac})")
    words_int, leading = divmod(digits_int, DIGITS_PER_WORD)
    words_frac, trailing = divmod(frac, DIGITS_PER_WORD)
    out = np.zeros((len(a), size), dtype=np.uint8)
    at = 0

    def put(value: np.ndarray, nbytes: int) -> None:
        nonlocal at
        for b in range(nbytes):  # big-endian: most significant byte first
            out[:, at + b] = ((value >> np.uint64(8 * (nbytes - 1 - b))) & np.uint64(0xFF)).astype(np.uint8)
        at += nbytes

    base = np.uint64(10**DIGITS_PER_WORD)
    if leading:
        put(int_part // np.uint64(10 ** (DIGITS_PER_WORD * words_int)), DIG2BYTES[leading])
    for i in range(words_int - 1, -1, -1):
        put((int_part // np.uint64(10 ** (DIGITS_PER_WORD * i))) % base, WORD_SIZE)
    frac_words, trail_value = np.divmod(frac_part, np.uint64(10**trailing))
    for i in range(words_frac - 1, -1, -1):
        put((frac_words // np.uint64(10 ** (DIGITS_PER_WORD * i))) % base, WORD_SIZE)
    if trailing:
        put(trail_value, DIG2BYTES[trailing])
    out[negative & (a != 0)] ^= 0xFF
    out[:, 0] ^= 0x80
    return out


def _check_decimal_width(precision: int) -> None:
    if precision > 18:
        raise BadDecimalError(
            f"the vectorised DECIMAL encoder takes precision <= 18 (int64 unscaled values), got {precision}; "
            "encode wider decimals value by value with codec.encode_decimal"
        )


def decimal_values(unscaled: np.ndarray, precision: int, frac: int, valid: np.ndarray | None = None) -> pa.BinaryArray:
    """Row v2 DECIMAL values: precision byte, frac byte, MyDecimal binary (precision <= 18)."""
    _check_decimal_width(precision)
    body = _decimal_bin(unscaled, precision, frac)
    out = np.empty((body.shape[0], body.shape[1] + 2), dtype=np.uint8)
    out[:, 0], out[:, 1], out[:, 2:] = precision, frac, body
    return fixed_binary(out, valid)


# ------------------------------------------------------------------------------ row v2 rows


def encode_rows_v2(ids: Sequence[int], values: Sequence[pa.Array]) -> pa.BinaryArray:
    """Rows of row format v2 (``row_v2.encode_row_v2``), one per item of the value arrays.

    ``values[j]`` holds column ``ids[j]``'s value bytes per row (``encode_value_v2`` forms);
    a NULL item makes the column NULL in that row. Every row lists every column. Rows whose
    values exceed 65535 bytes, or any column id above 255, use the large layout."""
    if len(ids) != len(values):
        raise ValueOutOfRangeError(f"{len(ids)} column ids for {len(values)} value columns")
    if len(set(ids)) != len(ids):
        raise ValueOutOfRangeError(f"column ids {list(ids)} repeat; each column appears once in a row")
    order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
    ids_sorted = np.asarray(ids, dtype=np.int64)[order]
    cols = [values[int(j)] for j in order]
    if not cols:
        raise ValueOutOfRangeError("a row needs at least one column")
    n = len(cols[0])
    lengths = np.stack([lengths_of(c) for c in cols], axis=1) if n else np.zeros((0, len(cols)), np.int64)
    notnull = np.stack([_valid_mask(c) for c in cols], axis=1) if n else np.zeros((0, len(cols)), bool)
    total = lengths.sum(axis=1)
    if ids_sorted[-1] > _SMALL_IDS_MAX:
        large = np.ones(n, dtype=bool)
    else:
        large = total > _SMALL_VALUES_MAX
    if not large.any():
        prefix = _row_prefix(ids_sorted, lengths, notnull, large=False)
        return _join(prefix, cols)
    if large.all():
        return _join(_row_prefix(ids_sorted, lengths, notnull, large=True), cols)
    parts, where = [], []
    for flag in (False, True):
        rows = np.flatnonzero(large == flag)
        taken = [c.take(pa.array(rows)) for c in cols]
        parts.append(_join(_row_prefix(ids_sorted, lengths[rows], notnull[rows], large=flag), taken))
        where.append(rows)
    inverse = np.empty(n, dtype=np.int64)
    inverse[np.concatenate(where)] = np.arange(n)
    return pa.concat_arrays(parts).take(pa.array(inverse))


def _valid_mask(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    valid: np.ndarray = arr.is_valid().to_numpy(zero_copy_only=False)
    return valid


def _join(prefix: pa.Array, cols: Sequence[pa.Array]) -> pa.BinaryArray:
    joined = pc.binary_join_element_wise(prefix, *cols, b"", null_handling="skip")
    return joined.cast(pa.binary())


_MAX_NULL_PATTERNS = 64


def _row_head(ids: np.ndarray, notnull: np.ndarray, id_size: int, large: bool) -> np.ndarray:
    """Header and column ids of a row whose not-null columns are ``notnull`` (ids ascending)."""
    k = len(ids)
    head = np.zeros(HEADER_SIZE + k * id_size, dtype=np.uint8)
    head[0], head[1] = CODEC_VER, FLAG_LARGE if large else 0
    nn = int(np.count_nonzero(notnull))
    head[2:4] = _le_bytes(np.array([nn]), 2)[0]
    head[4:6] = _le_bytes(np.array([k - nn]), 2)[0]
    head[HEADER_SIZE:] = _le_bytes(np.concatenate([ids[notnull], ids[~notnull]]), id_size).ravel()
    return head


def _end_offsets(lengths: np.ndarray, off_size: int) -> np.ndarray:
    """(n, m * off_size) little-endian end offsets of rows of m not-null value lengths."""
    ends = np.ascontiguousarray(np.cumsum(lengths, axis=1).astype("<u4" if off_size == 4 else "<u2"))
    return ends.view(np.uint8).reshape(lengths.shape[0], lengths.shape[1] * off_size)


def _row_prefix(ids: np.ndarray, lengths: np.ndarray, notnull: np.ndarray, large: bool) -> pa.BinaryArray:
    """Header, column ids (not-null ones ascending, then null ones) and end offsets of each row."""
    n, k = lengths.shape
    id_size, off_size = (4, 4) if large else (1, 2)
    if notnull.all():
        # No NULL in the batch: header and ids are the same for every row, only the end
        # offsets differ: one constant block beside one matrix of offsets.
        head = _row_head(ids, np.ones(k, dtype=bool), id_size, large)
        out = np.empty((n, len(head) + k * off_size), dtype=np.uint8)
        out[:, :len(head)] = head
        out[:, len(head):] = _end_offsets(lengths, off_size)
        return fixed_binary(out)
    patterns, which = np.unique(notnull, axis=0, return_inverse=True)
    if len(patterns) <= _MAX_NULL_PATTERNS:
        # Few NULL patterns (the usual case): the same per pattern, one group of rows at a time.
        which = which.ravel()
        out = np.zeros((n, HEADER_SIZE + k * id_size + k * off_size), dtype=np.uint8)
        used = np.zeros(n, dtype=np.int64)
        for p, pattern in enumerate(patterns):
            rows = np.flatnonzero(which == p)
            head = _row_head(ids, pattern, id_size, large)
            ends = _end_offsets(lengths[rows][:, pattern], off_size)
            out[rows, :len(head)] = head
            out[rows, len(head):len(head) + ends.shape[1]] = ends
            used[rows] = len(head) + ends.shape[1]
        return ragged_binary(out, used)
    nn = notnull.sum(axis=1)
    width = HEADER_SIZE + k * id_size + k * off_size
    out = np.zeros((n, width), dtype=np.uint8)
    out[:, 0] = CODEC_VER
    out[:, 1] = FLAG_LARGE if large else 0
    out[:, 2:4] = _le_bytes(nn, 2)
    out[:, 4:6] = _le_bytes(k - nn, 2)
    rank_nn = np.cumsum(notnull, axis=1) - 1
    rank_null = np.cumsum(~notnull, axis=1) - 1
    slot = np.where(notnull, rank_nn, nn[:, None] + rank_null)  # place of each column's id
    rows = np.repeat(np.arange(n), k)
    id_bytes = _le_bytes(np.broadcast_to(ids, (n, k)).ravel(), id_size)
    for b in range(id_size):
        out[rows, HEADER_SIZE + slot.ravel() * id_size + b] = id_bytes[:, b]
    ends = np.cumsum(lengths * notnull, axis=1)
    mask = notnull.ravel()
    off_at = HEADER_SIZE + k * id_size + rank_nn.ravel()[mask] * off_size
    end_bytes = _le_bytes(ends.ravel()[mask], off_size)
    for b in range(off_size):
        out[rows[mask], off_at + b] = end_bytes[:, b]
    return ragged_binary(out, HEADER_SIZE + k * id_size + nn * off_size)


# ------------------------------------------------------------------------------ key datums


def int_key_datums(values: np.ndarray) -> pa.BinaryArray:
    """``encode_key`` of int datums: flag 3 + memcomparable int64 (sign bit flipped, big-endian)."""
    u = np.asarray(values, dtype=np.int64).view(np.uint64) ^ _SIGN
    return fixed_binary(_with_flag(INT_FLAG, _be_bytes(u)))


def uint_key_datums(values: np.ndarray) -> pa.BinaryArray:
    """``encode_key`` of uint datums (also packed times): flag 4 + big-endian uint64."""
    return fixed_binary(_with_flag(UINT_FLAG, _be_bytes(np.asarray(values, dtype=np.uint64))))


def float_key_datums(values: np.ndarray) -> pa.BinaryArray:
    return fixed_binary(_with_flag(FLOAT_FLAG, _be_bytes(_float_cmp_u64(values))))


def decimal_key_datums(unscaled: np.ndarray, precision: int, frac: int) -> pa.BinaryArray:
    """``encode_key`` of decimal datums: flag 6, precision, frac, MyDecimal binary (precision <= 18)."""
    _check_decimal_width(precision)
    body = _decimal_bin(unscaled, precision, frac)
    out = np.empty((body.shape[0], body.shape[1] + 3), dtype=np.uint8)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3:] = DECIMAL_FLAG, precision, frac, body
    return fixed_binary(out)


def memcomparable_bytes(arr: pa.Array) -> pa.BinaryArray:
    """``memcomparable_bytes.encode_bytes`` of every item: 8-byte groups, each padded with
    zeros and followed by the marker 0xFF - padding; always one final group."""
    arr = arr.cast(pa.binary())
    n = len(arr)
    lengths = lengths_of(arr)
    groups = lengths // 8 + 1
    out_len = groups * 9
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(out_len, out=out_offsets[1:])
    out = np.zeros(int(out_offsets[-1]), dtype=np.uint8)
    in_offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + n + 1].astype(np.int64)
    data_buf = arr.buffers()[2]
    total = int(lengths.sum())
    if total:
        data = np.frombuffer(data_buf, dtype=np.uint8)[in_offsets[0]:in_offsets[-1]]
        within = np.arange(total, dtype=np.int64) - np.repeat(in_offsets[:-1] - in_offsets[0], lengths)
        dest = np.repeat(out_offsets[:-1], lengths) + (within // 8) * 9 + within % 8
        out[dest] = data
    # markers: full groups 0xFF, the last group 0xFF - padding
    group_row = np.repeat(np.arange(n), groups)
    group_index = np.arange(int(groups.sum()), dtype=np.int64) - np.repeat(np.cumsum(groups) - groups, groups)
    marker_at = out_offsets[:-1][group_row] + group_index * 9 + 8
    last = group_index == groups[group_row] - 1
    pad = 8 - (lengths[group_row] - group_index * 8)
    out[marker_at] = np.where(last, 0xFF - pad, 0xFF).astype(np.uint8)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(out_offsets.astype(np.int32)), pa.py_buffer(out)])


def bytes_key_datums(arr: pa.Array) -> pa.BinaryArray:
    """``encode_key`` of bytes datums: flag 1 + memcomparable bytes."""
    return pc.binary_join_element_wise(pa.scalar(bytes([BYTES_FLAG])), memcomparable_bytes(arr), b"").cast(pa.binary())


# ------------------------------------------------------------------------------ record keys


def int_record_keys(table_id: int, handles: np.ndarray) -> pa.BinaryArray:
    """``t{table_id}_r`` + memcomparable int64 handle for each handle (19 bytes each)."""
    prefix = np.frombuffer(record_prefix(table_id), dtype=np.uint8)
    h = np.asarray(handles, dtype=np.int64).view(np.uint64) ^ _SIGN
    out = np.empty((len(h), len(prefix) + 8), dtype=np.uint8)
    out[:, :len(prefix)] = prefix
    out[:, len(prefix):] = _be_bytes(h)
    return fixed_binary(out)


def common_handle_record_keys(table_id: int, datum_columns: Sequence[pa.Array]) -> pa.BinaryArray:
    """``t{table_id}_r`` + the key datums of each row (``keys.encode_common_handle_key``)."""
    return pc.binary_join_element_wise(pa.scalar(record_prefix(table_id)), *datum_columns, b"").cast(pa.binary())


# ------------------------------------------------------------------------------ packed times


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) of days since 1970-01-01, proleptic Gregorian (H. Hinnant's algorithm)."""
    z = np.asarray(days, dtype=np.int64) + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def _pack(year: np.ndarray, month: np.ndarray, day: np.ndarray, hms: np.ndarray | int = 0,
          micros: np.ndarray | int = 0) -> np.ndarray:
    if year.size and (int(year.min()) < 0 or int(year.max()) > 9999):
        bad = int(np.flatnonzero((year < 0) | (year > 9999))[0])
        raise ValueOutOfRangeError(f"time #{bad} has year {int(year[bad])}, outside [0, 9999]")
    ymd = ((year * 13 + month) << 5) | day
    packed: np.ndarray = (((ymd << 17) | hms) << 24 | micros).astype(np.uint64)
    return packed


def pack_dates(days: np.ndarray) -> np.ndarray:
    """TiDB's packed uint64 of DATEs given as days since 1970-01-01 (Arrow date32)."""
    return _pack(*_civil_from_days(days))


def pack_timestamps(micros: np.ndarray) -> np.ndarray:
    """TiDB's packed uint64 of DATETIME/TIMESTAMP values given as microseconds since
    1970-01-01 00:00 (Arrow timestamp[us]; TIMESTAMP values in UTC)."""
    us = np.asarray(micros, dtype=np.int64)
    days, rem = np.divmod(us, 86_400_000_000)
    seconds, fraction = np.divmod(rem, 1_000_000)
    hour, rest = np.divmod(seconds, 3600)
    minute, second = np.divmod(rest, 60)
    return _pack(*_civil_from_days(days), (hour << 12) | (minute << 6) | second, fraction)


# ------------------------------------------------------------------------------ Percolator records


def put_write_records(values: pa.Array, start_ts: int) -> pa.BinaryArray:
    """TiKV write-CF records of Put writes of one transaction (``txn.Write("P", start_ts,
    short_value).to_bytes()``): values of at most 255 bytes inline as short values, longer
    ones left to the default CF."""
    from pyspark_theflash.codec.number import encode_uvarint
    from pyspark_theflash.codec.txn import SHORT_VALUE_MAX_LEN, SHORT_VALUE_PREFIX

    lengths = lengths_of(values)
    short = lengths <= SHORT_VALUE_MAX_LEN
    header = np.empty((len(lengths), 2), dtype=np.uint8)
    header[:, 0] = SHORT_VALUE_PREFIX
    header[:, 1] = np.minimum(lengths, 0xFF)
    inline = ragged_binary(header, np.where(short, 2, 0))
    body = values if short.all() else pc.if_else(pa.array(short), values, pa.scalar(b"", pa.binary()))
    prefix = pa.scalar(b"P" + encode_uvarint(start_ts), pa.binary())
    return pc.binary_join_element_wise(prefix, inline, body, b"").cast(pa.binary())
