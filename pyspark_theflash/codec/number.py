"""Memcomparable and variable-length numbers, as TiDB's ``util/codec/number.go``/``float.go``.

Fixed-width forms are 8 bytes big-endian so that byte order equals value order:

* int64: the sign bit flipped (``uint64(v) ^ 1<<63``); ``*_desc`` inverts every bit;
* uint64: plain big-endian; ``*_desc`` inverts every bit;
* float64: IEEE bits with the sign bit set for values whose sign bit is clear and all bits
  inverted for values whose sign bit is set (current TiDB and TiKV: -0.0 sorts just below
  +0.0 and encodes as ``7fff...``).

Variable-length forms are Go's ``binary.PutVarint`` (zigzag LEB128, TiDB ``EncodeVarint``)
and ``binary.PutUvarint`` (LEB128, ``EncodeUvarint``); they do not sort.

Each form has ``encode_x(v) -> bytes``, ``decode_x(data) -> (v, remaining)`` and
``decode_x_at(buf, offset) -> (v, next_offset)``; the last one lets row and key decoders walk
one buffer without copying it.
"""
from __future__ import annotations

import struct

from pyspark_theflash.codec.errors import MalformedError, TruncatedError, ValueOutOfRangeError

SIGN_MASK = 1 << 63
UINT64_MASK = (1 << 64) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = UINT64_MASK
MAX_VARINT_LEN = 10

_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")

Buffer = bytes | bytearray | memoryview


def _check_int64(v: int, what: str) -> None:
    if not INT64_MIN <= v <= INT64_MAX:
        raise ValueOutOfRangeError(f"{what}: {v} is outside int64 [{INT64_MIN}, {INT64_MAX}]")


def _check_uint64(v: int, what: str) -> None:
    if not 0 <= v <= UINT64_MAX:
        raise ValueOutOfRangeError(f"{what}: {v} is outside uint64 [0, {UINT64_MAX}]")


def _read_u64(buf: Buffer, offset: int, what: str) -> int:
    if offset < 0 or len(buf) - offset < 8:
        raise TruncatedError(what, offset, 8, max(len(buf) - offset, 0))
    return int(_U64.unpack_from(buf, offset)[0])


# ---------------------------------------------------------------- int64 / uint64


def encode_int(v: int) -> bytes:
    """``codec.EncodeInt``: 8 bytes big-endian of ``uint64(v) ^ 1<<63`` (sorts as int64)."""
    _check_int64(v, "encode_int")
    return _U64.pack((v & UINT64_MASK) ^ SIGN_MASK)


def decode_int_at(buf: Buffer, offset: int) -> tuple[int, int]:
    u = _read_u64(buf, offset, "memcomparable int64") ^ SIGN_MASK
    return (u - (1 << 64) if u & SIGN_MASK else u), offset + 8


def decode_int(data: Buffer) -> tuple[int, bytes]:
    v, end = decode_int_at(data, 0)
    return v, bytes(data[end:])


def encode_int_desc(v: int) -> bytes:
    """``codec.EncodeIntDesc``: the bitwise inverse of ``encode_int`` (sorts descending)."""
    _check_int64(v, "encode_int_desc")
    return _U64.pack(~((v & UINT64_MASK) ^ SIGN_MASK) & UINT64_MASK)


def decode_int_desc_at(buf: Buffer, offset: int) -> tuple[int, int]:
    u = (~_read_u64(buf, offset, "memcomparable int64 desc") & UINT64_MASK) ^ SIGN_MASK
    return (u - (1 << 64) if u & SIGN_MASK else u), offset + 8


def decode_int_desc(data: Buffer) -> tuple[int, bytes]:
    v, end = decode_int_desc_at(data, 0)
    return v, bytes(data[end:])


def encode_uint(v: int) -> bytes:
    """``codec.EncodeUint``: 8 bytes big-endian."""
    _check_uint64(v, "encode_uint")
    return _U64.pack(v)


def decode_uint_at(buf: Buffer, offset: int) -> tuple[int, int]:
    return _read_u64(buf, offset, "memcomparable uint64"), offset + 8


def decode_uint(data: Buffer) -> tuple[int, bytes]:
    v, end = decode_uint_at(data, 0)
    return v, bytes(data[end:])


