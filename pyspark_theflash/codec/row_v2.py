"""TiDB row format v2 (pkg/util/rowcodec; TiKV codec/row/v2).

    version:u8 = 0x80 | flags:u8 | not_null_count:u16 | null_count:u16
    | not-null column ids (ascending) | null column ids (ascending)
    | end offset of each not-null value | values | [checksum]

Flags: 0x01 "large" (ids u32 and offsets u32 instead of u8 and u16), used when a column id
exceeds 255 or the values exceed 65535 bytes; 0x02 "checksum": after the values come a header
byte (bits 0-2 version 0..2, bit 3 "extra checksum") and one or two little-endian CRC32s,
which this decoder skips. All integers are little-endian.

Values: INT as the smallest of 1/2/4/8 signed bytes, UINT (also ENUM, SET, BIT and the packed
DATE/DATETIME/TIMESTAMP) as the smallest unsigned width, FLOAT/DOUBLE as 8 memcomparable
bytes, strings raw, DECIMAL as precision byte + frac byte + MyDecimal binary, TIME as int64
nanoseconds (smallest signed width), JSON as type byte + binary JSON.
"""
from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, NamedTuple, SupportsInt

from pyspark_theflash.codec import column_types as T
from pyspark_theflash.codec import json_binary
from pyspark_theflash.codec.datum import Datum
from pyspark_theflash.codec.decimal import (
    DecimalValue,
    decode_decimal_at,
    encode_decimal,
    precision_and_frac,
)
from pyspark_theflash.codec.number import cmp_uint64_to_float, encode_float
from pyspark_theflash.codec.row_columns import ColumnType, RowColumns
from pyspark_theflash.codec.time import duration_to_ns, pack_datetime
from pyspark_theflash.codec.errors import (
    MalformedError,
    TruncatedError,
    UnknownFlagError,
    ValueOutOfRangeError,
)

CODEC_VER = 0x80
FLAG_LARGE = 0x01
FLAG_CHECKSUM = 0x02
_KNOWN_FLAGS = FLAG_LARGE | FLAG_CHECKSUM
_CHECKSUM_VERSION_MASK = 0x07
_CHECKSUM_FLAG_EXTRA = 0x08
_MAX_CHECKSUM_VERSION = 2
HEADER_SIZE = 6

_SIGNED = {1: struct.Struct("<b"), 2: struct.Struct("<h"), 4: struct.Struct("<i"),
           8: struct.Struct("<q")}
_UNSIGNED = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"),
             8: struct.Struct("<Q")}
_U64 = struct.Struct(">Q")


class BadRowError(MalformedError):
    """A row value that is not a valid TiDB row (v1 or v2)."""


class RowV2(NamedTuple):
    """The parsed header of a v2 row; values[offsets...] are relative to `values_start`."""

    flags: int
    not_null_ids: tuple[int, ...]
    null_ids: tuple[int, ...]
    end_offsets: tuple[int, ...]
    values_start: int

    def value(self, data: bytes, i: int) -> bytes:
        start = self.end_offsets[i - 1] if i else 0
        return data[self.values_start + start:self.values_start + self.end_offsets[i]]


def is_row_v2(data: bytes) -> bool:
    return len(data) > 0 and data[0] == CODEC_VER


