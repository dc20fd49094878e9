"""Compaction and GC: rewrite a partition's parts into one stable part (or two, when the
partition has outgrown its limits and splits), applying range tombstones and dropping
versions below the GC safe point.

Each compaction is: (1) plan from a manifest snapshot at version V, (2) merge and write the
new files with no lock held (the writer keeps applying and flushing meanwhile), (3) one short
edit that removes the inputs and adds the outputs — after checking the inputs are still live
(and, for a split, that no flush added a part to the partition since V). The outputs carry
``data_version = V``: a range tombstone recorded after V still applies to them. Each edit is a
``manifest.ManifestEdit`` whose expectations say what the plan assumed.

Compaction works on a ``CompactingStore``: the seams of ``Store`` it needs (its options and
root, a manifest connection per thread, a snapshot, the edit lock, the row sink).

GC keeps every version newer than the safe point plus the newest at or below it unless that
one is a delete mark. The safe point never passes the oldest live lease. Removed parts' files
are deleted only once no live lease has a manifest version older than their removal.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager, NotRequired, Protocol, TypedDict, TypeVar

import numpy as np
import pyarrow as pa

from pyspark_theflash.schema.partitioning import physical_ids_of
from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.errors import EditConflictError
from pyspark_theflash.store.keyspace import Handle, HandleRange
from pyspark_theflash.store.options import StoreOptions
from pyspark_theflash.store.predicate import merge_stats
from pyspark_theflash.store.remote import PartsRemote, delete_parts, evict_local_parts, upload_parts
from pyspark_theflash.store.part_ref import UNLISTED, PartRef
from pyspark_theflash.store.parts import PartsReader
from pyspark_theflash.store.txn_merge_tree import (
    COMMIT_TS,
    DELMARK,
    IN_ENGINE,
    ROWID,
    drop_repeated_versions,
    file_schema,
    median_split_point,
    same_as_previous,
    names_columns_by_id,
    new_part_name,
    sort_versions,
    write_part,
)
from pyspark_theflash.store.row_sink import RowSink
from pyspark_theflash.store.views import StoreView

if TYPE_CHECKING:
    import sqlite3

    from pyspark_theflash.schema import TableInfo

_T = TypeVar("_T")  # what _bound picks


class CompactingStore(Protocol):
    """What compaction and GC use of a store (``store.Store`` is one)."""

    root: Path
    options: StoreOptions
    remote: PartsRemote | None   # where its stable parts live besides the local disk (store.remote)

    @property
    def row_sink(self) -> RowSink | None: ...

    def thread_connection(self) -> "sqlite3.Connection": ...

    def snapshot(self) -> StoreView: ...

    def editing(self) -> ContextManager[None]: ...



class PartitionCompaction(TypedDict):
    """What compacting one partition did (``compact_partition``); only ``table_id``,
    ``partition_id`` and ``conflict`` when the partition changed meanwhile (nothing done)."""

    table_id: int
    partition_id: int
    conflict: bool
    parts_in: NotRequired[int]
    parts_out: NotRequired[int]
    rows_in: NotRequired[int]
    rows_out: NotRequired[int]
    split_at: NotRequired[Handle | None]


@dataclass
class CompactionResult:
    partitions: int = 0          # partitions rewritten
    parts_in: int = 0
    parts_out: int = 0
    rows_in: int = 0
    rows_out: int = 0
    splits: int = 0
    conflicts: int = 0           # plans dropped because the partition changed meanwhile
    files_deleted: int = 0
    safe_point: int = 0
    retired_tables_collected: int = 0  # dropped/truncated table ids whose parts GC removed
    details: list[PartitionCompaction] = field(default_factory=list)


def gc_versions(t: pa.Table, safe_point: int) -> pa.Table:
    """Of versions sorted by (handle, commit_ts) ascending, keep every version newer than
    the safe point plus, per handle, the newest at or below it unless it is a delete mark."""
    if t.num_rows == 0 or safe_point <= 0:
        return t
    ts = t.column(COMMIT_TS).to_numpy()
    dm = t.column(DELMARK).to_numpy(zero_copy_only=False)
    below = ts <= np.uint64(safe_point)
    last_below = below.copy()
    # The newest version at or below the safe point is the last "below" row of its handle:
    # the next row belongs to another handle or is above the safe point.
    n = t.num_rows
    nxt_same = np.zeros(n, dtype=bool)
    nxt_same[:-1] = same_as_previous(t.column(ROWID))[1:]
    nxt_below = np.zeros(n, dtype=bool)
    nxt_below[:-1] = below[1:]
    last_below &= ~(nxt_same & nxt_below)
    keep = ~below | (last_below & ~dm)
    if keep.all():
        return t
    return t.filter(pa.array(keep))


def _plan(view: StoreView, table_id: int, partition_id: int) -> tuple[list[PartRef], HandleRange] | None:
    bounds = {p.partition_id: (p.lo, p.hi) for p in view.partitions(table_id)}
    if partition_id not in bounds:
        return None
    return [p for p in view.parts(table_id) if p.partition_id == partition_id], bounds[partition_id]


def _needs_compaction(parts: list[PartRef], safe_point: int, store: CompactingStore, force: bool) -> bool:
    if not parts:
        return False
    opts = store.options
    deltas = [p for p in parts if p.kind == "delta"]
    total_rows = sum(p.rows for p in parts)
    total_bytes = sum(p.bytes for p in parts)
    splits = not all(p.in_engine for p in parts)  # records are merged, never split
    if splits and (total_rows > opts.partition_max_rows or total_bytes > opts.partition_max_bytes):
        return True
    if any(p.tombstones for p in parts):
        return True
    if len(deltas) >= (1 if force else opts.compact_min_deltas):
        return True
    # GC work: a stable part with several versions or delete marks at or below the safe point.
    return force and any((not p.single_version or p.delete_marks) and (p.min_commit_ts or 0) <= safe_point
                         for p in parts)


@dataclass
class CompactionPlan:
    """What one compaction of a partition reads: its live parts as of manifest ``version``."""

    table_id: int
    partition_id: int
    version: int
    parts: list[PartRef]
    lo: Handle | None
    hi: Handle | None
    info: "TableInfo"
    safe_point: int
    keeps_older_columns: bool = False  # info is the current schema plus columns older versions need
    kind: str = "stable"  # what it writes: "stable" (compaction) or "delta" (a delta merge)


@dataclass
class CompactionOutput:
    """The files a compaction wrote, not yet in the manifest."""

    # (partition id, lo, hi, part or None): the plan's partition, or for a split each new one
    # (None: the piece has no rows, so the new partition gets no part); parts not listed yet
    outputs: list[tuple[int, Handle | None, Handle | None, PartRef | None]]
    files: list[str]
    split_at: Handle | None
    next_partition_id: int
    rows_in: int
    rows_out: int


def plan_compaction(store: CompactingStore, table_id: int, partition_id: int, safe_point: int,
                    force: bool = False) -> CompactionPlan | None:
    """Step 1, a manifest read: the partition's parts, or None when there is nothing to do."""
    return _planned(store, table_id, partition_id, safe_point, "stable",
                    lambda parts: parts if _needs_compaction(parts, safe_point, store, force) else None)


