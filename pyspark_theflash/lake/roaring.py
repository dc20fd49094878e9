"""Delta's ``RoaringBitmapArray``: a set of 64-bit row indexes, as PROTOCOL.md ("Deletion Vector
Format") specifies it byte for byte.

    magic       uint32 LE  1681511377
    numBuckets  uint64 LE  buckets by the high 32 bits of the values, ascending
    per bucket: key uint32 LE (its most significant bit 0), then a 32-bit RoaringBitmap in the
                portable format of the RoaringFormatSpec

The 32-bit bitmaps are written without run containers (cookie 12346, ``SERIAL_COOKIE_NO_RUNCONTAINER``):
a header of (key, cardinality - 1) per 16-bit container, then each container's byte offset
from the start of that 32-bit bitmap, then the containers: an *array* of sorted uint16 for at
most 4096 values, else a *bitmap* of 65536 bits (8 KiB, bit i of byte i / 8 is value i). Every
Roaring reader (Java's RoaringBitmap behind delta-spark and delta-kernel, the ``roaring`` crate
behind delta-rs and DuckDB's extension) reads this form. Work is per container (at most one per
65,536 rows), never per value."""
from __future__ import annotations

import struct

import numpy as np

MAGIC = 1681511377
_NO_RUN_COOKIE = 12346
_ARRAY_MAX = 4096
_BITMAP_BYTES = 8192


def _bitmap32(low: np.ndarray) -> bytes:
    """A 32-bit RoaringBitmap of sorted unique uint32 ``low``, portable format without runs."""
    keys = (low >> 16).astype(np.uint16)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(low) else np.zeros(0, np.intp)
    ends = np.r_[starts[1:], len(low)]
    n = len(starts)
    header = struct.pack("<II", _NO_RUN_COOKIE, n)
    descriptive = np.empty((n, 2), dtype="<u2")
    descriptive[:, 0] = keys[starts]
    descriptive[:, 1] = (ends - starts - 1).astype(np.uint16)
    bodies: list[bytes] = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        values = (low[s:e] & 0xFFFF).astype(np.intp)
        if e - s <= _ARRAY_MAX:
            bodies.append(values.astype("<u2").tobytes())
        else:
            bits = np.zeros(65536, dtype=bool)
            bits[values] = True
            bodies.append(np.packbits(bits, bitorder="little").tobytes())
    first = len(header) + 4 * n + 4 * n
    sizes = np.array([len(b) for b in bodies], dtype=np.int64)
    offsets = (first + np.r_[0, np.cumsum(sizes)[:-1]]).astype("<u4") if n else np.zeros(0, "<u4")
    return header + descriptive.tobytes() + offsets.tobytes() + b"".join(bodies)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``values`` (uint64) sorted without repeats: a sort and a run mask (NumPy 2's ``np.unique``
    hashes first, several times slower). Values already strictly ascending (what a round's
    vectors mostly are) are returned as they are after one comparison pass, with no sort."""
    out = np.asarray(values, dtype=np.uint64)
    if len(out) < 2 or bool((out[1:] > out[:-1]).all()):
        return out
    out = np.sort(out)
    return out[np.r_[True, out[1:] != out[:-1]]]


def merged(rows: np.ndarray, more: np.ndarray) -> np.ndarray:
    """``rows`` (sorted, unique uint64) with ``more`` (any order, repeats allowed) added: the few
    new values placed by binary search into one copy, not a sort of the whole vector (a stable
    part's vector of millions of rows gains a few hundred a round)."""
    add = sorted_unique(more)
    if not len(add):
        return rows
    at = np.searchsorted(rows, add)
    present = np.zeros(len(add), dtype=bool)
    inside = at < len(rows)
    present[inside] = rows[at[inside]] == add[inside]
    return np.insert(rows, at[~present], add[~present])


def serialize(rows: np.ndarray) -> bytes:
    """The RoaringBitmapArray of row indexes ``rows`` (any order, repeats allowed)."""
    values = sorted_unique(rows)
    if len(values) and int(values[-1]) >= 1 << 63:
        raise ValueError("a row index of 2^63 or more: Delta's bucket keys must keep their top bit 0")
    high = (values >> np.uint64(32)).astype(np.uint32)
    starts = np.flatnonzero(np.r_[True, high[1:] != high[:-1]]) if len(values) else np.zeros(0, np.intp)
    ends = np.r_[starts[1:], len(values)]
    out = [struct.pack("<IQ", MAGIC, len(starts))]
    for s, e in zip(starts.tolist(), ends.tolist()):
        out.append(struct.pack("<I", int(high[s])))
        out.append(_bitmap32((values[s:e] & np.uint64(0xFFFFFFFF)).astype(np.uint32)))
    return b"".join(out)


def deserialize(data: bytes) -> np.ndarray:
    """The sorted row indexes of a RoaringBitmapArray written without run containers;
    ``ValueError`` saying what does not parse."""
    if len(data) < 12:
        raise ValueError(f"{len(data)} bytes: shorter than the magic number and bucket count")
    magic, buckets = struct.unpack_from("<IQ", data, 0)
    if magic != MAGIC:
        raise ValueError(f"magic number {magic}, not {MAGIC}")
    pos = 12
    parts: list[np.ndarray] = []
    previous_key = -1
    for _ in range(buckets):
        if pos + 12 > len(data):
            raise ValueError("a bucket runs past the end")
        key, cookie, n = struct.unpack_from("<III", data, pos)
        if key <= previous_key or key >= 1 << 31:
            raise ValueError(f"bucket key {key} out of order or with its top bit set")
        previous_key = key
        if cookie != _NO_RUN_COOKIE:
            raise ValueError(f"32-bit bitmap cookie {cookie}, not {_NO_RUN_COOKIE} (no run containers)")
        base = pos + 4
        head = pos + 12
        if head + 8 * n > len(data):
            raise ValueError("a container header runs past the end")
        desc = np.frombuffer(data, dtype="<u2", count=2 * n, offset=head).reshape(n, 2)
        offsets = np.frombuffer(data, dtype="<u4", count=n, offset=head + 4 * n)
        end = head + 8 * n
        for (ckey, card_1), off in zip(desc.tolist(), offsets.tolist()):
            card = card_1 + 1
            at = base + off
            if card <= _ARRAY_MAX:
                size = 2 * card
                low = np.frombuffer(data, dtype="<u2", count=card, offset=at) if at + size <= len(data) else None
            else:
                size = _BITMAP_BYTES
                low = (np.flatnonzero(np.unpackbits(np.frombuffer(data, np.uint8, _BITMAP_BYTES, at), bitorder="little"))
                       if at + size <= len(data) else None)
                if low is not None and len(low) != card:
                    raise ValueError(f"a bitmap container holds {len(low)} values, its header says {card}")
            if low is None:
                raise ValueError("a container runs past the end")
            parts.append((np.uint64(key) << np.uint64(32)) | (np.uint64(ckey) << np.uint64(16)) | low.astype(np.uint64))
            end = max(end, at + size)
        pos = end
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} bytes after the last bucket")
    out = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    if len(out) > 1 and not (np.diff(out.astype(np.int64)) > 0).all():
        raise ValueError("values out of order")
    return out
