"""schema: TiDB table info JSON → ``TableInfo``; TiDB type → Arrow type → Spark type; versions.

* ``table_info``  ``TableInfo`` / ``ColumnInfo`` parsed from (and back to) TiDB's JSON
* ``builder``     ``column("price", "DECIMAL(10,2)")`` / ``table(...)`` from SQL type strings
* ``arrow``       ``arrow_type`` / ``arrow_schema`` and the hidden columns
* ``spark``       ``spark_schema`` (imports PySpark lazily)
* ``defaults``    the origin default: the value of a column absent from a row
* ``row_columns`` ``row_columns(table, columns)``: the columns the row codec reads (``codec.row_columns``)
* ``versions``    ``SchemaHistory``: a table's versions side by side
* ``generated``   VIRTUAL generated columns compiled; it judges which ones ``TableInfo.columns``
                  holds (set here, on import of the package: ``table_info`` sits below it)
* ``partitioning`` a partitioned table's partitions: ``partitioning_of(table)``, ``physical_ids_of``

MySQL's type codes and column flags are the codec's (``codec.column_types``): they say how a
value's bytes read, below any schema.
"""
from __future__ import annotations

from pyspark_theflash.schema.arrow import (
    COMMIT_TS,
    DELMARK,
    HIDDEN_COLUMNS,
    ROWID,
    arrow_field,
    arrow_schema,
    arrow_type,
    hidden_field,
    nullable,
)
from pyspark_theflash.schema.builder import column, parse_sql_type, table
from pyspark_theflash.schema.defaults import convert_default, origin_default_value
from pyspark_theflash.schema.errors import SchemaError, UnknownColumnError, UnsupportedTypeError
from pyspark_theflash.schema.row_columns import row_columns
from pyspark_theflash.schema.spark import spark_schema, spark_type  # PySpark is imported on call
from pyspark_theflash.schema.table_info import ColumnInfo, TableInfo, judge_virtual_columns_with
from pyspark_theflash.schema.versions import SchemaChange, SchemaHistory, diff_columns


def _why_uncomputable(table: TableInfo, column: ColumnInfo) -> str | None:
    from pyspark_theflash.schema.generated import why_uncomputable  # pyarrow.compute: on first use

    return why_uncomputable(table, column)


judge_virtual_columns_with(_why_uncomputable)

__all__ = [
    "COMMIT_TS",
    "DELMARK",
    "HIDDEN_COLUMNS",
    "ROWID",
    "ColumnInfo",
    "SchemaChange",
    "SchemaError",
    "SchemaHistory",
    "TableInfo",
    "UnknownColumnError",
    "UnsupportedTypeError",
    "arrow_field",
    "arrow_schema",
    "arrow_type",
    "column",
    "convert_default",
    "diff_columns",
    "hidden_field",
    "nullable",
    "origin_default_value",
    "parse_sql_type",
    "row_columns",
    "spark_schema",
    "spark_type",
    "table",
]