def _planned(store: CompactingStore, table_id: int, partition_id: int, safe_point: int, kind: str,
             pick: Callable[[list[PartRef]], list[PartRef] | None]) -> CompactionPlan | None:
    """A plan of the parts ``pick`` takes of the partition's live parts (None: nothing to do),
    writing ``kind``, from one manifest read."""
    conn = store.thread_connection()
    with StoreView(conn, owns_conn=False) as view:
        planned = _plan(view, table_id, partition_id)
        if planned is None:
            return None
        parts, (plo, phi) = planned
        inputs = pick(parts)
        if inputs is None:
            return None
        info = output_table(view, table_id, safe_point)
        return CompactionPlan(table_id, partition_id, view.version, inputs, plo, phi, info, safe_point,
                              keeps_older_columns=info is not view.table(table_id), kind=kind)


def output_table(view: StoreView, table_id: int, safe_point: int) -> "TableInfo":
    """The columns a compacted part of the table keeps: the current schema's, plus those of
    older versions a read at a ts >= ``safe_point`` can still ask for (``schema=as_of`` before a
    DROP COLUMN or a reorg): compaction never loses what a readable version shows."""
    from pyspark_theflash.store.schemas import union_table

    info = view.table(table_id)
    history = view.histories().get(table_id)
    if history is None or len(history) == 1:
        return info
    columns = history.readable_columns(safe_point)
    if [c.id for c in columns] == [c.id for c in info.columns]:
        return info
    return union_table(info, columns)


