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
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pyspark_theflash.store import integrity
from pyspark_theflash.store.errors import RowsInEngineError
from pyspark_theflash.store.lru import BytesLRU
from pyspark_theflash.schema.column_stats import ColumnStats
from pyspark_theflash.store.predicate import Expr, merge_stats
from pyspark_theflash.store.txn_merge_tree import (
    COMMIT_TS,
    DELMARK,
    HIDDEN_NAMES,
    ROWID,
    conform_hidden,
    is_ipc,
    same_as_previous,
    version_order,
)

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.store.deletion_vector import DeletionVector

from pyspark_theflash.store.keyspace import HandleRange
# A v2 row with no columns: decoding it gives every column its origin default.
EMPTY_ROW_V2 = b"\x80\x00\x00\x00\x00\x00"
DEFAULT_BATCH_ROWS = 64 * 1024
CLEAN_READ_ROW_GROUPS = 8


@dataclass(frozen=True)
class PartRef:
    """A live part as a read needs it; picklable, paths relative to the store root."""

    part_id: int
    table_id: int
    partition_id: int
    partition_lo: int | bytes | None
    partition_hi: int | bytes | None
    kind: str
    path: str
    rows: int
    bytes: int
    min_handle: int | bytes | None
    max_handle: int | bytes | None
    min_commit_ts: int | None
    max_commit_ts: int | None
    single_version: bool
    delete_marks: int
    schema_version: int
    columns: tuple[tuple[int, str], ...]      # (column id, name) at the part's schema version
    stats: tuple[tuple[int, ColumnStats], ...] = ()
    tombstones: tuple[HandleRange, ...] = ()  # handle ranges deleted after the part was written
    added_version: int = 0
    checksum: str | None = None               # of the file's bytes (store.integrity); None: not recorded

    @property
    def in_engine(self) -> bool:
        """A record of rows the store's engine keeps (no file to read; ``txn_merge_tree.IN_ENGINE``)."""
        return not self.path

    def stats_by_name(self, table: "TableInfo") -> dict[str, ColumnStats]:
        by_id = dict(self.stats)  # a VIRTUAL column's are of the NULLs stored for it: never prune by them
        return {c.name: by_id[c.id] for c in table.columns if c.id in by_id and not c.is_virtual_generated}

    def overlaps(self, lo: int | bytes | None, hi: int | bytes | None) -> bool:
        if self.min_handle is None or self.max_handle is None:
            return False
        return (lo is None or self.max_handle >= lo) and (hi is None or self.min_handle < hi)


@dataclass
class ReadStats:
    """What a read did besides its rows, added up over everything it read (a stream, a scan):

    * ``deletion_vector_rows``: the stable-part versions its deletion vectors dropped — each a
      version a newer one in a delta (or, in a multi-version stable part, a newer one beside it)
      supersedes at ts (``store.deletion_vector``), whether or not a filter would have kept it;
    * ``fresh_tail_rows``: the rows it returned from delta parts, the fresh tail the writer
      flushed since the partition's last compaction (the whole partition before its first).

    The service sends them at the end of a stream and the JVM connector shows them as the scan
    node's Spark metrics (docs/reading.md). A row a filter on a VIRTUAL column removes after the
    read still counts."""

    deletion_vector_rows: int = 0
    fresh_tail_rows: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"deletion_vector_rows": self.deletion_vector_rows, "fresh_tail_rows": self.fresh_tail_rows}


# The column a merge adds to its versions to say which came from delta parts (dropped before output).
FROM_DELTA = "_theflash_from_delta"


def tag_from_delta(t: pa.Table, part: PartRef) -> pa.Table:
    """``t`` (rows of ``part``) with ``FROM_DELTA`` saying whether ``part`` is a delta."""
    return t.append_column(FROM_DELTA, pa.array(np.full(t.num_rows, part.kind == "delta"), pa.bool_()))


