"""Arrow types as ClickHouse column types, and back.

The store's Arrow schema (``schema.arrow_schema``) is the contract: every column is stored in
ClickHouse in a type that holds its values exactly, and a read casts ClickHouse's Arrow output
back to the store's type. Types ClickHouse has no exact twin for are stored as their Arrow
storage integer (``duration``, ``time64``) and cast back on read.
"""
from __future__ import annotations

import pyarrow as pa

from pyspark_theflash.engine.clickhouse.errors import ClickHouseTypeError


def clickhouse_type(t: pa.DataType, nullable: bool = True) -> str:
    """The ClickHouse column type that stores Arrow type ``t`` exactly."""
    inner = _inner(t)
    return f"Nullable({inner})" if nullable else inner


def _inner(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "Bool"
    if pa.types.is_integer(t):
        return ("U" if pa.types.is_unsigned_integer(t) else "") + f"Int{t.bit_width}"
    if pa.types.is_float32(t):
        return "Float32"
    if pa.types.is_float64(t):
        return "Float64"
    if pa.types.is_decimal(t):
        return f"Decimal({t.precision}, {t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "String"
    if pa.types.is_date32(t):
        return "Date32"
    if pa.types.is_timestamp(t):
        digits = {"s": 0, "ms": 3, "us": 6, "ns": 9}[t.unit]
        return f"DateTime64({digits}, 'UTC')"  # a zone-less timestamp is stored as its UTC wall time
    if pa.types.is_duration(t) or pa.types.is_time64(t) or pa.types.is_time32(t):
        return "Int64"
    raise ClickHouseTypeError(f"Arrow type {t} has no ClickHouse column type in the ClickHouse engine; "
                              "use the native engine (--engine native) for this table")


def to_clickhouse(a: pa.ChunkedArray | pa.Array, t: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """An Arrow column as ClickHouse's insert takes it (durations and times as int64)."""
    if pa.types.is_duration(t) or pa.types.is_time64(t) or pa.types.is_time32(t):
        return a.cast(pa.int64())
    if pa.types.is_timestamp(t) and t.tz is None:
        return a.cast(pa.timestamp(t.unit, "UTC"))
    if pa.types.is_large_string(t):
        return a.cast(pa.string())
    if pa.types.is_large_binary(t):
        return a.cast(pa.binary())
    return a


def from_clickhouse(a: pa.ChunkedArray | pa.Array, t: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """ClickHouse's Arrow output as the store's Arrow type ``t``."""
    if a.type == t:
        return a
    if (pa.types.is_binary(t) or pa.types.is_large_binary(t)) and pa.types.is_string(a.type):
        return a.cast(pa.binary()).cast(t)
    if pa.types.is_time32(t) or pa.types.is_time64(t) or pa.types.is_duration(t):
        return a.cast(pa.int64()).cast(t)
    if pa.types.is_timestamp(t) and pa.types.is_timestamp(a.type):
        return a.cast(pa.timestamp(t.unit, "UTC")).cast(t)
    return a.cast(t)
