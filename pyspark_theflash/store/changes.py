"""Change reads: every committed version of a table's rows with from_ts < commit_ts <= to_ts.

The store keeps every version newer than the GC safe point, plus the newest one at or below
it (``store.compaction``), so for a range whose from_ts is at or above the safe point it holds
each changed handle's whole story in (from_ts, to_ts] and the version each handle had at
from_ts. A change read is therefore a read of versions, not a log: it works the same over
stable Parquet parts, Arrow IPC deltas and whatever compaction has merged, because all of
them hold versions keyed by (handle, commit_ts).

Per partition (partitions are disjoint handle ranges, so a handle's versions never span two):
take every version with commit_ts <= to_ts in range, order by (handle, commit_ts), and look
at each version in range beside the one before it of the same handle:

============================  ================================================
version in range              emitted
============================  ================================================
a row, no live row before     ``insert`` (its values)
a row, a live row before      ``update_preimage`` (the row before) and
                              ``update_postimage`` (its values)
a delete mark, a live row     ``delete`` (the values the row had)
a delete mark, nothing before nothing (a delete of a row that did not exist)
============================  ================================================

With ``net``, the versions in range of each handle fold to one change from the row it had at
from_ts to the one it has at to_ts (an insert then delete inside the range is nothing).

A handle is the row's identity: when TiDB updates a clustered primary key (or the integer
primary key that is the handle) it deletes the old key and inserts the new one, and so the
change read shows a ``delete`` and an ``insert``, as TiDB's own change feed does.

Each version's values are those the writer decoded with the schema in force at its commit,
shown in the columns of the read's schema (the table at to_ts): columns matched by id, types
widened in place cast, a column added after the version's commit at its origin default (what
TiDB reads for that row after the ADD COLUMN), dropped columns gone. All vectorised.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import pyarrow as pa

from pyspark_theflash.store.errors import RowsInEngineError
from pyspark_theflash.store.keyspace import HandleRange
from pyspark_theflash.store.part_ref import PartRef
from pyspark_theflash.store.parts import DEFAULT_BATCH_ROWS, PartsReader
from pyspark_theflash.store.txn_merge_tree import (COMMIT_TS, DELMARK, ROWID, drop_repeated_versions,
                                                    same_as_previous, version_order)

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo

CHANGE_TYPE = "_change_type"
CHANGE_COMMIT_TS = "_commit_ts"
CHANGE_COMMIT_TIMESTAMP = "_commit_timestamp"
CHANGE_COLUMNS = (CHANGE_TYPE, CHANGE_COMMIT_TS, CHANGE_COMMIT_TIMESTAMP, ROWID)

INSERT = "insert"
UPDATE_PREIMAGE = "update_preimage"
UPDATE_POSTIMAGE = "update_postimage"
DELETE = "delete"
CHANGE_TYPES = (INSERT, UPDATE_PREIMAGE, UPDATE_POSTIMAGE, DELETE)
# Within one commit of one handle a preimage comes before its postimage.
_TYPE_ORDER = {DELETE: 0, UPDATE_PREIMAGE: 1, UPDATE_POSTIMAGE: 2, INSERT: 3}
_TSO_LOGICAL_BITS = 18


def change_schema(table: "TableInfo", columns: Sequence[str] | None = None) -> pa.Schema:
    """The schema of a change read of ``table`` (its schema at to_ts): the table's columns (all,
    or those named), then ``_change_type``, ``_commit_ts`` (the commit TSO, int64 as Spark
    reads it), ``_commit_timestamp`` (its physical time, UTC) and the handle ``_tidb_rowid``
    (binary for a clustered primary key)."""
    from pyspark_theflash.schema import arrow_schema
    from pyspark_theflash.schema.arrow import hidden_field

    base = arrow_schema(table, list(columns) if columns is not None else None, ())
    return pa.schema([*base,
                      pa.field(CHANGE_TYPE, pa.string(), nullable=False),
                      pa.field(CHANGE_COMMIT_TS, pa.int64(), nullable=False),
                      pa.field(CHANGE_COMMIT_TIMESTAMP, pa.timestamp("us", tz="UTC"), nullable=False),
                      hidden_field(ROWID, table, toward_spark=True)])


def commit_timestamps(commit_ts: np.ndarray) -> pa.Array:
    """TSO commit timestamps as their physical time (ms << 18 | logical)."""
    ms = (commit_ts.astype(np.uint64) >> np.uint64(_TSO_LOGICAL_BITS)).astype(np.int64)
    return pa.array(ms * 1000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _versions(reader: PartsReader, parts: Sequence[PartRef]) -> pa.Table | None:
    """Every version with commit_ts <= to_ts of ``parts`` in the reader's range, in handle then
    commit_ts order, each (handle, commit_ts) once (a compaction racing a pinned part list, or the feed
    delivering a version twice, must not show one twice)."""
    tables = [t for t in (reader.visible_versions(p) for p in parts) if t.num_rows]
    if not tables:
        return None
    t = pa.concat_tables(tables, promote_options="none") if len(tables) > 1 else tables[0]
    return drop_repeated_versions(t.take(pa.array(version_order(t))))


def _changes_of(t: pa.Table, from_ts: int, net: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row index of the values, change type code, commit ts) of each change in ``t`` (sorted
    versions of one partition). Type codes index ``CHANGE_TYPES``."""
    n = t.num_rows
    ts = t.column(COMMIT_TS).to_numpy().astype(np.uint64)
    dm = t.column(DELMARK).to_numpy(zero_copy_only=False).astype(bool)
    first = ~same_as_previous(t.column(ROWID))
    in_range = ts > np.uint64(from_ts)
    prev_live = np.zeros(n, dtype=bool)
    prev_live[1:] = ~first[1:] & ~dm[:-1]
    idx = np.arange(n)
    if not net:
        ins = in_range & ~dm & ~prev_live
        upd = in_range & ~dm & prev_live
        dele = in_range & dm & prev_live
        rows = np.concatenate([idx[ins], idx[upd] - 1, idx[upd], idx[dele] - 1])
        kinds = np.concatenate([np.full(ins.sum(), 0), np.full(upd.sum(), 1), np.full(upd.sum(), 2),
                                np.full(dele.sum(), 3)])
        at = np.concatenate([ts[ins], ts[upd], ts[upd], ts[dele]])
        return rows, kinds, at
    # net: per handle with a version in range, from its row at from_ts (the version just before
    # its first in range, when live) to its last version
    starts = np.flatnonzero(first)
    last_of_group = np.r_[starts[1:] - 1, n - 1] if n else starts
    group = np.cumsum(first) - 1
    first_in = in_range.copy()
    first_in[1:] &= first[1:] | ~in_range[:-1]
    f = idx[first_in]
    base_live = prev_live[f]
    last = last_of_group[group[f]]
    last_live = ~dm[last]
    ins = last_live & ~base_live
    upd = last_live & base_live
    dele = ~last_live & base_live
    rows = np.concatenate([last[ins], f[upd] - 1, last[upd], f[dele] - 1])
    kinds = np.concatenate([np.full(ins.sum(), 0), np.full(upd.sum(), 1), np.full(upd.sum(), 2),
                            np.full(dele.sum(), 3)])
    at = np.concatenate([ts[last[ins]], ts[last[upd]], ts[last[upd]], ts[last[dele]]])
    return rows, kinds, at


