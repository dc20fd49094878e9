"""What a read knows of its store and its upstream, below every step of a plan.

A read is handed its store open (``store.Store``, read-only: one per read, per change stream,
per engine of the service), finds the upstream (the ``upstream`` option, else the
address the writer recorded), maps the table to the PD-encoded key ranges of its records and
to the live regions over them, and checks a ts against the readable range
[GC safe point, the upstream's TSO]. The snapshot chooser (``scan.snapshot``), the learner read
(``scan.catch_up``) and the planner (``scan.planner``) all ask here; nothing here imports them.
"""
from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence

import numpy as np

from pyspark_theflash.codec.keys import encode_region_key, record_prefix
from pyspark_theflash.scan.errors import (
    SnapshotTsOutOfRangeError,
    TableNotReplicatedError,
    UpstreamUnreachableError,
)
from pyspark_theflash.scan.learner import CoveringColumns, region_id
from pyspark_theflash.scan.options import HandleBound, ScanOptions
from pyspark_theflash.schema.partitioning import physical_ids_of
from pyspark_theflash.store.errors import did_you_mean

if TYPE_CHECKING:
    from pyspark_theflash.schema.info_json import TableInfoJson
    from pyspark_theflash.upstream_client.client import UpstreamConnection
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.store import Store
    from pyspark_theflash.store.views import LockInfo, RegionState, StoreView



class Upstream(Protocol):
    """What a read asks of its upstream before the learner read: the TSO, the GC safe point and
    a table's schema (``upstream.connect`` gives one; tests pass their own)."""

    def get_ts(self) -> int: ...

    def gc_safe_point(self) -> int: ...

    def table_info(self, db: str, table: str) -> TableInfoJson: ...


def open_store(path: str) -> Store:
    """The store at ``path``, opened read-only: for an entry point that has only a path (the
    public read functions, ``opened_store``; the Python data source). Below them a read is
    handed the open store."""
    from pyspark_theflash.store import Store

    return Store.open(path, readonly=True)


def store_root(store: str | os.PathLike[str] | Store) -> str:
    """The store's directory: a path as given, or an open Store's root. (A path is asked first: a
    ``pathlib.Path`` has a ``root`` attribute too, its anchor "/", which named the wrong store.)"""
    if isinstance(store, (str, os.PathLike)):
        return os.fspath(store)
    return os.fspath(store.root)


@contextlib.contextmanager
def opened_store(store: str | os.PathLike[str] | Store) -> Iterator[Store]:
    """``store`` if it is open read-only already (its opener's to close), else the store at that
    path opened read-only for the block: what a public read function that takes either does
    once, handing the open store down. A damaged manifest is said as ``ManifestDamagedError``.

    A writer's store (``readonly`` false) is not read through: its ``snapshot()`` first makes
    the writer's pipelined flush durable, the writer thread's business, so a read opens its
    directory read-only, as every reader does."""
    if not isinstance(store, (str, os.PathLike)) and store.readonly:
        yield store
        return
    from pyspark_theflash.store.errors import ManifestDamagedError, manifest_damage
    from pyspark_theflash.store.manifest import manifest_path

    path = store_root(store)
    try:
        opened = open_store(path)
    except Exception as exc:
        if manifest_damage(exc):
            raise ManifestDamagedError(str(manifest_path(path)), exc) from exc
        raise
    try:
        yield opened
    finally:
        opened.close()


def upstream_address(options: ScanOptions, view: StoreView) -> str | None:
    """The ``upstream`` option, else the address the writer recorded in the store."""
    if options.upstream:
        return options.upstream
    recorded = view.upstream() if hasattr(view, "upstream") else None
    return str(recorded) if recorded else None


def connect_upstream(options: ScanOptions, address: str | None) -> UpstreamConnection:
    if not address:
        raise UpstreamUnreachableError(
            f"reading {options.table}: no upstream address; give .option('upstream', 'grpc://host:port') "
            "(the address `theflash upstream --serve` prints), or let the writer record it in the store"
        )
    from pyspark_theflash.upstream_client.client import connect

    return connect(address)


def close_upstream(upstream: object) -> None:
    """Close a client this read connected itself (a client handed in is its giver's)."""
    if upstream is not None and hasattr(upstream, "close"):
        upstream.close()


def unreachable(exc: BaseException | None) -> bool:
    """A failure to reach the upstream: a gRPC UNAVAILABLE or DEADLINE_EXCEEDED, raised as it is
    or as the cause of the upstream client's error."""
    from pyspark_theflash.upstream_client.pd_client import PDUnavailableError

    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, PDUnavailableError):  # pd://: no PD member answered
            return True
        code = getattr(exc, "code", None)
        try:
            name = str(code().name) if callable(code) else ""
        except Exception:
            name = ""
        if name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


