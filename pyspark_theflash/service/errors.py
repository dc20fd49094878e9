"""Errors of the TheFlash API service, each with a stable ``code`` and an HTTP status; the
Flight front end raises the matching Flight error with the same text. :func:`classify` turns
whatever a request raised into one of them, keeping the original message, which already names
the table, column, ts or region at fault."""
from __future__ import annotations

from pyspark_theflash.errors import TheFlashError


class ServiceError(TheFlashError):
    """A request the service answers with an error (the server keeps serving)."""

    code = "internal"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "status": self.status, "message": self.message}}


class BadRequestError(ServiceError):
    """Malformed JSON, an unknown field or option, a value of the wrong type."""

    code, status = "bad_request", 400


class UnauthenticatedError(ServiceError):
    """No bearer token, or the wrong one."""

    code, status = "unauthenticated", 401


class SessionNotFoundError(ServiceError):
    """A session id the service does not hold (never opened, released, or expired)."""

    code, status = "unknown_session", 404


class StreamNotFoundError(ServiceError):
    """A stream number outside the session's streams."""

    code, status = "unknown_stream", 404


def classify(exc: BaseException) -> ServiceError:
    """The service error for ``exc`` (the planner's, the store's, the latch's errors mapped to a
    code and an HTTP status; anything unexpected is a 500 naming its type)."""
    if isinstance(exc, ServiceError):
        return exc
    from pyspark_theflash.engine import ChangeReadUnsupportedError, EngineReadOnlyError
    from pyspark_theflash.latch.errors import FlushTimeoutError, LeaseRefusedError
    from pyspark_theflash.scan.errors import (
        LockResolveTimeoutError,
        MissingRegionsError,
        RegionWaitTimeoutError,
        StalenessBoundExceededError,
        UnresolvedRegionsError,
        SchemaNotCaughtUpError,
        ScanOptionError,
        SnapshotExpiredError,
        SnapshotTsOutOfRangeError,
        TableNotReplicatedError,
        UpstreamUnreachableError,
    )
    from pyspark_theflash.scan.errors import (
        ChangesBelowSafePointError,
        StreamExpiredError,
        StreamSchemaChangedError,
    )
    from pyspark_theflash.scan.filter_json import FilterFormatError
    from pyspark_theflash.scan.session import SessionExpiredError
    from pyspark_theflash.store.errors import (
        ManifestDamagedError,
        PartFileError,
        PredicateError,
        UnknownTableNameError,
        manifest_damage,
    )

    from pyspark_theflash.engine.interface import SqlQueryError, SqlTableNotFoundError

    message = str(exc)
    table: list[tuple[type[BaseException] | tuple[type[BaseException], ...], str, int]] = [
        (SqlTableNotFoundError, "unknown_table", 404),
        (SqlQueryError, "invalid_query", 400),  # POST /v1/sql, Flight SQL: a query the user can fix
        (FilterFormatError, "invalid_filter", 400),
        (PredicateError, "invalid_filter", 400),
        (SessionExpiredError, "session_expired", 410),
        (SnapshotExpiredError, "snapshot_expired", 410),
        (SnapshotTsOutOfRangeError, "snapshot_ts_out_of_range", 400),
        (ChangesBelowSafePointError, "changes_below_safe_point", 400),
        (StreamExpiredError, "stream_expired", 410),
        (StreamSchemaChangedError, "stream_schema_changed", 409),
        (ChangeReadUnsupportedError, "invalid_option", 400),
        (LeaseRefusedError, "snapshot_ts_out_of_range", 400),
        ((TableNotReplicatedError, UnknownTableNameError), "unknown_table", 404),
        (ScanOptionError, "invalid_option", 400),
        ((RegionWaitTimeoutError, UnresolvedRegionsError, LockResolveTimeoutError, SchemaNotCaughtUpError, FlushTimeoutError), "timeout", 504),
        (UpstreamUnreachableError, "upstream_unavailable", 503),
        (MissingRegionsError, "missing_regions", 503),
        (StalenessBoundExceededError, "staleness_bound_exceeded", 503),
        (EngineReadOnlyError, "read_only", 409),
        ((PartFileError, ManifestDamagedError), "store_damaged", 500),
    ]
    for kinds, code, status in table:
        if isinstance(exc, kinds):
            return ServiceError(message, code=code, status=status)
    if isinstance(exc, RecursionError):
        return ServiceError("the request nests lists or objects too deeply to read", code="malformed_json", status=400)
    if manifest_damage(exc):
        return ServiceError(str(ManifestDamagedError("the store's manifest.db", exc)), code="store_damaged", status=500)
    if isinstance(exc, TheFlashError):
        return ServiceError(message, code="internal", status=500)
    return ServiceError(f"{type(exc).__name__}: {message}", code="internal", status=500)
