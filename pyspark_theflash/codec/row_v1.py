"""TiDB's old row format (``tablecodec.EncodeOldRow``): ``encode_value`` of datums
alternating column id (int) and column value. A row without columns is a single nil flag.

Before encoding, values are flattened as TiDB does: ``datetime`` → its packed uint,
``duration_ns`` → int, ``enum``/``set``/``bit`` → uint. So a DATETIME is written as a
uvarint here (flag 9), a TIME as a varint (flag 8), and decoding gives those back as
``uint``/``int`` datums: the table schema says how to read them.
"""
from __future__ import annotations

from collections.abc import Sequence

from pyspark_theflash.codec.datum import NIL_FLAG, Datum, decode_datum_at, encode_value
from pyspark_theflash.codec.errors import CodecError, MalformedError
from pyspark_theflash.codec.number import Buffer
from pyspark_theflash.codec.time import pack_datetime

EMPTY_ROW = bytes((NIL_FLAG,))


def flatten(d: Datum) -> Datum:
    """TiDB's ``tablecodec.flatten``: the storage kind of a datum in an old-format row."""
    if d.kind == "datetime":
        v = d.value
        return Datum("uint", v if isinstance(v, int) and not isinstance(v, bool) else pack_datetime(v))
    if d.kind == "duration_ns":
        return Datum("int", d.value)
    if d.kind in ("enum", "set", "bit"):
        return Datum("uint", d.value)
    return d


def encode_row_v1(cols: Sequence[tuple[int, Datum]]) -> bytes:
    """Old-format row of (column id, value) pairs."""
    if not cols:
        return EMPTY_ROW
    datums: list[Datum] = []
    for col_id, d in cols:
        datums.append(Datum("int", col_id))
        datums.append(flatten(d))
    return encode_value(datums)


def decode_row_v1(data: Buffer) -> dict[int, Datum]:
    """{column id: datum} of an old-format row (NULL columns present as ``null`` datums)."""
    if bytes(data) == EMPTY_ROW:
        return {}
    row: dict[int, Datum] = {}
    pos = 0
    n = len(data)
    while pos < n:
        col, pos = decode_datum_at(data, pos)
        if col.kind != "int":
            raise MalformedError(
                f"row v1 at offset {pos}: expected a column id (int datum), found a {col.kind} datum; "
                "the value is not an old-format row"
            )
        if pos >= n:
            raise CodecError(f"row v1: column {col.value} has no value (row ends at offset {pos})")
        value, pos = decode_datum_at(data, pos)
        row[col.value] = value
    return row
