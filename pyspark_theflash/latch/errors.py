"""Errors of the latch service. Each carries only a message so that the gRPC client can
raise the very type the server raised (the type name travels in trailing metadata)."""
from __future__ import annotations

from pyspark_theflash.errors import TheFlashError


class LatchError(TheFlashError):
    """Base of the latch service's errors."""


class LeaseRefusedError(LatchError):
    """A read lease was asked for at a ts the store can no longer serve (below its GC safe point)."""


class LeaseNotFoundError(LatchError):
    """A lease id that is unknown, released or expired."""


class WriteLatchHeldError(LatchError):
    """Another live writer holds the store's write latch."""


class WriteLatchLostError(LatchError):
    """The caller's write latch was taken over (it did not renew within its TTL) or released."""


class FlushRequestNotFoundError(LatchError):
    """A flush request id that was never issued (or was cleaned up long ago)."""


class FlushTimeoutError(LatchError):
    """A reader's flush request was not completed by the writer in time."""


ERROR_TYPES: dict[str, type[LatchError]] = {
    cls.__name__: cls
    for cls in (
        LatchError,
        LeaseRefusedError,
        LeaseNotFoundError,
        WriteLatchHeldError,
        WriteLatchLostError,
        FlushRequestNotFoundError,
        FlushTimeoutError,
    )
}
