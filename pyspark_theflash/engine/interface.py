"""The ``Engine`` interface: the store's Write/Scan surface as the service and the writer use it.

Write side: ``apply_batch`` (one atomic apply of binlog events up to a position) and
``flush`` (everything applied so far becomes readable). Read side: ``open_read_session`` (one
snapshot ts, a lease, streams; ``scan.session``), ``read_stream`` and ``read_partition``: an
engine owns how its planned partitions (``scan.partitions.ScanPartition``) are read; nobody
above it names an engine (``engine.readers`` maps a partition's recorded engine to its reader
where no engine is open). Upkeep: ``compact``, ``gc``, ``status``; ``tables`` lists what a
reader may ask for.

An engine opened read-only (a server process beside the writer) refuses ``apply_batch``,
``compact`` and ``gc`` with :class:`EngineReadOnlyError`; its ``flush`` asks the store's writer
to flush (the latch's flush request) and waits for it.
"""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import pyarrow as pa

from pyspark_theflash.errors import TheFlashError

if TYPE_CHECKING:
    from pyspark_theflash.scan.partitions import ScanPartition
    from pyspark_theflash.store.parts import ReadStats


class EngineReadOnlyError(TheFlashError):
    """A write-side call on an engine opened read-only."""


class Engine(abc.ABC):
    """One store, as the service and the writer see it."""

    #: a short name for status pages and metrics ("txn_merge_tree")
    kind: str = "engine"

    @property
    @abc.abstractmethod
    def root(self) -> str:
        """Where the store lives (a directory)."""

    @property
    @abc.abstractmethod
    def readonly(self) -> bool:
        """True when this handle may only read (``apply_batch``, ``compact``, ``gc`` refused)."""

    # -- write ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def apply_batch(self, events: Sequence[Any], position: Any) -> Any:
        """Apply binlog events atomically, recording ``position`` (a ``binlog.Position``) as
        applied; nothing of the batch is applied when it fails."""

    @abc.abstractmethod
    def flush(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Make everything applied so far readable; a JSON-able summary of what was flushed."""

    # -- read ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def tables(self) -> list[Any]:
        """The replicated tables (``schema.TableInfo``) a session may read."""

    @abc.abstractmethod
    def open_read_session(self, table: str, *, snapshot_ts: int | None = None, as_of: str | None = None,
                          columns: Sequence[str] | None = None, filter: Any = None, isolation: str | None = None,
                          options: dict[str, Any] | None = None) -> Any:
        """A ``scan.session.ReadSession`` of ``table`` whose lease lives by its TTL: renewed while
        streams are read and by ``session.renew()``, released by ``session.close()``."""

    @abc.abstractmethod
    def read_partition(self, p: ScanPartition, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
        """A planned partition's rows at its ts, as record batches of the store's Arrow schema
        for its columns, renewing the read's lease while batches flow (``scan.lease.LeaseKeeper``).
        ``stats``: what the read did besides its rows, as far as the engine knows."""

    @abc.abstractmethod
    def read_stream(self, session: Any, n: int, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
        """Stream ``n`` of ``session`` as record batches of ``session.schema``. ``stats`` (a
        ``store.parts.ReadStats``, or None): what the read did besides its rows is added to it,
        as far as the engine knows (the service sends it at the stream's end)."""

    # -- upkeep --------------------------------------------------------------------------------
    @abc.abstractmethod
    def compact(self, table: str | None = None, force: bool = False) -> Any:
        """Merge delta parts into stable parts (one table, or all)."""

    @abc.abstractmethod
    def gc(self, safe_point: int) -> Any:
        """Drop versions no read at or above ``safe_point`` can see (never past a live lease)."""

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """JSON-able state: tables, regions, parts, leases, position."""

    def close(self) -> None:
        """Let go of files, connections and clients (idempotent)."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
