"""Checking a store directory against its manifest (``theflash store verify``).

Read-only: it opens the manifest in one read transaction and every live part file, and
reports each way the files and the manifest disagree, with the file and what to do about it.
A store is *clean* when the report holds no problem:

* every live part's file exists, has the size, checksum and row count the manifest records, opens as
  a table with the hidden columns and exactly the columns (names and Arrow types) of its schema
  version, is sorted by (``_tidb_rowid``, ``_tidb_commit_ts``) without
  duplicates, keeps its handles inside its partition's range and its handle / commit_ts /
  delete-mark statistics equal to the manifest's, and names a schema version the manifest has;
* every part belongs to a partition the manifest lists, partitions of a table don't overlap, and
  neither do the live regions;
* every file under the store directory is the manifest, the latch database, the writer's pid
  file, or a part file the manifest lists (live, or removed and awaiting deletion once no lease sees it): no temporary
  files left by an interrupted flush or compaction, no orphan files.

A store whose engine keeps the rows itself (``clickhouse``) lists records, not files: each is
checked for its partition and schema version; its rows are the engine's to check.

Content: every part whose manifest edit recorded a checksum (``store.integrity``; parts written
before checksums were recorded have none, and are checked for size, rows and order only) is summed
and compared, and a Parquet part's page checksums are verified as it is decoded.

The manifest itself must pass SQLite's ``PRAGMA integrity_check`` (its pages, b-trees, and every
index against its table) and have the schema this code writes (every table, column and index;
``manifest.schema_differences``); one that does not open, parse or pass is reported as
``manifest.db`` with what to do.

``online=True`` (``store verify --online``) checks a store whose writer runs: the temporary files of
a live process (``*.tmp-<pid>``), part files the writer renamed in before the edit that lists them
commits, and parts it removed while the check ran are passed over (counted as ``in_flight``), not
reported. Without it, run verify on a store whose writer is stopped.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.errors import ManifestDamagedError, PartFileError, StoreFormatError
from pyspark_theflash.store.integrity import algorithm_of, fetch, file_checksum
from pyspark_theflash.store.keyspace import Handle
from pyspark_theflash.store.part_ref import PartRef
from pyspark_theflash.store.remote import META_KEY, PartsRemote, RemoteLocationError, is_remote_part
from pyspark_theflash.store.txn_merge_tree import in_part_directory

if TYPE_CHECKING:
    from pyspark_theflash.schema.table_info import ColumnInfo

HIDDEN = ("_tidb_rowid", "_tidb_commit_ts", "_tidb_delmark")
# SQLite files at the store's root that are not parts (the manifest and the latch database).
_DATABASE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")


@dataclass(frozen=True)
class Problem:
    file: str  # relative to the store root
    what: str
    action: str

    def __str__(self) -> str:
        return f"{self.file}: {self.what}\n    what to do: {self.action}"


@dataclass
class VerifyReport:
    root: str
    manifest_version: int = 0
    parts_checked: int = 0
    rows_checked: int = 0
    files_seen: int = 0
    checksums_checked: int = 0
    without_checksum: int = 0   # live parts written before checksums were recorded (sizes and rows checked)
    in_flight: int = 0          # --online: the running writer's files not listed yet, passed over
    problems: list[Problem] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "root": self.root, "manifest_version": self.manifest_version, "clean": self.clean,
            "parts_checked": self.parts_checked, "rows_checked": self.rows_checked,
            "files_seen": self.files_seen, "checksums_checked": self.checksums_checked,
            "without_checksum": self.without_checksum, "in_flight": self.in_flight,
            "problems": [{"file": p.file, "what": p.what, "action": p.action} for p in self.problems],
        }


_PART_COLUMNS = ("part_id, table_id, partition_id, kind, file, rows, bytes, min_handle, max_handle, "
                 "min_commit_ts, max_commit_ts, single_version, delete_marks, schema_version, added_version, "
                 "removed_version")


def _listed_parts(rows: sqlite3.Cursor, partitions: dict[tuple[int, int], tuple[Handle | None, Handle | None]]
                  ) -> list[tuple[PartRef, int | None]]:
    """The ``parts`` rows (``_PART_COLUMNS`` and the checksum), live and removed: each one's part,
    and the version that removed it (None: live). Verify checks a part's file against its row and
    never reads rows through the ref, so the ref carries no statistics, tombstones or columns (the
    columns a row lists are read beside it, ``own_columns``)."""
    out: list[tuple[PartRef, int | None]] = []
    for (part_id, table_id, partition_id, kind, file, n, size, min_handle, max_handle, min_ts, max_ts, single,
         delete_marks, schema_version, added_version, removed_version, checksum) in rows:
        lo, hi = partitions.get((int(table_id), int(partition_id)), (None, None))
        part = PartRef(int(part_id), int(table_id), int(partition_id), lo, hi, kind, file, int(n), int(size),
                       min_handle, max_handle, min_ts, max_ts, bool(single), int(delete_marks), int(schema_version),
                       (), added_version=int(added_version), checksum=checksum)
        out.append((part, None if removed_version is None else int(removed_version)))
    return out


_RESTORE = ("restore this file from a backup of the store; or rebuild the store: move the directory "
            "aside and replay the binlog from its start (or from region snapshots)")


_RESTORE_REMOTE = ("upload this part's file to its key in the parts location from a backup of the store (or its "
                   "local copy, when it passes verify); or rebuild the store from the binlog")


# Directories of the store root an engine other than the native one owns (engine/clickhouse).
ENGINE_DIRECTORIES = frozenset({"clickhouse"})

def _read_table(path: Path) -> pa.Table:
    """A part file as an Arrow table: Parquet (stable and delta parts; page checksums verified
    where the file has them) or Arrow IPC."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        return pq.ParquetFile(path, page_checksum_verification=True).read()
    with pa.memory_map(str(path)) as source:
        if magic == b"ARRO":
            return ipc.open_file(source).read_all()
        return ipc.open_stream(source).read_all()


