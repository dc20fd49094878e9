"""TxnMergeTree: one table's rows as range partitions by handle, each a set of parts.

A *part* is one Parquet file of versions sorted by (handle, commit_ts), with the table's
columns as of the part's schema version plus the hidden columns ``_tidb_rowid`` (int64),
``_tidb_commit_ts`` (uint64) and ``_tidb_delmark`` (bool); a Parquet part stores the commit
ts as signed INT64 (``stored_for_parquet``), and every reader of a part file sees uint64 again
(``conform_hidden``). Flushes write *delta* parts, compaction writes *stable* parts (row
groups of a configured size, with statistics). A Parquet part names each user column by its
TiDB column id, ``c<id>`` with the Parquet field id = the column id (``physical_name``): a
RENAME COLUMN, a DROP and a re-add leave its file as it is, and the Delta publication names it
in place under column mapping (docs/delta.md). Its manifest row lists those (id, file column)
pairs; parts written before, and the Arrow IPC deltas, name columns by the TiDB names of their
schema version (their row lists none), and every reader maps by the row's list
(``PartRef.columns``). This module writes part files (temporary name, fsync, rename) and
computes what the manifest records about them; it never touches the manifest itself.

An engine that keeps rows itself (the ClickHouse engine, ``store.row_sink``) gets no part files:
its flushes and compactions list *records* (``file`` empty, ``in_engine``): a part's
statistics without its rows, which read planning uses as it uses a file's.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pyspark_theflash.store.integrity import file_checksum
from pyspark_theflash.store.keyspace import Handle
from pyspark_theflash.store.options import PART_COMPRESSION
from pyspark_theflash.store.part_ref import UNLISTED, PartRef
from pyspark_theflash.schema.column_stats import ColumnStats
from pyspark_theflash.store.predicate import decode_value, encode_value

ROWID = "_tidb_rowid"
COMMIT_TS = "_tidb_commit_ts"
DELMARK = "_tidb_delmark"
HIDDEN_FIELDS = (pa.field(ROWID, pa.int64(), nullable=False),
                 pa.field(COMMIT_TS, pa.uint64(), nullable=False),
                 pa.field(DELMARK, pa.bool_(), nullable=False))
HIDDEN_NAMES = (ROWID, COMMIT_TS, DELMARK)
IN_ENGINE = ""  # a part's file when its rows are kept by the store's engine (no file)
PartitionSpan = tuple[int, Optional[Handle], Optional[Handle]]  # a partition of a table: (partition id, lo, hi)


def names_columns_by_id(part: PartRef) -> bool:
    """Whether the part's file names its user columns by id (a Parquet part: ``physical_name``),
    so the manifest row that lists it must list its columns too."""
    return not part.in_engine and not is_ipc(part.path)


def physical_name(column_id: int) -> str:
    """The static name of a user column in a Parquet part, from its TiDB column id (TiDB never
    gives an id to another column of the table, and a re-added column gets a new one). A TiDB
    column name cannot collide with it in the file: every user column there is named so, and
    the hidden columns start with ``_tidb_``."""
    return f"c{column_id}"


# The Parquet field metadata key of a field id (the Thrift ``SchemaElement.field_id``).
FIELD_ID_KEY = b"PARQUET:field_id"


def named_by_id(table: pa.Table, column_ids: Sequence[int]) -> tuple[pa.Table, tuple[tuple[int, str], ...]]:
    """``table``'s user columns (in the order of ``column_ids``) renamed ``c<id>`` and carrying
    their id as the Parquet field id; the hidden columns as they are. And the (id, file column)
    list the manifest records."""
    columns = tuple((int(cid), physical_name(int(cid))) for cid in column_ids)
    fields, at = [], 0
    for f in table.schema:
        if f.name in HIDDEN_NAMES:
            fields.append(f)
            continue
        cid, name = columns[at]
        at += 1
        fields.append(f.with_name(name).with_metadata({FIELD_ID_KEY: str(cid).encode()}))
    if at != len(columns):
        raise ValueError(f"{len(columns)} column ids for {at} user columns")
    return pa.Table.from_arrays(table.columns, schema=pa.schema(fields)), columns


def part_dir(table_id: int, partition_id: int) -> str:
    return f"tables/{table_id}/p{partition_id}"


def new_part_name(table_id: int, partition_id: int, kind: str) -> str:
    """Delta parts are Arrow IPC files (``.arrow``: written and read at memory speed), stable
    parts Parquet (``.parquet``: compressed, row groups with statistics)."""
    ext = "arrow" if kind == "delta" else "parquet"
    return f"{part_dir(table_id, partition_id)}/{kind}-{uuid.uuid4().hex[:16]}.{ext}"


def in_part_directory(rel: str) -> bool:
    """Whether ``rel`` (a path relative to the store root) is under a partition's directory
    ``tables/<table_id>/p<partition_id>/``: the store owns those files. Anything else under a
    table's directory (``_delta_log/``, ``deletion_vector_*.bin``, ``lake/``) belongs to that
    table's Delta publication (pyspark_theflash/lake, docs/delta.md), which the store neither
    lists nor deletes."""
    parts = rel.split("/")
    return len(parts) >= 4 and parts[0] == "tables" and parts[2][:1] == "p" and parts[2][1:].isdigit()


def is_ipc(path: str | Path) -> bool:
    return str(path).endswith(".arrow")


def version_order(table: pa.Table, newest_first: bool = False) -> np.ndarray:
    """The permutation ordering rows by handle, then commit_ts (ascending, or descending
    with ``newest_first``)."""
    rowid = table.column(ROWID)
    if pa.types.is_integer(rowid.type):
        handles = rowid.to_numpy()
        # One version per handle (a flush of distinct keys, the common case): one sort of
        # the handles, about 4x the two stable passes of lexsort.
        order = argsort_int64(handles)
        if len(order) < 2 or not (np.diff(handles[order]) == 0).any():
            return order
        # NumPy's lexsort is about twice Arrow's multi-key sort on two integer keys;
        # ~ts reverses the order of unsigned commit timestamps.
        ts = table.column(COMMIT_TS).to_numpy()
        return np.lexsort((~ts if newest_first else ts, handles))
    indices: np.ndarray = pc.sort_indices(
        table, sort_keys=[(ROWID, "ascending"), (COMMIT_TS, "descending" if newest_first else "ascending")]).to_numpy()
    return indices


def argsort_int64(values: np.ndarray) -> np.ndarray:
    """np.argsort of int64 values (equal values in their input order). When the values' range
    leaves room, each value is packed with its position into one int64 and the keys are
    sorted by value: NumPy's SIMD sort of int64 is ~3x its argsort (0.4 vs 1.25 ms for 50k)."""
    n = len(values)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    bits = (n - 1).bit_length()
    lo, hi = int(values.min()), int(values.max())
    if hi - lo >= 1 << (63 - bits):
        return np.argsort(values, kind="stable")
    keys = values - np.int64(lo)  # in [0, hi - lo]: no overflow
    keys <<= bits
    keys |= np.arange(n, dtype=np.int64)
    keys.sort()
    keys &= (1 << bits) - 1
    return keys