def parse_row_v2(data: bytes) -> RowV2:
    """Parse and validate the header (and checksum suffix) of a v2 row."""
    if len(data) < HEADER_SIZE:
        raise TruncatedError("row v2 header", 0, HEADER_SIZE, len(data))
    if data[0] != CODEC_VER:
        raise UnknownFlagError("row format version", data[0], 0, "0x80 (row format v2)")
    flags = data[1]
    if flags & ~_KNOWN_FLAGS:
        raise UnknownFlagError("row v2 flags", flags, 1, "bits 0x01 (large) and 0x02 (checksum)")
    n_not_null, n_null = struct.unpack_from("<HH", data, 2)
    large = flags & FLAG_LARGE
    id_size, off_size = (4, 4) if large else (1, 2)
    n_ids = n_not_null + n_null
    ids_end = HEADER_SIZE + n_ids * id_size
    values_start = ids_end + n_not_null * off_size
    if len(data) < values_start:
        raise TruncatedError("row v2 column ids and offsets", HEADER_SIZE,
                             values_start - HEADER_SIZE, len(data) - HEADER_SIZE)
    if large:
        ids = struct.unpack_from(f"<{n_ids}I", data, HEADER_SIZE)
        offsets = struct.unpack_from(f"<{n_not_null}I", data, ids_end)
    else:
        ids = tuple(data[HEADER_SIZE:ids_end])
        offsets = struct.unpack_from(f"<{n_not_null}H", data, ids_end)
    prev = 0
    for i, off in enumerate(offsets):
        if off < prev:
            raise BadRowError(f"row v2 end offset #{i} = {off} is below the previous {prev} "
                              f"(offsets at byte {ids_end}); the row is corrupt")
        prev = off
    values_end = values_start + prev
    if len(data) < values_end:
        raise TruncatedError("row v2 values", values_start, prev, len(data) - values_start)
    expected_end = values_end
    if flags & FLAG_CHECKSUM:
        if len(data) < values_end + 5:
            raise TruncatedError("row v2 checksum", values_end, 5, len(data) - values_end)
        header = data[values_end]
        if header & _CHECKSUM_VERSION_MASK > _MAX_CHECKSUM_VERSION or header & 0xF0:
            raise UnknownFlagError("row v2 checksum header", header, values_end,
                                   "checksum version 0..2, optional extra bit 0x08")
        expected_end = values_end + 1 + (8 if header & _CHECKSUM_FLAG_EXTRA else 4)
        if len(data) < expected_end:
            raise TruncatedError("row v2 checksum", values_end, expected_end - values_end,
                                 len(data) - values_end)
    if len(data) != expected_end:
        raise BadRowError(f"row v2 has {len(data) - expected_end} trailing byte(s) after offset "
                          f"{expected_end}; the row is corrupt or not a v2 row")
    return RowV2(flags, tuple(ids[:n_not_null]), tuple(ids[n_not_null:]), tuple(offsets),
                 values_start)


def decode_row_v2(data: bytes) -> dict[int, bytes | None]:
    """Column id -> raw value bytes (None for a NULL column). Absent columns are not keys."""
    row = parse_row_v2(data)
    out: dict[int, bytes | None] = {cid: row.value(data, i)
                                    for i, cid in enumerate(row.not_null_ids)}
    for cid in row.null_ids:
        out[cid] = None
    return out


# ---------------------------------------------------------------------------------------------
# value encoding


def encode_int_v2(v: int) -> bytes:
    for width in (1, 2, 4, 8):
        bits = width * 8 - 1
        if -(1 << bits) <= v < (1 << bits):
            return _SIGNED[width].pack(v)
    raise ValueOutOfRangeError(f"int {v} does not fit int64")


def encode_uint_v2(v: int) -> bytes:
    for width in (1, 2, 4, 8):
        if 0 <= v < (1 << (width * 8)):
            return _UNSIGNED[width].pack(v)
    raise ValueOutOfRangeError(f"uint {v} does not fit uint64")


def decode_int_v2(raw: bytes) -> int:
    fmt = _SIGNED.get(len(raw))
    if fmt is None:
        raise BadRowError(f"row v2 int value has {len(raw)} bytes; expected 1, 2, 4 or 8")
    return int(fmt.unpack(raw)[0])


def decode_uint_v2(raw: bytes) -> int:
    fmt = _UNSIGNED.get(len(raw))
    if fmt is None:
        raise BadRowError(f"row v2 uint value has {len(raw)} bytes; expected 1, 2, 4 or 8")
    return int(fmt.unpack(raw)[0])


def decode_float_v2(raw: bytes) -> float:
    if len(raw) != 8:
        raise BadRowError(f"row v2 float value has {len(raw)} bytes; expected 8")
    return cmp_uint64_to_float(_U64.unpack(raw)[0])


