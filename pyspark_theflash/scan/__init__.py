"""Planning a snapshot read (Spark driver side, no Spark imports): snapshot ts, read lease,
learner read, lock resolution, partitions; and reading one planned partition (executors)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark_theflash.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from pyspark_theflash.scan.errors import (
        LockResolveTimeoutError,
        RegionWaitTimeoutError,
        ScanError,
        ScanOptionError,
        SnapshotExpiredError,
        SnapshotTsOutOfRangeError,
        TableNotReplicatedError,
        UpstreamUnreachableError,
    )
    from pyspark_theflash.scan.options import OPTION_DOCS, ScanOptions
    from pyspark_theflash.scan.planner import PlanStats, ScanPlan, plan
    from pyspark_theflash.scan.as_of import as_of_to_ts

# Each name imported from its module when first named (pyspark_theflash/lazy_exports.py).
if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(__name__, {
        "pyspark_theflash.scan.errors": (
            "LockResolveTimeoutError", "RegionWaitTimeoutError", "ScanError", "ScanOptionError",
            "SnapshotExpiredError", "SnapshotTsOutOfRangeError", "TableNotReplicatedError",
            "UpstreamUnreachableError"
        ),
        "pyspark_theflash.scan.options": ("OPTION_DOCS", "ScanOptions"),
        "pyspark_theflash.scan.planner": ("PlanStats", "ScanPlan", "plan"),
        "pyspark_theflash.scan.as_of": ("as_of_to_ts",),
    })

__all__ = [
    "LockResolveTimeoutError", "OPTION_DOCS", "PlanStats", "RegionWaitTimeoutError",
    "ScanError", "ScanOptionError", "ScanOptions", "ScanPlan", "SnapshotExpiredError",
    "SnapshotTsOutOfRangeError", "TableNotReplicatedError", "UpstreamUnreachableError", "as_of_to_ts", "plan",
]