def sort_versions(table: pa.Table) -> pa.Table:
    """Rows ordered by (handle, commit_ts) ascending: the order of every part file."""
    if table.num_rows <= 1:
        return table
    return table.take(pa.array(version_order(table)))


def drop_repeated_versions(table: pa.Table) -> pa.Table:
    """Of rows in version order (``sort_versions``), one per (handle, commit_ts). TiKV's change
    feed delivers at least once (a region registered again rescans versions above its
    checkpoint that live rows already gave), so one version can reach the store twice; it is
    one version, and a part must hold it once: a stable part's deletion vector names versions
    by (handle, commit_ts), and would take every copy of a repeated newest version away."""
    n = table.num_rows
    if n < 2:
        return table
    same = same_as_previous(table.column(ROWID))
    if not same.any():
        return table
    ts = table.column(COMMIT_TS).to_numpy()
    repeated = np.zeros(n, dtype=bool)
    repeated[1:] = same[1:] & (ts[1:] == ts[:-1])
    return table.filter(pa.array(~repeated)) if repeated.any() else table


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Every TSO a commit ts can be fits in a signed 64-bit integer (46 bits of milliseconds since
# 1970 and 18 logical bits reach 2^63 only in the year 3085). Stored so, Spark's Parquet reader
# reads the column as a BIGINT; stored as unsigned INT64 it reads DECIMAL(20,0), a BigDecimal
# per row that made the commit-ts filter and the deletion-vector join of a native read cost
# more than the scan. A part whose commit ts would not fit keeps uint64 (readers take both).
_INT64_MAX = (1 << 63) - 1

# The hidden columns delta-encoded in Parquet: handles ascend within a part and commit ts
# lie close together, so each value is a few bits (the handle column shrinks ~30x) and Spark's
# vectorized reader decodes them faster than it decompresses plain values.
_DELTA_ENCODED = (ROWID, COMMIT_TS)


def stored_for_parquet(table: pa.Table) -> tuple[pa.Table, dict[str, str]]:
    """``table`` as a Parquet part stores it (commit ts signed when it fits) and the columns'
    encodings."""
    ts = table.column(COMMIT_TS)
    if pa.types.is_unsigned_integer(ts.type) and (pc.max(ts).as_py() or 0) <= _INT64_MAX:
        table = table.set_column(table.schema.get_field_index(COMMIT_TS),
                                 pa.field(COMMIT_TS, pa.int64(), nullable=False), ts.cast(pa.int64()))
    encodings = {name: "DELTA_BINARY_PACKED" for name in _DELTA_ENCODED
                 if pa.types.is_integer(table.schema.field(name).type)}
    return table, encodings


def conform_hidden(table: pa.Table) -> pa.Table:
    """A part file's rows with the commit ts as uint64, however the file stored it. A signed
    commit ts is never negative (``stored_for_parquet``), so its bits are the same uint64: each
    chunk is reinterpreted in place, not copied, on every read of a part."""
    at = table.schema.get_field_index(COMMIT_TS)
    if at < 0 or table.schema.field(at).type == pa.uint64():
        return table
    column = table.column(at)
    unsigned = pa.chunked_array([chunk.view(pa.uint64()) for chunk in column.chunks], pa.uint64())
    return table.set_column(at, pa.field(COMMIT_TS, pa.uint64(), nullable=False), unsigned)


# A string column is dictionary-encoded when at most this share of a sample of its values is
# distinct. Arrow's writer keeps a dictionary until the dictionary page is full (1 MiB), so a
# column of unique values (names, ids as text) was written as a dictionary of every value of
# most of each row group: a bigger file that decodes twice (dictionary, then the gather) —
# 40% slower to read than plain values. parquet-java makes the same call after the first page.
DICTIONARY_MAX_DISTINCT = 0.5
DICTIONARY_SAMPLE_ROWS = 1 << 16


def dictionary_columns(table: pa.Table) -> list[str]:
    """The string columns of ``table`` worth dictionary-encoding in a Parquet part: those with
    repeated values (names, codes), judged on the first ``DICTIONARY_SAMPLE_ROWS`` rows. Never
    numbers: on them a dictionary costs time on both sides and usually grows the file."""
    sample = table.slice(0, DICTIONARY_SAMPLE_ROWS)
    chosen = []
    for field in table.schema:
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        values = sample.column(field.name)
        present = len(values) - values.null_count
        if present == 0 or pc.count_distinct(values).as_py() <= DICTIONARY_MAX_DISTINCT * present:
            chosen.append(field.name)
    return chosen


def temp_name(dest: Path) -> Path:
    """Where a part is written before it is fsynced and renamed to ``dest``."""
    return dest.with_name(dest.name + f".tmp-{os.getpid()}")


def write_part(root: Path, rel: str, table: pa.Table, column_ids: Sequence[int],
               row_group_rows: int, *, table_id: int, partition: PartitionSpan, kind: str, schema_version: int,
               compression: str = PART_COMPRESSION, sync_dir: bool = True, install: bool = True) -> PartRef:
    """Write ``table`` (already sorted) to ``root/rel`` under a temporary name, fsync it and
    rename it in; Arrow IPC or Parquet by the name's extension. ``column_ids`` are the ids of
    the table's user columns, in order: a Parquet part names them by id (``named_by_id``) and
    its ``PartRef.columns`` says so; an Arrow IPC delta keeps the table's names (a Delta version
    never names a delta in place). ``install=False`` stops after writing the temporary file (no
    fsync, no rename): the caller makes it durable later with ``install_part``. The part is of
    the table's ``partition``, of ``kind`` and ``schema_version``, and not listed in the manifest
    yet (``UNLISTED``)."""
    dest = root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(dest)
    if is_ipc(rel):
        with ipc.new_file(str(tmp), table.schema) as w:
            w.write_table(table, max_chunksize=max(1, row_group_rows))
    else:
        table, _columns = named_by_id(table, column_ids)  # describe_part lists them as the file names them
        dictionary = dictionary_columns(table)
        stored, encodings = stored_for_parquet(table)
        pq.write_table(stored, str(tmp), row_group_size=max(1, row_group_rows), compression=compression,
                       write_statistics=True, use_dictionary=dictionary or False, column_encoding=encodings or None,
                       write_page_checksum=True)
    # The checksum of the bytes as written (read back from the page cache at memory speed), for
    # the manifest edit that lists the part: every later read checks it (store.integrity).
    checksum = file_checksum(tmp)
    if not install:
        size = tmp.stat().st_size
    else:
        install_part(root, rel)
        if sync_dir:  # callers writing many parts pass False and call sync_dirs once
            _fsync_dir(dest.parent)
        size = dest.stat().st_size
    return replace(describe_part(rel, table, column_ids, size, table_id=table_id, partition=partition, kind=kind,
                                 schema_version=schema_version), checksum=checksum)


def install_part(root: Path, rel: str) -> None:
    """fsync the temporary file ``write_part`` wrote for ``rel`` and rename it to its name
    (the directory's fsync, ``sync_dirs``, makes the rename durable)."""
    dest = root / rel
    tmp = temp_name(dest)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)