def output_schema(table: "TableInfo", columns: Sequence[str] | None, hidden: Sequence[str]) -> pa.Schema:
    from pyspark_theflash.schema import arrow_schema

    return arrow_schema(table, list(columns) if columns is not None else None, tuple(hidden))


def origin_defaults(table: "TableInfo", names: Sequence[str]) -> pa.RecordBatch:
    """One row holding each named column's origin default (the value a row written before
    the column existed has), decoded by the codec exactly as an absent column would be."""
    from pyspark_theflash.codec.batch import decode_rows_to_arrow

    return decode_rows_to_arrow([EMPTY_ROW_V2], np.zeros(1, dtype=np.int64), table, list(names))


def _cast_column(a: Any, target: pa.DataType) -> Any:
    """A part's column as the reading schema version types it. A part written after an in-place
    widening (INT -> BIGINT) holds values the older, narrower version cannot: read with that
    version (``schema=as_of`` at a ts before the widening) it is cast without overflow checks,
    because every row visible at such a ts was written while the column was that narrow — the
    values that do not fit belong to rows the visibility filter then drops."""
    try:
        return a.cast(target)
    except pa.ArrowInvalid:
        return a.cast(target, safe=False)


def _range_mask(handles: pa.Array | pa.ChunkedArray, lo: Any, hi: Any) -> Any:
    m = None
    if lo is not None:
        m = pc.greater_equal(handles, pa.scalar(lo, handles.type))
    if hi is not None:
        h = pc.less(handles, pa.scalar(hi, handles.type))
        m = h if m is None else pc.and_(m, h)
    return m


def _in_range(t: pa.Table, lo: Any, hi: Any) -> tuple[pa.Table, Any]:
    """The rows of ``t`` (sorted by handle, as every part is) with handles in [lo, hi): for
    integer handles a zero-copy slice found by binary search, so the rows of a part shared by
    several regions are not copied per region, and no mask (None); for binary handles the whole
    table and the mask to filter it by."""
    if lo is None and hi is None:
        return t, None
    handles = t.column(ROWID)
    if not pa.types.is_integer(handles.type) or handles.null_count:
        return t, _range_mask(handles, lo, hi)
    values = handles.to_numpy()
    start = 0 if lo is None else int(np.searchsorted(values, lo, side="left"))
    stop = len(values) if hi is None else int(np.searchsorted(values, hi, side="left"))
    if start == 0 and stop == len(values):
        return t, None
    return t.slice(start, max(0, stop - start)), None


def _not_versions(t: pa.Table, handles: pa.Array, versions: pa.Table) -> Any:
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


def _not_versions_sorted(h: np.ndarray, ts: np.ndarray, versions: pa.Table) -> Any:
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


def _filtered(t: pa.Table, mask: Any) -> pa.Table:
    """``t`` filtered by ``mask`` (None: every row), not copied when the mask keeps every row."""
    if mask is None:
        return t
    kept = pc.sum(mask).as_py() or 0
    if kept == t.num_rows and mask.null_count == 0:
        return t
    return t.filter(mask)


def _outside_tombstones(handles: pa.ChunkedArray | pa.Array, tombstones: Sequence[HandleRange]) -> Any:
    keep = None
    for lo, hi in tombstones:
        inside = _range_mask(handles, lo, hi)
        if inside is None:
            return pa.array(np.zeros(len(handles), dtype=bool))
        out = pc.invert(inside)
        keep = out if keep is None else pc.and_(keep, out)
    return keep


# Delta files opened (memory-mapped) by readers that ask for it, kept per process: merge-on-read
# plans under live writes open the same few dozen small deltas for every query. A cached map
# keeps a deleted file's pages until it is dropped, so only the driver-side planning of native
# reads asks for it (never the writer).
DELTA_CACHE_BYTES = 128 << 20
_open_deltas: "BytesLRU[pa.Table]" = BytesLRU(DELTA_CACHE_BYTES)


