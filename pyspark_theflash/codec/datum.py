"""TiDB datums: one value with its kind, and the flag-prefixed encodings of lists of them.

``encode_key`` is TiDB's ``codec.EncodeKey`` (comparable: memcomparable ints, bytes,
floats, decimals; used in index keys and clustered record keys); ``encode_value`` is
``codec.EncodeValue`` (compact: varints and length-prefixed bytes; used in row v1).
Both start every datum with a flag byte:

====  ==============  ============================================================
flag  name            written for
====  ==============  ============================================================
0     nil             ``null``
1     bytes           ``bytes`` in keys (memcomparable groups)
2     compact bytes   ``bytes`` in values (varint length + data)
3     int             ``int`` in keys (8 bytes, sign flipped)
4     uint            ``uint``/``enum``/``set``/``bit`` in keys; ``datetime`` always
5     float           ``float`` (8 memcomparable bytes) in both
6     decimal         ``decimal``: precision byte, frac byte, MyDecimal binary
7     duration        ``duration_ns`` (8 bytes, sign flipped, nanoseconds) in both
8     varint          ``int`` in values
9     uvarint         ``uint``/``enum``/``set``/``bit`` in values
10    json            ``json``: binary JSON type code + value
250   max             ``max`` (TiDB's MaxValue, only in range bounds)
====  ==============  ============================================================

``datetime`` follows TiDB's ``encode``: flag 4 and the 8-byte packed uint64 in keys *and*
values (row v1 instead flattens it to a uint first, hence a uvarint there; see row_v1).

Decoding sees only flags, so kinds come back as the flag says: ``int``, ``uint``,
``bytes``, ``float``, ``decimal`` (a ``decimal.Decimal`` whose exponent is ``-frac``),
``duration_ns``, ``json``, ``null`` or ``max``; a ``datetime`` comes back as its packed
``uint`` and an ``enum``/``set``/``bit`` as ``uint``. The table schema says what they were.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from pyspark_theflash.codec.decimal import decode_decimal_at, encode_decimal
from pyspark_theflash.codec.errors import CodecError, TruncatedError, UnknownFlagError
from pyspark_theflash.codec.memcomparable_bytes import (
    decode_bytes_at,
    decode_compact_bytes_at,
    encode_bytes,
    encode_compact_bytes,
)
from pyspark_theflash.codec.number import (
    Buffer,
    decode_float_at,
    decode_int_at,
    decode_uint_at,
    decode_uvarint_at,
    decode_varint_at,
    encode_float,
    encode_int,
    encode_uint,
    encode_uvarint,
    encode_varint,
)
from pyspark_theflash.codec.time import pack_datetime

NIL_FLAG = 0
BYTES_FLAG = 1
COMPACT_BYTES_FLAG = 2
INT_FLAG = 3
UINT_FLAG = 4
FLOAT_FLAG = 5
DECIMAL_FLAG = 6
DURATION_FLAG = 7
VARINT_FLAG = 8
UVARINT_FLAG = 9
JSON_FLAG = 10
MAX_FLAG = 250

KINDS = (
    "int",
    "uint",
    "bytes",
    "float",
    "datetime",
    "decimal",
    "json",
    "duration_ns",
    "enum",
    "set",
    "bit",
    "null",
    "max",
)
_UNSIGNED_KINDS = frozenset(("uint", "enum", "set", "bit"))
_KNOWN_FLAGS = "0 nil, 1 bytes, 2 compact bytes, 3 int, 4 uint, 5 float, 6 decimal, 7 duration, 8 varint, 9 uvarint, 10 json, 250 max"


class Datum(NamedTuple):
    """One TiDB value and its kind (one of ``KINDS``).

    Values: ``int`` for int/uint/enum/set/bit/duration_ns (nanoseconds); ``bytes`` (a ``str``
    is encoded as UTF-8); ``float``; ``datetime.datetime``/``datetime.date`` or an already
    packed ``int`` for datetime; ``decimal.Decimal`` (its own precision/frac) or
    ``DecimalValue`` (explicit precision/frac) for decimal; for json the Python JSON value
    (dict, list, str, int, float, bool, None and the forms of ``codec.json_binary``; a ``str``
    is a JSON string, not JSON text: parse text with ``json_binary.parse_json_text`` first),
    the same convention as row v2, so json datums decode to what was encoded; ``None`` for
    null and max.
    """

    kind: str
    value: Any = None


NULL = Datum("null", None)


# ------------------------------------------------------------------------- JSON hooks
# Binary JSON belongs to codec.json_binary (another module); only its length is read here.

JSON_TYPE_OBJECT = 0x01
JSON_TYPE_ARRAY = 0x03
JSON_TYPE_LITERAL = 0x04
JSON_TYPE_INT64 = 0x09
JSON_TYPE_UINT64 = 0x0A
JSON_TYPE_FLOAT64 = 0x0B
JSON_TYPE_STRING = 0x0C
JSON_TYPE_OPAQUE = 0x0D
JSON_TYPE_DATE = 0x0E
JSON_TYPE_DATETIME = 0x0F
JSON_TYPE_TIMESTAMP = 0x10
JSON_TYPE_DURATION = 0x11


def json_binary_size_at(buf: Buffer, offset: int) -> int:
    """Bytes taken by the binary JSON (type code + value) at ``offset`` (``PeekBytesAsJSON``)."""
    n = len(buf)
    if offset >= n:
        raise TruncatedError("binary JSON type code", offset, 1, 0)
    code = buf[offset]
    if code in (JSON_TYPE_OBJECT, JSON_TYPE_ARRAY):
        if n - offset < 9:
            raise TruncatedError("binary JSON object/array header", offset, 9, n - offset)
        return 1 + int.from_bytes(bytes(buf[offset + 5 : offset + 9]), "little")
    if code == JSON_TYPE_LITERAL:
        return 2
    if code in (JSON_TYPE_INT64, JSON_TYPE_UINT64, JSON_TYPE_FLOAT64, JSON_TYPE_DATE, JSON_TYPE_DATETIME, JSON_TYPE_TIMESTAMP):
        return 9
    if code == JSON_TYPE_DURATION:
        return 13
    if code == JSON_TYPE_STRING:
        length, end = decode_uvarint_at(buf, offset + 1)
        return end - offset + length
    if code == JSON_TYPE_OPAQUE:
        length, end = decode_uvarint_at(buf, offset + 2)
        return end - offset + length
    raise UnknownFlagError("binary JSON type code", code, offset, "0x01 object .. 0x11 duration")


def _json_to_binary(value: object) -> bytes:
    """Binary JSON (type code + body) of a json datum's Python JSON value."""
    from pyspark_theflash.codec import json_binary  # owned by the JSON module; imported lazily

    return bytes(json_binary.encode_json(value))