def _emit(t: pa.Table, rows: np.ndarray, kinds: np.ndarray, at: np.ndarray, schema: pa.Schema,
          table: "TableInfo", batch_rows: int) -> Iterator[pa.RecordBatch]:
    if len(rows) == 0:
        return
    # commit order, then handle order (rows are sorted by handle), a preimage before its postimage
    order_in_commit = np.array([_TYPE_ORDER[CHANGE_TYPES[k]] for k in range(4)])[kinds]
    order = np.lexsort((order_in_commit, rows, at))
    rows, kinds, at = rows[order], kinds[order], at[order]
    chosen = t.take(pa.array(rows))
    cols = {name: chosen.column(name) for name in chosen.column_names}
    virtual = [f.name for f in schema if f.name not in cols and f.name not in CHANGE_COLUMNS]
    if virtual:
        from pyspark_theflash.schema.generated import virtual_columns

        for vc in virtual_columns(table, virtual):
            cols[vc.name] = vc.compute(cols, chosen.num_rows)
    type_names = pa.array(list(CHANGE_TYPES), pa.string()).take(pa.array(kinds))
    cols[CHANGE_TYPE] = type_names
    cols[CHANGE_COMMIT_TS] = pa.array(at.astype(np.int64), pa.int64())
    cols[CHANGE_COMMIT_TIMESTAMP] = commit_timestamps(at)
    arrays = []
    for f in schema:
        a = cols[f.name]
        arrays.append(a if a.type == f.type else a.cast(f.type))
    out = pa.Table.from_arrays(arrays, schema=schema)
    yield from (b for b in out.to_batches(max_chunksize=batch_rows) if b.num_rows)