def build_compaction(store: CompactingStore, plan: CompactionPlan) -> CompactionOutput:
    """Step 2, the heavy part, with no lock held: merge, apply tombstones, GC, split if too
    big, write the stable part file(s) — or, for a delta merge, one delta part, never split."""
    if any(p.in_engine for p in plan.parts):
        return merge_engine_records(store, plan)
    info = plan.info
    reader = PartsReader(store.root, info, ts=(1 << 64) - 1, handle_range=(None, None), columns=None,
                     predicate=None, hidden=(), batch_rows=store.options.read_batch_rows)
    reader.user_needed = [c.name for c in info.columns]
    tables = []
    for p in plan.parts:
        t = reader.all_versions(p)
        if p.tombstones:
            t = reader.visible_rows(p, t)
        tables.append(t)
    from pyspark_theflash.schema import hidden_field

    schema = file_schema(_arrow_fields(info), hidden_field(ROWID, info).type)
    merged = pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()
    rows_in = merged.num_rows
    merged = drop_repeated_versions(sort_versions(merged))
    merged = gc_versions(merged, plan.safe_point)
    col_ids = [c.id for c in info.columns]
    version = int(info.schema_version)
    too_big = plan.kind == "stable" and (merged.num_rows > store.options.partition_max_rows
                                         or merged.nbytes > store.options.partition_max_bytes)
    split_at = median_split_point(merged.column(ROWID).to_numpy()) if too_big and merged.num_rows else None
    out = CompactionOutput([], [], split_at, 0, rows_in, merged.num_rows)
    try:
        if split_at is None:
            if merged.num_rows:
                rel = new_part_name(plan.table_id, plan.partition_id, plan.kind)
                pf = write_part(store.root, rel, merged, col_ids, store.options.row_group_rows,
                                table_id=plan.table_id, partition=(plan.partition_id, plan.lo, plan.hi),
                                kind=plan.kind, schema_version=version, compression=store.options.part_compression)
                out.files.append(rel)
                out.outputs.append((plan.partition_id, plan.lo, plan.hi, pf))
        else:
            h = merged.column(ROWID).to_numpy()
            cut = int(np.searchsorted(h, split_at, side="left"))
            out.next_partition_id = mf.max_partition_id(store.thread_connection(), plan.table_id) + 1
            for i, (piece, lo, hi) in enumerate(((merged.slice(0, cut), plan.lo, split_at),
                                                 (merged.slice(cut), split_at, plan.hi))):
                pf = None
                new_pid = out.next_partition_id + i
                if piece.num_rows:
                    rel = new_part_name(plan.table_id, new_pid, "stable")
                    pf = write_part(store.root, rel, piece, col_ids, store.options.row_group_rows,
                                    table_id=plan.table_id, partition=(new_pid, lo, hi), kind="stable",
                                    schema_version=version, compression=store.options.part_compression)
                    out.files.append(rel)
                out.outputs.append((new_pid, lo, hi, pf))
    except BaseException:
        _unlink_all(store.root, out.files)
        raise
    return out


# A delta this small is always merged with the newer ones, whatever their size (a run of tiny
# flushes is not kept apart from a merged delta of a few hundred kilobytes).
DELTA_MERGE_SMALL_BYTES = 1 << 20
# No merge makes a delta bigger than this: a merge holds its deltas' rows in memory at once, and
# deltas this big are compaction's (into the stable part, split by size). Without it a writer
# applying a large copy merged gigabytes of one partition's deltas at its end (4.9 GiB peak RSS
# applying a 10M-row table's copy; bench/capture_restarts.py).
DELTA_MERGE_MAX_BYTES = 64 << 20


def plan_delta_merge(store: CompactingStore, table_id: int, partition_id: int, min_deltas: int,
                     small_bytes: int = DELTA_MERGE_SMALL_BYTES,
                     max_bytes: int = DELTA_MERGE_MAX_BYTES) -> CompactionPlan | None:
    """A merge of the partition's newest delta part files into one delta part of at most
    ``max_bytes``, when at least ``min_deltas`` of them are taken (the stable part is left alone),
    or None. Safe point 0: every version stays, and so does every column a version has."""
    def deltas(parts: list[PartRef]) -> list[PartRef] | None:
        files = sorted((p for p in parts if p.kind == "delta" and not p.in_engine),
                       key=lambda p: (p.added_version, p.part_id))
        # The newest deltas, back to the first one more than twice as big as those taken: a
        # steady writer's merged delta is rewritten only once the new rows reach half its
        # size, not every round (it grew with every flush until compaction: each merge took
        # longer, and the writer's loop waited for it). A contiguous run of the newest deltas
        # keeps the parts' order as it was.
        taken = [files[-1]] if files else []
        size = taken[0].bytes if taken else 0
        for part in reversed(files[:-1]):
            if part.bytes > 2 * size + small_bytes or size + part.bytes > max_bytes:
                break
            taken.append(part)
            size += part.bytes
        return taken[::-1] if len(taken) >= max(2, min_deltas) else None

    return _planned(store, table_id, partition_id, 0, "delta", deltas)


