"""Where tables and handles live in TiDB's key space, as far as the store needs it.

Record keys of a table with an int handle are ``t{table_id}_r{handle}``: an 11-byte prefix
and 8 memcomparable bytes. Region boundaries come PD-encoded (memcomparable bytes of the raw
key). Both encodings preserve order, so a region's raw range maps to one handle interval per
table; this module computes it and decodes many keys at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import compress
from typing import Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.codec.keys import decode_region_key, encode_region_key, record_prefix

INT_RECORD_KEY_LEN = 19
_SIGN = np.uint64(1 << 63)
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

Handle = Union[int, bytes]  # int64, or the memcomparable bytes of a clustered common handle
HandleRange = tuple[Optional[Handle], Optional[Handle]]  # [lo, hi): None = unbounded


def handle_before(a: Handle, b: Handle) -> bool:
    """``a < b`` for two handles of one table. A table's handles are of one kind, all ints or all
    common-handle bytes; two kinds raise ``TypeError``, as ``<`` between an int and bytes does.
    (The kind is checked here, not assumed, so that the comparison type-checks; anything not
    bytes compares as the int it stands for, a NumPy integer too.)"""
    if isinstance(a, bytes):
        if isinstance(b, bytes):
            return a < b
    elif not isinstance(b, bytes):
        return a < b
    raise TypeError(f"handles of two kinds compared: {a!r} and {b!r}")


def span_overlaps(first: Handle, last: Handle, lo: Handle | None, hi: Handle | None) -> bool:
    """Whether the handles [first, last] meet the range [lo, hi) (None: unbounded); handles of
    one kind, as ``handle_before`` takes them. (Its comparisons inline: a plan over a clustered
    table asks it for every part of every region.)"""
    if isinstance(first, bytes):
        if isinstance(last, bytes) and (lo is None or isinstance(lo, bytes)) and (hi is None or isinstance(hi, bytes)):
            return (lo is None or last >= lo) and (hi is None or first < hi)
    elif not isinstance(last, bytes) and not isinstance(lo, bytes) and not isinstance(hi, bytes):
        return (lo is None or last >= lo) and (hi is None or first < hi)
    raise TypeError(f"handles of two kinds compared: [{first!r}, {last!r}] and [{lo!r}, {hi!r})")


def record_range_keys(table_id: int) -> tuple[bytes, bytes]:
    """The table's record keys [t{id}_r, t{id}_s) as PD-encoded region boundaries."""
    prefix = record_prefix(table_id)
    return encode_region_key(prefix), encode_region_key(prefix[:-1] + b"s")


def decode_region_boundary(pd_key: bytes) -> bytes:
    """A PD-encoded region boundary as the raw key it stands for (empty stays empty)."""
    return decode_region_key(pd_key) if pd_key else b""


def _handle_of(eight: bytes) -> int:
    return int.from_bytes(eight, "big") - (1 << 63)


def handle_range_in(raw_start: bytes, raw_end: bytes, table_id: int,
                    common_handle: bool = False) -> HandleRange | None:
    """The handles of ``table_id`` whose record keys lie in [raw_start, raw_end)
    (raw_end empty = unbounded), as a half-open interval; None when there are none.
    Int handles are ints; common handles are the memcomparable key bytes after the prefix."""
    p = record_prefix(table_id)
    lo: Handle | None
    hi: Handle | None
    if raw_start <= p:
        lo = None
    elif raw_start.startswith(p):
        rest = raw_start[len(p):]
        if common_handle:
            lo = rest
        elif len(rest) >= 8:
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
        if common_handle:
            hi = rest
        elif len(rest) >= 8:
            hi = _handle_of(rest[:8]) + (1 if len(rest) > 8 else 0)
            if hi > INT64_MAX:
                hi = None
        else:
            hi = _handle_of(rest.ljust(8, b"\0"))
    else:
        hi = None  # the range ends after every record key of the table
    if lo is not None and hi is not None and not handle_before(lo, hi):
        return None
    return (lo, hi)


