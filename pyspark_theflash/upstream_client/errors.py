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
    """ERROR 1062 (23000): an insert of a row whose primary key exists at the transaction's
    start_ts, or twice in one batch. ``table`` ("db.t") and ``key`` (the key columns' values,
    or the handle) name it; ``row`` is the row's index in the input when known."""

    def __init__(self, table: str, key: object, row: int | None = None, why: str = "") -> None:
        text = "-".join(str(v) for v in key) if isinstance(key, tuple) else str(key)
        where = f" (row index {row})" if row is not None else ""
        super().__init__(
            f"Duplicate entry '{text}' for key '{table.partition('.')[2]}.PRIMARY' of {table}{where}"
            + (f": {why}" if why else "") + " (TiDB error 1062); insert each key once, or update the existing row"
        )
        self.table = table
        self.key = key
        self.row = row


class TxnAbortedError(UpstreamError):
    """A transaction could not commit (conflict or lock) and was rolled back."""


class AlreadyExistError(UpstreamError):
    """TiKV's AlreadyExist: an insert's key (a Percolator Insert mutation, which must not
    exist) has a visible value at the transaction's start_ts. The table layer turns it into
    a DuplicateKeyError naming the table and the key's values."""

    def __init__(self, key: bytes, start_ts: int) -> None:
        super().__init__(f"key {key.hex()} already exists at ts {start_ts}; an insert must not overwrite a row")
        self.key = key
        self.start_ts = start_ts


class InvalidValueError(UpstreamError):
    """A value TiDB's strict SQL mode refuses: the statement fails and writes nothing.

    ``table`` ("db.t"), ``column``, ``row`` (0-based index of the row in the input: the Arrow
    table of a bulk insert, or the transaction's n-th written row), ``value`` and TiDB's
    error ``code`` (MySQL error number) say exactly what to fix."""

    code = 0
    tidb_text = "Incorrect value"

    def __init__(self, table: str, column: str, row: int, value: object, why: str) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        super().__init__(
            f"{self.tidb_text} for column '{column}' of {table} at row index {row} (value {shown}): {why} "
            f"(TiDB error {self.code} in strict SQL mode)"
        )
        self.table = table
        self.column = column
        self.row = row
        self.value = value


class GeneratedValueError(InvalidValueError):
    """ERROR 3105 (HY000): a value given for a generated column, or a generated column whose
    expression gives a value its type cannot hold (TiDB computes them on insert and update)."""

    code = 3105
    tidb_text = "Value not allowed"


class DataTooLongError(InvalidValueError):
    """ERROR 1406 (22001): a string longer than its CHAR/VARCHAR/TEXT/BINARY column, or BIT(n)
    bits beyond n."""

    code = 1406
    tidb_text = "Data too long"


class OutOfRangeValueError(InvalidValueError):
    """ERROR 1264 (22003): a number outside its integer type's range, or a DECIMAL(p,s) whose
    integer part has more than p - s digits."""

    code = 1264
    tidb_text = "Out of range value"


class IncorrectValueError(InvalidValueError):
    """ERROR 1292/1366/1265: a value the column's type cannot hold at all (an ENUM or SET
    member that is not declared, text that is not a number, a date beyond 9999, a TIMESTAMP
    outside 1970-2038)."""

    code = 1366
    tidb_text = "Incorrect value"


class BadNullError(InvalidValueError):
    """ERROR 1048 (23000): NULL in a NOT NULL column."""

    code = 1048
    tidb_text = "Column cannot be null"


class NoDefaultValueError(InvalidValueError):
    """ERROR 1364 (HY000): an insert leaves out a NOT NULL column that has no default."""

    code = 1364
    tidb_text = "Field doesn't have a default value"


class PDError(UpstreamError):
    """No PD member answered, or PD refused a call."""


class TiKVError(UpstreamError):
    """A TiKV store refused a call or kept answering with region errors."""
