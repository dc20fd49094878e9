"""Read sessions: the one way every front end reads a snapshot (no Spark imports).

    session = open_read_session("/data/flash", "bank.accounts", columns=["id", "balance"],
                                filter=[["balance", ">", 0]])
    session.ts, session.schema, session.streams        # one ts; an Arrow schema; N streams
    for batch in read_stream(session, 0): ...          # Arrow record batches of that schema
    session.close()                                    # releases the read lease

A session is (ts, schema, lease, streams), as BigQuery's Storage Read API splits a read; a
stream is one region or a group of small neighbouring ones, with its handle ranges, pinned
parts and row/byte estimates. Planning is the scan planner's (``scan.planner.plan``: one
snapshot ts, the read lease, learner read, lock resolution, pinned parts); reading a stream
is ``scan.read.read_partition``. The Spark data source (``spark/datasource.py``: one Spark
partition per stream), the TheFlash API service (``service/``: Flight and HTTP) and the JVM
connector (over HTTP) all go through here.

A stream is plain picklable data: a Spark executor or a service thread reads it without the
session object. Batches have exactly ``session.schema``: the store's Arrow types, which are
the ones Spark expects (``docs/architecture.md``), with ``_tidb_commit_ts`` as int64.

Leases. With ``keep_alive=True`` (the default, for a caller that reads in this process) the
session renews its lease from a daemon thread while the session object lives. With
``keep_alive=False`` (Spark, the service) the lease lives for its TTL: each stream read renews
it while batches flow, and :meth:`ReadSession.renew` renews it on request.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence

import pyarrow as pa

from pyspark_theflash.engine.partition import ScanPartition
from pyspark_theflash.scan.errors import ScanOptionError
from pyspark_theflash.scan.options import HIDDEN_READABLE, HandleBound, ScanOptions, format_handle_ranges
from pyspark_theflash.scan.partitions import estimate_rows
from pyspark_theflash.scan.planner import PlanStats, ScanPlan

if TYPE_CHECKING:
    from pyspark_theflash.engine.interface import EngineReadSession
    from pyspark_theflash.latch import Latch
    from pyspark_theflash.store import Store
    from pyspark_theflash.upstream_client.client import UpstreamClient
    from pyspark_theflash.store.parts import ReadStats
    from pyspark_theflash.store.predicate import Expr


class SessionExpiredError(ScanOptionError):
    """A session's lease is gone (released, or expired without renewal): open a new session."""


@dataclass(frozen=True)
class ReadStream:
    """One stream of a session: the handle ranges of one region or a group of small ones,
    with the parts pinned for them. Picklable."""

    index: int
    partition: ScanPartition
    schema: pa.Schema
    rows: int                       # estimate: versions in the pinned parts in range (an upper bound)
    bytes: int                      # estimate: bytes of the pinned parts in range

    @property
    def region_ids(self) -> tuple[int, ...]:
        return self.partition.region_ids

    @property
    def handle_ranges(self) -> tuple[tuple[HandleBound, HandleBound], ...]:
        """[lo, hi) per range; None = unbounded; bytes for a clustered table's common handle."""
        return tuple((r.lo, r.hi) for r in self.partition.ranges)

    def to_dict(self) -> dict[str, object]:
        """JSON-able description (handle bounds as ints, ``{"hex": ...}`` or null)."""
        return {"index": self.index, "rows": self.rows, "bytes": self.bytes, "regions": list(self.region_ids),
                "handle_ranges": json.loads(format_handle_ranges(self.handle_ranges))}


