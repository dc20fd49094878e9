"""Read views of the manifest: ``StoreView`` (one SQLite read transaction, so every answer
comes from the same manifest version) and the value types it returns."""
from __future__ import annotations

import contextlib
import functools
import json
import operator
import sqlite3
import threading
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import numpy as np

from pyspark_theflash.heap import cyclic_gc_paused
from pyspark_theflash.store import keyspace
from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.errors import ManifestDamagedError, UnknownTableNameError
from pyspark_theflash.store.part_ref import PartRef
from pyspark_theflash.store.schemas import TableHistory, resolve_name
from pyspark_theflash.store.predicate import stats_from_json

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.schema.column_stats import ColumnStats

from pyspark_theflash.store.keyspace import Handle, HandleRange  # noqa: E402


class RegionState(NamedTuple):
    """A region of the store, as one manifest version holds it. A named tuple, not a dataclass:
    a plan over 10,000 regions builds 10,000 of them per view, and a frozen dataclass's
    ``__init__`` was most of that."""

    id: int
    start_key: bytes       # PD-encoded, inclusive; empty = -inf
    end_key: bytes         # PD-encoded, exclusive; empty = +inf
    epoch_version: int
    conf_ver: int
    applied_index: int
    resolved_ts: int
    state: str = "normal"  # normal | merged | removed
    snapshot_index: int = 0


@dataclass(frozen=True)
class LockInfo:
    region_id: int
    key: bytes
    primary: bytes
    start_ts: int
    ttl: int
    op: int  # binlog_pb2.OpType


@dataclass(frozen=True)
class PartitionInfo:
    table_id: int
    partition_id: int
    lo: Handle | None
    hi: Handle | None


@functools.lru_cache(maxsize=1024)
def _parsed_table_info(info_json: str, db: str) -> "TableInfo":
    """The table info of one row's JSON, parsed once per process: every snapshot lists every
    version of every table (``histories``) and a row never changes, so each snapshot parsing
    them all again was a fixed cost of every read, round and compaction. A TableInfo is frozen
    and its ``raw`` is only read, so one object serves every view. Bounded: past 1,024 rows
    (tables x versions) the least used are parsed again when read."""
    from pyspark_theflash.schema import TableInfo

    return TableInfo.from_json(json.loads(info_json), db=db)


def table_info_from_row(info_json: str, db: str, conn: sqlite3.Connection | None = None) -> "TableInfo":
    """A ``tables`` row's table info. One that does not parse was damaged in the manifest (SQLite
    keeps no checksum of a row's values): ``ManifestDamagedError`` naming the manifest of ``conn``."""
    try:
        return _parsed_table_info(info_json, db)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        path = mf.database_path(conn) if conn is not None else mf.MANIFEST_FILE
        raise ManifestDamagedError(path, f"a table info of {db!r} does not parse: {type(exc).__name__}: {exc}") from exc


def intersect(a: HandleRange, b: HandleRange | None) -> HandleRange | None:
    if b is None:
        return None
    lo = a[0] if b[0] is None else (b[0] if a[0] is None or keyspace.handle_before(a[0], b[0]) else a[0])
    hi = a[1] if b[1] is None else (b[1] if a[1] is None or keyspace.handle_before(b[1], a[1]) else a[1])
    if lo is not None and hi is not None and not keyspace.handle_before(lo, hi):
        return None
    return (lo, hi)



@functools.lru_cache(maxsize=1 << 17)
def _handle_range(start: bytes, end: bytes, table_id: int, common: bool) -> HandleRange | None:
    """``keyspace.region_handle_range``, remembered: every view of a store lists its range
    tombstones (one per region snapshot: 10,000 at 10,000 regions), and decoding their PD keys
    again per view and table was most of planning a delta merge there."""
    return keyspace.region_handle_range(start, end, table_id, common)

