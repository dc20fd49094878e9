"""TiDB column types → Arrow types, as the store writes them (Spark-ready, so reads never
convert). The table in docs/architecture.md is the contract; ``arrow_type`` implements it:

===============================================  ==========================================
TiDB                                             Arrow
===============================================  ==========================================
TINYINT / SMALLINT / MEDIUMINT / INT / BIGINT    int8 / int16 / int32 / int32 / int64
… UNSIGNED                                       int16 / int32 / int32 / int64 / decimal128(20,0)
YEAR                                             int16
FLOAT / DOUBLE                                   float32 / float64
DECIMAL(p,s)                                     decimal128(p,s); string when p > 38 (exact
                                                 digits as TiDB prints them: "0.000", "-1.50")
DATE / DATETIME / TIMESTAMP                      date32 / timestamp[us] / timestamp[us, UTC];
                                                 always nullable: zero dates read as NULL
TIME                                             duration[us]
CHAR, VARCHAR, TEXT (text charset)               string
BINARY, VARBINARY, BLOB (binary charset)         binary
ENUM, SET, JSON                                  string
BIT(n)                                           int64 (n ≤ 63); decimal128(20,0) (n = 64)
===============================================  ==========================================

Hidden columns (``HIDDEN_COLUMNS``) are added only on request: ``_tidb_rowid`` (int64, or the
memcomparable handle bytes for a clustered common-handle table), ``_tidb_commit_ts`` (uint64
in the store; int64 with ``toward_spark=True``, as Spark has no unsigned type) and
``_tidb_delmark`` (bool). A column is nullable unless it is NOT NULL; DATE, DATETIME and
TIMESTAMP columns are always nullable, as zero or impossible dates (``0000-00-00``,
``2021-02-30``), which TiDB can hold even in NOT NULL columns, read as NULL (``nullable``).
"""
from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from pyspark_theflash.codec import column_types as T
from pyspark_theflash.schema.errors import SchemaError, UnsupportedTypeError
from pyspark_theflash.schema.table_info import ColumnInfo, TableInfo

ROWID = "_tidb_rowid"
COMMIT_TS = "_tidb_commit_ts"
DELMARK = "_tidb_delmark"
HIDDEN_COLUMNS: dict[str, pa.DataType] = {ROWID: pa.int64(), COMMIT_TS: pa.uint64(), DELMARK: pa.bool_()}
MAX_DECIMAL128_PRECISION = 38
UNSIGNED_BIGINT = pa.decimal128(20, 0)

_SIGNED_INTS = {
    T.TYPE_TINY: pa.int8(),
    T.TYPE_SHORT: pa.int16(),
    T.TYPE_INT24: pa.int32(),
    T.TYPE_LONG: pa.int32(),
    T.TYPE_LONGLONG: pa.int64(),
}
_UNSIGNED_INTS = {
    T.TYPE_TINY: pa.int16(),
    T.TYPE_SHORT: pa.int32(),
    T.TYPE_INT24: pa.int32(),
    T.TYPE_LONG: pa.int64(),
    T.TYPE_LONGLONG: UNSIGNED_BIGINT,
}


def decimal_arrow_type(precision: int, scale: int) -> pa.DataType:
    """decimal128(p, s), or string when p exceeds what decimal128 (and Spark) can hold."""
    if precision > MAX_DECIMAL128_PRECISION:
        return pa.string()
    return pa.decimal128(precision, scale)


def arrow_type(col: ColumnInfo) -> pa.DataType:
    """The Arrow type the store keeps ``col`` in."""
    tp = col.tp
    if tp in T.INTEGER_TYPES:
        return (_UNSIGNED_INTS if col.unsigned else _SIGNED_INTS)[tp]
    if tp == T.TYPE_YEAR:
        return pa.int16()
    if tp == T.TYPE_FLOAT:
        return pa.float32()
    if tp == T.TYPE_DOUBLE:
        return pa.float64()
    if tp in T.DECIMAL_TYPES:
        precision = col.flen if col.flen > 0 else 65  # unspecified: MySQL's maximum
        return decimal_arrow_type(precision, max(col.decimal, 0))
    if tp in (T.TYPE_DATE, T.TYPE_NEWDATE):
        return pa.date32()
    if tp == T.TYPE_DATETIME:
        return pa.timestamp("us")
    if tp == T.TYPE_TIMESTAMP:
        return pa.timestamp("us", tz="UTC")
    if tp == T.TYPE_DURATION:
        return pa.duration("us")
    if tp in T.STRING_TYPES:
        return pa.binary() if col.is_binary_string else pa.string()
    if tp in (T.TYPE_ENUM, T.TYPE_SET, T.TYPE_JSON):
        return pa.string()
    if tp == T.TYPE_BIT:
        return UNSIGNED_BIGINT if col.flen >= 64 else pa.int64()
    if tp == T.TYPE_GEOMETRY:
        return pa.binary()  # MySQL's internal WKB bytes
    raise UnsupportedTypeError(
        f"column {col.name!r} (id {col.id}) has type {col.type_name} (Tp {tp}), which has no Arrow mapping"
    )


def nullable(col: ColumnInfo) -> bool:
    """Whether the column's values can read as NULL: unless it is NOT NULL — and always for
    DATE/DATETIME/TIMESTAMP, which can hold zero or impossible dates (0000-00-00, 2020-00-10,
    2021-02-30: TiDB keeps them under a relaxed sql_mode, NOT NULL or not) that read as NULL."""
    return not col.not_null or col.tp in T.TIME_TYPES


def arrow_field(col: ColumnInfo) -> pa.Field:
    return pa.field(col.name, arrow_type(col), nullable=nullable(col))


def hidden_field(name: str, table: TableInfo, toward_spark: bool = False) -> pa.Field:
    """The field of a hidden column (``HIDDEN_COLUMNS``) for ``table``."""
    if name not in HIDDEN_COLUMNS:
        raise SchemaError(f"{name!r} is not a hidden column; hidden columns are {', '.join(HIDDEN_COLUMNS)}")
    tp = HIDDEN_COLUMNS[name]
    if name == ROWID and table.is_common_handle:
        tp = pa.binary()  # the memcomparable datums of the clustered primary key
    if name == COMMIT_TS and toward_spark:
        tp = pa.int64()
    return pa.field(name, tp, nullable=False)


def select_columns(table: TableInfo, columns: Sequence[str] | None) -> list[ColumnInfo]:
    """The named public columns (all of them when ``columns`` is None), in the order given."""
    if columns is None:
        return list(table.columns)
    return [table.column(name) for name in columns]


def arrow_schema(
    table: TableInfo,
    columns: Sequence[str] | None = None,
    hidden: Sequence[str] = (),
    toward_spark: bool = False,
) -> pa.Schema:
    """Arrow schema of ``table``'s columns (all, or those named) followed by the hidden ones asked for."""
    fields = [arrow_field(c) for c in select_columns(table, columns)]
    fields += [hidden_field(name, table, toward_spark) for name in hidden]
    return pa.schema(fields)
