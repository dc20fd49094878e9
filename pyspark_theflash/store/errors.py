"""Errors the store raises on purpose. Each message names the region, key, ts, table or file
involved and says what to do about it."""
from __future__ import annotations

from pyspark_theflash.errors import TheFlashError


class StoreError(TheFlashError):
    """Base class of the store's errors."""


class UnknownTableError(StoreError):
    """A batch holds committed rows of a table the store has no schema for (and does not
    ignore). Nothing of the batch was applied: fetch the schema, call ``put_schema`` (or
    ``ignore_table``) and write the same batch again."""

    def __init__(self, table_id: int, region_id: int | None = None) -> None:
        self.table_id = table_id
        self.region_id = region_id
        where = f" (rows in region {region_id})" if region_id is not None else ""
        super().__init__(
            f"table {table_id} has no schema in the store{where}; nothing of the batch was "
            f"applied: call put_schema(db, table_info) or ignore_table({table_id}, db, name) "
            "and write the batch again"
        )


class UnknownRegionError(StoreError):
    """A batch holds an event of a region the store has never been introduced to (no snapshot
    of it and no split that created it): its range is unknown, so nothing can be applied —
    inventing a range would let it overlap regions the store knows. Nothing of the batch was
    applied. ``snapshot_region``: the region whose snapshot introduces it (for a merge of an
    unknown source, the target that holds its keys now)."""

    def __init__(self, region_id: int, index: int, what: str, snapshot_region: int | None = None) -> None:
        self.region_id = region_id
        self.index = index
        self.snapshot_region = region_id if snapshot_region is None else snapshot_region
        super().__init__(
            f"{what} of region {region_id} (index {index}), which the store has never seen: no snapshot or split "
            "introduced it (a split that raced the store's bootstrap, or a binlog that does not start with the "
            f"region); nothing of the batch was applied: apply the snapshot of region {self.snapshot_region} "
            "(the writer fetches it with --upstream) and write the batch again"
        )


class MalformedRecordKeyError(StoreError):
    """A record key of an int-handle table is not ``t{id}_r`` + 8 handle bytes."""

    def __init__(self, table_id: int, region_id: int | None = None) -> None:
        self.table_id = table_id
        self.region_id = region_id
        where = f" in region {region_id}" if region_id is not None else ""
        super().__init__(
            f"table {table_id} has an int handle, but a record key of it{where} is not 19 bytes "
            "(t + table id + _r + 8-byte handle); nothing of the batch was applied. If the table "
            "was re-created with a clustered primary key, the store holds an outdated schema: "
            "fetch the table info again and call put_schema"
        )


class CommitWithoutPrewriteError(StoreError):
    """A COMMIT arrived for a (key, start_ts) the region never prewrote."""

    def __init__(self, region_id: int, key: bytes, described_key: str, start_ts: int,
                 commit_ts: int, index: int) -> None:
        self.region_id = region_id
        self.key = key
        self.start_ts = start_ts
        self.commit_ts = commit_ts
        super().__init__(
            f"region {region_id} index {index}: COMMIT of {described_key} (key {key.hex()}) "
            f"start_ts {start_ts} commit_ts {commit_ts} has no matching PREWRITE; the binlog "
            "is missing events of this region (replay it from an earlier position, or "
            "re-seed the region with a snapshot)"
        )


class ReadOnlyStoreError(StoreError):
    def __init__(self, path: str, operation: str) -> None:
        super().__init__(f"store {path} is open read-only; {operation} needs Store.open(path) "
                         "without readonly=True, in the single writer process")


class StoreFormatError(StoreError):
    """The directory is not a store of a version this code can read."""


class EditConflictError(StoreError):
    """A manifest edit found the manifest other than it assumed (``ManifestEdit.expect``): a
    part it replaces is gone, a partition changed under it. Nothing of it was applied; the
    caller plans again (compaction) or takes its partitions again (flush)."""


class StoreNotFoundError(StoreError):
    def __init__(self, path: str) -> None:
        super().__init__(f"no store at {path} (no manifest.db): check the path, or create the store by "
                         f"running its writer, `theflash writer run --binlog ... --store {path}`")


def closest_tables(name: object, known: "list[str]", n: int = 3) -> "list[str]":
    """The names in ``known`` (db.table) closest to ``name``, best first: a misspelt table, or
    the table part alone when the database is left out or wrong."""
    import difflib

    want = str(name).split(" at ts ")[0].strip().lower()
    by_lower = {k.lower(): k for k in known}
    found = difflib.get_close_matches(want, list(by_lower), n=n, cutoff=0.8)
    if not found:
        bare = want.rsplit(".", 1)[-1]
        tails = {k.rsplit(".", 1)[-1] for k in by_lower}
        for tail in difflib.get_close_matches(bare, sorted(tails), n=n, cutoff=0.6):
            found += sorted(k for k in by_lower if k.rsplit(".", 1)[-1] == tail)
    return [by_lower[k] for k in found[:n]]


def did_you_mean(name: object, known: "list[str]") -> str:
    """``"; did you mean a.b or a.c?"`` for the closest of ``known``, or ``""``."""
    close = closest_tables(name, known)
    return f"; did you mean {' or '.join(close)}?" if close else ""


class UnknownTableNameError(StoreError):
    def __init__(self, name: object, known: list[str]) -> None:
        shown = ", ".join(known[:20]) or "none"
        super().__init__(f"table {name!r} is not in the store{did_you_mean(name, known)} (tables: {shown}); use "
                         "'db.table' or the numeric table id")
        self.name = name
        self.closest = closest_tables(name, known)