def decode_decimal_v2(raw: bytes) -> Decimal:
    """precision byte, frac byte, MyDecimal binary filling the rest of the value."""
    value, end = decode_decimal_at(raw, 0)
    if end != len(raw):
        raise BadRowError(f"row v2 DECIMAL({value.precision},{value.frac}) value has "
                          f"{len(raw) - end} byte(s) after its binary form")
    return value.value


def pack_datetime_value(v: int | str | dt.date) -> int:
    """A packed uint64 from a packed int, datetime, date or 'YYYY-MM-DD[ HH:MM:SS[.f]]' text."""
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v) if len(v) > 10 else dt.date.fromisoformat(v)
    return pack_datetime(v)  # aware datetimes (TIMESTAMP) are converted to UTC


def duration_ns_value(v: dt.timedelta | SupportsInt | str) -> int:
    if isinstance(v, dt.timedelta):
        return duration_to_ns(v)
    return int(v)


def json_value_for_column(v: object) -> object:
    """A JSON column value as its Python JSON value: str is JSON text (parsed the way TiDB
    parses it), anything else is already a Python JSON value (see codec.json_binary)."""
    if isinstance(v, (str, bytes, bytearray)):
        return json_binary.decode_json(json_binary.parse_json_text(v))
    return v


def encode_value_v2(datum: Datum) -> bytes:
    """The v2 value bytes of one not-null datum (see module docstring)."""
    kind, v = datum.kind, datum.value
    if kind == "int":
        return encode_int_v2(int(v))
    if kind in ("uint", "enum", "set", "bit"):
        return encode_uint_v2(int(v))
    if kind == "bytes":
        return v.encode("utf-8") if isinstance(v, str) else bytes(v)
    if kind == "float":
        return encode_float(float(v))
    if kind == "decimal":
        if isinstance(v, tuple):  # (value, precision, frac), e.g. DecimalValue
            return encode_decimal(Decimal(v[0]), int(v[1]), int(v[2]))
        return encode_decimal(Decimal(v))
    if kind == "datetime":
        return encode_uint_v2(pack_datetime_value(v))
    if kind == "duration_ns":
        return encode_int_v2(duration_ns_value(v))
    if kind == "json":  # a Python JSON value, as in codec.datum (str is a JSON string)
        return json_binary.encode_json(v)
    raise ValueOutOfRangeError(f"datum kind {kind!r} cannot be encoded in a row v2 value")


