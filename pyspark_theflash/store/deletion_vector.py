"""Merge-on-read of one partition as two disjoint halves: the stable part minus a deletion
vector, and the newest delta versions of the handles the deltas supersede.

A TxnMergeTree partition under live writes is one big stable part (Parquet, written by the
last compaction, sorted by handle and commit ts; one version per handle, or several where
versions newer than the GC safe point were kept) and a few small delta parts flushed since.
Read at ts, each handle's row is its newest version visible at ts, unless that is a delete:

* a handle whose newest visible version lies in a delta (a version newer than the stable
  part's visible ones, or one the stable part has none of) is **superseded**: its row comes
  from the deltas;
* every other handle's row is its newest visible version in the stable part.

The **deletion vector** is the set of the stable part's visible versions — (handle, commit ts)
pairs — that are not a row at ts: every version of a superseded handle, and every version
that a newer visible version of the same handle in the stable part replaces. So the stable
half is "the stable part's rows visible at ts, minus the deletion vector, minus delete marks",
which a reader can take straight from the Parquet file with its own column pruning and filter
pushdown, and the other half is the deltas' newest versions of the superseded handles: the two
never overlap and together are the partition's MVCC snapshot. Computing the vector reads the
deltas (small) and the stable part's two integer columns (handle, commit ts), of the row groups
the deltas touch when it holds one version per handle: the cost follows the deltas, not
stable × deltas. Delta Lake's deletion vectors, Paimon's merge-on-read and TiFlash's DeltaTree
split a read the same way.

``store.read`` reads a partition this way (``SnapshotReader._read_split_or_mvcc``): the stable
half with :meth:`SnapshotReader.read_stable_half`, the other with :func:`superseding_rows`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.store import integrity
from pyspark_theflash.store.keyspace import Handle, HandleRange, handle_before
from pyspark_theflash.store.lru import BytesLRU
from pyspark_theflash.store.part_ref import PartRef
from pyspark_theflash.store.parts import PartsReader, ReadStats, newest_visible, tag_from_delta
from pyspark_theflash.store.txn_merge_tree import COMMIT_TS, ROWID, conform_hidden, same_as_previous

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.store.predicate import Expr

_NEWEST = COMMIT_TS + "_max"
_STABLE = COMMIT_TS + "_stable"
# A vector longer than this share of the stable part's rows is not worth a split: the stable
# half would drop most of what it reads (a plain MVCC read is as cheap).
MAX_VECTOR_SHARE = 0.25


@dataclass(frozen=True)
class DeletionVector:
    """The stable part's versions a read at ts drops (``versions``: columns ``_tidb_rowid``,
    ``_tidb_commit_ts``) and the handles whose rows come from the deltas (``superseded``,
    sorted): the split of one partition's read in two."""

    versions: pa.Table
    superseded: pa.Array

    def __len__(self) -> int:
        rows: int = self.versions.num_rows
        return rows


def stable_and_deltas(parts: Sequence[PartRef]) -> tuple[PartRef, list[PartRef]]:
    """A partition's parts as (its stable part — the biggest stable one, preferring one version
    per handle; its biggest part when none is stable — and the others)."""
    stable = max(parts, key=lambda p: (p.kind == "stable", p.single_version, p.rows))
    return stable, [p for p in parts if p is not stable]


def can_split(stable: PartRef, deltas: Sequence[PartRef]) -> bool:
    """Whether ``stable`` may be read as the stable half beside ``deltas``: a Parquet part
    bigger than the deltas together (else a plain MVCC read is as cheap)."""
    return (stable.kind == "stable" and str(stable.path).endswith(".parquet")
            and stable.rows >= sum(p.rows for p in deltas))


def _after(handle: Handle) -> Handle:
    """The least handle greater than ``handle`` (an exclusive bound just above it)."""
    return handle + b"\x00" if isinstance(handle, bytes) else handle + 1