@dataclass(frozen=True)
class RegionColumns:
    """The live regions of a view in key order, as columns: what a plan asks of every region
    (bisection over the keys, the least resolved ts of a run) without a Python step per region.
    Keys stay lists of bytes: numpy's fixed-width bytes drop trailing NULs, and region keys end
    in them."""

    ids: np.ndarray          # int64
    start_keys: list[bytes]  # PD-encoded; b"" = -inf
    end_keys: list[bytes]    # PD-encoded; b"" = +inf
    resolved_ts: np.ndarray  # int64 (TSO ts are below 2**63)
    disjoint: bool           # each region ends at or before the next one's start (as the writer keeps them)


def region_columns_of(ids: Sequence[int] | np.ndarray, start_keys: list[bytes], end_keys: list[bytes],
                      resolved_ts: Sequence[int] | np.ndarray) -> RegionColumns:
    """``RegionColumns`` of regions in start-key order."""
    # (an empty end is +inf: only the last region can have one)
    disjoint = all(map(operator.le, end_keys[:-1], start_keys[1:])) and all(end_keys[:-1])
    return RegionColumns(np.array(ids, np.int64), start_keys, end_keys, np.array(resolved_ts, np.int64), disjoint)


@dataclass(frozen=True)
class TableRegionColumns:
    """``StoreView.table_regions`` as columns, for a table of int handles over disjoint regions:
    the live regions holding keys of the table's records in handle order (which is their key
    order), each with the table's handles in it as [lo, hi)."""

    at: np.ndarray       # int64: the regions' positions in the view's RegionColumns
    ids: np.ndarray      # int64
    lo: np.ndarray       # int64: the first handle (0 where lo_open)
    hi: np.ndarray       # int64: the handle past the last (0 where hi_open)
    lo_open: np.ndarray  # bool: no bound below
    hi_open: np.ndarray  # bool: no bound above

    def handle_ranges(self) -> list[HandleRange]:
        """The (lo, hi) pairs ``table_regions`` gives (None = unbounded)."""
        los = [None if o else v for v, o in zip(self.lo.tolist(), self.lo_open.tolist())]
        his = [None if o else v for v, o in zip(self.hi.tolist(), self.hi_open.tolist())]
        return list(zip(los, his))


def _table_region_columns(cols: RegionColumns, table_id: int) -> TableRegionColumns:
    """``StoreView.table_region_columns`` of disjoint regions in key order, int handles."""
    starts, ends = cols.start_keys, cols.end_keys
    first_key, last_key = keyspace.record_range_keys(table_id)  # PD-encoded, as the regions' keys
    a = max(0, bisect_right(starts, first_key) - 1)
    b = bisect_left(starts, last_key)
    if a < b and ends[a] and ends[a] <= first_key:
        a += 1  # the region before the records ends at or before their first key
    if a >= b:
        empty = np.zeros(0, np.int64)
        return TableRegionColumns(empty, empty, empty, empty, np.zeros(0, bool), np.zeros(0, bool))
    start_exact, lo = keyspace.record_key_handles(starts[a:b], table_id)
    end_exact, hi = keyspace.record_key_handles(ends[a:b], table_id)
    lo_open, hi_open = np.zeros(b - a, bool), np.zeros(b - a, bool)
    keep = start_exact & end_exact
    keep &= lo < hi  # (a region over no whole handle holds no row of the table)
    for i in np.flatnonzero(~(start_exact & end_exact)).tolist():  # the other boundaries, one by one
        rng = _handle_range(starts[a + i], ends[a + i], table_id, False)
        keep[i] = rng is not None
        if rng is not None:
            lo_open[i], hi_open[i] = rng[0] is None, rng[1] is None
            lo[i] = 0 if rng[0] is None else rng[0]
            hi[i] = 0 if rng[1] is None else rng[1]
    at = np.flatnonzero(keep)
    return TableRegionColumns(at + a, cols.ids[at + a], lo[at], hi[at], lo_open[at], hi_open[at])