def sync_dirs(root: Path, rels: Sequence[str]) -> None:
    """fsync each directory holding one of ``rels`` once (the renames into them)."""
    for d in sorted({(root / r).parent for r in rels}):
        _fsync_dir(d)


def describe_part(rel: str, table: pa.Table, column_ids: Sequence[int], size: int, *, table_id: int,
                  partition: PartitionSpan, kind: str, schema_version: int) -> PartRef:
    """The part holding ``table`` (sorted by version order) in the file ``rel`` of ``size`` bytes,
    as the manifest will record it: its columns are ``column_ids`` as the table names them
    (``c<id>`` in a Parquet part, the TiDB names in an Arrow IPC delta)."""
    n = table.num_rows
    handles = table.column(ROWID)
    ts = table.column(COMMIT_TS)
    h: dict[str, int | bytes | None]  # min and max handle: ints, or bytes of a common handle
    t: dict[str, int | None]
    if n and pa.types.is_integer(handles.type):  # sorted: the ends are min and max, repeats adjacent
        hs, tss = handles.to_numpy(), ts.to_numpy()
        h = {"min": int(hs[0]), "max": int(hs[-1])}
        t = {"min": int(tss.min()), "max": int(tss.max())}
        single = not (hs[1:] == hs[:-1]).any()
        delmarks = int(np.count_nonzero(table.column(DELMARK).to_numpy()))
    elif n:
        h = pc.min_max(handles).as_py()
        t = pc.min_max(ts).as_py()
        single = not same_as_previous(handles).any()  # sorted: repeats are adjacent
        delmarks = int(pc.sum(table.column(DELMARK).cast(pa.int64())).as_py() or 0)
    else:
        h = {"min": None, "max": None}
        t = {"min": None, "max": None}
        single, delmarks = True, 0
    user_names = [f.name for f in table.schema if f.name not in HIDDEN_NAMES]
    columns = tuple((int(cid), name) for cid, name in zip(column_ids, user_names))
    stats = tuple((cid, column_stats(table.column(name))) for cid, name in columns)
    pid, lo, hi = partition
    return PartRef(UNLISTED, table_id, pid, lo, hi, kind, rel, n, size, h["min"], h["max"], t["min"], t["max"],
                   single, delmarks, schema_version, columns, stats)


