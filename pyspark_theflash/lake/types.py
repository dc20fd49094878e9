"""The Delta schema of a replicated table: each column's Delta type (PROTOCOL.md, "Schema
Serialization Format") and the Arrow type its values have in a data file the log names.

The store keeps a TiDB column in one Arrow type (``schema.arrow``). Where Delta has that type,
the store's Parquet parts are named in place; where it has not (unsigned integers, TIME), the
values are cast to the Delta type in a converted file:

| store (Arrow)            | Delta            | in the file      | TiDB                            |
|--------------------------|------------------|------------------|---------------------------------|
| bool                     | boolean          | same             | (BOOL is TINYINT)               |
| int8/16/32/64            | byte/short/integer/long | same      | TINYINT..BIGINT, YEAR (short), BIT(<64) (long) |
| uint8/16/32              | short/integer/long | cast           | the UNSIGNED integers           |
| uint64                   | decimal(20,0)    | cast             | BIGINT UNSIGNED, BIT(64)        |
| float32/64               | float/double     | same             | FLOAT, DOUBLE                   |
| decimal128(p,s)          | decimal(p,s)     | same             | DECIMAL(p<=38)                  |
| string                   | string           | same             | CHAR/VARCHAR/TEXT, DECIMAL(>38), ENUM, SET, JSON |
| binary                   | binary           | same             | BINARY/VARBINARY/BLOB, GEOMETRY |
| date32                   | date             | same             | DATE                            |
| timestamp(us)            | timestamp_ntz    | same             | DATETIME (``timestampNtz`` feature) |
| timestamp(us, UTC)       | timestamp        | same             | TIMESTAMP                       |
| duration(us)             | long (µs)        | cast             | TIME                            |
"""
from __future__ import annotations

import json


import pyarrow as pa

from pyspark_theflash.lake.errors import UnmappedTypeError

_SAME: dict[pa.DataType, str] = {
    pa.bool_(): "boolean", pa.int8(): "byte", pa.int16(): "short", pa.int32(): "integer", pa.int64(): "long",
    pa.float32(): "float", pa.float64(): "double", pa.string(): "string", pa.large_string(): "string",
    pa.binary(): "binary", pa.large_binary(): "binary", pa.date32(): "date",
}
_CAST: dict[pa.DataType, tuple[str, pa.DataType]] = {
    pa.uint8(): ("short", pa.int16()), pa.uint16(): ("integer", pa.int32()), pa.uint32(): ("long", pa.int64()),
    pa.uint64(): ("decimal(20,0)", pa.decimal128(20, 0)), pa.duration("us"): ("long", pa.int64()),
}


def delta_type(store_type: pa.DataType, column: str) -> tuple[str, pa.DataType]:
    """(Delta type name, Arrow type of the values in a data file) of a column the store keeps as
    ``store_type``."""
    if store_type in _SAME:
        return _SAME[store_type], store_type
    if store_type in _CAST:
        return _CAST[store_type]
    if pa.types.is_decimal(store_type) and store_type.precision <= 38:
        return f"decimal({store_type.precision},{store_type.scale})", store_type
    if pa.types.is_timestamp(store_type) and store_type.unit == "us":
        return ("timestamp" if store_type.tz else "timestamp_ntz"), store_type
    raise UnmappedTypeError(f"column {column!r} has Arrow type {store_type}, which has no Delta type; "
                            "it cannot be published (report it with the table's CREATE TABLE)")


def file_schema(store_schema: pa.Schema) -> pa.Schema:
    """The Arrow schema of a data file a Delta version names (every column nullable: the store
    keeps delete marks without values)."""
    return pa.schema([pa.field(f.name, delta_type(f.type, f.name)[1], nullable=True) for f in store_schema])


def schema_string(store_schema: pa.Schema) -> str:
    """The ``schemaString`` of the table's ``metaData``."""
    fields: list[dict[str, object]] = [{"name": f.name, "type": delta_type(f.type, f.name)[0], "nullable": True,
                                     "metadata": {}} for f in store_schema]
    return json.dumps({"type": "struct", "fields": fields}, separators=(",", ":"))


def needs_timestamp_ntz(store_schema: pa.Schema) -> bool:
    return any(pa.types.is_timestamp(f.type) and not f.type.tz for f in store_schema)
