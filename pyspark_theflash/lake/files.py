"""The data files of one table's Delta version at ts: every live part of the store, each with a
deletion vector of its rows not visible at ts.

A part holds versions of rows (``store/txn_merge_tree.py``): for a Delta reader, which reads
every row of a file it does not delete, the deletion vector of a part at ts is every row that
TheFlash's own read at ts does not return: versions above ts, versions a newer one at or below
ts replaces (in this part or another of the partition), delete marks, repeats of a version
(capture delivers at least once), rows outside the partition's handle range, rows under a range
tombstone newer than the part. The choice is the store's own (``PartsReader.visible_rows`` then
``newest_visible``), made on the hidden columns only, in Arrow and NumPy: one sort per partition.

The tables use column mapping by id (``lake.types``): a column is ``c<TiDB column id>`` in a data
file, with that id as its Parquet field id, whatever its name. A part is named **in place** (its
path relative to the table root, ``p<partition>/stable-….parquet``) when it is Parquet and holds
every column of the table's schema at ts so (which the store's parts do since they name columns
by id: a RENAME or a DROP COLUMN leaves them named in place), in its Delta file type, none of
them with an LZ4 dictionary page (which Spark's Parquet reader may fail to decompress); a column
it lacks (added after it) must have a NULL origin default, which is what a reader returns for an
id a file does not have. Otherwise it is **converted**: its rows, in the same order (so the
deletion vector's row indexes stay right), conformed to the schema the way a read conforms them
(by column id, cast, origin defaults for columns added after it) and cast to the Delta file
types, are written once to ``lake/part-<id>-<schema>.parquet``, named by id too. Parts written
before the store named columns by id (by their TiDB names, no field ids) are converted so.
Arrow IPC deltas are always converted: no Delta reader reads Arrow IPC (docs/delta.md weighs
this against compacting first).

Tables published elsewhere than the store's directory (``--to``: another file system, S3) name
the same relative paths there: a part named in place is *copied* once to that path (parts never
change), converted files and vectors are written there directly.

A Delta table's root is ``tables/<id>`` for one table id, but it may name parts of others: a
partitioned TiDB table is one Delta table over its partitions' parts (each partition a physical
table id), and a truncated table continues in the Delta table it had (TRUNCATE TABLE gives the
rows a new table id). Such a part is named at ``ids/<its table id>/p<partition>/…`` under the
root, where it is linked (a hard link in the store's directory: no copy) or copied once. Those
names are the publication's, never the store's (``store.txn_merge_tree.in_part_directory``),
and go with the versions naming them."""
from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pyspark_theflash.lake.location import FileStamps, LakeDir
from pyspark_theflash.lake.roaring import merged
from pyspark_theflash.lake.types import field_id
from pyspark_theflash.store import integrity
from pyspark_theflash.store.part_ref import PartRef
from pyspark_theflash.store.parts import PartsReader, newest_visible, origin_defaults
from pyspark_theflash.store.txn_merge_tree import HIDDEN_NAMES, ROWID, is_ipc

if TYPE_CHECKING:
    from pyspark_theflash.schema.table_info import TableInfo
    from pyspark_theflash.store.keyspace import Handle

CONVERTED_DIR = "lake"
TABLE_IDS_DIR = "ids"  # parts of other table ids than the root's (partitions, a truncated table's successor)
_PART = "_lake_part"
_ROW = "_lake_row"
_BATCH_ROWS = 1 << 16
# Converted files: ZSTD, which every Delta reader decodes (Spark 4.2.1's parquet-java fails on
# large LZ4_RAW dictionary pages: docs/store.md), with no dictionary for unique values' sake.
CONVERTED_COMPRESSION = "zstd"


@dataclass(frozen=True)
class PlannedFile:
    """A part as one data file of the version: ``path`` relative to the table root (the store's
    own file, or its converted copy), its physical rows, and the row indexes not visible at ts."""

    part_id: int
    partition_id: int
    path: str
    size: int
    rows: int
    deleted: np.ndarray       # sorted uint64 row indexes
    converted: bool