def _cached_ipc(path: Path, part: PartRef) -> pa.Table:
    """The delta's rows, from this process's cache while its file is unchanged: the cache is keyed
    by the file's change stamps too, so a file written to after it was mapped (whose map would
    show the new bytes) is checked and mapped again."""
    def load() -> tuple[pa.Table, int]:
        t = integrity.read_ipc(path, part)
        return t, part.bytes

    return _open_deltas.get((str(path), integrity.file_stamp(path, part), part.checksum), load)


class PartsReader:
    def __init__(self, root: Path, table: "TableInfo", ts: int, handle_range: HandleRange,
                 columns: Sequence[str] | None, predicate: Expr | None, hidden: Sequence[str],
                 batch_rows: int, cache_deltas: bool = False, stats: ReadStats | None = None) -> None:
        self.root = root
        self.stats = stats
        self.cache_deltas = cache_deltas
        self.table = table
        self.ts = ts
        self.lo, self.hi = handle_range
        self.predicate = predicate
        self.columns = None if columns is None else tuple(columns)
        self.hidden = tuple(hidden)
        self.schema = output_schema(table, columns, hidden)
        user_out = [f.name for f in self.schema if f.name not in HIDDEN_NAMES]
        pred_cols = sorted(predicate.columns()) if predicate is not None else []
        unknown = [c for c in pred_cols if c not in {c2.name for c2 in table.columns} and c not in HIDDEN_NAMES]
        if unknown:
            from pyspark_theflash.store.errors import PredicateError

            raise PredicateError(f"filter names column(s) {unknown} that table {table.db}.{table.name} "
                                 f"(id {table.id}) does not have")
        self.user_needed = list(dict.fromkeys(user_out + [c for c in pred_cols if c not in HIDDEN_NAMES]))
        self.by_name = {c.name: c for c in table.columns}
        self.batch_rows = batch_rows
        self._defaults: pa.RecordBatch | None = None

    # --- loading one part ---------------------------------------------------------------------
    def _defaults_for(self, name: str) -> pa.Array:
        if self._defaults is None:
            missing = self.user_needed
            self._defaults = origin_defaults(self.table, missing)
        return self._defaults.column(self._defaults.schema.get_field_index(name))

    def _file_columns(self, part: PartRef) -> tuple[list[str], dict[str, str]]:
        """Columns to read from the part's file, and target name -> file name."""
        names_by_id = dict(part.columns)
        mapping: dict[str, str] = {}
        for name in self.user_needed:
            cid = self.by_name[name].id
            if cid in names_by_id:
                mapping[name] = names_by_id[cid]
        return list(mapping.values()) + list(HIDDEN_NAMES), mapping

    def _conform(self, part: PartRef, t: pa.Table, mapping: Mapping[str, str]) -> pa.Table:
        """A part's rows with the target schema's needed columns: renamed by column id,
        cast where the type changed, origin defaults for columns added after the part."""
        arrays: list[Any] = []
        fields: list[pa.Field] = []
        targets = {f.name: f for f in output_schema(self.table, self.user_needed, ())}
        for name in self.user_needed:
            target_type = targets[name].type
            if name in mapping:
                a = t.column(mapping[name])
                if a.type != target_type:
                    a = _cast_column(a, target_type)
            else:
                d = self._defaults_for(name)
                a = d.take(pa.array(np.zeros(t.num_rows, dtype=np.int64)))
                if a.type != target_type:
                    a = a.cast(target_type)
            arrays.append(a)
            fields.append(pa.field(name, target_type, nullable=True))
        t = conform_hidden(t)
        for h in HIDDEN_NAMES:
            arrays.append(t.column(h))
            fields.append(t.schema.field(h))
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def _visible_filter(self, part: PartRef, t: pa.Table, single_version: bool) -> pa.Table:
        t, m = self._visible_mask(part, t, single_version)
        return _filtered(t, m)

    def _visible_mask(self, part: PartRef, t: pa.Table, single_version: bool,
                      also: Callable[[pa.Table], Sequence[Any]] | None = None) -> tuple[pa.Table, Any]:
        """``t`` cut to the reader's range (a zero-copy slice where it can be) and the mask of
        its rows visible at ts — with delete marks dropped for a one-version part — and-ed
        with the masks ``also`` gives for the cut table; None when every row is. One mask so
        the caller copies the table once, whatever decides which rows go."""
        t, rm = _in_range(t, self.lo, self.hi)
        masks = [] if rm is None else [rm]
        if part.max_commit_ts is None or part.max_commit_ts > self.ts:
            masks.append(pc.less_equal(t.column(COMMIT_TS), pa.scalar(self.ts, pa.uint64())))
        tm = _outside_tombstones(t.column(ROWID), part.tombstones)
        if tm is not None:
            masks.append(tm)
        if single_version and part.delete_marks:
            masks.append(pc.invert(t.column(DELMARK)))
        if also is not None:
            masks.extend(x for x in also(t) if x is not None)
        if not masks:
            return t, None
        m = masks[0]
        for x in masks[1:]:
            m = pc.and_(m, x)
        return t, m

    def _open(self, part: PartRef) -> pq.ParquetFile:
        """The Parquet part, checked against its recorded size and checksum (store.integrity)."""
        return integrity.open_parquet(self.root / part.path, part)

    def _read_ipc(self, part: PartRef, columns: Sequence[str]) -> pa.Table:
        path = self.root / part.path
        try:
            # Memory-mapped: the table's buffers are the file's pages (nothing is copied).
            if self.cache_deltas:
                return _cached_ipc(path, part).select(list(columns))
            return integrity.read_ipc(path, part).select(list(columns))
        except KeyError as exc:
            raise integrity.damaged(path, part, exc) from exc

    def _read(self, part: PartRef) -> pa.Table:
        cols, mapping = self._file_columns(part)
        if is_ipc(part.path):
            t = self._read_ipc(part, cols)
        else:
            f = self._open(part)
            try:
                t = f.read(columns=cols)
            except (OSError, pa.ArrowInvalid, KeyError) as exc:
                raise integrity.damaged(self.root / part.path, part, exc) from exc
        return self._conform(part, t, mapping)

    def all_versions(self, part: PartRef) -> pa.Table:
        """Every row of ``part`` in the reader's columns (renamed and cast to the reader's
        schema version), whatever its commit ts or handle: what compaction merges."""
        return self._read(part)

    def visible_rows(self, part: PartRef, t: pa.Table) -> pa.Table:
        """The rows of ``t`` (read from ``part``) visible at ts in the reader's range, every
        version kept (MVCC has not chosen yet)."""
        return self._visible_filter(part, t, single_version=False)

    def visible_versions(self, part: PartRef) -> pa.Table:
        """Every version of ``part`` visible at ts in the reader's range (delete marks and
        older versions included: MVCC has not chosen yet), in the reader's columns."""
        return self._visible_filter(part, self._read(part), single_version=False)

    def finish(self, chosen: pa.Table) -> Iterator[pa.RecordBatch]:
        """Chosen versions (one per handle, no delete marks) filtered by the predicate and
        shaped to the output schema, as batches; rows tagged ``FROM_DELTA`` count in the
        reader's ``stats`` as the fresh tail's."""
        return self._finish(chosen)

    # --- output -------------------------------------------------------------------------------
    def _finish_input(self, t: pa.Table) -> pa.Table:
        """The columns of ``t`` that ``_finish`` reads (the output's and the filter's), so that
        filtering chosen rows copies no hidden column the output does not show: the copy is
        most of a stream's cost under live writes, and the hidden columns a fifth of a narrow
        read's bytes."""
        wanted = {f.name for f in self.schema}
        if self.predicate is not None:
            wanted |= self.predicate.columns()
        if len(wanted) == t.num_columns:
            return t
        return t.select([name for name in t.column_names if name in wanted])

    def _finish(self, t: pa.Table, from_delta: bool = False) -> Iterator[pa.RecordBatch]:
        """``from_delta``: every row of ``t`` comes from a delta part; else a ``FROM_DELTA``
        column, where ``t`` has one, says which do (either counts in ``stats``)."""
        if self.predicate is not None and t.num_rows:
            t = t.filter(self.predicate.to_arrow(t.schema))
        if t.num_rows == 0:
            return
        if self.stats is not None:
            if from_delta:
                self.stats.fresh_tail_rows += t.num_rows
            elif FROM_DELTA in t.column_names:
                self.stats.fresh_tail_rows += pc.sum(t.column(FROM_DELTA)).as_py() or 0
        if len(self.schema) == 0:
            out = t.select([])  # keeps the row count with no columns (a count(*) asks for none)
        else:
            arrays = []
            for f in self.schema:
                a = t.column(f.name)
                arrays.append(a if a.type == f.type else a.cast(f.type))
            out = pa.Table.from_arrays(arrays, schema=self.schema)
        for b in out.to_batches(max_chunksize=self.batch_rows):
            if b.num_rows:
                yield b

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

    def read_stable_half(self, part: PartRef, vector: "DeletionVector") -> Iterator[pa.RecordBatch]:
        """The stable half of a split partition read (``store.deletion_vector``): the Parquet
        part's rows visible at ts, minus the vector's versions, minus delete marks, streamed a
        few row groups at a time and pruned by the filter as a clean part is. The other half,
        the deltas' newest versions of the superseded handles, is ``superseding_rows``."""
        dropped = vector.versions
        handles = pc.unique(dropped.column(ROWID).combine_chunks()) if dropped.num_rows else None

        def dropped_or_deleted(t: pa.Table) -> tuple[Any, Any]:
            return (_not_versions(t, handles, dropped) if handles is not None else None,
                    pc.invert(t.column(DELMARK)) if part.delete_marks else None)

        for t in self._row_group_tables(part):
            t, m = self._visible_mask(part, t, single_version=False, also=dropped_or_deleted)
            yield from self._finish(_filtered(self._finish_input(t), m), from_delta=part.kind == "delta")

    def _row_group_tables(self, part: PartRef) -> Iterator[pa.Table]:
        """The Parquet part's row groups in the reader's range that the filter may match,
        conformed, a few at a time: one call decodes them in parallel, and memory stays bounded
        by CLEAN_READ_ROW_GROUPS row groups."""
        f = self._open(part)
        cols, mapping = self._file_columns(part)
        md = f.metadata
        names_by_id = dict(part.columns)
        file_index = {md.schema.column(i).name: i for i in range(md.num_columns)}
        wanted = []
        for rg in range(md.num_row_groups):
            rgm = md.row_group(rg)
            if rgm.num_rows == 0 or not self._row_group_in_range(rgm, file_index):
                continue
            if self.predicate is not None and not self.predicate.might_match(
                    self._row_group_stats(rgm, names_by_id, file_index)):
                continue
            wanted.append(rg)
        for i in range(0, len(wanted), CLEAN_READ_ROW_GROUPS):
            try:
                t = f.read_row_groups(wanted[i:i + CLEAN_READ_ROW_GROUPS], columns=cols)
            except (OSError, pa.ArrowInvalid, KeyError) as exc:
                raise integrity.damaged(self.root / part.path, part, exc) from exc
            yield self._conform(part, t, mapping)

    def _emit_clean(self, part: PartRef, t: pa.Table, overlay: "_Overlay | None") -> Iterator[pa.RecordBatch]:
        from_delta = part.kind == "delta"
        if overlay is None:
            t, m = self._visible_mask(part, t, single_version=True)
            yield from self._finish(_filtered(self._finish_input(t), m), from_delta=from_delta)
            return
        t, visible = self._visible_mask(part, t, single_version=False)
        contested = pc.is_in(t.column(ROWID), value_set=overlay.handles)
        overlay.contested.append(tag_from_delta(t.filter(contested if visible is None else pc.and_(visible, contested)),
                                         part))
        alone = pc.invert(contested)
        if part.delete_marks:
            alone = pc.and_(alone, pc.invert(t.column(DELMARK)))
        yield from self._finish(_filtered(t, alone if visible is None else pc.and_(visible, alone)),
                                from_delta=from_delta)

    def _row_group_stats(self, rgm: Any, names_by_id: Mapping[int, str],
                         file_index: Mapping[str, int]) -> dict[str, ColumnStats]:
        out: dict[str, ColumnStats] = {}
        for name in (self.predicate.columns() if self.predicate is not None else ()):
            c = self.by_name.get(name)
            if c is None or c.id not in names_by_id or names_by_id[c.id] not in file_index:
                continue
            st = rgm.column(file_index[names_by_id[c.id]]).statistics
            if st is None:
                continue
            lo = hi = None
            if st.has_min_max:
                lo, hi = st.min, st.max
            nulls = st.null_count if st.has_null_count else None
            out[name] = ColumnStats(lo, hi, nulls, rgm.num_rows)
        return out

    def _row_group_in_range(self, rgm: Any, file_index: Mapping[str, int]) -> bool:
        if self.lo is None and self.hi is None:
            return True
        st = rgm.column(file_index[ROWID]).statistics
        if st is None or not st.has_min_max:
            return True
        return (self.lo is None or st.max >= self.lo) and (self.hi is None or st.min < self.hi)

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
        from pyspark_theflash.store.deletion_vector import (can_split, deletion_vector, stable_and_deltas,
                                                             superseding_rows)

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