def _expected_fields(db: str, info_json: str) -> list[pa.Field]:
    """The user columns a part of this schema version holds, as the store writes them."""
    from pyspark_theflash.schema import arrow_schema
    from pyspark_theflash.store.views import table_info_from_row

    return [f for f in arrow_schema(table_info_from_row(info_json, db)) if f.name not in HIDDEN]


def _py(handle: Any) -> Any:
    """A handle as a plain Python value: int (int handles) or bytes (common handles)."""
    if handle is None:
        return None
    if isinstance(handle, (bytes, bytearray, memoryview)):
        return bytes(handle)
    return int(handle)


def _show(handle: object) -> str:
    return handle.hex() if isinstance(handle, (bytes, bytearray, memoryview)) else str(handle)


def _own_fields(columns: list[list[int | str]], schemas: dict[int, tuple[str, str]]) -> list[pa.Field]:
    """The user columns of a part that lists its own (a compacted part keeping columns older
    schema versions need): each typed as the newest version having its id types it."""
    from pyspark_theflash.schema import arrow_type
    from pyspark_theflash.store.views import table_info_from_row

    by_id: dict[int, ColumnInfo] = {}
    for version in sorted(schemas):
        for col in table_info_from_row(schemas[version][1], schemas[version][0]).columns:
            by_id[col.id] = col
    return [pa.field(str(name), arrow_type(by_id[int(cid)])) for cid, name in columns]


def _check_record(part: PartRef, engine: str, partition: tuple[int | None, int | None] | None,
                  schemas: dict[int, tuple[str, str]], report: VerifyReport) -> None:
    """A record of rows the store's engine keeps: only an engine that keeps rows lists one, in
    a partition and at a schema version the manifest has."""
    where = f"part {part.part_id} ({part.kind}, kept by the {engine} engine) of table {part.table_id} " \
            f"partition {part.partition_id}"
    if engine == "native":
        report.problems.append(Problem(mf.MANIFEST_FILE, f"{where}: the native engine keeps rows in files, but this "
                                       "part names none", "a manifest inconsistency: rebuild the store from the binlog"))
    if partition is None:
        report.problems.append(Problem(mf.MANIFEST_FILE, f"{where}: its partition is not in the manifest",
                                       "a manifest inconsistency: rebuild the store from the binlog"))
    if part.schema_version not in schemas:
        report.problems.append(Problem(mf.MANIFEST_FILE, f"{where}: schema version {part.schema_version} is not in "
                                       "the manifest", "put the table's schema again (Store.put_schema) or rebuild "
                                       "the store"))


