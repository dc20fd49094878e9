"""``PartRef``: the one record of a store part, from the moment its file is written (or an
engine's record of rows is made) to every read of it.

A part the writer has just written is not listed yet: the manifest edit that lists it gives it
its ``part_id`` (SQLite's row id, from 1) and its ``added_version`` (the edit's version), so
until then both are ``UNLISTED`` (``manifest.NewPart``). A part read back from the manifest
(``StoreView.parts``) carries them, its partition's bounds and the range tombstones newer than
its data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark_theflash.schema.column_stats import ColumnStats
from pyspark_theflash.store.keyspace import Handle, HandleRange, span_overlaps

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo

# The ``part_id`` and ``added_version`` of a part not listed in the manifest yet: the manifest's
# part ids start at 1, and an edit that lists parts makes a new version (the first is 1).
UNLISTED = 0


@dataclass(frozen=True)
class PartRef:
    """A part: its file (or a record of rows the store's engine keeps), what the manifest records
    about it, and what a read needs of it. Picklable, paths relative to the store root."""

    part_id: int
    table_id: int
    partition_id: int
    partition_lo: Handle | None
    partition_hi: Handle | None
    kind: str
    path: str
    rows: int
    bytes: int
    min_handle: Handle | None
    max_handle: Handle | None
    min_commit_ts: int | None
    max_commit_ts: int | None
    single_version: bool
    delete_marks: int
    schema_version: int
    columns: tuple[tuple[int, str], ...]      # (column id, name) at the part's schema version
    stats: tuple[tuple[int, ColumnStats], ...] = ()
    tombstones: tuple[HandleRange, ...] = ()  # handle ranges deleted after the part was written
    added_version: int = UNLISTED
    checksum: str | None = None               # of the file's bytes (store.integrity); None: not recorded

    @property
    def in_engine(self) -> bool:
        """A record of rows the store's engine keeps (no file to read; ``txn_merge_tree.IN_ENGINE``)."""
        return not self.path

    def stats_by_name(self, table: "TableInfo") -> dict[str, ColumnStats]:
        by_id = dict(self.stats)  # a VIRTUAL column's are of the NULLs stored for it: never prune by them
        return {c.name: by_id[c.id] for c in table.columns if c.id in by_id and not c.is_virtual_generated}

    def overlaps(self, lo: Handle | None, hi: Handle | None) -> bool:
        if self.min_handle is None or self.max_handle is None:
            return False
        return span_overlaps(self.min_handle, self.max_handle, lo, hi)