def merge_deltas(store: CompactingStore, min_deltas: int | None = None, small_bytes: int = DELTA_MERGE_SMALL_BYTES,
                 max_bytes: int = DELTA_MERGE_MAX_BYTES) -> CompactionResult:
    """Every partition's delta part files into one delta part where there are at least
    ``min_deltas`` (default ``StoreOptions.delta_merge_min``): cheap (the deltas' rows, sorted;
    no version dropped, the stable part untouched), so a writer under steady writes runs it
    often and a read opens a few deltas beside the stable part, not one per flush since the
    last compaction. Tombstones are applied as compaction applies them."""
    result = CompactionResult()
    least = store.options.delta_merge_min if min_deltas is None else min_deltas
    with store.snapshot() as view:
        targets = [(tid, p.partition_id) for tid in view.table_ids_with_parts() for p in view.partitions(tid)]
    for tid, pid in targets:
        plan = plan_delta_merge(store, tid, pid, least, small_bytes, max_bytes)
        if plan is None:
            continue
        out = build_compaction(store, plan)
        if not commit_compaction(store, plan, out):
            result.conflicts += 1
            continue
        result.partitions += 1
        result.parts_in += len(plan.parts)
        result.parts_out += sum(o[3] is not None for o in out.outputs)
        result.rows_in += out.rows_in
        result.rows_out += out.rows_out
    return result


def merge_engine_records(store: CompactingStore, plan: CompactionPlan) -> CompactionOutput:
    """Step 2 for a partition whose rows the store's engine keeps (``row_sink.keeps_rows``):
    its records become one, with no file to write. The engine merges, applies tombstones and
    collects garbage in its own tables; the record only has to stay true for planning.
    Statistics are the union of the inputs' (bounds never narrower than the rows they
    describe: pruning with them is exact), the row count the engine's, when it can tell, of
    the versions flushed up to the plan's manifest version, and the bytes scaled with it. A
    partition of records is never split (splitting needs the rows' median handle). Input part
    files (a store that mirrored before its engine kept rows alone) are dropped with them."""
    parts = plan.parts
    rows = sum(p.rows for p in parts)
    size = sum(p.bytes for p in parts)
    counted = getattr(store.row_sink, "count_versions", None)
    held = counted(plan.table_id, plan.lo, plan.hi, plan.version) if counted is not None else None
    if held is not None and rows:
        size = int(size * min(1.0, held / rows))
        rows = int(held)
    live = [p for p in parts if p.rows and p.min_handle is not None]
    stats = merge_stats(dict(p.stats) for p in live)  # an empty input bounds nothing
    record = PartRef(
        UNLISTED, plan.table_id, plan.partition_id, plan.lo, plan.hi, plan.kind, IN_ENGINE, rows, size,
        _bound(min, [p.min_handle for p in live]), _bound(max, [p.max_handle for p in live]),
        _bound(min, [p.min_commit_ts for p in live]), _bound(max, [p.max_commit_ts for p in live]),
        len(live) == 1 and live[0].single_version, sum(p.delete_marks for p in live),
        int(plan.info.schema_version), tuple((c.id, c.name) for c in plan.info.columns), tuple(stats.items()))
    outputs: list[tuple[int, Handle | None, Handle | None, PartRef | None]] = \
        [(plan.partition_id, plan.lo, plan.hi, record)] if live else []
    return CompactionOutput(outputs, [], None, 0, sum(p.rows for p in parts), rows if live else 0)


def _bound(pick: Callable[[list[_T]], _T], values: list[_T | None]) -> _T | None:
    known = [v for v in values if v is not None]
    return pick(known) if known else None