def _check_part(root: Path, part: PartRef, partition: tuple[int | None, int | None] | None,
                schemas: dict[int, tuple[str, str]], report: VerifyReport,
                own_columns: list[list[int | str]] | None = None) -> None:
    name = part.path
    where = f"part {part.part_id} ({part.kind}) of table {part.table_id} partition {part.partition_id}"

    def problem(what: str, action: str = _RESTORE) -> None:
        report.problems.append(Problem(name, f"{where}: {what}", action))

    if partition is None:
        problem("its partition is not in the manifest (an orphan part)",
                "this is a manifest inconsistency: rebuild the store by replaying the binlog")
    expected: list[pa.Field] | None = None
    if part.schema_version not in schemas:
        problem(f"schema version {part.schema_version} of table {part.table_id} is not in the manifest",
                "put the table's schema again (Store.put_schema) or rebuild the store")
    else:
        try:
            expected = _expected_fields(*schemas[part.schema_version]) if own_columns is None \
                else _own_fields(own_columns, schemas)
        except Exception as exc:  # a table info this code cannot turn into columns
            problem(f"schema version {part.schema_version} of table {part.table_id} cannot be read: "
                    f"{type(exc).__name__}: {exc}", "put the table's schema again (Store.put_schema)")
    path = root / name
    if not path.is_file():
        problem(f"file is missing (the manifest lists {part.rows} rows, {part.bytes} bytes)")
        return
    size = path.stat().st_size
    if size != part.bytes:
        problem(f"file is {size} bytes, the manifest says {part.bytes} (truncated or overwritten)")
    if part.checksum is not None:
        report.checksums_checked += 1
        try:
            actual = file_checksum(path, algorithm_of(part.checksum))
        except ValueError as exc:
            actual = str(exc)
        if actual != part.checksum:
            problem(f"checksum mismatch: the manifest recorded {part.checksum}, the file's bytes give {actual} "
                    "(the file changed on disk after it was written); reads of it fail")
            return
    else:
        report.without_checksum += 1
    try:
        table = _read_table(path)
    except Exception as exc:  # any reader failure means the file cannot serve reads
        problem(f"file cannot be read as a part: {type(exc).__name__}: {exc}")
        return
    report.rows_checked += table.num_rows
    if table.num_rows != part.rows:
        problem(f"file holds {table.num_rows} rows, the manifest says {part.rows}")
    missing = [c for c in HIDDEN if c not in table.column_names]
    if missing:
        problem(f"file lacks the hidden column(s) {', '.join(missing)}")
        return
    if expected is not None:
        have = [(f.name, f.type) for f in table.schema if f.name not in HIDDEN]
        want = [(f.name, f.type) for f in expected]
        if have != want:
            problem(f"columns {', '.join(f'{n} {t}' for n, t in have)} differ from schema version "
                    f"{part.schema_version}: {', '.join(f'{n} {t}' for n, t in want)}")
    rowid = table.column("_tidb_rowid")
    if pa.types.is_integer(rowid.type):
        handles = rowid.to_numpy()
    else:  # clustered common handles: memcomparable bytes, ordered as bytes
        handles = np.array(rowid.to_pylist() + [None], dtype=object)[:-1]
    commit_ts = table.column("_tidb_commit_ts").to_numpy().astype(np.uint64)
    delmarks = table.column("_tidb_delmark").to_numpy(zero_copy_only=False).astype(bool)
    if len(handles) > 1:
        same = handles[1:] == handles[:-1]
        ordered = (handles[1:] > handles[:-1]) | (same & (commit_ts[1:] > commit_ts[:-1]))
        if not ordered.all():
            at = int(np.flatnonzero(~ordered)[0]) + 1
            problem(f"rows are not sorted by (_tidb_rowid, _tidb_commit_ts) without duplicates: row {at} "
                    f"(handle {_show(handles[at])}, commit_ts {commit_ts[at]}) follows (handle "
                    f"{_show(handles[at - 1])}, commit_ts {commit_ts[at - 1]})")
        if part.single_version and same.any():
            at = int(np.flatnonzero(same)[0]) + 1
            problem(f"the manifest marks it single-version but handle {_show(handles[at])} has several versions")
    if len(handles):
        lo_h, hi_h = _py(handles.min()), _py(handles.max())
        if partition is not None:
            lo, hi = partition
            if (lo is not None and lo_h < _py(lo)) or (hi is not None and hi_h >= _py(hi)):
                problem(f"handles {_show(lo_h)}..{_show(hi_h)} reach outside the partition range "
                        f"[{'-inf' if lo is None else _show(lo)}, {'+inf' if hi is None else _show(hi)})")
        if (_py(part.min_handle), _py(part.max_handle)) != (lo_h, hi_h):
            problem(f"handles span {_show(lo_h)}..{_show(hi_h)}, the manifest says "
                    f"{_show(part.min_handle)}..{_show(part.max_handle)}")
        lo_ts, hi_ts = int(commit_ts.min()), int(commit_ts.max())
        if (part.min_commit_ts, part.max_commit_ts) != (lo_ts, hi_ts):
            problem(f"commit_ts span {lo_ts}..{hi_ts}, the manifest says "
                    f"{part.min_commit_ts}..{part.max_commit_ts}")
    marks = int(delmarks.sum())
    if marks != part.delete_marks:
        problem(f"file holds {marks} delete marks, the manifest says {part.delete_marks}")


