"""The in-process latch: state in SQLite in the store directory, so processes that share the
directory coordinate without a server.

``latch.db`` holds the write latch, flush requests, runtime settings and the writer's last
published progress. Read leases live in the store's own manifest (``store.leases``) because
the store's GC and file deletion must see them in the same transaction as their own edits.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from pyspark_theflash.latch.errors import (
    FlushRequestNotFoundError,
    FlushTimeoutError,
    LeaseNotFoundError,
    LeaseRefusedError,
    WriteLatchHeldError,
    WriteLatchLostError,
)
from pyspark_theflash.latch.protocol import DEFAULT_LEASE_TTL_S, DEFAULT_WRITE_LATCH_TTL_S, Latch
from pyspark_theflash.latch.types import FlushRequest, Lease, WriterHolder
from pyspark_theflash.processes import process_is_gone  # noqa: F401  (re-exported: the writer asks here)

if TYPE_CHECKING:
    from pyspark_theflash.store import Store
    from pyspark_theflash.store.leases import Lease as StoreLease
    from pyspark_theflash.store.leases import Leases

LATCH_DB = "latch.db"
# Completed flush requests are kept this long so a late wait_flush still finds its answer.
COMPLETED_FLUSH_RETENTION_S = 600.0
# A flush request nobody completed within this long is abandoned (its reader gave up long ago):
# the writer stops looking at it.
PENDING_FLUSH_MAX_AGE_S = 300.0
# How often wait_flush looks at SQLite; a flush answer costs at most this much extra latency.
WAIT_FLUSH_POLL_S = 0.01

_SCHEMA = """
CREATE TABLE IF NOT EXISTS write_latch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    since REAL NOT NULL, expires_at REAL NOT NULL, token INTEGER NOT NULL,
    released INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS flush_requests (
    request_id INTEGER PRIMARY KEY AUTOINCREMENT,
    region_ids TEXT NOT NULL, read_index TEXT NOT NULL, requested_at REAL NOT NULL,
    completed_at REAL, applied TEXT
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS writer_status (
    id INTEGER PRIMARY KEY CHECK (id = 1), token INTEGER NOT NULL, updated_at REAL NOT NULL, status TEXT NOT NULL
);
"""


# settings keys: the poll interval set at runtime (until the writer holding the latch stops)
# and one persisted on purpose (every later writer, over its own --interval).
_RUNTIME_INTERVAL = "writer_interval_s"
_PERSISTED_INTERVAL = "writer_interval_persisted_s"


class _StoreLeases:
    """Read leases kept in the store's manifest (``store.leases``): the writer passes its open
    Store; anyone else gets the store's lease table on its own manifest connection, opened on
    first use, so a latch that only serves the write latch never touches the manifest."""

    def __init__(self, store_path: Path, store: Store | None = None) -> None:
        self._path = store_path
        self._leases: Leases | None = store.leases if store is not None else None
        self._owned = False
        self._lock = threading.Lock()

    def leases(self) -> Leases:
        with self._lock:
            if self._leases is None:
                from pyspark_theflash.store import manifest
                from pyspark_theflash.store.leases import Leases

                path = self._path
                self._leases = Leases(lambda: manifest.connect(path, create=False))
                self._owned = True
            return self._leases

    def close(self) -> None:
        with self._lock:
            if self._owned and self._leases is not None:
                self._leases.close()
            self._leases = None
            self._owned = False


def _lease_from_store(obj: StoreLease) -> Lease:
    return Lease(lease_id=int(obj.id), ts=int(obj.ts), holder=str(obj.holder), expires_at=float(obj.expires_at))


class LocalLatch(Latch):
    """The latch of the store at ``store_path``, used in this process.

    ``store`` may be an open Store to take leases through (the writer passes its own);
    otherwise the store is opened read-only on the first lease call. ``create=False`` opens a
    latch that exists and creates nothing (no directory, no database): ``sqlite3.OperationalError``
    when there is none.
    """

    def __init__(self, store_path: str | os.PathLike[str], store: Store | None = None, *,
                 clock: Callable[[], float] = time.time, create: bool = True) -> None:
        self.store_path = Path(store_path)
        self._clock = clock
        self._lock = threading.RLock()
        db_path = self.store_path / LATCH_DB
        if create:
            self.store_path.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(db_path), timeout=30.0, isolation_level=None, check_same_thread=False)
        else:
            self._db = sqlite3.connect(f"{db_path.absolute().as_uri()}?mode=rw", uri=True, timeout=30.0,
                                       isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        if create:
            self._db.executescript(_SCHEMA)
        self._leases = _StoreLeases(self.store_path, store)

    # -- plumbing --------------------------------------------------------------------------
    def _write_txn(self) -> "_Txn":
        return _Txn(self._db, self._lock)

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        self._leases.close()
        with self._lock:
            self._db.close()

    # -- read leases -----------------------------------------------------------------------
    def acquire_lease(self, ts: int, ttl_s: float = DEFAULT_LEASE_TTL_S, holder: str = "") -> Lease:
        from pyspark_theflash.store.errors import LeaseBelowSafePointError

        try:
            taken = self._leases.leases().acquire(int(ts), float(ttl_s), holder or f"{socket.gethostname()}:{os.getpid()}")
        except LeaseBelowSafePointError as exc:
            raise LeaseRefusedError(
                f"cannot take a read lease at ts {exc.ts} on store {self.store_path}: it is below the store's "
                f"GC safe point {exc.safe_point}, so versions it needs may be gone; allowed range: "
                f"ts >= {exc.safe_point} (up to the upstream's current ts)"
            ) from None
        return _lease_from_store(taken)

    def renew_lease(self, lease_id: int, ttl_s: float = DEFAULT_LEASE_TTL_S, late_ok: bool = False) -> Lease:
        from pyspark_theflash.store.errors import LeaseNotFoundError as StoreLeaseNotFound

        try:
            return _lease_from_store(self._leases.leases().renew(int(lease_id), float(ttl_s), late_ok))
        except StoreLeaseNotFound:
            raise LeaseNotFoundError(_lease_gone(lease_id)) from None

    def release_lease(self, lease_id: int) -> None:
        self._leases.leases().release(int(lease_id))

    def leases(self) -> list[Lease]:
        return sorted((_lease_from_store(x) for x in self._leases.leases().live()), key=lambda l: (l.ts, l.lease_id))

    # -- write latch -----------------------------------------------------------------------
    def _current_holder(self) -> WriterHolder | None:
        rows = self._db.execute(
            "SELECT name, host, pid, since, expires_at, token FROM write_latch WHERE id = 1 AND released = 0"
        ).fetchall()
        if not rows:
            return None
        name, host, pid, since, expires_at, token = rows[0]
        return WriterHolder(name, host, int(pid), float(since), float(expires_at), int(token))

    def _is_live(self, holder: WriterHolder, now: float) -> bool:
        if holder.expires_at <= now:
            return False
        return not (holder.host == socket.gethostname() and process_is_gone(holder.pid))

    def acquire_write_latch(
        self, holder: str = "writer", ttl_s: float = DEFAULT_WRITE_LATCH_TTL_S, *, host: str | None = None, pid: int | None = None
    ) -> WriterHolder:
        host = host or socket.gethostname()
        pid = os.getpid() if pid is None else int(pid)
        with self._write_txn() as db:
            now = self._clock()
            current = self._current_holder()
            if current is not None and self._is_live(current, now):
                raise WriteLatchHeldError(
                    f"store {self.store_path} already has a writer: {current.describe()}, latch valid for "
                    f"{current.expires_at - now:.1f}s more unless renewed; stop it first "
                    f"(theflash writer stop --store {self.store_path}) or wait for its TTL to pass if it died"
                )
            # A runtime interval belonged to the writer that was told it; a persisted one stays.
            db.execute("DELETE FROM settings WHERE key = ?", (_RUNTIME_INTERVAL,))
            (last_token,) = db.execute("SELECT COALESCE(MAX(token), 0) FROM write_latch").fetchone()
            taken = WriterHolder(holder, host, pid, now, now + float(ttl_s), int(last_token) + 1)
            db.execute(
                "INSERT OR REPLACE INTO write_latch (id, name, host, pid, since, expires_at, token, released) "
                "VALUES (1, ?, ?, ?, ?, ?, ?, 0)",
                (taken.name, taken.host, taken.pid, taken.since, taken.expires_at, taken.token),
            )
            return taken

    def renew(self, token: int, ttl_s: float = DEFAULT_WRITE_LATCH_TTL_S) -> WriterHolder:
        with self._write_txn() as db:
            current = self._held_by(token)
            expires = self._clock() + float(ttl_s)
            db.execute("UPDATE write_latch SET expires_at = ? WHERE id = 1", (expires,))
            return WriterHolder(current.name, current.host, current.pid, current.since, expires, current.token)

    def check_holds(self, token: int) -> None:
        """Raise ``WriteLatchLostError`` unless the latch is still the one ``token`` took (a
        read, no renewal: the writer's fence runs it inside each manifest edit)."""
        with self._lock:
            self._held_by(token)

    def _held_by(self, token: int) -> WriterHolder:
        current = self._current_holder()
        if current is None or current.token != int(token):
            now_holder = current.describe() if current is not None else "nobody"
            raise WriteLatchLostError(
                f"the write latch of store {self.store_path} (token {token}) was lost; it is now held by "
                f"{now_holder}: this writer must stop"
            )
        return current

    def release(self, token: int) -> None:
        with self._write_txn() as db:
            db.execute("UPDATE write_latch SET released = 1 WHERE id = 1 AND token = ?", (int(token),))

    def holder(self) -> WriterHolder | None:
        with self._lock:
            current = self._current_holder()
        if current is None or not self._is_live(current, self._clock()):
            return None
        return current

    # -- flush requests --------------------------------------------------------------------
    def request_flush(self, region_ids: Iterable[int], read_index: Mapping[int, int] | None = None) -> int:
        regions = sorted({int(r) for r in region_ids} | {int(r) for r in (read_index or {})})
        wanted = {str(int(r)): int(i) for r, i in (read_index or {}).items()}
        with self._write_txn() as db:
            now = self._clock()
            db.execute(
                "DELETE FROM flush_requests WHERE completed_at IS NOT NULL AND completed_at < ?",
                (now - COMPLETED_FLUSH_RETENTION_S,),
            )
            cur = db.execute(
                "INSERT INTO flush_requests (region_ids, read_index, requested_at) VALUES (?, ?, ?)",
                (json.dumps(regions), json.dumps(wanted), now),
            )
            assert cur.lastrowid is not None  # an INSERT's row
            return cur.lastrowid

    def pending_flushes(self) -> list[FlushRequest]:
        rows = self._query(
            "SELECT request_id, region_ids, read_index, requested_at FROM flush_requests "
            "WHERE completed_at IS NULL AND requested_at >= ? ORDER BY request_id",
            (self._clock() - PENDING_FLUSH_MAX_AGE_S,),
        )
        return [
            FlushRequest(int(rid), tuple(json.loads(regions)), {int(k): int(v) for k, v in json.loads(wanted).items()}, float(at))
            for rid, regions, wanted, at in rows
        ]

    def has_pending_flush(self, after_request_id: int = 0) -> bool:
        """Is a request newer than ``after_request_id`` pending? The cheap check the writer
        makes many times per interval."""
        return bool(self._query(
            "SELECT 1 FROM flush_requests WHERE completed_at IS NULL AND request_id > ? AND requested_at >= ? LIMIT 1",
            (int(after_request_id), self._clock() - PENDING_FLUSH_MAX_AGE_S),
        ))

    def complete_flush(self, request_id: int, applied: Mapping[int, int] | None = None) -> None:
        payload = json.dumps({str(int(r)): int(i) for r, i in (applied or {}).items()})
        with self._write_txn() as db:
            cur = db.execute(
                "UPDATE flush_requests SET completed_at = ?, applied = ? WHERE request_id = ? AND completed_at IS NULL",
                (self._clock(), payload, int(request_id)),
            )
            if cur.rowcount == 0 and not db.execute(
                "SELECT 1 FROM flush_requests WHERE request_id = ?", (int(request_id),)
            ).fetchall():
                raise FlushRequestNotFoundError(f"flush request {request_id} of store {self.store_path} is unknown")

    def wait_flush(self, request_id: int, timeout_s: float) -> dict[int, int]:
        deadline = time.monotonic() + float(timeout_s)
        while True:
            rows = self._query(
                "SELECT region_ids, read_index, completed_at, applied FROM flush_requests WHERE request_id = ?",
                (int(request_id),),
            )
            if not rows:
                raise FlushRequestNotFoundError(f"flush request {request_id} of store {self.store_path} is unknown")
            regions, wanted, completed_at, applied = rows[0]
            if completed_at is not None:
                got = {int(k): int(v) for k, v in json.loads(applied or "{}").items()}
                return {int(r): got.get(int(r), 0) for r in json.loads(regions)} | got
            if time.monotonic() >= deadline:
                holder = self.holder()
                who = holder.describe() if holder else "no writer holds the write latch (start one: theflash writer run ...)"
                need = json.loads(wanted)
                need_text = f" up to read index {need}" if need else ""
                raise FlushTimeoutError(
                    f"flush request {request_id} for regions {json.loads(regions)}{need_text} was not completed "
                    f"within {timeout_s}s on store {self.store_path}; writer: {who}; the writer may be lagging "
                    f"behind the binlog (check theflash writer status --store {self.store_path})"
                )
            time.sleep(WAIT_FLUSH_POLL_S)

    # -- admin -----------------------------------------------------------------------------
    def set_writer_interval(self, interval_s: float, persist: bool = False) -> None:
        if not interval_s > 0:
            raise ValueError(f"writer interval must be > 0 seconds, got {interval_s}")
        with self._write_txn() as db:
            if persist:
                db.execute("DELETE FROM settings WHERE key = ?", (_RUNTIME_INTERVAL,))
            db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
                       (_PERSISTED_INTERVAL if persist else _RUNTIME_INTERVAL, repr(float(interval_s))))

    def writer_interval(self) -> float | None:
        rows = dict(self._query("SELECT key, value FROM settings WHERE key IN (?, ?)",
                                (_RUNTIME_INTERVAL, _PERSISTED_INTERVAL)))
        value = rows.get(_RUNTIME_INTERVAL, rows.get(_PERSISTED_INTERVAL))
        return None if value is None else float(value)

    def publish_writer_status(self, token: int, status: Mapping[str, object]) -> None:
        with self._write_txn() as db:
            db.execute(
                "INSERT OR REPLACE INTO writer_status (id, token, updated_at, status) VALUES (1, ?, ?, ?)",
                (int(token), self._clock(), json.dumps(dict(status))),
            )

    def writer_status(self) -> dict[str, object] | None:
        rows = self._query("SELECT token, updated_at, status FROM writer_status WHERE id = 1")
        if not rows:
            return None
        token, updated_at, status = rows[0]
        return {"token": int(token), "updated_at": float(updated_at), **json.loads(status)}

    def status(self) -> dict[str, object]:
        holder = self.holder()
        from pyspark_theflash.store.errors import StoreNotFoundError

        try:
            leases = [lease.__dict__ for lease in self.leases()]
        except StoreNotFoundError:  # no store yet: nothing can be pinned
            leases = []
        return {
            "store": str(self.store_path),
            "writer": holder.to_dict() if holder else None,
            "writer_interval_s": self.writer_interval(),
            "leases": leases,
            "oldest_lease_ts": min((lease["ts"] for lease in leases), default=None),
            "pending_flushes": [r.request_id for r in self.pending_flushes()],
            "writer_status": self.writer_status(),
        }


def _lease_gone(lease_id: int) -> str:
    return f"lease {lease_id} is unknown, released or expired: acquire a new lease (and a fresh ts if the old one is below the GC safe point)"


class _Txn:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken up front, so two processes
    racing for the write latch serialise instead of both reading "free"."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()
