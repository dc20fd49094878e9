"""Choosing the one snapshot ts of a read or a query: the only place a snapshot ts is chosen.

The ts comes from, in order: the ``snapshot_ts`` option, the ``as_of`` option, the session's
pinned ts (``theflash.snapshot_ts``), else a fresh ts from the upstream TSO. A ts below the
GC safe point (old versions may be gone) or ahead of the TSO (commits at or below it may
still come) is refused with the readable range in the message.

Besides a fresh or requested ts, the store can serve a ts on its own (``scan.resolved``):

* ``snapshot=resolved``: the newest ts every region of the read has resolved in the store;
* a requested ts at or below that resolved ts: served without asking the upstream for more
  than its safe point;
* ``max_staleness``: a fresh ts if the store catches up to it within the bound (or
  ``region_wait_timeout`` if shorter), else the resolved ts if no older than the bound, else
  ``StalenessBoundExceededError``.

Catching up to a fresh ts is the learner read, a step of the plan above this module: the
choosers that need it take it as a function (``catch_up``), and the planner hands its own.
The store is handed in open (``store.Store``, read-only), with the directory the read names it
by (its errors say that one); only ``pinned_ts``, an entry point, takes a path.

    store_choice(...)        a read's ts from the store alone, or None (the planner)
    fresh_or_requested(...)  a read's ts from the upstream (the planner)
    within_staleness(...)    max_staleness (the planner and query_snapshot)
    query_snapshot(...)      one ts for every table of a query (the service's POST /v1/snapshots):
                             fresh, resolved, or the newest its tables were already read at
    pinned_ts(...)           a session's pin (spark.pin.pinned_snapshot)
    table_resolved(...)      a change stream's newest end: its table's resolved ts (scan.change_stream)
    stream_start_ts(...)     a change stream's first snapshot: latest, earliest or a given ts
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generic, Literal, Mapping, Sequence, TypeVar

from pyspark_theflash.codec.tso import compose_ts, physical_ms, ts_to_datetime
from pyspark_theflash.scan.as_of import as_of_to_ts
from pyspark_theflash.scan.context import (
    Upstream,
    check_snapshot_ts,
    close_upstream,
    connect_upstream,
    opened_store,
    store_root,
    unreachable,
    upstream_address,
    upstream_range,
)
from pyspark_theflash.scan.errors import (
    MissingRegionsError,
    RegionWaitTimeoutError,
    ScanError,
    ScanOptionError,
    SchemaNotCaughtUpError,
    StalenessBoundExceededError,
    StreamExpiredError,
    TableNotReplicatedError,
    UpstreamUnreachableError,
)
from pyspark_theflash.scan.options import ScanOptions
from pyspark_theflash.scan.resolved import ResolvedTs, settled_resolved_ts, writer_live_on
from pyspark_theflash.scan.schema_at import lookup_table
from pyspark_theflash.schema.table_info import TableInfo
from pyspark_theflash.store.commit_history import TableChange
from pyspark_theflash.store.errors import UnknownTableNameError, did_you_mean

if TYPE_CHECKING:
    from pyspark_theflash.engine.interface import QuerySnapshot, TableChanged
    from pyspark_theflash.latch import Latch
    from pyspark_theflash.store import Store
    from pyspark_theflash.upstream_client.client import UpstreamClient, UpstreamConnection

__all__ = ["QueryOptions", "SnapshotKind", "StoreChoice", "StalenessChoice", "as_of_to_ts", "check_snapshot_ts",
           "fresh_or_requested", "pinned_ts", "query_options", "query_snapshot", "requested_ts", "store_choice", "stream_start_ts",
           "table_resolved", "ts_to_datetime", "upstream_safe_point", "within_staleness", "TableResolved"]

log = logging.getLogger(__name__)

# how a ts was chosen: a fresh TSO, the store's resolved ts, or the one the user asked for
SnapshotKind = Literal["fresh", "resolved", "requested"]
T = TypeVar("T")


def requested_ts(options: ScanOptions) -> int | None:
    """The ts the user asked for, or None for "the latest"."""
    return options.requested_ts()


# -- one table's read -----------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreChoice:
    """A ts the store serves alone: every region holds every commit at or below it and no
    undecided lock. ``safe_point``: what the ts is checked against; ``readable_until``: the
    store's resolved ts (the top of the readable range an error names; 0: ``ts``)."""

    ts: int
    how: SnapshotKind
    safe_point: int
    readable_until: int = 0


