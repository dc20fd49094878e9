"""The columns a row value is read into, as the row codec needs them, and nothing of a schema.

TiDB's row decoder takes the same (``rowcodec.ColInfo``: a column id and its field type, the
handle's column ids and a callback giving a missing column's default): a row names its values
only by column id, so the reader says which ids it wants, as what, and what an absent one is.
``schema.row_columns(table, columns)`` builds a ``RowColumns`` from a ``TableInfo``: the Arrow
type of a column and the parsing of TiDB's default text stay schema's, and ``codec.row`` /
``codec.batch`` read with what they are given.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from pyspark_theflash.codec import column_types as T
from pyspark_theflash.codec.errors import UnknownRowColumnError

_UINT64_MAX = (1 << 64) - 1


class ColumnType(Protocol):
    """A column's field type as the encoders read it (``schema.ColumnInfo`` and ``RowColumn``
    both are one)."""

    @property
    def name(self) -> str: ...
    @property
    def tp(self) -> int: ...
    @property
    def flen(self) -> int: ...
    @property
    def decimal(self) -> int: ...
    @property
    def elems(self) -> tuple[str, ...]: ...
    @property
    def unsigned(self) -> bool: ...


@dataclass(frozen=True)
class RowColumn:
    """One column to read from row values: its id, its field type, the Arrow field its values
    take and its origin default."""

    id: int
    name: str
    tp: int  # MySQL type code (codec.column_types)
    flag: int
    flen: int
    decimal: int
    elems: tuple[str, ...]
    is_binary_string: bool  # a string column of the binary charset: bytes, not text
    arrow_field: pa.Field
    # The origin default as a value of the Arrow type (None: NULL), worked out when a row
    # lacks the column, so a default that cannot be read fails only such rows (``BadRowError``).
    origin_default_value: Callable[[], Any] = field(compare=False, repr=False)
    # the ints the column holds, for an integer-valued one (its Arrow type's range); set below
    int_range: tuple[int, int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        tp = self.arrow_field.type
        if pa.types.is_integer(tp):
            bits = tp.bit_width
            span = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        else:  # BIGINT UNSIGNED and BIT(64) are decimal128(20,0): any uint64
            span = (0, _UINT64_MAX)
        object.__setattr__(self, "int_range", span)

    @property
    def arrow_type(self) -> pa.DataType:
        return self.arrow_field.type

    @property
    def unsigned(self) -> bool:
        return bool(self.flag & T.UNSIGNED_FLAG)

    @property
    def type_name(self) -> str:
        return T.type_name(self.tp)


@dataclass(frozen=True)
class RowColumns:
    """The columns to read from a table's row values, in output order, and what of the table
    the codec needs: which column is the int handle, and how errors name the table."""

    table_id: int
    table_name: str  # qualified, as errors name it: "db.t"
    schema_version: int
    columns: tuple[RowColumn, ...]
    schema: pa.Schema  # the columns' Arrow fields: what ``decode_rows_to_arrow`` returns
    handle_id: int | None = None  # the column that is the int handle (pk_is_handle), if any
    common_handle: bool = False  # the handle is the clustered key's bytes, not an int
    _by_name: Mapping[str, RowColumn] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name.lower(): c for c in self.columns})

    @property
    def label(self) -> str:
        """The table as a located error names it: ``db.t (id 5)``."""
        return f"{self.table_name} (id {self.table_id})"

    def column(self, name: str) -> RowColumn:
        """The column called ``name`` (case-insensitive, as in MySQL)."""
        try:
            return self._by_name[name.lower()]
        except KeyError:
            raise UnknownRowColumnError(
                f"table {self.table_name} (id {self.table_id}, schema version {self.schema_version}) has no "
                f"column {name!r}; its columns are {', '.join(c.name for c in self.columns)}") from None
