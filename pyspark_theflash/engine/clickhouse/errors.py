"""Errors of the ClickHouse engine, with what to do about them."""
from __future__ import annotations

from pyspark_theflash.errors import TheFlashError


class ClickHouseEngineError(TheFlashError):
    """The ClickHouse engine cannot do what was asked."""


class ClickHouseTypeError(ClickHouseEngineError):
    """A column type the ClickHouse engine cannot store exactly."""


class ClickHouseDirectoryBusyError(ClickHouseEngineError):
    """The ClickHouse data directory is owned by another chdb session (one per process, one
    process per directory)."""
