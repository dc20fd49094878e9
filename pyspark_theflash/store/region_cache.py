"""Region caches: the open transactions (Percolator locks and prewritten values) of every
region the writer applies, matched with their COMMIT or ROLLBACK by (key, start_ts).

Changes are made inside an *apply*: ``begin()`` … ``commit()`` or ``rollback()``; rollback
restores every cache exactly (an undo log), which is how ``Store.write`` applies a batch
atomically even though it must walk the events before it knows whether their rows decode.

Memory stays bounded: once the prewritten values held in memory pass a limit, new values go
to a spill database (``<store>/spill.db``). It holds nothing durable — it is emptied on open;
after a crash the writer replays the binlog from the persisted position and persisted locks
come back from the manifest — so it needs no fsync.
"""
from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

LockKey = tuple[bytes, int]  # (raw key, start_ts)


@dataclass(slots=True)
class Prewrite:
    op: int                 # binlog OpType: PUT, DELETE, LOCK
    value: bytes | None     # None when spilled (or empty for DELETE/LOCK)
    primary: bytes
    ttl: int
    spilled: bool = False

    def size(self) -> int:
        """Value bytes this prewrite holds in memory (a spilled value is on disk). Only values
        are counted: they are what grows without bound in a big transaction."""
        return 0 if self.spilled else len(self.value or b"")


