"""A store's tunables (``StoreOptions``): flush thresholds, partition limits, part layout,
memory bounds, lease and retention times. Documented in docs/store.md."""
from __future__ import annotations

from dataclasses import dataclass

# Constants of the store's layout live here, not beside the code that uses them: this module is
# imported by every command's option parsing (the writer's CLI, WriterOptions), and the parts
# reader's and TxnMergeTree's modules load pyarrow.compute and the Parquet reader (~0.5 s).

# Parquet codec of stable parts (``StoreOptions.part_compression``). Every read of a part is
# the store's own (pyarrow, behind the read service), and under live writes a stream's cost is
# mostly decoding: LZ4_RAW decompresses a part's columns about 25% faster than ZSTD (a string
# column twice as fast) for files about twice the size, the trade TiFlash and ClickHouse make
# by default for their column files. Spark's Parquet reader never reads parts (parquet-java
# 1.17 in Spark 4.2.1 fails on large LZ4_RAW dictionary pages, issue 3478, which mattered while
# it did); "zstd" is the choice for a store on a file system where bytes cost more than CPU.
PART_COMPRESSION = "lz4"
DEFAULT_BATCH_ROWS = 64 * 1024  # rows per batch a read of parts yields


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
