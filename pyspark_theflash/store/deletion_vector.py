"""Merge-on-read of one partition as two disjoint halves: the stable part minus a deletion
vector, and the newest delta versions of the handles in that vector.

A TxnMergeTree partition under live writes is one big stable part (one version per handle,
Parquet, written by the last compaction) and a few small delta parts flushed since. Read at
ts, the partition's rows split by handle:

* a handle no delta touches at ts (or whose delta versions are not newer than the stable
  part's) reads as the stable part's row — a reader can take those rows straight from the
  Parquet file, with its own column pruning and filter pushdown;
* a handle in the **deletion vector** — some delta holds a version visible at ts that is newer
  than the stable part's visible version, or the stable part has no visible version of it —
  reads as its newest visible delta version (or not at all, when that is a delete mark).

So the deletion vector is the set of handles whose stable row a read must drop, and the other
half is the deltas' chosen versions of exactly those handles: the two never overlap and
together are the partition's MVCC snapshot. Computing the vector reads the deltas (small) and
two integer columns of the stable part's row groups that the deltas' handles can fall in; the
cost follows the deltas, not stable × deltas. Delta Lake's deletion vectors, Paimon's
merge-on-read and TiFlash's DeltaTree split a read the same way.

Both halves compute the vector from the same pinned parts with :func:`deletion_vector`, so
they agree on it exactly (``scan.native`` hands Spark the stable half; the Python source reads
the other with :func:`read_superseding`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pyspark_theflash.store.keyspace import HandleRange
from pyspark_theflash.store.read import PartRef, PartsReader, newest_visible
from pyspark_theflash.store.txn_merge_tree import COMMIT_TS, ROWID

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.store.predicate import Expr

_NEWEST = COMMIT_TS + "_max"
_STABLE = COMMIT_TS + "_stable"


def can_split(stable: PartRef, deltas: Sequence[PartRef]) -> bool:
    """Whether ``stable`` can be read as the stable half beside ``deltas``: a one-version
    Parquet part, bigger than the deltas together (else a plain MVCC read is as cheap)."""
    return (stable.single_version and str(stable.path).endswith(".parquet") and bool(deltas)
            and stable.rows >= sum(p.rows for p in deltas))


def _hidden_reader(root: str | Path, table: "TableInfo", ts: int, handle_range: HandleRange) -> PartsReader:
    """A reader of the hidden columns only (handle, commit ts, delete mark)."""
    return PartsReader(Path(root), table, ts, handle_range, [], None, (), 1 << 30)


def _stable_versions(reader: PartsReader, stable: PartRef, root: str | Path, lo: object, hi: object) -> pa.Table:
    """The stable part's visible (handle, commit ts) in the row groups whose handles may lie
    in [lo, hi] (both inclusive: the deltas' smallest and largest handle)."""
    f = pq.ParquetFile(str(Path(root) / stable.path))
    md = f.metadata
    rowid = md.schema.names.index(ROWID)
    groups = []
    for rg in range(md.num_row_groups):
        st = md.row_group(rg).column(rowid).statistics
        if st is not None and st.has_min_max and (st.max < lo or st.min > hi):
            continue
        groups.append(rg)
    t = f.read_row_groups(groups, columns=[ROWID, COMMIT_TS]) if groups else None
    if t is None or t.num_rows == 0:
        return pa.table({ROWID: pa.array([], md.schema.to_arrow_schema().field(ROWID).type),
                         _STABLE: pa.array([], pa.uint64())})
    # the reader's own visibility rule: commit ts <= ts, in range, outside the part's tombstones
    visible = reader.visible_rows(stable, t)
    return visible.select([ROWID, COMMIT_TS]).rename_columns([ROWID, _STABLE])


def deletion_vector(stable: PartRef, deltas: Sequence[PartRef], table: "TableInfo", ts: int,
                    handle_range: HandleRange, root: str | Path) -> pa.Array:
    """The handles in ``handle_range`` whose row at ts is not the stable part's: those with a
    visible delta version newer than the stable part's visible version of them (or with no
    visible stable version). Sorted, distinct, of the handle's Arrow type."""
    reader = _hidden_reader(root, table, ts, handle_range)
    tables = [t for t in (reader.visible_versions(p) for p in deltas) if t.num_rows]
    if not tables:
        return pa.array([], pa.binary() if table.is_common_handle else pa.int64())
    touched = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    newest = touched.group_by(ROWID).aggregate([(COMMIT_TS, "max")])
    bounds = pc.min_max(newest.column(ROWID))
    stable_rows = _stable_versions(reader, stable, root, bounds["min"].as_py(), bounds["max"].as_py())
    joined = newest.join(stable_rows, keys=ROWID, join_type="left outer")
    superseding = pc.or_kleene(pc.is_null(joined.column(_STABLE)),
                               pc.greater(joined.column(_NEWEST), joined.column(_STABLE)))
    handles = joined.filter(superseding).column(ROWID).combine_chunks()
    return handles.take(pc.sort_indices(handles))


def read_superseding(stable: PartRef, deltas: Sequence[PartRef], table: "TableInfo", ts: int,
                     handle_range: HandleRange, columns: Sequence[str] | None, predicate: "Expr | None",
                     hidden: Sequence[str], root: str | Path, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The other half of the partition's read at ts: for each handle of the deletion vector,
    its newest visible delta version (none for a delete mark), filtered by ``predicate``."""
    vector = deletion_vector(stable, deltas, table, ts, handle_range, root)
    if len(vector) == 0:
        return
    reader = PartsReader(Path(root), table, ts, handle_range, columns, predicate, hidden, batch_rows)
    tables = [t for t in (reader.visible_versions(p) for p in deltas) if t.num_rows]
    versions = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    versions = versions.filter(pc.is_in(versions.column(ROWID), value_set=vector))
    yield from reader.finish(newest_visible(versions))


__all__ = ["can_split", "deletion_vector", "read_superseding"]
