"""Errors of the writer job."""
from __future__ import annotations

from pyspark_theflash.errors import TheFlashError


class WriterError(TheFlashError):
    """Base of the writer's errors."""


class SchemaUnavailableError(WriterError):
    """The upstream could not give the schema a batch needs (or it still does not match the rows)."""


class TableGoneUpstreamError(SchemaUnavailableError):
    """The upstream no longer has the table (dropped, or truncated into a new id): rows of it
    that still come (a region snapshot, an old event) belong to no live table."""


class WriterConfigError(WriterError):
    """Options that cannot work together (e.g. no way to fetch schemas)."""


class WriterNotRunningError(WriterError):
    """``writer stop``/``status`` found no running writer for the store."""
