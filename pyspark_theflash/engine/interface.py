"""The ``Engine`` interface: the store's Write/Scan surface as the service and the writer use it.

Write side: ``apply_batch`` (one atomic apply of binlog events up to a position) and
``flush`` (everything applied so far becomes readable). Read side: ``read_partition``: an
engine owns how its planned partitions (``engine.partition.ScanPartition``) are read; nobody
above it names an engine (``engine.readers`` maps a partition's recorded engine to its reader
where no engine is open). Read sessions (``open_read_session``, ``read_stream``,
``query_snapshot``) are the planner's, above the engines: an engine opened for them is handed
:class:`ReadSessions` (``scan.engine_sessions.PlannedSessions``) and passes itself to it.
Upkeep: ``compact``, ``gc``, ``status``; ``tables`` lists what a reader may ask for.

An engine opened read-only (a server process beside the writer) refuses ``apply_batch``,
``compact`` and ``gc`` with :class:`EngineReadOnlyError`; its ``flush`` asks the store's writer
to flush (through its ``ReadSessions``: the latch's flush request) and waits for it.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Mapping, NotRequired, Protocol, Sequence, TypedDict

import pyarrow as pa

from pyspark_theflash.errors import TheFlashError

from pyspark_theflash.engine.partition import LeaseRenewal, ScanPartition

if TYPE_CHECKING:
    from pyspark_theflash.proto import binlog_pb2
    from pyspark_theflash.schema.table_info import TableInfo
    from pyspark_theflash.store.compaction import CompactionResult
    from pyspark_theflash.store.parts import ReadStats
    from pyspark_theflash.store.predicate import Expr
    from pyspark_theflash.store.store import Store, WriteResult


class EngineReadOnlyError(TheFlashError):
    """A write-side call on an engine opened read-only."""


class NoReadSessionsError(TheFlashError):
    """A read session asked of an engine opened without ``ReadSessions`` (a writer's, a copy's)."""


class ChangeReadUnsupportedError(TheFlashError):
    """A change read the store cannot serve (a ClickHouse-engine store keeps no versions)."""


class SqlUnsupportedError(TheFlashError):
    """A whole SQL query asked of an engine that computes none itself (``Engine.runs_sql``)."""


class SqlQueryError(TheFlashError):
    """A query (``theflash sql``, Flight SQL, ``POST /v1/sql``) the user can fix: it is no
    read-only query, it names a table the store lacks, or the engine's SQL refused it. One line:
    what is wrong and what to do."""


class SqlTableNotFoundError(SqlQueryError):
    """A query names a table the store does not have (the nearest names in the message)."""


@dataclass(frozen=True)
class SqlResult:
    """A whole query's answer: the snapshot ts every table was read at, the tables read
    (``db.table``), the rows, the seconds the engine took, and what computed them. An engine
    that computes over its read streams (the native one) also says, per table, the filter it
    pushed to the table's read session (a ``store.predicate.Expr``) and the rows the session
    streamed."""

    ts: int
    tables: tuple[str, ...]
    result: pa.Table
    seconds: float
    computed_by: str = "ClickHouse"
    pushed_filters: Mapping[str, Expr] = field(default_factory=dict)
    rows_read: Mapping[str, int] = field(default_factory=dict)


class TableChanged(TypedDict):
    """A table a query read before its snapshot that changed since (``QuerySnapshot.changed``)."""

    table: str
    read_ts: int
    kind: str
    commit_ts: int | None
    change: str


class QuerySnapshot(TypedDict):
    """The one snapshot ts of a query (``Engine.query_snapshot``, ``POST /v1/snapshots``): how it
    was chosen (fresh, resolved, read...), over which tables, and with ``read`` given the tables
    read before it that changed since."""

    ts: int
    snapshot: str
    tables: list[str]
    changed: NotRequired[list[TableChanged]]


class EngineReadSession(Protocol):
    """A read session as the engines see it: the planner's ``scan.session.ReadSession``, above
    them. An engine reads its streams (``read_stream(session, n)``) at its one ts."""

    @property
    def ts(self) -> int: ...

    @property
    def schema(self) -> pa.Schema: ...

    @property
    def streams(self) -> Sequence[object]: ...

    def close(self) -> None: ...


class ReadSessions(Protocol):
    """What an engine's read sessions need from the boxes above it (the planner: one snapshot
    ts, a lease, learner read, lock resolution; the latch), handed to the engine by whoever
    opens it for reading (``scan.engine_sessions.PlannedSessions``). Each call names the engine,
    whose ``read_partition`` reads the planned streams."""

    def open_read_session(self, engine: Engine, table: str, *, snapshot_ts: int | None, as_of: str | None,
                          columns: Sequence[str] | None, filter: object, isolation: str | None,
                          options: Mapping[str, object] | None) -> EngineReadSession: ...

    def read_stream(self, engine: Engine, session: EngineReadSession, n: int,
                    stats: ReadStats | None) -> Iterator[pa.RecordBatch]: ...

    def query_snapshot(self, engine: Engine, tables: Sequence[str], options: Mapping[str, object] | None,
                       read: Sequence[tuple[str, int]] = ()) -> QuerySnapshot: ...

    def writer_flush(self, engine: Engine, regions: Sequence[int], timeout_s: float) -> dict[int, int]:
        """Ask the store's writer to flush ``regions`` and wait: {region: applied index}."""
        ...

    def close(self) -> None: ...


