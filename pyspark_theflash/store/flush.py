"""The flush pipeline: what ``Store.write`` buffered becomes durable in one manifest edit.

A flush sorts each table's buffered rows into its partitions' delta parts, writes and fsyncs
the files, then commits one manifest edit (parts, region states, open locks, tombstones, the
binlog position). ``flush(wait=False)`` does the file work on a background thread while the
writer applies the next batch; edits stay in order (see ``FlushPipeline.flush``).
``FlushPipeline`` works on the writer's memory (``WriteState``) and tables (``TableCatalog``,
whose staged schema changes a flush's edit carries), commits through the store's
``EditLock``. A store whose row sink keeps the rows itself (the ClickHouse engine) gets
records of their statistics instead of part files (``row_sink``).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Literal, overload

import numpy as np
import pyarrow as pa

from pyspark_theflash.store import keyspace
from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.catalog import TableCatalog
from pyspark_theflash.store.edit_lock import EditLock
from pyspark_theflash.store.errors import (
    EditConflictError,
    FlushFailedError,
    StoreFencedError,
)
from pyspark_theflash.store.options import StoreOptions
from pyspark_theflash.store.manifest import RegionResolved
from pyspark_theflash.store.part_ref import PartRef
from pyspark_theflash.store.row_sink import BufferedRows, RowSink
from pyspark_theflash.store.txn_merge_tree import (
    ROWID,
    describe_engine_rows,
    install_part,
    names_columns_by_id,
    new_part_name,
    sort_versions,
    split_by_partition,
    sync_dirs,
    temp_name,
    write_part,
)
from pyspark_theflash.store.schemas import TableHistory
from pyspark_theflash.store.write_state import WriteState

if TYPE_CHECKING:
    from pyspark_theflash.schema.table_info import ColumnInfo


@dataclass(frozen=True)
class FlushResult:
    version: int                 # manifest version of the edit (0: nothing to flush)
    parts: int
    rows: int
    bytes: int
    regions: int                 # region states written (changed since the previous flush)
    locks: int                   # open locks persisted after the edit
    position: tuple[int, int] | None
    seconds: float
    # the region rows the edit wrote (``_PreparedFlush.regions``: id, start, end, epoch version,
    # conf ver, applied index, resolved ts, state, snapshot index, orphan-until ts), for a
    # caller that follows the regions' progress without listing every region after each flush
    region_rows: tuple[mf.RegionRow, ...] = ()
    region_resolved: RegionResolved = field(default_factory=RegionResolved)  # regions only it changed




def _version_columns(history: TableHistory, version: int) -> list[ColumnInfo]:
    """Columns of the table at ``version`` (the buffer's rows were decoded with it)."""
    info = history.by_version(version)
    assert info is not None, f"table {history.table_id} has no schema version {version} in memory"
    return list(info.columns)




class FlushPipeline:
    """``Store.flush`` and ``Store.sync``: buffered rows → part files → one manifest edit."""

    def __init__(self, root: Path, options: StoreOptions, state: WriteState, catalog: TableCatalog,
                 edit_lock: EditLock, conn: sqlite3.Connection,
                 connect: Callable[[], sqlite3.Connection]) -> None:
        self.root = root
        self.options = options
        self.state = state
        self.catalog = catalog
        self.edit_lock = edit_lock
        self._conn = conn                                  # the writer's manifest connection
        self._connect = connect
        self._pending: PendingFlush | None = None          # the last pipelined flush
        self._flush_conn: sqlite3.Connection | None = None  # the pipelined flushes' manifest connection
        # Receives each flush's committed rows inside its manifest edit (``store.row_sink``):
        # the ClickHouse engine keeps its tables this way. None for the native engine.
        self.row_sink: RowSink | None = None

    # --- flush -------------------------------------------------------------------------------
    @overload
    def flush(self) -> FlushResult: ...
    @overload
    def flush(self, wait: Literal[True]) -> FlushResult: ...
    @overload
    def flush(self, wait: Literal[False]) -> "PendingFlush": ...
    @overload
    def flush(self, wait: bool) -> "FlushResult | PendingFlush": ...

    def flush(self, wait: bool = True) -> "FlushResult | PendingFlush":
        """Persist everything applied so far in one manifest edit: delta parts, region
        states, open locks, range tombstones and the binlog position. Returns the
        ``FlushResult`` once durable.

        ``wait=False`` is the pipelined form: the buffered rows are handed to a background
        thread, which sorts and writes the part files and makes them durable (fsync of files
        and directories, then the manifest edit) while the caller applies the next batch; it
        returns a ``PendingFlush``. Nothing of it is visible before its edit commits. Edits stay in
        order: a pipelined flush called meanwhile follows it (writes its parts at once, commits
        right after it; at most two in flight), any other manifest edit of this store waits
        for it, and so do ``sync()``, ``snapshot()``, ``compact()``, ``gc()``, ``status()`` and
        ``close()``. If the background step fails, the next call raises ``FlushFailedError``
        and the store refuses further writes."""
        with self.state.lock:
            pred = None if wait or not self.has_unflushed() else self._follow_pending()
            if pred is None:
                self.edit_lock.lock.acquire()
            handed_over = False
            try:
                self.edit_lock.raise_failure()  # the previous pipelined flush may have failed meanwhile
                if wait:
                    return self._flush_locked()
                t0 = time.monotonic()
                prepared = self._prepare_flush(self._conn, t0, None if pred is None else pred._partitions_after)
                if prepared is None:
                    return PendingFlush.finished(self._empty_flush(t0))
                self._forget_flushed(prepared)
                if self._flush_conn is None:
                    self._flush_conn = self._connect()
                pending = PendingFlush(self.edit_lock, pred, prepared.partitions_after())
                self._pending = pending
                thread = threading.Thread(target=self._make_durable_in_background, args=(prepared, pending),
                                          name="theflash-flush")
                try:
                    thread.start()
                except BaseException as exc:  # memory has moved past this flush: refuse writes from now on
                    failure = FlushFailedError(str(self.root), prepared.position, exc)
                    self.edit_lock.failure = failure
                    self.edit_lock.failure_reported = True
                    pending._error = failure
                    pending._done.set()
                    raise failure from exc
                handed_over = True  # its thread releases the edit lock (or hands it on) once its edit is done
                return pending
            finally:
                if not handed_over:
                    if pred is None:
                        self.edit_lock.lock.release()
                    else:
                        self._unfollow(pred)

    def sync(self) -> FlushResult | None:
        """Wait until the last pipelined flush that had something to persist is durable;
        its result (None if there was none). Raises ``FlushFailedError`` if it (or an earlier
        one) failed."""
        pending = self._pending
        result = None if pending is None else pending.wait()
        self.edit_lock.raise_failure()
        return result

    def close(self) -> None:
        """Drain a pending pipelined flush; close the pipelined flushes' connection."""
        if self._pending is not None:
            self._pending._done.wait()
        if self._flush_conn is not None:
            self._flush_conn.close()
            self._flush_conn = None

    def flush_due(self) -> bool:
        """True when the oldest unflushed change is older than the flush deadline."""
        since = self.state.dirty_since
        return since is not None and time.monotonic() - since >= self.options.flush_deadline_s

    def flush_due_in(self) -> float | None:
        """Seconds until the oldest unflushed change reaches the flush deadline (at most 0:
        due now); None when nothing is unflushed."""
        since = self.state.dirty_since
        if since is None:
            return None
        return since + self.options.flush_deadline_s - time.monotonic()

    def _follow_pending(self) -> "PendingFlush | None":
        """The pending pipelined flush this one may follow without taking the edit lock (its
        part files are then written while that one's fsyncs and edit finish; the lock passes
        from it to this one). None — take the lock — when there is none, when it is done, or
        when another thread waits for the lock (compaction, GC: they get their turn). At most
        two flushes are in flight: the one before the pending one is waited for first."""
        pending = self._pending
        if pending is None or pending.done():
            return None
        before = pending._predecessor
        if before is not None:
            before._done.wait()
        with self.edit_lock.chain_mutex:
            if pending._finished or self.edit_lock.waiters:
                return None
            pending._successor = True
            return pending

    def _unfollow(self, pred: "PendingFlush") -> None:
        """Undo ``_follow_pending`` when no flush follows after all: if ``pred`` finished
        meanwhile, the lock it handed on is released here."""
        with self.edit_lock.chain_mutex:
            pred._successor = False
            owned = pred._finished
        if owned:
            self.edit_lock.lock.release()

    def _make_durable_in_background(self, prepared: "_PreparedFlush", pending: "PendingFlush") -> None:
        conn = self._flush_conn
        assert conn is not None
        try:
            try:
                self._write_parts(prepared)
                before = pending._predecessor
                if before is not None:  # edits commit in order: the flush this one follows first
                    before._done.wait()
                    pending._predecessor = None  # done: no chain of finished flushes is kept alive
                    if self.edit_lock.failure is not None:
                        _discard_parts(self.root, prepared.written)
                        pending._error = self.edit_lock.failure
                        return
                version = self._commit_flush(prepared, conn)
            except EditConflictError:
                raise RuntimeError("the store's partitions changed under a pipelined flush (another writer "
                                   "process?)") from None
            pending._result = prepared.result(version)
        except BaseException as exc:
            if conn.in_transaction:  # a COMMIT that failed may leave it open: never hold the write lock
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            failure: BaseException
            if isinstance(exc, StoreFencedError):
                failure = exc  # another writer owns the store: that, not a storage failure, ends this one
            else:
                failure = FlushFailedError(str(self.root), prepared.position, exc)
                failure.__cause__ = exc
            self.edit_lock.failure = failure
            pending._error = failure
        finally:
            with self.edit_lock.chain_mutex:
                pending._finished = True
                hand_on = pending._successor
            if not hand_on:
                self.edit_lock.lock.release()
            pending._done.set()

    def _empty_flush(self, t0: float) -> FlushResult:
        # Nothing applied since the last flush: no edit (version 0 says so).
        self.state.dirty_since = None
        return FlushResult(0, 0, 0, 0, 0, len(self.state.persisted_locks), self.state.position,
                           time.monotonic() - t0)

    def _flush_locked(self) -> FlushResult:
        t0 = time.monotonic()
        conn = self._conn
        for _attempt in range(5):
            prepared = self._prepare_flush(conn, t0)
            if prepared is None:
                return self._empty_flush(t0)
            try:
                self._write_parts(prepared)
                version = self._commit_flush(prepared, conn)
            except EditConflictError:
                continue
            self._forget_flushed(prepared)
            return prepared.result(version)
        raise RuntimeError("flush: partitions kept changing under the flush (another writer process?)")

    def has_unflushed(self) -> bool:
        """Was anything applied (rows, tombstones, region states, position, a schema change)
        since the last flush?"""
        return self.state.has_unflushed() or bool(self.catalog.staged)

    def _prepare_flush(self, conn: sqlite3.Connection, t0: float,
                       partitions: dict[int, list[tuple[int, int | None, int | None]]] | None = None
                       ) -> "_PreparedFlush | None":
        """What a flush will persist, taken in the caller: the buffered rows per table and
        schema version (with the partitions they split into and their column ids), the region
        states, lock-set difference, tombstones and position the edit will persist. None when
        nothing was applied since the last flush. Cheap (no row is touched) and changes nothing
        in memory; ``_write_parts`` then does the CPU work, in the background for a pipelined
        flush. ``partitions``: the partitions as they will be when the edit commits (a flush
        following a pending one: as that one leaves them); by default as the manifest has them."""
        state = self.state
        assert state.caches is not None
        if not self.has_unflushed():
            return None
        if partitions is None:
            partitions = mf.read_partitions(conn)
        new_partitions: dict[int, int] = {}
        tables: list[BufferedRows] = []
        for tid, buf in state.buffers.items():
            plist = partitions.get(tid)
            if not plist:
                pid = 1
                new_partitions[tid] = pid
                plist = [(pid, None, None)]
            history = self.catalog.histories[tid]
            by_version: dict[int, list[pa.Table]] = {}
            for version, t in buf.chunks:
                by_version.setdefault(version, []).append(t)
            for version, chunks in by_version.items():
                tables.append(BufferedRows(tid, version, chunks, plist,
                                            [c.id for c in _version_columns(history, version)]))
        current_locks = {(r, k, ts) for r, k, ts, _pw in state.caches.items()}
        # A region whose row differs from the one persisted only in its resolved ts (a resolved
        # ts lists every region: thousands) is written as (id, resolved ts), found on the board
        # as arrays, and those go to the manifest as one UPDATE per ts, not a whole row each
        regions: list[mf.RegionRow] = []
        persisted = state.persisted_rows
        for r in state.dirty_regions:
            reg = state.regions.get(r)
            if reg is None:
                continue
            row = reg.row()
            before = persisted.get(r)
            if before is None or before[:6] != row[:6] or before[7:] != row[7:]:
                regions.append(row)
        resolved = RegionResolved(*state.board.moved_since_persisted({row[0] for row in regions}))
        staged, schema_edit = self.catalog.take_staged()
        return _PreparedFlush(
            t0=t0, partitions=partitions, new_partitions=new_partitions, tables=tables, written=[],
            tombstones=list(state.tombstones), regions=regions, resolved=resolved,
            gone_locks=list(state.persisted_locks - current_locks),
            new_locks=list(self._lock_rows(current_locks - state.persisted_locks)),
            current_locks=current_locks, position=state.position,
            rows=state.buffered_rows, n_regions=len(state.dirty_regions),
            schema_edit=schema_edit, staged=staged)

    def _write_parts(self, p: "_PreparedFlush") -> None:
        """The CPU part of a flush: split each table's buffered rows by partition, sort them and
        write them as delta part files under temporary names (no fsync yet), with their
        statistics, into ``p.written``. Touches only ``p`` (the buffers it holds are no longer
        the store's), so a pipelined flush runs it on its background thread. On an error the
        files written so far are removed."""
        # An engine that keeps the rows itself (the row sink's ``keeps_rows``) gets records of
        # their statistics instead of files: read planning estimates and prunes with them.
        in_engine = bool(getattr(self.row_sink, "keeps_rows", False))
        try:
            for rows in p.tables:
                t = pa.concat_tables(rows.chunks) if len(rows.chunks) > 1 else rows.chunks[0]
                plist = rows.partitions
                which = split_by_partition(t.column(ROWID), [b[1] for b in plist[1:]]) if len(plist) > 1 else None
                for i in [0] if which is None else np.unique(which).tolist():
                    part_t = t if which is None else t.filter(pa.array(which == i))
                    if in_engine:
                        part = describe_engine_rows(part_t, rows.column_ids, table_id=rows.table_id,
                                                    partition=plist[i], kind="delta",
                                                    schema_version=rows.schema_version)
                    else:
                        rel = new_part_name(rows.table_id, plist[i][0], "delta")
                        part = write_part(self.root, rel, sort_versions(part_t), rows.column_ids,
                                          self.options.row_group_rows, table_id=rows.table_id, partition=plist[i],
                                          kind="delta", schema_version=rows.schema_version, compression="none",
                                          install=False)
                    p.written.append(part)
        except BaseException:
            _discard_parts(self.root, p.written)
            raise

    def _commit_flush(self, p: "_PreparedFlush", conn: sqlite3.Connection) -> int:
        """The durable part of a flush, under the edit lock: fsync each part file and rename it
        in, fsync their directories, then the one manifest edit that lists them with the region
        states, locks, tombstones, position and the batch's schema changes. On any error the
        files are removed (and the edit rolled back): nothing of the flush is visible; an
        ``EditConflictError`` says the partitions changed since ``p`` was taken. Returns the
        edit's version."""
        try:
            files = [part.path for part in p.written if not part.in_engine]
            for rel in files:
                install_part(self.root, rel)
            sync_dirs(self.root, files)
            edit = p.edit()
            sink = self.row_sink
            if sink is None:
                return mf.apply_edit(conn, edit)
            # Before the edit commits: a crash between the two replays the batch, and the sink
            # takes the same committed rows again (idempotent by version).
            return mf.apply_edit(conn, edit, inside=lambda version: sink.write_flush(version, p.tables, p.tombstones))
        except BaseException:
            _discard_parts(self.root, p.written)
            raise

    def _forget_flushed(self, p: "_PreparedFlush") -> None:
        """What ``p`` persists is no longer pending in memory."""
        state = self.state
        state.buffers.clear()
        state.tombstones.clear()
        state.persisted_locks = p.current_locks
        state.persisted_position = p.position
        state.dirty_since = None
        state.dirty_regions.clear()
        persisted = state.persisted_rows
        for row in p.regions:
            persisted[row[0]] = row
        if p.regions:
            state.board.note_persisted(np.fromiter((row[0] for row in p.regions), np.int64, len(p.regions)),
                                       np.fromiter((row[6] for row in p.regions), np.int64, len(p.regions)))
        state.board.note_persisted(p.resolved.ids, p.resolved.ts)
        self.catalog.forget_staged(p.staged)

    def _lock_rows(self, keys: set[tuple[int, bytes, int]]) -> Iterator[mf.LockRow]:
        caches = self.state.caches
        assert caches is not None
        if not keys:
            return
        ordered = sorted(keys)
        common = self.catalog.common_handle_tables()
        rk = keyspace.split_record_keys([k for _r, k, _t in ordered], common)
        decoded: dict[int, tuple[int, int | bytes]] = {}
        for j, i in enumerate(rk.index.tolist()):
            tid = int(rk.table_ids[j])
            key = ordered[i][1]
            int_handle = tid not in common and len(key) == keyspace.INT_RECORD_KEY_LEN
            decoded[i] = (tid, int(rk.int_handles[j]) if int_handle else key[keyspace.RECORD_PREFIX_LEN:])
        for i, (rid, key, start_ts) in enumerate(ordered):
            pw = caches.get(rid, key, start_ts)
            assert pw is not None
            table_id: int | None
            handle: int | bytes | None
            table_id, handle = decoded.get(i, (None, None))
            yield (rid, key, start_ts, pw.primary, pw.op, pw.ttl, caches.value_of(rid, key, start_ts, pw),
                   table_id, handle)


@dataclass
class _PreparedFlush:
    """A flush taken from memory: its rows (``tables``), then once ``_write_parts`` ran, its
    part files written under temporary names (``written``), not yet durable."""

    t0: float
    partitions: dict[int, list[tuple[int, int | None, int | None]]]  # as read when the parts were split
    new_partitions: dict[int, int]
    tables: list[BufferedRows]
    written: list[PartRef]                         # not listed yet (``UNLISTED``)
    tombstones: list[tuple[bytes, bytes, str]]
    regions: list[mf.RegionRow]                    # region rows to persist
    resolved: "RegionResolved"                     # regions only their resolved ts changed
    gone_locks: list[tuple[int, bytes, int]]
    new_locks: list[mf.LockRow]                    # lock rows to insert
    current_locks: set[tuple[int, bytes, int]]
    position: tuple[int, int] | None
    rows: int
    n_regions: int
    schema_edit: mf.ManifestEdit | None  # the batch's DDL: table versions, lifetimes, ignored tables
    staged: int                          # how many of the catalog's staged changes it carries

    def edit(self) -> mf.ManifestEdit:
        """The flush's manifest edit: the batch's schema changes, then its parts, tombstones,
        region states, lock-set difference and position, assuming the partitions it split by."""
        meta = () if self.position is None else (("position_segment", self.position[0]),
                                                 ("position_offset", self.position[1]))
        flushed = mf.ManifestEdit(
            expect=(mf.PartitionsAre(self.partitions),),
            partitions_added=tuple((tid, pid, None, None) for tid, pid in self.new_partitions.items()),
            parts_added=tuple(mf.NewPart(part, lists_columns=names_columns_by_id(part)) for part in self.written),
            tombstones=tuple(self.tombstones), regions=self.regions, resolved=self.resolved,
            locks_removed=self.gone_locks,
            locks_added=self.new_locks, meta=meta)
        return flushed if self.schema_edit is None else self.schema_edit.then(flushed)

    def result(self, version: int) -> FlushResult:
        return FlushResult(version, len(self.written), self.rows, sum(part.bytes for part in self.written),
                           self.n_regions, len(self.current_locks), self.position, time.monotonic() - self.t0,
                           tuple(self.regions), self.resolved)

    def partitions_after(self) -> dict[int, list[tuple[int, int | None, int | None]]]:
        """The partitions once this flush's edit commits (it adds a table's first one)."""
        out = dict(self.partitions)
        for tid, pid in self.new_partitions.items():
            out[tid] = [(pid, None, None)]
        return out


class PendingFlush:
    """A pipelined flush (``Store.flush(wait=False)``): ``wait()`` returns its ``FlushResult``
    once its edit has committed, or raises ``FlushFailedError``."""

    def __init__(self, edit_lock: EditLock | None = None, predecessor: "PendingFlush | None" = None,
                 partitions_after: dict[int, list[tuple[int, int | None, int | None]]] | None = None) -> None:
        self._edit_lock = edit_lock
        self._done = threading.Event()
        self._result: FlushResult | None = None
        self._error: BaseException | None = None
        # The pipelined flush before this one, still in flight when this one started (its edit
        # commits first); the partitions this one leaves, for a flush following it.
        self._predecessor = predecessor  # cleared once it is done
        self._followed = predecessor is not None
        self._partitions_after = partitions_after or {}
        # Under EditLock.chain_mutex: a flush follows this one (it takes over the edit lock);
        # this one's thread is done with the lock.
        self._successor = False
        self._finished = False

    @classmethod
    def finished(cls, result: FlushResult) -> "PendingFlush":
        pending = cls()
        pending._result = result
        pending._done.set()
        return pending

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> FlushResult:
        if not self._done.wait(timeout):
            raise TimeoutError(f"the flush is not durable after {timeout}s")
        if self._error is not None:
            if self._edit_lock is not None:
                self._edit_lock.failure_reported = True  # close() need not raise it again
            raise self._error
        assert self._result is not None
        return self._result


def _discard_parts(root: Path, written: list[PartRef]) -> None:
    """Remove the files of a flush that will not be listed (temporary or renamed)."""
    for part in written:
        if part.in_engine:
            continue
        dest = root / part.path
        for path in (temp_name(dest), dest):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


