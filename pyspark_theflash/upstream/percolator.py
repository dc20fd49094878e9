"""TiKV's part of the mini cluster: a Percolator MVCC store over the region map.

Data lives in three maps as in TiKV's column families: ``lock`` (key -> open lock),
``default`` ((key, start_ts) -> value too long to inline) and ``write`` (key -> committed
versions as txn_types Write bytes, newest first; values up to 255 bytes inline as TiKV's
short values). Regions are key ranges over these maps, each with its own raft index.

Every state change is one raft entry of each region it touches: the region's index goes up
by one and a ``binlog_pb2.Event`` with (region_id, index, epoch) is appended to the sink.
One lock (``mu``) serialises all changes and covers the append, so per region the log
order is the raft order, and a resolved_ts computed under it can never be overtaken by a
commit it did not see.
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple, Protocol

from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.codec import Lock, Write, decode_region_key
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.upstream.errors import (
    GCTooEarlyError,
    KeyLockedError,
    RegionError,
    TxnNotFoundError,
    TxnRolledBackError,
    UpstreamError,
    WriteConflictError,
)
from pyspark_theflash.upstream.pd import GCSafePoint, Region, RegionMap
from pyspark_theflash.codec.tso import physical_ms
from pyspark_theflash.upstream.tso import TimestampOracle

# TiKV inlines values up to this length into the Lock/Write record (txn_types SHORT_VALUE_MAX_LEN).
SHORT_VALUE_MAX_LEN = 255

PUT, DELETE, LOCK = binlog_pb2.PUT, binlog_pb2.DELETE, binlog_pb2.LOCK
_WRITE_TYPE = {PUT: "P", DELETE: "D", LOCK: "L"}
_LOCK_TYPE = {PUT: "P", DELETE: "D", LOCK: "L"}
_OP_OF_LOCK_TYPE = {"P": PUT, "D": DELETE, "L": LOCK}


class EventSink(Protocol):
    """Where events go: ``binlog.SegmentWriter`` or anything with its ``append``."""

    def append(self, events: list[binlog_pb2.Event]) -> object: ...


@dataclass(frozen=True)
class Mutation:
    op: int  # binlog_pb2.PUT / DELETE / LOCK
    key: bytes  # raw TiDB key
    value: bytes = b""


@dataclass(frozen=True)
class LockRecord:
    key: bytes
    primary: bytes
    start_ts: int
    ttl_ms: int
    op: int
    value: bytes
    txn_size: int

    def to_bytes(self) -> bytes:
        short = self.value if self.op == PUT and len(self.value) <= SHORT_VALUE_MAX_LEN else None
        return bytes(
            Lock(
                lock_type=_LOCK_TYPE[self.op], primary=self.primary, start_ts=self.start_ts,
                ttl=self.ttl_ms, short_value=short, txn_size=self.txn_size,
            ).to_bytes()
        )

    @classmethod
    def parse(cls, key: bytes, data: bytes, default_value: bytes | None) -> "LockRecord":
        lock = Lock.parse(data)
        value = lock.short_value if lock.short_value is not None else (default_value or b"")
        return cls(
            key=key, primary=bytes(lock.primary), start_ts=lock.start_ts, ttl_ms=lock.ttl,
            op=_OP_OF_LOCK_TYPE[lock.lock_type], value=bytes(value), txn_size=lock.txn_size,
        )


class Version(NamedTuple):
    """One record of the write CF."""

    commit_ts: int
    write_type: str  # 'P', 'D', 'L', 'R' (parsed from ``write`` once, for reads)
    start_ts: int
    write: bytes  # txn_types Write bytes


class TxnState(NamedTuple):
    state: str  # 'committed' | 'rolled_back' | 'locked'
    commit_ts: int
    ttl_ms: int
    action: str  # '', 'ttl_expire_rollback', 'lock_not_exist_rollback'


def write_bytes(write_type: str, start_ts: int, short_value: bytes | None) -> bytes:
    return bytes(Write(write_type=write_type, start_ts=start_ts, short_value=short_value).to_bytes())


class PercolatorStore:
    """The KV layer. Thread-safe: every public method takes ``mu``."""

    def __init__(
        self,
        regions: RegionMap,
        tso: TimestampOracle,
        gc: GCSafePoint,
        sink: EventSink | None = None,
        region_split_keys: int | None = None,
        region_split_bytes: int | None = None,
    ) -> None:
        self.mu = threading.RLock()
        self.regions = regions
        self.tso = tso
        self.gc = gc
        self.sink = sink
        self.region_split_keys = region_split_keys
        self.region_split_bytes = region_split_bytes
        self.listeners: list[Callable[[list[binlog_pb2.Event]], None]] = []
        self._keys: list[bytes] = []  # every key with a lock or a write record, sorted
        self._writes: dict[bytes, list[Version]] = {}  # newest first
        self._defaults: dict[tuple[bytes, int], bytes] = {}
        self._locks: dict[bytes, LockRecord] = {}
        self._locks_by_ts: dict[int, set[bytes]] = {}
        self._pending: list[binlog_pb2.Event] = []
        self.events_emitted = 0

    # ---------------------------------------------------------------- event plumbing

    def _emit(self, region: Region, advance: bool = True, **payload: object) -> binlog_pb2.Event:
        if advance:
            region.index += 1
        event = binlog_pb2.Event(region_id=region.id, index=region.index, epoch=region.epoch_proto(), **payload)
        self._pending.append(event)
        return event

    def _emit_rows(self, region: Region, rows: list[binlog_pb2.Row]) -> None:
        # The columnar form: a replica applies it with array operations (binlog/rows.py).
        self._emit(region, entries=binlog_rows.columnar_entries(rows))

    def _flush_events(self) -> None:
        """Append what this change emitted, still under ``mu`` (log order = raft order)."""
        if not self._pending:
            return
        events, self._pending = self._pending, []
        if self.sink is not None:
            self.sink.append(events)
        for listener in self.listeners:
            listener(events)
        self.events_emitted += len(events)

    def append_events(self, events: list[binlog_pb2.Event]) -> None:
        """Append events that belong to no region (DDL) to the log, in order with the rows
        around them (the caller holds the schema lease, so no commit is in between)."""
        with self.mu:
            self._pending.extend(events)
            self._flush_events()

    # ---------------------------------------------------------------- raw data helpers

    def _touch_key(self, key: bytes) -> None:
        i = bisect.bisect_left(self._keys, key)
        if i == len(self._keys) or self._keys[i] != key:
            self._keys.insert(i, key)

    def _add_version(self, key: bytes, version: Version) -> None:
        self._touch_key(key)
        versions = self._writes.setdefault(key, [])
        if versions and versions[0].commit_ts > version.commit_ts:
            versions.append(version)
            versions.sort(key=lambda v: v.commit_ts, reverse=True)
        else:
            versions.insert(0, version)

    def _add_lock(self, lock: LockRecord) -> None:
        self._touch_key(lock.key)
        self._locks[lock.key] = lock
        self._locks_by_ts.setdefault(lock.start_ts, set()).add(lock.key)
        if lock.op == PUT and len(lock.value) > SHORT_VALUE_MAX_LEN:
            self._defaults[(lock.key, lock.start_ts)] = lock.value

    def _remove_lock(self, lock: LockRecord, keep_value: bool) -> None:
        del self._locks[lock.key]
        keys = self._locks_by_ts[lock.start_ts]
        keys.discard(lock.key)
        if not keys:
            del self._locks_by_ts[lock.start_ts]
        if not keep_value:
            self._defaults.pop((lock.key, lock.start_ts), None)

    def _find_version(self, key: bytes, start_ts: int) -> Version | None:
        """The write record of the transaction started at ``start_ts`` on ``key``."""
        for v in self._writes.get(key, ()):
            if v.start_ts == start_ts:
                return v
            if v.commit_ts < start_ts:
                break
        return None

    def _value_of(self, key: bytes, v: Version) -> bytes:
        short = Write.parse(v.write).short_value
        if short is not None:
            return bytes(short)
        return self._defaults[(key, v.start_ts)]

    def _check_prewrite(self, m: Mutation, start_ts: int) -> bool:
        """Raise on a conflict; False when this transaction already holds the lock."""
        lock = self._locks.get(m.key)
        if lock is not None:
            if lock.start_ts == start_ts:
                return False
            raise KeyLockedError(m.key, lock.start_ts, lock.primary, lock.ttl_ms)
        versions = self._writes.get(m.key)
        if versions:
            newest = versions[0]
            if newest.commit_ts > start_ts:
                raise WriteConflictError(m.key, start_ts, newest.commit_ts)
            own = self._find_version(m.key, start_ts)
            if own is not None:
                if own.write_type == "R":
                    raise TxnRolledBackError(m.key, start_ts)
                return False  # already committed by this transaction
        return True

    def _commit_record(self, key: bytes, op: int, value: bytes, start_ts: int, commit_ts: int) -> None:
        short = value if op == PUT and len(value) <= SHORT_VALUE_MAX_LEN else None
        if op == PUT and short is None:
            self._defaults[(key, start_ts)] = value
        self._add_version(key, Version(commit_ts, _WRITE_TYPE[op], start_ts, write_bytes(_WRITE_TYPE[op], start_ts, short)))

    # ---------------------------------------------------------------- transactions

    def prewrite(self, mutations: list[Mutation], primary: bytes, start_ts: int, ttl_ms: int) -> None:
        """Lock every key (one raft entry per region touched). A conflict raises after the
        regions before it were prewritten: the caller rolls back what it prewrote."""
        with self.mu:
            try:
                by_region: dict[int, list[Mutation]] = {}
                for m in mutations:
                    by_region.setdefault(self.regions.locate(m.key).id, []).append(m)
                for region_id, muts in by_region.items():
                    fresh = [m for m in muts if self._check_prewrite(m, start_ts)]
                    if not fresh:
                        continue
                    rows = []
                    for m in fresh:
                        self._add_lock(LockRecord(m.key, primary, start_ts, ttl_ms, m.op, m.value, len(mutations)))
                        rows.append(binlog_pb2.Row(
                            type=binlog_pb2.Row.PREWRITE, op=m.op, start_ts=start_ts, key=m.key,
                            value=m.value, primary=primary, ttl=ttl_ms, txn_size=len(mutations),
                        ))
                    self._emit_rows(self.regions.get(region_id), rows)
            finally:
                self._flush_events()

    def commit(self, keys: list[bytes], start_ts: int, commit_ts: int) -> None:
        """Commit the transaction's locks on ``keys`` (one raft entry per region)."""
        with self.mu:
            try:
                for region_id, ks in self.regions.group(keys).items():
                    rows = []
                    for key in ks:
                        lock = self._locks.get(key)
                        if lock is None or lock.start_ts != start_ts:
                            v = self._find_version(key, start_ts)
                            if v is not None and v.write_type != "R":
                                continue  # committed before (idempotent)
                            raise TxnRolledBackError(key, start_ts)
                        self._remove_lock(lock, keep_value=True)
                        self._commit_record(key, lock.op, lock.value, start_ts, commit_ts)
                        rows.append(binlog_pb2.Row(
                            type=binlog_pb2.Row.COMMIT, op=lock.op, start_ts=start_ts,
                            commit_ts=commit_ts, key=key,
                        ))
                    if rows:
                        region = self.regions.get(region_id)
                        self._emit_rows(region, rows)
                        self._maybe_split(region)
            finally:
                self._flush_events()

    def rollback(self, keys: list[bytes], start_ts: int) -> int:
        """Roll back the transaction on ``keys``: drop its locks and leave Rollback records so a
        late prewrite fails. Returns how many locks were removed."""
        with self.mu:
            try:
                return self._rollback_locked(keys, start_ts)
            finally:
                self._flush_events()

    def _rollback_locked(self, keys: list[bytes], start_ts: int) -> int:
        removed = 0
        for region_id, ks in self.regions.group(keys).items():
            rows = []
            for key in ks:
                v = self._find_version(key, start_ts)
                if v is not None:
                    if v.write_type == "R":
                        continue
                    raise UpstreamError(
                        f"cannot roll back key {key.hex()} of the transaction started at {start_ts}: "
                        f"it committed at {v.commit_ts}"
                    )
                lock = self._locks.get(key)
                if lock is not None and lock.start_ts == start_ts:
                    self._remove_lock(lock, keep_value=False)
                    removed += 1
                self._add_version(key, Version(start_ts, "R", start_ts, write_bytes("R", start_ts, None)))
                rows.append(binlog_pb2.Row(type=binlog_pb2.Row.ROLLBACK, start_ts=start_ts, key=key))
            if rows:
                self._emit_rows(self.regions.get(region_id), rows)
        return removed

    def one_pc(self, mutations: list[Mutation], start_ts: int) -> int:
        """Commit a transaction whose keys are all in one region in one raft entry (TiKV's
        1PC); returns its commit_ts. The commit_ts is taken under ``mu`` so no resolved_ts
        emitted before it can be at or above it."""
        with self.mu:
            try:
                regions = {self.regions.locate(m.key).id for m in mutations}
                if len(regions) != 1:
                    raise RegionError(
                        f"1PC needs all keys in one region, these span regions {sorted(regions)}; use 2PC"
                    )
                for m in mutations:
                    if not self._check_prewrite(m, start_ts):
                        raise UpstreamError(f"1PC of the transaction started at {start_ts} ran twice")
                commit_ts = self.tso.get_ts()
                rows = []
                for m in mutations:
                    self._commit_record(m.key, m.op, m.value, start_ts, commit_ts)
                    rows.append(binlog_pb2.Row(
                        type=binlog_pb2.Row.COMMITTED, op=m.op, start_ts=start_ts,
                        commit_ts=commit_ts, key=m.key, value=m.value,
                    ))
                region = self.regions.get(regions.pop())
                self._emit_rows(region, rows)
                self._maybe_split(region)
                return commit_ts
            finally:
                self._flush_events()

    def check_txn_status(
        self, primary: bytes, lock_ts: int, caller_start_ts: int, current_ts: int,
        rollback_if_not_exist: bool = True,
    ) -> TxnState:
        """TiKV's CheckTxnStatus on the primary key. A lock whose TTL ran out by
        ``current_ts`` (physical time of lock_ts + ttl) is rolled back; a transaction that left
        no trace is rolled back too (so its prewrite can never land) unless told not to."""
        with self.mu:
            try:
                lock = self._locks.get(primary)
                if lock is not None and lock.start_ts == lock_ts:
                    if physical_ms(lock_ts) + lock.ttl_ms < physical_ms(current_ts):
                        self._rollback_locked([primary], lock_ts)
                        return TxnState("rolled_back", 0, 0, "ttl_expire_rollback")
                    return TxnState("locked", 0, lock.ttl_ms, "")
                v = self._find_version(primary, lock_ts)
                if v is not None:
                    if v.write_type == "R":
                        return TxnState("rolled_back", 0, 0, "")
                    return TxnState("committed", v.commit_ts, 0, "")
                if not rollback_if_not_exist:
                    raise TxnNotFoundError(primary, lock_ts)
                self._rollback_locked([primary], lock_ts)
                return TxnState("rolled_back", 0, 0, "lock_not_exist_rollback")
            finally:
                self._flush_events()

    def resolve_lock(self, start_ts: int, commit_ts: int, keys: Iterable[bytes] | None = None) -> int:
        """Commit (commit_ts > 0) or roll back (0) the transaction's remaining locks, all of
        them or those on ``keys``; returns how many locks it resolved."""
        with self.mu:
            held = self._locks_by_ts.get(start_ts, set())
            todo = sorted(held if keys is None else (k for k in keys if k in held))
            if not todo:
                return 0
            if commit_ts:
                self.commit(todo, start_ts, commit_ts)
                return len(todo)
            return self.rollback(todo, start_ts)

    # ---------------------------------------------------------------- reads

    def _check_read_ts(self, ts: int) -> None:
        if ts < self.gc.value:
            raise GCTooEarlyError(ts, self.gc.value)

    def _get_locked(self, key: bytes, ts: int, own_start_ts: int) -> bytes | None:
        lock = self._locks.get(key)
        if lock is not None and lock.start_ts <= ts and lock.op != LOCK and lock.start_ts != own_start_ts:
            raise KeyLockedError(key, lock.start_ts, lock.primary, lock.ttl_ms)
        for v in self._writes.get(key, ()):
            if v.commit_ts > ts or v.write_type in ("L", "R"):
                continue
            return self._value_of(key, v) if v.write_type == "P" else None
        return None

    def get(self, key: bytes, ts: int, own_start_ts: int = 0) -> bytes | None:
        """The value of ``key`` at ``ts`` (None: absent or deleted). A lock of another
        transaction with start_ts <= ts raises KeyLockedError: its outcome decides the value."""
        with self.mu:
            self._check_read_ts(ts)
            return self._get_locked(key, ts, own_start_ts)

    def scan(self, start: bytes, end: bytes, ts: int, own_start_ts: int = 0) -> list[tuple[bytes, bytes]]:
        """All live (key, value) in [start, end) at ``ts``; end b"" = unbounded."""
        with self.mu:
            self._check_read_ts(ts)
            lo = bisect.bisect_left(self._keys, start)
            hi = bisect.bisect_left(self._keys, end) if end else len(self._keys)
            out = []
            for key in self._keys[lo:hi]:
                value = self._get_locked(key, ts, own_start_ts)
                if value is not None:
                    out.append((key, value))
            return out

    def last_key(self, start: bytes, end: bytes) -> bytes | None:
        """The greatest key with any record in [start, end)."""
        with self.mu:
            hi = bisect.bisect_left(self._keys, end) if end else len(self._keys)
            return self._keys[hi - 1] if hi and self._keys[hi - 1] >= start else None

    def locks(self, start: bytes = b"", end: bytes = b"") -> list[LockRecord]:
        with self.mu:
            return sorted(
                (lk for k, lk in self._locks.items() if k >= start and (not end or k < end)),
                key=lambda lk: lk.key,
            )

    def read_index(self, region_id: int) -> int:
        with self.mu:
            return self.regions.get(region_id).index

    # ---------------------------------------------------------------- regions

    def bootstrap(self) -> None:
        """Emit the snapshot of every region, so a reader learns their ranges from the log."""
        with self.mu:
            for region in self.regions.all():
                self._pending.append(self._snapshot_locked(region))
            self._flush_events()

    def _snapshot_locked(self, region: Region) -> binlog_pb2.Event:
        lo = bisect.bisect_left(self._keys, region.start)
        hi = bisect.bisect_left(self._keys, region.end) if region.end else len(self._keys)
        writes, locks = [], []
        for key in self._keys[lo:hi]:
            for v in self._writes.get(key, ()):
                if v.write_type in ("P", "D"):
                    inline = v.write_type == "D" or Write.parse(v.write).short_value is not None
                    long_value = b"" if inline else self._defaults[(key, v.start_ts)]
                    writes.append(binlog_pb2.SnapshotWrite(key=key, commit_ts=v.commit_ts, write=v.write, value=long_value))
            lock = self._locks.get(key)
            if lock is not None:
                long_value = lock.value if lock.op == PUT and len(lock.value) > SHORT_VALUE_MAX_LEN else b""
                locks.append(binlog_pb2.SnapshotLock(key=key, lock=lock.to_bytes(), value=long_value))
        return binlog_pb2.Event(
            region_id=region.id, index=region.index, epoch=region.epoch_proto(),
            snapshot=binlog_pb2.RegionSnapshot(region=region.to_proto(), writes=writes, locks=locks),
        )

    def region_snapshot(self, region_id: int) -> binlog_pb2.Event:
        """The region's committed versions (after GC) and open locks at its current index."""
        with self.mu:
            return self._snapshot_locked(self.regions.get(region_id))

    def split_region(self, region_id: int, split_key: bytes) -> tuple[Region, Region]:
        """Split at a raw key: one admin entry in the region's log naming both results."""
        with self.mu:
            try:
                return self._split_locked(region_id, split_key)
            finally:
                self._flush_events()

    def _split_locked(self, region_id: int, split_key: bytes) -> tuple[Region, Region]:
        left, right = self.regions.split(region_id, split_key)
        self._emit(left, admin=binlog_pb2.Admin(split=binlog_pb2.Split(regions=[left.to_proto(), right.to_proto()])))
        right.resolved_ts = left.resolved_ts
        return left, right

    def split_at(self, key: bytes) -> tuple[Region, Region] | None:
        """Split the region holding ``key`` at it; None when ``key`` already starts a region."""
        with self.mu:
            region = self.regions.locate(key)
            if region.start == key:
                return None
            return self.split_region(region.id, key)

    def merge_regions(self, source_id: int, target_id: int) -> Region:
        """Merge ``source`` into its neighbour ``target``: one admin entry in the target's log."""
        with self.mu:
            try:
                source, target = self.regions.merge(source_id, target_id)
                self._emit(target, admin=binlog_pb2.Admin(merge=binlog_pb2.Merge(source=source.to_proto(), target=target.to_proto())))
                target.resolved_ts = min(target.resolved_ts, source.resolved_ts)
                return target
            finally:
                self._flush_events()

    def _region_size(self, region: Region) -> tuple[int, int]:
        lo = bisect.bisect_left(self._keys, region.start)
        hi = bisect.bisect_left(self._keys, region.end) if region.end else len(self._keys)
        nbytes = 0
        if self.region_split_bytes:
            for key in self._keys[lo:hi]:
                versions = self._writes.get(key)
                nbytes += len(key) + (len(versions[0].write) if versions else 0)
        return hi - lo, nbytes

    def _maybe_split(self, region: Region) -> None:
        """Split a region that grew past the configured size at its middle key."""
        if not (self.region_split_keys or self.region_split_bytes):
            return
        nkeys, nbytes = self._region_size(region)
        too_big = (self.region_split_keys and nkeys > self.region_split_keys) or (
            self.region_split_bytes and nbytes > self.region_split_bytes
        )
        if too_big and nkeys >= 2:
            lo = bisect.bisect_left(self._keys, region.start)
            self._split_locked(region.id, self._keys[lo + nkeys // 2])

    # ---------------------------------------------------------------- resolved ts, GC

    def advance_resolved_ts(self) -> list[binlog_pb2.Event]:
        """Emit per region resolved_ts = min(start_ts of its open locks) - 1, or a fresh TSO when
        it has none, carrying the region's last index. A value not above the region's last
        one is not emitted (resolved_ts only moves forward)."""
        with self.mu:
            try:
                now = self.tso.get_ts()
                min_lock: dict[int, int] = {}
                for key, lock in self._locks.items():
                    rid = self.regions.locate(key).id
                    min_lock[rid] = min(min_lock.get(rid, lock.start_ts), lock.start_ts)
                emitted = []
                for region in self.regions.all():
                    ts = min_lock[region.id] - 1 if region.id in min_lock else now
                    if ts > region.resolved_ts:
                        region.resolved_ts = ts
                        emitted.append(self._emit(region, advance=False, resolved_ts=ts))
                return emitted
            finally:
                self._flush_events()

    def expired_locks(self, current_ts: int, grace_ms: int = 0) -> list[LockRecord]:
        """One lock per transaction whose TTL (plus ``grace_ms``) ran out by ``current_ts``
        (primary or orphaned secondary: its primary decides what happens to it)."""
        with self.mu:
            now_ms = physical_ms(current_ts)
            by_txn: dict[int, LockRecord] = {}
            for lk in self._locks.values():
                if physical_ms(lk.start_ts) + lk.ttl_ms + grace_ms < now_ms:
                    by_txn.setdefault(lk.start_ts, lk)
            return list(by_txn.values())

    def collect_garbage(self, safe_point: int) -> int:
        """Advance the GC safe point and drop versions no read at or above it can see: keep
        every version newer than it and the newest Put at or below it. Returns versions
        dropped. GC is local (TiKV does not replicate it through the change feed)."""
        with self.mu:
            sp = self.gc.advance(safe_point)
            dropped = 0
            for key in list(self._writes):
                versions = self._writes[key]
                keep: list[Version] = []
                found_visible = False
                for v in versions:
                    if v.commit_ts > sp:
                        keep.append(v)
                    elif not found_visible and v.write_type in ("P", "D"):
                        found_visible = True  # the version a read at the safe point sees
                        if v.write_type == "P":
                            keep.append(v)
                    # older versions, and Lock/Rollback records at or below it, are dropped
                for v in versions:
                    if v not in keep:
                        dropped += 1
                        self._defaults.pop((key, v.start_ts), None)
                if keep:
                    self._writes[key] = keep
                else:
                    del self._writes[key]
                    if key not in self._locks:
                        self._keys.pop(bisect.bisect_left(self._keys, key))
            return dropped

    # ---------------------------------------------------------------- recovery

    def replay(self, event: binlog_pb2.Event) -> None:
        """Apply an event of this cluster's own log without emitting anything: the binlog is
        the cluster's write-ahead log, replayed after a restart from the last checkpoint."""
        with self.mu:
            kind = event.WhichOneof("payload")
            if kind == "snapshot":
                self._replay_snapshot(event)
                return
            region = self.regions.get(event.region_id)
            if kind == "resolved_ts":
                region.resolved_ts = max(region.resolved_ts, event.resolved_ts)
                return
            if kind == "entries":
                for row in binlog_rows.iter_rows(event.entries, f"region {event.region_id} index {event.index}"):
                    self._replay_row(row)
            elif kind == "admin" and event.admin.HasField("split"):
                self._replay_split(event)
            elif kind == "admin" and event.admin.HasField("merge"):
                m = event.admin.merge
                self.regions.merge(m.source.id, m.target.id)
                self._set_epoch(m.target)
            region = self.regions.get(event.region_id)
            region.index = event.index

    def _replay_row(self, row: binlog_pb2.Row) -> None:
        key = row.key
        if row.type == binlog_pb2.Row.PREWRITE:
            self._add_lock(LockRecord(key, row.primary, row.start_ts, row.ttl, row.op, row.value, row.txn_size))
        elif row.type == binlog_pb2.Row.COMMIT:
            lock = self._locks.get(key)
            if lock is not None and lock.start_ts == row.start_ts:
                self._remove_lock(lock, keep_value=True)
                self._commit_record(key, lock.op, lock.value, row.start_ts, row.commit_ts)
        elif row.type == binlog_pb2.Row.ROLLBACK:
            lock = self._locks.get(key)
            if lock is not None and lock.start_ts == row.start_ts:
                self._remove_lock(lock, keep_value=False)
            if self._find_version(key, row.start_ts) is None:
                self._add_version(key, Version(row.start_ts, "R", row.start_ts, write_bytes("R", row.start_ts, None)))
        elif row.type == binlog_pb2.Row.COMMITTED:
            self._commit_record(key, row.op, row.value, row.start_ts, row.commit_ts)

    def _set_epoch(self, proto: binlog_pb2.Region) -> Region:
        region = self.regions.get(proto.id)
        region.version, region.conf_version = proto.epoch.version, proto.epoch.conf_version
        return region

    def _replay_split(self, event: binlog_pb2.Event) -> None:
        for proto in event.admin.split.regions:
            if proto.id == event.region_id:
                continue
            self.regions.next_id = proto.id  # the split hands out exactly the logged id
            self.regions.split(event.region_id, decode_region_key(proto.start_key))
        for proto in event.admin.split.regions:
            self._set_epoch(proto)

    def _replay_snapshot(self, event: binlog_pb2.Event) -> None:
        """A snapshot replaces the region's range: drop what is there, load its contents."""
        proto = event.snapshot.region
        start, end = decode_region_key(proto.start_key), decode_region_key(proto.end_key)
        lo = bisect.bisect_left(self._keys, start)
        hi = bisect.bisect_left(self._keys, end) if end else len(self._keys)
        for key in self._keys[lo:hi]:
            lock = self._locks.get(key)
            if lock is not None:
                self._remove_lock(lock, keep_value=False)
            for v in self._writes.pop(key, ()):
                self._defaults.pop((key, v.start_ts), None)
        del self._keys[lo:hi]
        for w in event.snapshot.writes:
            parsed = Write.parse(w.write)
            if w.value:
                self._defaults[(w.key, parsed.start_ts)] = w.value
            self._add_version(w.key, Version(w.commit_ts, parsed.write_type, parsed.start_ts, w.write))
        for lk in event.snapshot.locks:
            self._add_lock(LockRecord.parse(lk.key, lk.lock, lk.value or None))
        region = self.regions.get(proto.id)
        region.index = event.index
        region.version, region.conf_version = proto.epoch.version, proto.epoch.conf_version

    # ---------------------------------------------------------------- persistence

    def dump(self) -> tuple[list[tuple[bytes, int, bytes]], list[tuple[bytes, int, bytes]], list[tuple[bytes, bytes, bytes]]]:
        """(writes (key, commit_ts, Write bytes), defaults (key, start_ts, value),
        locks (key, Lock bytes, long value))."""
        with self.mu:
            writes = [(k, v.commit_ts, v.write) for k, vs in self._writes.items() for v in vs]
            defaults = [(k, ts, val) for (k, ts), val in self._defaults.items()]
            locks = [
                (k, lk.to_bytes(), lk.value if lk.op == PUT and len(lk.value) > SHORT_VALUE_MAX_LEN else b"")
                for k, lk in self._locks.items()
            ]
            return writes, defaults, locks

    def load(
        self, writes: Iterable[tuple[bytes, int, bytes]], defaults: Iterable[tuple[bytes, int, bytes]],
        locks: Iterable[tuple[bytes, bytes, bytes]],
    ) -> None:
        with self.mu:
            for key, ts, value in defaults:
                self._defaults[(bytes(key), ts)] = bytes(value)
            for key, commit_ts, data in writes:
                w = Write.parse(bytes(data))
                self._add_version(bytes(key), Version(commit_ts, w.write_type, w.start_ts, bytes(data)))
            for key, data, value in locks:
                self._add_lock(LockRecord.parse(bytes(key), bytes(data), bytes(value) or None))
