"""The store engine: region caches, TxnMergeTree partitions and parts, MVCC snapshot reads,
compaction and GC, under a SQLite manifest. See docs/store.md."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark_theflash.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from pyspark_theflash.schema.column_stats import ColumnStats
    from pyspark_theflash.store.compaction import CompactionResult, gc_versions
    from pyspark_theflash.store.errors import (
        CommitWithoutPrewriteError,
        FlushFailedError,
        LeaseBelowSafePointError,
        LeaseNotFoundError,
        MalformedRecordKeyError,
        ManifestDamagedError,
        PartChecksumError,
        PartDamagedError,
        PartFileError,
        PartMissingError,
        PredicateError,
        ReadOnlyStoreError,
        StoreError,
        StoreFormatError,
        StoreNotFoundError,
        UnknownTableError,
        UnknownTableNameError,
        UnsupportedTableError,
    )
    from pyspark_theflash.store.leases import Lease, Leases
    from pyspark_theflash.store.predicate import Expr, col
    from pyspark_theflash.store.part_ref import PartRef
    from pyspark_theflash.store.parts import newest_visible
    from pyspark_theflash.store.read import read_parts
    from pyspark_theflash.store.store import FlushResult, PendingFlush, Store, StoreOptions, WriteResult
    from pyspark_theflash.store.txn_merge_tree import COMMIT_TS, DELMARK, ROWID
    from pyspark_theflash.store.views import LockInfo, PartitionInfo, RegionState, StoreView

# Each name imported from its module when first named (pyspark_theflash/lazy_exports.py).
if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(__name__, {
        "pyspark_theflash.schema.column_stats": ("ColumnStats",),
        "pyspark_theflash.store.compaction": ("CompactionResult", "gc_versions"),
        "pyspark_theflash.store.errors": (
            "CommitWithoutPrewriteError", "FlushFailedError", "LeaseBelowSafePointError", "LeaseNotFoundError",
            "MalformedRecordKeyError", "ManifestDamagedError", "PartChecksumError", "PartDamagedError",
            "PartFileError", "PartMissingError", "PredicateError", "ReadOnlyStoreError", "StoreError",
            "StoreFormatError", "StoreNotFoundError", "UnknownTableError", "UnknownTableNameError",
            "UnsupportedTableError"
        ),
        "pyspark_theflash.store.leases": ("Lease", "Leases"),
        "pyspark_theflash.store.predicate": ("Expr", "col"),
        "pyspark_theflash.store.part_ref": ("PartRef",),
        "pyspark_theflash.store.parts": ("newest_visible",),
        "pyspark_theflash.store.read": ("read_parts",),
        "pyspark_theflash.store.store": ("FlushResult", "PendingFlush", "Store", "StoreOptions", "WriteResult"),
        "pyspark_theflash.store.txn_merge_tree": ("COMMIT_TS", "DELMARK", "ROWID"),
        "pyspark_theflash.store.views": ("LockInfo", "PartitionInfo", "RegionState", "StoreView"),
    })

__all__ = [
    "COMMIT_TS", "DELMARK", "ROWID", "ColumnStats", "CommitWithoutPrewriteError", "CompactionResult",
    "Expr", "FlushFailedError", "FlushResult", "Lease", "LeaseBelowSafePointError", "LeaseNotFoundError", "MalformedRecordKeyError", "Leases", "LockInfo",
    "ManifestDamagedError", "PartChecksumError", "PartDamagedError", "PartFileError", "PartMissingError", "PartRef", "PendingFlush", "PartitionInfo", "PredicateError", "ReadOnlyStoreError", "RegionState",
    "Store", "StoreError", "StoreFormatError", "StoreNotFoundError", "StoreOptions", "StoreView",
    "UnknownTableError", "UnknownTableNameError", "UnsupportedTableError", "WriteResult", "col",
    "gc_versions", "newest_visible", "read_parts",
]
