"""Snapshot reads: the rows of a table as of a ts, from a pinned list of parts.

``read_parts`` is a pure function of its arguments (part references carry everything needed:
path, statistics, schema of their version, the range tombstones that apply to them), so a
Spark executor can run it on a part list planned elsewhere.

MVCC, per partition (partitions are disjoint handle ranges, so a handle's versions never
span two): keep versions with commit_ts <= ts, order by (handle, commit_ts desc), keep the
first of each handle, drop it if it is a delete mark — all with Arrow/NumPy kernels. When a
big part holds one version per handle (a stable part) and the rest are small deltas, only
the handles the deltas touch go through that sort; the other rows of the big part are
final as they are.

Filters and MVCC. A filter must be evaluated on the *chosen* version of each handle, never
before choosing: dropping a newer version because it does not match would let an older
version that matches come back to life. Pruning follows the same rule:
* a whole partition may be skipped when the union of its parts' statistics cannot match
  (no version of any handle matches, so no chosen version does);
* a single part, or a row group inside it, may be skipped only when it is the partition's
  only part and holds one version per handle (then the rows it holds are the only versions
  of their handles: skipping them removes exactly rows the filter would remove); beside
  deltas, a stable part is read minus its deletion vector (``store.deletion_vector``), and
  the rows left are each their handle's row at ts, so any row group the filter cannot match
  may be skipped there too;
* parts whose every version is newer than ts are skipped regardless (they are invisible).

Loading a part's rows, visibility and the output's shape are ``store.parts`` (which deletion
vectors and compaction build on too); this module combines them partition by partition.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.store.deletion_vector import (
    DeletionVector,
    can_split,
    deletion_vector,
    stable_and_deltas,
    superseding_rows,
)
from pyspark_theflash.store.errors import RowsInEngineError
from pyspark_theflash.store.keyspace import HandleRange
from pyspark_theflash.store.parts import (
    DEFAULT_BATCH_ROWS,
    PartRef,
    PartsReader,
    ReadStats,
    filtered,
    newest_visible,
    tag_from_delta,
)
from pyspark_theflash.store.predicate import Expr, merge_stats
from pyspark_theflash.store.txn_merge_tree import COMMIT_TS, DELMARK, ROWID, is_ipc
from pyspark_theflash.store.virtual_columns import read_computing_virtual

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo


def _not_versions(t: pa.Table, handles: pa.Array, versions: pa.Table) -> pa.Array | None:
    """The mask of the rows of ``t`` whose (handle, commit ts) is not one of ``versions``
    (``handles``: their distinct handles), or None when none is. Only rows of those handles
    are matched pair by pair, so the cost follows the vector, not the table."""
    rowid = t.column(ROWID)
    if pa.types.is_integer(rowid.type) and t.num_rows:
        h = rowid.to_numpy()
        if h[0] <= h[-1] and bool(np.all(h[1:] >= h[:-1])):
            return _not_versions_sorted(h, t.column(COMMIT_TS).to_numpy(), versions)
    candidates = np.flatnonzero(pc.is_in(t.column(ROWID), value_set=handles).to_numpy(zero_copy_only=False))
    if len(candidates) == 0:
        return None
    keys = pa.table({ROWID: t.column(ROWID).take(pa.array(candidates)),
                     COMMIT_TS: t.column(COMMIT_TS).take(pa.array(candidates)),
                     "_row": pa.array(candidates, pa.int64())})
    hit = keys.join(versions.select([ROWID, COMMIT_TS]), keys=[ROWID, COMMIT_TS], join_type="inner")
    if hit.num_rows == 0:
        return None
    keep = np.ones(t.num_rows, dtype=bool)
    keep[hit.column("_row").to_numpy()] = False
    return pa.array(keep)


def _not_versions_sorted(h: np.ndarray, ts: np.ndarray, versions: pa.Table) -> pa.Array | None:
    """``_not_versions`` for int handles ``h`` in ascending order (a part file's): each of the
    vector's versions is looked up by binary search among the rows of its handle, so the
    matching costs the vector's size times log(rows); the rows themselves are passed over only
    by the caller's order check and the mask."""
    vh = versions.column(ROWID).to_numpy()
    vts = versions.column(COMMIT_TS).to_numpy()
    first = np.searchsorted(h, vh, side="left")
    runs = np.searchsorted(h, vh, side="right") - first  # rows of each version's handle
    hits = []
    k = 0
    while True:  # the k-th row of each handle's run: runs are a handle's few versions
        live = np.flatnonzero(runs > k)
        if not len(live):
            break
        rows = first[live] + k
        hits.append(rows[ts[rows] == vts[live]])
        k += 1
    gone = np.concatenate(hits) if hits else np.empty(0, np.int64)
    if not len(gone):
        return None
    keep = np.ones(len(h), dtype=bool)
    keep[gone] = False
    return pa.array(keep)


class SnapshotReader(PartsReader):
    """A ``PartsReader`` that reads whole partitions at ts: each handle's newest visible
    version, chosen by MVCC, by a clean part's rows as they are, or by the split of a stable
    part and its deletion vector (``store.deletion_vector``)."""

    def read_clean_part(self, part: PartRef, overlay: "_Overlay | None" = None) -> Iterator[pa.RecordBatch]:
        """A part holding one version per handle; a Parquet one streamed a few row groups at a
        time, each row group pruned by the filter. With an ``overlay`` (the visible rows of the
        partition's other parts; only beside an Arrow IPC delta, since a Parquet stable part is
        read by its deletion vector), rows of handles the overlay touches are set aside in it
        for MVCC."""
        if is_ipc(part.path):
            yield from self._emit_clean(part, self._read(part), overlay)
            return
        assert overlay is None, "a Parquet stable part beside deltas is read by its deletion vector"
        for t in self._row_group_tables(part):
            yield from self._emit_clean(part, t, None)

    def read_stable_half(self, part: PartRef, vector: DeletionVector) -> Iterator[pa.RecordBatch]:
        """The stable half of a split partition read (``store.deletion_vector``): the Parquet
        part's rows visible at ts, minus the vector's versions, minus delete marks, streamed a
        few row groups at a time and pruned by the filter as a clean part is. The other half,
        the deltas' newest versions of the superseded handles, is ``superseding_rows``."""
        dropped = vector.versions
        handles = pc.unique(dropped.column(ROWID).combine_chunks()) if dropped.num_rows else None

        def dropped_or_deleted(t: pa.Table) -> tuple[pa.Array | None, pa.ChunkedArray | None]:
            return (_not_versions(t, handles, dropped) if handles is not None else None,
                    pc.invert(t.column(DELMARK)) if part.delete_marks else None)

        for t in self._row_group_tables(part):
            t, m = self._visible_mask(part, t, single_version=False, also=dropped_or_deleted)
            yield from self._finish(filtered(self._finish_input(t), m), from_delta=part.kind == "delta")

    def _emit_clean(self, part: PartRef, t: pa.Table, overlay: "_Overlay | None") -> Iterator[pa.RecordBatch]:
        from_delta = part.kind == "delta"
        if overlay is None:
            t, m = self._visible_mask(part, t, single_version=True)
            yield from self._finish(filtered(self._finish_input(t), m), from_delta=from_delta)
            return
        t, visible = self._visible_mask(part, t, single_version=False)
        contested = pc.is_in(t.column(ROWID), value_set=overlay.handles)
        overlay.contested.append(tag_from_delta(t.filter(contested if visible is None else pc.and_(visible, contested)),
                                         part))
        alone = pc.invert(contested)
        if part.delete_marks:
            alone = pc.and_(alone, pc.invert(t.column(DELMARK)))
        yield from self._finish(filtered(t, alone if visible is None else pc.and_(visible, alone)),
                                from_delta=from_delta)

    def read_partition(self, parts: Sequence[PartRef]) -> Iterator[pa.RecordBatch]:
        if self.predicate is not None:
            if not self.predicate.might_match(merge_stats(p.stats_by_name(self.table) for p in parts)):
                return
        singles = [p for p in parts if p.single_version]
        base = max(singles, key=lambda p: p.rows) if singles else None
        if base is not None and len(parts) == 1:
            yield from self.read_clean_part(base)
            return
        others = [p for p in parts if p is not base]
        if base is None or base.rows < sum(p.rows for p in others) or not is_ipc(base.path):
            # a compacted partition: its stable part minus a deletion vector, and the deltas
            yield from self._read_split_or_mvcc(parts)
            return
        # A big one-version-per-handle delta (an initial load before its first compaction) and
        # small ones: MVCC is needed only for the handles the small ones touch; every other
        # row of the big one stands alone.
        tables = [tag_from_delta(t, p) for p, t in ((p, self._visible_filter(p, self._read(p), single_version=False))
                                             for p in others) if t.num_rows]
        if not tables:
            yield from self.read_clean_part(base)
            return
        delta_rows = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        overlay = _Overlay(delta_rows.column(ROWID))
        yield from self.read_clean_part(base, overlay)
        t = pa.concat_tables(overlay.contested + [delta_rows])
        yield from self._finish(newest_visible(t))

    def _read_split_or_mvcc(self, parts: Sequence[PartRef]) -> Iterator[pa.RecordBatch]:
        """A partition whose stable part keeps several versions of some handles (those newer
        than the GC safe point at its compaction), as every partition has under live writes:
        read as two halves by its deletion vector, so the cost follows the deltas; sorting
        every version of the partition (``_read_mvcc``) cost stable × deltas. Falls back to
        that when there is no stable Parquet part or the vector would be too long."""
        stable, deltas = stable_and_deltas(parts)
        vector = None
        if can_split(stable, deltas):
            vector = deletion_vector(stable, deltas, self.table, self.ts, (self.lo, self.hi), self.root,
                                     cache_deltas=self.cache_deltas)
        if vector is None:
            yield from self._read_mvcc(parts)
            return
        if self.stats is not None:
            self.stats.deletion_vector_rows += len(vector)
        yield from self.read_stable_half(stable, vector)
        yield from superseding_rows(vector.superseded, deltas, self.table, self.ts, (self.lo, self.hi),
                                    self.columns, self.predicate, self.hidden, self.root,
                                    self.batch_rows, cache_deltas=self.cache_deltas, stats=self.stats)

    def _read_mvcc(self, parts: Sequence[PartRef]) -> Iterator[pa.RecordBatch]:
        tables = [tag_from_delta(t, p) for p, t in ((p, self._visible_filter(p, self._read(p), single_version=False))
                                             for p in parts) if t.num_rows]
        if not tables:
            return
        t = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        yield from self._finish(newest_visible(t))


class _Overlay:
    """The handles a partition's small parts hold versions of (visible at the read's ts)."""

    def __init__(self, handles: pa.ChunkedArray) -> None:
        self.handles = pc.unique(handles.combine_chunks())
        self.contested: list[pa.Table] = []



def read_parts(parts: Sequence[PartRef], table_info: "TableInfo", ts: int,
               handle_range: HandleRange | None = None, columns: Sequence[str] | None = None,
               predicate: Expr | None = None, hidden: Sequence[str] = (), root: str | Path = ".",
               batch_rows: int = DEFAULT_BATCH_ROWS, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
    """The rows of ``table_info`` visible at ``ts`` in ``parts`` (live parts of one table,
    as planned by ``StoreView.parts``), restricted to ``handle_range`` [lo, hi), with
    ``columns`` (None: all) plus the requested ``hidden`` columns, filtered by ``predicate``.
    Batches come partition by partition in handle order. VIRTUAL generated columns are
    computed from the stored ones (``store.virtual_columns``). ``stats``: what the read did
    besides its rows is added to it (``ReadStats``)."""
    return read_computing_virtual(table_info, columns, predicate, hidden, lambda cols, pred: _read_parts(
        parts, table_info, ts, handle_range, cols, pred, hidden, root, batch_rows, stats))


def _read_parts(parts: Sequence[PartRef], table_info: "TableInfo", ts: int, handle_range: HandleRange | None,
                columns: Sequence[str] | None, predicate: Expr | None, hidden: Sequence[str], root: str | Path,
                batch_rows: int, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
    lo, hi = handle_range if handle_range is not None else (None, None)
    if any(p.in_engine for p in parts):
        raise RowsInEngineError(str(root), table_info.qualified_name)
    reader = SnapshotReader(Path(root), table_info, ts, (lo, hi), columns, predicate, hidden, batch_rows,
                            stats=stats)
    groups: dict[int, list[PartRef]] = {}
    for p in parts:
        if p.rows == 0 or p.min_commit_ts is None or p.min_commit_ts > ts or not p.overlaps(lo, hi):
            continue
        groups.setdefault(p.partition_id, []).append(p)
    ordered = sorted(groups.values(), key=lambda ps: (ps[0].partition_lo is not None,
                                                       ps[0].partition_lo or 0))
    for group in ordered:
        yield from reader.read_partition(group)


__all__ = ["SnapshotReader", "read_parts"]
