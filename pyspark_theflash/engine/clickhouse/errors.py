"""Errors of the ClickHouse engine, with what to do about them."""
from __future__ import annotations

from pyspark_theflash.engine.interface import SqlQueryError as EngineSqlQueryError
from pyspark_theflash.errors import TheFlashError


class ClickHouseEngineError(TheFlashError):
    """The ClickHouse engine cannot do what was asked."""


class SqlQueryError(ClickHouseEngineError, EngineSqlQueryError):
    """A ``theflash sql`` query the user can fix: it names no table of the store (with the
    nearest names), is not a read-only query, or ClickHouse refused it (its first line, without
    the snapshot subqueries the query was rewritten with)."""


class ClickHouseTypeError(ClickHouseEngineError):
    """A column type the ClickHouse engine cannot store exactly."""


class ClickHouseDirectoryBusyError(ClickHouseEngineError):
    """The ClickHouse data directory is owned by another chdb session (one per process, one
    process per directory)."""


class ServiceTokenRefusedError(ClickHouseEngineError):
    """The service of the process owning a ClickHouse directory answered 401 to a read through
    it: the read sent no bearer token, or the wrong one. The message says where the token sent
    came from (``source``: "option token", "option token_file PATH", "the THEFLASH_TOKEN
    environment variable"; None: none was sent) or how to give one; never the token."""

    def __init__(self, message: str, source: str | None) -> None:
        super().__init__(message)
        self.source = source
