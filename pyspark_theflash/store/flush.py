"""The flush pipeline: what ``Store.write`` buffered becomes durable in one manifest edit.

A flush sorts each table's buffered rows into its partitions' delta parts, writes and fsyncs
the files, then commits one manifest edit (parts, region states, open locks, tombstones, the
binlog position). ``flush(wait=False)`` does the file work on a background thread while the
writer applies the next batch; edits stay in order (see ``FlushPipeline.flush``).
``FlushPipeline`` is one part of ``Store``. A store whose row sink keeps the rows itself (the
ClickHouse engine) gets records of their statistics instead of part files (``row_sink``).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, overload

import numpy as np
import pyarrow as pa

from pyspark_theflash.store import keyspace
from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.errors import (
    FlushFailedError,
)
from pyspark_theflash.store.txn_merge_tree import (
    IN_ENGINE,
    ROWID,
    describe_engine_rows,
    install_part,
    new_part_name,
    sort_versions,
    split_by_partition,
    sync_dirs,
    temp_name,
    write_part,
)
from pyspark_theflash.store.schemas import TableHistory


if TYPE_CHECKING:
    from pyspark_theflash.store.store import Store



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





class _PartitionsChanged(Exception):
    pass



def _version_columns(history: TableHistory, version: int) -> list[Any]:
    """Columns of the table at ``version`` (the buffer's rows were decoded with it)."""
    info = history.by_version(version)
    assert info is not None, f"table {history.table_id} has no schema version {version} in memory"
    return list(info.columns)




class FlushPipeline:
    """``Store.flush`` and ``Store.sync``: buffered rows → part files → one manifest edit."""

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
        self._require_writer("flush")
        with self._write_lock:
            pred = None if wait or not self._has_unflushed() else self._follow_pending()
            if pred is None:
                self._edit_lock.acquire()
            handed_over = False
            try:
                self._raise_failure()  # the previous pipelined flush may have failed meanwhile
                if wait:
                    return self._flush_locked()
                t0 = time.monotonic()
                prepared = self._prepare_flush(self._conn, t0, None if pred is None else pred._partitions_after)
                if prepared is None:
                    return PendingFlush.finished(self._empty_flush(t0))
                self._forget_flushed(prepared)
                if self._flush_conn is None:
                    self._flush_conn = self._connect()
                pending = PendingFlush(self, pred, prepared.partitions_after())
                self._pending = pending
                thread = threading.Thread(target=self._make_durable_in_background, args=(prepared, pending),
                                          name="theflash-flush")
                try:
                    thread.start()
                except BaseException as exc:  # memory has moved past this flush: refuse writes from now on
                    self._failure = FlushFailedError(str(self.root), prepared.position, exc)
                    self._failure_reported = True
                    pending._error = self._failure
                    pending._done.set()
                    raise self._failure from exc
                handed_over = True  # its thread releases the edit lock (or hands it on) once its edit is done
                return pending
            finally:
                if not handed_over:
                    if pred is None:
                        self._edit_lock.release()
                    else:
                        self._unfollow(pred)

    def sync(self) -> FlushResult | None:
        """Wait until the last pipelined flush that had something to persist is durable;
        its result (None if there was none). Raises ``FlushFailedError`` if it (or an earlier
        one) failed."""
        pending = self._pending
        result = None if pending is None else pending.wait()
        self._raise_failure()
        return result

    @property
    def failure(self) -> BaseException | None:
        """The ``FlushFailedError`` of a failed pipelined flush (the store then refuses writes)."""
        return self._failure

    def _raise_failure(self) -> None:
        if self._failure is not None:
            self._failure_reported = True
            raise self._failure

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
        with self._chain_mutex:
            if pending._finished or self._edit_waiters:
                return None
            pending._successor = True
            return pending

    def _unfollow(self, pred: "PendingFlush") -> None:
        """Undo ``_follow_pending`` when no flush follows after all: if ``pred`` finished
        meanwhile, the lock it handed on is released here."""
        with self._chain_mutex:
            pred._successor = False
            owned = pred._finished
        if owned:
            self._edit_lock.release()

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
                    if self._failure is not None:
                        _discard_parts(self.root, prepared.written)
                        pending._error = self._failure
                        return
                version = self._commit_flush(prepared, conn)
            except _PartitionsChanged:
                raise RuntimeError("the store's partitions changed under a pipelined flush (another writer "
                                   "process?)") from None
            pending._result = prepared.result(version)
        except BaseException as exc:
            if conn.in_transaction:  # a COMMIT that failed may leave it open: never hold the write lock
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            failure = FlushFailedError(str(self.root), prepared.position, exc)
            failure.__cause__ = exc
            self._failure = failure
            pending._error = failure
        finally:
            with self._chain_mutex:
                pending._finished = True
                hand_on = pending._successor
            if not hand_on:
                self._edit_lock.release()
            pending._done.set()

    def _empty_flush(self, t0: float) -> FlushResult:
        # Nothing applied since the last flush: no edit (version 0 says so).
        self._dirty_since = None
        return FlushResult(0, 0, 0, 0, 0, len(self._persisted_locks), self._position, time.monotonic() - t0)

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
            except _PartitionsChanged:
                continue
            self._forget_flushed(prepared)
            return prepared.result(version)
        raise RuntimeError("flush: partitions kept changing under the flush (another writer process?)")

    def _has_unflushed(self) -> bool:
        """Was anything applied (rows, tombstones, region states, position) since the last flush?"""
        return bool(self._buffers or self._tombstones or self._dirty_regions
                    or self._position != self._persisted_position)

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
        assert self._caches is not None
        if not self._has_unflushed():
            return None
        if partitions is None:
            partitions = self._read_partitions(conn)
        new_partitions: dict[int, int] = {}
        tables: list[BufferedRows] = []
        for tid, buf in self._buffers.items():
            plist = partitions.get(tid)
            if not plist:
                pid = 1
                new_partitions[tid] = pid
                plist = [(pid, None, None)]
            history = self._histories[tid]
            by_version: dict[int, list[pa.Table]] = {}
            for version, t in buf.chunks:
                by_version.setdefault(version, []).append(t)
            for version, chunks in by_version.items():
                tables.append(BufferedRows(tid, version, chunks, plist,
                                            [c.id for c in _version_columns(history, version)]))
        current_locks = {(r, k, ts) for r, k, ts, _pw in self._caches.items()}
        regions = [(reg.id, reg.start_key, reg.end_key, reg.epoch_version, reg.conf_ver, reg.applied_index,
                    reg.resolved_ts, reg.state, reg.snapshot_index, reg.orphan_until_ts)
                   for reg in (self._regions[r] for r in self._dirty_regions if r in self._regions)]
        return _PreparedFlush(
            t0=t0, partitions=partitions, new_partitions=new_partitions, tables=tables, written=[],
            tombstones=list(self._tombstones), regions=regions,
            gone_locks=list(self._persisted_locks - current_locks),
            new_locks=list(self._lock_rows(current_locks - self._persisted_locks)),
            current_locks=current_locks, position=self._position,
            rows=sum(b.rows for b in self._buffers.values()), n_regions=len(self._dirty_regions))

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
                    pid = plist[i][0]
                    if in_engine:
                        pf = describe_engine_rows(part_t, rows.column_ids)
                    else:
                        rel = new_part_name(rows.table_id, pid, "delta")
                        pf = write_part(self.root, rel, sort_versions(part_t), rows.column_ids,
                                        self.options.row_group_rows, compression="none", install=False)
                    p.written.append((rows.table_id, pid, rows.schema_version, pf, "delta"))
        except BaseException:
            _discard_parts(self.root, p.written)
            raise

    def _commit_flush(self, p: "_PreparedFlush", conn: sqlite3.Connection) -> int:
        """The durable part of a flush, under the edit lock: fsync each part file and rename it
        in, fsync their directories, then the one manifest edit that lists them with the region
        states, locks, tombstones and position. On any error the files are removed (and the
        edit rolled back): nothing of the flush is visible. Returns the edit's version."""
        try:
            files = [w[3].file for w in p.written if w[3].file != IN_ENGINE]
            for rel in files:
                install_part(self.root, rel)
            sync_dirs(self.root, files)
            with mf.edit(conn) as e:
                if self._read_partitions(conn) != p.partitions:
                    raise _PartitionsChanged()
                for tid, pid in p.new_partitions.items():
                    conn.execute("INSERT INTO partitions VALUES (?,?,?,?,?)", (tid, pid, None, None, e.version))
                sink = self.row_sink
                if sink is not None:
                    # Before the edit commits: a crash between the two replays the batch, and
                    # the sink takes the same committed rows again (idempotent by version).
                    sink.write_flush(e.version, p.tables, p.tombstones)
                for tid, pid, version, pf, kind in p.written:
                    mf.insert_part(conn, tid, pid, kind, pf, version, data_version=e.version, added_version=e.version)
                for start, end, why in p.tombstones:
                    conn.execute("INSERT INTO range_tombstones(start_key, end_key, version, reason) "
                                 "VALUES (?,?,?,?)", (start, end, e.version, why))
                conn.executemany("INSERT OR REPLACE INTO regions(region_id, start_key, end_key, epoch_version, "
                                 "conf_ver, applied_index, resolved_ts, state, snapshot_index, orphan_until_ts) "
                                 "VALUES (?,?,?,?,?,?,?,?,?,?)", p.regions)
                conn.executemany("DELETE FROM locks WHERE region_id = ? AND key = ? AND start_ts = ?", p.gone_locks)
                conn.executemany("INSERT OR REPLACE INTO locks VALUES (?,?,?,?,?,?,?,?,?)", p.new_locks)
                if p.position is not None:
                    mf.set_meta(conn, "position_segment", p.position[0])
                    mf.set_meta(conn, "position_offset", p.position[1])
                return e.version
        except BaseException:
            _discard_parts(self.root, p.written)
            raise

    def _forget_flushed(self, p: "_PreparedFlush") -> None:
        """What ``p`` persists is no longer pending in memory."""
        self._buffers.clear()
        self._tombstones.clear()
        self._persisted_locks = p.current_locks
        self._persisted_position = p.position
        self._dirty_since = None
        self._dirty_regions.clear()

    def _lock_rows(self, keys: set[tuple[int, bytes, int]]) -> Iterator[tuple[Any, ...]]:
        caches = self._caches
        assert caches is not None
        if not keys:
            return
        ordered = sorted(keys)
        common = self._common_tables()
        rk = keyspace.split_record_keys([k for _r, k, _t in ordered], common)
        decoded: dict[int, tuple[int, Any]] = {}
        for j, i in enumerate(rk.index.tolist()):
            tid = int(rk.table_ids[j])
            key = ordered[i][1]
            int_handle = tid not in common and len(key) == keyspace.INT_RECORD_KEY_LEN
            decoded[i] = (tid, int(rk.int_handles[j]) if int_handle else key[keyspace.RECORD_PREFIX_LEN:])
        for i, (rid, key, start_ts) in enumerate(ordered):
            pw = caches.get(rid, key, start_ts)
            assert pw is not None
            tid, handle = decoded.get(i, (None, None))
            yield (rid, key, start_ts, pw.primary, pw.op, pw.ttl, caches.value_of(rid, key, start_ts, pw),
                   tid, handle)

    @staticmethod
    def _read_partitions(conn: sqlite3.Connection) -> dict[int, list[tuple[int, int | None, int | None]]]:
        out: dict[int, list[tuple[int, int | None, int | None]]] = {}
        for tid, pid, lo, hi in conn.execute("SELECT table_id, partition_id, lo, hi FROM partitions "
                                             "ORDER BY table_id, lo IS NOT NULL, lo"):
            out.setdefault(int(tid), []).append((int(pid), lo, hi))
        return out


@dataclass
class BufferedRows:
    """One table's rows of one schema version that a flush writes: the buffer's chunks, the
    table's partitions as read for the flush, and the ids of the version's user columns."""

    table_id: int
    schema_version: int
    chunks: list[pa.Table]
    partitions: list[tuple[int, int | None, int | None]]
    column_ids: list[int]


@dataclass
class _PreparedFlush:
    """A flush taken from memory: its rows (``tables``), then once ``_write_parts`` ran, its
    part files written under temporary names (``written``), not yet durable."""

    t0: float
    partitions: dict[int, list[tuple[int, int | None, int | None]]]  # as read when the parts were split
    new_partitions: dict[int, int]
    tables: list[BufferedRows]
    written: list[tuple[int, int, int, Any, str]]  # (table, partition, schema_version, PartFile, kind)
    tombstones: list[tuple[bytes, bytes, str]]
    regions: list[tuple[Any, ...]]                 # region rows to persist
    gone_locks: list[tuple[int, bytes, int]]
    new_locks: list[tuple[Any, ...]]               # lock rows to insert
    current_locks: set[tuple[int, bytes, int]]
    position: tuple[int, int] | None
    rows: int
    n_regions: int

    def result(self, version: int) -> FlushResult:
        return FlushResult(version, len(self.written), self.rows, sum(w[3].bytes for w in self.written),
                           self.n_regions, len(self.current_locks), self.position, time.monotonic() - self.t0)

    def partitions_after(self) -> dict[int, list[tuple[int, int | None, int | None]]]:
        """The partitions once this flush's edit commits (it adds a table's first one)."""
        out = dict(self.partitions)
        for tid, pid in self.new_partitions.items():
            out[tid] = [(pid, None, None)]
        return out


class PendingFlush:
    """A pipelined flush (``Store.flush(wait=False)``): ``wait()`` returns its ``FlushResult``
    once its edit has committed, or raises ``FlushFailedError``."""

    def __init__(self, store: "Store | None" = None, predecessor: "PendingFlush | None" = None,
                 partitions_after: dict[int, list[tuple[int, int | None, int | None]]] | None = None) -> None:
        self._store = store
        self._done = threading.Event()
        self._result: FlushResult | None = None
        self._error: BaseException | None = None
        # The pipelined flush before this one, still in flight when this one started (its edit
        # commits first); the partitions this one leaves, for a flush following it.
        self._predecessor = predecessor  # cleared once it is done
        self._followed = predecessor is not None
        self._partitions_after = partitions_after or {}
        # Under Store._chain_mutex: a flush follows this one (it takes over the edit lock);
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
            if self._store is not None:
                self._store._failure_reported = True  # close() need not raise it again
            raise self._error
        assert self._result is not None
        return self._result


def _discard_parts(root: Path, written: list[tuple[int, int, int, Any, str]]) -> None:
    """Remove the files of a flush that will not be listed (temporary or renamed)."""
    for w in written:
        if w[3].file == IN_ENGINE:
            continue
        dest = root / w[3].file
        for path in (temp_name(dest), dest):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


