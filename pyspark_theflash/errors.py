"""The root of TheFlash's error types. Each box defines its own subclasses next to its code;
messages say what failed, where (region, ts, file, offset) and what the user can do."""
from __future__ import annotations

import errno
import sqlite3


class TheFlashError(Exception):
    """Base class of every error TheFlash raises on purpose."""


class PortInUseError(TheFlashError):
    """A server could not listen: another process holds its port (or the address is not this
    host's). ``server`` names it as a command's options do (``"PD"``, ``"Arrow Flight"``)."""

    def __init__(self, server: str, host: str, port: int, detail: str = "") -> None:
        self.server, self.host, self.port = server, host, port
        why = f" ({detail})" if detail else ""
        super().__init__(f"{server} cannot listen on {host}:{port}: the port is in use by another process{why}; "
                         "stop that process or choose another port (0 picks a free one)")

    def for_option(self, option: str) -> str:
        """The message a command prints, naming the option that set the port."""
        return (f"{self.server} cannot listen on {self.host}:{self.port} ({option} {self.port}): the port is in use "
                f"by another process; stop that process or give {option} another port (0 picks a free one)")


class StorageFailureError(TheFlashError):
    """The file system under a store failed a write: full (ENOSPC, EDQUOT, SQLite's FULL) or an
    I/O error (EIO, SQLite's IOERR). Nothing half-written becomes visible; the store's last
    durable state stays readable, and a writer restarted once space is back resumes from it."""

    def __init__(self, where: str, kind: str, cause: BaseException, advice: str | None = None) -> None:
        self.where = where
        self.kind = kind
        self.cause = cause
        if advice is None:
            advice = ("free space on that file system, then start the writer again: it resumes from the last "
                      "durable batch, nothing is lost" if kind == "full" else
                      "check the device (dmesg, SMART), then start the writer again: it resumes from the last "
                      "durable batch")
        what = "the disk is full" if kind == "full" else "an I/O error"
        super().__init__(f"{where}: {what} ({_describe(cause)}); {advice}")


# errno values and SQLite primary result codes that mean the storage itself failed
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_IO_ERRNOS = frozenset({errno.EIO})
_SQLITE_FULL, _SQLITE_IOERR = 13, 10


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror or exc}" + (
            f" at {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {exc}"


def storage_failure_kind(exc: BaseException) -> tuple[str, BaseException] | None:
    """("full" | "io", the failing exception) when ``exc`` or anything in its cause/context
    chain is a storage failure, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageFailureError):
            return current.kind, current.cause
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return "full", current
        if isinstance(current, OSError) and current.errno in _IO_ERRNOS:
            return "io", current
        if isinstance(current, sqlite3.Error):
            code = getattr(current, "sqlite_errorcode", None)
            text = str(current)
            if (code is not None and code & 0xFF == _SQLITE_FULL) or "database or disk is full" in text:
                return "full", current
            if (code is not None and code & 0xFF == _SQLITE_IOERR) or "disk I/O error" in text:
                return "io", current
        current = current.__cause__ or current.__context__ or getattr(current, "cause", None)
    return None


def storage_failure(exc: BaseException, where: str, advice: str | None = None) -> StorageFailureError | None:
    """``exc`` as a :class:`StorageFailureError` about ``where`` when it is one, else None."""
    found = storage_failure_kind(exc)
    if found is None:
        return None
    if isinstance(exc, StorageFailureError):
        return exc
    kind, cause = found
    return StorageFailureError(where, kind, cause, advice)