def read_changes(parts: Sequence[PartRef], table_info: "TableInfo", from_ts: int, to_ts: int,
                 handle_range: HandleRange | None = None, columns: Sequence[str] | None = None,
                 root: str | Path = ".", batch_rows: int = DEFAULT_BATCH_ROWS,
                 net: bool = False) -> Iterator[pa.RecordBatch]:
    """The changes of ``table_info``'s rows in ``parts`` with from_ts < commit_ts <= to_ts, in
    [lo, hi) of ``handle_range``, as batches of :func:`change_schema` (``columns``: None, all).
    Within a partition, changes come in commit ts order. ``parts`` must have been pinned while
    a read lease at from_ts (or lower) held GC back: the caller checks the safe point."""
    if from_ts >= to_ts:
        return
    if any(p.in_engine for p in parts):
        raise RowsInEngineError(str(root), table_info.qualified_name)
    lo, hi = handle_range if handle_range is not None else (None, None)
    schema = change_schema(table_info, columns)
    wanted = [c.name for c in table_info.columns] if columns is None else [table_info.column(c).name for c in columns]
    virtual = {c.name for c in table_info.columns if c.is_virtual_generated}
    if virtual & set(wanted):
        from pyspark_theflash.schema.generated import virtual_columns

        deps = {d for vc in virtual_columns(table_info, sorted(virtual & set(wanted))) for d in vc.deps}
        stored = [c.name for c in table_info.columns if c.name not in virtual and (c.name in wanted or c.name in deps)]
    else:
        stored = wanted
    reader = PartsReader(Path(root), table_info, to_ts, (lo, hi), stored, None, (), batch_rows)
    groups: dict[int, list[PartRef]] = {}
    for p in parts:
        if p.rows == 0 or p.min_commit_ts is None or p.min_commit_ts > to_ts or not p.overlaps(lo, hi):
            continue
        groups.setdefault(p.partition_id, []).append(p)
    ordered = sorted(groups.values(), key=lambda ps: (ps[0].partition_lo is not None, ps[0].partition_lo or 0))
    for group in ordered:
        # a partition whose every part is older than from_ts has no change
        if max((p.max_commit_ts or 0) for p in group) <= from_ts:
            continue
        t = _versions(reader, group)
        if t is None:
            continue
        rows, kinds, at = _changes_of(t, from_ts, net)
        yield from _emit(t, rows, kinds, at, schema, table_info, batch_rows)


__all__ = ["CHANGE_COLUMNS", "CHANGE_COMMIT_TIMESTAMP", "CHANGE_COMMIT_TS", "CHANGE_TYPE", "CHANGE_TYPES", "DELETE",
           "INSERT", "UPDATE_POSTIMAGE", "UPDATE_PREIMAGE", "change_schema", "commit_timestamps", "read_changes"]