def encode_uint_desc(v: int) -> bytes:
    """``codec.EncodeUintDesc``: the bitwise inverse of ``encode_uint``."""
    _check_uint64(v, "encode_uint_desc")
    return _U64.pack(~v & UINT64_MASK)


def decode_uint_desc_at(buf: Buffer, offset: int) -> tuple[int, int]:
    return ~_read_u64(buf, offset, "memcomparable uint64 desc") & UINT64_MASK, offset + 8


def decode_uint_desc(data: Buffer) -> tuple[int, bytes]:
    v, end = decode_uint_desc_at(data, 0)
    return v, bytes(data[end:])


# ---------------------------------------------------------------- float64


def float_to_cmp_uint64(f: float) -> int:
    """The order-preserving uint64 of a float64 (the sign bit decides, so -0.0 < +0.0)."""
    u = int(_U64.unpack(_F64.pack(f))[0])
    return u | SIGN_MASK if not u & SIGN_MASK else ~u & UINT64_MASK


def cmp_uint64_to_float(u: int) -> float:
    u = u & ~SIGN_MASK if u & SIGN_MASK else ~u & UINT64_MASK
    return float(_F64.unpack(_U64.pack(u))[0])


def encode_float(f: float) -> bytes:
    """``codec.EncodeFloat``: the order-preserving uint64 of the float64, big-endian."""
    return _U64.pack(float_to_cmp_uint64(float(f)))


def decode_float_at(buf: Buffer, offset: int) -> tuple[float, int]:
    return cmp_uint64_to_float(_read_u64(buf, offset, "memcomparable float64")), offset + 8


def decode_float(data: Buffer) -> tuple[float, bytes]:
    v, end = decode_float_at(data, 0)
    return v, bytes(data[end:])


def encode_float_desc(f: float) -> bytes:
    """``codec.EncodeFloatDesc``: the bitwise inverse of ``encode_float``."""
    return _U64.pack(~float_to_cmp_uint64(float(f)) & UINT64_MASK)


def decode_float_desc_at(buf: Buffer, offset: int) -> tuple[float, int]:
    u = ~_read_u64(buf, offset, "memcomparable float64 desc") & UINT64_MASK
    return cmp_uint64_to_float(u), offset + 8


def decode_float_desc(data: Buffer) -> tuple[float, bytes]:
    v, end = decode_float_desc_at(data, 0)
    return v, bytes(data[end:])


# ---------------------------------------------------------------- varints


def encode_uvarint(v: int) -> bytes:
    """``codec.EncodeUvarint`` = Go ``binary.PutUvarint``: LEB128, 7 bits per byte, low first."""
    _check_uint64(v, "encode_uvarint")
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def decode_uvarint_at(buf: Buffer, offset: int) -> tuple[int, int]:
    """Reads one LEB128 uint64; rejects a missing end byte and values beyond uint64 as Go does."""
    result = 0
    shift = 0
    pos = offset
    n = len(buf)
    for i in range(MAX_VARINT_LEN):
        if pos >= n:
            raise TruncatedError("varint", offset, i + 1, n - offset)
        b = buf[pos]
        pos += 1
        if b < 0x80:
            if i == MAX_VARINT_LEN - 1 and b > 1:
                raise MalformedError(f"varint at offset {offset} overflows uint64 (10th byte 0x{b:02x} > 0x01)")
            return result | (b << shift), pos
        result |= (b & 0x7F) << shift
        shift += 7
    raise MalformedError(f"varint at offset {offset} has no end within {MAX_VARINT_LEN} bytes (overflows uint64)")


def decode_uvarint(data: Buffer) -> tuple[int, bytes]:
    v, end = decode_uvarint_at(data, 0)
    return v, bytes(data[end:])


def encode_varint(v: int) -> bytes:
    """``codec.EncodeVarint`` = Go ``binary.PutVarint``: zigzag (0,-1,1,-2,...) then LEB128."""
    _check_int64(v, "encode_varint")
    ux = (v << 1) & UINT64_MASK
    if v < 0:
        ux = ~ux & UINT64_MASK
    return encode_uvarint(ux)


def decode_varint_at(buf: Buffer, offset: int) -> tuple[int, int]:
    ux, end = decode_uvarint_at(buf, offset)
    x = ux >> 1
    if ux & 1:
        x = ~x
    return x, end


def decode_varint(data: Buffer) -> tuple[int, bytes]:
    v, end = decode_varint_at(data, 0)
    return v, bytes(data[end:])