def schema_tag(schema: pa.Schema, info: TableInfo | None = None) -> str:
    """A short digest of a Delta file schema: a converted file's name carries it, so a schema
    change converts again instead of reusing a file of other columns. The expressions of the
    table's VIRTUAL generated columns are in it too: a converted file holds their values."""
    text = schema.to_string()
    virtual = [f"{c.id}={c.generated_expr}" for c in info.columns if c.is_virtual_generated] if info else []
    if virtual:
        text += "\nvirtual computed: " + "; ".join(virtual)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# Codecs of dictionary pages parquet-java in Spark 4.2.1 fails to decompress when large
# ("MalformedInputException", parquet-java issue 3478, met while dictionary-filtering a pushed
# string filter: docs/store.md); pyarrow names LZ4_RAW "LZ4".
_SPARK_UNSAFE_DICTIONARY_CODECS = frozenset({"LZ4", "LZ4_RAW", "LZ4_FRAME", "LZ4_HADOOP"})


@functools.lru_cache(maxsize=8192)
def _footer_of(path: str, part: PartRef) -> tuple[dict[str, tuple[pa.DataType, int | None]], frozenset[str]]:
    # through the store's checked open: a part on shared storage with no local copy is fetched,
    # a damaged cached copy fetched again (store.remote); the file is summed once per process,
    # as the read of its rows that precedes this in a round sums it anyway
    with integrity.open_part(path, part) as source:
        f = pq.ParquetFile(source)
        md, schema = f.metadata, f.schema_arrow
    unsafe = {md.row_group(g).column(c).path_in_schema for g in range(md.num_row_groups)
              for c in range(md.num_columns)
              if md.row_group(g).column(c).compression in _SPARK_UNSAFE_DICTIONARY_CODECS
              and md.row_group(g).column(c).has_dictionary_page}
    return {fld.name: (fld.type, field_id(fld)) for fld in schema}, frozenset(unsafe)


def _footer(root: Path, part: PartRef) -> tuple[dict[str, tuple[pa.DataType, int | None]], frozenset[str]]:
    """A part file's column types and Parquet field ids, and its columns with an LZ4 dictionary
    page: its footer read once (a listed part file never changes; bounded, as a writer publishes
    for days while parts come and go)."""
    return _footer_of(str(root / part.path), part)


def _copy_in(root: Path, table_root: LakeDir, part: PartRef, rel: str) -> None:
    """``part``'s file at ``rel`` under ``table_root``, fetched first when the store's cache of
    parts on shared storage has no copy (and again if the cache evicted it meanwhile)."""
    for attempt in range(3):
        integrity.ensure_local(root / part.path, part)
        try:
            table_root.copy_in(root / part.path, rel)
            return
        except FileNotFoundError:
            if attempt == 2:
                raise


def in_place(root: Path, part: PartRef, info: TableInfo, target: pa.Schema) -> bool:
    """Whether a Delta version may name ``part``'s own file (see the module's docstring): a
    Parquet part naming each column of ``target`` by its physical name, with its field id and
    in its Delta file type, with no LZ4 dictionary page. A column the part does not have (added
    after it) reads NULL in every Delta reader (PROTOCOL.md, "Reader Requirements for Column
    Mapping"), which is TheFlash's read only when the column's origin default is NULL. A VIRTUAL
    generated column is never stored (a part holds NULLs for it, TheFlash computes it as it
    reads): a table with one is converted, its values computed into the file."""
    if is_ipc(part.path) or part.in_engine or any(c.is_virtual_generated for c in info.columns):
        return False
    stored, unsafe = _footer(root, part)
    return _serves(dict(part.columns), stored, unsafe, info, target)


def _serves(names_by_id: dict[int, str], stored: dict[str, tuple[pa.DataType, int | None]], unsafe: frozenset[str],
            info: TableInfo, target: pa.Schema) -> bool:
    """Whether a file whose columns are ``names_by_id`` (column id -> its name there), typed and
    numbered as ``stored`` says, with LZ4 dictionary pages in ``unsafe``, serves ``target`` as it
    is: each column under its physical name, field id and Delta file type, or absent with a NULL
    origin default; a column the file has beyond ``target`` is skipped by every reader."""
    absent = []
    for f in target:
        cid = field_id(f)
        if cid not in names_by_id:
            absent.append(cid)
        elif names_by_id[cid] != f.name or stored.get(f.name) != (f.type, cid) or f.name in unsafe:
            return False
    return not absent or _null_origin_defaults(info, absent)


