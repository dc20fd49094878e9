"""Errors of the scan planner. Each names the table, ts, regions or locks involved and says
what the user can do about it."""
from __future__ import annotations

from pyspark_theflash.errors import TheFlashError


class ScanError(TheFlashError):
    """Base class of the scan planner's errors."""


class ScanOptionError(ScanError):
    """A read option is missing or malformed (store, table, snapshot_ts, as_of, ...)."""


class SnapshotTsOutOfRangeError(ScanError):
    """The requested snapshot ts is below the GC safe point or ahead of the upstream TSO."""

    def __init__(self, ts: int, safe_point: int, now_ts: int, reason: str) -> None:
        from pyspark_theflash.scan.snapshot import describe_ts

        super().__init__(
            f"snapshot ts {ts} ({describe_ts(ts)}) is {reason}; readable snapshots are "
            f"[{safe_point}, {now_ts}] ({describe_ts(safe_point)} .. {describe_ts(now_ts)}): "
            "pick a snapshot_ts / as_of inside that range, or leave both unset to read the latest data"
        )
        self.ts = ts
        self.safe_point = safe_point
        self.now_ts = now_ts


class UpstreamUnreachableError(ScanError):
    """No upstream address was given or recorded, or the upstream did not answer."""


class TableNotReplicatedError(ScanError):
    """The store has no schema for the table the user asked for."""


class RegionWaitTimeoutError(ScanError):
    """The learner read did not see every region reach its read index in time."""

    def __init__(self, table: str, ts: int, timeout_s: float, lagging: list[tuple[int, int, int]]) -> None:
        shown = ", ".join(
            f"region {rid}: applied {applied} < needed {needed} (lag {needed - applied} entries)"
            if applied >= 0 else f"region {rid}: not in the store yet, needs index {needed}"
            for rid, applied, needed in lagging[:20]
        )
        more = f" and {len(lagging) - 20} more" if len(lagging) > 20 else ""
        super().__init__(
            f"reading {table} at ts {ts}: {len(lagging)} region(s) did not catch up within "
            f"{timeout_s:g}s ({shown}{more}); is the writer running and keeping up "
            "(theflash writer status)? Raise the option region_wait_timeout to wait longer, "
            "or read an older snapshot_ts"
        )
        self.table = table
        self.ts = ts
        self.lagging = lagging


class LockResolveTimeoutError(ScanError):
    """A lock met by the read could not be resolved in time (its transaction stays alive)."""


class SnapshotExpiredError(ScanError):
    """A partition was read after its lease expired and the data at its ts is gone."""


class SchemaNotCaughtUpError(ScanError):
    """A read with ``schema=as_of`` needs every schema change at or below its ts, and the
    store had not applied the binlog that far in time."""

    def __init__(self, table: str, ts: int, seen_until: int, timeout_s: float) -> None:
        super().__init__(
            f"reading {table} with schema=as_of at ts {ts}: within {timeout_s:g}s the store saw the binlog's "
            f"schema changes only up to ts {seen_until} (no region's resolved ts reached {ts}); is the writer "
            "running and keeping up (theflash writer status)? Raise the option region_wait_timeout, or read "
            "with schema=current"
        )
        self.table = table
        self.ts = ts
        self.seen_until = seen_until