class LeaseBelowSafePointError(StoreError):
    def __init__(self, ts: int, safe_point: int) -> None:
        self.ts = ts
        self.safe_point = safe_point
        super().__init__(f"cannot pin ts {ts}: the store's GC safe point is {safe_point}, "
                         "versions below it may be gone; read at a ts >= the safe point")


class LeaseNotFoundError(StoreError):
    def __init__(self, lease_id: int) -> None:
        super().__init__(f"lease {lease_id} does not exist (released, or expired and "
                         "removed); acquire a new lease and restart the read")


class PartFileError(StoreError):
    """A part file listed by the manifest is missing or unreadable. ``part_id``: the manifest's
    part (None when the caller read a file by its path alone)."""

    def __init__(self, path: str, reason: str, part_id: int | None = None) -> None:
        self.path = path
        self.part_id = part_id
        self.reason = reason
        part = "" if part_id is None else f" (part {part_id})"
        super().__init__(f"part file {path}{part}: {reason}; nothing of it was returned. Run `theflash store "
                         "verify <store>` to list every damaged part, then restore the file from a backup of the "
                         "store or rebuild the store (move the directory aside and replay the binlog)")


class PartMissingError(PartFileError):
    """A part file the manifest lists live is not on disk."""


class PartDamagedError(PartFileError):
    """A part file is on disk but is not what was written: truncated, extended, or its bytes do not
    parse (a damaged Parquet footer or page, an Arrow IPC file cut short)."""


class PartChecksumError(PartDamagedError):
    """A part file's bytes do not have the checksum its manifest edit recorded: it changed on disk
    after it was written. ``expected``/``actual``: the recorded and the computed checksum."""

    def __init__(self, path: str, part_id: int | None, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(path, f"checksum mismatch: the manifest recorded {expected}, the file's bytes give "
                         f"{actual} (the file changed on disk after it was written)", part_id)


class ManifestDamagedError(StoreError):
    """The manifest (``manifest.db``) cannot be read as the store's manifest: damaged, truncated, not
    a database, or its schema is not the one this code writes (a damaged schema page). Nothing can be
    read from the store until it is restored. ``found``: SQLite's error, or what a check of the
    manifest found (its schema, its pages); ``cause``: SQLite's error, None when a check found it
    (an exception only: error chains are walked through ``cause``, ``pyspark_theflash.errors``)."""

    def __init__(self, path: str, cause: BaseException | str) -> None:
        self.path = path
        self.found = str(cause)
        self.cause: BaseException | None = cause if isinstance(cause, BaseException) else None
        super().__init__(f"the store's manifest {path} cannot be read ({cause}); nothing was read from the store. "
                         "Restore manifest.db (with its -wal file) from a backup of the store, or rebuild the store: "
                         "move the directory aside and replay the binlog from its start")


# SQLite's result codes for a database file that is not what it wrote (``sqlite3.Error.sqlite_errorname``).
_DAMAGE_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR_SHORT_READ")
# What SQLite says when a statement of this code meets a manifest whose schema lost a table or a
# column this code created, or whose header names a schema format SQLite never writes: only a
# damaged schema page or header does that to a manifest that opened.
_SCHEMA_DAMAGE = ("no such table", "no such column", "has no column named", "malformed database schema",
                  "unsupported file format")


def manifest_damage(exc: BaseException) -> bool:
    """Is ``exc`` SQLite reporting a damaged manifest, not a busy lock, a full disk or a read-only
    file? SQLite raises its plain ``DatabaseError`` for "file is not a database" and "database disk
    image is malformed"; a result code of corruption (``SQLITE_CORRUPT*``, ``SQLITE_NOTADB``, a short
    read) is damage whatever class carries it; and an ``OperationalError`` naming a table or column
    the manifest should have (``table leases has no column named expires_at``) is a damaged schema."""
    import sqlite3

    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    if type(exc) is sqlite3.DatabaseError:
        return True
    code = str(getattr(exc, "sqlite_errorname", "") or "")
    if code.startswith(_DAMAGE_CODES):
        return True
    return isinstance(exc, sqlite3.OperationalError) and any(m in str(exc) for m in _SCHEMA_DAMAGE)


class RowsInEngineError(StoreError):
    """A file read of rows the store's engine keeps (no part files to read)."""

    def __init__(self, root: str, table: str) -> None:
        super().__init__(f"store {root} keeps the rows of {table} in its engine, not in part files: read them "
                         "through the engine (engine.open_engine(store).scan / a read session, `theflash serve`, "
                         "or spark.read.format('theflash'))")


class UnsupportedTableError(StoreError):
    def __init__(self, table_id: int, reason: str) -> None:
        super().__init__(f"table {table_id}: {reason}")


class PredicateError(StoreError):
    """A filter expression that cannot be built, serialised or bound to a table."""


class StoreFencedError(StoreError):
    """An edit of the store was refused by its fence (``Store.set_fence``): this process may no
    longer edit the store (its writer lost the write latch to another). Nothing of the edit
    is visible; the message is the fence's own."""

    def __init__(self, path: str, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(f"{cause} (an edit of store {path} was refused: nothing of it is visible)")


class FlushFailedError(StoreError):
    """The durable step of a pipelined flush (``Store.flush(wait=False)``: fsync of its part
    files and directories, then the manifest edit) failed. Nothing of that flush became
    visible; the store's memory has moved past it, so the store refuses every further write."""

    def __init__(self, path: str, position: tuple[int, int] | None, cause: BaseException) -> None:
        self.position = position
        self.cause = cause
        upto = "" if position is None else f" (binlog up to {position[0]}:{position[1]})"
        super().__init__(
            f"store {path}: a flush{upto} failed while making it durable: {cause!r}. Nothing of it is "
            "visible and the store refuses further writes: fix the cause (disk space, permissions), "
            "then reopen the store; a restarted writer replays the binlog from the persisted position"
        )