def store_choice(opts: ScanOptions, has_table: bool, resolved: ResolvedTs | None, hint: str,
                 store_safe_point: int, settle: Callable[[], ResolvedTs],
                 safe_point_upstream: Callable[[int, int], int]) -> StoreChoice | None:
    """The ts a read of one table takes from the store alone, or None when it needs the
    upstream. ``resolved``: the store's resolved ts over the table (None when the store has
    no such table; ``hint``: the names it is closest to); ``settle()`` waits for a resolved
    ts a split in flight holds back; ``safe_point_upstream(ts, resolved_ts)``: the upstream's
    GC safe point, 0 when it does not answer."""
    requested = opts.requested_ts()
    if has_table and resolved is not None:
        # A ts the store has resolved over the table is served from the store alone: no
        # upstream call at all (a stopped writer's store, a copy of one, a lagging writer).
        if requested is None and opts.snapshot == "resolved":
            if not resolved.servable:
                resolved = settle()
            if not resolved.servable:
                refuse_unresolved(opts, resolved)
            return StoreChoice(resolved.ts, "resolved", store_safe_point)
        if requested is not None and resolved.servable and requested <= resolved.ts:
            safe_point = max(store_safe_point, safe_point_upstream(requested, resolved.ts))
            return StoreChoice(requested, "requested", safe_point, readable_until=resolved.ts)
    elif requested is None and opts.snapshot == "resolved":
        raise TableNotReplicatedError(
            f"store {opts.store} has no table {opts.table}{hint}: a read at the store's resolved ts reads what the "
            "store holds, and the writer has not stored this table (is it replicating it? theflash writer run "
            "--tables ...)")
    return None


def refuse_unresolved(opts: ScanOptions, resolved: ResolvedTs) -> None:
    if resolved.gaps:
        raise MissingRegionsError(opts.table, opts.store, list(resolved.gaps))
    raise ScanError(
        f"reading {opts.table} with snapshot=resolved: the store has resolved no ts over it yet (its regions "
        f"{list(resolved.regions)} have no resolved ts): wait until the writer has applied the upstream's resolved "
        "ts (theflash writer status), or read snapshot=fresh")


def upstream_safe_point(opts: ScanOptions, upstream: UpstreamClient | None, address: str | None, ts: int, resolved_ts: int) -> int:
    """The upstream's GC safe point when it answers (a read below it is refused, as TiDB
    refuses one), else 0: a store whose upstream is gone still serves what it has resolved."""
    own = upstream is None
    try:
        if upstream is None:
            if not address:
                return 0
            upstream = connect_upstream(opts, address)
        return int(upstream.gc_safe_point())
    except Exception as exc:
        if isinstance(exc, UpstreamUnreachableError) or unreachable(exc):
            log.info("reading %s at ts %s from the store alone: the upstream is unreachable (%s)", opts.table, ts, exc)
            return 0
        raise
    finally:
        if own:
            close_upstream(upstream)


def fresh_or_requested(upstream: Upstream, opts: ScanOptions, store_safe_point: int) -> tuple[int, int, int]:
    """(ts, safe point, the upstream's TSO now) of a read the upstream serves: the ts asked
    for, else a fresh one; refused outside [safe point, now]."""
    fresh, gc_upstream = upstream_range(upstream, opts.table)
    ts = opts.requested_ts() or fresh
    safe_point = max(gc_upstream, store_safe_point)
    check_snapshot_ts(ts, safe_point, fresh)
    return ts, safe_point, fresh


# -- bounded staleness ----------------------------------------------------------------------------
@dataclass(frozen=True)
class StalenessChoice(Generic[T]):
    """``max_staleness``'s choice: ``fresh`` with what catching up to it made (``caught_up``),
    or the store's ``resolved`` ts."""

    ts: int
    how: SnapshotKind
    caught_up: T | None = None


