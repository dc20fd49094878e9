"""A table's columns as the row codec reads them: ``row_columns(table, columns)`` is the
``codec.row_columns.RowColumns`` that ``codec.decode_row``, ``codec.batch.decode_rows_to_arrow``
and ``codec.encode_row_for_table`` take, with each column's Arrow field (``arrow.py``) and its
origin default (``defaults.py``): the codec reads bytes by type codes and knows no schema.

Built once per table object and selection of columns (the writer decodes every batch of a
table with one ``TableInfo``), and forgotten with the table.
"""
from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Mapping, Sequence


import pyarrow as pa

from pyspark_theflash.codec.row_columns import RowColumn, RowColumns
from pyspark_theflash.codec.row_v2 import BadRowError
from pyspark_theflash.schema.arrow import arrow_field, select_columns
from pyspark_theflash.schema.defaults import origin_default_value
from pyspark_theflash.schema.errors import SchemaError
from pyspark_theflash.schema.info_json import TableInfoJson
from pyspark_theflash.schema.table_info import ColumnInfo, TableInfo

# id(table) -> {selected names (None: all) -> RowColumns}; an entry leaves with its table. Kept
# beside the tables, not in them: a TableInfo pickled to an executor carries none of it.
_built: dict[int, dict[tuple[str, ...] | None, RowColumns]] = {}
_lock = threading.Lock()


def row_columns(table: TableInfo | TableInfoJson, columns: Sequence[str] | None = None) -> RowColumns:
    """The columns of ``table`` to read from its row values: the named public columns in the
    order given (all of them, in offset order, when ``columns`` is None), typed as
    ``arrow_schema(table, columns)``. ``table`` may be TiDB's table info JSON."""
    if not isinstance(table, TableInfo):
        return _build(TableInfo.from_json(table), columns)
    key = None if columns is None else tuple(columns)
    per_table = _built.get(id(table))
    if per_table is not None:
        found = per_table.get(key)
        if found is not None:
            return found
    built = _build(table, columns)
    with _lock:
        per_table = _built.get(id(table))
        if per_table is None:
            per_table = _built[id(table)] = {}
            weakref.finalize(table, _built.pop, id(table), None)
        return per_table.setdefault(key, built)


def _build(table: TableInfo, columns: Sequence[str] | None) -> RowColumns:
    cols = tuple(_row_column(c) for c in select_columns(table, columns))
    handle = table.handle_column if table.pk_is_handle else None
    return RowColumns(
        table_id=table.id,
        table_name=table.qualified_name,
        schema_version=table.schema_version,
        columns=cols,
        schema=pa.schema([c.arrow_field for c in cols]),
        handle_id=None if handle is None else handle.id,
        common_handle=table.is_common_handle,
    )


def _row_column(col: ColumnInfo) -> RowColumn:
    return RowColumn(
        id=col.id,
        name=col.name,
        tp=col.tp,
        flag=col.flag,
        flen=col.flen,
        decimal=col.decimal,
        elems=col.elems,
        is_binary_string=col.is_binary_string,
        arrow_field=arrow_field(col),
        origin_default_value=functools.partial(_origin_default, col),
    )


def _origin_default(col: ColumnInfo) -> object:
    try:
        return origin_default_value(col)
    except SchemaError as e:
        raise BadRowError(f"{e}; rows without column {col.name} cannot be read") from e
