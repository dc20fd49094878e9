"""The data files of one table's Delta version at ts: every live part of the store, each with a
deletion vector of its rows not visible at ts.

A part holds versions of rows (``store/txn_merge_tree.py``): for a Delta reader, which reads
every row of a file it does not delete, the deletion vector of a part at ts is every row that
TheFlash's own read at ts does not return: versions above ts, versions a newer one at or below
ts replaces (in this part or another of the partition), delete marks, repeats of a version
(capture delivers at least once), rows outside the partition's handle range, rows under a range
tombstone newer than the part. The choice is the store's own (``PartsReader.visible_rows`` then
``newest_visible``), made on the hidden columns only, in Arrow and NumPy: one sort per partition.

A part is named **in place** (its path relative to the table root, ``p<partition>/stable-….parquet``)
when it is Parquet and holds every column of the table's current schema under its current name
and in its Delta file type (``lake.types``). Otherwise it is **converted**: its rows, in the
same order (so the deletion vector's row indexes stay right), conformed to the current schema
the way a read conforms them (renamed by column id, cast, origin defaults for columns added after
it) and cast to the Delta file types, are written once to ``lake/part-<id>-<schema>.parquet``.
Arrow IPC deltas are always converted: no Delta reader reads Arrow IPC (docs/delta.md weighs
this against compacting first)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pyspark_theflash.lake.types import file_schema
from pyspark_theflash.store.parts import PartRef, PartsReader, newest_visible
from pyspark_theflash.store.txn_merge_tree import HIDDEN_NAMES, is_ipc

CONVERTED_DIR = "lake"
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


def schema_tag(schema: pa.Schema) -> str:
    """A short digest of a Delta file schema: a converted file's name carries it, so a schema
    change converts again instead of reusing a file of other columns."""
    return hashlib.sha256(schema.to_string().encode()).hexdigest()[:12]


_file_types: dict[str, dict[str, pa.DataType]] = {}


def _stored_types(path: Path) -> dict[str, pa.DataType]:
    key = str(path)
    if key not in _file_types:  # a part file never changes once listed: its footer is read once
        _file_types[key] = {f.name: f.type for f in pq.read_schema(path)}
    return _file_types[key]


def in_place(root: Path, part: PartRef, info: Any, target: pa.Schema) -> bool:
    """Whether a Delta version may name ``part``'s own file (see the module's docstring)."""
    if is_ipc(part.path) or part.in_engine:
        return False
    names_by_id = dict(part.columns)
    by_name = {c.name: c for c in info.columns}
    if any(names_by_id.get(by_name[f.name].id) != f.name for f in target):
        return False
    stored = _stored_types(root / part.path)
    return all(stored.get(f.name) == f.type for f in target)


def deleted_rows(root: Path, info: Any, ts: int, parts: Sequence[PartRef], lo: Any, hi: Any) -> list[np.ndarray]:
    """Per part of one partition (bounds [lo, hi)), the sorted row indexes a read at ts does not return."""
    reader = PartsReader(root, info, ts, (lo, hi), [], None, HIDDEN_NAMES, _BATCH_ROWS)
    visible = []
    for i, part in enumerate(parts):
        t = reader.all_versions(part)
        t = t.append_column(_PART, pa.array(np.full(t.num_rows, i, dtype=np.int32)))
        t = t.append_column(_ROW, pa.array(np.arange(t.num_rows, dtype=np.int64)))
        visible.append(reader.visible_rows(part, t))
    chosen = newest_visible(pa.concat_tables(visible)) if visible else None
    out = []
    for i, part in enumerate(parts):
        keep = np.zeros(part.rows, dtype=bool)
        if chosen is not None and chosen.num_rows:
            which = chosen.column(_PART).to_numpy() == i
            keep[chosen.column(_ROW).to_numpy()[which]] = True
        out.append(np.flatnonzero(~keep).astype(np.uint64))
    return out


def convert(root: Path, table_root: Path, part: PartRef, info: Any, target: pa.Schema) -> tuple[str, int]:
    """``part``'s rows in the current schema and Delta file types, written once to
    ``lake/part-<id>-<schema>.parquet`` under the table root; (relative path, size)."""
    rel = f"{CONVERTED_DIR}/part-{part.part_id}-{schema_tag(target)}.parquet"
    path = table_root / rel
    if path.exists():
        return rel, path.stat().st_size
    reader = PartsReader(root, info, 0, (None, None), [f.name for f in target], None, (), _BATCH_ROWS)
    t = reader.all_versions(part).select([f.name for f in target])
    if t.num_rows != part.rows:
        raise ValueError(f"part {part.part_id} ({part.path}) read {t.num_rows} rows, the manifest says {part.rows}")
    t = t.cast(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    pq.write_table(t, str(tmp), compression=CONVERTED_COMPRESSION, use_dictionary=False, row_group_size=_BATCH_ROWS)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return rel, path.stat().st_size


def table_root_relative(part: PartRef) -> str:
    """A part's path relative to its table's root ``tables/<table_id>``."""
    prefix = f"tables/{part.table_id}/"
    if not part.path.startswith(prefix):
        raise ValueError(f"part {part.part_id} is at {part.path}, outside {prefix}")
    return part.path[len(prefix):]


def plan_partition(root: Path, table_root: Path, info: Any, ts: int, parts: Sequence[PartRef],
                   target: pa.Schema) -> list[PlannedFile]:
    """The data files of one partition's parts at ts."""
    if not parts:
        return []
    lo, hi = parts[0].partition_lo, parts[0].partition_hi
    deleted = deleted_rows(root, info, ts, parts, lo, hi)
    out = []
    for part, rows in zip(parts, deleted):
        if in_place(root, part, info, target):
            out.append(PlannedFile(part.part_id, part.partition_id, table_root_relative(part), part.bytes, part.rows,
                                   rows, False))
        else:
            rel, size = convert(root, table_root, part, info, target)
            out.append(PlannedFile(part.part_id, part.partition_id, rel, size, part.rows, rows, True))
    return out