class SpillFile:
    """Prewritten values that do not fit in memory, in a throwaway SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(str(path) + suffix)
            except FileNotFoundError:
                pass
        self._conn: sqlite3.Connection | None = None
        self.count = 0

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode = OFF")
            self._conn.execute("PRAGMA synchronous = OFF")
            self._conn.execute("CREATE TABLE IF NOT EXISTS spill (region_id INTEGER, key BLOB, "
                               "start_ts INTEGER, value BLOB, PRIMARY KEY (region_id, key, start_ts))")
        return self._conn

    def put(self, region_id: int, key: bytes, start_ts: int, value: bytes) -> None:
        self._db().execute("INSERT OR REPLACE INTO spill VALUES (?,?,?,?)", (region_id, key, start_ts, value))
        self.count += 1

    def get(self, region_id: int, key: bytes, start_ts: int) -> bytes:
        row = self._db().execute("SELECT value FROM spill WHERE region_id=? AND key=? AND start_ts=?",
                                 (region_id, key, start_ts)).fetchone()
        if row is None:
            raise KeyError((region_id, key, start_ts))
        return bytes(row[0])

    def delete(self, region_id: int, key: bytes, start_ts: int) -> None:
        self._db().execute("DELETE FROM spill WHERE region_id=? AND key=? AND start_ts=?",
                           (region_id, key, start_ts))
        self.count -= 1

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class RegionCaches:
    """Every region's open prewrites, with an undo log for atomic applies."""

    def __init__(self, spill: SpillFile | None, memory_limit_bytes: int) -> None:
        self._regions: dict[int, dict[LockKey, Prewrite]] = {}
        self._spill = spill
        self._limit = memory_limit_bytes
        self.memory_bytes = 0
        self._undo: list[tuple[dict[LockKey, Prewrite], LockKey, Prewrite | None]] | None = None
        self._spill_deletes: set[tuple[int, bytes, int]] = set()

    # --- apply transaction -------------------------------------------------------------------
    # The undo log holds (cache dict, lock key, previous prewrite or None) per change: undoing
    # restores the dict entries in reverse order and recomputes nothing else.
    def begin(self) -> None:
        self._undo = []
        self._spill_deletes = set()

    def commit(self) -> None:
        self._undo = None
        if self._spill is not None:
            for r, k, ts in self._spill_deletes:
                self._spill.delete(r, k, ts)
        self._spill_deletes = set()

    def rollback(self) -> None:
        undo, self._undo = self._undo or [], None
        for cache, lk, old in reversed(undo):
            cur = cache.get(lk)
            if cur is not None:
                self.memory_bytes -= cur.size()
            if old is None:
                cache.pop(lk, None)
            else:
                cache[lk] = old
                self.memory_bytes += old.size()
        self._spill_deletes = set()

    # --- raw mutations (each undoable) --------------------------------------------------------
    def _set(self, region_id: int, lk: LockKey, pw: Prewrite) -> None:
        cache = self._regions.get(region_id)
        if cache is None:
            cache = self._regions[region_id] = {}
        old = cache.get(lk)
        cache[lk] = pw
        self.memory_bytes += pw.size() - (0 if old is None else old.size())
        if self._undo is not None:
            self._undo.append((cache, lk, old))

    def _pop(self, region_id: int, lk: LockKey) -> Prewrite | None:
        cache = self._regions.get(region_id)
        if not cache:
            return None
        pw = cache.pop(lk, None)
        if pw is None:
            return None
        self.memory_bytes -= pw.size()
        if self._undo is not None:
            self._undo.append((cache, lk, pw))
        return pw

    # --- operations ---------------------------------------------------------------------------
    def prewrite(self, region_id: int, key: bytes, start_ts: int, op: int, value: bytes,
                 primary: bytes, ttl: int) -> None:
        pw = Prewrite(op, value, primary, ttl)
        if self._spill is not None and value and self.memory_bytes + len(value) > self._limit:
            self._spill.put(region_id, key, start_ts, value)
            # A delete of the same entry planned earlier in this apply (the lock was dropped,
            # then delivered again, e.g. by a snapshot) must not remove the new value.
            self._spill_deletes.discard((region_id, key, start_ts))
            pw = Prewrite(op, None, primary, ttl, spilled=True)
        self._set(region_id, (key, start_ts), pw)

    def take(self, region_id: int, key: bytes, start_ts: int) -> Prewrite | None:
        """Remove and return the prewrite of (key, start_ts), its value loaded."""
        pw = self._pop(region_id, (key, start_ts))
        if pw is None or not pw.spilled:
            return pw
        assert self._spill is not None
        self._spill_deletes.add((region_id, key, start_ts))
        return Prewrite(pw.op, self._spill.get(region_id, key, start_ts), pw.primary, pw.ttl)

    def get(self, region_id: int, key: bytes, start_ts: int) -> Prewrite | None:
        return self._regions.get(region_id, {}).get((key, start_ts))

    def value_of(self, region_id: int, key: bytes, start_ts: int, pw: Prewrite) -> bytes:
        if not pw.spilled:
            return pw.value or b""
        assert self._spill is not None
        return self._spill.get(region_id, key, start_ts)

    def drop(self, region_id: int, key: bytes, start_ts: int) -> bool:
        pw = self._pop(region_id, (key, start_ts))
        if pw is not None and pw.spilled:
            self._spill_deletes.add((region_id, key, start_ts))
        return pw is not None

    def clear(self, region_id: int) -> None:
        for lk in list(self._regions.get(region_id, {})):
            self.drop(region_id, lk[0], lk[1])

    def drop_each(self, region_id: int, keys: pa.Array, start_ts: np.ndarray) -> int:
        """Drop the prewrites of ``region_id`` named by (``keys[i]``, ``start_ts[i]``) that are
        there; returns how many were. Only rows whose start_ts some entry of the region has
        are looked up one by one (usually none: the cache holds few open transactions)."""
        cache = self._regions.get(region_id)
        if not cache or not len(keys):
            return 0
        held = np.fromiter({ts for _k, ts in cache}, dtype=np.uint64)
        maybe = np.flatnonzero(np.isin(start_ts, held))
        if not len(maybe):
            return 0
        names = keys.take(pa.array(maybe)).to_pylist()
        return sum(self.drop(region_id, k, int(ts)) for k, ts in zip(names, start_ts[maybe].tolist()))

    def drop_where(self, region_id: int, belongs: Callable[[bytes], bool]) -> int:
        """Drop the prewrites of ``region_id`` whose key ``belongs`` (a delete-range)."""
        doomed = [lk for lk in self._regions.get(region_id, {}) if belongs(lk[0])]
        for key, start_ts in doomed:
            self.drop(region_id, key, start_ts)
        return len(doomed)

    def move(self, src: int, dst: int, belongs: Callable[[bytes], bool]) -> int:
        """Move the prewrites of ``src`` whose key ``belongs`` to ``dst`` (split, merge)."""
        moved = 0
        for lk in [lk for lk in self._regions.get(src, {}) if belongs(lk[0])]:
            pw = self._pop(src, lk)
            assert pw is not None
            if pw.spilled:
                assert self._spill is not None
                value = self._spill.get(src, lk[0], lk[1])
                self._spill_deletes.add((src, lk[0], lk[1]))
                self.prewrite(dst, lk[0], lk[1], pw.op, value, pw.primary, pw.ttl)
            else:
                self._set(dst, lk, pw)
            moved += 1
        return moved

    # --- inspection ---------------------------------------------------------------------------
    def regions(self) -> list[int]:
        return [r for r, c in self._regions.items() if c]

    def count(self, region_id: int | None = None) -> int:
        if region_id is not None:
            return len(self._regions.get(region_id, {}))
        return sum(len(c) for c in self._regions.values())

    def items(self) -> Iterator[tuple[int, bytes, int, Prewrite]]:
        for region_id, cache in self._regions.items():
            for (key, start_ts), pw in cache.items():
                yield region_id, key, start_ts, pw

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