def _null_origin_defaults(info: TableInfo, column_ids: Sequence[int | None]) -> bool:
    """Whether each of these columns' origin default (what a row written before it existed reads)
    is NULL, decoded as a read decodes it (``store.parts.origin_defaults``)."""
    by_id = {c.id: c.name for c in info.columns}
    if any(cid not in by_id for cid in column_ids):
        return False
    defaults = origin_defaults(info, [by_id[cid] for cid in column_ids if cid is not None])
    return all(column.null_count == len(column) for column in defaults.columns)


@dataclass(frozen=True)
class PartVisibility:
    """What a round learned of one part: the row indexes not visible at its ts, and (int-handle
    tables) the part's handles in file order, kept for the next round's incremental vectors."""

    deleted: np.ndarray                 # sorted uint64 row indexes
    handles: np.ndarray | None = None   # int64, file order (ascending); None: a clustered table


def _visible(reader: PartsReader, parts: Sequence[PartRef]) -> tuple[list[pa.Table], pa.Table | None]:
    """Each part's hidden columns (all rows), and their rows visible at the reader's ts tagged
    with (part index, row index): what the store's own read chooses from."""
    tables, visible = [], []
    for i, part in enumerate(parts):
        t = reader.all_versions(part)
        tables.append(t)
        t = t.append_column(_PART, pa.array(np.full(t.num_rows, i, dtype=np.int32)))
        t = t.append_column(_ROW, pa.array(np.arange(t.num_rows, dtype=np.int64)))
        visible.append(reader.visible_rows(part, t))
    return tables, (pa.concat_tables(visible) if visible else None)


def _int_handles(t: pa.Table) -> np.ndarray | None:
    rowid = t.column(ROWID)
    return rowid.to_numpy() if pa.types.is_integer(rowid.type) else None


def deleted_rows(root: Path, info: TableInfo, ts: int, parts: Sequence[PartRef], lo: Handle | None, hi: Handle | None) -> list[PartVisibility]:
    """Per part of one partition (bounds [lo, hi)), the sorted row indexes a read at ts does not
    return: every part's hidden columns read, one choice over all of them."""
    reader = PartsReader(root, info, ts, (lo, hi), [], None, HIDDEN_NAMES, _BATCH_ROWS)
    tables, visible = _visible(reader, parts)
    chosen = newest_visible(visible) if visible is not None else None
    out = []
    for i, part in enumerate(parts):
        keep = np.zeros(part.rows, dtype=bool)
        if chosen is not None and chosen.num_rows:
            which = chosen.column(_PART).to_numpy() == i
            keep[chosen.column(_ROW).to_numpy()[which]] = True
        out.append(PartVisibility(np.flatnonzero(~keep).astype(np.uint64), _int_handles(tables[i])))
    return out


