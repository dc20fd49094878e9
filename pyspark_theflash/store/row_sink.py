"""The row sink: where a flush's committed, decoded rows go besides the native delta parts.

Apply (region caches, lock handling, prewrite–commit matching, decoding) is the store's and
engine-independent. A flush hands its rows — per table and schema version, with the hidden
columns ``_tidb_rowid``, ``_tidb_commit_ts``, ``_tidb_delmark`` — and the range tombstones it
persists to ``Store.row_sink`` inside its manifest edit, before the edit commits. An engine
that keeps its own copy of the rows (the ClickHouse engine) is such a sink.

Contract: ``write_flush`` must be durable when it returns and idempotent for rows it already
holds (a crash after it and before the edit commits replays the same committed rows, maybe
grouped in other flushes: same handle, same commit ts, same values). Raising aborts the flush
(nothing of it is visible, the store refuses further writes).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:
    from pyspark_theflash.store.flush import BufferedRows


class RowSink(Protocol):
    def write_flush(self, version: int, tables: "Sequence[BufferedRows]",
                    tombstones: Sequence[tuple[bytes, bytes, str]]) -> None:
        """Take one flush's rows (``tables``) and range tombstones (start key, end key, why;
        each deletes rows of earlier flushes in that key range) as manifest version ``version``."""