def region_handle_range(pd_start: bytes, pd_end: bytes, table_id: int,
                        common_handle: bool = False) -> HandleRange | None:
    return handle_range_in(decode_region_boundary(pd_start), decode_region_boundary(pd_end), table_id,
                           common_handle)


_ENCODED_RECORD_KEY_LEN = 27  # encode_bytes of a 19-byte int record key: three 9-byte groups
# the bytes of such a key that hold the handle (the rest is the prefix, group markers and padding)
_HANDLE_AT = np.r_[12:17, 18:21]
_FIXED_AT = np.r_[0:12, 17, 21:27]


def record_key_handles(pd_keys: Sequence[bytes], table_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``pd_keys`` (PD-encoded region boundaries) are exactly the encoded record key
    ``t{table_id}_r{handle}`` of an int handle, and that handle (int64; 0 where not), for all
    keys at once: a region boundary a split made is one, and a plan over 10,000 regions took the
    handle range of each region in turn. Any other key (empty, another table's, a prefix, a key
    longer than a record key) is marked False for the caller to take by ``region_handle_range``."""
    n = len(pd_keys)
    exact = np.fromiter(map(len, pd_keys), np.int64, n) == _ENCODED_RECORD_KEY_LEN
    handles = np.zeros(n, np.int64)
    at = np.flatnonzero(exact)
    if len(at):
        joined = b"".join(compress(pd_keys, exact.tolist()))
        keys = np.frombuffer(joined, np.uint8).reshape(-1, _ENCODED_RECORD_KEY_LEN)
        template = np.frombuffer(encode_region_key(record_prefix(table_id) + bytes(8)), np.uint8)
        same = (keys[:, _FIXED_AT] == template[_FIXED_AT]).all(axis=1)
        exact[at] = same
        # the 8 memcomparable bytes of the handle: big-endian with the sign bit flipped
        raw = np.ascontiguousarray(keys[same][:, _HANDLE_AT]).view(">u8").ravel()
        handles[at[same]] = (raw ^ _SIGN).astype(np.int64)
    return exact, handles


def latest_cover(handles: pa.Array | pa.ChunkedArray, ranges: Sequence[HandleRange], seqs: Sequence[int]
                 ) -> np.ndarray:
    """For each handle, the greatest of ``seqs`` among the ``ranges`` [lo, hi) that hold it, or
    -1 where none does (int64). Vectorised over handles and ranges: the ranges' finite bounds
    cut the handle space into segments, each segment takes the greatest seq of the ranges over
    it, and each handle finds its segment by bisection. A batch of 10,000 region snapshots
    stages 10,000 range tombstones; a pass over all of the batch's rows per tombstone made the
    writer's initial copy quadratic (~3 ms a region at 10,000 regions)."""
    n = len(handles)
    if not ranges or n == 0:
        return np.full(n, -1, np.int64)
    binary = not pa.types.is_integer(handles.type)
    finite = [b for lo, hi in ranges for b in (lo, hi) if b is not None]
    # int handles bisect as int64; a clustered common handle's memcomparable bytes as Python
    # bytes (the only per-row objects here, and only for such tables)
    bounds = np.array(sorted(set(finite)), dtype=object) if binary else np.unique(np.array(finite, np.int64))
    top = len(bounds) + 1  # segments: (-inf, b0), [b0, b1), ..., [b_last, +inf)
    los = np.array([0 if lo is None else -1 for lo, _ in ranges], np.int64)
    his = np.array([top if hi is None else -1 for _, hi in ranges], np.int64)
    have_lo, have_hi = los < 0, his < 0
    if have_lo.any():
        los[have_lo] = np.searchsorted(bounds, np.array([lo for lo, _ in ranges if lo is not None],
                                                        dtype=bounds.dtype), side="right")
    if have_hi.any():
        his[have_hi] = np.searchsorted(bounds, np.array([hi for _, hi in ranges if hi is not None],
                                                        dtype=bounds.dtype), side="right")
    seq = np.asarray(seqs, np.int64)
    lengths = np.maximum(his - los, 0)
    segment_max = np.full(top, -1, np.int64)
    total = int(lengths.sum())
    if total <= 4 * top + (1 << 20):  # the usual case: the ranges barely overlap
        starts = np.repeat(los - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        np.maximum.at(segment_max, starts + np.arange(total), np.repeat(seq, lengths))
    else:  # heavily overlapping ranges: painted in seq order, the greatest last
        for i in np.argsort(seq, kind="stable").tolist():
            segment_max[los[i]:his[i]] = seq[i]
    values = handles.to_numpy(zero_copy_only=False)
    cover: np.ndarray = segment_max[np.searchsorted(bounds, values, side="right")]
    return cover


def key_in_raw_range(key: bytes, raw_start: bytes, raw_end: bytes) -> bool:
    return key >= raw_start and (not raw_end or key < raw_end)


@dataclass
class RecordKeys:
    """The record keys among a list of keys, decoded at once."""

    index: np.ndarray        # positions (in the input) of the record keys kept
    table_ids: np.ndarray    # int64, one per kept key
    int_handles: np.ndarray  # int64 handle per kept key (0 for common-handle keys)
    keys: pa.BinaryArray     # the kept keys
    lengths: Optional[np.ndarray] = None  # byte length per kept key, when known

    def int_keys_ok(self, sel: np.ndarray | None) -> bool:
        """Whether every key selected by ``sel`` (None: every key) has an int handle's length
        (19 bytes)."""
        if self.lengths is not None:
            lengths = self.lengths if sel is None else self.lengths[sel]
            return bool((lengths == INT_RECORD_KEY_LEN).all())
        keys = self.keys if sel is None else self.keys.filter(pa.array(sel))
        return bool((pc.binary_length(keys).to_numpy() == INT_RECORD_KEY_LEN).all())

    def handles(self, sel: np.ndarray | None, common_handle: bool) -> pa.Array:
        """The handles of the kept keys selected by ``sel`` (None: every key): int64, or for a
        clustered common-handle table the memcomparable bytes after ``t{id}_r``."""
        if common_handle:
            keys = self.keys if sel is None else self.keys.filter(pa.array(sel))
            # An explicit stop: pyarrow 26's binary_slice with the default stop fails on some
            # filtered arrays ("Negative buffer resize").
            longest = pc.max(pc.binary_length(keys)).as_py() or RECORD_PREFIX_LEN
            return pc.binary_slice(keys, RECORD_PREFIX_LEN, longest)
        return pa.array(self.int_handles if sel is None else self.int_handles[sel], type=pa.int64())


RECORD_PREFIX_LEN = 11


def split_record_keys(keys: Sequence[bytes] | pa.Array,
                      common_tables: frozenset[int] | set[int] = frozenset()) -> RecordKeys:
    """Vectorised: pick the record keys (``t{id}_r...``) out of ``keys``, dropping index keys,
    meta keys and anything else, and decode their table ids and int handles.

    Every record key is kept, whatever its length: a 19-byte key of a table not in
    ``common_tables`` carries an int handle; any other (a clustered common handle, or a
    table the store has no schema for yet) is left to the caller, which knows the table.
    Dropping the long keys of unknown tables here would lose a clustered table silently
    instead of asking for its schema. ``keys`` may be a pyarrow binary array (read in place)."""
    n = len(keys)
    arr = keys if isinstance(keys, pa.Array) else pa.array(keys, type=pa.binary())
    empty = np.zeros(0, dtype=np.int64)
    if n == 0:
        return RecordKeys(empty, empty, empty, arr)
    lengths = pc.binary_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    idx = np.flatnonzero(lengths >= RECORD_PREFIX_LEN)
    if len(idx) == 0 or arr.buffers()[2] is None:
        return RecordKeys(empty, empty, empty, arr.slice(0, 0))
    buf = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    width = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset:arr.offset + n + 1].astype(np.int64)
    if len(idx) == n and int(offsets[-1] - offsets[0]) == n * INT_RECORD_KEY_LEN \
            and (lengths == INT_RECORD_KEY_LEN).all():
        # The common case: nothing but 19-byte keys, back to back: a reshape, no gather.
        rows = buf[offsets[0]:offsets[-1]].reshape(n, INT_RECORD_KEY_LEN)
        return _split_int_keys(arr, rows, common_tables)
    starts = offsets[idx]
    head = buf[starts[:, None] + np.arange(RECORD_PREFIX_LEN)]
    good = (head[:, 0] == ord("t")) & (head[:, 9] == ord("_")) & (head[:, 10] == ord("r"))
    idx, head, starts = idx[good], head[good], starts[good]
    table_ids = (_be_u64(head[:, 1:9]) ^ _SIGN).view(np.int64)
    common = np.isin(table_ids, np.fromiter(common_tables, dtype=np.int64, count=len(common_tables)))
    is_int = (lengths[idx] == INT_RECORD_KEY_LEN) & ~common
    keep = lengths[idx] > RECORD_PREFIX_LEN
    idx, table_ids, starts, is_int = idx[keep], table_ids[keep], starts[keep], is_int[keep]
    int_handles = np.zeros(len(idx), dtype=np.int64)
    if is_int.any():
        tail = buf[starts[is_int][:, None] + np.arange(RECORD_PREFIX_LEN, INT_RECORD_KEY_LEN)]
        int_handles[is_int] = (_be_u64(tail) ^ _SIGN).view(np.int64)
    return RecordKeys(idx, table_ids, int_handles, arr if len(idx) == n else arr.take(pa.array(idx)), lengths[idx])


def _split_int_keys(arr: pa.Array, rows: np.ndarray, common_tables: frozenset[int] | set[int]) -> RecordKeys:
    """``split_record_keys`` of keys that are all 19 bytes long, given as an (n, 19) matrix."""
    good = (rows[:, 0] == ord("t")) & (rows[:, 9] == ord("_")) & (rows[:, 10] == ord("r"))
    idx = np.flatnonzero(good) if not good.all() else np.arange(len(rows))
    if len(idx) < len(rows):
        rows = rows[idx]
    table_ids = (_be_u64(rows[:, 1:9]) ^ _SIGN).view(np.int64)
    int_handles = (_be_u64(rows[:, RECORD_PREFIX_LEN:]) ^ _SIGN).view(np.int64)
    if common_tables:
        # 19-byte keys of a clustered table are common handles (8 key bytes), not int handles
        int_handles = np.where(np.isin(table_ids, np.fromiter(common_tables, dtype=np.int64,
                                                              count=len(common_tables))), 0, int_handles)
    return RecordKeys(idx, table_ids, int_handles, arr if len(idx) == len(arr) else arr.take(pa.array(idx)),
                      np.full(len(idx), INT_RECORD_KEY_LEN, dtype=np.int64))


def _be_u64(cols: np.ndarray) -> np.ndarray:
    """(n, 8) bytes -> n big-endian uint64. Columns cut from a wider byte matrix are viewed in
    place (8 contiguous bytes per row), not copied to a contiguous block first."""
    if cols.strides[-1] != 1:
        cols = np.ascontiguousarray(cols)
    return cols.view(">u8").reshape(-1).astype(np.uint64)


def describe_key(key: bytes) -> str:
    """A record key as 'table T handle H' for error messages; other keys as hex."""
    if len(key) == INT_RECORD_KEY_LEN and key[:1] == b"t" and key[9:11] == b"_r":
        return f"table {_handle_of(key[1:9])} handle {_handle_of(key[11:19])}"
    if len(key) > RECORD_PREFIX_LEN and key[:1] == b"t" and key[9:11] == b"_r":
        return f"table {_handle_of(key[1:9])} common handle {key[11:].hex()}"
    return f"key {key.hex()}"


def ranges_overlap(s1: bytes, e1: bytes, s2: bytes, e2: bytes) -> bool:
    """Do two PD-encoded [start, end) ranges overlap (empty end = +inf)?"""
    return (not e1 or s2 < e1) and (not e2 or s1 < e2)