# -- the readable range --------------------------------------------------------------------------
def check_snapshot_ts(ts: int, safe_point: int, now_ts: int) -> None:
    """Refuse a ts outside [safe_point, now_ts]."""
    if ts < safe_point:
        raise SnapshotTsOutOfRangeError(ts, safe_point, now_ts, "below the GC safe point (older versions may be gone)")
    if ts > now_ts:
        raise SnapshotTsOutOfRangeError(ts, safe_point, now_ts, "in the future (ahead of the upstream TSO)")


def upstream_range(upstream: Upstream, table: str) -> tuple[int, int]:
    """(a fresh TSO, the upstream's GC safe point); ``UpstreamUnreachableError`` naming the read
    of ``table`` when the upstream does not answer."""
    try:
        fresh = upstream.get_ts()
        gc_upstream = int(upstream.gc_safe_point())
    except Exception as exc:
        raise UpstreamUnreachableError(f"reading {table}: the upstream did not answer: {exc}") from exc
    return fresh, gc_upstream


def check_requested_ts(upstream: Upstream, opts: ScanOptions, store_safe_point: int = 0) -> None:
    """Refuse the ts the user asked for when it is below the GC safe point or ahead of the
    upstream's TSO (``SnapshotTsOutOfRangeError``)."""
    at = opts.requested_ts()
    if not at:
        return
    fresh, gc_upstream = upstream_range(upstream, opts.table)
    check_snapshot_ts(int(at), max(gc_upstream, store_safe_point), fresh)


# -- the table's keys and regions ----------------------------------------------------------------
def table_key_range(table_id: int) -> tuple[bytes, bytes]:
    """The table's record keys [t{id}_r, t{id}_s) in PD's encoded form (region boundaries)."""
    prefix = record_prefix(table_id)
    return encode_region_key(prefix), encode_region_key(prefix[:-1] + b"s")


def physical_key_ranges(table_info: TableInfo) -> list[tuple[bytes, bytes]]:
    """The PD-encoded key ranges of the table's records: its own, or each partition's."""
    return [table_key_range(i) for i in physical_ids_of(table_info)]


def covering_regions(view: StoreView, table_id: int) -> list[tuple[RegionState, tuple[HandleBound, HandleBound]]]:
    """Live regions of ``view`` overlapping the table, with their handle ranges, in handle order."""
    return view.table_regions(table_id)


def covering_physical(view: StoreView, table_ids: Sequence[int]) -> list[RegionState]:
    """Live regions overlapping any of ``table_ids``' records, each once."""
    seen: dict[int, RegionState] = {}
    for tid in table_ids:
        for r, _ in covering_regions(view, tid):
            seen.setdefault(region_id(r), r)
    return list(seen.values())


def covering_physical_columns(view: StoreView, table_ids: Sequence[int]) -> CoveringColumns | None:
    """``covering_physical`` without an object per region, or None where the view cannot give
    the tables' regions as columns (``StoreView.table_region_columns``)."""
    runs = []
    for tid in table_ids:
        run = view.table_region_columns(tid)
        if run is None:
            return None
        runs.append(run.at)
    at = np.concatenate(runs) if runs else np.zeros(0, np.int64)
    if len(runs) > 1:  # a region over two partitions is listed once, where it first comes
        _, first = np.unique(at, return_index=True)
        at = at[np.sort(first)]
    cols = view.region_columns()
    return CoveringColumns(at, cols.ids[at], cols.resolved_ts[at])


def locks_of(view: StoreView, table_ids: Sequence[int]) -> list[LockInfo]:
    return [lk for tid in table_ids for lk in view.locks(tid, None, None)]


# -- the table's schema --------------------------------------------------------------------------
def upstream_table(upstream: Upstream, opts: ScanOptions, store: Store) -> TableInfo:
    from pyspark_theflash.schema import TableInfo

    db, name = opts.db_and_name
    try:
        return TableInfo.from_json(upstream.table_info(db, name), db=db)
    except Exception as exc:
        raise TableNotReplicatedError(
            f"table {opts.table} is neither in store {opts.store} nor known upstream ({exc})"
            f"{store_hint(opts, store) or '; check the name'}"
        ) from exc


def store_hint(opts: ScanOptions, store: Store) -> str:
    """``"; did you mean db.t?"`` with the store's tables closest to the option ``table``, or ""."""
    try:
        with store.snapshot() as view:
            return did_you_mean(opts.table, [f"{t.db}.{t.name}" for t in view.tables()])
    except Exception:  # a hint only: the error it adds to says what went wrong
        return ""