def _stable_versions(reader: PartsReader, stable: PartRef, root: str | Path, lo: Handle | None, hi: Handle | None,
                     handle_type: pa.DataType) -> pa.Table:
    """The stable part's versions visible at ts — (handle, commit ts), in the file's order
    (handle, then commit ts, ascending) — read from the row groups whose handles may lie in
    [lo, hi) (None: unbounded)."""
    path = Path(root) / stable.path
    f = integrity.open_parquet(path, stable)
    md = f.metadata
    rowid = md.schema.names.index(ROWID)
    groups = []
    for rg in range(md.num_row_groups):
        st = md.row_group(rg).column(rowid).statistics
        if st is not None and st.has_min_max and (lo is not None and st.max < lo or hi is not None and st.min >= hi):
            continue
        groups.append(rg)
    if not groups:
        return pa.table({ROWID: pa.array([], handle_type), COMMIT_TS: pa.array([], pa.uint64())})
    # the reader's own visibility rule: commit ts <= ts, in range, outside the part's tombstones
    try:
        read = f.read_row_groups(groups, columns=[ROWID, COMMIT_TS])
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise integrity.damaged(path, stable, exc) from exc
    t = reader.visible_rows(stable, conform_hidden(read))
    return t.select([ROWID, COMMIT_TS])


# The (handle, commit ts) columns of int-handle stable parts, kept per process: a part file
# never changes, and under live writes every plan computes a vector against the same few stable
# parts. 16 bytes a row.
HANDLE_INDEX_CACHE_BYTES = 256 << 20
_handle_columns: "BytesLRU[tuple[np.ndarray, np.ndarray, bool]]" = BytesLRU(HANDLE_INDEX_CACHE_BYTES)


def _handles_of(path: str, part: PartRef) -> tuple[np.ndarray, np.ndarray, bool]:
    """An int-handle part's handles and commit ts in file order, and whether the handles are
    strictly ascending (one version per handle). Read from the checked file (store.integrity)
    once; what is cached is the checked file's, whatever happens to the file later."""
    def load() -> tuple[tuple[np.ndarray, np.ndarray, bool], int]:
        f = integrity.open_parquet(path, part)
        try:
            t = conform_hidden(f.read(columns=[ROWID, COMMIT_TS]))
        except (OSError, pa.ArrowInvalid, KeyError) as exc:
            raise integrity.damaged(path, part, exc) from exc
        rowids = t.column(ROWID).to_numpy()
        commit_ts = t.column(COMMIT_TS).to_numpy()
        ascending = len(rowids) < 2 or bool(np.all(rowids[1:] > rowids[:-1]))
        return (rowids, commit_ts, ascending), 16 * len(rowids)

    return _handle_columns.get(path, load)


def handle_index(path: str, part: PartRef) -> tuple[np.ndarray, np.ndarray] | None:
    """A one-version int-handle part's handles (ascending) and their commit ts, or None when
    the file's handles are not strictly ascending (then the row-group read is used)."""
    rowids, commit_ts, ascending = _handles_of(path, part)
    return (rowids, commit_ts) if ascending else None


