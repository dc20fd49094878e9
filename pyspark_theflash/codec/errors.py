"""Errors of the codec box: malformed or unsupported TiDB/TiKV bytes and values.

Every decoder raises one of these instead of returning a guessed value. Messages say what
was being decoded, at which byte offset, what was expected and what was found, so a bad
key or row can be located in the binlog event it came from.
"""
from __future__ import annotations

from pyspark_theflash.errors import TheFlashError


class CodecError(TheFlashError):
    """Base of every encoding or decoding failure in ``pyspark_theflash.codec``."""


class TruncatedError(CodecError):
    """The input ended before a complete value could be read."""

    def __init__(self, what: str, offset: int, needed: int, available: int) -> None:
        self.what = what
        self.offset = offset
        self.needed = needed
        self.available = available
        super().__init__(
            f"truncated {what} at offset {offset}: needs {needed} byte(s), "
            f"only {available} left; the value was cut short or is not a {what}"
        )


class UnknownFlagError(CodecError):
    """A type flag or tag byte that this decoder does not know."""

    def __init__(self, what: str, flag: int, offset: int, expected: str) -> None:
        self.what = what
        self.flag = flag
        self.offset = offset
        super().__init__(
            f"unknown {what} 0x{flag:02x} at offset {offset}; expected {expected}"
        )


class MalformedError(CodecError):
    """Bytes of the right length whose content breaks the format's rules."""


class UnknownRowColumnError(CodecError, KeyError):
    """A column name that the columns a row is read or written by (``RowColumns``) do not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ValueOutOfRangeError(CodecError):
    """A value that the requested encoding cannot represent (e.g. an int beyond int64)."""


class ColumnValueOutOfRangeError(ValueOutOfRangeError):
    """A stored value that its column's type cannot hold: 2**40 in an INT column (int32),
    123456.5 in a DECIMAL(5,2), 1e300 in a FLOAT. The row was written under another schema than
    the one decoding it (e.g. a column widened in place, INT -> BIGINT), and storing a wrapped,
    rounded or zeroed value would change the data, so decoding stops here.

    ``decode_row`` fills in the table and the handle it was given, ``decode_rows_to_arrow``
    also the row's index in the batch; ``located`` gives a copy with more of them filled in."""

    def __init__(self, column: str, column_id: int, column_type: str, value: object, holds: str,
                 table: str | None = None, handle: object = None, row: int | None = None,
                 rows: int | None = None) -> None:
        self.column, self.column_id, self.column_type = column, column_id, column_type
        self.value, self.holds = value, holds
        self.table, self.handle, self.row, self.rows = table, handle, row, rows
        where = []
        if table is not None:
            where.append(f"table {table}")
        if row is not None:
            where.append(f"row {row}" + (f" of {rows}" if rows is not None else ""))
        if handle is not None:
            where.append(f"handle {handle}")
        prefix = ", ".join(where) + ": " if where else ""
        super().__init__(
            f"{prefix}column {column} (id {column_id}, {column_type}) holds {value}, which its type "
            f"cannot hold ({holds}); the row was written under another schema than the one "
            f"decoding it (e.g. a column widened in place): decode it with the schema version "
            f"of its commit ts")

    def located(self, *, table: str | None = None, handle: object = None, row: int | None = None,
                rows: int | None = None, cls: type[ColumnValueOutOfRangeError] | None = None
                ) -> ColumnValueOutOfRangeError:
        """This error with ``table``/``handle``/``row`` filled in where it has none yet."""
        return (cls or type(self))(
            self.column, self.column_id, self.column_type, self.value, self.holds,
            self.table if self.table is not None else table,
            self.handle if self.handle is not None else handle,
            self.row if self.row is not None else row,
            self.rows if self.rows is not None else rows)

    def __reduce__(self) -> tuple[object, ...]:  # picklable across Spark executors
        return (type(self), (self.column, self.column_id, self.column_type, self.value, self.holds,
                             self.table, self.handle, self.row, self.rows))


class BadDecimalError(CodecError):
    """A DECIMAL value, precision or binary form that MyDecimal rejects."""


class BadTimeError(CodecError):
    """A packed DATE/DATETIME/TIMESTAMP or a TIME duration that is not a valid value."""


class BadKeyError(CodecError):
    """A TiDB key that does not have the expected layout (table prefix, record or index)."""


class NonRecordKeyError(BadKeyError):
    """A key that is not a row (record) key of the int-handle form ``t{id}_r{handle}``."""


class BadLockError(CodecError):
    """Bytes of TiKV's lock column family that are not a valid Percolator lock."""


class BadWriteError(CodecError):
    """Bytes of TiKV's write column family that are not a valid Percolator write record."""