def _check_table_infos(schemas: dict[int, dict[int, tuple[str, str]]], report: VerifyReport) -> None:
    """Every table info the manifest keeps parses (SQLite checks a row's structure, not its values)."""
    from pyspark_theflash.store.views import table_info_from_row

    for table_id, versions in sorted(schemas.items()):
        for version, (db, info) in sorted(versions.items()):
            try:
                table_info_from_row(info, db)
            except Exception as exc:  # any failure: readers of this version fail the same way
                report.problems.append(Problem(
                    mf.MANIFEST_FILE, f"table {table_id} schema version {version}: its table info cannot be read "
                    f"({type(exc).__name__}: {exc})",
                    "restore manifest.db (with manifest.db-wal) from a backup of the store, or rebuild the store: "
                    "move the directory aside and replay the binlog from its start"))


def _check_partitions(partitions: dict[tuple[int, int], tuple[int | None, int | None]], report: VerifyReport) -> None:
    by_table: dict[int, list[tuple[int | None, int | None, int]]] = {}
    for (table_id, partition_id), (lo, hi) in partitions.items():
        by_table.setdefault(table_id, []).append((lo, hi, partition_id))
    for table_id, ranges in by_table.items():
        ranges.sort(key=lambda r: (r[0] is not None, _py(r[0]) if r[0] is not None else 0))
        for (lo1, hi1, p1), (lo2, _hi2, p2) in zip(ranges, ranges[1:]):
            if hi1 is None or lo2 is None or hi1 > lo2:
                report.problems.append(Problem(
                    mf.MANIFEST_FILE,
                    f"table {table_id}: partitions {p1} [{_show(lo1)}, {_show(hi1)}) and {p2} [{_show(lo2)}, ...) "
                    "overlap",
                    "this is a manifest inconsistency: rebuild the store by replaying the binlog"))


def _check_regions(regions: list[tuple[int, bytes, bytes]], report: VerifyReport) -> None:
    """Live regions (state normal) must not overlap: each key belongs to one region."""
    ordered = sorted(regions, key=lambda r: r[1])
    for (id1, _s1, e1), (id2, s2, _e2) in zip(ordered, ordered[1:]):
        if not e1 or e1 > s2:
            report.problems.append(Problem(
                mf.MANIFEST_FILE,
                f"regions {id1} (ends at {e1.hex() or '+inf'}) and {id2} (starts at {s2.hex() or '-inf'}) overlap",
                "a region event was applied wrongly: rebuild the store by replaying the binlog, or re-seed "
                "these regions with snapshots"))


def _is_temporary(name: str) -> bool:
    base = os.path.basename(name)
    return base.startswith(".") or base.startswith("tmp") or ".tmp" in base or base.endswith("~")


