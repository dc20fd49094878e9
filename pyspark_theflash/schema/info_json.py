"""TiDB's table info JSON (``model.TableInfo`` as TiDB marshals it), as typed dicts.

These name the keys TheFlash reads and writes; a table info from TiDB carries more
(``comment``, ``auto_inc_id``, ...), which ride along untouched in ``TableInfo.raw``.
Every key is optional to the type (``total=False``): a table info is checked where it is
parsed (``TableInfo.from_json``, ``ColumnInfo.from_json``), not by its type.
"""
from __future__ import annotations

from typing import TypedDict


class NameJson(TypedDict):
    """A TiDB ``model.CIStr``: the name as written (``O``) and lower-cased (``L``)."""

    O: str  # noqa: E741 (TiDB's key)
    L: str


class FieldTypeJson(TypedDict, total=False):
    """A column's ``type`` (TiDB's ``types.FieldType``)."""

    Tp: int
    Flag: int
    Flen: int
    Decimal: int
    Charset: str
    Collate: str
    Elems: list[str] | None


class ColumnInfoJson(TypedDict, total=False):
    """One entry of ``cols`` (TiDB's ``model.ColumnInfo``). Defaults are TiDB's text forms
    (a string, or None for NULL)."""

    id: int
    name: NameJson
    offset: int
    type: FieldTypeJson
    origin_default: object
    origin_default_bit: str | None
    default: object
    default_bit: str | None
    state: int
    version: int
    generated_expr_string: str
    generated_stored: bool
    comment: str


class IndexColumnJson(TypedDict, total=False):
    """One column of an index (TiDB's ``model.IndexColumn``)."""

    name: NameJson
    offset: int
    length: int


class IndexInfoJson(TypedDict, total=False):
    """One entry of ``index_info`` (TiDB's ``model.IndexInfo``)."""

    id: int
    idx_name: NameJson
    tbl_name: NameJson
    idx_cols: list[IndexColumnJson]
    state: int
    index_type: int
    is_unique: bool
    is_primary: bool
    primary: bool
    unique: bool


class PartitionDefinitionJson(TypedDict, total=False):
    """One partition of ``partition.definitions``: its physical table id, name and bounds
    (SQL text: ``less_than`` of RANGE, ``in_values`` of LIST)."""

    id: int
    name: NameJson
    less_than: list[str] | None
    in_values: list[list[str]] | None


class PartitionInfoJson(TypedDict, total=False):
    """A partitioned table's ``partition`` (TiDB's ``model.PartitionInfo``): ``type`` 1 RANGE,
    2 HASH, 3 LIST, 4 KEY."""

    type: int
    expr: str
    columns: list[NameJson] | None
    enable: bool
    definitions: list[PartitionDefinitionJson]
    num: int


class PartitionOfJson(TypedDict):
    """``partition_of`` of one partition's table info as the store keeps it: the logical
    table's id and the partition's name (``schema.partitioning.physical_table_json``)."""

    id: int
    partition: str


class TableInfoJson(TypedDict, total=False):
    """A table info (TiDB's ``model.TableInfo``), plus ``partition_of`` and ``db_name`` where
    TheFlash keeps them."""

    id: int
    name: NameJson
    charset: str
    collate: str
    cols: list[ColumnInfoJson]
    index_info: list[IndexInfoJson] | None
    pk_is_handle: bool
    is_common_handle: bool
    common_handle_version: int
    state: int
    max_col_id: int
    max_idx_id: int
    schema_version: int
    update_timestamp: int
    partition: PartitionInfoJson | None
    partition_of: PartitionOfJson
    db_name: str