@dataclass
class ReadSession:
    """A planned snapshot read. Close it (or use ``with``) to release its read lease."""

    id: str
    table: str
    ts: int
    schema: pa.Schema
    streams: tuple[ReadStream, ...]
    plan: ScanPlan
    lease_ttl_s: float
    created_at: float = field(default_factory=time.time)
    closed: bool = False
    changes_from: int | None = None  # a change read: the versions in (changes_from, ts]
    changes_net: bool = False

    @property
    def lease_id(self) -> int | None:
        return self.plan.lease_id

    @property
    def lease_expires_at(self) -> float | None:
        return self.plan.lease.expires_at if self.plan.lease is not None else None

    @property
    def stats(self) -> PlanStats:
        return self.plan.stats

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.streams)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.streams)

    def renew(self, late_ok: bool = False) -> float:
        """Extend the lease by its TTL from now; the new expiry (unix seconds). A lease that is
        already gone raises :class:`SessionExpiredError`; ``late_ok``: one that expired is
        renewed while the store has deleted none of its files (the owner was late, not gone)."""
        from pyspark_theflash.latch import LeaseNotFoundError

        lease = self.plan.lease
        if self.closed or lease is None:
            raise SessionExpiredError(f"read session {self.id} of {self.table} at ts {self.ts} is closed; open a new one")
        try:
            lease.renew(late_ok=late_ok)
        except LeaseNotFoundError:
            raise SessionExpiredError(
                f"read session {self.id} of {self.table} at ts {self.ts}: its read lease {lease.lease_id} expired "
                f"(TTL {self.lease_ttl_s:g}s without a read or renewal); open a new session") from None
        return float(lease.expires_at)

    def close(self) -> None:
        """Release the lease (idempotent; a lease already expired is fine)."""
        if self.closed:
            return
        self.closed = True
        lease = self.plan.lease
        if lease is None:
            return
        if lease.alive:
            lease.release()
            return
        from pyspark_theflash.latch import LeaseNotFoundError

        try:  # detached: nobody renews it, release it directly
            lease.latch.release_lease(lease.lease_id)
        except LeaseNotFoundError:
            pass

    def detach(self) -> None:
        """Stop renewing from this process; the lease lives on while readers renew it."""
        self.plan.detach()

    def to_dict(self) -> dict[str, object]:
        """JSON-able description (the schema as field names and types; the service adds the
        Arrow IPC form)."""
        return {
            "id": self.id, "table": self.table, "ts": self.ts,
            **({"changes": {"from_ts": self.changes_from, "to_ts": self.ts, "net": self.changes_net}}
               if self.changes_from is not None else {}),
            "lease": {"id": self.lease_id, "ttl_s": self.lease_ttl_s, "expires_at": self.lease_expires_at},
            "fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in self.schema],
            "rows": self.rows, "bytes": self.bytes, "streams": [s.to_dict() for s in self.streams],
            "plan": {"regions": self.stats.regions, "regions_pruned": self.stats.regions_pruned,
                     "regions_read_index": self.stats.regions_read_index, "learner_wait_s": self.stats.learner_wait_s,
                     "locks_seen": self.stats.locks_seen, "plan_s": self.stats.plan_s,
                     "locks_resolved": self.stats.txns_committed_for_us + self.stats.txns_rolled_back,
                     "parts": self.stats.parts, "part_bytes": self.stats.bytes,
                     "table_partitions": list(self.stats.table_partitions),
                     "table_partitions_pruned": list(self.stats.table_partitions_pruned)},
        }

    def __enter__(self) -> "ReadSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_read_session(store: str | os.PathLike[str] | Store, table: str | None = None, *,
                      snapshot_ts: int | None = None, as_of: str | None = None,
                      columns: Sequence[str] | None = None, filter: object = None, isolation: str | None = None,
                      options: Mapping[str, object] | None = None, upstream: UpstreamClient | None = None, latch: Latch | None = None,
                      keep_alive: bool = True) -> ReadSession:
    """Plan a snapshot read of ``table`` (``db.table``) in ``store`` (an open ``Store``, read-only,
    its opener's; or its directory, opened read-only here for the planning) as a session of
    streams.

    ``snapshot_ts`` / ``as_of``: the snapshot (default: a fresh ts from the upstream TSO).
    ``columns``: the columns to return, in order, hidden ``_tidb_rowid`` / ``_tidb_commit_ts``
    allowed (None: every visible column plus the ``hidden`` option's). ``filter``: a
    ``store.predicate.Expr`` or the JSON list form (``scan.filter_json``); rows not matching
    are never returned. ``isolation``: ``SI`` (default) or ``RC``. ``options``: any other read
    option of ``scan.options`` (``lease_ttl``, ``batch_rows``, ``min_partitions``, ``schema``,
    ...), as strings or numbers. ``upstream`` / ``latch``: clients to use instead of connecting
    by address."""
    from pyspark_theflash.scan.context import opened_store, store_root

    raw: dict[str, object] = {str(k).lower(): v for k, v in dict(options or {}).items() if v is not None}
    raw["store"] = store_root(store)
    if table is not None:
        raw["table"] = table
    for name, value in (("snapshot_ts", snapshot_ts), ("as_of", as_of), ("isolation", isolation)):
        if value is not None:
            raw[name] = value
    opts = ScanOptions.from_mapping({k: str(v) for k, v in raw.items()})
    read_columns: tuple[str, ...] | None = None
    hidden: tuple[str, ...] | None = None
    if columns is not None:
        if isinstance(columns, str):
            raise ScanOptionError(f"columns must be a list of names, not the string {columns!r}")
        twice = sorted({c for c in columns if [x.lower() for x in columns].count(c.lower()) > 1})
        if twice:
            raise ScanOptionError(f"columns {list(columns)} name {twice} more than once")
        if opts.changes_from is not None:  # a change read: the change columns come whatever is asked
            from pyspark_theflash.store.changes import CHANGE_COLUMNS

            read_columns = tuple(c for c in columns if c not in CHANGE_COLUMNS)
            hidden = ()
        else:
            read_columns = tuple(c for c in columns if c not in HIDDEN_READABLE)
            hidden = tuple(c for c in columns if c in HIDDEN_READABLE)
    if opts.changes_from is not None and filter is not None:
        raise ScanOptionError("a change read (changes_from) takes no filter: a filter on the versions would drop "
                              "preimages and postimages apart; filter the changes it returns")
    # the store, opened once for the planning (when given as a path) and handed down
    with opened_store(opts.store if isinstance(store, (str, os.PathLike)) else store) as opened:
        scan_plan = _planned(opened, opts, filter, read_columns, hidden, upstream, latch)
    try:
        if opts.changes_from is not None and opts.changes_from >= scan_plan.ts:
            # readChangeFeed without an end: the range ends at the read's ts, which is not past its start
            raise ScanOptionError(f"the change read starts after its end: changes_from={opts.changes_from} (from "
                                  f"startingVersion/startingTimestamp) is not below the read's ts {scan_plan.ts}; "
                                  "start earlier, or give endingVersion/endingTimestamp")
        if not keep_alive:
            scan_plan.detach()
        if opts.changes_from is not None:
            from pyspark_theflash.store.changes import change_schema

            schema = change_schema(scan_plan.table_info, read_columns)
            if columns is not None:  # in the order asked for (a JVM scan's pruned columns)
                by_lower = {f.name.lower(): f for f in schema}
                schema = pa.schema([by_lower[c.lower()] for c in columns if c.lower() in by_lower])
        else:
            schema = _schema(scan_plan, columns, hidden if hidden is not None else opts.hidden)
        streams = tuple(
            ReadStream(index=p.index, partition=p, schema=schema, bytes=int(p.size_bytes),
                       rows=sum(estimate_rows(r.parts, r.lo, r.hi) for r in p.ranges))
            for p in scan_plan.partitions)
    except BaseException:
        scan_plan.close()
        raise
    return ReadSession(id=uuid.uuid4().hex, table=opts.table, ts=scan_plan.ts, schema=schema, streams=streams,
                       plan=scan_plan, lease_ttl_s=opts.lease_ttl_s, changes_from=opts.changes_from,
                       changes_net=opts.changes_net)


