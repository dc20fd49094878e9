"""Read leases: a reader's pin on a snapshot ts and on the manifest version it plans from.

A lease (kept in the manifest's ``leases`` table, so readers in every process see each
other) stops GC from moving the safe point past its ts and stops the deletion of any part
file removed after its manifest version. Leases expire on their own unless renewed, so a
crashed reader never pins the store forever. Deletion follows pins, never a timer.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Callable

from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.errors import LeaseBelowSafePointError, LeaseNotFoundError


LAST_LEASE_ID = "last_lease_id"  # meta: the last lease id handed out


@dataclass(frozen=True)
class Lease:
    id: int
    ts: int
    manifest_version: int
    holder: str
    expires_at: float


class Leases:
    """The lease table of one store. Thread-safe; every call is its own SQLite transaction."""

    def __init__(self, connect: Callable[[], sqlite3.Connection],
                 clock: Callable[[], float] = time.time) -> None:
        self._connect = connect
        self._clock = clock
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def acquire(self, ts: int, ttl_s: float, holder: str = "") -> Lease:
        """Pin ``ts`` (and the current manifest version) for ``ttl_s`` seconds. Refused below
        the GC safe point: versions there may already be gone."""
        conn = self._conn()
        with mf.transaction(conn, bump=False):
            safe_point = int(mf.get_meta(conn, "gc_safe_point", 0))
            if ts < safe_point:
                raise LeaseBelowSafePointError(ts, safe_point)
            version = mf.current_version(conn)
            expires = self._clock() + ttl_s
            # Ids are never reused (SQLite would hand out a deleted row's id again): a holder
            # late to renew or release its expired lease must not touch another reader's.
            last = conn.execute("SELECT COALESCE(MAX(lease_id), 0) FROM leases").fetchone()[0]
            lease_id = max(int(mf.get_meta(conn, LAST_LEASE_ID, 0)), int(last)) + 1
            mf.set_meta(conn, LAST_LEASE_ID, lease_id)
            conn.execute("INSERT INTO leases(lease_id, ts, manifest_version, holder, expires_at) VALUES (?,?,?,?,?)",
                         (lease_id, int(ts), version, holder, expires))
        return Lease(lease_id, int(ts), version, holder, expires)

    def renew(self, lease_id: int, ttl_s: float, late_ok: bool = False) -> Lease:
        """Extend a live lease by ``ttl_s`` from now. An expired one raises
        :class:`LeaseNotFoundError` (and is dropped) — unless ``late_ok`` and nothing it pinned is
        gone yet: no file its manifest version can see has been deleted (GC never rewrites a
        file, so those files still hold the rows at its ts). A reader whose renewal merely came
        late (a stalled driver) then keeps its snapshot; a released lease never comes back."""
        conn = self._conn()
        with mf.transaction(conn, bump=False):
            row = conn.execute("SELECT ts, manifest_version, holder, expires_at FROM leases "
                               "WHERE lease_id = ?", (lease_id,)).fetchone()
            now = self._clock()
            if row is None or (row[3] < now and not (late_ok and _files_intact(conn, int(row[1])))):
                # An expired lease may already have let GC pass its ts: renewing it would
                # pin a snapshot that is no longer whole.
                conn.execute("DELETE FROM leases WHERE lease_id = ?", (lease_id,))
                raise LeaseNotFoundError(lease_id)
            expires = now + ttl_s
            conn.execute("UPDATE leases SET expires_at = ? WHERE lease_id = ?", (expires, lease_id))
        return Lease(lease_id, int(row[0]), int(row[1]), row[2], expires)

    def release(self, lease_id: int) -> None:
        conn = self._conn()
        with mf.transaction(conn, bump=False):
            conn.execute("DELETE FROM leases WHERE lease_id = ?", (lease_id,))

    def live(self) -> list[Lease]:
        conn = self._conn()
        rows = conn.execute("SELECT lease_id, ts, manifest_version, holder, expires_at FROM leases "
                            "WHERE expires_at >= ? ORDER BY lease_id", (self._clock(),)).fetchall()
        return [Lease(int(r[0]), int(r[1]), int(r[2]), r[3], float(r[4])) for r in rows]

    def expire(self) -> int:
        """Delete expired leases; returns how many."""
        conn = self._conn()
        with mf.transaction(conn, bump=False):
            cur = conn.execute("DELETE FROM leases WHERE expires_at < ?", (self._clock(),))
            return cur.rowcount

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _files_intact(conn: sqlite3.Connection, manifest_version: int) -> bool:
    """Is every part file visible at ``manifest_version`` still on disk?"""
    through = mf.get_meta(conn, mf.FILES_DELETED_THROUGH)
    return through is not None and int(through) <= manifest_version