def within_staleness(what: str, bound_s: float, wait_s: float, upstream: UpstreamClient | None, connect: Callable[[], UpstreamConnection],
                     fresh_ts: Callable[[UpstreamClient], int], catch_up: Callable[[UpstreamClient, int], T], behind: Callable[[str], str],
                     resolved: Callable[[float], Sequence[ResolvedTs]], resolved_wait_s: float) -> StalenessChoice[T]:
    """A fresh ts if ``catch_up(upstream, ts)`` reaches it (within ``wait_s``, its business),
    else the newest ts ``resolved(wait)`` says the store has resolved over every table of
    ``what``, if it is no older than ``bound_s``; else ``StalenessBoundExceededError``.
    ``upstream``: a client, or None to ``connect()`` one (closed here); ``fresh_ts``: the TSO
    (an ``UpstreamUnreachableError`` or a gRPC UNAVAILABLE means there is none); ``behind(table)``:
    who did not catch up, as the error says it."""
    now_ts = 0
    why = ""
    own = upstream is None
    try:
        if upstream is None:
            upstream = connect()
        now_ts = fresh_ts(upstream)
        try:
            caught_up = catch_up(upstream, now_ts)
        except RegionWaitTimeoutError as exc:
            why = (f"{behind(exc.table)} did not catch up to a fresh ts within {wait_s:g}s "
                   f"({len(exc.lagging)} region(s) behind)")
        except SchemaNotCaughtUpError as exc:  # schema=as_of: the schema changes up to the fresh ts are not in
            why = (f"{behind(exc.table)} did not catch up to a fresh ts within {wait_s:g}s "
                   "(its schema changes up to it are not in the store yet)")
        else:
            return StalenessChoice(now_ts, "fresh", caught_up)
    except UpstreamUnreachableError as exc:
        why = f"the upstream cannot give a fresh ts ({exc})"
    except Exception as exc:
        if not unreachable(exc):
            raise
        why = f"the upstream cannot give a fresh ts ({exc})"
    finally:
        if own:
            close_upstream(upstream)
    if not now_ts:
        now_ts = compose_ts(int(time.time() * 1000), 0)  # no TSO: this machine's clock says how old
    found = resolved(resolved_wait_s)
    ts = min(r.ts for r in found)
    if all(r.servable for r in found) and physical_ms(now_ts) - physical_ms(ts) <= bound_s * 1000:
        return StalenessChoice(ts, "resolved")
    gaps = [g for r in found for g in r.gaps]
    if gaps:
        why += f"; no region of the store holds {gaps[0]}"
    raise StalenessBoundExceededError(what, bound_s, ts, now_ts, why)


# -- a query over several tables ------------------------------------------------------------------
QueryCatchUp = Callable[[Sequence[ScanOptions], "UpstreamClient", int, float], None]
# (a table's read options, after, through) -> its first change in (after, through], or None
FirstChange = Callable[[ScanOptions, int, int], "TableChange | None"]


@dataclass(frozen=True)
class QueryOptions:
    """A query snapshot's request, checked (``query_options``) before the store is opened: the
    options common to its tables (``base``), the tables as named, and each one's read options."""

    base: Mapping[str, str]
    tables: list[str]
    reads: list[ScanOptions]


def query_options(root: str, tables: list[str], options: Mapping[str, str] | None) -> QueryOptions:
    """The read options of each of ``tables`` in the store at ``root``; a query snapshot names
    tables and no ts (``ScanOptionError``)."""
    if not tables:
        raise ScanOptionError("a query snapshot needs the tables the query reads (field tables: [\"db.table\", ...])")
    base = {k: v for k, v in dict(options or {}).items() if v is not None}
    opts = [ScanOptions.from_mapping({**base, "store": root, "table": t}) for t in tables]
    if opts[0].requested_ts() is not None:
        raise ScanOptionError("a query snapshot is chosen for reads that name no ts: leave snapshot_ts / as_of out")
    return QueryOptions(base, list(tables), opts)


