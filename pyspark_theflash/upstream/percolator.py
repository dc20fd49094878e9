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

Async commit (TiKV >= 5.0): a prewrite may ask for it; each lock then carries
``min_commit_ts`` (above ``max_ts``, the greatest ts any read, read index, resolved ts or
status check has used, as TiKV's concurrency manager keeps it) and the primary lock lists the
secondaries. The transaction is committed once every lock is written, at the greatest
min_commit_ts; CheckTxnStatus never rolls such a primary back, CheckSecondaryLocks decides.
``mu`` also plays TiKV's in-memory locks: a read index or read taken under it is ordered
after any prewrite in flight.
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, replace
from functools import partial
from itertools import repeat

import pyarrow as pa
from typing import Callable, Iterable, NamedTuple, Protocol, Unpack

from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.codec import Lock, Write, decode_region_key
from pyspark_theflash.codec.batch_encode import lengths_of, put_write_records
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.txn.status import LockInfo, SecondaryLocks, TxnAction, TxnStatus
from pyspark_theflash.upstream_client.errors import (
    AlreadyExistError,
    CommitTsExpiredError,
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
    op: binlog_pb2.OpType  # PUT / DELETE / LOCK
    key: bytes  # raw TiDB key
    value: bytes = b""


@dataclass(frozen=True)
class LockRecord:
    key: bytes
    primary: bytes
    start_ts: int
    ttl_ms: int
    op: binlog_pb2.OpType
    value: bytes
    txn_size: int
    use_async_commit: bool = False
    min_commit_ts: int = 0  # a commit below it is refused; 0 = none
    secondaries: tuple[bytes, ...] = ()  # the primary lock of an async-commit transaction

    def to_bytes(self) -> bytes:
        short = self.value if self.op == PUT and len(self.value) <= SHORT_VALUE_MAX_LEN else None
        return bytes(
            Lock(
                lock_type=_LOCK_TYPE[self.op], primary=self.primary, start_ts=self.start_ts,
                ttl=self.ttl_ms, short_value=short, txn_size=self.txn_size,
                min_commit_ts=self.min_commit_ts, use_async_commit=self.use_async_commit,
                secondaries=list(self.secondaries),
            ).to_bytes()
        )

    @classmethod
    def parse(cls, key: bytes, data: bytes, default_value: bytes | None) -> "LockRecord":
        lock = Lock.parse(data)
        value = lock.short_value if lock.short_value is not None else (default_value or b"")
        return cls(
            key=key, primary=bytes(lock.primary), start_ts=lock.start_ts, ttl_ms=lock.ttl,
            op=_OP_OF_LOCK_TYPE[lock.lock_type], value=bytes(value), txn_size=lock.txn_size,
            use_async_commit=lock.use_async_commit, min_commit_ts=lock.min_commit_ts,
            secondaries=tuple(bytes(k) for k in lock.secondaries),
        )

    def prewrite_row(self) -> binlog_pb2.Row:
        """The PREWRITE row that carries this lock in the binlog."""
        return binlog_pb2.Row(
            type=binlog_pb2.Row.PREWRITE, op=self.op, start_ts=self.start_ts, key=self.key, value=self.value,
            primary=self.primary, ttl=self.ttl_ms, txn_size=self.txn_size, min_commit_ts=self.min_commit_ts,
            use_async_commit=self.use_async_commit, secondaries=self.secondaries,
        )

    @classmethod
    def of_prewrite_row(cls, row: binlog_pb2.Row) -> "LockRecord":
        return cls(
            row.key, row.primary, row.start_ts, row.ttl, row.op, row.value, row.txn_size,
            use_async_commit=row.use_async_commit, min_commit_ts=row.min_commit_ts,
            secondaries=tuple(row.secondaries),
        )


class Version(NamedTuple):
    """One record of the write CF."""

    commit_ts: int
    write_type: str  # 'P', 'D', 'L', 'R' (parsed from ``write`` once, for reads)
    start_ts: int
    write: bytes  # txn_types Write bytes


def write_bytes(write_type: str, start_ts: int, short_value: bytes | None) -> bytes:
    return bytes(Write(write_type=write_type, start_ts=start_ts, short_value=short_value).to_bytes())


class StoreChanges(NamedTuple):
    """Records changed since the last checkpoint, each with its state now (None: removed):
    write CF ``(key, commit_ts) -> Write bytes``, default CF ``(key, start_ts) -> value``,
    lock CF ``key -> LockRecord``. ``new_writes``: write records of bulk inserts, as
    (keys, commit_ts, Write bytes) per transaction: kept as the lists they came in (no map
    entry per row); saved before ``writes``, which holds any later change of them."""

    writes: dict[tuple[bytes, int], bytes | None]
    defaults: dict[tuple[bytes, int], bytes | None]
    locks: dict[bytes, LockRecord | None]
    new_writes: list[tuple[list[bytes], int, list[bytes]]]

    @property
    def records(self) -> int:
        return len(self.writes) + len(self.defaults) + len(self.locks) + sum(len(k) for k, _, _ in self.new_writes)


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
        # Records changed since the last take_changes() (a checkpoint saves only these):
        # (key, commit_ts) -> Write bytes, (key, start_ts) -> long value, key -> lock; None = gone.
        self._changed_writes: dict[tuple[bytes, int], bytes | None] = {}
        self._changed_defaults: dict[tuple[bytes, int], bytes | None] = {}
        self._changed_locks: dict[bytes, LockRecord | None] = {}
        self._new_writes: list[tuple[list[bytes], int, list[bytes]]] = []
        # TiKV's concurrency manager max_ts: no async-commit lock gets a min_commit_ts at or
        # below a ts already read. A fresh TSO bounds every ts handed out before a restart.
        self.max_ts = tso.current()

    # ---------------------------------------------------------------- event plumbing

    def _emit(self, region: Region, advance: bool = True, *, entries: binlog_pb2.Entries | None = None,
              admin: binlog_pb2.Admin | None = None) -> binlog_pb2.Event:
        """The region's next event, of ``entries`` or ``admin`` (a payload given as None is not set)."""
        if advance:
            region.index += 1
        event = binlog_pb2.Event(region_id=region.id, index=region.index, epoch=region.epoch_proto(), entries=entries,
                                 admin=admin)
        self._pending.append(event)
        return event

    def _emit_rows(self, region: Region, rows: list[binlog_pb2.Row]) -> None:
        # The columnar form: a replica applies it with array operations (binlog/rows.py).
        self._emit(region, entries=binlog_rows.columnar_entries(rows))

    def _emit_columns(self, region: Region, **columns: Unpack[binlog_rows.PackedColumns]) -> None:
        """One entries event of rows given as columns (``binlog.rows.pack_columns``), for
        rows without async-commit fields: no Row message per row is built."""
        self._emit(region, entries=binlog_pb2.Entries(batch=binlog_rows.pack_columns(**columns)))

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

    def _touch_new_keys(self, keys: list[bytes]) -> None:
        """Add sorted keys none of which is in ``_keys`` yet: one slice insertion when they
        all fall between two existing keys (a load in key order), else a merge of the span."""
        if not keys:
            return
        lo = bisect.bisect_left(self._keys, keys[0])
        hi = bisect.bisect_left(self._keys, keys[-1], lo)
        if lo == hi:
            self._keys[lo:lo] = keys
        else:
            self._keys[lo:hi] = sorted(self._keys[lo:hi] + keys)

    def _set_default(self, key: bytes, start_ts: int, value: bytes) -> None:
        self._defaults[(key, start_ts)] = value
        self._changed_defaults[(key, start_ts)] = value

    def _drop_default(self, key: bytes, start_ts: int) -> None:
        if self._defaults.pop((key, start_ts), None) is not None:
            self._changed_defaults[(key, start_ts)] = None

    def _add_version(self, key: bytes, version: Version) -> None:
        self._changed_writes[(key, version.commit_ts)] = version.write
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
        self._changed_locks[lock.key] = lock
        if lock.op == PUT and len(lock.value) > SHORT_VALUE_MAX_LEN:
            self._set_default(lock.key, lock.start_ts, lock.value)

    def _remove_lock(self, lock: LockRecord, keep_value: bool) -> None:
        del self._locks[lock.key]
        self._changed_locks[lock.key] = None
        keys = self._locks_by_ts[lock.start_ts]
        keys.discard(lock.key)
        if not keys:
            del self._locks_by_ts[lock.start_ts]
        if not keep_value:
            self._drop_default(lock.key, lock.start_ts)

    def _find_version(self, key: bytes, start_ts: int) -> Version | None:
        """The write record of the transaction started at ``start_ts`` on ``key`` (a Rollback
        when another transaction's commit record at that ts carries its overlapped rollback)."""
        for v in self._writes.get(key, ()):
            if v.start_ts == start_ts:
                return v
            if v.commit_ts == start_ts and Write.parse(v.write).has_overlapped_rollback:
                return Version(start_ts, "R", start_ts, v.write)
            if v.commit_ts < start_ts:
                break
        return None

    def _put_rollback(self, key: bytes, start_ts: int) -> None:
        """The Rollback record of the transaction started at ``start_ts``. Async commit and
        1PC commit at max_ts + 1, which may be another transaction's start_ts: where a commit
        record already sits at that ts, it is flagged instead (TiKV's overlapped rollback), so
        each (key, commit_ts) holds one record."""
        versions = self._writes.get(key, [])
        for i, v in enumerate(versions):
            if v.commit_ts == start_ts:
                if v.write_type != "R" and v.start_ts != start_ts:
                    w = Write.parse(v.write)
                    w.has_overlapped_rollback = True
                    versions[i] = v._replace(write=bytes(w.to_bytes()))
                    self._changed_writes[(key, v.commit_ts)] = versions[i].write
                return
            if v.commit_ts < start_ts:
                break
        self._add_version(key, Version(start_ts, "R", start_ts, write_bytes("R", start_ts, None)))

    def _value_of(self, key: bytes, v: Version) -> bytes:
        short = Write.parse(v.write).short_value
        if short is not None:
            return bytes(short)
        return self._defaults[(key, v.start_ts)]

    def _raise_max_ts(self, ts: int) -> None:
        if ts > self.max_ts:
            self.max_ts = ts

    def _check_prewrite(self, m: Mutation, start_ts: int, check_conflict: bool = True) -> bool:
        """Raise on a conflict; False when this transaction already holds the lock.
        ``check_conflict`` False: the key is pessimistically locked by this transaction, so no
        commit after start_ts can be newer than the lock (TiKV skips the write-conflict check)."""
        lock = self._locks.get(m.key)
        if lock is not None:
            if lock.start_ts == start_ts:
                return False
            raise KeyLockedError(m.key, lock.start_ts, lock.primary, lock.ttl_ms)
        versions = self._writes.get(m.key)
        if versions:
            newest = versions[0]
            if check_conflict and newest.commit_ts > start_ts:
                raise WriteConflictError(m.key, start_ts, newest.commit_ts)
            own = self._find_version(m.key, start_ts)
            if own is not None:
                if own.write_type == "R":
                    raise TxnRolledBackError(m.key, start_ts)
                return False  # already committed by this transaction
        return True

    def _commit_record(self, key: bytes, op: binlog_pb2.OpType, value: bytes, start_ts: int, commit_ts: int) -> None:
        short = value if op == PUT and len(value) <= SHORT_VALUE_MAX_LEN else None
        if op == PUT and short is None:
            self._set_default(key, start_ts, value)
        write = Write(write_type=_WRITE_TYPE[op], start_ts=start_ts, short_value=short)
        versions = self._writes.get(key, [])
        for i, v in enumerate(versions):
            if v.commit_ts == commit_ts and v.write_type == "R":
                # another transaction's rollback at this ts: the commit takes its place, flagged (TiKV)
                del versions[i]
                write.has_overlapped_rollback = True
                break
            if v.commit_ts < commit_ts:
                break
        self._add_version(key, Version(commit_ts, _WRITE_TYPE[op], start_ts, bytes(write.to_bytes())))

    # ---------------------------------------------------------------- transactions

    def prewrite(
        self, mutations: list[Mutation], primary: bytes, start_ts: int, ttl_ms: int, *,
        async_commit: bool = False, secondaries: Iterable[bytes] = (),
        pessimistic_keys: frozenset[bytes] = frozenset(), min_commit_ts: int = 0,
    ) -> int:
        """Lock every key (one raft entry per region touched). A conflict raises after the
        regions before it were prewritten: the caller rolls back what it prewrote.

        ``async_commit``: the locks carry min_commit_ts = max(max_ts, start_ts) + 1 and the
        primary's lock (when ``primary`` is among ``mutations``) lists ``secondaries``, every
        other key of the transaction. Returns the greatest min_commit_ts of the locks (0 for
        an ordinary prewrite): the client commits at the greatest over all its prewrites.
        ``pessimistic_keys``: keys this transaction holds pessimistic locks on (no write-conflict
        check); ``min_commit_ts``: a lower bound the client asks for (kvproto's PrewriteRequest)."""
        with self.mu:
            try:
                min_commit_ts = max(self.max_ts + 1, start_ts + 1, min_commit_ts) if async_commit else 0
                result = min_commit_ts
                secondary_keys = tuple(secondaries) if async_commit else ()
                by_region: dict[int, list[Mutation]] = {}
                for m in mutations:
                    by_region.setdefault(self.regions.locate(m.key).id, []).append(m)
                for region_id, muts in by_region.items():
                    fresh = []
                    for m in muts:
                        if self._check_prewrite(m, start_ts, m.key not in pessimistic_keys):
                            fresh.append(m)
                        elif m.key in self._locks:  # our own lock, from a retried prewrite
                            result = max(result, self._locks[m.key].min_commit_ts)
                    if not fresh:
                        continue
                    rows = []
                    for m in fresh:
                        lock = LockRecord(
                            m.key, primary, start_ts, ttl_ms, m.op, m.value, len(mutations),
                            use_async_commit=async_commit, min_commit_ts=min_commit_ts,
                            secondaries=secondary_keys if m.key == primary else (),
                        )
                        self._add_lock(lock)
                        rows.append(lock.prewrite_row())
                    self._emit_rows(self.regions.get(region_id), rows)
                return result
            finally:
                self._flush_events()

    def commit(self, keys: list[bytes], start_ts: int, commit_ts: int) -> None:
        """Commit the transaction's locks on ``keys`` (one raft entry per region)."""
        with self.mu:
            try:
                for region_id, ks in self.regions.group(keys).items():
                    done_keys, ops = [], []
                    for key in ks:
                        lock = self._locks.get(key)
                        if lock is None or lock.start_ts != start_ts:
                            v = self._find_version(key, start_ts)
                            if v is not None and v.write_type != "R":
                                continue  # committed before (idempotent)
                            raise TxnRolledBackError(key, start_ts)
                        if commit_ts < lock.min_commit_ts:
                            raise CommitTsExpiredError(key, start_ts, commit_ts, lock.min_commit_ts)
                        self._remove_lock(lock, keep_value=True)
                        self._commit_record(key, lock.op, lock.value, start_ts, commit_ts)
                        done_keys.append(key)
                        ops.append(lock.op)
                    if done_keys:
                        region = self.regions.get(region_id)
                        self._emit_columns(region, types=binlog_pb2.Row.COMMIT, ops=ops, keys=done_keys,
                                        start_ts=start_ts, commit_ts=commit_ts)
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
            rolled: list[bytes] = []
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
                self._put_rollback(key, start_ts)
                rolled.append(key)
            if rolled:
                self._emit_columns(self.regions.get(region_id), types=binlog_pb2.Row.ROLLBACK, ops=binlog_pb2.PUT,
                                   keys=rolled, start_ts=start_ts)
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
                # above max_ts too, as TiKV's 1PC: never at or below a ts already read
                commit_ts = max(self.tso.get_ts(), self.max_ts + 1)
                for m in mutations:
                    self._commit_record(m.key, m.op, m.value, start_ts, commit_ts)
                region = self.regions.get(regions.pop())
                self._emit_columns(region, types=binlog_pb2.Row.COMMITTED, ops=[m.op for m in mutations],
                                keys=[m.key for m in mutations], start_ts=start_ts, commit_ts=commit_ts,
                                values=[m.value for m in mutations])
                self._maybe_split(region)
                return commit_ts
            finally:
                self._flush_events()

    # ---------------------------------------------------------------- bulk inserts

    def _regions_of_sorted(self, keys: list[bytes]) -> list[tuple[Region, int, int]]:
        """(region, i, j): keys[i:j] lie in region; ``keys`` sorted ascending."""
        out = []
        i, n = 0, len(keys)
        while i < n:
            region = self.regions.locate(keys[i])
            j = bisect.bisect_left(keys, region.end, i) if region.end else n
            out.append((region, i, j))
            i = j
        return out

    def _any_key_between(self, first: bytes, last: bytes) -> bool:
        """Whether any key in [first, last] has a record (a lock or a write)."""
        return bisect.bisect_left(self._keys, first) != bisect.bisect_right(self._keys, last)

    def _check_inserts(self, keys: list[bytes], start_ts: int) -> list[bool] | None:
        """TiKV's checks of Insert mutations (the key must not exist): a lock of another
        transaction, a commit after start_ts, or a value visible at start_ts raise. Returns
        None when no key has any record (all fresh: the fast path, two bisections of the
        sorted key list), else per key whether it has none. ``keys`` sorted ascending."""
        if not self._any_key_between(keys[0], keys[-1]):
            return None
        fresh = []
        for key in keys:
            lock = self._locks.get(key)
            if lock is not None and lock.start_ts != start_ts:
                raise KeyLockedError(key, lock.start_ts, lock.primary, lock.ttl_ms)
            versions = self._writes.get(key)
            if versions:
                if versions[0].commit_ts > start_ts:
                    raise WriteConflictError(key, start_ts, versions[0].commit_ts)
                if self._get_locked(key, start_ts, start_ts) is not None:
                    raise AlreadyExistError(key, start_ts)
            fresh.append(lock is None and not versions)
        return fresh

    def find_existing(self, keys: list[bytes], ts: int) -> int | None:
        """Index of the first key with a value visible at ``ts`` (locks aside), or None."""
        with self.mu:
            if not keys or not self._any_key_between(min(keys), max(keys)):
                return None
            for i, key in enumerate(keys):
                for v in self._writes.get(key, ()):
                    if v.commit_ts > ts or v.write_type in ("L", "R"):
                        continue
                    if v.write_type == "P":
                        return i
                    break
            return None

    def one_pc_insert(self, keys: pa.Array, values: pa.Array, start_ts: int) -> int:
        """Insert rows whose keys must not exist yet in one 1PC raft entry (TiKV's 1PC of
        Insert mutations); returns the commit_ts. ``keys`` are sorted ascending and unique.
        Keys spanning regions raise RegionError (use ``prewrite_insert`` and ``commit``);
        AlreadyExistError, KeyLockedError and WriteConflictError as their names say. The
        per-row records are built before the lock is taken; under it, the checks, the maps
        and one event."""
        key_list: list[bytes] = keys.to_pylist()
        value_list: list[bytes] = values.to_pylist()
        writes: list[bytes] = put_write_records(values, start_ts).to_pylist()
        long_rows = [int(i) for i in (lengths_of(values) > SHORT_VALUE_MAX_LEN).nonzero()[0]]
        with self.mu:
            try:
                spans = self._regions_of_sorted(key_list)
                if len(spans) != 1:
                    raise RegionError(
                        f"1PC needs all keys in one region, these span regions {[r.id for r, _, _ in spans]}; use 2PC")
                region = spans[0][0]
                fresh = self._check_inserts(key_list, start_ts)
                commit_ts = self.tso.get_ts()
                self._put_versions(key_list, writes, fresh, start_ts, commit_ts)
                for i in long_rows:
                    self._set_default(key_list[i], start_ts, value_list[i])
                self._emit_columns(region, types=binlog_pb2.Row.COMMITTED, ops=PUT, keys=keys, start_ts=start_ts,
                                commit_ts=commit_ts, values=values)
                self._maybe_split(region)
                return commit_ts
            finally:
                self._flush_events()

    def _put_versions(self, keys: list[bytes], writes: list[bytes], fresh: list[bool] | None,
                      start_ts: int, commit_ts: int) -> None:
        """Put write records of one transaction: keys without records in one go (one list
        per key, a slice into the sorted key list), others one by one."""
        # Built by C loops (no Python frame per row): tuple.__new__ makes the Versions,
        # list() of 1-tuples the one-version lists.
        versions = list(map(partial(tuple.__new__, Version),
                            zip(repeat(commit_ts), repeat("P"), repeat(start_ts), writes)))
        if fresh is None:
            self._writes.update(zip(keys, map(list, zip(versions))))
            # every (key, commit_ts) is new (commit_ts is fresh from the TSO): one log entry
            self._new_writes.append((keys, commit_ts, writes))
            self._touch_new_keys(keys)
            return
        new_keys = []
        for key, version, is_new in zip(keys, versions, fresh):
            if is_new:
                self._writes[key] = [version]
                self._changed_writes[(key, commit_ts)] = version.write
                new_keys.append(key)
            else:
                self._add_version(key, version)
        self._touch_new_keys(new_keys)

    def prewrite_insert(self, keys: pa.Array, values: pa.Array, primary: bytes, start_ts: int, ttl_ms: int) -> None:
        """Phase one of a 2PC insert: lock every key (each must not exist), one PREWRITE
        entry per region. A conflict raises after the regions before it were prewritten:
        the caller rolls back what it prewrote."""
        key_list: list[bytes] = keys.to_pylist()
        value_list: list[bytes] = values.to_pylist()
        with self.mu:
            try:
                for region, i, j in self._regions_of_sorted(key_list):
                    ks = key_list[i:j]
                    fresh = self._check_inserts(ks, start_ts)
                    todo = range(i, j) if fresh is None else [i + k for k, f in enumerate(fresh) if f or
                                                                key_list[i + k] not in self._locks]
                    for r in todo:
                        self._add_lock(LockRecord(key_list[r], primary, start_ts, ttl_ms, PUT, value_list[r], len(key_list)))
                    if fresh is None:
                        cols_keys, cols_values = keys.slice(i, j - i), values.slice(i, j - i)
                    else:
                        cols_keys = [key_list[r] for r in todo]
                        cols_values = [value_list[r] for r in todo]
                    if len(cols_keys):
                        self._emit_columns(region, types=binlog_pb2.Row.PREWRITE, ops=PUT, keys=cols_keys,
                                        start_ts=start_ts, values=cols_values, primaries=[primary] * len(cols_keys),
                                        ttl=ttl_ms, txn_size=len(key_list))
            finally:
                self._flush_events()

    def check_txn_status(
        self, primary: bytes, lock_ts: int, caller_start_ts: int, current_ts: int,
        rollback_if_not_exist: bool = True, force_sync_commit: bool = False,
    ) -> TxnStatus:
        """TiKV's CheckTxnStatus on the primary key. A lock whose TTL ran out by
        ``current_ts`` (physical time of lock_ts + ttl) is rolled back; a transaction that left
        no trace is rolled back too (so its prewrite can never land) unless told not to.
        An async-commit primary is never rolled back here (its secondaries decide, see
        ``check_secondary_locks``) unless ``force_sync_commit`` says it fell back to 2PC."""
        with self.mu:
            try:
                lock = self._locks.get(primary)
                if lock is not None and lock.start_ts == lock_ts:
                    if lock.use_async_commit and not force_sync_commit:
                        return TxnStatus.locked(lock.ttl_ms, LockInfo.of(lock))
                    if physical_ms(lock_ts) + lock.ttl_ms < physical_ms(current_ts):
                        self._rollback_locked([primary], lock_ts)
                        return TxnStatus.rolled_back(TxnAction.TTL_EXPIRE_ROLLBACK)
                    return TxnStatus.locked(lock.ttl_ms, LockInfo.of(lock))
                v = self._find_version(primary, lock_ts)
                if v is not None:
                    if v.write_type == "R":
                        return TxnStatus.rolled_back()
                    return TxnStatus.committed(v.commit_ts)
                if not rollback_if_not_exist:
                    raise TxnNotFoundError(primary, lock_ts)
                self._rollback_locked([primary], lock_ts)
                return TxnStatus.rolled_back(TxnAction.LOCK_NOT_EXIST_ROLLBACK)
            finally:
                self._flush_events()

    def check_secondary_locks(self, keys: Iterable[bytes], start_ts: int) -> SecondaryLocks:
        """TiKV's CheckSecondaryLocks: each key's lock of the transaction started at
        ``start_ts``; stops at the first key without one, which is committed (its commit_ts) or
        rolled back — when it has no record at all a rollback record is written, so the
        transaction's prewrite of it can never land and its status cannot change any more."""
        with self.mu:
            try:
                self._raise_max_ts(start_ts)  # as TiKV: no commit may overwrite the rollback below
                found: list[LockRecord] = []
                for key in keys:
                    lock = self._locks.get(key)
                    if lock is not None and lock.start_ts == start_ts:
                        found.append(lock)
                        continue
                    v = self._find_version(key, start_ts)
                    if v is None:
                        self._rollback_locked([key], start_ts)
                        return SecondaryLocks((), 0)
                    return SecondaryLocks((), 0 if v.write_type == "R" else v.commit_ts)
                return SecondaryLocks(tuple(LockInfo.of(lk) for lk in found), 0)
            finally:
                self._flush_events()

    def heartbeat(self, primary: bytes, start_ts: int, advise_ttl_ms: int) -> int:
        """TiKV's TxnHeartBeat: the primary lock's TTL rises to ``advise_ttl_ms`` (never falls);
        returns the TTL now. A lock's TTL is not in the change feed (TiKV's CDC leaves it out
        too), so nothing is emitted. TxnNotFoundError when the lock is gone."""
        with self.mu:
            lock = self._locks.get(primary)
            if lock is None or lock.start_ts != start_ts:
                raise TxnNotFoundError(primary, start_ts)
            if advise_ttl_ms > lock.ttl_ms:
                lock = replace(lock, ttl_ms=advise_ttl_ms)
                self._locks[primary] = lock
                self._changed_locks[primary] = lock
            return lock.ttl_ms

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
        # a lock whose min_commit_ts is above ts commits after ts if at all: TiKV reads past it
        if (lock is not None and lock.start_ts <= ts and lock.op != LOCK and lock.start_ts != own_start_ts
                and lock.min_commit_ts <= ts):
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
            self._raise_max_ts(ts)
            return self._get_locked(key, ts, own_start_ts)

    def scan(self, start: bytes, end: bytes, ts: int, own_start_ts: int = 0) -> list[tuple[bytes, bytes]]:
        """All live (key, value) in [start, end) at ``ts``; end b"" = unbounded."""
        with self.mu:
            self._check_read_ts(ts)
            self._raise_max_ts(ts)
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

    # Reads of the raw records for the change-data feed's scan; the caller holds ``mu``.

    def keys_in(self, start: bytes, end: bytes) -> list[bytes]:
        """Every key with a record in [start, end) (raw keys; end b"" = unbounded), in order."""
        lo = bisect.bisect_left(self._keys, start)
        hi = bisect.bisect_left(self._keys, end) if end else len(self._keys)
        return self._keys[lo:hi]

    def versions_of(self, key: bytes) -> list[Version]:
        """The key's write records, newest first."""
        return self._writes.get(key, [])

    def value_of(self, key: bytes, version: Version) -> bytes:
        """The value a PUT write record stands for (its short value or the default CF's)."""
        return self._value_of(key, version)

    def lock_of(self, key: bytes) -> LockRecord | None:
        return self._locks.get(key)

    def locks(self, start: bytes = b"", end: bytes = b"") -> list[LockRecord]:
        with self.mu:
            return sorted(
                (lk for k, lk in self._locks.items() if k >= start and (not end or k < end)),
                key=lambda lk: lk.key,
            )

    def read_index(self, region_id: int, read_ts: int = 0) -> int:
        """The region's last raft index. ``read_ts``: the ts the caller will read at; max_ts
        rises to it, so nothing prewritten after this call commits at or below it (TiKV's
        read index with a start_ts). Taken under ``mu``, it follows any prewrite in flight."""
        with self.mu:
            index = self.regions.get(region_id).index
            self._raise_max_ts(read_ts)
            return index

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
        """Split a region that grew past the configured size at its middle key, and the
        halves again while they are too big (a bulk insert can grow a region many times over)."""
        if not (self.region_split_keys or self.region_split_bytes):
            return
        todo = [region]
        while todo:
            r = todo.pop()
            nkeys, nbytes = self._region_size(r)
            too_big = (self.region_split_keys and nkeys > self.region_split_keys) or (
                self.region_split_bytes and nbytes > self.region_split_bytes
            )
            if too_big and nkeys >= 2:
                lo = bisect.bisect_left(self._keys, r.start)
                todo.extend(self._split_locked(r.id, self._keys[lo + nkeys // 2]))

    # ---------------------------------------------------------------- resolved ts, GC

    def advance_resolved_ts(self) -> list[binlog_pb2.Event]:
        """Advance each region's resolved ts to min(start_ts of its open locks) - 1, or a fresh
        TSO when it has none, and emit what moved as TiKV's CDC does: one ``ResolvedTs``
        event per distinct ts listing its regions (an idle store: one event a tick, whatever
        its region count). A value not above the region's last one is not emitted
        (resolved ts only moves forward)."""
        with self.mu:
            try:
                now = self.tso.get_ts()
                # as TiKV's resolved-ts worker: max_ts rises to the ts it promises, so no async
                # commit lands at or below a resolved ts emitted now
                self._raise_max_ts(now)
                min_lock: dict[int, int] = {}
                for key, lock in self._locks.items():
                    rid = self.regions.locate(key).id
                    min_lock[rid] = min(min_lock.get(rid, lock.start_ts), lock.start_ts)
                moved: dict[int, list[int]] = {}
                for region in self.regions.all():
                    ts = min_lock[region.id] - 1 if region.id in min_lock else now
                    if ts > region.resolved_ts:
                        region.resolved_ts = ts
                        moved.setdefault(ts, []).append(region.id)
                emitted = [binlog_pb2.Event(resolved=binlog_pb2.ResolvedTs(regions=ids, ts=ts))
                           for ts, ids in sorted(moved.items())]
                self._pending.extend(emitted)
                return emitted
            finally:
                self._flush_events()

    def txn_locks_at_or_below(self, ts: int) -> list[LockRecord]:
        """One lock per transaction with start_ts <= ``ts`` (what TiDB's GC worker resolves
        before it collects at safe point ``ts``); primaries preferred."""
        with self.mu:
            by_txn: dict[int, LockRecord] = {}
            for lk in self._locks.values():
                if lk.start_ts <= ts and (lk.start_ts not in by_txn or lk.key == lk.primary):
                    by_txn[lk.start_ts] = lk
            return list(by_txn.values())

    def prewrite_batches(self, mutations: list[Mutation], max_keys: int) -> list[list[Mutation]]:
        """``mutations`` as a client sends its prewrite requests: grouped by region, at most
        ``max_keys`` each, the group of the first mutation (the primary) first."""
        with self.mu:
            by_region: dict[int, list[Mutation]] = {}
            for m in mutations:
                by_region.setdefault(self.regions.locate(m.key).id, []).append(m)
        return [group[i:i + max_keys] for group in by_region.values() for i in range(0, len(group), max_keys)]

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

    def refuse_commits_at_or_below(self, ts: int) -> None:
        """Raise max_ts to ``ts``: no async-commit or 1PC transaction gets a commit ts at or
        below it from here on (GC fences its safe point before it decides the locks there)."""
        with self.mu:
            self._raise_max_ts(ts)

    def keys_with_versions(self) -> list[bytes]:
        """Every key with a write record now (what a GC run walks, a slice at a time)."""
        with self.mu:
            return list(self._writes)

    def collect_garbage(self, safe_point: int, keys: Iterable[bytes] | None = None) -> int:
        """Advance the GC safe point and drop versions no read at or above it can see: keep
        every version newer than it and the newest Put at or below it, of ``keys`` (default:
        every key). Returns versions dropped. GC is local (TiKV does not replicate it through
        the change feed). A key's versions are judged alone, so a run may collect its keys a
        slice per call and let other work take the lock in between (``gc_worker.py``)."""
        with self.mu:
            sp = self.gc.advance(safe_point)
            self._raise_max_ts(sp)  # nothing commits at or below the safe point any more
            dropped = 0
            for key in list(self._writes) if keys is None else keys:
                versions = self._writes.get(key)
                if not versions:
                    continue  # dropped since the caller listed it
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
                        self._changed_writes[(key, v.commit_ts)] = None
                        self._drop_default(key, v.start_ts)
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
            if kind == "resolved":
                live = {r.id: r for r in self.regions.all()}
                for rid in event.resolved.regions:
                    if rid in live:  # (a region merged away since is not)
                        live[rid].resolved_ts = max(live[rid].resolved_ts, event.resolved.ts)
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
            self._add_lock(LockRecord.of_prewrite_row(row))
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
                self._put_rollback(key, row.start_ts)
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
                self._changed_writes[(key, v.commit_ts)] = None
                self._drop_default(key, v.start_ts)
        del self._keys[lo:hi]
        for w in event.snapshot.writes:
            parsed = Write.parse(w.write)
            if w.value:
                self._set_default(w.key, parsed.start_ts, w.value)
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
            self.take_changes()  # what was loaded is saved already

    def take_changes(self) -> StoreChanges:
        """The records changed since the last call (what a checkpoint must save), and start
        recording afresh. Constant time: the maps are handed over, not copied."""
        with self.mu:
            changes = StoreChanges(self._changed_writes, self._changed_defaults, self._changed_locks, self._new_writes)
            self._changed_writes, self._changed_defaults, self._changed_locks, self._new_writes = {}, {}, {}, []
            return changes

    def restore_changes(self, changes: StoreChanges) -> None:
        """Give back changes a checkpoint took but could not save: the next one saves them
        (a record changed again since keeps its newer state)."""
        with self.mu:
            changes.writes.update(self._changed_writes)
            changes.defaults.update(self._changed_defaults)
            changes.locks.update(self._changed_locks)
            self._changed_writes, self._changed_defaults, self._changed_locks = (
                changes.writes, changes.defaults, changes.locks)
            self._new_writes = changes.new_writes + self._new_writes
