"""Parts as a read needs them: the reference to a live part (``PartRef``), what a read did
besides its rows (``ReadStats``), and ``PartsReader``, which loads a part's rows in a reader's
schema version (renamed by column id, cast, origin defaults for columns added later), keeps
those visible at ts in its handle range, and shapes chosen rows to the output schema.

Everything that reads part files builds on it: snapshot reads (``store.read``, which chooses
each handle's version partition by partition), deletion vectors (``store.deletion_vector``),
compaction, change reads and the ClickHouse engine's copy. It knows nothing of how a
partition's parts are combined.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pyspark_theflash.schema.column_stats import ColumnStats
from pyspark_theflash.store import integrity
from pyspark_theflash.store.keyspace import Handle, HandleRange
from pyspark_theflash.store.part_ref import PartRef
from pyspark_theflash.store.lru import BytesLRU
from pyspark_theflash.store.options import DEFAULT_BATCH_ROWS
from pyspark_theflash.store.predicate import Expr
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

# A v2 row with no columns: decoding it gives every column its origin default.
EMPTY_ROW_V2 = b"\x80\x00\x00\x00\x00\x00"
CLEAN_READ_ROW_GROUPS = 8


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
    from pyspark_theflash.schema.row_columns import row_columns

    return decode_rows_to_arrow([EMPTY_ROW_V2], np.zeros(1, dtype=np.int64), row_columns(table, list(names)))


def _cast_column(a: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """A part's column as the reading schema version types it. A part written after an in-place
    widening (INT -> BIGINT) holds values the older, narrower version cannot: read with that
    version (``schema=as_of`` at a ts before the widening) it is cast without overflow checks,
    because every row visible at such a ts was written while the column was that narrow — the
    values that do not fit belong to rows the visibility filter then drops."""
    try:
        return a.cast(target)
    except pa.ArrowInvalid:
        return a.cast(target, safe=False)


def _range_mask(handles: pa.Array | pa.ChunkedArray, lo: Handle | None,
                hi: Handle | None) -> pa.Array | pa.ChunkedArray | None:
    m = None
    if lo is not None:
        m = pc.greater_equal(handles, pa.scalar(lo, handles.type))
    if hi is not None:
        h = pc.less(handles, pa.scalar(hi, handles.type))
        m = h if m is None else pc.and_(m, h)
    return m


def _in_range(t: pa.Table, lo: Handle | None,
              hi: Handle | None) -> tuple[pa.Table, pa.Array | pa.ChunkedArray | None]:
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



def filtered(t: pa.Table, mask: pa.Array | pa.ChunkedArray | None) -> pa.Table:
    """``t`` filtered by ``mask`` (None: every row), not copied when the mask keeps every row."""
    if mask is None:
        return t
    kept = pc.sum(mask).as_py() or 0
    if kept == t.num_rows and mask.null_count == 0:
        return t
    return t.filter(mask)


def _outside_tombstones(handles: pa.ChunkedArray | pa.Array,
                        tombstones: Sequence[HandleRange]) -> pa.Array | pa.ChunkedArray | None:
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
        arrays: list[pa.ChunkedArray | pa.Array] = []
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
        return filtered(t, m)

    def _visible_mask(self, part: PartRef, t: pa.Table, single_version: bool,
                      also: Callable[[pa.Table], Sequence[pa.Array | pa.ChunkedArray | None]] | None = None
                      ) -> tuple[pa.Table, pa.Array | pa.ChunkedArray | None]:
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

    def _row_group_stats(self, rgm: pq.RowGroupMetaData, names_by_id: Mapping[int, str],
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

    def _row_group_in_range(self, rgm: pq.RowGroupMetaData, file_index: Mapping[str, int]) -> bool:
        if self.lo is None and self.hi is None:
            return True
        st = rgm.column(file_index[ROWID]).statistics
        if st is None or not st.has_min_max:
            return True
        return (self.lo is None or st.max >= self.lo) and (self.hi is None or st.min < self.hi)


def newest_visible(t: pa.Table) -> pa.Table:
    """Of versions (all with commit_ts <= ts), the newest per handle, minus delete marks."""
    if t.num_rows == 0:
        return t
    order = version_order(t, newest_first=True)
    first = ~same_as_previous(t.column(ROWID).take(pa.array(order)))
    chosen = order[first]
    t = t.take(pa.array(chosen))
    return t.filter(pc.invert(t.column(DELMARK)))



__all__ = ["CLEAN_READ_ROW_GROUPS", "DEFAULT_BATCH_ROWS", "DELTA_CACHE_BYTES", "FROM_DELTA", "PartRef", "PartsReader",
           "ReadStats", "filtered", "newest_visible", "origin_defaults", "output_schema", "tag_from_delta"]