def _json_from_binary(data: bytes) -> object:
    from pyspark_theflash.codec import json_binary

    return json_binary.decode_json(data)


# ------------------------------------------------------------------------- encoding


def _to_bytes(d: Datum) -> bytes:
    v = d.value
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    raise CodecError(f"datum of kind 'bytes' needs bytes or str, got {type(v).__name__} {v!r}")


def _packed_time(d: Datum) -> int:
    if isinstance(d.value, int) and not isinstance(d.value, bool):
        return d.value
    return pack_datetime(d.value)


def _encode_one(out: bytearray, d: Datum, comparable: bool) -> None:
    kind = d.kind
    if kind == "int" or (kind in _UNSIGNED_KINDS) or kind == "duration_ns":
        if not isinstance(d.value, int) or isinstance(d.value, bool):
            raise CodecError(f"datum of kind {kind!r} needs an int, got {type(d.value).__name__} {d.value!r}")
    if kind == "int":
        if comparable:
            out.append(INT_FLAG)
            out += encode_int(d.value)
        else:
            out.append(VARINT_FLAG)
            out += encode_varint(d.value)
    elif kind in _UNSIGNED_KINDS:
        if comparable:
            out.append(UINT_FLAG)
            out += encode_uint(d.value)
        else:
            out.append(UVARINT_FLAG)
            out += encode_uvarint(d.value)
    elif kind == "bytes":
        if comparable:
            out.append(BYTES_FLAG)
            out += encode_bytes(_to_bytes(d))
        else:
            out.append(COMPACT_BYTES_FLAG)
            out += encode_compact_bytes(_to_bytes(d))
    elif kind == "float":
        if not isinstance(d.value, (float, int)) or isinstance(d.value, bool):
            raise CodecError(f"datum of kind 'float' needs a float, got {type(d.value).__name__} {d.value!r}")
        out.append(FLOAT_FLAG)
        out += encode_float(d.value)
    elif kind == "datetime":
        out.append(UINT_FLAG)
        out += encode_uint(_packed_time(d))
    elif kind == "decimal":
        out.append(DECIMAL_FLAG)
        out += encode_decimal(d.value)
    elif kind == "duration_ns":
        out.append(DURATION_FLAG)
        out += encode_int(d.value)
    elif kind == "json":
        out.append(JSON_FLAG)
        out += _json_to_binary(d.value)
    elif kind == "null":
        out.append(NIL_FLAG)
    elif kind == "max":
        out.append(MAX_FLAG)
    else:
        raise CodecError(f"unknown datum kind {kind!r}; expected one of {', '.join(KINDS)}")


