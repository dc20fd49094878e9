"""codec: TiDB/TiKV bytes <-> Python values. Small modules, each pairing encode with decode:

* ``number``               memcomparable int64/uint64/float64 (asc/desc), varint/uvarint
* ``memcomparable_bytes``  memcomparable bytes (asc/desc) and compact bytes
* ``decimal``              MyDecimal binary (DECIMAL)
* ``time`` / ``tso``       packed DATE/DATETIME/TIMESTAMP, TIME as ns; TSO timestamps
* ``datum``                flag-prefixed datums: ``encode_key`` / ``encode_value``
* ``keys``                 record/index keys, index values, region boundaries
* ``row_v1`` / ``row_v2``  the old and the current row formats; ``json_binary`` binary JSON
* ``row_columns``          the columns a row is read into (``schema.row_columns(table)`` builds them);
                           ``row`` reads one row by them, ``batch`` many into Arrow
* ``txn``                  TiKV Percolator ``Lock`` and ``Write`` records
* ``column_types``         MySQL column type codes and flags (how a column's bytes read)

No module here knows about Spark, files or the store.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark_theflash.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from pyspark_theflash.codec.datum import Datum, decode_key, decode_value, encode_key, encode_value
    from pyspark_theflash.codec.decimal import (
        DecimalValue,
        decimal_bin_size,
        decimal_from_bin,
        decimal_from_bin_at,
        decimal_to_bin,
    )
    from pyspark_theflash.codec.errors import (
        BadDecimalError,
        BadKeyError,
        BadLockError,
        BadTimeError,
        BadWriteError,
        CodecError,
        ColumnValueOutOfRangeError,
        MalformedError,
        NonRecordKeyError,
        TruncatedError,
        UnknownFlagError,
        UnknownRowColumnError,
        ValueOutOfRangeError,
    )
    from pyspark_theflash.codec.keys import (
        decode_common_handle_key,
        decode_index_key,
        decode_record_key,
        decode_record_keys,
        decode_region_key,
        encode_common_handle_key,
        encode_index_key,
        encode_record_key,
        encode_region_key,
        record_prefix,
        record_range,
        table_prefix,
    )
    from pyspark_theflash.codec.memcomparable_bytes import (
        decode_bytes,
        decode_bytes_desc,
        decode_compact_bytes,
        encode_bytes,
        encode_bytes_desc,
        encode_compact_bytes,
    )
    from pyspark_theflash.codec.number import (
        decode_float,
        decode_int,
        decode_int_desc,
        decode_uint,
        decode_uint_desc,
        decode_uvarint,
        decode_varint,
        encode_float,
        encode_int,
        encode_int_desc,
        encode_uint,
        encode_uint_desc,
        encode_uvarint,
        encode_varint,
    )
    from pyspark_theflash.codec.row_v1 import decode_row_v1, encode_row_v1
    from pyspark_theflash.codec.time import pack_date, pack_datetime, unpack_date, unpack_datetime
    from pyspark_theflash.codec.tso import compose_ts, logical, physical_ms, ts_to_datetime
    from pyspark_theflash.codec.txn import Lock, Write

    # Row v2, decode_row and the vectorised batch decoder (codec.row_v2, codec.row, codec.batch)
    # add their re-exports below.
    from pyspark_theflash.codec.json_binary import (
        BadJsonError,
        JsonDuration,
        JsonOpaque,
        JsonTimestamp,
        JsonUInt64,
        decode_json,
        encode_json,
        json_to_text,
        parse_json_text,
    )
    from pyspark_theflash.codec.row_columns import RowColumn, RowColumns
    from pyspark_theflash.codec.row_v2 import decode_row_v2, encode_row_for_table, encode_row_v2
    from pyspark_theflash.codec.row import decode_row
    from pyspark_theflash.codec.batch import decode_rows_to_arrow, record_batch_from_rows

# Each name imported from its module when first named (pyspark_theflash/lazy_exports.py).
if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(__name__, {
        "pyspark_theflash.codec.datum": ("Datum", "decode_key", "decode_value", "encode_key", "encode_value"),
        "pyspark_theflash.codec.decimal": (
            "DecimalValue", "decimal_bin_size", "decimal_from_bin", "decimal_from_bin_at", "decimal_to_bin"
        ),
        "pyspark_theflash.codec.errors": (
            "BadDecimalError", "BadKeyError", "BadLockError", "BadTimeError", "BadWriteError", "CodecError",
            "ColumnValueOutOfRangeError", "MalformedError", "NonRecordKeyError", "TruncatedError",
            "UnknownFlagError", "UnknownRowColumnError", "ValueOutOfRangeError"
        ),
        "pyspark_theflash.codec.keys": (
            "decode_common_handle_key", "decode_index_key", "decode_record_key", "decode_record_keys",
            "decode_region_key", "encode_common_handle_key", "encode_index_key", "encode_record_key",
            "encode_region_key", "record_prefix", "record_range", "table_prefix"
        ),
        "pyspark_theflash.codec.memcomparable_bytes": (
            "decode_bytes", "decode_bytes_desc", "decode_compact_bytes", "encode_bytes", "encode_bytes_desc",
            "encode_compact_bytes"
        ),
        "pyspark_theflash.codec.number": (
            "decode_float", "decode_int", "decode_int_desc", "decode_uint", "decode_uint_desc", "decode_uvarint",
            "decode_varint", "encode_float", "encode_int", "encode_int_desc", "encode_uint", "encode_uint_desc",
            "encode_uvarint", "encode_varint"
        ),
        "pyspark_theflash.codec.row_v1": ("decode_row_v1", "encode_row_v1"),
        "pyspark_theflash.codec.time": ("pack_date", "pack_datetime", "unpack_date", "unpack_datetime"),
        "pyspark_theflash.codec.tso": ("compose_ts", "logical", "physical_ms", "ts_to_datetime"),
        "pyspark_theflash.codec.txn": ("Lock", "Write"),
        "pyspark_theflash.codec.json_binary": (
            "BadJsonError", "JsonDuration", "JsonOpaque", "JsonTimestamp", "JsonUInt64", "decode_json",
            "encode_json", "json_to_text", "parse_json_text"
        ),
        "pyspark_theflash.codec.row_columns": ("RowColumn", "RowColumns"),
        "pyspark_theflash.codec.row_v2": ("decode_row_v2", "encode_row_for_table", "encode_row_v2"),
        "pyspark_theflash.codec.row": ("decode_row",),
        "pyspark_theflash.codec.batch": ("decode_rows_to_arrow", "record_batch_from_rows"),
    })

# the names above are the package's own (under mypy --strict a name is re-exported only when listed)
__all__ = [
    "BadDecimalError", "BadJsonError", "BadKeyError", "BadLockError", "BadTimeError", "BadWriteError",
    "CodecError", "ColumnValueOutOfRangeError", "compose_ts", "Datum", "decimal_bin_size", "decimal_from_bin",
    "decimal_from_bin_at", "decimal_to_bin", "DecimalValue", "decode_bytes", "decode_bytes_desc",
    "decode_common_handle_key", "decode_compact_bytes", "decode_float", "decode_index_key", "decode_int",
    "decode_int_desc", "decode_json", "decode_key", "decode_record_key", "decode_record_keys",
    "decode_region_key", "decode_row", "decode_row_v1", "decode_row_v2", "decode_rows_to_arrow", "decode_uint",
    "decode_uint_desc", "decode_uvarint", "decode_value", "decode_varint", "encode_bytes", "encode_bytes_desc",
    "encode_common_handle_key", "encode_compact_bytes", "encode_float", "encode_index_key", "encode_int",
    "encode_int_desc", "encode_json", "encode_key", "encode_record_key", "encode_region_key",
    "encode_row_for_table", "encode_row_v1", "encode_row_v2", "encode_uint", "encode_uint_desc",
    "encode_uvarint", "encode_value", "encode_varint", "json_to_text", "JsonDuration", "JsonOpaque",
    "JsonTimestamp", "JsonUInt64", "Lock", "logical", "MalformedError", "NonRecordKeyError", "pack_date",
    "pack_datetime", "parse_json_text", "physical_ms", "record_batch_from_rows", "record_prefix",
    "record_range", "RowColumn", "RowColumns", "table_prefix", "TruncatedError", "ts_to_datetime",
    "UnknownFlagError", "UnknownRowColumnError", "unpack_date", "unpack_datetime", "ValueOutOfRangeError",
    "Write",
]