# The live regions as a plan asks for them (``RegionColumns``): four columns, none TEXT (SQLite's
# values need no Python call, as the connection's text_factory is), sorted by the caller (SQLite
# sorts them through a temporary B-tree: a third of the read at 10,000 regions)
_LIVE_REGIONS_SQL = "SELECT region_id, start_key, end_key, resolved_ts FROM regions WHERE state = 'normal'"


class LiveRegions:
    """The live regions of one manifest version, read once (``_LIVE_REGIONS_SQL``) and shared by
    every view of a ``Store`` at that version (``RegionMemo``): as columns in key order
    (``columns``), and per table (``tables``: ``TableRegionColumns``, made when first asked for)."""

    def __init__(self, version: int, rows: list[tuple[object, ...]]) -> None:
        self.version = version
        if rows:
            ids, starts, ends, resolved = zip(*rows)
        else:
            ids, starts, ends, resolved = (), (), (), ()
        start_keys, end_keys = list(starts), list(ends)
        if not set(map(type, start_keys)) | set(map(type, end_keys)) <= {bytes}:  # (this code writes BLOBs)
            start_keys, end_keys = list(map(bytes, start_keys)), list(map(bytes, end_keys))
        id_column, resolved_column = np.array(ids, np.int64), np.array(resolved, np.int64)
        if not all(map(operator.le, start_keys, start_keys[1:])):  # (in C: no Python step a region)
            order = sorted(range(len(start_keys)), key=start_keys.__getitem__)
            id_column, resolved_column = id_column[order], resolved_column[order]
            start_keys = list(map(start_keys.__getitem__, order))
            end_keys = list(map(end_keys.__getitem__, order))
        self.columns = region_columns_of(id_column, start_keys, end_keys, resolved_column)
        self.tables: dict[tuple[int, bool], TableRegionColumns] = {}  # by (table id, common handle)