class Engine(abc.ABC):
    """One store, as the service and the writer see it."""

    #: a short name for status pages and metrics ("txn_merge_tree", "clickhouse")
    kind: str = "engine"
    #: whether the engine computes a whole SQL query itself (``run_sql``); readers of any other
    #: engine compute queries in Spark over ``read_partition``'s rows
    runs_sql: bool = False
    #: whether ``run_sql`` computes over the engine's own read streams (the native engine: DuckDB
    #: over them), so a statement a read session expresses whole (``service/sql_select.py``) is
    #: better served as that session, streamed, than computed
    sql_reads_streams: bool = False

    @property
    @abc.abstractmethod
    def root(self) -> str:
        """Where the store lives (a directory)."""

    @property
    @abc.abstractmethod
    def readonly(self) -> bool:
        """True when this handle may only read (``apply_batch``, ``compact``, ``gc`` refused)."""

    @property
    @abc.abstractmethod
    def store(self) -> Store:
        """The engine's open store (the manifest, regions, leases), closed with the engine: its
        read sessions plan with it (``ReadSessions``), and the service's change streams read it.
        Read-only, it is shared by the threads of those requests: ``Store.snapshot()`` opens
        a SQLite connection per view, and the region memo its views share takes a lock."""

    # -- write ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def apply_batch(self, events: Sequence[binlog_pb2.Event],
                    position: binlog_pb2.Position | tuple[int, int] | None) -> WriteResult:
        """Apply binlog events atomically, recording ``position`` (a ``binlog.Position``) as
        applied; nothing of the batch is applied when it fails."""

    @abc.abstractmethod
    def flush(self, timeout_s: float = 30.0) -> dict[str, object]:
        """Make everything applied so far readable; a JSON-able summary of what was flushed."""

    # -- read ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def tables(self) -> list[TableInfo]:
        """The replicated tables (``schema.TableInfo``) a session may read."""

    @abc.abstractmethod
    def open_read_session(self, table: str, *, snapshot_ts: int | None = None, as_of: str | None = None,
                          columns: Sequence[str] | None = None, filter: object = None, isolation: str | None = None,
                          options: Mapping[str, object] | None = None) -> EngineReadSession:
        """A ``scan.session.ReadSession`` of ``table`` whose lease lives by its TTL: renewed while
        streams are read and by ``session.renew()``, released by ``session.close()``."""

    @abc.abstractmethod
    def read_partition(self, p: ScanPartition, lease: LeaseRenewal,
                       stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
        """A planned partition's rows at its ts, as record batches of the store's Arrow schema
        for its columns, renewing the read's ``lease`` while batches flow (``scan.lease.LeaseKeeper``).
        ``stats``: what the read did besides its rows, as far as the engine knows."""

    @abc.abstractmethod
    def query_snapshot(self, tables: Sequence[str], options: Mapping[str, object] | None = None,
                       read: Sequence[tuple[str, int]] = ()) -> QuerySnapshot:
        """The one snapshot ts of a query over ``tables``: fresh, the store's resolved ts, or
        bounded by ``max_staleness``; or, when some were already ``read`` ((table, ts) pairs), the
        newest of those ts and the tables changed since they were read
        (``scan.planner.query_snapshot_ts``)."""

    def run_sql(self, query: str, snapshot_ts: int | None = None,
                options: Mapping[str, object] | None = None) -> SqlResult:
        """A whole query computed by the engine at one snapshot ts (``theflash sql``, Flight SQL,
        ``POST /v1/sql``) when ``runs_sql``: its :class:`SqlResult`. ``options``: ``snapshot`` /
        ``max_staleness`` (how the one ts is chosen without ``snapshot_ts``)."""
        raise SqlUnsupportedError(f"the {self.kind} engine computes no SQL of its own: queries over its store run "
                                  "in Spark (or on a ClickHouse-engine store: theflash store convert --to clickhouse)")

    @abc.abstractmethod
    def recorded_upstream(self) -> str | None:
        """The upstream address the store's writer recorded (None: none yet)."""

    @abc.abstractmethod
    def read_stream(self, session: EngineReadSession, n: int, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
        """Stream ``n`` of ``session`` as record batches of ``session.schema``. ``stats`` (a
        ``store.parts.ReadStats``, or None): what the read did besides its rows is added to it,
        as far as the engine knows (the service sends it at the stream's end)."""

    # -- upkeep --------------------------------------------------------------------------------
    @abc.abstractmethod
    def compact(self, table: str | int | None = None, force: bool = False) -> CompactionResult:
        """Merge delta parts into stable parts (one table, or all)."""

    @abc.abstractmethod
    def gc(self, safe_point: int) -> CompactionResult:
        """Drop versions no read at or above ``safe_point`` can see (never past a live lease)."""

    @abc.abstractmethod
    def status(self) -> dict[str, object]:
        """JSON-able state: tables, regions, parts, leases, position."""

    def advertise_service(self, http_url: str) -> None:
        """This process serves the store at ``http_url``: an engine whose files only this
        process can read (the ClickHouse engine's directory) tells readers elsewhere to come
        here; one whose files any process reads has nothing to say."""

    def withdraw_service(self) -> None:
        """This process no longer serves the store (``advertise_service`` undone)."""

    def close(self) -> None:
        """Let go of files, connections and clients (idempotent)."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
