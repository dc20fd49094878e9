"""Errors of the embedded mini cluster. Each names the key, region or ts involved and says
what a caller can do about it."""
from __future__ import annotations

from pyspark_theflash.errors import TheFlashError


class UpstreamError(TheFlashError):
    """Base class of the mini cluster's errors."""


class RegionNotFoundError(UpstreamError):
    def __init__(self, region_id: int) -> None:
        super().__init__(
            f"region {region_id} not found (merged or removed); refresh the region map with regions()"
        )
        self.region_id = region_id


class RegionError(UpstreamError):
    """A split or merge request that does not fit the current region map."""


class KeyLockedError(UpstreamError):
    """A read or prewrite met another transaction's lock."""

    def __init__(self, key: bytes, lock_start_ts: int, primary: bytes, ttl_ms: int) -> None:
        super().__init__(
            f"key {key.hex()} is locked by the transaction started at {lock_start_ts} "
            f"(primary {primary.hex()}, ttl {ttl_ms} ms); check its status with check_txn_status "
            "and resolve the lock, or retry after the TTL"
        )
        self.key = key
        self.lock_start_ts = lock_start_ts
        self.primary = primary
        self.ttl_ms = ttl_ms


class WriteConflictError(UpstreamError):
    def __init__(self, key: bytes, start_ts: int, conflict_commit_ts: int) -> None:
        super().__init__(
            f"write conflict on key {key.hex()}: the transaction started at {start_ts} saw a "
            f"version committed at {conflict_commit_ts}; retry the transaction with a new start_ts"
        )
        self.key = key
        self.start_ts = start_ts
        self.conflict_commit_ts = conflict_commit_ts


class TxnRolledBackError(UpstreamError):
    def __init__(self, key: bytes, start_ts: int) -> None:
        super().__init__(
            f"the transaction started at {start_ts} was rolled back (key {key.hex()}); it cannot "
            "commit any more, retry it with a new start_ts"
        )
        self.key = key
        self.start_ts = start_ts


class CommitTsExpiredError(UpstreamError):
    """A commit below the lock's min_commit_ts (TiKV's CommitTsExpired)."""

    def __init__(self, key: bytes, start_ts: int, commit_ts: int, min_commit_ts: int) -> None:
        super().__init__(
            f"commit of key {key.hex()} of the transaction started at {start_ts} at ts {commit_ts} is below "
            f"its lock's min_commit_ts {min_commit_ts}; commit at or above it (an async-commit transaction "
            "commits at the greatest min_commit_ts of its locks)"
        )
        self.key = key
        self.start_ts = start_ts
        self.commit_ts = commit_ts
        self.min_commit_ts = min_commit_ts


class TxnNotFoundError(UpstreamError):
    def __init__(self, primary: bytes, start_ts: int) -> None:
        super().__init__(
            f"no lock and no commit or rollback record of the transaction started at {start_ts} "
            f"on primary {primary.hex()}"
        )
        self.primary = primary
        self.start_ts = start_ts


class GCTooEarlyError(UpstreamError):
    def __init__(self, ts: int, safe_point: int) -> None:
        super().__init__(
            f"read at ts {ts} is below the GC safe point {safe_point}: versions older than the "
            "safe point may be gone; read at a newer ts"
        )
        self.ts = ts
        self.safe_point = safe_point


class SchemaError(UpstreamError):
    """Unknown database/table/column, duplicate names, bad column definitions."""


class RowNotFoundError(UpstreamError):
    """update/delete of a row that does not exist at the transaction's start_ts."""


class DuplicateKeyError(UpstreamError):
    """insert of a row whose key exists at the transaction's start_ts."""


class TxnAbortedError(UpstreamError):
    """A transaction could not commit (conflict or lock) and was rolled back."""