def commit_compaction(store: CompactingStore, plan: CompactionPlan, out: CompactionOutput) -> bool:
    """Step 3, one short edit: swap the inputs for the outputs, unless the partition changed
    in a way the outputs do not account for (an input gone; for a split, any new part or
    partition) — then the output files are deleted and False returned (the next round
    plans again)."""

    conn = store.thread_connection()
    table_id, partition_id = plan.table_id, plan.partition_id

    def new_part(part: PartRef) -> mf.NewPart:
        # A part keeping columns of older versions lists its own columns (no version has them
        # all); a Parquet part names them by id, and lists them as its file names them.
        return mf.NewPart(part, plan.version, lists_columns=names_columns_by_id(part) or plan.keeps_older_columns)

    inputs = frozenset(p.part_id for p in plan.parts)
    if out.split_at is None:
        edit = mf.ManifestEdit(
            expect=(mf.PartsLive(table_id, partition_id, inputs),), parts_removed=tuple(sorted(inputs)),
            parts_added=tuple(new_part(pf) for _pid, _lo, _hi, pf in out.outputs if pf is not None),
            prune_tombstones=True)
    else:  # a split: nothing else may have come to the partition, nor a partition to the table
        edit = mf.ManifestEdit(
            expect=(mf.PartsLive(table_id, partition_id, inputs, only=True),
                    mf.NextPartitionId(table_id, out.next_partition_id)),
            parts_removed=tuple(sorted(inputs)), partitions_removed=((table_id, partition_id),),
            partitions_added=tuple((table_id, new_pid, lo, hi) for new_pid, lo, hi, _pf in out.outputs),
            parts_added=tuple(new_part(pf) for _pid, _lo, _hi, pf in out.outputs if pf is not None),
            prune_tombstones=True)
    try:
        # listed only once on the shared storage too (store.remote): a read anywhere finds it
        upload_parts(store.remote, store.root, out.files)
        with store.editing():
            mf.apply_edit(conn, edit)
    except EditConflictError:
        _discard(store, out.files)
        return False
    except BaseException:
        _discard(store, out.files)
        raise
    return True


def compact_partition(store: CompactingStore, table_id: int, partition_id: int, safe_point: int,
                      force: bool = False) -> PartitionCompaction | None:
    """Compact one partition (plan, build, commit); returns what was done, or None when
    there was nothing to do."""
    plan = plan_compaction(store, table_id, partition_id, safe_point, force)
    if plan is None:
        return None
    out = build_compaction(store, plan)
    if not commit_compaction(store, plan, out):
        return {"table_id": table_id, "partition_id": partition_id, "conflict": True}
    return {"table_id": table_id, "partition_id": partition_id, "conflict": False, "parts_in": len(plan.parts),
            "parts_out": sum(o[3] is not None for o in out.outputs), "rows_in": out.rows_in, "rows_out": out.rows_out,
            "split_at": out.split_at}


def _arrow_fields(info: "TableInfo") -> list[pa.Field]:
    from pyspark_theflash.store.schemas import user_fields

    return user_fields(info)


def _unlink_all(root: Path, files: list[str]) -> None:
    for rel in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(root / rel)


def _discard(store: CompactingStore, files: list[str]) -> None:
    """A compaction's outputs no edit lists: their local files and their remote objects."""
    _unlink_all(store.root, files)
    delete_parts(store.remote, files)


def compact_store(store: CompactingStore, table: "str | int | TableInfo | None" = None, force: bool = False,
                  safe_point: int | None = None) -> CompactionResult:
    result = CompactionResult()
    with store.snapshot() as view:
        sp = view.gc_safe_point() if safe_point is None else safe_point
        targets = [(tid, p.partition_id) for tid in
                   (view.table_ids_with_parts() if table is None else physical_ids_of(view.table(table)))
                   for p in view.partitions(tid)]
    result.safe_point = sp
    for tid, pid in targets:
        done = compact_partition(store, tid, pid, sp, force=force)
        if done is None:
            continue
        if done["conflict"]:
            result.conflicts += 1
            continue
        result.partitions += 1
        result.parts_in += done["parts_in"]
        result.parts_out += done["parts_out"]
        result.rows_in += done["rows_in"]
        result.rows_out += done["rows_out"]
        result.splits += done["split_at"] is not None
        result.details.append(done)
    result.files_deleted = delete_obsolete_files(store)
    return result


def gc_store(store: CompactingStore, safe_point: int, collect: Callable[[int], object] | None = None) -> CompactionResult:
    """Advance the safe point (bounded by the oldest live lease, never moving back), then
    compact everything with it (``collect(safe point)`` first, when given: ``Store.gc``)."""
    conn = store.thread_connection()
    # a manifest version of its own: reads below the new safe point end here
    mf.apply_edit(conn, mf.ManifestEdit(gc_safe_point=int(safe_point)))
    with mf.read(conn):
        effective = int(mf.get_meta(conn, "gc_safe_point", 0))
    collected = collect_retired_tables(store, effective)
    if collect is not None:
        collect(effective)
    result = compact_store(store, None, force=True, safe_point=effective)
    result.retired_tables_collected = collected
    return result