_TEMP_PID = re.compile(r"\.(?:tmp|creating)-(\d+)$")
# --online: an unlisted part file this much younger than the check's start belongs to an edit the
# running writer has not committed yet (a flush renames its parts in just before its edit; a
# compaction writes its output before its short edit).
ONLINE_IN_FLIGHT_S = 300.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer_pid(root: Path) -> int | None:
    """The pid of the store's running writer (its pid file, if that process lives), or None."""
    try:
        pid = int((root / mf.WRITER_PID_FILE).read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and _alive(pid) else None


def _remote_copy(remote: PartsRemote | None, root: Path, scratch: Path, part: PartRef,
                 report: VerifyReport) -> Path | None:
    """The root to check ``part`` under: the store's, or, for a part whose local copy the cache
    evicted, ``scratch``, holding it as fetched from the parts location. The object there is
    fetched and checked against the manifest's size and checksum either way: one the location
    lacks, or holds other bytes of, is a problem (a read fails once no local copy is left), and
    None is returned when no copy is left to check."""
    if remote is None or not is_remote_part(part):
        return root
    where = f"part {part.part_id} ({part.kind}) of table {part.table_id} partition {part.partition_id}"
    try:
        size = remote.size(part.path)
    except (OSError, RemoteLocationError) as exc:
        report.problems.append(Problem(part.path, f"{where}: {remote.where(part.path)} cannot be checked: {exc}",
                                       "check the location's credentials and reachability, then verify again"))
        return root
    if size != part.bytes:
        what = "is missing" if size is None else f"is {size} bytes, the manifest says {part.bytes}"
        report.problems.append(Problem(part.path, f"{where}: {remote.where(part.path)} {what}", _RESTORE_REMOTE))
        return root if (root / part.path).is_file() else None
    try:
        fetch(remote, part, scratch / part.path).close()
    except PartFileError as exc:
        report.problems.append(Problem(part.path, f"{where}: {exc.path}: {exc.reason}", _RESTORE_REMOTE))
        return root if (root / part.path).is_file() else None
    return root if (root / part.path).is_file() else scratch


def _in_flight_temporary(rel: str) -> bool:
    """A temporary file of a live process (``<name>.tmp-<pid>``): a part being written."""
    m = _TEMP_PID.search(rel)
    return m is not None and _alive(int(m.group(1)))


def _manifest_problem(exc: BaseException) -> Problem:
    return Problem(mf.MANIFEST_FILE, f"the manifest cannot be read: {type(exc).__name__}: {exc}",
                   "restore manifest.db (with manifest.db-wal) from a backup of the store, or rebuild the store: "
                   "move the directory aside and replay the binlog from its start")


def verify_store(root: str | os.PathLike[str], online: bool = False) -> VerifyReport:
    """Check every part of the store at ``root`` against its manifest; see the module doc.
    ``online``: the store's writer may be running, so its in-flight files (temporary files of a live
    process, part files renamed in just before their edit commits) and parts it removed while the
    check ran are passed over instead of reported."""
    root_path = Path(root)
    report = VerifyReport(str(root_path))
    started = time.time()
    try:
        conn = mf.connect(root_path, create=False)
    except (sqlite3.DatabaseError, ManifestDamagedError) as exc:
        report.problems.append(_manifest_problem(exc))
        return report
    try:
        mf.check_format(conn, root_path)
        damage = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        if damage != ["ok"]:
            raise sqlite3.DatabaseError("; ".join(str(d) for d in damage[:5]))
        with mf.read(conn):
            report.manifest_version = mf.current_version(conn)
            partitions = {
                (int(t), int(p)): (lo, hi)
                for t, p, lo, hi in conn.execute("SELECT table_id, partition_id, lo, hi FROM partitions")
            }
            schemas: dict[int, dict[int, tuple[str, str]]] = {}
            for t, v, db, info in conn.execute("SELECT table_id, schema_version, db, info FROM tables"):
                schemas.setdefault(int(t), {})[int(v)] = (db, info)
            checksum = "checksum" if mf.has_column(conn, "parts", "checksum") else "NULL"
            parts = _listed_parts(conn.execute(f"SELECT {_PART_COLUMNS}, {checksum} FROM parts ORDER BY part_id"),
                                  partitions)
            engine = str(mf.get_meta(conn, "engine") or "native")
            own_columns = {int(pid): json.loads(cols) for pid, cols in conn.execute(
                "SELECT part_id, columns FROM parts WHERE columns IS NOT NULL")} \
                if mf.has_column(conn, "parts", "columns") else {}
            regions = [(int(r), bytes(sk), bytes(ek)) for r, sk, ek in conn.execute(
                "SELECT region_id, start_key, end_key FROM regions WHERE state = 'normal'")]
            remote_uri = mf.get_meta(conn, META_KEY)
    except (sqlite3.DatabaseError, StoreFormatError, ManifestDamagedError, ValueError, TypeError) as exc:
        report.problems.append(_manifest_problem(exc))
        return report
    finally:
        conn.close()

    remote = None
    if remote_uri:
        try:
            remote = PartsRemote.at(str(remote_uri))
        except RemoteLocationError as exc:
            report.problems.append(Problem(mf.MANIFEST_FILE, f"its parts location cannot be opened: {exc}",
                                           "set the location's credentials in the environment"))
    _check_table_infos(schemas, report)
    _check_partitions(partitions, report)
    _check_regions(regions, report)
    listed: dict[str, tuple[PartRef, int | None]] = {}  # by file: the last row listing it, and its removal
    part_problems: dict[str, list[Problem]] = {}
    for part, removed_version in parts:
        if part.in_engine:
            if removed_version is None:
                report.parts_checked += 1
                _check_record(part, engine, partitions.get((part.table_id, part.partition_id)),
                              schemas.get(part.table_id, {}), report)
            continue
        earlier = listed.get(part.path)
        if earlier is not None and earlier[1] is None and removed_version is None:
            report.problems.append(Problem(part.path, f"parts {earlier[0].part_id} and {part.part_id} "
                                           "are both live and share this file",
                                           "a manifest inconsistency: rebuild the store from the binlog"))
        listed[part.path] = (part, removed_version)
        if removed_version is not None:
            continue  # removed: its file may stay until no lease sees it, or be gone already
        report.parts_checked += 1
        before = len(report.problems)
        with tempfile.TemporaryDirectory(prefix="theflash-verify-") as scratch:
            # a part on shared storage (store.remote) is checked there; its local copy, if any, too
            where = _remote_copy(remote, root_path, Path(scratch), part, report)
            if where is not None:
                _check_part(where, part, partitions.get((part.table_id, part.partition_id)),
                            schemas.get(part.table_id, {}), report, own_columns.get(part.part_id))
        if online and len(report.problems) > before:
            part_problems[part.path] = report.problems[before:]

    unlisted: list[str] = []
    for dirpath, dirs, files in os.walk(root_path):
        if dirpath == str(root_path) and ENGINE_DIRECTORIES.intersection(dirs):
            # an engine's own data (the ClickHouse engine's tables): not the manifest's to list
            dirs[:] = [d for d in dirs if d not in ENGINE_DIRECTORIES]
        for base in files:
            rel = os.path.relpath(os.path.join(dirpath, base), root_path).replace(os.sep, "/")
            report.files_seen += 1
            if "/" not in rel and (rel.endswith(_DATABASE_SUFFIXES) or rel in mf.AUXILIARY_FILES):
                continue
            if rel in listed:
                continue
            if rel.startswith("tables/") and not in_part_directory(rel):
                report.files_seen -= 1  # a table's Delta publication: `theflash delta verify` checks it
                continue
            if online and _in_flight_temporary(rel):
                report.in_flight += 1
                continue
            unlisted.append(rel)

    if online and (unlisted or part_problems):
        unlisted = _settle_online(root_path, unlisted, part_problems, started, report)
    for rel in unlisted:
        if _is_temporary(rel):
            report.problems.append(Problem(rel, "temporary file left by an interrupted flush or compaction",
                                           "stop the writer and delete it (opening the store for writing "
                                           "should clear it; if it does not, that is a store bug)"))
        else:
            report.problems.append(Problem(rel, "stray file: no part of the manifest lists it (an orphan)",
                                           "if no writer is running, move it out of the store directory; "
                                           "reads never use it"))
    return report


def _settle_online(root: Path, unlisted: list[str], part_problems: dict[str, list[Problem]], started: float,
                   report: VerifyReport) -> list[str]:
    """``verify --online``: what the running writer changed while the check ran is not damage. The
    manifest is read again: a file it lists now was in flight (renamed in before its edit); a live
    part's problems are dropped when the part has been removed since (compaction, then deletion
    once no lease sees it). An unlisted file younger than the check (less ``ONLINE_IN_FLIGHT_S``)
    while the writer runs is in flight too. Returns the files still unlisted."""
    conn = mf.connect(root, create=False)
    try:
        with mf.read(conn):
            now = {str(f): r for f, r in conn.execute("SELECT file, removed_version FROM parts")}
    finally:
        conn.close()
    for rel, problems in part_problems.items():
        if rel not in now or now[rel] is not None:
            for p in problems:
                report.problems.remove(p)
    writer = _writer_pid(root) is not None
    left = []
    for rel in unlisted:
        if rel in now:
            report.in_flight += 1
            continue
        try:
            young = os.stat(root / rel).st_mtime >= started - ONLINE_IN_FLIGHT_S
        except FileNotFoundError:
            report.in_flight += 1  # gone since the walk: a temporary renamed or a removed part deleted
            continue
        if writer and young:
            report.in_flight += 1
            continue
        left.append(rel)
    return left
