"""Where tables and handles live in TiDB's key space, as far as the store needs it.

Record keys of a table with an int handle are ``t{table_id}_r{handle}``: an 11-byte prefix
and 8 memcomparable bytes. Region boundaries come PD-encoded (memcomparable bytes of the raw
key). Both encodings preserve order, so a region's raw range maps to one handle interval per
table; this module computes it and decodes many keys at once.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.codec.keys import decode_region_key, record_prefix

INT_RECORD_KEY_LEN = 19
_SIGN = np.uint64(1 << 63)
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

HandleRange = tuple[int | None, int | None]  # [lo, hi): None = unbounded


def decode_region_boundary(pd_key: bytes) -> bytes:
    """A PD-encoded region boundary as the raw key it stands for (empty stays empty)."""
    return decode_region_key(pd_key) if pd_key else b""


def _handle_of(eight: bytes) -> int:
    return int.from_bytes(eight, "big") - (1 << 63)


def handle_range_in(raw_start: bytes, raw_end: bytes, table_id: int) -> HandleRange | None:
    """The int handles of ``table_id`` whose record keys lie in [raw_start, raw_end)
    (raw_end empty = unbounded), as a half-open interval; None when there are none."""
    p = record_prefix(table_id)
    lo: int | None
    hi: int | None
    if raw_start <= p:
        lo = None
    elif raw_start.startswith(p):
        rest = raw_start[len(p):]
        if len(rest) >= 8:
            lo = _handle_of(rest[:8]) + (1 if len(rest) > 8 else 0)
            if lo > INT64_MAX:
                return None
        else:
            lo = _handle_of(rest.ljust(8, b"\0"))
    else:
        return None  # the range starts after every record key of the table
    if not raw_end:
        hi = None
    elif raw_end <= p:
        return None
    elif raw_end.startswith(p):
        rest = raw_end[len(p):]
        if len(rest) >= 8:
            hi = _handle_of(rest[:8]) + (1 if len(rest) > 8 else 0)
            if hi > INT64_MAX:
                hi = None
        else:
            hi = _handle_of(rest.ljust(8, b"\0"))
    else:
        hi = None  # the range ends after every record key of the table
    if lo is not None and hi is not None and lo >= hi:
        return None
    return (lo, hi)


def region_handle_range(pd_start: bytes, pd_end: bytes, table_id: int) -> HandleRange | None:
    return handle_range_in(decode_region_boundary(pd_start), decode_region_boundary(pd_end), table_id)


def key_in_raw_range(key: bytes, raw_start: bytes, raw_end: bytes) -> bool:
    return key >= raw_start and (not raw_end or key < raw_end)


def split_int_record_keys(keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised: which keys are int-handle record keys, and their table ids and handles.

    Returns (mask, table_ids, handles) where table_ids/handles hold the decoded values of the
    keys selected by mask, in order. Index keys, meta keys and common-handle keys are not
    selected."""
    n = len(keys)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(0, dtype=bool), empty, empty
    arr = pa.array(keys, type=pa.binary())
    lengths = pc.binary_length(arr).to_numpy(zero_copy_only=False)
    mask = lengths == INT_RECORD_KEY_LEN
    if mask.any():
        sel = arr.filter(pa.array(mask))
        buf = np.frombuffer(sel.buffers()[2], dtype=np.uint8)
        offsets = np.frombuffer(sel.buffers()[1], dtype=np.int32)[sel.offset:sel.offset + len(sel) + 1]
        start = offsets[:-1]
        rows = buf[start[:, None] + np.arange(INT_RECORD_KEY_LEN)]
        good = (rows[:, 0] == ord("t")) & (rows[:, 9] == ord("_")) & (rows[:, 10] == ord("r"))
        idx = np.flatnonzero(mask)
        mask[idx[~good]] = False
        rows = rows[good]
        table_ids = (_be_u64(rows[:, 1:9]) ^ _SIGN).view(np.int64)
        handles = (_be_u64(rows[:, 11:19]) ^ _SIGN).view(np.int64)
        return mask, table_ids, handles
    empty = np.zeros(0, dtype=np.int64)
    return mask, empty, empty


def _be_u64(cols: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(cols).view(">u8").reshape(-1).astype(np.uint64)


def describe_key(key: bytes) -> str:
    """A record key as 'table T handle H' for error messages; other keys as hex."""
    if len(key) == INT_RECORD_KEY_LEN and key[:1] == b"t" and key[9:11] == b"_r":
        return f"table {_handle_of(key[1:9])} handle {_handle_of(key[11:19])}"
    return f"key {key.hex()}"
