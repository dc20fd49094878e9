"""The Latch protocol: one set of semantics, two implementations (in-process on the store
directory's SQLite: :mod:`.local`; over gRPC: :mod:`.remote`)."""
from __future__ import annotations

import abc
from typing import Iterable, Mapping

from pyspark_theflash.latch.types import FlushRequest, Lease, WriterHolder

DEFAULT_LEASE_TTL_S = 30.0
DEFAULT_WRITE_LATCH_TTL_S = 10.0


class Latch(abc.ABC):
    """Coordinates the readers and the single writer of one store."""

    # -- read leases: pin a snapshot ts against GC and part deletion --------------------
    @abc.abstractmethod
    def acquire_lease(self, ts: int, ttl_s: float = DEFAULT_LEASE_TTL_S, holder: str = "") -> Lease:
        """Pin ``ts``; raises LeaseRefusedError when ts is below the store's GC safe point."""

    @abc.abstractmethod
    def renew_lease(self, lease_id: int, ttl_s: float = DEFAULT_LEASE_TTL_S, late_ok: bool = False) -> Lease:
        """Extend a live lease; raises LeaseNotFoundError when it was released, or expired —
        unless ``late_ok`` and every file it pinned is still on disk (``Leases.renew``)."""

    @abc.abstractmethod
    def release_lease(self, lease_id: int) -> None:
        """Drop a lease (releasing an unknown or expired lease is not an error)."""

    @abc.abstractmethod
    def leases(self) -> list[Lease]:
        """The live leases, oldest ts first."""

    # -- the write latch: exactly one writer per store ------------------------------------
    @abc.abstractmethod
    def acquire_write_latch(
        self, holder: str = "writer", ttl_s: float = DEFAULT_WRITE_LATCH_TTL_S, *, host: str | None = None, pid: int | None = None
    ) -> WriterHolder:
        """Take the latch; raises WriteLatchHeldError naming the live holder. A holder that did
        not renew within its TTL (or whose process is gone on this host) is taken over."""

    @abc.abstractmethod
    def renew(self, token: int, ttl_s: float = DEFAULT_WRITE_LATCH_TTL_S) -> WriterHolder:
        """Extend the latch held with ``token``; raises WriteLatchLostError when it was taken over."""

    @abc.abstractmethod
    def release(self, token: int) -> None:
        """Give the latch up (a no-op when ``token`` no longer holds it)."""

    @abc.abstractmethod
    def holder(self) -> WriterHolder | None:
        """The live holder, or None."""

    # -- flush requests: a reader's learner read ------------------------------------------
    @abc.abstractmethod
    def request_flush(self, region_ids: Iterable[int], read_index: Mapping[int, int] | None = None) -> int:
        """Ask the writer to flush; returns the request id for :meth:`wait_flush`."""

    @abc.abstractmethod
    def pending_flushes(self) -> list[FlushRequest]:
        """Requests not completed yet, oldest first (the writer polls this)."""

    @abc.abstractmethod
    def complete_flush(self, request_id: int, applied: Mapping[int, int] | None = None) -> None:
        """The writer flushed; ``applied`` is the persisted applied index per region."""

    @abc.abstractmethod
    def wait_flush(self, request_id: int, timeout_s: float) -> dict[int, int]:
        """Block until completed; returns the applied index per requested region. Raises
        FlushTimeoutError naming the regions when the writer did not answer in time."""

    # -- admin ----------------------------------------------------------------------------
    @abc.abstractmethod
    def set_writer_interval(self, interval_s: float, persist: bool = False) -> None:
        """Change the writer's poll interval; the running writer picks it up on its next poll.
        It lasts until that writer stops, unless ``persist``: then every later writer uses it
        over its own ``--interval`` too."""

    @abc.abstractmethod
    def writer_interval(self) -> float | None:
        """The interval set at runtime (or persisted), or None when the writer's own option applies."""

    @abc.abstractmethod
    def publish_writer_status(self, token: int, status: Mapping[str, object]) -> None:
        """The writer's progress (positions, per-region lag, rates), shown by :meth:`status`."""

    @abc.abstractmethod
    def status(self) -> dict[str, object]:
        """Holder, interval, leases, pending flushes and the writer's last published progress."""

    def close(self) -> None:
        """Release resources held by this handle (not the latch or leases)."""

    def __enter__(self) -> "Latch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