def collect_retired_tables(store: CompactingStore, safe_point: int) -> int:
    """Remove every part of the table ids retired (DROP TABLE, TRUNCATE) at or below the safe
    point: no read at a ts >= it sees them any more. Like any removed part, their files go
    once no lease pins them. Returns the tables collected."""
    conn = store.thread_connection()
    if not mf.has_table(conn, "table_lifetimes"):
        return 0
    with store.editing():
        with mf.read(conn):
            gone = [int(r[0]) for r in conn.execute(
                "SELECT DISTINCT p.table_id FROM parts p JOIN table_lifetimes l ON p.table_id = l.table_id "
                "WHERE l.retired_ts IS NOT NULL AND l.retired_ts <= ? AND p.removed_version IS NULL", (safe_point,))]
        # Under the edit lock no other edit of this writer comes between the read and the edit.
        mf.apply_edit(conn, mf.ManifestEdit(tables_removed=tuple(gone)))
    return len(gone)


def delete_obsolete_files(store: CompactingStore) -> int:
    """Delete the files of removed parts that no live lease can still see (a lease with
    manifest version v sees parts removed at versions > v) and that were removed at least
    ``removed_file_retention_s`` ago. The retention is slack for readers that hold no lease
    for a moment: a driver whose renewal comes late (a stalled process), or Spark tasks still
    reading files a query planned just before its lease went; within it, a late renewal finds
    everything it pinned (``Leases.renew(late_ok=True)``)."""
    conn = store.thread_connection()
    if store.remote is not None:  # the local disk is a cache of the stable parts: keep it in bounds
        evict_local_parts(conn, store.root, store.options.local_parts_bytes)
    now = time.time()
    with mf.transaction(conn, bump=False) as e:
        pins = [v for _ts, v in mf.live_leases(conn, now)]
        oldest = min(pins) if pins else 1 << 62
        # removed_at is NULL for parts removed before it was kept: old enough.
        rows = conn.execute(
            "SELECT part_id, file, removed_version FROM parts WHERE removed_version IS NOT NULL "
            "AND removed_version <= ? AND COALESCE(removed_at, 0) <= ?",
            (oldest, now - store.options.removed_file_retention_s)).fetchall()
        if not rows:
            _forget_expired_leases(conn, now)
            return 0
        # Files go first: if we crash after this, the rows remain and the next round retries.
        files = [rel for _pid, rel, _v in rows if rel != IN_ENGINE]  # a record of rows the engine keeps: no file
        _unlink_all(store.root, files)
        delete_parts(store.remote, files)
        # A store from before this was kept may have deleted files of any version up to now.
        known = mf.get_meta(conn, mf.FILES_DELETED_THROUGH)
        known = int(known) if known is not None else mf.current_version(conn)
        # Its reads, the deletions and the edit in one transaction: a lease taken meanwhile
        # sees the rows gone with the files.
        mf.write_edit(e, mf.ManifestEdit(bump=False, parts_forgotten=tuple(int(r[0]) for r in rows), meta=(
            (mf.FILES_DELETED_THROUGH, max(known, *(int(r[2]) for r in rows))),)))
        _forget_expired_leases(conn, now)
    return len(rows)


def _forget_expired_leases(conn: sqlite3.Connection, now: float) -> None:
    """Drop the expired leases a late renewal can no longer bring back: those whose manifest
    version sees a deleted file. The others stay (they pin nothing) until then."""
    through = mf.get_meta(conn, mf.FILES_DELETED_THROUGH)
    if through is None:
        conn.execute("DELETE FROM leases WHERE expires_at < ?", (now,))
    else:
        conn.execute("DELETE FROM leases WHERE expires_at < ? AND manifest_version < ?", (now, int(through)))


class BackgroundCompactor:
    """A daemon thread that compacts partitions with enough deltas (or too big), deletes
    unpinned files, every ``interval_s`` seconds."""

    def __init__(self, store: CompactingStore, interval_s: float) -> None:
        self.store = store
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="theflash-compaction", daemon=True)
        self.rounds = 0
        self.last_error: BaseException | None = None
        self.last_result: CompactionResult | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last_result = compact_store(self.store)
            except Exception as exc:  # keep running; the error is reported by status
                self.last_error = exc
            self.rounds += 1
            self._stop.wait(self.interval_s)
