"""Errors of the schema box: table info that cannot be read or a type that cannot be mapped."""
from __future__ import annotations

from pyspark_theflash.errors import TheFlashError


class SchemaError(TheFlashError):
    """Base of schema errors: bad table info JSON, bad SQL type strings, bad versions."""


class UnknownColumnError(SchemaError, KeyError):
    """A column name or id that the table (at this schema version) does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnsupportedTypeError(SchemaError):
    """A TiDB type with no Arrow/Spark mapping (e.g. GEOMETRY's internal forms, VECTOR)."""