def describe_engine_rows(table: pa.Table, column_ids: Sequence[int], *, table_id: int, partition: PartitionSpan,
                         kind: str, schema_version: int) -> PartRef:
    """The manifest's record of flushed rows the store's engine keeps (no file): row count,
    in-memory bytes, handle and commit-ts bounds, delete marks and column statistics, as
    ``describe_part`` gives them for a file. ``table`` need not be sorted, so whether a handle
    repeats is not worked out: ``single_version`` is False for more than one row."""
    n = table.num_rows
    if not n:
        return describe_part(IN_ENGINE, table, column_ids, 0, table_id=table_id, partition=partition, kind=kind,
                             schema_version=schema_version)
    handles, ts = table.column(ROWID), table.column(COMMIT_TS)
    h, t = pc.min_max(handles).as_py(), pc.min_max(ts).as_py()
    delmarks = int(pc.sum(table.column(DELMARK).cast(pa.int8())).as_py() or 0)
    user_names = [f.name for f in table.schema if f.name not in HIDDEN_NAMES]
    columns = tuple((int(cid), name) for cid, name in zip(column_ids, user_names))
    stats = tuple((cid, column_stats(table.column(name))) for cid, name in columns)
    pid, lo, hi = partition
    return PartRef(UNLISTED, table_id, pid, lo, hi, kind, IN_ENGINE, n, int(table.nbytes), h["min"], h["max"],
                   t["min"], t["max"], n == 1, delmarks, schema_version, columns, stats)