def deleted_rows_after(root: Path, info: TableInfo, ts: int, settled: Sequence[tuple[PartRef, PartVisibility]],
                       fresh: Sequence[PartRef], lo: Handle | None, hi: Handle | None) -> list[PartVisibility]:
    """``deleted_rows`` of ``settled`` + ``fresh`` parts, reading only the fresh ones.

    A settled part had all its rows at or below the last round's ts and its vector then; every
    fresh row is newer than every settled row (the caller checks: min commit ts of the fresh
    parts above the max of the settled ones). So a fresh version visible at ts supersedes every
    settled version of its handle, and nothing else changes for a settled part: its vector is
    the last one plus the rows of the handles the fresh parts now show (found by binary search
    in its handles, ascending in file order). The fresh parts choose among themselves as usual.
    The cost follows the fresh rows, not the table."""
    reader = PartsReader(root, info, ts, (lo, hi), [], None, HIDDEN_NAMES, _BATCH_ROWS)
    tables, visible = _visible(reader, fresh)
    fresh_out = []
    chosen = newest_visible(visible) if visible is not None else None
    for i, part in enumerate(fresh):
        keep = np.zeros(part.rows, dtype=bool)
        if chosen is not None and chosen.num_rows:
            which = chosen.column(_PART).to_numpy() == i
            keep[chosen.column(_ROW).to_numpy()[which]] = True
        fresh_out.append(PartVisibility(np.flatnonzero(~keep).astype(np.uint64), _int_handles(tables[i])))
    # the fresh handles, sorted (searchsorted needs no uniqueness)
    touched = np.sort(visible.column(ROWID).to_numpy()) if visible is not None and visible.num_rows else \
        np.zeros(0, np.int64)
    settled_out = []
    for part, before in settled:
        handles = before.handles
        assert handles is not None  # the caller passes int-handle parts only
        left = np.searchsorted(handles, touched, side="left")
        right = np.searchsorted(handles, touched, side="right")
        hit = right > left
        if hit.any():
            starts, counts = left[hit], (right - left)[hit]
            rows = np.repeat(starts - np.cumsum(np.r_[0, counts[:-1]]), counts) + np.arange(counts.sum())
            settled_out.append(PartVisibility(merged(before.deleted, rows.astype(np.uint64)), handles))
        else:
            settled_out.append(before)
    return settled_out + fresh_out


def convert(root: Path, table_root: LakeDir, part: PartRef, info: TableInfo, target: pa.Schema,
            stamps: FileStamps | None = None) -> tuple[str, int]:
    """``part``'s rows in the current schema and Delta file types, written once to
    ``lake/part-<id>-<schema>.parquet`` under the table root; (relative path, size).
    ``stamps``: the files the round knows are there (asked of the file system otherwise)."""
    from pyspark_theflash.schema.generated import virtual_columns

    stamps = FileStamps() if stamps is None else stamps
    rel = f"{CONVERTED_DIR}/part-{part.part_id}-{schema_tag(target, info)}.parquet"
    known = stamps.known(rel)
    if known is None:
        earlier = _earlier_conversion(table_root, part, info, target, rel, stamps)
        if earlier is not None:
            return earlier
        known = stamps.of(table_root, rel)
    if known is not None:
        return rel, known.size
    by_id: dict[int | None, str] = {c.id: c.name for c in info.columns}
    names = [by_id[field_id(f)] for f in target]   # the TiDB names the store reads them by
    computed = virtual_columns(info, names)  # (TheFlash computes them as it reads: so does the file)
    deps = {d for vc in computed for d in vc.deps} - {vc.name for vc in computed}
    reader = PartsReader(root, info, 0, (None, None), names + sorted(deps - set(names)), None, (), _BATCH_ROWS)
    t = reader.all_versions(part)
    if t.num_rows != part.rows:
        raise ValueError(f"part {part.part_id} ({part.path}) read {t.num_rows} rows, the manifest says {part.rows}")
    if computed:
        cols = {name: t.column(name) for name in t.schema.names}
        for vc in computed:
            cols[vc.name] = vc.compute(cols, t.num_rows)
        t = pa.table({n: cols[n] for n in names})
    t = t.select(names)
    # under their physical names, with their field ids: a converted file is named like a part
    t = pa.Table.from_arrays([t.column(n).cast(f.type) for n, f in zip(names, target)], schema=target)
    sink = pa.BufferOutputStream()
    pq.write_table(t, sink, compression=CONVERTED_COMPRESSION, use_dictionary=False, row_group_size=_BATCH_ROWS)
    data = sink.getvalue().to_pybytes()
    table_root.write(rel, data)
    stamps.wrote(rel, len(data))
    return rel, len(data)


# The column types and field ids of converted files, by URI: read once, not every round (a
# converted file's name carries the digest of its schema, so the same name is the same schema;
# bounded, as a writer publishes for days).
_CONVERTED_FOOTERS: "OrderedDict[str, dict[str, tuple[pa.DataType, int | None]]]" = OrderedDict()
_CONVERTED_FOOTERS_MAX = 8192


