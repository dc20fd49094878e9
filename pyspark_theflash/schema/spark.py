"""TiDB column types → Spark SQL types, matching ``arrow.py`` one to one (Spark reads the
store's Arrow batches without conversion). PySpark is imported inside the functions so the
rest of the package never pays for it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from pyspark_theflash.schema.arrow import arrow_type, hidden_field, nullable, select_columns
from pyspark_theflash.schema.errors import UnsupportedTypeError
from pyspark_theflash.schema.table_info import ColumnInfo, TableInfo

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType


def spark_type_of_arrow(tp: pa.DataType) -> DataType:
    """The Spark type whose Arrow form is ``tp`` (for the types ``arrow_type`` produces)."""
    from pyspark.sql import types as S

    simple = {
        pa.int8(): S.ByteType(),
        pa.int16(): S.ShortType(),
        pa.int32(): S.IntegerType(),
        pa.int64(): S.LongType(),
        pa.float32(): S.FloatType(),
        pa.float64(): S.DoubleType(),
        pa.bool_(): S.BooleanType(),
        pa.date32(): S.DateType(),
        pa.string(): S.StringType(),
        pa.binary(): S.BinaryType(),
        pa.timestamp("us"): S.TimestampNTZType(),
        pa.timestamp("us", tz="UTC"): S.TimestampType(),
        pa.duration("us"): S.DayTimeIntervalType(),
    }
    if tp in simple:
        return simple[tp]
    if pa.types.is_decimal(tp):
        return S.DecimalType(tp.precision, tp.scale)
    raise UnsupportedTypeError(f"Arrow type {tp} has no Spark counterpart here")


def spark_type(col: ColumnInfo) -> DataType:
    """The Spark type of a TiDB column (see the table in docs/architecture.md)."""
    return spark_type_of_arrow(arrow_type(col))


def spark_schema(table: TableInfo, columns: Sequence[str] | None = None, hidden: Sequence[str] = ()) -> StructType:
    """Spark schema of ``table``'s columns (all, or those named) and the hidden ones asked for;
    ``_tidb_commit_ts`` is a LongType here (Spark has no unsigned 64-bit type)."""
    from pyspark.sql import types as S

    fields = [S.StructField(c.name, spark_type(c), nullable=nullable(c)) for c in select_columns(table, columns)]
    for name in hidden:
        f = hidden_field(name, table, toward_spark=True)
        fields.append(S.StructField(f.name, spark_type_of_arrow(f.type), nullable=False))
    return S.StructType(fields)