def column_stats(arr: pa.ChunkedArray | pa.Array) -> ColumnStats:
    n = len(arr)
    nulls = arr.null_count
    lo = hi = None
    if nulls < n:
        try:
            mm = pc.min_max(arr)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            lo = hi = None
    return ColumnStats(lo, hi, nulls, n)


def file_schema(user_fields: Sequence[pa.Field], rowid_type: pa.DataType = pa.int64()) -> pa.Schema:
    """The schema of a part file: the user columns (all nullable: delete marks carry no
    values) and the hidden columns (``_tidb_rowid`` is binary for common-handle tables)."""
    return pa.schema([f.with_nullable(True) for f in user_fields]
                     + [pa.field(ROWID, rowid_type, nullable=False)] + list(HIDDEN_FIELDS[1:]))


def same_as_previous(handles: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Vectorised: for each row, whether its handle equals the previous row's."""
    n = len(handles)
    out = np.zeros(n, dtype=bool)
    if n < 2:
        return out
    if pa.types.is_integer(handles.type):
        h = handles.to_numpy()
        out[1:] = h[1:] == h[:-1]
    else:
        if isinstance(handles, pa.ChunkedArray):
            handles = handles.combine_chunks()
        out[1:] = pc.equal(handles.slice(1), handles.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    return out


def split_by_partition(handles: pa.Array | pa.ChunkedArray, bounds: Sequence[Handle | None]) -> np.ndarray:
    """For each handle, the index of the partition holding it, given the sorted inner
    boundaries (partition i covers [bounds[i-1], bounds[i]); the partitions' lower bounds after
    the first, so none is None)."""
    if pa.types.is_integer(handles.type):
        placed: np.ndarray = np.searchsorted(np.asarray(bounds, dtype=np.int64), handles.to_numpy(), side="right")
        return placed
    which = np.zeros(len(handles), dtype=np.int64)
    for b in bounds:
        which += pc.greater_equal(handles, pa.scalar(b, handles.type)).to_numpy(zero_copy_only=False)
    return which


def median_split_point(handles: np.ndarray) -> Handle | None:
    """A handle that splits sorted ``handles`` into two non-empty halves of distinct
    handles, or None when every row has the same handle."""
    if len(handles) < 2 or handles[0] == handles[-1]:
        return None
    mid = handles[len(handles) // 2]
    if mid == handles[0]:
        # Skew: the first handle fills half the partition; split right after it.
        mid = handles[np.searchsorted(handles, handles[0], side="right")]
    return int(mid) if isinstance(mid, (int, np.integer)) else bytes(mid)
