"""The Delta schema of a replicated table: each column's Delta type (PROTOCOL.md, "Schema
Serialization Format") and the Arrow type its values have in a data file the log names.

The store keeps a TiDB column in one Arrow type (``schema.arrow``). Where Delta has that type,
the store's Parquet parts are named in place; where it has not (unsigned integers, TIME), the
values are cast to the Delta type in a converted file. Columns are mapped by id (below,
``COLUMN_MAPPING_MODE``):

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
from typing import Sequence

import pyarrow as pa

from pyspark_theflash.lake.errors import UnmappedTypeError
from pyspark_theflash.store.txn_merge_tree import FIELD_ID_KEY, physical_name

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


# Column mapping (PROTOCOL.md, "Column Mapping"): every column has a static physical name and an
# id, and readers resolve a data file's columns by its Parquet field ids ("id" mode). The id is the
# TiDB column id and the physical name ``c<id>`` (``store.txn_merge_tree.physical_name``): a
# stable part of the store names its columns so, with those field ids, whatever RENAME COLUMN,
# DROP COLUMN and ADD COLUMN did after it, so a version names it in place. delta-spark resolves
# by field id; delta-rs 1.6.6 and DuckDB's delta 1.5.5 accept the mode and resolve by the physical
# name (docs/delta.md, "Column mapping"): every file a version names carries both.
COLUMN_MAPPING_MODE = "id"
COLUMN_MAPPING_MODE_KEY = "delta.columnMapping.mode"
MAX_COLUMN_ID = "delta.columnMapping.maxColumnId"
COLUMN_MAPPING_ID = "delta.columnMapping.id"
COLUMN_MAPPING_PHYSICAL_NAME = "delta.columnMapping.physicalName"


def value_schema(store_schema: pa.Schema) -> pa.Schema:
    """The Arrow schema a Delta reader gives the table's rows in: the display names, each column
    in its Delta file type, nullable."""
    return pa.schema([pa.field(f.name, delta_type(f.type, f.name)[1], nullable=True) for f in store_schema])


def file_schema(store_schema: pa.Schema, column_ids: Sequence[int]) -> pa.Schema:
    """The Arrow schema of a data file a Delta version names: each column under its physical name
    ``c<id>`` with its id as the Parquet field id (``column_ids``: the TiDB ids of
    ``store_schema``'s columns, in order), in its Delta file type, nullable (the store keeps
    delete marks without values)."""
    return pa.schema([pa.field(physical_name(cid), delta_type(f.type, f.name)[1], nullable=True,
                               metadata={FIELD_ID_KEY: str(cid).encode()})
                      for f, cid in zip(store_schema, column_ids, strict=True)])


def field_id(field: pa.Field) -> int | None:
    """The Parquet field id an Arrow field carries (None: none)."""
    raw = (field.metadata or {}).get(FIELD_ID_KEY)
    return None if raw is None else int(raw)


def schema_string(store_schema: pa.Schema, column_ids: Sequence[int]) -> str:
    """The ``schemaString`` of the table's ``metaData``: display names (the TiDB names at the
    version's ts), each with its column mapping id and physical name."""
    fields: list[dict[str, object]] = [
        {"name": f.name, "type": delta_type(f.type, f.name)[0], "nullable": True,
         "metadata": {COLUMN_MAPPING_ID: cid, COLUMN_MAPPING_PHYSICAL_NAME: physical_name(cid)}}
        for f, cid in zip(store_schema, column_ids, strict=True)]
    return json.dumps({"type": "struct", "fields": fields}, separators=(",", ":"))


def needs_timestamp_ntz(store_schema: pa.Schema) -> bool:
    return any(pa.types.is_timestamp(f.type) and not f.type.tz for f in store_schema)