def open_change_session(store: str | os.PathLike[str] | Store, table: str, from_ts: int, to_ts: int, *,
                        net: bool = False, columns: Sequence[str] | None = None,
                        options: Mapping[str, object] | None = None, upstream: UpstreamClient | None = None, latch: Latch | None = None,
                        keep_alive: bool = True) -> ReadSession:
    """Plan a change read of ``table``: every committed version with from_ts < commit_ts <=
    to_ts (``net``: one change per row, from its row at from_ts to its row at to_ts), as a
    session of streams whose batches have ``store.changes.change_schema`` (the table's columns
    at to_ts, then ``_change_type``, ``_commit_ts``, ``_commit_timestamp``, ``_tidb_rowid``).
    Every region has caught up to to_ts before the session is returned; its lease pins from_ts.
    A from_ts below the GC safe point is refused (``ChangesBelowSafePointError``)."""
    raw = dict(options or {})
    raw["changes_from"] = int(from_ts)
    raw["changes"] = "net" if net else "all"
    return open_read_session(store, table, snapshot_ts=int(to_ts), columns=columns, options=raw,
                             upstream=upstream, latch=latch, keep_alive=keep_alive)


def _planned(store: Store, opts: ScanOptions, filter: object, columns: tuple[str, ...] | None,
             hidden: tuple[str, ...] | None, upstream: UpstreamClient | None, latch: Latch | None) -> ScanPlan:
    from pyspark_theflash.scan.planner import plan

    predicate = _predicate(filter, opts, store, upstream)
    return plan(store, None, opts, columns=columns, hidden=hidden, predicate=predicate, upstream=upstream,
                latch=latch)