def _all_stable_versions(reader: PartsReader, stable: PartRef, root: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """An int-handle stable part's versions visible at ts in the reader's range, in file order
    (handles, commit ts), from its cached handle columns (what ``_stable_versions`` reads from
    the file). The file is in (handle, commit ts) order, so the range and each tombstone are
    one slice of it, found by binary search; only the commit ts is compared row by row."""
    rowids, commit_ts, _ascending = _handles_of(str(Path(root) / stable.path), stable)

    def at(handle: Handle | None, default: int) -> int:
        return default if handle is None else int(np.searchsorted(rowids, handle, "left"))

    start, end = at(reader.lo, 0), at(reader.hi, len(rowids))
    h, c = rowids[start:end], commit_ts[start:end]
    keep = None
    if stable.max_commit_ts is None or stable.max_commit_ts > reader.ts:
        keep = c <= np.uint64(reader.ts)
    for tlo, thi in stable.tombstones:
        if keep is None:
            keep = np.ones(len(h), dtype=bool)
        a, b = at(tlo, 0) - start, at(thi, len(rowids)) - start
        keep[max(0, a):max(0, b)] = False
    return (h, c) if keep is None or keep.all() else (h[keep], c[keep])


def _version_layout(path: str, part: PartRef) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A multi-version int-handle part's versions split once, in file order: those a newer
    version of the same handle in the part replaces (handles, commit ts), and each handle's
    newest (handles, commit ts). Kept beside the handle columns (a part file never changes)."""
    def load() -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], int]:
        rowids, commit_ts, _ascending = _handles_of(path, part)
        later = np.zeros(len(rowids), dtype=bool)
        later[:-1] = rowids[1:] == rowids[:-1]
        split = (rowids[later], commit_ts[later], rowids[~later], commit_ts[~later])
        return split, 16 * len(rowids)

    return _version_layouts.get(path, load)


_version_layouts: "BytesLRU[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]" = BytesLRU(HANDLE_INDEX_CACHE_BYTES)


def _version_layout_in(path: str, part: PartRef, lo: Handle | None,
                       hi: Handle | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``_version_layout`` cut to handles [lo, hi) by binary search: views, no copies (a
    handle's versions all lie on one side of a bound, so no run is cut)."""
    replaced_h, replaced_c, newest_h, newest_c = _version_layout(path, part)

    def cut(h: np.ndarray) -> slice:
        return slice(0 if lo is None else int(np.searchsorted(h, lo, "left")),
                     len(h) if hi is None else int(np.searchsorted(h, hi, "left")))

    r, n = cut(replaced_h), cut(newest_h)
    return replaced_h[r], replaced_c[r], newest_h[n], newest_c[n]


def _layout_at(replaced_h: np.ndarray, replaced_c: np.ndarray, newest_h: np.ndarray, newest_c: np.ndarray,
               ts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """A part's version layout (``_version_layout_in``) as a read at ``ts`` sees it, for a part
    holding versions newer than ts: the replaced versions visible at ts (handles, commit ts),
    each handle's newest commit ts visible at ts, and which handles have one. A handle's
    versions ascend, so those visible at ts are a prefix of its run: when its newest is newer
    than ts, its newest visible one is the last visible of its replaced versions. The work
    follows the replaced versions and the handles changed after ts; the range's handles are
    only compared with ts, not copied."""
    visible = replaced_c <= np.uint64(ts)
    late = np.flatnonzero(newest_c > np.uint64(ts))  # handles whose newest version is newer than ts
    present = None
    if len(late):
        lh = newest_h[late]
        start = np.searchsorted(replaced_h, lh, "left")
        stop = np.searchsorted(replaced_h, lh, "right")
        seen = np.concatenate([[0], np.cumsum(visible)])
        count = seen[stop] - seen[start]  # visible replaced versions of each late handle
        has = count > 0
        promoted = (start + count - 1)[has]  # each late handle's newest version visible at ts
        newest_c = newest_c.copy()
        newest_c[late[has]] = replaced_c[promoted]
        visible[promoted] = False  # the row at ts, not a replaced version
        present = np.ones(len(newest_h), dtype=bool)
        present[late[~has]] = False  # created after ts
    return replaced_h[visible], replaced_c[visible], newest_c, present


def _int_multi_version_vector(reader: PartsReader, stable: PartRef, root: str | Path,
                              touched: pa.Table | None) -> DeletionVector | None:
    """``deletion_vector`` of an int-handle stable part holding several versions of a handle
    (compaction keeps the versions newer than the safe point), in NumPy over the part's cached,
    sorted handle columns: the versions a newer visible version of the same handle in the part
    replaces, plus the newest visible version of each handle the deltas supersede. Each
    delta handle is found by binary search, so the vector costs the range's slice and the
    deltas' size, not a hash join over the range's rows."""
    present = None  # newest_h's handles with a version visible at ts (None: all of them)
    if not stable.tombstones and stable.max_commit_ts is not None:
        # the part's own layout, worked out once and sliced per range; at a ts after the
        # compaction that wrote the part (the usual read) it is the layout at ts
        replaced_h, replaced_c, newest_h, newest_c = _version_layout_in(
            str(Path(root) / stable.path), stable, reader.lo, reader.hi)
        if stable.max_commit_ts > reader.ts:
            replaced_h, replaced_c, newest_c, present = _layout_at(replaced_h, replaced_c, newest_h, newest_c,
                                                                   reader.ts)
    else:
        h, c = _all_stable_versions(reader, stable, root)
        later = np.zeros(len(h), dtype=bool)  # a version followed by one of its handle: replaced
        later[:-1] = h[1:] == h[:-1]
        replaced_h, replaced_c, newest_h, newest_c = h[later], c[later], h[~later], c[~later]
    drop = np.empty(0, dtype=np.int64)
    superseded = np.empty(0, dtype=np.int64)
    if touched is not None and touched.num_rows:
        newest = touched.group_by(ROWID).aggregate([(COMMIT_TS, "max")])
        nh = newest.column(ROWID).to_numpy()
        nc = newest.column(_NEWEST).to_numpy()
        pos = np.searchsorted(newest_h, nh)
        found = np.zeros(len(nh), dtype=bool)
        if len(newest_h):
            at = np.minimum(pos, len(newest_h) - 1)
            found = (pos < len(newest_h)) & (newest_h[at] == nh)
            if present is not None:
                found &= present[at]
        sup = ~found
        sup[found] = nc[found] > newest_c[pos[found]]
        superseded = np.sort(nh[sup])
        drop = pos[found & sup]
    dropped_h = np.concatenate([replaced_h, newest_h[drop]])
    if len(dropped_h) > MAX_VECTOR_SHARE * max(1, stable.rows):
        return None
    dropped_c = np.concatenate([replaced_c, newest_c[drop]])
    versions = pa.Table.from_arrays(
        [pa.array(dropped_h, pa.int64()), pa.array(dropped_c, pa.uint64())],
        schema=pa.schema([pa.field(ROWID, pa.int64(), nullable=False), pa.field(COMMIT_TS, pa.uint64(), nullable=False)]))
    return DeletionVector(versions, pa.array(superseded, pa.int64()))


def _stable_versions_of(reader: PartsReader, stable: PartRef, root: str | Path,
                        handles: pa.Array) -> pa.Table | None:
    """The one-version int-handle stable part's versions visible at ts of ``handles``, found in
    its cached handle index (a binary search per handle, no file read), or None without one."""
    index = handle_index(str(Path(root) / stable.path), stable)
    if index is None:
        return None
    rowids, commit_ts = index
    wanted = np.unique(handles.to_numpy(zero_copy_only=False))
    pos = np.searchsorted(rowids, wanted)
    inside = pos < len(rowids)
    pos, wanted = pos[inside], wanted[inside]
    pos = pos[rowids[pos] == wanted]
    found = pa.table({ROWID: pa.array(rowids[pos], pa.int64()), COMMIT_TS: pa.array(commit_ts[pos], pa.uint64())})
    return reader.visible_rows(stable, found)


def _clip(handle_range: HandleRange, lo: Handle | None, hi: Handle | None) -> HandleRange:
    """[lo, hi) narrowed to ``handle_range``."""
    rlo, rhi = handle_range
    return (lo if rlo is None else rlo if lo is None or handle_before(lo, rlo) else lo,
            hi if rhi is None else rhi if hi is None or handle_before(rhi, hi) else hi)


def deletion_vector(stable: PartRef, deltas: Sequence[PartRef], table: "TableInfo", ts: int,
                    handle_range: HandleRange, root: str | Path, cache_deltas: bool = False) -> DeletionVector | None:
    """The deletion vector of ``stable`` at ts in ``handle_range`` beside ``deltas``, or None
    when it would cover more than ``MAX_VECTOR_SHARE`` of the stable part (read it whole).
    ``cache_deltas``: keep the delta files open in this process (``store.parts``), for a driver
    that plans many reads of a table under live writes."""
    handle_type = pa.binary() if table.is_common_handle else pa.int64()
    reader = PartsReader(Path(root), table, ts, handle_range, [], None, (), 1 << 30,  # hidden columns only
                         cache_deltas=cache_deltas)
    tables = [t for t in (reader.visible_versions(p) for p in deltas) if t.num_rows]
    touched = (pa.concat_tables(tables) if len(tables) > 1 else tables[0]) if tables else None
    if stable.single_version and touched is None:
        return DeletionVector(pa.table({ROWID: pa.array([], handle_type), COMMIT_TS: pa.array([], pa.uint64())}),
                              pa.array([], handle_type))
    if stable.single_version and touched is not None:  # (touched is None returned above)
        # the deltas' handles, looked up; without a handle index only the row groups they can fall in
        stable_rows = None if table.is_common_handle else _stable_versions_of(
            reader, stable, root, touched.column(ROWID).combine_chunks())
        if stable_rows is None:
            bounds = pc.min_max(touched.column(ROWID))
            lo, hi = _clip(handle_range, bounds["min"].as_py(), _after(bounds["max"].as_py()))
            stable_rows = _stable_versions(reader, stable, root, lo, hi, handle_type)
    elif not table.is_common_handle:  # several versions a handle, int handles: by binary search
        return _int_multi_version_vector(reader, stable, root, touched)
    else:  # versions newer than the safe point: the stable part's own older versions go too
        stable_rows = _stable_versions(reader, stable, root, *handle_range, handle_type)
    return _vector_from_rows(stable, stable_rows, touched, handle_type, multi_version=not stable.single_version)


def _vector_from_rows(stable: PartRef, stable_rows: pa.Table, touched: pa.Table | None, handle_type: pa.DataType,
                      multi_version: bool) -> DeletionVector | None:
    """The vector from the stable part's visible versions in the range (``stable_rows``, in
    file order; of the deltas' handles only, for a one-version part) and the deltas' visible
    versions (``touched``)."""
    replaced = None
    if multi_version:
        # the file is in (handle, commit ts) order, and so are its visible rows: a version
        # followed by one of the same handle is not the newest visible one of its handle
        same = same_as_previous(stable_rows.column(ROWID))
        later = np.append(same[1:], False) if len(same) else same
        replaced = stable_rows.filter(pa.array(later))
        stable_rows = stable_rows.filter(pa.array(~later))
    if touched is not None:
        newest = touched.group_by(ROWID).aggregate([(COMMIT_TS, "max")])
        joined = newest.join(stable_rows.rename_columns([ROWID, _STABLE]), keys=ROWID, join_type="left outer")
        superseding = pc.or_kleene(pc.is_null(joined.column(_STABLE)),
                                   pc.greater(joined.column(_NEWEST), joined.column(_STABLE)))
        superseded = joined.filter(superseding).column(ROWID).combine_chunks()
        superseded = superseded.take(pc.sort_indices(superseded))
    else:
        superseded = pa.array([], handle_type)
    if replaced is not None and len(superseded):
        # every version of a superseded handle: the replaced ones are listed already
        dropped = pa.concat_tables([replaced, stable_rows.filter(pc.is_in(stable_rows.column(ROWID),
                                                                          value_set=superseded))])
    elif replaced is not None:
        dropped = replaced
    else:
        dropped = stable_rows.filter(pc.is_in(stable_rows.column(ROWID), value_set=superseded))
    if dropped.num_rows > MAX_VECTOR_SHARE * max(1, stable.rows):
        return None
    # one schema whichever way the versions were found (vectors of several pieces concatenate)
    dropped = dropped.select([ROWID, COMMIT_TS]).combine_chunks()
    versions = pa.Table.from_arrays(dropped.columns, schema=pa.schema(
        [pa.field(ROWID, handle_type, nullable=False), pa.field(COMMIT_TS, pa.uint64(), nullable=False)]))
    return DeletionVector(versions, superseded)


def superseding_rows(superseded: pa.Array, deltas: Sequence[PartRef], table: "TableInfo", ts: int,
                     handle_range: HandleRange, columns: Sequence[str] | None, predicate: "Expr | None",
                     hidden: Sequence[str], root: str | Path, batch_rows: int,
                     cache_deltas: bool = False, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
    """The newest visible delta version of each of the ``superseded`` handles (a vector's), none
    for a delete mark, filtered by ``predicate``; they count in ``stats`` as the fresh tail's."""
    if len(superseded) == 0:
        return
    reader = PartsReader(Path(root), table, ts, handle_range, columns, predicate, hidden, batch_rows,
                         cache_deltas=cache_deltas, stats=stats)
    tables = [tag_from_delta(t, p) for p, t in ((p, reader.visible_versions(p)) for p in deltas) if t.num_rows]
    versions = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    versions = versions.filter(pc.is_in(versions.column(ROWID), value_set=superseded))
    yield from reader.finish(newest_visible(versions))


__all__ = ["DeletionVector", "MAX_VECTOR_SHARE", "can_split", "deletion_vector", "handle_index",
           "stable_and_deltas", "superseding_rows"]
