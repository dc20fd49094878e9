"""TiDB binary JSON (pkg/types/json_binary.go): encode from Python values or JSON text, decode to
Python values or to the JSON text TiDB prints.

A JSON value in a row is one type byte followed by the value body:

    object ::= count:u32 size:u32 key-entry* value-entry* key* value*
    array  ::= count:u32 size:u32 value-entry* value*
    key-entry   ::= key-offset:u32 key-length:u16
    value-entry ::= type:u8 (offset:u32 | inlined literal)

All integers are little-endian and every offset counts from the start of the enclosing object or
array body. Only literals (null/true/false) are inlined in a value entry; every other value lives
after the keys. Object keys are stored sorted by their UTF-8 bytes.

Python forms (decode gives them, encode takes them):

| JSON type | Python |
|---|---|
| object / array | dict (insertion order = stored order) / list |
| literal | None, True, False |
| int64 / uint64 | int / `JsonUInt64` (an int subclass, so a uint64 below 2**63 keeps its type) |
| float64 | float |
| string | str |
| opaque | `JsonOpaque(type_code, data)`; plain `bytes` encode as opaque of VAR_STRING (0xfd) |
| date / datetime / timestamp | datetime.date / datetime.datetime / `JsonTimestamp`; a zero or invalid date decodes to `JsonPackedTime` |
| time | `JsonDuration` (a timedelta subclass carrying fsp); a plain timedelta encodes with fsp 6 |
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import math
import struct
from decimal import Decimal
from typing import Callable, Mapping, NamedTuple, NoReturn

from pyspark_theflash.codec.errors import MalformedError, TruncatedError, UnknownFlagError
from pyspark_theflash.codec.time import pack_time_fields, unpack_time_fields

TYPE_OBJECT = 0x01
TYPE_ARRAY = 0x03
TYPE_LITERAL = 0x04
TYPE_INT64 = 0x09
TYPE_UINT64 = 0x0A
TYPE_FLOAT64 = 0x0B
TYPE_STRING = 0x0C
TYPE_OPAQUE = 0x0D
TYPE_DATE = 0x0E
TYPE_DATETIME = 0x0F
TYPE_TIMESTAMP = 0x10
TYPE_TIME = 0x11

LITERAL_NULL = 0x00
LITERAL_TRUE = 0x01
LITERAL_FALSE = 0x02

# mysql.TypeVarString: the opaque type code given to plain Python bytes.
OPAQUE_VAR_STRING = 0xFD

_HEADER_SIZE = 8
_KEY_ENTRY_SIZE = 6
_VALUE_ENTRY_SIZE = 5
_MAX_DEPTH = 100
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")


class BadJsonError(MalformedError):
    """Binary JSON that breaks the format, JSON text TiDB rejects, or a value JSON cannot hold."""


class JsonUInt64(int):
    """An int stored as JSON uint64 (TiDB's type 0x0a) rather than int64."""

    def __repr__(self) -> str:
        return f"JsonUInt64({int(self)})"


class JsonOpaque(NamedTuple):
    """A MySQL opaque JSON value: the SQL type code of the original value and its bytes."""

    type_code: int
    data: bytes


class JsonTimestamp(dt.datetime):
    """A datetime stored as JSON timestamp (0x10) rather than datetime (0x0f)."""


class JsonDuration(dt.timedelta):
    """A TIME value in JSON (0x11) with the fractional-second precision it was stored with."""

    fsp: int

    def __new__(cls, *args: float, fsp: int = 6, **kwargs: float) -> JsonDuration:
        self = super().__new__(cls, *args, **kwargs)
        self.fsp = fsp
        return self

    def __reduce__(self) -> tuple[Callable[[int, int, int, int], JsonDuration], tuple[int, int, int, int]]:
        return (_make_duration, (self.days, self.seconds, self.microseconds, self.fsp))


def _make_duration(days: int, seconds: int, microseconds: int, fsp: int) -> JsonDuration:
    return JsonDuration(days=days, seconds=seconds, microseconds=microseconds, fsp=fsp)


class JsonPackedTime(NamedTuple):
    """A JSON date/datetime/timestamp that Python's datetime cannot hold (e.g. 0000-00-00)."""

    type_code: int
    packed: int


# A decoded JSON value (the module table): JSON's own kinds, and the MySQL values a binary JSON
# document can hold besides (JsonUInt64 is an int, JsonTimestamp a datetime, JsonDuration a
# timedelta).
JsonValue = (None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
             | dt.date | dt.datetime | dt.timedelta | JsonOpaque | JsonPackedTime)


# ---------------------------------------------------------------------------------------------
# encode


def encode_json(value: object) -> bytes:
    """Encode a Python value (see the module table) as type byte + binary JSON body."""
    type_code, body = encode_json_value(value)
    return bytes([type_code]) + body


def encode_json_value(value: object) -> tuple[int, bytes]:
    """Encode a Python value; returns (type code, body) like TiDB's BinaryJSON{TypeCode, Value}."""
    buf = bytearray()
    type_code = _append_value(buf, value, 0)
    return type_code, bytes(buf)


def parse_json_text(text: str | bytes | bytearray) -> bytes:
    """Parse JSON text the way TiDB does (ParseBinaryJSONFromString) and encode it.

    Numbers follow TiDB's appendBinaryNumber: an integer literal is int64 if it fits, else
    uint64 if it fits, else float64; any literal with a fraction or exponent is float64.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if not text.strip():
        raise BadJsonError("invalid JSON text: the document is empty")
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise BadJsonError(f"invalid JSON text at offset {e.pos}: {e.msg}") from None
    return encode_json(value)


def _parse_int(literal: str) -> int | float:
    n = int(literal)
    if _INT64_MIN <= n <= _INT64_MAX:
        return n
    if 0 <= n <= _UINT64_MAX:
        return JsonUInt64(n)
    return _parse_float(literal)


def _parse_float(literal: str) -> float:
    f = float(literal)
    if math.isinf(f):
        raise BadJsonError(f"invalid JSON text: number {literal} is out of range for a double")
    return f


def _reject_constant(name: str) -> NoReturn:
    raise BadJsonError(f"invalid JSON text: {name} is not a JSON value")


def _utf8(s: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from "\ud800" escapes) become U+FFFD, as Go's decoder does.
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in s).encode("utf-8")


def _append_uvarint(buf: bytearray, n: int) -> None:
    while n >= 0x80:
        buf.append((n & 0x7F) | 0x80)
        n >>= 7
    buf.append(n)


def _append_value(buf: bytearray, value: object, depth: int) -> int:
    """Append the body of `value` to buf and return its type code."""
    if depth > _MAX_DEPTH:
        raise BadJsonError(f"JSON document exceeds the maximum depth {_MAX_DEPTH}")
    if value is None:
        buf.append(LITERAL_NULL)
        return TYPE_LITERAL
    if value is True or value is False:
        buf.append(LITERAL_TRUE if value else LITERAL_FALSE)
        return TYPE_LITERAL
    if isinstance(value, JsonUInt64):
        if not 0 <= value <= _UINT64_MAX:
            raise BadJsonError(f"{int(value)} does not fit a JSON uint64")
        buf += _U64.pack(int(value))
        return TYPE_UINT64
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            buf += _I64.pack(value)
            return TYPE_INT64
        if 0 <= value <= _UINT64_MAX:
            buf += _U64.pack(value)
            return TYPE_UINT64
        raise BadJsonError(f"integer {value} does not fit JSON int64 or uint64")
    if isinstance(value, (float, Decimal)):
        f = float(value)
        if math.isnan(f) or math.isinf(f):
            raise BadJsonError(f"{value} is not a JSON number")
        buf += _F64.pack(f)
        return TYPE_FLOAT64
    if isinstance(value, str):
        data = _utf8(value)
        _append_uvarint(buf, len(data))
        buf += data
        return TYPE_STRING
    if isinstance(value, JsonOpaque):
        buf.append(value.type_code & 0xFF)
        _append_uvarint(buf, len(value.data))
        buf += value.data
        return TYPE_OPAQUE
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        buf.append(OPAQUE_VAR_STRING)
        _append_uvarint(buf, len(data))
        buf += data
        return TYPE_OPAQUE
    if isinstance(value, JsonPackedTime):
        buf += _U64.pack(value.packed)
        return value.type_code
    if isinstance(value, dt.datetime):
        buf += _U64.pack(pack_time_fields(value.year, value.month, value.day, value.hour,
                                          value.minute, value.second, value.microsecond))
        return TYPE_TIMESTAMP if isinstance(value, JsonTimestamp) else TYPE_DATETIME
    if isinstance(value, dt.date):
        buf += _U64.pack(pack_time_fields(value.year, value.month, value.day))
        return TYPE_DATE
    if isinstance(value, dt.timedelta):
        nanos = (value.days * 86400 + value.seconds) * 1_000_000_000 + value.microseconds * 1000
        buf += _I64.pack(nanos)
        buf += _U32.pack(value.fsp if isinstance(value, JsonDuration) else 6)
        return TYPE_TIME
    if isinstance(value, dict):
        _append_object(buf, value, depth)
        return TYPE_OBJECT
    if isinstance(value, (list, tuple)):
        _append_array(buf, list(value), depth)
        return TYPE_ARRAY
    raise BadJsonError(f"cannot encode a {type(value).__name__} as JSON")


def _append_entry_value(buf: bytearray, doc_start: int, entry_at: int, value: object,
                        depth: int) -> None:
    """Append a member's value after the entries and fill its value entry (literal inline)."""
    value_start = len(buf)
    type_code = _append_value(buf, value, depth + 1)
    buf[entry_at] = type_code
    if type_code == TYPE_LITERAL:
        literal = buf[value_start]
        del buf[value_start:]
        buf[entry_at + 1:entry_at + 5] = bytes([literal, 0, 0, 0])
    else:
        buf[entry_at + 1:entry_at + 5] = _U32.pack(value_start - doc_start)


def _append_array(buf: bytearray, items: list[object], depth: int) -> None:
    doc_start = len(buf)
    buf += _U32.pack(len(items)) + b"\0\0\0\0"
    entries_at = len(buf)
    buf += bytes(len(items) * _VALUE_ENTRY_SIZE)
    for i, item in enumerate(items):
        _append_entry_value(buf, doc_start, entries_at + i * _VALUE_ENTRY_SIZE, item, depth)
    buf[doc_start + 4:doc_start + 8] = _U32.pack(len(buf) - doc_start)


def _append_object(buf: bytearray, obj: Mapping[object, object], depth: int) -> None:
    members: dict[bytes, object] = {}
    for key, val in obj.items():
        if not isinstance(key, str):
            raise BadJsonError(f"JSON object keys must be str, got {type(key).__name__}")
        members[_utf8(key)] = val
    keys = sorted(members)  # TiDB sorts keys by their bytes
    doc_start = len(buf)
    buf += _U32.pack(len(keys)) + b"\0\0\0\0"
    key_entries_at = len(buf)
    buf += bytes(len(keys) * _KEY_ENTRY_SIZE)
    value_entries_at = len(buf)
    buf += bytes(len(keys) * _VALUE_ENTRY_SIZE)
    for i, key in enumerate(keys):
        if len(key) > 0xFFFF:
            raise BadJsonError(f"JSON object key of {len(key)} bytes is longer than 65535")
        at = key_entries_at + i * _KEY_ENTRY_SIZE
        buf[at:at + 6] = _U32.pack(len(buf) - doc_start) + _U16.pack(len(key))
        buf += key
    for i, key in enumerate(keys):
        _append_entry_value(buf, doc_start, value_entries_at + i * _VALUE_ENTRY_SIZE,
                            members[key], depth)
    buf[doc_start + 4:doc_start + 8] = _U32.pack(len(buf) - doc_start)


# ---------------------------------------------------------------------------------------------
# decode


class _Reader:
    """Bounds-checked reads over one binary JSON buffer; errors name the offset."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def need(self, at: int, n: int, what: str) -> None:
        if at < 0 or at + n > len(self.data):
            raise TruncatedError(f"binary JSON {what}", at, n, max(len(self.data) - at, 0))

    def u16(self, at: int, what: str) -> int:
        self.need(at, 2, what)
        return int(_U16.unpack_from(self.data, at)[0])

    def u32(self, at: int, what: str) -> int:
        self.need(at, 4, what)
        return int(_U32.unpack_from(self.data, at)[0])

    def uvarint(self, at: int, what: str) -> tuple[int, int]:
        """Returns (value, offset after it)."""
        n = shift = 0
        i = at
        while True:
            self.need(i, 1, what)
            b = self.data[i]
            i += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                return n, i
            shift += 7
            if shift > 63:
                raise BadJsonError(f"binary JSON: {what} length varint overflows at offset {at}")


def _split(data: bytes) -> tuple[int, _Reader]:
    if len(data) < 1:
        raise TruncatedError("binary JSON type code", 0, 1, 0)
    return data[0], _Reader(bytes(data[1:]))


def decode_json(data: bytes) -> JsonValue:
    """Decode type byte + binary JSON body to the Python form in the module table."""
    type_code, reader = _split(data)
    return _decode_value(reader, type_code, 0, 0)


def decode_json_value(type_code: int, body: bytes) -> JsonValue:
    """Decode a (type code, body) pair."""
    return _decode_value(_Reader(bytes(body)), type_code, 0, 0)


def _value_at(r: _Reader, doc: int, entry: int) -> tuple[int, int]:
    """Return (type code, absolute offset of the value or of the inlined literal)."""
    r.need(entry, _VALUE_ENTRY_SIZE, "value entry")
    type_code = r.data[entry]
    if type_code == TYPE_LITERAL:
        return type_code, entry + 1
    return type_code, doc + r.u32(entry + 1, "value offset")


def _decode_value(r: _Reader, type_code: int, at: int, depth: int) -> JsonValue:
    if depth > _MAX_DEPTH:
        raise BadJsonError(f"binary JSON nests deeper than {_MAX_DEPTH} at offset {at}")
    data = r.data
    if type_code == TYPE_LITERAL:
        r.need(at, 1, "literal")
        lit = data[at]
        if lit == LITERAL_NULL:
            return None
        if lit == LITERAL_TRUE:
            return True
        if lit == LITERAL_FALSE:
            return False
        raise UnknownFlagError("binary JSON literal", lit, at, "0x00 null, 0x01 true, 0x02 false")
    if type_code == TYPE_INT64:
        r.need(at, 8, "int64")
        int64: int = _I64.unpack_from(data, at)[0]
        return int64
    if type_code == TYPE_UINT64:
        r.need(at, 8, "uint64")
        return JsonUInt64(_U64.unpack_from(data, at)[0])
    if type_code == TYPE_FLOAT64:
        r.need(at, 8, "float64")
        float64: float = _F64.unpack_from(data, at)[0]
        return float64
    if type_code == TYPE_STRING:
        n, start = r.uvarint(at, "string")
        r.need(start, n, "string")
        return data[start:start + n].decode("utf-8", errors="replace")
    if type_code == TYPE_OPAQUE:
        r.need(at, 1, "opaque type")
        n, start = r.uvarint(at + 1, "opaque")
        r.need(start, n, "opaque")
        return JsonOpaque(data[at], data[start:start + n])
    if type_code in (TYPE_DATE, TYPE_DATETIME, TYPE_TIMESTAMP):
        r.need(at, 8, "time")
        return _time_value(type_code, _U64.unpack_from(data, at)[0])
    if type_code == TYPE_TIME:
        r.need(at, 12, "duration")
        nanos = _I64.unpack_from(data, at)[0]
        fsp = _U32.unpack_from(data, at + 8)[0]
        return JsonDuration(microseconds=_trunc_div(nanos, 1000), fsp=fsp)
    if type_code == TYPE_ARRAY:
        count = r.u32(at, "array count")
        r.need(at + _HEADER_SIZE, count * _VALUE_ENTRY_SIZE, "array value entries")
        items = []
        for i in range(count):
            tc, vat = _value_at(r, at, at + _HEADER_SIZE + i * _VALUE_ENTRY_SIZE)
            items.append(_decode_value(r, tc, vat, depth + 1))
        return items
    if type_code == TYPE_OBJECT:
        count = r.u32(at, "object count")
        r.need(at + _HEADER_SIZE, count * (_KEY_ENTRY_SIZE + _VALUE_ENTRY_SIZE), "object entries")
        values_at = at + _HEADER_SIZE + count * _KEY_ENTRY_SIZE
        obj: dict[str, JsonValue] = {}
        for i in range(count):
            key = _object_key(r, at, i).decode("utf-8", errors="replace")
            tc, vat = _value_at(r, at, values_at + i * _VALUE_ENTRY_SIZE)
            obj[key] = _decode_value(r, tc, vat, depth + 1)
        return obj
    raise UnknownFlagError("binary JSON type code", type_code, at,
                           "one of 0x01 0x03 0x04 0x09-0x11")


def _object_key(r: _Reader, doc: int, i: int) -> bytes:
    entry = doc + _HEADER_SIZE + i * _KEY_ENTRY_SIZE
    key_at = doc + r.u32(entry, "key offset")
    key_len = r.u16(entry + 4, "key length")
    r.need(key_at, key_len, "object key")
    return r.data[key_at:key_at + key_len]


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // b
    return -q if a < 0 else q


def _time_value(type_code: int, packed: int) -> JsonValue:
    y, mo, d, h, mi, s, us = unpack_time_fields(packed)
    try:
        if type_code == TYPE_DATE:
            return dt.date(y, mo, d)
        cls = JsonTimestamp if type_code == TYPE_TIMESTAMP else dt.datetime
        return cls(y, mo, d, h, mi, s, us)
    except ValueError:
        return JsonPackedTime(type_code, packed)


# ---------------------------------------------------------------------------------------------
# text (BinaryJSON.String / MarshalJSON)


def json_to_text(data: bytes) -> str:
    """Print type byte + binary JSON body exactly as TiDB's BinaryJSON.String() does:
    `{"k": "v", "n": [1, 2.0]}` with a space after every colon and comma."""
    type_code, reader = _split(data)
    out: list[str] = []
    _text(reader, type_code, 0, out, 0)
    return "".join(out)


def json_body_to_text(type_code: int, body: bytes) -> str:
    out: list[str] = []
    _text(_Reader(bytes(body)), type_code, 0, out, 0)
    return "".join(out)


def _text(r: _Reader, type_code: int, at: int, out: list[str], depth: int) -> None:
    if type_code == TYPE_OBJECT:
        if depth > _MAX_DEPTH:
            raise BadJsonError(f"binary JSON nests deeper than {_MAX_DEPTH} at offset {at}")
        count = r.u32(at, "object count")
        r.need(at + _HEADER_SIZE, count * (_KEY_ENTRY_SIZE + _VALUE_ENTRY_SIZE), "object entries")
        values_at = at + _HEADER_SIZE + count * _KEY_ENTRY_SIZE
        out.append("{")
        for i in range(count):
            if i:
                out.append(", ")
            out.append(quote_json_string(_object_key(r, at, i)))
            out.append(": ")
            tc, vat = _value_at(r, at, values_at + i * _VALUE_ENTRY_SIZE)
            _text(r, tc, vat, out, depth + 1)
        out.append("}")
    elif type_code == TYPE_ARRAY:
        if depth > _MAX_DEPTH:
            raise BadJsonError(f"binary JSON nests deeper than {_MAX_DEPTH} at offset {at}")
        count = r.u32(at, "array count")
        r.need(at + _HEADER_SIZE, count * _VALUE_ENTRY_SIZE, "array value entries")
        out.append("[")
        for i in range(count):
            if i:
                out.append(", ")
            tc, vat = _value_at(r, at, at + _HEADER_SIZE + i * _VALUE_ENTRY_SIZE)
            _text(r, tc, vat, out, depth + 1)
        out.append("]")
    elif type_code == TYPE_STRING:
        n, start = r.uvarint(at, "string")
        r.need(start, n, "string")
        out.append(quote_json_string(r.data[start:start + n]))
    elif type_code == TYPE_FLOAT64:
        r.need(at, 8, "float64")
        out.append(format_json_float(_F64.unpack_from(r.data, at)[0]))
    elif type_code == TYPE_OPAQUE:
        r.need(at, 1, "opaque type")
        n, start = r.uvarint(at + 1, "opaque")
        r.need(start, n, "opaque")
        b64 = base64.b64encode(r.data[start:start + n]).decode("ascii")
        out.append(f'"base64:type{r.data[at]}:{b64}"')
    elif type_code in (TYPE_DATE, TYPE_DATETIME, TYPE_TIMESTAMP):
        r.need(at, 8, "time")
        y, mo, d, h, mi, s, us = unpack_time_fields(_U64.unpack_from(r.data, at)[0])
        if type_code == TYPE_DATE:
            out.append(f'"{y:04d}-{mo:02d}-{d:02d}"')
        else:  # JSON always prints datetimes with 6 fractional digits
            out.append(f'"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}.{us:06d}"')
    elif type_code == TYPE_TIME:
        r.need(at, 12, "duration")
        out.append(f'"{format_duration_ns(_I64.unpack_from(r.data, at)[0])}"')
    else:
        value = _decode_value(r, type_code, at, depth)
        if value is None:
            out.append("null")
        elif value is True:
            out.append("true")
        elif value is False:
            out.append("false")
        else:
            assert isinstance(value, int), value  # what is left: int64 and uint64
            out.append(str(int(value)))


def format_duration_ns(nanos: int) -> str:
    """MySQL TIME text with 6 fractional digits: [-]HH:MM:SS.ffffff (hours may exceed 24)."""
    sign = "-" if nanos < 0 else ""
    micros = abs(nanos) // 1000
    secs, us = divmod(micros, 1_000_000)
    mins, s = divmod(secs, 60)
    h, m = divmod(mins, 60)
    return f"{sign}{h:02d}:{m:02d}:{s:02d}.{us:06d}"


def format_json_float(f: float) -> str:
    """TiDB's marshalFloat64To: shortest round-trip digits; exponent form when |f| < 1e-15 or
    |f| >= 1e15 (no '+' and no zero padding in the exponent); otherwise fixed form keeping at
    least one fractional digit ("1.0")."""
    if math.isnan(f) or math.isinf(f):
        raise BadJsonError(f"binary JSON holds {f}, which JSON cannot print")
    sign, digits, exp = Decimal(repr(f)).as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    # value = 0.ds * 10**point
    point = len(digits) + exp
    neg = "-" if sign else ""
    a = abs(f)
    if a != 0 and (a < 1e-15 or a >= 1e15):
        mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mantissa}e{point - 1}"
    if ds == "0":
        return f"{neg}0.0"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{ds}"
    if point >= len(ds):
        return f"{neg}{ds}{'0' * (point - len(ds))}.0"
    return f"{neg}{ds[:point]}.{ds[point:]}"


_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x08: "\\b",
            0x0C: "\\f"}


def quote_json_string(raw: bytes) -> str:
    """Quote UTF-8 bytes as TiDB's jsonMarshalStringTo does (Go's encoding/json without HTML
    escaping): control characters as \\u00xx (lowercase hex), invalid UTF-8 as \\ufffd,
    U+2028/U+2029 escaped."""
    # surrogateescape turns each invalid byte into one lone surrogate, which prints as \ufffd
    # exactly where Go's utf8.DecodeRune reports RuneError.
    s = bytes(raw).decode("utf-8", errors="surrogateescape")
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'
    out = ['"']
    for ch in s:
        c = ord(ch)
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c < 0x20:
            out.append(f"\\u00{c:02x}")
        elif 0xDC80 <= c <= 0xDCFF:
            out.append("\\ufffd")
        elif c in (0x2028, 0x2029):
            out.append(f"\\u{c:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def text_to_json_text(text: str) -> str:
    """Normalise JSON text to TiDB's printed form (parse, encode, print)."""
    return json_to_text(parse_json_text(text))
