"""A store's tunables (``StoreOptions``): flush thresholds, partition limits, part layout,
memory bounds, lease and retention times. Documented in docs/store.md."""
from __future__ import annotations

from dataclasses import dataclass

from pyspark_theflash.store.parts import DEFAULT_BATCH_ROWS
from pyspark_theflash.store.txn_merge_tree import PART_COMPRESSION


@dataclass(frozen=True)
class StoreOptions:
    flush_rows: int = 500_000            # write() flushes when this many committed rows wait
    flush_bytes: int = 128 << 20         # ... or this many bytes of them
    flush_deadline_s: float = 2.0        # flush_due() once the oldest unflushed change is this old
    partition_max_rows: int = 2_000_000  # compaction splits a partition beyond this
    partition_max_bytes: int = 256 << 20
    row_group_rows: int = 64 * 1024      # stable parts' Parquet row groups
    part_compression: str = PART_COMPRESSION  # stable parts' Parquet codec: lz4 (fast reads) or zstd (small)
    prewrite_memory_bytes: int = 256 << 20  # prewritten values beyond this spill to disk
    compact_min_deltas: int = 4          # background compaction merges partitions with this many deltas
    delta_merge_min: int = 8             # merge_deltas() merges a partition's deltas once it has this many
    read_batch_rows: int = DEFAULT_BATCH_ROWS
    scan_lease_ttl_s: float = 600.0
    # Removed parts' files outlive the last lease that pins them by this long (see
    # compaction.delete_obsolete_files): slack for a reader whose lease renewal comes late.
    removed_file_retention_s: float = 60.0
    busy_timeout_ms: int = 30_000
    # Where the stable parts live besides the local disk (store.remote): a directory or
    # s3://bucket/prefix; None keeps them local only. Once a store has one it keeps it.
    parts_remote: str | None = None
    # With ``parts_remote``: the local copies of stable parts kept beyond this are deleted (a read
    # fetches a part again), least recently used first.
    local_parts_bytes: int = 8 << 30