def newest_visible(t: pa.Table) -> pa.Table:
    """Of versions (all with commit_ts <= ts), the newest per handle, minus delete marks."""
    if t.num_rows == 0:
        return t
    order = version_order(t, newest_first=True)
    first = ~same_as_previous(t.column(ROWID).take(pa.array(order)))
    chosen = order[first]
    t = t.take(pa.array(chosen))
    return t.filter(pc.invert(t.column(DELMARK)))


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
    from pyspark_theflash.store.virtual_columns import read_computing_virtual

    return read_computing_virtual(table_info, columns, predicate, hidden, lambda cols, pred: _read_parts(
        parts, table_info, ts, handle_range, cols, pred, hidden, root, batch_rows, stats))


def _read_parts(parts: Sequence[PartRef], table_info: "TableInfo", ts: int, handle_range: HandleRange | None,
                columns: Sequence[str] | None, predicate: Expr | None, hidden: Sequence[str], root: str | Path,
                batch_rows: int, stats: ReadStats | None = None) -> Iterator[pa.RecordBatch]:
    lo, hi = handle_range if handle_range is not None else (None, None)
    if any(p.in_engine for p in parts):
        raise RowsInEngineError(str(root), table_info.qualified_name)
    reader = PartsReader(Path(root), table_info, ts, (lo, hi), columns, predicate, hidden, batch_rows, stats=stats)
    groups: dict[int, list[PartRef]] = {}
    for p in parts:
        if p.rows == 0 or p.min_commit_ts is None or p.min_commit_ts > ts or not p.overlaps(lo, hi):
            continue
        groups.setdefault(p.partition_id, []).append(p)
    ordered = sorted(groups.values(), key=lambda ps: (ps[0].partition_lo is not None,
                                                       ps[0].partition_lo or 0))
    for group in ordered:
        yield from reader.read_partition(group)


__all__ = ["PartRef", "ReadStats", "newest_visible", "origin_defaults", "output_schema", "read_parts"]
