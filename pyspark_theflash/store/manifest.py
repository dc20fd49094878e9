"""The manifest: the store's one source of truth, an SQLite database (WAL mode) in
``<store>/manifest.db``.

Every change of persisted state — a flush, a compaction, a partition split, GC, a schema —
is one *edit*: a ``ManifestEdit`` value (parts added and removed, partitions, region states,
locks, tombstones, table versions, counters), applied by ``apply_edit`` in one SQLite write
transaction that also bumps the manifest version, as LevelDB's ``VersionEdit`` is applied by
``LogAndApply``. Readers take a consistent view by reading inside one SQLite read
transaction. Layout and invariants are described in docs/store.md.
"""
from __future__ import annotations

import abc
import contextlib
import functools
import json
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, Union

import numpy as np

from pyspark_theflash.store.errors import (
    EditConflictError,
    ManifestDamagedError,
    StoreFormatError,
    StoreNotFoundError,
    manifest_damage,
)
from pyspark_theflash.store.keyspace import Handle
from pyspark_theflash.store.predicate import stats_to_json

if TYPE_CHECKING:
    from pyspark_theflash.store.part_ref import PartRef

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.db"
# Files the writer keeps at the store's root beside the manifest and the latch database (its
# pid file while it runs, written through a temporary; the error that ended its last run):
# part of a healthy store, never parts.
WRITER_PID_FILE = "writer.pid"
WRITER_ERROR_FILE = "writer.last-error"
AUXILIARY_FILES = frozenset({WRITER_PID_FILE, WRITER_PID_FILE + ".tmp", WRITER_ERROR_FILE})

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value
);
CREATE TABLE IF NOT EXISTS tables (
    table_id       INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    db             TEXT NOT NULL,
    name           TEXT NOT NULL,
    info           TEXT NOT NULL,      -- TiDB table info JSON
    added_version  INTEGER NOT NULL,
    PRIMARY KEY (table_id, schema_version)
);
CREATE TABLE IF NOT EXISTS table_versions (
    table_id       INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    commit_ts      INTEGER NOT NULL,   -- rows committed at or after it (until the next version) decode with it
    PRIMARY KEY (table_id, schema_version)
);
CREATE TABLE IF NOT EXISTS table_lifetimes (
    table_id        INTEGER PRIMARY KEY,
    created_ts      INTEGER NOT NULL,  -- CREATE TABLE / TRUNCATE commit ts; 0: before the store's first event
    retired_ts      INTEGER,           -- DROP TABLE / TRUNCATE commit ts; NULL: live
    reason          TEXT,
    retired_version INTEGER            -- the manifest version that retired it
);
CREATE TABLE IF NOT EXISTS ignored_tables (
    table_id INTEGER PRIMARY KEY,
    db       TEXT NOT NULL,
    name     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS regions (
    region_id      INTEGER PRIMARY KEY,
    start_key      BLOB NOT NULL,      -- PD-encoded, inclusive; empty = -inf
    end_key        BLOB NOT NULL,      -- PD-encoded, exclusive; empty = +inf
    epoch_version  INTEGER NOT NULL,
    conf_ver       INTEGER NOT NULL,
    applied_index  INTEGER NOT NULL,
    resolved_ts    INTEGER NOT NULL,
    state          TEXT NOT NULL,      -- normal | merged | removed
    snapshot_index INTEGER NOT NULL,   -- index of the last snapshot applied (0 = none)
    orphan_until_ts INTEGER NOT NULL DEFAULT 0  -- commits of the snapshot's writes may come up to this ts
);
CREATE TABLE IF NOT EXISTS partitions (
    table_id      INTEGER NOT NULL,
    partition_id  INTEGER NOT NULL,
    lo            INTEGER,             -- inclusive handle; NULL = -inf
    hi            INTEGER,             -- exclusive handle; NULL = +inf
    added_version INTEGER NOT NULL,
    PRIMARY KEY (table_id, partition_id)
);
CREATE TABLE IF NOT EXISTS parts (
    part_id         INTEGER PRIMARY KEY,
    table_id        INTEGER NOT NULL,
    partition_id    INTEGER NOT NULL,
    kind            TEXT NOT NULL,     -- delta | stable
    file            TEXT NOT NULL,     -- relative to the store root
    rows            INTEGER NOT NULL,
    bytes           INTEGER NOT NULL,
    min_handle      INTEGER,
    max_handle      INTEGER,
    min_commit_ts   INTEGER,
    max_commit_ts   INTEGER,
    single_version  INTEGER NOT NULL,  -- 1: at most one version per handle
    delete_marks    INTEGER NOT NULL,  -- number of delete-mark rows
    schema_version  INTEGER NOT NULL,
    data_version    INTEGER NOT NULL,  -- range tombstones newer than this apply to the part
    added_version   INTEGER NOT NULL,
    removed_version INTEGER,           -- NULL while live
    stats           TEXT NOT NULL,     -- {column: [min, max, null_count]} for pruning
    columns         TEXT,              -- [[id, file column], ...] when not its schema version's columns
    removed_at      REAL,              -- unix seconds of removal (NULL while live, or removed before it was kept)
    checksum        TEXT               -- crc32:xxxxxxxx of the file's bytes (store.integrity); NULL: written before
                                       -- checksums were recorded, or a record of rows an engine keeps (no file)
);
CREATE INDEX IF NOT EXISTS parts_live ON parts (table_id, partition_id, removed_version);
CREATE TABLE IF NOT EXISTS range_tombstones (
    tombstone_id INTEGER PRIMARY KEY,
    start_key    BLOB NOT NULL,        -- PD-encoded region range that was deleted
    end_key      BLOB NOT NULL,
    version      INTEGER NOT NULL,     -- parts with data_version < version lose the range
    reason       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS locks (
    region_id   INTEGER NOT NULL,
    key         BLOB NOT NULL,         -- raw TiDB key
    start_ts    INTEGER NOT NULL,
    primary_key BLOB NOT NULL,
    op          INTEGER NOT NULL,      -- binlog OpType
    ttl         INTEGER NOT NULL,
    value       BLOB,                  -- the prewritten row value
    table_id    INTEGER,               -- decoded from key when it is a record key
    handle      INTEGER,
    PRIMARY KEY (region_id, key, start_ts)
);
CREATE INDEX IF NOT EXISTS locks_by_handle ON locks (table_id, handle);
CREATE TABLE IF NOT EXISTS leases (
    lease_id         INTEGER PRIMARY KEY,
    ts               INTEGER NOT NULL,
    manifest_version INTEGER NOT NULL,
    holder           TEXT NOT NULL,
    expires_at       REAL NOT NULL     -- unix seconds
);
"""


def manifest_path(root: str | Path) -> Path:
    return Path(root) / MANIFEST_FILE


class ManifestConnection(sqlite3.Connection):
    """A connection to a store's manifest. ``fence``, when set, is called inside every write
    transaction on it once the transaction holds SQLite's write lock, before anything is
    written: whatever it raises rolls the transaction back. A writer fences its connections
    with its write latch (``Store.set_fence``), so a writer that stalled past its latch's TTL
    and was taken over begins no edit when it wakes, not even a flush already in flight. (An
    edit it had begun holds the write lock, which a new writer takes before reading anything:
    that edit commits first, and is what the new writer finds.)"""

    fence: Callable[[], None] | None = None


def connect(root: str | Path, *, create: bool, busy_timeout_ms: int = 30_000,
            durable: bool = True) -> ManifestConnection:
    """A connection to the store's manifest in WAL mode, with autocommit off at the Python
    level (``isolation_level=None``): transactions are opened explicitly by ``edit`` and
    ``read``."""
    path = manifest_path(root)
    if not path.exists():
        if not create:
            raise StoreNotFoundError(str(root))
        _create_atomically(path, busy_timeout_ms)
    with damage_as_error(root):
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                               timeout=busy_timeout_ms / 1000, factory=ManifestConnection)
    # a connection that fails its first statements (a damaged first page: "file is not a
    # database") is closed here, not left to the collector: its descriptor would outlive the error
    try:
        with damage_as_error(root):
            conn.text_factory = manifest_text
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if create:
                conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed edit survives power loss, not just a process crash. Lease
            # connections pass durable=False (NORMAL: no fsync per commit): a lease lost to a power
            # failure belongs to a reader that is gone too.
            conn.execute("PRAGMA synchronous = FULL" if durable else "PRAGMA synchronous = NORMAL")
        if not create:  # a writer's (create=True) is checked by initialise, after it adds new columns
            check_schema(conn, root)
    except BaseException:
        conn.close()
        raise
    return conn


def manifest_text(value: bytes) -> str:
    """A TEXT value of the manifest as ``str`` (the connection's ``text_factory``). The manifest
    writes only UTF-8 text: a value that is not is a damaged page, raised as SQLite's own
    ``DatabaseError`` (which ``damage_as_error`` and every read boundary name as a damaged
    manifest), never a ``UnicodeDecodeError`` out of the middle of a read."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise sqlite3.DatabaseError(f"a text value in it is not UTF-8 (byte 0x{value[exc.start]:02x} at offset "
                                    f"{exc.start} of a value of {len(value)} bytes): database disk image is "
                                    "malformed") from None


@contextlib.contextmanager
def damage_as_error(root: str | Path) -> Iterator[None]:
    """SQLite reporting a damaged manifest ("file is not a database", "database disk image is
    malformed") inside the block is raised as ``ManifestDamagedError`` naming the file."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if manifest_damage(exc):
            raise ManifestDamagedError(str(manifest_path(root)), exc) from exc
        raise


def _create_atomically(path: Path, busy_timeout_ms: int) -> None:
    """Create and initialise a new manifest under a temporary name, then rename it in, so a
    reader in another process never opens a manifest that exists but has no tables yet."""
    tmp = path.with_name(f"{path.name}.creating-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(str(tmp), isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        initialise(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    for leftover in (tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
        leftover.unlink(missing_ok=True)
    try:
        os.link(tmp, path)  # atomic and never replaces: if another process won, theirs stands
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def initialise(conn: sqlite3.Connection) -> None:
    with transaction(conn, bump=False):
        # An existing manifest's schema is checked before anything is created in it: a table a
        # damaged schema page lost must not come back empty (an empty ``parts`` would have the
        # writer delete every part file as unlisted).
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone() is not None:
            _refuse_other_schema(conn, database_path(conn))
        no_comments = re.sub(r"--[^\n]*", "", SCHEMA_SQL)
        for stmt in no_comments.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        _add_missing_columns(conn)
        row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        if row is None:
            set_meta(conn, "format_version", FORMAT_VERSION)
            set_meta(conn, "version", 0)
            set_meta(conn, "gc_safe_point", 0)
            set_meta(conn, FILES_DELETED_THROUGH, 0)
            set_meta(conn, "created_at", time.time())
        elif int(row[0]) != FORMAT_VERSION:
            raise StoreFormatError(f"manifest format {row[0]}, this code reads {FORMAT_VERSION}; "
                                   "use the matching version of pyspark_theflash")


# Columns added to tables of format 1 since it was first written (a writer adds them on open).
_ADDED_COLUMNS = {"parts": [("columns", "TEXT"), ("removed_at", "REAL"), ("checksum", "TEXT")]}

# The highest manifest version at which a part was removed whose file has since been deleted: a
# lease pinning version v still finds every file it can see while this is <= v (late renewal,
# ``Leases.renew(late_ok=True)``). Absent in stores older than it: unknown, so no late renewal.
FILES_DELETED_THROUGH = "files_deleted_through"


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for name, sql_type in columns:
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")


def has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Does the manifest's ``table`` have ``column`` (a store no newer writer has opened may not)?"""
    return any(r[1] == column for r in conn.execute(f"PRAGMA table_info({table})"))


def has_table(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None


def check_format(conn: sqlite3.Connection, root: str | Path) -> None:
    try:
        with damage_as_error(root):
            row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    except sqlite3.OperationalError as exc:  # not damage (that raised above): not a manifest at all
        raise StoreFormatError(f"{manifest_path(root)} is not a TheFlash manifest ({exc})") from exc
    # Every manifest is created with its format version in one transaction: a manifest of the right
    # schema without one, or with one that is not a number, is damaged, not of another format.
    if row is None or not isinstance(row[0], (int, str)) or not str(row[0]).isdigit():
        raise ManifestDamagedError(str(manifest_path(root)), "its meta table holds no format version "
                                   f"(found {row and row[0]!r})")
    if int(row[0]) != FORMAT_VERSION:
        raise StoreFormatError(f"{manifest_path(root)}: manifest format {row[0]}, this "
                               f"code reads {FORMAT_VERSION}")


# --- the manifest's own schema, checked at open ---------------------------------------------------

# Tables (column None) and columns of format 1 younger than its first stores, which readers of
# those stores do without (views.py asks ``has_table`` / ``has_column``); a writer adds them.
_ADDED_SINCE_FIRST_WRITTEN: frozenset[tuple[str, str | None]] = frozenset({
    ("table_versions", None), ("table_lifetimes", None), ("regions", "orphan_until_ts")})


@dataclass(frozen=True)
class _ExpectedSchema:
    columns: dict[str, dict[str, tuple[str, int, int]]]  # table -> column -> (declared type, notnull, pk)
    indexes: dict[str, str]                               # index -> its table


@functools.lru_cache(maxsize=1)
def _expected_schema() -> _ExpectedSchema:
    """The tables, columns and indexes ``SCHEMA_SQL`` makes, as SQLite itself reads them back."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(re.sub(r"--[^\n]*", "", SCHEMA_SQL))
        return _ExpectedSchema(_columns_of(conn), _indexes_of(conn))
    finally:
        conn.close()


def _columns_of(conn: sqlite3.Connection) -> dict[str, dict[str, tuple[str, int, int]]]:
    out: dict[str, dict[str, tuple[str, int, int]]] = {}
    for table, column, sql_type, notnull, pk in conn.execute(
            "SELECT m.name, c.name, c.type, c.\"notnull\", c.pk FROM sqlite_master AS m "
            "JOIN pragma_table_info(m.name) AS c WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"):
        out.setdefault(str(table), {})[str(column)] = (str(sql_type).upper(), int(notnull), int(pk))
    return out


def _indexes_of(conn: sqlite3.Connection) -> dict[str, str]:
    return {str(name): str(table) for name, table in conn.execute(
        "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}


def schema_differences(conn: sqlite3.Connection) -> list[str]:
    """How the manifest's schema differs from the one this code writes (empty: it is the same).
    Tables and columns added to format 1 since it was first written may be missing (a store no
    newer writer has opened); nothing else may be missing, extra or of another type. One
    query over SQLite's schema, which SQLite has parsed anyway: cheap enough for every open."""
    expected = _expected_schema()
    have = _columns_of(conn)
    optional = {(t, c) for t, cols in _ADDED_COLUMNS.items() for c, _ in cols} | _ADDED_SINCE_FIRST_WRITTEN
    found = [f"table {table} is not one this code writes" for table in have.keys() - expected.columns.keys()]
    for table, columns in expected.columns.items():
        actual = have.get(table)
        if actual is None:
            if (table, None) not in optional:
                found.append(f"table {table} is missing")
            continue
        for column, shape in columns.items():
            if column not in actual:
                if (table, column) not in optional:
                    found.append(f"table {table} has no column {column}")
            elif actual[column] != shape:
                found.append(f"column {table}.{column} is {actual[column]}, this code writes {shape}")
        for column in actual.keys() - columns.keys():
            found.append(f"table {table} has a column {column} this code never writes")
    indexes = _indexes_of(conn)
    for index, table in expected.indexes.items():
        if indexes.get(index) != table:
            found.append(f"index {index} on {table} is missing")
    return found


def check_schema(conn: sqlite3.Connection, root: str | Path) -> None:
    """Refuse a manifest whose schema is not this code's (a damaged schema page) with
    ``ManifestDamagedError`` naming the file; a database with none of the manifest's tables is
    not a manifest (``StoreFormatError``)."""
    with damage_as_error(root):
        _refuse_other_schema(conn, str(manifest_path(root)))


def _refuse_other_schema(conn: sqlite3.Connection, path: str) -> None:
    differences = schema_differences(conn)
    if not differences:
        return
    if not _columns_of(conn).keys() & _expected_schema().columns.keys():
        raise StoreFormatError(f"{path} is not a TheFlash manifest (none of its tables is there)")
    more = f" (and {len(differences) - 5} more)" if len(differences) > 5 else ""
    raise ManifestDamagedError(path, "its schema is not the one this code writes: "
                               + "; ".join(differences[:5]) + more)


# --- the manifest's pages, checked before a view reads them ---------------------------------------
#
# SQLite keeps no checksum of a page: a flipped cell pointer of a table or an index page can be
# walked without an error, and the walk then hides rows (a live part, a table's name, a region) or
# hands back NULL from a NOT NULL column; one flipped byte of an index entry's row id (a well-formed
# b-tree) has ``parts_live`` list a removed part instead of a live one. A reader then reads a wrong
# answer, or fails as if the store held other rows, and no check of the rows it reads can see a row
# that is not there. SQLite's ``PRAGMA integrity_check`` reads every page, checks each b-tree's
# structure (cell bounds, page links, overlaps, NOT NULL) and every index against its table;
# ``quick_check`` skips the last, which is the row-id case above. So every view runs integrity_check
# once per state of ``manifest.db`` and process: a pass is remembered by the file's (device, inode)
# and (size, mtime, ctime), taken before the check, so any write through the file system (a
# checkpoint, a stray write, a restored copy) has the next view check again. The file's clock is
# coarse: a pass of a file written in the last _RACY_NS is checked once more after that (git's
# "racily clean" rule), not at every view. A writer's commits and readers' leases go to
# ``manifest.db-wal`` (frames checksummed by SQLite, checked here once a checkpoint copies them into
# manifest.db): keying on the WAL too would check at every view. Damage that changes no stat (media
# decay under the file system) is met at the file's next write, or by ``store verify``.

_PAGES_PASSED: dict[tuple[int, int], tuple[tuple[int, int, int], bool]] = {}  # -> (state, racy)
_RACY_NS = 2_000_000_000


def check_pages(conn: sqlite3.Connection) -> None:
    """Refuse, with ``ManifestDamagedError`` naming the file, a manifest whose pages fail SQLite's
    ``PRAGMA integrity_check``; a no-op (one ``stat``) for a state of the file this process passed.
    Run inside the read transaction it vouches for. SQLite errors it meets (a page that does not
    even parse) propagate for ``damage_as_error`` to translate."""
    path = database_path(conn)
    try:
        st = os.stat(path)
    except OSError:  # an in-memory or vanished file: nothing to key a pass on; check anyway
        key, state = None, None
    else:
        key, state = (st.st_dev, st.st_ino), (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        passed = _PAGES_PASSED.get(key)
        if passed is not None and passed[0] == state and not (passed[1] and not _written_lately(state)):
            return
    found = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(5)")]
    if found != ["ok"]:
        raise ManifestDamagedError(path, "SQLite's integrity_check of its pages found: "
                                   + "; ".join(" ".join(f.split()) for f in found))
    if key is not None and state is not None:
        _PAGES_PASSED[key] = (state, _written_lately(state))


def _written_lately(state: tuple[int, int, int]) -> bool:
    """Was the file of ``state`` (size, mtime, ctime) written in the last _RACY_NS? A pass of such
    a state holds until that window is over; then the file is checked once more."""
    return time.time_ns() - max(state[1], state[2]) <= _RACY_NS


def database_path(conn: sqlite3.Connection) -> str:
    """The file of the manifest ``conn`` has open, to name in an error."""
    return next((str(r[2]) for r in conn.execute("PRAGMA database_list") if r[1] == "main"), MANIFEST_FILE)


def get_meta(conn: sqlite3.Connection, key: str, default: object = None) -> Any:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else row[0]


def set_meta(conn: sqlite3.Connection, key: str, value: object) -> None:
    conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


class Edit:
    """An open write transaction: ``version`` is the manifest version it creates (0: none)."""

    def __init__(self, conn: sqlite3.Connection, version: int) -> None:
        self.conn = conn
        self.version = version


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, bump: bool = True) -> Iterator[Edit]:
    """One write transaction: BEGIN IMMEDIATE (takes SQLite's write lock up front so it never
    fails half-way on a lock upgrade), bump the version, commit; roll back on error. Manifest
    edits go through ``apply_edit``; leases and the manifest's creation use it directly. A
    fenced connection (``ManifestConnection.fence``) checks its fence first, under the lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        fence = conn.fence if isinstance(conn, ManifestConnection) else None
        if fence is not None:
            fence()
        version = 0
        if bump:
            version = int(get_meta(conn, "version", 0)) + 1
            set_meta(conn, "version", version)
        yield Edit(conn, version)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def read(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A consistent read: every SELECT inside sees the same committed manifest."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def current_version(conn: sqlite3.Connection) -> int:
    return int(get_meta(conn, "version", 0))


def dumps(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def live_leases(conn: sqlite3.Connection, now: float) -> list[tuple[int, int]]:
    """(ts, manifest_version) of every live lease, read inside the caller's transaction."""
    return [(int(r[0]), int(r[1])) for r in
            conn.execute("SELECT ts, manifest_version FROM leases WHERE expires_at >= ?", (now,))]


Partitions = dict[int, list[tuple[int, int | None, int | None]]]  # table -> [(partition, lo, hi)], by lo
SqlValue = int | float | str | bytes | None  # a value as SQLite gives it back
# A row of the regions table, in its columns' order: region_id, start_key, end_key, epoch_version,
# conf_ver, applied_index, resolved_ts, state, snapshot_index, orphan_until_ts.
RegionRow = tuple[int, bytes, bytes, int, int, int, int, str, int, int]
# A row of the locks table, in its columns' order: region_id, key, start_ts, primary_key, op, ttl,
# value, table_id, handle (an int handle, or a common handle's bytes; None: not a record key).
LockRow = tuple[int, bytes, int, bytes, int, int, bytes | None, int | None, int | bytes | None]


def read_partitions(conn: sqlite3.Connection) -> Partitions:
    """Every table's partitions, (-inf first) in handle order."""
    out: Partitions = {}
    for tid, pid, lo, hi in conn.execute("SELECT table_id, partition_id, lo, hi FROM partitions "
                                         "ORDER BY table_id, lo IS NOT NULL, lo"):
        out.setdefault(int(tid), []).append((int(pid), lo, hi))
    return out


def max_partition_id(conn: sqlite3.Connection, table_id: int) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(partition_id), 0) FROM partitions WHERE table_id = ?",
                            (table_id,)).fetchone()[0])


# --- edits as values ------------------------------------------------------------------------------
#
# An edit says what changes, not how: the rows it adds and removes, the counters it sets, and what
# it assumes of the manifest it applies to. ``apply_edit`` is the one place an edit becomes SQL, in
# one transaction: a flush's edit (with the table versions its batch's DDL made), a compaction's, a
# schema's, GC's. Values stamped with the edit's own version (a part's added_version, a retirement's
# version) are filled in there, since only the transaction knows it.


@dataclass(frozen=True)
class TableVersion:
    """A schema version of a table, in force from ``commit_ts``; ``exact``: that commit ts is a
    DDL's (it replaces an estimate the schema endpoint gave). Un-ignores the table."""

    table_id: int
    schema_version: int
    db: str
    name: str
    info: str  # TiDB table info JSON
    commit_ts: int
    exact: bool = True


@dataclass(frozen=True)
class TableIgnored:
    """Rows of the table are dropped (not replicated)."""

    table_id: int
    db: str
    name: str


@dataclass(frozen=True)
class TableCreated:
    """CREATE TABLE / TRUNCATE made the table id at ``ts``."""

    table_id: int
    ts: int


@dataclass(frozen=True)
class TableRetired:
    """DROP TABLE / TRUNCATE retired the table id at ``ts`` (at this edit's version)."""

    table_id: int
    ts: int
    reason: str


TableChange = Union[TableVersion, TableIgnored, TableCreated, TableRetired]


@dataclass(frozen=True)
class NewPart:
    """A part the edit lists: ``part`` as written (its file, or a record of rows an engine keeps),
    not listed yet (its ``part_id`` and ``added_version`` are the ones the edit gives it).
    ``data_version``: range tombstones newer than it apply to the part (None: the edit's own
    version, a flush's part). ``lists_columns``: the row lists ``part.columns``, which are not
    its schema version's names (a Parquet part names them by id; a compacted part keeps older
    versions' columns); False: the row leaves them to its schema version."""

    part: PartRef
    data_version: int | None = None
    lists_columns: bool = False


class Expectation(abc.ABC):
    """What an edit assumes of the manifest it applies to, checked inside its transaction."""

    @abc.abstractmethod
    def holds(self, conn: sqlite3.Connection) -> bool:
        """Whether the manifest, as ``conn`` sees it inside the edit's transaction, is as assumed."""


@dataclass(frozen=True)
class PartitionsAre(Expectation):
    """The partitions are these (a flush split its rows by them)."""

    partitions: Partitions

    def holds(self, conn: sqlite3.Connection) -> bool:
        return read_partitions(conn) == self.partitions


@dataclass(frozen=True)
class PartsLive(Expectation):
    """These parts of the partition are live; ``only``: and no other part of it is."""

    table_id: int
    partition_id: int
    part_ids: frozenset[int]
    only: bool = False

    def holds(self, conn: sqlite3.Connection) -> bool:
        live = {int(r[0]) for r in conn.execute(
            "SELECT part_id FROM parts WHERE table_id = ? AND partition_id = ? AND removed_version IS NULL",
            (self.table_id, self.partition_id))}
        return live == self.part_ids if self.only else self.part_ids <= live


@dataclass(frozen=True)
class NextPartitionId(Expectation):
    """The table's next partition id is ``partition_id`` (no partition was added meanwhile)."""

    table_id: int
    partition_id: int

    def holds(self, conn: sqlite3.Connection) -> bool:
        return max_partition_id(conn, self.table_id) + 1 == self.partition_id


class RegionResolved:
    """Regions whose resolved ts alone an edit moves, as columns: ids and their ts. A resolved
    ts lists every region of a TiKV connection (100,000 and more), so neither the flush that
    finds them nor the edit that writes them makes a Python object per region."""

    __slots__ = ("ids", "ts")

    def __init__(self, ids: np.ndarray | None = None, ts: np.ndarray | None = None) -> None:
        self.ids = np.zeros(0, np.int64) if ids is None else np.asarray(ids, np.int64)
        self.ts = np.zeros(0, np.int64) if ts is None else np.asarray(ts, np.int64)

    @classmethod
    def of(cls, updates: "RegionResolved | Sequence[tuple[int, int]]") -> "RegionResolved":
        """``updates`` as columns: (region, resolved ts) pairs are taken as they are listed."""
        if isinstance(updates, RegionResolved):
            return updates
        pairs = np.array(updates, np.int64).reshape(-1, 2)
        return cls(pairs[:, 0], pairs[:, 1])

    def __len__(self) -> int:
        return len(self.ids)

    def without(self, region_ids: Sequence[int]) -> "RegionResolved":
        """These updates but those of ``region_ids``."""
        if not len(region_ids) or not len(self):
            return self
        keep = ~np.isin(self.ids, np.asarray(region_ids, np.int64))
        return RegionResolved(self.ids[keep], self.ts[keep])

    def then(self, later: "RegionResolved") -> "RegionResolved":
        return later if not len(self) else self if not len(later) else RegionResolved(
            np.concatenate([self.ids, later.ids]), np.concatenate([self.ts, later.ts]))

    def by_ts(self) -> Iterator[tuple[int, np.ndarray]]:
        """(ts, the regions it is the last update of), one per distinct ts: a later update of
        a region wins (the last of its listed)."""
        last = len(self.ids) - 1 - np.unique(self.ids[::-1], return_index=True)[1]
        ids, ts = self.ids[last], self.ts[last]
        values, which = np.unique(ts, return_inverse=True)
        for i, value in enumerate(values.tolist()):
            yield value, ids[which == i]


@dataclass(frozen=True)
class ManifestEdit:
    """One change of the manifest, as a value. Applied by ``apply_edit``, all or nothing."""

    bump: bool = True  # a new manifest version (False: bookkeeping no view's contents depend on)
    expect: tuple[Expectation, ...] = ()
    tables: tuple[TableChange, ...] = ()  # applied in order
    partitions_removed: tuple[tuple[int, int], ...] = ()  # (table, partition)
    partitions_added: tuple[tuple[int, int, Handle | None, Handle | None], ...] = ()  # (table, partition, lo, hi)
    parts_removed: tuple[int, ...] = ()  # part ids, removed at this version
    tables_removed: tuple[int, ...] = ()  # every live part of these table ids, removed at this version
    parts_added: tuple[NewPart, ...] = ()
    parts_forgotten: tuple[int, ...] = ()  # rows of removed parts whose files are deleted
    tombstones: tuple[tuple[bytes, bytes, str], ...] = ()  # (start key, end key, why), at this version
    prune_tombstones: bool = False  # drop the tombstones no live part is older than
    regions: Sequence[RegionRow] = ()  # whole region rows
    # regions whose row has only their resolved ts new (or (region, ts) pairs, taken in order)
    resolved: RegionResolved | Sequence[tuple[int, int]] = ()
    locks_removed: Sequence[tuple[int, bytes, int]] = ()  # (region, key, start ts)
    locks_added: Sequence[LockRow] = ()  # whole lock rows
    meta: tuple[tuple[str, object], ...] = ()  # counters and settings: position, upstream, engine
    # The GC safe point moves toward this: never backwards, never past the oldest live lease.
    gc_safe_point: int | None = None

    def then(self, later: "ManifestEdit") -> "ManifestEdit":
        """This edit and ``later`` as one (``later``'s meta wins a key both set)."""
        if later.gc_safe_point is not None and self.gc_safe_point is not None:
            raise ValueError("two GC safe points in one edit")
        return ManifestEdit(
            bump=self.bump or later.bump, expect=self.expect + later.expect, tables=self.tables + later.tables,
            partitions_removed=self.partitions_removed + later.partitions_removed,
            partitions_added=self.partitions_added + later.partitions_added,
            parts_removed=self.parts_removed + later.parts_removed,
            tables_removed=self.tables_removed + later.tables_removed,
            parts_added=self.parts_added + later.parts_added,
            parts_forgotten=self.parts_forgotten + later.parts_forgotten,
            tombstones=self.tombstones + later.tombstones,
            prune_tombstones=self.prune_tombstones or later.prune_tombstones,
            regions=[*self.regions, *later.regions],
            # the whole rows are written before the resolved ts updates: an earlier update of a
            # region a later whole row writes is that row's to say
            resolved=RegionResolved.of(self.resolved).without([int(row[0]) for row in later.regions]).then(
                RegionResolved.of(later.resolved)),
            locks_removed=[*self.locks_removed, *later.locks_removed],
            locks_added=[*self.locks_added, *later.locks_added], meta=self.meta + later.meta,
            gc_safe_point=later.gc_safe_point if later.gc_safe_point is not None else self.gc_safe_point)

    @classmethod
    def combined(cls, edits: Sequence["ManifestEdit"]) -> "ManifestEdit":
        out = edits[0] if edits else cls(bump=False)
        for e in edits[1:]:
            out = out.then(e)
        return out


def apply_edit(conn: sqlite3.Connection, edit: ManifestEdit,
               inside: Callable[[int], None] | None = None) -> int:
    """Apply ``edit`` in one SQLite transaction (``transaction``): its expectations checked first
    (``EditConflictError``, nothing applied, when one fails), then every change. ``inside``:
    called with the edit's version inside the transaction, before its rows are written (an
    engine keeping the rows takes a flush's there: a crash before the commit replays them).
    Returns the edit's version (0: ``bump`` is False)."""
    with transaction(conn, edit.bump) as e:
        write_edit(e, edit, inside)
        return e.version


def write_edit(e: "Edit", edit: ManifestEdit, inside: Callable[[int], None] | None = None) -> None:
    """``apply_edit`` inside a transaction the caller opened (``transaction``): for the
    one edit that must follow reads and file deletions in its own transaction (deleting
    obsolete files)."""
    conn, version = e.conn, e.version
    if not version and (edit.regions or len(edit.resolved)):
        # views of one version share its regions (store.views.RegionMemo)
        raise ValueError("an edit of regions must make a new manifest version (bump=True)")
    for expectation in edit.expect:
        if not expectation.holds(conn):
            raise EditConflictError(f"the manifest changed under an edit: {expectation} no longer holds")
    if inside is not None:
        inside(version)
    for change in edit.tables:
        _apply_table_change(conn, change, version)
    for table_id, partition_id in edit.partitions_removed:
        conn.execute("DELETE FROM partitions WHERE table_id = ? AND partition_id = ?", (table_id, partition_id))
    for table_id, partition_id, lo, hi in edit.partitions_added:
        conn.execute("INSERT INTO partitions VALUES (?,?,?,?,?)", (table_id, partition_id, lo, hi, version))
    now = time.time()
    if edit.parts_removed:
        conn.execute("UPDATE parts SET removed_version = ?, removed_at = ? "
                     f"WHERE part_id IN ({','.join('?' * len(edit.parts_removed))})",
                     (version, now, *edit.parts_removed))
    for table_id in edit.tables_removed:
        conn.execute("UPDATE parts SET removed_version = ?, removed_at = ? WHERE table_id = ? "
                     "AND removed_version IS NULL", (version, now, table_id))
    for part in edit.parts_added:
        _insert_part(conn, part, version)
    if edit.parts_forgotten:
        conn.executemany("DELETE FROM parts WHERE part_id = ?", [(p,) for p in edit.parts_forgotten])
    for start, end, why in edit.tombstones:
        conn.execute("INSERT INTO range_tombstones(start_key, end_key, version, reason) VALUES (?,?,?,?)",
                     (start, end, version, why))
    if edit.prune_tombstones:
        # Tombstones no live part is older than have done their work.
        conn.execute("DELETE FROM range_tombstones WHERE version <= COALESCE((SELECT MIN(data_version) "
                     "FROM parts WHERE removed_version IS NULL), 1 << 62)")
    if edit.regions:
        conn.executemany("INSERT OR REPLACE INTO regions(region_id, start_key, end_key, epoch_version, "
                         "conf_ver, applied_index, resolved_ts, state, snapshot_index, orphan_until_ts) "
                         "VALUES (?,?,?,?,?,?,?,?,?,?)", edit.regions)
    if len(edit.resolved):
        # one UPDATE per distinct ts (a resolved ts event moves every region it lists to one)
        for ts, rids in RegionResolved.of(edit.resolved).by_ts():
            conn.execute("UPDATE regions SET resolved_ts = ? WHERE region_id IN (SELECT value FROM json_each(?))",
                         (ts, json.dumps(rids.tolist())))
    if edit.locks_removed:
        conn.executemany("DELETE FROM locks WHERE region_id = ? AND key = ? AND start_ts = ?", edit.locks_removed)
    if edit.locks_added:
        conn.executemany("INSERT OR REPLACE INTO locks VALUES (?,?,?,?,?,?,?,?,?)", edit.locks_added)
    for key, value in edit.meta:
        set_meta(conn, key, value)
    if edit.gc_safe_point is not None:
        current = int(get_meta(conn, "gc_safe_point", 0))
        bound = min([int(edit.gc_safe_point)] + [ts for ts, _v in live_leases(conn, now)])
        set_meta(conn, "gc_safe_point", max(current, bound))


def _apply_table_change(conn: sqlite3.Connection, change: TableChange, version: int) -> None:
    if isinstance(change, TableVersion):
        conn.execute("INSERT OR IGNORE INTO tables VALUES (?,?,?,?,?,?)",
                     (change.table_id, change.schema_version, change.db, change.name, change.info, version))
        conn.execute("INSERT INTO table_versions VALUES (?,?,?) ON CONFLICT(table_id, schema_version) "
                     + ("DO UPDATE SET commit_ts = excluded.commit_ts" if change.exact else "DO NOTHING"),
                     (change.table_id, change.schema_version, change.commit_ts))
        conn.execute("DELETE FROM ignored_tables WHERE table_id = ?", (change.table_id,))
    elif isinstance(change, TableIgnored):
        conn.execute("INSERT OR REPLACE INTO ignored_tables VALUES (?,?,?)", (change.table_id, change.db, change.name))
    elif isinstance(change, TableCreated):
        conn.execute("INSERT INTO table_lifetimes(table_id, created_ts) VALUES (?, ?) ON CONFLICT(table_id) "
                     "DO UPDATE SET created_ts = excluded.created_ts", (change.table_id, change.ts))
    else:
        conn.execute("INSERT INTO table_lifetimes(table_id, created_ts, retired_ts, reason, retired_version) "
                     "VALUES (?, 0, ?, ?, ?) ON CONFLICT(table_id) DO UPDATE SET retired_ts = "
                     "excluded.retired_ts, reason = excluded.reason, retired_version = excluded.retired_version",
                     (change.table_id, change.ts, change.reason, version))


def _insert_part(conn: sqlite3.Connection, part: NewPart, version: int) -> None:
    p = part.part
    conn.execute(
        "INSERT INTO parts(table_id, partition_id, kind, file, rows, bytes, min_handle, max_handle, "
        "min_commit_ts, max_commit_ts, single_version, delete_marks, schema_version, data_version, "
        "added_version, removed_version, stats, columns, checksum) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,?,?,?)",
        (p.table_id, p.partition_id, p.kind, p.path, p.rows, p.bytes, p.min_handle, p.max_handle,
         p.min_commit_ts, p.max_commit_ts, int(p.single_version), p.delete_marks, p.schema_version,
         version if part.data_version is None else part.data_version, version, json.dumps(stats_to_json(dict(p.stats))),
         json.dumps([[int(i), str(n)] for i, n in p.columns]) if part.lists_columns else None, p.checksum))