def _converted_footer(table_root: LakeDir, rel: str) -> dict[str, tuple[pa.DataType, int | None]]:
    key = table_root.where(rel)
    stored = _CONVERTED_FOOTERS.get(key)
    if stored is None:
        with table_root.input_file(rel) as f:
            stored = {fld.name: (fld.type, field_id(fld)) for fld in pq.ParquetFile(f).schema_arrow}
        _CONVERTED_FOOTERS[key] = stored
        while len(_CONVERTED_FOOTERS) > _CONVERTED_FOOTERS_MAX:
            _CONVERTED_FOOTERS.popitem(last=False)
    return stored


def _earlier_conversion(table_root: LakeDir, part: PartRef, info: TableInfo, target: pa.Schema, rel: str,
                        stamps: FileStamps) -> tuple[str, int] | None:
    """A file ``part`` was converted to under an earlier schema, which the newest version names,
    that serves ``target`` as it is, by the rule a part is named in place by (``in_place``):
    every column of ``target`` under its physical name and field id in its Delta file type, or
    absent with a NULL origin default. A DROP COLUMN (the file has a column more, which readers
    skip) or an ADD COLUMN with a NULL default (a column less) so converts nothing again; a
    type change, a non-NULL default or a VIRTUAL generated column's expression does. (rel,
    size), or None."""
    if any(c.is_virtual_generated for c in info.columns):
        return None
    for earlier in stamps.siblings(rel):
        stamp = stamps.known(earlier)
        if stamp is None:
            continue
        stored = _converted_footer(table_root, earlier)
        by_id = {cid: name for name, (_, cid) in stored.items() if cid is not None}
        if _serves(by_id, stored, frozenset(), info, target):  # ZSTD, no dictionary: no LZ4 page
            return earlier, stamp.size
    return None


def table_root_relative(part: PartRef, table_id: int) -> str:
    """A part's path relative to the root ``tables/<table_id>`` of the Delta table naming it: its
    own path there, or, a part of another table id (a partition, a truncated table's
    successor), ``ids/<its table id>/<its path under its own table id>``."""
    prefix = f"tables/{part.table_id}/"
    if not part.path.startswith(prefix):
        raise ValueError(f"part {part.part_id} is at {part.path}, outside {prefix}")
    rel = part.path[len(prefix):]
    return rel if part.table_id == table_id else f"{TABLE_IDS_DIR}/{part.table_id}/{rel}"


def plan_partition(root: Path, table_root: LakeDir, info: TableInfo, ts: int, parts: Sequence[PartRef],
                   target: pa.Schema, settled: Sequence[tuple[PartRef, PartVisibility]] = (),
                   copy_parts: bool = False, root_id: int | None = None,
                   stamps: FileStamps | None = None) -> list[tuple[PlannedFile, PartVisibility]]:
    """The data files of one partition's parts at ts (``settled`` parts first, then ``parts``),
    with what the next round keeps of each; ``copy_parts``: the table root is not the store's
    directory, so a part named in place is copied there first (once: a part never changes).
    ``root_id``: the table id of ``table_root`` (default ``info.id``): a part of another id is
    linked or copied under it (module docstring). ``stamps``: the files under ``table_root``
    the publisher knows are there (location.FileStamps: no request for those)."""
    root_id = info.id if root_id is None else root_id
    stamps = FileStamps() if stamps is None else stamps
    everything = [p for p, _ in settled] + list(parts)
    if not everything:
        return []
    lo, hi = everything[0].partition_lo, everything[0].partition_hi
    if settled:
        seen = deleted_rows_after(root, info, ts, settled, parts, lo, hi)
    else:
        seen = deleted_rows(root, info, ts, everything, lo, hi)
    out = []
    for part, vis in zip(everything, seen):
        if in_place(root, part, info, target):
            rel = table_root_relative(part, root_id)
            # a part of another table id lives under that id's directory: linked (or copied) here
            if (copy_parts or part.table_id != root_id) and stamps.of(table_root, rel) is None:
                _copy_in(root, table_root, part, rel)
                stamps.wrote(rel, part.bytes)
            planned = PlannedFile(part.part_id, part.partition_id, rel, part.bytes, part.rows, vis.deleted, False)
        else:
            rel, size = convert(root, table_root, part, info, target, stamps)
            planned = PlannedFile(part.part_id, part.partition_id, rel, size, part.rows, vis.deleted, True)
        out.append((planned, vis))
    return out
