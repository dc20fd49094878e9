"""Memcomparable and compact byte strings, as TiDB's ``util/codec/bytes.go``.

Memcomparable form (``EncodeBytes``): the data is cut into 8-byte groups; each group is
written padded with zero bytes to 8 and followed by a marker ``0xFF - padding``. A final
group is always written, so the empty string is ``00*8 F7``. Byte order of encodings equals
byte order of the data, and no encoding is a prefix of another, so the form can be
followed by more key parts. ``*_desc`` inverts every bit and sorts descending.

Compact form (``EncodeCompactBytes``, datum flag 2): zigzag varint length + the data.
"""
from __future__ import annotations

from pyspark_theflash.codec.errors import MalformedError, TruncatedError
from pyspark_theflash.codec.number import Buffer, decode_varint_at, encode_varint

GROUP_SIZE = 8
MARKER = 0xFF
PAD = 0x00
_INVERT = bytes(range(255, -1, -1))  # translation table: b -> ~b & 0xFF


def encode_bytes(data: Buffer) -> bytes:
    """``codec.EncodeBytes``: memcomparable, ascending."""
    data = bytes(data)
    out = bytearray()
    n = len(data)
    for start in range(0, n + 1, GROUP_SIZE):
        group = data[start : start + GROUP_SIZE]
        pad = GROUP_SIZE - len(group)
        out += group
        out += bytes(pad)
        out.append(MARKER - pad)
    return bytes(out)


def encode_bytes_desc(data: Buffer) -> bytes:
    """``codec.EncodeBytesDesc``: the bitwise inverse of ``encode_bytes``."""
    return encode_bytes(data).translate(_INVERT)


def _decode_groups_at(buf: Buffer, offset: int, desc: bool) -> tuple[bytes, int]:
    what = "memcomparable bytes (desc)" if desc else "memcomparable bytes"
    out = bytearray()
    pos = offset
    n = len(buf)
    while True:
        if n - pos < GROUP_SIZE + 1:
            raise TruncatedError(what, pos, GROUP_SIZE + 1, n - pos)
        chunk = bytes(buf[pos : pos + GROUP_SIZE + 1])
        if desc:
            chunk = chunk.translate(_INVERT)
        marker = chunk[GROUP_SIZE]
        pad = MARKER - marker
        if pad == 0:
            out += chunk[:GROUP_SIZE]
            pos += GROUP_SIZE + 1
            continue
        if pad > GROUP_SIZE:
            raise MalformedError(
                f"{what} at offset {offset}: group marker 0x{buf[pos + GROUP_SIZE]:02x} at offset "
                f"{pos + GROUP_SIZE} means {pad} padding bytes, at most {GROUP_SIZE} are possible"
            )
        real = GROUP_SIZE - pad
        if chunk[real:GROUP_SIZE] != bytes(pad):
            raise MalformedError(
                f"{what} at offset {offset}: padding bytes at offset {pos + real} are "
                f"{bytes(buf[pos + real : pos + GROUP_SIZE]).hex()}, expected {pad} "
                f"{'0xff' if desc else '0x00'} byte(s)"
            )
        out += chunk[:real]
        return bytes(out), pos + GROUP_SIZE + 1


def decode_bytes_at(buf: Buffer, offset: int) -> tuple[bytes, int]:
    return _decode_groups_at(buf, offset, desc=False)


def decode_bytes(data: Buffer) -> tuple[bytes, bytes]:
    """Decodes one ``encode_bytes`` value; returns it and the bytes after it."""
    v, end = decode_bytes_at(data, 0)
    return v, bytes(data[end:])


def decode_bytes_desc_at(buf: Buffer, offset: int) -> tuple[bytes, int]:
    return _decode_groups_at(buf, offset, desc=True)


def decode_bytes_desc(data: Buffer) -> tuple[bytes, bytes]:
    v, end = decode_bytes_desc_at(data, 0)
    return v, bytes(data[end:])


def encode_compact_bytes(data: Buffer) -> bytes:
    """``codec.EncodeCompactBytes``: zigzag varint length, then the data."""
    data = bytes(data)
    return encode_varint(len(data)) + data


def decode_compact_bytes_at(buf: Buffer, offset: int) -> tuple[bytes, int]:
    length, pos = decode_varint_at(buf, offset)
    if length < 0:
        raise MalformedError(f"compact bytes at offset {offset}: negative length {length}")
    if len(buf) - pos < length:
        raise TruncatedError("compact bytes", pos, length, len(buf) - pos)
    return bytes(buf[pos : pos + length]), pos + length


def decode_compact_bytes(data: Buffer) -> tuple[bytes, bytes]:
    v, end = decode_compact_bytes_at(data, 0)
    return v, bytes(data[end:])