def encode_row_v2(cols: Sequence[tuple[int, Datum]]) -> bytes:
    """Encode (column id, datum) pairs as a v2 row; a datum of kind 'null' is a NULL column.

    The large layout is used when a column id exceeds 255 or the values exceed 65535 bytes."""
    not_null: list[tuple[int, bytes]] = []
    null_ids: list[int] = []
    seen: set[int] = set()
    for cid, datum in cols:
        if cid in seen:
            raise ValueOutOfRangeError(f"column id {cid} appears twice in one row")
        seen.add(cid)
        if not 0 <= cid <= 0xFFFFFFFF:
            raise ValueOutOfRangeError(f"column id {cid} does not fit uint32")
        if datum.kind == "null" or datum.value is None:
            null_ids.append(cid)
        else:
            not_null.append((cid, encode_value_v2(datum)))
    not_null.sort(key=lambda p: p[0])
    null_ids.sort()
    if len(not_null) > 0xFFFF or len(null_ids) > 0xFFFF:
        raise ValueOutOfRangeError("a v2 row holds at most 65535 not-null and 65535 null columns")
    values = b"".join(v for _, v in not_null)
    ends: list[int] = []
    total = 0
    for _, v in not_null:
        total += len(v)
        ends.append(total)
    all_ids = [cid for cid, _ in not_null] + null_ids
    large = total > 0xFFFF or any(cid > 0xFF for cid in all_ids)
    out = bytearray([CODEC_VER, FLAG_LARGE if large else 0])
    out += struct.pack("<HH", len(not_null), len(null_ids))
    if large:
        out += struct.pack(f"<{len(all_ids)}I", *all_ids)
        out += struct.pack(f"<{len(ends)}I", *ends)
    else:
        out += bytes(all_ids)
        out += struct.pack(f"<{len(ends)}H", *ends)
    out += values
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Python values -> datums by column type (for the mini cluster's table API)


def datum_for_column(column: ColumnType, value: Any) -> Datum:
    """Convert a Python value to the datum TiDB would store for `column`."""
    if value is None:
        return Datum("null", None)
    tp = column.tp
    if tp in T.INTEGER_TYPES or tp == T.TYPE_YEAR:
        v = int(value)
        return Datum("uint" if column.unsigned else "int", v)
    if tp in (T.TYPE_FLOAT, T.TYPE_DOUBLE):
        return Datum("float", float(value))
    if tp in (T.TYPE_NEWDECIMAL, T.TYPE_DECIMAL):
        d = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
        if column.flen <= 0:  # no declared precision: store the value as it is
            return Datum("decimal", DecimalValue(d, *precision_and_frac(d)))
        frac = max(column.decimal, 0)
        # MySQL rounds half away from zero to the column's scale
        with localcontext() as ctx:  # DECIMAL(65,30) needs more than the default 28 digits
            ctx.prec = 100
            d = d.quantize(Decimal(1).scaleb(-frac), rounding=ROUND_HALF_UP)
        return Datum("decimal", DecimalValue(d, column.flen, frac))
    if tp in (T.TYPE_DATE, T.TYPE_DATETIME, T.TYPE_TIMESTAMP):
        if tp == T.TYPE_DATE and isinstance(value, dt.datetime):
            value = value.date()
        return Datum("datetime", pack_datetime_value(value))
    if tp == T.TYPE_DURATION:
        return Datum("duration_ns", duration_ns_value(value))
    if tp == T.TYPE_JSON:
        return Datum("json", json_value_for_column(value))
    if tp == T.TYPE_ENUM:
        return Datum("enum", _enum_index(column, value))
    if tp == T.TYPE_SET:
        return Datum("set", _set_mask(column, value))
    if tp == T.TYPE_BIT:
        if isinstance(value, (bytes, bytearray)):
            value = int.from_bytes(value, "big")
        return Datum("bit", int(value))
    if isinstance(value, str):
        return Datum("bytes", value.encode("utf-8"))
    return Datum("bytes", bytes(value))


def _enum_index(column: ColumnType, value: int | str) -> int:
    if isinstance(value, int):
        return value
    if value == "":
        return 0
    try:
        return list(column.elems).index(value) + 1
    except ValueError:
        raise ValueOutOfRangeError(
            f"{value!r} is not an element of ENUM column {column.name} "
            f"({', '.join(column.elems)})") from None


def _set_mask(column: ColumnType, value: object) -> int:
    if isinstance(value, int):
        return value
    names = value if isinstance(value, (set, frozenset, list, tuple)) else \
        [p for p in str(value).split(",") if p]
    elems = list(column.elems)
    mask = 0
    for name in names:
        try:
            mask |= 1 << elems.index(name)
        except ValueError:
            raise ValueOutOfRangeError(
                f"{name!r} is not an element of SET column {column.name} "
                f"({', '.join(elems)})") from None
    return mask


def encode_row_for_table(columns: RowColumns, values: Mapping[str, object]) -> bytes:
    """Encode a row of a table (its `columns`, `schema.row_columns(table)`) from column name ->
    Python value, as TiDB would.

    Columns missing from `values` are left out of the row (readers give them their origin
    default); the int handle column of a pk_is_handle table lives in the key, not the row."""
    cols: list[tuple[int, Datum]] = []
    for name, value in values.items():
        column = columns.column(name)
        if column.id == columns.handle_id:
            continue
        cols.append((column.id, datum_for_column(column, value)))
    return encode_row_v2(cols)