def planned_session(session: EngineReadSession) -> ReadSession:
    """An engine's read session as the ``ReadSession`` it is (the engines, below the planner,
    see it as ``engine.interface.EngineReadSession``)."""
    if not isinstance(session, ReadSession):
        raise TypeError(f"an engine's read session is a scan.session.ReadSession, not {type(session).__name__}")
    return session


def read_stream(source: ReadSession | ReadStream, n: int | None = None,
                read_partition: Callable[[ScanPartition], Iterator[pa.RecordBatch]] | None = None,
                stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
    """The rows of stream ``n`` of a session (or of a ``ReadStream`` handed over alone, as Spark
    does) at the session's ts, as record batches of exactly the session's schema. Renews the
    session's lease while batches flow. ``read_partition``: how an engine reads a planned
    partition (default: the native store's ``scan.read.read_partition``, which adds the read's
    deletion-vector and fresh-tail rows to ``stats``, a ``store.parts.ReadStats``)."""
    if read_partition is None:
        import functools

        from pyspark_theflash.scan.read import read_partition as read_native

        read_partition = functools.partial(read_native, stats=stats)

    if isinstance(source, ReadSession):
        if n is None or not 0 <= n < len(source.streams):
            raise ScanOptionError(f"read session {source.id} of {source.table} has streams 0..{len(source.streams) - 1}, "
                                  f"not {n}")
        stream = source.streams[n]
    else:
        stream = source
    schema = stream.schema
    for batch in read_partition(stream.partition):
        yield batch if batch.schema.equals(schema) else conform_batch(batch, schema)


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The store's batch (the table's columns, then the hidden ones) in the session's column
    order and types (``_tidb_commit_ts`` uint64 → int64: commit timestamps stay below 2**63).

    A session of no column (Spark prunes every column for ``count(*)``) keeps the batch's row
    count: one row per row, or per change, with nothing in it. Arrow's ``from_arrays`` of no
    array makes a batch of no row, so that case takes ``select([])``."""
    if len(schema) == 0:
        return batch.select([])
    arrays = []
    for f in schema:
        a = batch.column(f.name)
        arrays.append(a if a.type == f.type else a.cast(f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _predicate(filter: object, opts: ScanOptions, store: Store, upstream: UpstreamClient | None) -> Expr | None:
    """A JSON filter bound to the table's schema (the one the read will use), or an Expr as given."""
    if filter is None:
        return None
    from pyspark_theflash.store.predicate import Expr

    if isinstance(filter, Expr):
        return filter
    from pyspark_theflash.scan.filter_json import filter_from_json
    from pyspark_theflash.scan.context import connect_upstream, upstream_address, upstream_table
    from pyspark_theflash.scan.schema_at import read_table

    with store.snapshot() as view:
        info = read_table(store, view, opts.table, opts)
        address = upstream_address(opts, view)
    if info is None and upstream is not None:
        info = upstream_table(upstream, opts, store)
    elif info is None:
        client = connect_upstream(opts, address)
        try:
            info = upstream_table(client, opts, store)
        finally:
            client.close()
    return filter_from_json(filter, info)


def _schema(scan_plan: ScanPlan, columns: Sequence[str] | None, hidden: Sequence[str]) -> pa.Schema:
    """The session's schema: the requested columns in the requested order (as the table spells
    them), or every visible column then the ``hidden`` option's."""
    from pyspark_theflash.schema import arrow_schema

    info = scan_plan.table_info
    if columns is None:
        return arrow_schema(info, None, tuple(hidden), toward_spark=True)
    by_lower = {c.name.lower(): c.name for c in info.columns}
    names = [c if c in HIDDEN_READABLE else by_lower[c.lower()] for c in columns]
    visible = [n for n in names if n not in HIDDEN_READABLE]
    full = arrow_schema(info, visible, tuple(n for n in names if n in HIDDEN_READABLE), toward_spark=True)
    return pa.schema([full.field(n) for n in names])


__all__ = ["ReadSession", "ReadStream", "SessionExpiredError", "open_change_session", "open_read_session",
           "read_stream"]