class RegionMemo:
    """The live regions of the newest manifest version a ``Store``'s views read, kept for its
    next views: a plan opens two (one choosing its ts, one after its lease is taken) and
    reading 10,000 region rows twice was a third of it. A manifest edit that changes a region
    makes a new version (``manifest.write_edit`` refuses one that does not), so the rows of a
    version are the rows of every view at it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: LiveRegions | None = None

    def at(self, version: int, read: Callable[[], LiveRegions]) -> LiveRegions:
        with self._lock:
            held = self._held
        if held is not None and held.version == version:
            return held
        got = read()
        with self._lock:
            if self._held is None or self._held.version <= version:
                self._held = got
        return got


class StoreView:
    """A consistent view of the manifest at one version. Close it (or use ``with``) to end
    its read transaction. Reading the part files it lists needs a lease (``Store.scan``
    takes one) or the files may be deleted under the reader."""

    def __init__(self, conn: sqlite3.Connection, owns_conn: bool = True, memo: RegionMemo | None = None) -> None:
        self._conn = conn
        self._owns = owns_conn
        self._memo = memo
        conn.execute("BEGIN")
        try:
            # SQLite walks some damaged pages without an error (a hidden row, a NULL where none
            # can be): the view's pages are checked before it reads them (manifest.check_pages)
            mf.check_pages(conn)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # the check's error is the one to raise
                conn.execute("ROLLBACK")
            if owns_conn:
                conn.close()
            raise
        self.version = mf.current_version(conn)
        self._tables: dict[int, "TableInfo"] | None = None
        self._lifes: dict[int, tuple[int, int | None, str]] | None = None
        self._histories: dict[int, TableHistory] | None = None
        self._columns: dict[tuple[int, int], tuple[tuple[int, str], ...]] = {}
        self._regions: dict[bool, list[RegionState]] = {}  # regions(include_gone), read once
        self._live: LiveRegions | None = None  # the live regions, read once (or shared through the memo)
        self._table_regions: dict[int, list[tuple[RegionState, HandleRange]]] = {}  # table_regions, once
        self._part_columns = mf.has_column(conn, "parts", "columns")
        self._part_checksums = mf.has_column(conn, "parts", "checksum")
        # Live parts by table, read once per view (one read transaction: they cannot change),
        # since a planner asks for them region by region.
        self._live_parts: dict[int, list[PartRef]] = {}

    def __enter__(self) -> "StoreView":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute("COMMIT")
        finally:
            if self._owns:
                self._conn.close()
            # closed: a use after close fails at once on None; the methods are typed for an open view
            self._conn = None  # type: ignore[assignment]

    # --- tables ---------------------------------------------------------------------------
    def _latest_tables(self) -> dict[int, "TableInfo"]:
        """The newest version of every table id the store holds, retired ones included."""
        if self._tables is None:
            rows = self._conn.execute(
                "SELECT t.table_id, t.db, t.info FROM tables t JOIN (SELECT table_id, MAX(schema_version) v "
                "FROM tables GROUP BY table_id) m ON t.table_id = m.table_id AND t.schema_version = m.v "
                "ORDER BY t.table_id").fetchall()
            self._tables = {int(r[0]): table_info_from_row(r[2], r[1], self._conn) for r in rows}
        return self._tables

    def _lifetimes(self) -> dict[int, tuple[int, int | None, str]]:
        """table id -> (created_ts, retired_ts or None, reason) of the ids a DDL event named."""
        if self._lifes is None:
            self._lifes = {}
            if mf.has_table(self._conn, "table_lifetimes"):
                self._lifes = {int(r[0]): (int(r[1]), None if r[2] is None else int(r[2]), r[3] or "") for r in
                               self._conn.execute("SELECT table_id, created_ts, retired_ts, reason FROM table_lifetimes")}
        return self._lifes

    def histories(self) -> dict[int, TableHistory]:
        """Every version of every table id with its commit ts and lifetime (``store.schemas``)."""
        if self._histories is None:
            commit_ts: dict[tuple[int, int], int] = {}
            if mf.has_table(self._conn, "table_versions"):
                commit_ts = {(int(t), int(v)): int(ts) for t, v, ts in
                             self._conn.execute("SELECT table_id, schema_version, commit_ts FROM table_versions")}
            out: dict[int, TableHistory] = {}
            for tid, version, db, info in self._conn.execute(
                    "SELECT table_id, schema_version, db, info FROM tables ORDER BY table_id, schema_version"):
                h = out.get(int(tid))
                if h is None:
                    created, retired, reason = self._lifetimes().get(int(tid), (0, None, ""))
                    h = out[int(tid)] = TableHistory(int(tid), db, created, retired, reason)
                h.add(table_info_from_row(info, db, self._conn), commit_ts.get((int(tid), int(version)), 0))
            self._histories = out
        return self._histories

    def is_retired(self, table_id: int) -> bool:
        life = self._lifetimes().get(int(table_id))
        return life is not None and life[1] is not None

    def tables(self) -> list["TableInfo"]:
        """The live tables (a dropped or truncated table id is not listed)."""
        return [t for tid, t in self._latest_tables().items() if not self.is_retired(tid) and t.partition_of is None]

    def table(self, name_or_id: "str | int | TableInfo") -> "TableInfo":
        """The current schema of a table: by id (any id the store holds, retired ones too) or by
        name (``db.table`` or ``table``: the live table of that name)."""
        tables = self._latest_tables()
        if hasattr(name_or_id, "columns") and hasattr(name_or_id, "id"):
            name_or_id = name_or_id.id
        if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.isdigit()):
            t = tables.get(int(name_or_id))
            if t is not None:
                return t
        elif isinstance(name_or_id, str):
            want = name_or_id.lower()
            matches = [t for tid, t in tables.items() if not self.is_retired(tid) and t.partition_of is None and
                       (f"{t.db}.{t.name}".lower() == want or ("." not in want and t.name.lower() == want))]
            if matches:
                # Two live tables of one name: the store missed a DROP (it started mid-stream);
                # the one changed last is the table the name means now.
                return max(matches, key=lambda t: (t.schema_version, t.id))
        raise UnknownTableNameError(name_or_id, sorted(f"{t.db}.{t.name}" for t in self.tables()))

    def table_at(self, name_or_id: "str | int | TableInfo", ts: int) -> "TableInfo":
        """The table as of ``ts``: by name, the table that had the name then (a truncated or
        dropped one included, while its parts last); its schema version in force at ts."""
        if hasattr(name_or_id, "columns") and hasattr(name_or_id, "id"):
            name_or_id = name_or_id.id
        histories = self.histories()
        if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.isdigit()):
            h = histories.get(int(name_or_id))
            if h is not None:
                return h.at(ts)
        elif isinstance(name_or_id, str):
            found = resolve_name(histories.values(), name_or_id, ts)
            if found:
                return found[0].at(ts)
        raise UnknownTableNameError(f"{name_or_id} at ts {ts}", sorted(
            f"{h.at(ts).db}.{h.at(ts).name}" for h in histories.values() if h.lives_at(ts)))

    def schema_at(self, table: "str | int | TableInfo", version: int) -> "TableInfo":
        table_id = self.table(table).id
        row = self._conn.execute("SELECT db, info FROM tables WHERE table_id = ? AND schema_version = ?",
                                 (table_id, version)).fetchone()
        if row is None:
            raise UnknownTableNameError(f"{table_id}@schema_version {version}", [])
        return table_info_from_row(row[1], row[0], self._conn)

    def schema_changes_seen_until(self) -> int:
        """A ts at or below which every schema change (DDL event) is in the store: the highest
        resolved ts of any region. The upstream appends a DDL event and takes its commit ts in
        one step, so no event stamped later precedes it in the one log, and the writer applies
        the log in order (a batch's DDL before its region events, persisted first)."""
        row = self._conn.execute("SELECT MAX(resolved_ts) FROM regions").fetchone()
        return int(row[0] or 0)

    def retired_tables(self) -> list[tuple[int, str, int, str]]:
        """(table id, db.name, retired ts, reason) of dropped and truncated table ids."""
        out = []
        for tid, (_created, retired, reason) in sorted(self._lifetimes().items()):
            if retired is not None:
                t = self._latest_tables().get(tid)
                out.append((tid, "?" if t is None else f"{t.db}.{t.name}", retired, reason))
        return out

    def truncations(self) -> dict[int, int]:
        """Old table id -> new table id of each TRUNCATE TABLE the store applied: TiDB gives
        the name a new, empty table id at the truncate's ts, the old id retired at that ts
        ("truncated")."""
        histories = self.histories()
        born: dict[tuple[str, str, int], int] = {}
        for tid, h in histories.items():
            first = h.at(h.created_ts) if len(h) else None
            if first is not None and first.partition_of is None:
                born[(first.db.lower(), first.name.lower(), h.created_ts)] = tid
        out: dict[int, int] = {}
        for tid, h in histories.items():
            if h.retired_ts is not None and h.retired_reason.startswith("truncated") and len(h):
                last = h.latest
                new = born.get((last.db.lower(), last.name.lower(), h.retired_ts))
                if new is not None and new != tid:
                    out[tid] = new
        return out

    def ignored_tables(self) -> list[tuple[int, str, str]]:
        return [(int(r[0]), r[1], r[2]) for r in
                self._conn.execute("SELECT table_id, db, name FROM ignored_tables ORDER BY table_id")]

    # --- regions and locks ------------------------------------------------------------------
    _REGION_COLUMNS = ("SELECT region_id, start_key, end_key, epoch_version, conf_ver, applied_index, resolved_ts, "
                       "state, snapshot_index FROM regions")

    def regions(self, include_gone: bool = False) -> list[RegionState]:
        """The live regions in key order; ``include_gone``: the merged and removed ones too
        (they stay listed, and under splits and merges outnumber the live ones many times:
        a reader polls this, so the live ones are picked in SQL)."""
        got = self._regions.get(include_gone)
        if got is None:  # (a view is one version of the manifest: a planner asks several times)
            where = "" if include_gone else " WHERE state = 'normal'"
            rows = self._conn.execute(f"{self._REGION_COLUMNS}{where} ORDER BY start_key").fetchall()
            got = self._regions[include_gone] = _region_states(rows)
        return list(got)

    def live_regions(self) -> LiveRegions:
        """The live regions of this view's manifest version (``LiveRegions``), read once."""
        if self._live is None:
            def read() -> LiveRegions:
                # (10,000 tuples and more, none garbage: the collections they set off scan in vain)
                with cyclic_gc_paused():
                    return LiveRegions(self.version, self._conn.execute(_LIVE_REGIONS_SQL).fetchall())

            self._live = read() if self._memo is None else self._memo.at(self.version, read)
        return self._live

    def live_regions_at(self, positions: Sequence[int] | np.ndarray) -> list[RegionState]:
        """The live regions at ``positions`` of ``region_columns()``, as ``RegionState`` objects
        (for the few a caller has picked from the columns)."""
        ids = self.region_columns().ids[np.asarray(positions, np.int64)].tolist()
        listed = self._regions.get(False)
        if listed is not None:
            by_id = {r.id: r for r in listed}
        else:
            rows = self._conn.execute(f"{self._REGION_COLUMNS} WHERE region_id IN (SELECT value FROM json_each(?))",
                                      (json.dumps(ids),)).fetchall()
            by_id = {r.id: r for r in _region_states(rows)}
        return [by_id[i] for i in ids]

    def region_columns(self) -> RegionColumns:
        """``regions()`` as columns (``RegionColumns``), made once per manifest version."""
        return self.live_regions().columns

    def table_region_columns(self, table_id: int) -> TableRegionColumns | None:
        """``table_regions`` as columns (``TableRegionColumns``), or None where they cannot be
        (a clustered table's handles are key bytes; overlapping regions, which the writer never
        leaves, have no one key order): the caller asks ``table_regions`` then.

        The regions over the table's records are one run of the key-ordered regions, found by
        bisection; a boundary that is exactly a record key of the table is decoded with the
        others at once (``keyspace.record_key_handles``), and only a region with another kind of
        boundary (the run's ends, often) takes ``keyspace.region_handle_range``."""
        live = self.live_regions()
        cols = live.columns
        common = self._is_common(table_id)
        if not cols.disjoint or common:
            return None
        got = live.tables.get((table_id, common))
        if got is None:
            got = live.tables[(table_id, common)] = _table_region_columns(cols, table_id)
        return got

    def region(self, region_id: int) -> RegionState | None:
        row = self._conn.execute(f"{self._REGION_COLUMNS} WHERE region_id = ?", (region_id,)).fetchone()
        return None if row is None else _region_state(row)

    def _is_common(self, table_id: int) -> bool:
        t = self._latest_tables().get(table_id)
        return bool(t is not None and t.is_common_handle)

    def table_regions(self, table_id: int) -> list[tuple[RegionState, HandleRange]]:
        """The live regions holding keys of the table's records, each with the table's handles
        in it as [lo, hi), in handle order. Remembered per view: a plan asks for them at the
        learner read, the lock check and partitioning, over every region of the table."""
        got = self._table_regions.get(table_id)
        if got is None:
            columns = self.table_region_columns(table_id)
            if columns is not None:
                got = list(zip(self.live_regions_at(columns.at), columns.handle_ranges()))
            else:
                common = self._is_common(table_id)
                got = []
                for r in self.regions():
                    hr = _handle_range(r.start_key, r.end_key, table_id, common)
                    if hr is not None:
                        got.append((r, hr))
                got.sort(key=lambda item: (item[1][0] is not None, item[1][0] or 0))
            self._table_regions[table_id] = got
        return list(got)

    def region_handle_range(self, region: RegionState, table_id: int) -> HandleRange | None:
        """The handles of ``table_id`` inside the region's key range, as [lo, hi) (None =
        unbounded), or None when the region holds no row of the table. Handles are ints, or
        memcomparable key bytes for a clustered common-handle table."""
        return _handle_range(region.start_key, region.end_key, table_id, self._is_common(table_id))

    def locks(self, table_id: int | None = None, lo: int | None = None,
              hi: int | None = None) -> list[LockInfo]:
        sql = "SELECT region_id, key, primary_key, start_ts, ttl, op FROM locks"
        args: list[object] = []
        where = []
        if table_id is not None:
            where.append("table_id = ?")
            args.append(table_id)
            if lo is not None:
                where.append("handle >= ?")
                args.append(lo)
            if hi is not None:
                where.append("handle < ?")
                args.append(hi)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY key, start_ts"
        return [LockInfo(int(r[0]), bytes(r[1]), bytes(r[2]), int(r[3]), int(r[4]), int(r[5]))
                for r in self._conn.execute(sql, args)]

    # --- parts ------------------------------------------------------------------------------
    def partitions(self, table_id: int) -> list[PartitionInfo]:
        rows = self._conn.execute("SELECT partition_id, lo, hi FROM partitions WHERE table_id = ? "
                                  "ORDER BY lo IS NOT NULL, lo", (table_id,)).fetchall()
        return [PartitionInfo(table_id, int(r[0]), r[1], r[2]) for r in rows]

    def _tombstones(self, table_id: int, after: int, through: int | None) -> list[tuple[int, HandleRange]]:
        """(version, handle range) of the range tombstones over the table's handles made after
        manifest version ``after`` and at or before ``through`` (None: any), in version order."""
        out = []
        bound, args = ("", (after,)) if through is None else (" AND version <= ?", (after, through))
        for start, end, version in self._conn.execute(
                f"SELECT start_key, end_key, version FROM range_tombstones WHERE version > ?{bound} "
                "ORDER BY version, tombstone_id", args):
            rng = _handle_range(bytes(start), bytes(end), table_id, self._is_common(table_id))
            if rng is not None:
                out.append((int(version), rng))
        return out

    def _columns_at(self, table_id: int, schema_version: int) -> tuple[tuple[int, str], ...]:
        """(id, name) of the table's columns at a schema version (parsed once per view: a
        planner lists parts region by region)."""
        key = (table_id, schema_version)
        if key not in self._columns:
            row = self._conn.execute("SELECT db, info FROM tables WHERE table_id = ? AND schema_version = ?",
                                     (table_id, schema_version)).fetchone()
            info = table_info_from_row(row[1], row[0], self._conn)
            self._columns[key] = tuple((c.id, c.name) for c in info.columns)
        return self._columns[key]

    def parts(self, table_id: int, lo: int | bytes | None = None, hi: int | bytes | None = None) -> list[PartRef]:
        """Live parts of the table overlapping handles [lo, hi), each with the range
        tombstones that apply to it."""
        live = self._live_parts.get(table_id)
        if live is None:
            live = self._live_parts[table_id] = self._part_refs(table_id, "removed_version IS NULL", (), None, None, None)
        if lo is None and hi is None:
            return list(live)
        return [p for p in live if p.overlaps(lo, hi)]

    def _part_refs(self, table_id: int, where: str, args: tuple[object, ...], as_of_version: int | None,
                   lo: int | None, hi: int | None) -> list[PartRef]:
        bounds = {p.partition_id: (p.lo, p.hi) for p in self.partitions(table_id)}
        out: list[PartRef] = []
        rows = self._conn.execute(
            "SELECT part_id, partition_id, kind, file, rows, bytes, min_handle, max_handle, min_commit_ts, "
            "max_commit_ts, single_version, delete_marks, schema_version, data_version, added_version, stats, "
            f"{'columns' if self._part_columns else 'NULL'}, {'checksum' if self._part_checksums else 'NULL'} "
            f"FROM parts WHERE table_id = ? AND {where} ORDER BY part_id", (table_id, *args)).fetchall()
        # a tombstone applies to the parts whose data is older than it: one no part is older than
        # is not read (a region's snapshot leaves one over its range, 10,000 in a store of 10,000
        # regions until compaction prunes them, each decoded here per view)
        oldest = min((int(r[13]) for r in rows), default=None)
        tombstones = [] if oldest is None else self._tombstones(table_id, oldest, as_of_version)
        for r in rows:
            plo, phi = bounds.get(int(r[1]), (None, None))
            ref_t = tuple(rng for v, rng in tombstones if v > int(r[13]) and r[6] is not None
                          and (rng[0] is None or r[7] >= rng[0]) and (rng[1] is None or r[6] < rng[1]))
            ref = PartRef(int(r[0]), table_id, int(r[1]), plo, phi, r[2], r[3], int(r[4]), int(r[5]),
                          r[6], r[7], r[8], r[9], bool(r[10]), int(r[11]), int(r[12]),
                          self._columns_at(table_id, int(r[12])) if r[16] is None
                          else tuple((int(i), str(n)) for i, n in json.loads(r[16])), _stats_items(r[15]),
                          ref_t, int(r[14]), r[17])
            if lo is None and hi is None or ref.overlaps(lo, hi):
                out.append(ref)
        return out

    def size_bytes(self, table_id: int, lo: int | None = None, hi: int | None = None) -> int:
        """Bytes of the live parts overlapping [lo, hi), pro rata by handle span for parts
        that stick out of it (an estimate for planners)."""
        total = 0.0
        for p in self.parts(table_id, lo, hi):
            if p.min_handle is None or p.max_handle is None:
                continue
            if isinstance(p.min_handle, bytes) or isinstance(p.max_handle, bytes):
                total += p.bytes  # no arithmetic on byte handles: count the whole part
                continue
            span = p.max_handle - p.min_handle + 1
            a = p.min_handle if lo is None else max(lo, p.min_handle)
            b = p.max_handle + 1 if hi is None else min(hi, p.max_handle + 1)
            total += p.bytes * max(0, b - a) / span
        return int(total)

    # --- meta -------------------------------------------------------------------------------
    def position(self) -> tuple[int, int] | None:
        seg = mf.get_meta(self._conn, "position_segment")
        off = mf.get_meta(self._conn, "position_offset")
        return None if seg is None else (int(seg), int(off))

    def gc_safe_point(self) -> int:
        return int(mf.get_meta(self._conn, "gc_safe_point", 0))

    def upstream(self) -> str | None:
        v = mf.get_meta(self._conn, "upstream")
        return None if v is None else str(v)

    def upstream_cluster_id(self) -> int | None:
        """The cluster id of the upstream the writer recorded (None: not recorded, an older store)."""
        v = mf.get_meta(self._conn, "upstream_cluster_id")
        return None if v is None else int(v)

    def table_ids_with_parts(self) -> list[int]:
        return [int(r[0]) for r in self._conn.execute(
            "SELECT DISTINCT table_id FROM partitions ORDER BY table_id")]

    def conn(self) -> sqlite3.Connection:
        return self._conn


def as_region_state(r: Sequence[Any]) -> RegionState:
    return RegionState(*r)


@functools.lru_cache(maxsize=8192)
def _stats_items(text: str) -> tuple[tuple[int, ColumnStats], ...]:
    """A part's statistics, parsed once per process: a part's stats never change, and a table
    under live writes lists hundreds of parts on every plan."""
    return tuple(sorted(stats_from_json(json.loads(text)).items()))


def _region_state(r: Any) -> RegionState:
    return RegionState(int(r[0]), bytes(r[1]), bytes(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]), r[7], int(r[8]))


def _region_states(rows: list[Any]) -> list[RegionState]:
    """``_region_state`` of every row, without a Python step per field where SQLite gave the
    column types already (INTEGER as int, BLOB as bytes: always, in a manifest this code wrote)."""
    out = list(map(RegionState._make, rows))
    if not all(type(r[1]) is bytes and type(r[2]) is bytes for r in rows):
        return [_region_state(r) for r in rows]
    return out