def encode_key(datums: Sequence[Datum]) -> bytes:
    """``codec.EncodeKey``: comparable encoding; byte order follows value order per kind."""
    out = bytearray()
    for d in datums:
        _encode_one(out, d, comparable=True)
    return bytes(out)


def encode_value(datums: Sequence[Datum]) -> bytes:
    """``codec.EncodeValue``: compact encoding (varints, length-prefixed bytes)."""
    out = bytearray()
    for d in datums:
        _encode_one(out, d, comparable=False)
    return bytes(out)


# ------------------------------------------------------------------------- decoding


def decode_datum_at(buf: Buffer, offset: int) -> tuple[Datum, int]:
    """Decodes the datum whose flag byte is at ``offset``; returns it and the next offset."""
    if offset >= len(buf):
        raise TruncatedError("datum flag", offset, 1, 0)
    flag = buf[offset]
    pos = offset + 1
    if flag == VARINT_FLAG:
        v, end = decode_varint_at(buf, pos)
        return Datum("int", v), end
    if flag == UVARINT_FLAG:
        v, end = decode_uvarint_at(buf, pos)
        return Datum("uint", v), end
    if flag == COMPACT_BYTES_FLAG:
        b, end = decode_compact_bytes_at(buf, pos)
        return Datum("bytes", b), end
    if flag == BYTES_FLAG:
        b, end = decode_bytes_at(buf, pos)
        return Datum("bytes", b), end
    if flag == INT_FLAG:
        v, end = decode_int_at(buf, pos)
        return Datum("int", v), end
    if flag == UINT_FLAG:
        v, end = decode_uint_at(buf, pos)
        return Datum("uint", v), end
    if flag == FLOAT_FLAG:
        f, end = decode_float_at(buf, pos)
        return Datum("float", f), end
    if flag == DECIMAL_FLAG:
        dv, end = decode_decimal_at(buf, pos)
        return Datum("decimal", dv.value), end
    if flag == DURATION_FLAG:
        v, end = decode_int_at(buf, pos)
        return Datum("duration_ns", v), end
    if flag == JSON_FLAG:
        size = json_binary_size_at(buf, pos)
        if len(buf) - pos < size:
            raise TruncatedError("binary JSON", pos, size, len(buf) - pos)
        return Datum("json", _json_from_binary(bytes(buf[pos : pos + size]))), pos + size
    if flag == NIL_FLAG:
        return NULL, pos
    if flag == MAX_FLAG:
        return Datum("max", None), pos
    raise UnknownFlagError("datum flag", flag, offset, _KNOWN_FLAGS)


def decode_datums(data: Buffer) -> list[Datum]:
    """Decodes every datum in ``data`` (``codec.Decode``); the bytes must end exactly."""
    out: list[Datum] = []
    pos = 0
    n = len(data)
    while pos < n:
        d, pos = decode_datum_at(data, pos)
        out.append(d)
    return out


def decode_value(data: Buffer) -> list[Datum]:
    """Decodes ``encode_value`` bytes. Flags are self-describing, so this also reads keys."""
    return decode_datums(data)


def decode_key(data: Buffer) -> list[Datum]:
    """Decodes ``encode_key`` bytes (e.g. the datums after an index key's prefix)."""
    return decode_datums(data)
