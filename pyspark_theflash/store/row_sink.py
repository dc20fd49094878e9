"""The row sink: the engine a flush's committed, decoded rows go to when it keeps them itself.

Apply (region caches, lock handling, prewrite–commit matching, decoding) is the store's and
engine-independent. A flush hands its rows — per table and schema version, with the hidden
columns ``_tidb_rowid``, ``_tidb_commit_ts``, ``_tidb_delmark`` — and the range tombstones it
persists to ``Store.row_sink`` inside its manifest edit, before the edit commits. An engine
that keeps its own copy of the rows (the ClickHouse engine) is such a sink.

A sink whose ``keeps_rows`` is true replaces the native part files: the flush writes none and
lists records instead, each a partition's share of the flush described by its statistics
alone (rows, bytes, handle and commit-ts bounds, column min/max; ``file`` empty). Read
planning estimates stream sizes and prunes ranges with them as with a file's, and compaction
merges them (``store.compaction``), asking the sink for ``count_versions`` when it can answer.

Contract: ``write_flush`` must be durable when it returns and idempotent for rows it already
holds (a crash after it and before the edit commits replays the same committed rows, maybe
grouped in other flushes: same handle, same commit ts, same values). Raising aborts the flush
(nothing of it is visible, the store refuses further writes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import pyarrow as pa


@dataclass
class BufferedRows:
    """One table's rows of one schema version that a flush writes: the buffer's chunks, the
    table's partitions as read for the flush, and the ids of the version's user columns."""

    table_id: int
    schema_version: int
    chunks: list[pa.Table]
    partitions: list[tuple[int, int | None, int | None]]
    column_ids: list[int]


class RowSink(Protocol):
    #: True: the sink holds the rows and the store writes no part files for them
    keeps_rows: bool

    def write_flush(self, version: int, tables: Sequence[BufferedRows],
                    tombstones: Sequence[tuple[bytes, bytes, str]]) -> None:
        """Take one flush's rows (``tables``) and range tombstones (start key, end key, why;
        each deletes rows of earlier flushes in that key range) as manifest version ``version``."""

    def count_versions(self, table_id: int, lo: int | bytes | None, hi: int | bytes | None,
                       through_version: int) -> int | None:
        """How many versions of the table with handles in [lo, hi) the sink holds from flushes
        at or before manifest version ``through_version`` (None: not known)."""