def query_snapshot(store: Store, asked: QueryOptions, *, upstream: UpstreamClient | None, latch: Latch | None,
                   catch_up: QueryCatchUp, read: Sequence[tuple[str, int]] = (),
                   first_change: FirstChange | None = None) -> QuerySnapshot:
    """The one snapshot ts of a query over the tables of ``asked`` (``query_options``) in
    ``store`` (the JVM connector asks once per Spark query, ``POST /v1/snapshots``), chosen as
    their options say:

    * ``snapshot=fresh`` (default): a fresh ts from the upstream TSO; each table's read session
      then catches up to it and resolves locks.
    * ``snapshot=resolved``: the newest ts every region of every table has resolved in the
      store (the least of the tables' resolved ts), with no upstream call.
    * ``max_staleness``: a fresh ts if every table catches up to it within the bound (or
      ``region_wait_timeout`` if shorter: ``catch_up(tables' options, upstream, ts, wait)``),
      else the resolved ts if it is no older than the bound, else ``StalenessBoundExceededError``.

    Unless some of them were already read: ``read`` lists (table, ts) of the query's tables
    that earlier queries read (a DataFrame reads one snapshot). Then the query's ts is the
    newest of those ts, and each table read at an older ts is checked for changes in between
    (``first_change(table's options, its ts, newest)``): a table nobody wrote in between reads
    the same at the newest ts, so the query can read it there. ``changed`` lists the others,
    each with its first change (``{"table", "read_ts", "kind", "commit_ts", "change"}``): the
    query cannot be one snapshot while it is not empty, and the caller refuses it (or, asked
    to, reads each table at its own ts).

    Returns ``{"ts", "snapshot": "fresh" | "resolved" | "read", "tables"}`` (``read``: the
    newest ts the tables were read at, with ``changed``)."""
    opts, tables = asked.reads, asked.tables
    first = opts[0]
    root = first.store
    if read:
        if first_change is None:
            raise ScanOptionError("this service cannot tell whether the tables changed since they were read")
        return _newest_read(root, asked.base, tables, read, first_change)

    def resolved_now(wait_s: float) -> list[ResolvedTs]:
        found = []
        for o in opts:
            with store.snapshot() as view:
                info = lookup_table(view, o.table)
                hint = did_you_mean(o.table, [f"{t.db}.{t.name}" for t in view.tables()]) if info is None else ""
            if info is None:
                raise TableNotReplicatedError(f"store {root} has no table {o.table}{hint}: the store alone cannot "
                                              "serve it (is the writer replicating it? theflash writer run --tables ...)")
            found.append(settled_resolved_ts(store.snapshot, info, o.table, wait_s,
                                             writer_live=writer_live_on(root, o.latch)))
        return found

    def answer(ts: int, how: SnapshotKind) -> QuerySnapshot:
        return {"ts": ts, "snapshot": how, "tables": list(tables)}

    if first.snapshot == "resolved":
        found = resolved_now(first.region_wait_timeout_s)
        for r in found:
            if r.gaps:
                raise MissingRegionsError(r.table, root, list(r.gaps))
            if r.ts <= 0:
                raise ScanError(f"reading {r.table} with snapshot=resolved: the store has resolved no ts over it yet; "
                                "wait for the writer (theflash writer status), or read snapshot=fresh")
        return answer(min(r.ts for r in found), "resolved")

    def connect() -> UpstreamConnection:
        with store.snapshot() as view:
            address = upstream_address(first, view)
        return connect_upstream(first, address)

    if first.max_staleness_s is None:
        own = upstream is None
        try:
            if upstream is None:
                upstream = connect()
            try:
                return answer(int(upstream.get_ts()), "fresh")
            except Exception as exc:
                raise UpstreamUnreachableError(f"choosing the snapshot of a query over {', '.join(tables)}: the "
                                               f"upstream did not answer: {exc}") from exc
        finally:
            if own:
                close_upstream(upstream)

    def tso(client: UpstreamClient) -> int:
        try:
            return int(client.get_ts())
        except Exception as exc:  # any failure: the store's resolved ts may still do
            raise UpstreamUnreachableError(str(exc)) from exc

    bound = float(first.max_staleness_s)
    wait = min(bound, first.region_wait_timeout_s)
    choice: StalenessChoice[None] = within_staleness(
        ", ".join(tables), bound, wait, upstream, connect, tso,
        lambda client, ts: catch_up(opts, client, ts, wait), lambda table: table,
        resolved_now, min(1.0, first.region_wait_timeout_s))
    return answer(choice.ts, choice.how)


