"""Which rows of a planned read Spark can read with its own Parquet reader (no Spark imports).

A read goes through the Python data source, which hands Spark Arrow batches of every column
the table has: Spark cannot tell a Python source which columns a query needs, and turning the
batches into rows costs the JVM the same whatever the source does. A *clean* stable part — the
only part of its TxnMergeTree partition in the read's range, one version per handle, in
Parquet, holding every column the read needs in exactly the type Spark expects — needs no
MVCC: its rows at ts are those with ``_tidb_commit_ts <= ts``, inside the range, outside the
range tombstones newer than the part, and not delete marks. Spark's file source reads that
with column pruning, filter pushdown and row-group skipping, and knows the files' sizes.

:func:`split_native` divides a plan into such pieces and the handle ranges left to the Python
reader (everything else: delta parts, partitions with several parts, old schema versions).
The two sides never overlap: pieces are cut at TxnMergeTree partition bounds, and a handle is
in exactly one partition.

Handles are int64 (``_tidb_rowid`` BIGINT) or, for a clustered common-handle table, the
memcomparable bytes of the key (``_tidb_rowid`` BINARY). Memcomparable bytes order as the keys
do under unsigned lexicographic comparison, a proper prefix first; Python's ``bytes`` (which
cut the store's partitions, regions and tombstones), Spark's BINARY comparison and Parquet's
BINARY statistics all order that way, so a piece's range and tombstones are the same
conditions on the file's ``_tidb_rowid`` whatever the handle's type.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from pyspark_theflash.scan.options import OverlayPin
from pyspark_theflash.store.deletion_vector import (
    MAX_VECTOR_SHARE,
    can_split,
    deletion_vector,
    handle_index,
    stable_and_deltas,
)
from pyspark_theflash.store.keyspace import Handle, HandleRange
from pyspark_theflash.store.txn_merge_tree import COMMIT_TS, ROWID
from pyspark_theflash.store.views import intersect

# Arrow types of store columns that Spark's Parquet reader gives back as exactly the Spark
# type the Python source declares for them (``schema.spark``). Not here: durations (TIME),
# which Parquet stores as plain INT64.
_NATIVE_SIMPLE = frozenset([
    pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.float32(), pa.float64(), pa.bool_(),
    pa.date32(), pa.string(), pa.binary(), pa.timestamp("us"), pa.timestamp("us", tz="UTC"),
])


def natively_readable(tp: pa.DataType) -> bool:
    return tp in _NATIVE_SIMPLE or pa.types.is_decimal128(tp)


@dataclass(frozen=True)
class NativePiece:
    """The rows of one clean Parquet part that lie in handles [lo, hi)."""

    path: str                               # absolute path of the part file
    lo: Handle | None
    hi: Handle | None
    file_columns: tuple[str, ...]           # the file's name for each needed column, in order
    tombstones: tuple[HandleRange, ...]     # handle ranges deleted after the part was written
    newer_than_ts: bool                     # holds versions committed after the read's ts
    delete_marks: bool
    bytes: int
    binary_handle: bool = False             # a common handle: ``_tidb_rowid`` is BINARY
    # The file stores ``_tidb_commit_ts`` as signed INT64 (Spark reads BIGINT), as parts are
    # written now; False: unsigned, read as DECIMAL(20,0) (parts written before).
    signed_commit_ts: bool = False
    # Under live writes or with versions newer than the safe point: the part's versions that
    # are no row at ts (``store.deletion_vector``; columns _tidb_rowid, _tidb_commit_ts). None: none.
    deletion_vector: pa.Table | None = None
    # A one-version int-handle part: each handle is one row of the file, so the rows a read at
    # ts drops are named by handle alone — its vector's and those committed after ts. Spark
    # then needs no filter or join on the commit ts (DECIMAL(20,0) in Spark: a BigDecimal per
    # row). None: filter by commit ts and join on (handle, commit ts).
    dropped_handles: pa.Array | None = None


@dataclass(frozen=True)
class DeltaHalf:
    """The delta half of a piece read minus its deletion vector: the newest delta versions of
    ``superseded`` in handles [lo, hi) (``store.deletion_vector.superseding_rows``)."""

    lo: Handle | None
    hi: Handle | None
    deltas: tuple[Any, ...]                 # the partition's delta PartRefs, as planned
    superseded: pa.Array


@dataclass
class NativeSplit:
    pieces: list[NativePiece]
    rest: list[HandleRange]                 # handle ranges the Python reader reads, in order
    # The delta halves of pieces with a deletion vector: pinned for the Python reader
    # (``overlays``), and as planned for a driver that reads them itself (``delta_halves``).
    overlays: list[OverlayPin] = field(default_factory=list)
    delta_halves: list[DeltaHalf] = field(default_factory=list)

    @property
    def delta_half_rows(self) -> int:
        """At most this many rows in the delta halves (one per superseded handle)."""
        return sum(len(d.superseded) for d in self.delta_halves)


# Parquet codecs Spark's own reader reads reliably. Not LZ4_RAW: parquet-java in Spark 4.2.1
# fails on large LZ4_RAW dictionary pages (parquet-java issue 3478; stores written before
# TheFlash switched its parts to ZSTD hold such parts), nor LZ4/BROTLI/LZO.
SPARK_READABLE_CODECS = frozenset({"UNCOMPRESSED", "SNAPPY", "GZIP", "ZSTD"})


@functools.lru_cache(maxsize=4096)
def _file_schema(path: str, mtime_ns: int) -> pa.Schema | None:
    """A part file's Arrow schema, or None when a column chunk uses a codec Spark's reader
    cannot be trusted with (part files never change; the mtime guards a reused name)."""
    with pq.ParquetFile(path) as f:
        meta = f.metadata
        for rg in range(meta.num_row_groups):
            group = meta.row_group(rg)
            for c in range(group.num_columns):
                if group.column(c).compression not in SPARK_READABLE_CODECS:
                    return None
        return f.schema_arrow


def low_end_key(lo: Handle | None) -> tuple[bool, Handle]:
    """A sort key putting an unbounded low end first (handles of one table share a type)."""
    return (False, 0) if lo is None else (True, lo)


def _merge(ranges: Sequence[HandleRange]) -> list[HandleRange]:
    out: list[HandleRange] = []
    for lo, hi in ranges:
        if out and out[-1][1] is not None and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _clean_columns(part: Any, root: str, table: Any, needed: Sequence[str]) -> tuple[tuple[str, ...], bool] | None:
    """The part's file column for each needed column, and whether the file's commit ts is
    signed, when the part is natively readable."""
    from pyspark_theflash.schema import arrow_type

    path = os.path.join(root, part.path)
    try:
        schema = _file_schema(path, os.stat(path).st_mtime_ns)
    except (OSError, pa.ArrowInvalid):
        return None  # the Python reader reports a missing or broken part with its own error
    if schema is None:
        return None  # written with a codec Spark's Parquet reader fails on: the Python reader reads it
    handle_type = pa.binary() if table.is_common_handle else pa.int64()
    if schema.get_field_index(ROWID) < 0 or schema.field(ROWID).type != handle_type:
        return None  # the range and tombstone conditions are written for this handle type
    if schema.get_field_index(COMMIT_TS) < 0:
        return None  # not a part as the store writes them: the Python reader reports it
    names_by_id = dict(part.columns)
    out = []
    for name in needed:
        col = table.column(name)
        file_name = names_by_id.get(col.id)
        if file_name is None or schema.get_field_index(file_name) < 0:
            return None  # added after the part was written: the Python reader fills the default
        tp = schema.field(file_name).type
        if not natively_readable(tp) or tp != arrow_type(col):
            return None
        out.append(file_name)
    return tuple(out), schema.field(COMMIT_TS).type == pa.int64()


def is_clean(parts: Sequence[Any]) -> bool:
    """A partition (its parts in a read's range) that is one one-version Parquet part: its
    rows at ts need no MVCC at all."""
    return len(parts) == 1 and parts[0].single_version and str(parts[0].path).endswith(".parquet")


def natively_readable_partition(parts: Sequence[Any]) -> bool:
    """Whether Spark's Parquet reader can read a partition's stable part: clean, or a stable
    Parquet part bigger than its deltas, read minus a deletion vector."""
    return is_clean(parts) or can_split(*stable_and_deltas(parts))


def _dropped_handles(path: str, newer_than_ts: bool, ts: int, vector: Any, rows: int) -> pa.Array | None:
    """The handles a read at ts drops from a one-version int-handle part (``NativePiece``), or
    None when they are not worth naming one by one (most of the part is newer than ts)."""
    import numpy as np

    dropped = [vector.versions.column(ROWID).combine_chunks()] if vector is not None and len(vector) else []
    if newer_than_ts:
        index = handle_index(path)
        if index is None:
            return None
        rowids, commit_ts = index
        newer = rowids[commit_ts > np.uint64(ts)]
        if len(newer) > MAX_VECTOR_SHARE * max(1, rows):
            return None
        dropped.append(pa.array(newer, pa.int64()))
    if not dropped:
        return pa.array([], pa.int64())
    return pa.concat_arrays(dropped) if len(dropped) > 1 else dropped[0]


def split_native(plan: Any, needed: Sequence[str]) -> NativeSplit:
    """Divide ``plan`` (a ``ScanPlan``) into clean Parquet pieces and the rest.

    ``needed``: the table's columns the read returns."""
    table = plan.table_info
    if table is None or any(getattr(p, "engine", "native") != "native" for p in plan.partitions):
        # Only the native engine keeps rows in part files Spark's Parquet reader can open;
        # another engine's partitions are read whole through it.
        return NativeSplit([], _merge([(rng.lo, rng.hi) for p in plan.partitions for rng in p.ranges]))
    binary_handle = bool(table.is_common_handle)
    ts = plan.ts
    pieces: list[NativePiece] = []
    rest: list[HandleRange] = []
    overlays: list[OverlayPin] = []
    halves: list[DeltaHalf] = []
    for partition in plan.partitions:
        for rng in partition.ranges:
            groups: dict[int, list[Any]] = {}
            for p in rng.parts:
                if p.rows == 0 or p.min_commit_ts is None or p.min_commit_ts > ts or not p.overlaps(rng.lo, rng.hi):
                    continue  # nothing of it is visible in the range at ts (as store.read skips it)
                groups.setdefault(p.partition_id, []).append(p)
            for parts in sorted(groups.values(), key=lambda ps: low_end_key(ps[0].partition_lo)):
                clipped = intersect((rng.lo, rng.hi), (parts[0].partition_lo, parts[0].partition_hi))
                if clipped is None:
                    continue  # (cannot happen: each part overlaps the range and lies in its partition)
                lo, hi = clipped
                part, deltas = stable_and_deltas(parts)
                clean = is_clean(parts)
                readable = _clean_columns(part, plan.store, table, needed) if clean or can_split(part, deltas) else None
                files, signed_commit_ts = readable if readable is not None else (None, False)
                vector = None
                if files is not None and not clean:
                    # merge-on-read: the part minus a deletion vector, the deltas' newer rows
                    vector = deletion_vector(part, deltas, table, ts, (lo, hi), plan.store, cache_deltas=True)
                    if vector is None:
                        files = None  # the vector would cover most of the part: read it whole
                if files is None:
                    rest.append((lo, hi))
                    continue
                if vector is not None and len(vector.superseded):
                    overlays.append(OverlayPin(lo, hi, part.part_id, tuple(p.part_id for p in deltas),
                                               getattr(plan, "manifest_version", 0)))
                    halves.append(DeltaHalf(lo, hi, tuple(deltas), vector.superseded))
                newer_than_ts = part.max_commit_ts is None or part.max_commit_ts > ts
                pieces.append(NativePiece(
                    path=os.path.join(plan.store, part.path), lo=lo, hi=hi, file_columns=files,
                    tombstones=tuple(part.tombstones), newer_than_ts=newer_than_ts,
                    delete_marks=bool(part.delete_marks), bytes=int(part.bytes), binary_handle=binary_handle,
                    signed_commit_ts=signed_commit_ts,
                    deletion_vector=vector.versions if vector is not None and len(vector) else None,
                    dropped_handles=None if binary_handle or not part.single_version else _dropped_handles(
                        os.path.join(plan.store, part.path), newer_than_ts, ts, vector, part.rows)))
    return NativeSplit(pieces, _merge(rest), overlays, halves)