def _newest_read(store: str, base: Mapping[str, str], tables: list[str], read: Sequence[tuple[str, int]],
                 first_change: FirstChange) -> QuerySnapshot:
    """The newest ts of ``read`` as the query's, and the tables read before it that changed
    since (``query_snapshot``)."""
    newest = max(int(ts) for _, ts in read)
    changed: list[TableChanged] = []
    for table, ts in sorted({(t, int(ts)) for t, ts in read}, key=lambda r: (r[1], r[0])):
        if ts >= newest:
            continue
        change = first_change(ScanOptions.from_mapping({**base, "store": store, "table": table}), ts, newest)
        if change is not None:
            changed.append({"table": table, "read_ts": ts, "kind": change.kind.value, "commit_ts": change.commit_ts,
                            "change": change.describe()})
    return {"ts": newest, "snapshot": "read", "tables": list(tables), "changed": changed}


# -- a session's pin ------------------------------------------------------------------------------
def pinned_ts(store: str | os.PathLike[str] | Store, ts: int | None = None, upstream: str | None = None) -> int:
    """The ts a session pins (``spark.pin.pinned_snapshot``): ``ts``, else a fresh one;
    refused outside [the upstream's and the store's GC safe point, the upstream's TSO].
    ``store``: open, or its directory (opened read-only here)."""
    options = ScanOptions(store=store_root(store), table="pinned.snapshot", upstream=upstream)
    with opened_store(store) as opened, opened.snapshot() as view:
        store_safe_point = int(view.gc_safe_point())
        address = upstream_address(options, view)
    client = connect_upstream(options, address)
    try:
        now = int(client.get_ts())
        upstream_safe_point = int(client.gc_safe_point())
    finally:
        client.close()
    if ts is None:
        ts = now
    check_snapshot_ts(int(ts), max(upstream_safe_point, store_safe_point), now)
    return int(ts)


# -- a change stream ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableResolved:
    """What a change stream's offsets are chosen from: the table's schema in the store, the
    newest ts every region of it has resolved there (0: none yet), and the store's safe point."""

    info: TableInfo
    ts: int
    safe_point: int


def table_resolved(store: Store, root: str, table: str, wait_s: float) -> TableResolved:
    """The newest ts every region of ``table`` has resolved in ``store`` (at ``root``), waiting up to
    ``wait_s`` for a region split off a moment ago (a gap until the writer applies its admin event)."""
    deadline = time.monotonic() + wait_s
    while True:
        with store.snapshot() as view:
            info = lookup_table(view, table)
            safe_point = int(view.gc_safe_point())
        if info is None:
            raise TableNotReplicatedError(f"store {root} has no table {table}: a change stream reads what the "
                                          "writer stores (is it replicating the table?)")
        resolved = settled_resolved_ts(store.snapshot, info, table, max(0.0, deadline - time.monotonic()))
        if resolved.servable or time.monotonic() >= deadline:
            return TableResolved(info, resolved.ts if resolved.servable else 0, safe_point)
        time.sleep(0.05)


def _named_at(store: Store, table: str, ts: int) -> bool:
    """Whether ``store`` holds a table named ``table`` at ``ts``."""
    with store.snapshot() as view:
        try:
            view.table_at(table, ts)
        except UnknownTableNameError:
            return False
    return True


def stream_start_ts(store: Store, root: str, table: str, starting: str, wait_s: float) -> int:
    """The ts of a change stream's first batch (the rows at it) as ``starting_ts`` says:

    * ``latest``: the table's resolved ts, once the name means the table there (a table
      created a moment ago is in the store before its regions' resolved ts passes its creation);
    * ``earliest``: the store's GC safe point;
    * a TSO number: that ts, refused below the safe point (:class:`StreamExpiredError`)."""
    now = table_resolved(store, root, table, wait_s)
    if starting == "earliest":
        return max(now.safe_point, 1)
    if starting != "latest":
        ts = int(starting)
        if ts < now.safe_point:
            raise StreamExpiredError(f"starting_ts {ts} of a change stream of {table} is below the store's GC safe "
                                     f"point {now.safe_point}: start at or above it (or earliest)")
        return ts
    deadline = time.monotonic() + wait_s
    while now.ts > 0 and not _named_at(store, table, now.ts) and time.monotonic() < deadline:
        time.sleep(0.05)
        now = table_resolved(store, root, table, wait_s)
    if now.ts <= 0 or not _named_at(store, table, now.ts):
        raise ScanOptionError(f"{table}: the store has no ts every region of it has resolved since the table was "
                              f"created (waited {wait_s:g}s): is the writer running and keeping up? or give "
                              "starting_ts")
    return now.ts
