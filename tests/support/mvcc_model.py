"""A reference MVCC model of the store, in plain Python, and a seeded generator of binlog streams.

The model is the specification the store is tested against (tests/unit/test_store_model.py,
tests/integration/test_store_crash.py): it interprets the very same ``binlog_pb2.Event`` lists the store
is given, with dicts and lists only, so that it is obviously right rather than fast.

* Percolator region caches: PREWRITE puts a lock keyed by (key, start_ts) in its region; COMMIT
  turns it into a committed version (a LOCK op commits nothing); ROLLBACK drops it; COMMITTED
  (1PC, snapshot rows) is a version straight away.
* Committed versions per (table_id, handle): a list of (commit_ts, value or None for a delete).
* Snapshot read at ts: per handle the newest version with commit_ts <= ts, dropped if a delete.
* GC at a safe point: keep every version newer than it, plus the newest at or below it unless
  that one is a delete.
* Regions: split and merge change only the map (open locks follow their keys); a removed region
  has its range deleted; a region snapshot replaces its range (versions and locks).
* Events at or below a region's applied index are skipped, as the store must.

Row values are not decoded here: the generator remembers which values it encoded into which
bytes (``EventStream.values``), so a codec bug cannot hide behind the model agreeing with it.
Keys and region boundaries are decoded by the few lines below (tablecodec is simple enough).
"""
from __future__ import annotations

import bisect
import random
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from pyspark_theflash.binlog.rows import columnar_entries, iter_rows
from pyspark_theflash.proto import binlog_pb2

Values = dict[str, Any]
Row = binlog_pb2.Row

DB = "test"
TABLE_ID = 100
TABLE_NAME = "items"
# The first ts of a generated stream: a realistic TSO (physical ms << 18).
BASE_TS = 1_700_000_000_000 << 18
# A new region made by a split starts its raft log here, as TiKV's RAFT_INIT_LOG_INDEX.
RAFT_INIT_LOG_INDEX = 5


# ---------------------------------------------------------------------------------------------
# The table the generated streams write: a few typed columns, an int handle (no clustered PK),
# so every row has a hidden _tidb_rowid distinct from its columns.
# ---------------------------------------------------------------------------------------------

def _col(cid: int, name: str, tp: int, flag: int, flen: int, decimal: int, charset: str) -> dict[str, Any]:
    return {
        "id": cid,
        "name": {"O": name, "L": name},
        "offset": cid - 1,
        "origin_default": None,
        "default": None,
        "state": 5,
        "type": {
            "Tp": tp, "Flag": flag, "Flen": flen, "Decimal": decimal, "Charset": charset,
            "Collate": "binary" if charset == "binary" else "utf8mb4_bin", "Elems": None,
        },
    }


def table_info(table_id: int = TABLE_ID, name: str = TABLE_NAME) -> dict[str, Any]:
    """TiDB table info JSON of the model's table: BIGINT NOT NULL, INT, DOUBLE, VARCHAR(32), DECIMAL(10,2)."""
    return {
        "id": table_id,
        "name": {"O": name, "L": name},
        "charset": "utf8mb4",
        "collate": "utf8mb4_bin",
        "cols": [
            _col(1, "k", 8, 1, 20, 0, "binary"),          # BIGINT NOT NULL
            _col(2, "i", 3, 0, 11, 0, "binary"),          # INT
            _col(3, "f", 5, 0, 22, -1, "binary"),         # DOUBLE
            _col(4, "s", 15, 0, 32, 0, "utf8mb4"),        # VARCHAR(32)
            _col(5, "d", 246, 0, 10, 2, "binary"),        # DECIMAL(10,2)
        ],
        "pk_is_handle": False,
        "is_common_handle": False,
        "schema_version": 1,
        "update_timestamp": 1,
        "state": 5,
    }


COLUMNS = ("k", "i", "f", "s", "d")


def random_values(rng: random.Random, handle: int) -> Values:
    """One row of the model table; NULLs in the nullable columns now and then."""
    return {
        "k": handle * 1000 + rng.randrange(1000),
        "i": None if rng.random() < 0.1 else rng.randrange(-(2**31), 2**31),
        "f": None if rng.random() < 0.1 else rng.randrange(-10**6, 10**6) / 8.0,
        "s": None if rng.random() < 0.1 else "".join(rng.choice("abcdefxyzé ") for _ in range(rng.randrange(0, 12))),
        "d": None if rng.random() < 0.1 else Decimal(rng.randrange(-10**9, 10**9)).scaleb(-2),
    }


# ---------------------------------------------------------------------------------------------
# tablecodec: raw record keys and PD's encoded region boundaries.
# ---------------------------------------------------------------------------------------------

_SIGN = 1 << 63


def record_key(table_id: int, handle: int) -> bytes:
    """``t{table_id}_r{handle}`` with memcomparable int64s (sign bit flipped, big-endian)."""
    return b"t" + struct.pack(">Q", (table_id + _SIGN) & 0xFFFF_FFFF_FFFF_FFFF) + b"_r" + struct.pack(
        ">Q", (handle + _SIGN) & 0xFFFF_FFFF_FFFF_FFFF
    )


def parse_record_key(key: bytes) -> tuple[int, int]:
    if len(key) != 19 or key[:1] != b"t" or key[9:11] != b"_r":
        raise ValueError(f"not an int-handle record key: {key.hex()}")
    table_id = struct.unpack(">Q", key[1:9])[0] - _SIGN
    handle = struct.unpack(">Q", key[11:19])[0] - _SIGN
    return table_id, handle


def region_key(raw: bytes) -> bytes:
    """PD's form of a boundary: memcomparable bytes (8-byte groups, each + 0xFF - padding)."""
    out = bytearray()
    for i in range(0, len(raw) + 1, 8):
        group = raw[i : i + 8]
        pad = 8 - len(group)
        out += group + b"\x00" * pad + bytes([0xFF - pad])
    return bytes(out)


def parse_region_key(encoded: bytes) -> bytes:
    if not encoded:
        return b""
    raw = bytearray()
    for i in range(0, len(encoded), 9):
        group, marker = encoded[i : i + 8], encoded[i + 8]
        pad = 0xFF - marker
        raw += group[: 8 - pad]
        if pad:
            break
    return bytes(raw)


def handle_region_key(table_id: int, handle: int) -> bytes:
    return region_key(record_key(table_id, handle))


def _in_range(raw_key: bytes, start_raw: bytes, end_raw: bytes) -> bool:
    return raw_key >= start_raw and (not end_raw or raw_key < end_raw)


# ---------------------------------------------------------------------------------------------
# The model.
# ---------------------------------------------------------------------------------------------

@dataclass
class RegionModel:
    id: int
    start: bytes  # raw key, inclusive; b"" = -inf
    end: bytes  # raw key, exclusive; b"" = +inf
    epoch_version: int
    applied_index: int
    resolved_ts: int = 0
    # (raw key, start_ts) -> the PREWRITE row (op, value, primary)
    locks: dict[tuple[bytes, int], Row] = field(default_factory=dict)

    def contains(self, raw_key: bytes) -> bool:
        return _in_range(raw_key, self.start, self.end)


class ModelError(AssertionError):
    """The event stream broke a rule the store must also enforce (a generator bug if raised)."""


class MvccModel:
    """Committed versions, region caches and the region map, fed the same events as the store."""

    def __init__(self, values: Mapping[bytes, Values]):
        # value bytes -> the column values the generator encoded into them
        self.values = values
        self.regions: dict[int, RegionModel] = {}
        # (table_id, handle) -> sorted [(commit_ts, value bytes or None for a delete)]
        self.versions: dict[tuple[int, int], list[tuple[int, bytes | None]]] = {}

    # -- applying events ----------------------------------------------------------------------

    def apply(self, events: Iterable[binlog_pb2.Event]) -> None:
        for event in events:
            self.apply_event(event)

    def apply_event(self, event: binlog_pb2.Event) -> None:
        kind = event.WhichOneof("payload")
        region = self.regions.get(event.region_id)
        if kind == "snapshot":
            if region is not None and event.index <= region.applied_index:
                return
            self._apply_snapshot(event)
            return
        if region is None:
            raise ModelError(f"event {kind} for unknown region {event.region_id} at index {event.index}")
        if kind == "resolved_ts":
            # no log entry of its own: it carries the region's last index, already applied
            region.resolved_ts = max(region.resolved_ts, event.resolved_ts)
            return
        if event.index <= region.applied_index:
            return  # replayed: already applied
        region.applied_index = event.index
        if kind == "entries":
            for row in iter_rows(event.entries):
                self._apply_row(region, row)
        elif kind == "admin":
            self._apply_admin(region, event)

    def _add_version(self, key: bytes, commit_ts: int, op: int, value: bytes) -> None:
        if op == binlog_pb2.LOCK:
            return  # SELECT ... FOR UPDATE commits no data
        versions = self.versions.setdefault(parse_record_key(key), [])
        entry = (commit_ts, None if op == binlog_pb2.DELETE else bytes(value))
        if any(ts == commit_ts for ts, _ in versions):
            raise ModelError(f"two versions of key {key.hex()} at commit_ts {commit_ts}")
        bisect.insort(versions, entry, key=lambda v: v[0])

    def _apply_row(self, region: RegionModel, row: Row) -> None:
        key = bytes(row.key)
        if not region.contains(key):
            raise ModelError(f"key {key.hex()} outside region {region.id}")
        if row.type == Row.PREWRITE:
            region.locks[(key, row.start_ts)] = row
        elif row.type == Row.COMMIT:
            lock = region.locks.pop((key, row.start_ts), None)
            if lock is None:
                raise ModelError(f"COMMIT without PREWRITE: region {region.id} key {key.hex()} start_ts {row.start_ts}")
            self._add_version(key, row.commit_ts, lock.op, lock.value)
        elif row.type == Row.ROLLBACK:
            region.locks.pop((key, row.start_ts), None)
        elif row.type == Row.COMMITTED:
            self._add_version(key, row.commit_ts, row.op, row.value)

    def _apply_admin(self, region: RegionModel, event: binlog_pb2.Event) -> None:
        cmd = event.admin.WhichOneof("cmd")
        if cmd == "split":
            moved = region.locks
            del self.regions[region.id]
            for r in event.admin.split.regions:
                new = RegionModel(
                    r.id, parse_region_key(r.start_key), parse_region_key(r.end_key), r.epoch.version,
                    event.index if r.id == region.id else RAFT_INIT_LOG_INDEX,
                )
                new.locks = {k: v for k, v in moved.items() if new.contains(k[0])}
                self.regions[r.id] = new
        elif cmd == "merge":
            source = self.regions.pop(event.admin.merge.source.id)
            target = event.admin.merge.target
            region.start, region.end = parse_region_key(target.start_key), parse_region_key(target.end_key)
            region.epoch_version = target.epoch.version
            region.locks.update(source.locks)
        elif cmd == "removed":
            del self.regions[region.id]
            self._delete_range(region.start, region.end)

    def _delete_range(self, start: bytes, end: bytes) -> None:
        for table_handle in [th for th in self.versions if _in_range(record_key(*th), start, end)]:
            del self.versions[table_handle]
        for other in self.regions.values():
            for lock_key in [k for k in other.locks if _in_range(k[0], start, end)]:
                del other.locks[lock_key]

    def _apply_snapshot(self, event: binlog_pb2.Event) -> None:
        from pyspark_theflash.codec import Lock, Write

        snap = event.snapshot
        start, end = parse_region_key(snap.region.start_key), parse_region_key(snap.region.end_key)
        self._delete_range(start, end)
        self.regions.pop(event.region_id, None)
        # The snapshot is the truth for its range. A region this replica still lists there missed
        # a split or merge while behind: its shape is stale, so it leaves the map (its rows outside
        # the snapshot stay until the snapshots of the regions now holding them replace them).
        for other in list(self.regions.values()):
            if (not end or other.start < end) and (not other.end or start < other.end):
                del self.regions[other.id]
        region = RegionModel(event.region_id, start, end, snap.region.epoch.version, event.index)
        self.regions[region.id] = region
        for w in snap.writes:
            write = Write.parse(bytes(w.write))
            value = bytes(w.value) or (write.short_value or b"")
            op = {"P": binlog_pb2.PUT, "D": binlog_pb2.DELETE}.get(_type_char(write.write_type))
            if op is not None:
                self._add_version(bytes(w.key), w.commit_ts, op, value)
        for sl in snap.locks:
            lock = Lock.parse(bytes(sl.lock))
            op = {"P": binlog_pb2.PUT, "D": binlog_pb2.DELETE, "L": binlog_pb2.LOCK}[_type_char(lock.lock_type)]
            value = bytes(sl.value) or (lock.short_value or b"")
            region.locks[(bytes(sl.key), lock.start_ts)] = Row(
                type=Row.PREWRITE, op=op, start_ts=lock.start_ts, key=bytes(sl.key), value=value,
                primary=lock.primary, ttl=lock.ttl,
            )

    # -- reading ----------------------------------------------------------------------------

    def read(self, ts: int, table_id: int = TABLE_ID, lo: int | None = None, hi: int | None = None) -> list[Values]:
        """Snapshot read at ts: rows sorted by handle, each with its ``_tidb_rowid``."""
        rows = []
        for (tid, handle), versions in self.versions.items():
            if tid != table_id or (lo is not None and handle < lo) or (hi is not None and handle >= hi):
                continue
            visible = [v for v in versions if v[0] <= ts]
            if visible and visible[-1][1] is not None:
                rows.append({**self.values[visible[-1][1]], "_tidb_rowid": handle})
        rows.sort(key=lambda r: r["_tidb_rowid"])
        return rows

    def open_locks(self) -> list[tuple[int, bytes, int]]:
        return sorted((r.id, k, ts) for r in self.regions.values() for (k, ts) in r.locks)

    def gc(self, safe_point: int) -> None:
        """Keep versions newer than the safe point, plus the newest at or below it unless a delete."""
        for table_handle in list(self.versions):
            versions = self.versions[table_handle]
            newer = [v for v in versions if v[0] > safe_point]
            older = [v for v in versions if v[0] <= safe_point]
            kept = ([older[-1]] if older and older[-1][1] is not None else []) + newer
            if kept:
                self.versions[table_handle] = kept
            else:
                del self.versions[table_handle]

    def version_count(self) -> int:
        return sum(len(v) for v in self.versions.values())


def _type_char(t: Any) -> str:
    """Lock/Write types as one character, whether the codec gives str, bytes or int."""
    if isinstance(t, (bytes, bytearray)):
        return t.decode()
    if isinstance(t, int):
        return chr(t)
    return str(getattr(t, "value", t))[:1]


def rows_from_batches(batches: Iterable[Any]) -> list[Values]:
    """A store scan's RecordBatches as model rows, sorted by ``_tidb_rowid``."""
    rows: list[Values] = []
    for batch in batches:
        rows.extend(batch.to_pylist())
    rows.sort(key=lambda r: r["_tidb_rowid"])
    return rows


# ---------------------------------------------------------------------------------------------
# The generator: a tiny Percolator upstream that writes what a TiKV CDC feed would.
# ---------------------------------------------------------------------------------------------

@dataclass
class _Txn:
    start_ts: int
    primary: bytes
    mutations: dict[bytes, tuple[int, bytes]]  # raw key -> (op, value)


@dataclass
class _UpRegion:
    id: int
    start: int | None  # handle, inclusive; None = -inf
    end: int | None  # handle, exclusive; None = +inf
    version: int
    index: int
    lagging: bool = False  # the replica misses its events until a snapshot catches it up
    removed: bool = False  # the replica dropped it; a snapshot re-adds it

    def contains(self, handle: int) -> bool:
        return (self.start is None or handle >= self.start) and (self.end is None or handle < self.end)

    def proto(self) -> binlog_pb2.Region:
        return binlog_pb2.Region(
            id=self.id,
            start_key=b"" if self.start is None else handle_region_key(TABLE_ID, self.start),
            end_key=b"" if self.end is None else handle_region_key(TABLE_ID, self.end),
            epoch=binlog_pb2.RegionEpoch(version=self.version, conf_version=1),
        )


@dataclass
class EventStream:
    events: list[binlog_pb2.Event]
    values: dict[bytes, Values]  # encoded row value -> its column values
    table: dict[str, Any]  # table info JSON
    first_ts: int
    last_ts: int
    # ts at which every generated commit is at or below (for "read the latest")
    commit_ts: list[int]


@dataclass
class StreamSpec:
    """What a generated stream contains; the defaults exercise everything."""

    keys: int = 40
    steps: int = 200
    max_txn_keys: int = 4
    max_regions: int = 6
    split_weight: float = 0.05
    merge_weight: float = 0.04
    snapshot_weight: float = 0.02  # a lagging or removed region is caught up by a snapshot
    lag_weight: float = 0.015  # a region starts lagging: its events are withheld from the replica
    remove_weight: float = 0.01  # a region is removed from the replica (range deleted)
    one_pc_weight: float = 0.2
    rollback_ratio: float = 0.15
    delete_ratio: float = 0.2
    lock_ratio: float = 0.05
    finish: bool = True  # commit or roll back every open transaction, catch up every region
    admin_while_lagging: bool = True  # lagging regions split and merge too (their replica misses it)
    columnar_ratio: float = 0.5  # Entries events in the columnar form (RowBatch); the rest as Row messages


class StreamGenerator:
    def __init__(self, seed: int, spec: StreamSpec | None = None):
        from pyspark_theflash import codec
        from pyspark_theflash.codec.row_v2 import encode_row_for_table  # noqa: F401 (fail early)

        self.codec = codec
        self.rng = random.Random(seed)
        self.form_rng = random.Random(seed ^ 0x5EED)  # apart: the same seed gives the same rows in any form
        self.spec = spec or StreamSpec()
        self.table = table_info()
        self._table_info: Any = None  # schema.TableInfo of self.table, made on first use
        self.ts = BASE_TS
        self.events: list[binlog_pb2.Event] = []
        self.values: dict[bytes, Values] = {}
        self.regions: list[_UpRegion] = []
        self.next_region_id = 2
        self.txns: list[_Txn] = []
        self.locked: set[bytes] = set()
        # upstream truth, for snapshots: raw key -> [(commit_ts, start_ts, op, value)]
        self.truth: dict[bytes, list[tuple[int, int, int, bytes]]] = {}
        self.commit_ts: list[int] = []

    # -- helpers --------------------------------------------------------------------------------

    def tso(self) -> int:
        self.ts += self.rng.randrange(1, 4)
        return self.ts

    def encode_values(self, values: Values) -> bytes:
        if self._table_info is None:
            from pyspark_theflash.schema import TableInfo

            self._table_info = TableInfo.from_json(self.table, db=DB)
        from pyspark_theflash.codec.row_v2 import encode_row_for_table
        from pyspark_theflash.schema import row_columns

        data = bytes(encode_row_for_table(row_columns(self._table_info), values))
        self.values[data] = values
        return data

    def region_of(self, handle: int) -> _UpRegion:
        for r in self.regions:
            if r.contains(handle):
                return r
        raise AssertionError(f"no region holds handle {handle}")

    def emit(self, region: _UpRegion, **payload: Any) -> None:
        if "resolved_ts" not in payload:
            region.index += 1  # a resolved ts is no log entry: it carries the region's last index
        if region.lagging or region.removed:
            return  # the replica does not get it; a snapshot will catch it up
        self.events.append(
            binlog_pb2.Event(
                region_id=region.id, index=region.index,
                epoch=binlog_pb2.RegionEpoch(version=region.version, conf_version=1), **payload,
            )
        )

    def entries(self, rows: list[Row]) -> binlog_pb2.Entries:
        """An Entries event of ``rows``: in the columnar form (what the mini cluster emits) for
        ``spec.columnar_ratio`` of the events, else one message per row (older logs)."""
        if self.form_rng.random() < self.spec.columnar_ratio:
            return columnar_entries(rows)
        return binlog_pb2.Entries(rows=rows)

    def emit_rows(self, rows_by_region: dict[int, list[Row]]) -> None:
        for rid, rows in rows_by_region.items():
            region = next(r for r in self.regions if r.id == rid)
            self.emit(region, entries=self.entries(rows))

    def mutation(self, handle: int) -> tuple[int, bytes]:
        roll = self.rng.random()
        if roll < self.spec.delete_ratio:
            return binlog_pb2.DELETE, b""
        if roll < self.spec.delete_ratio + self.spec.lock_ratio:
            return binlog_pb2.LOCK, b""
        return binlog_pb2.PUT, self.encode_values(random_values(self.rng, handle))

    def free_handles(self, n: int, region: _UpRegion | None = None) -> list[int]:
        candidates = [
            h for h in range(self.spec.keys)
            if record_key(TABLE_ID, h) not in self.locked and (region is None or region.contains(h))
        ]
        self.rng.shuffle(candidates)
        return candidates[:n]

    def record_truth(self, key: bytes, commit_ts: int, start_ts: int, op: int, value: bytes) -> None:
        self.truth.setdefault(key, []).append((commit_ts, start_ts, op, value))
        self.commit_ts.append(commit_ts)

    # -- actions --------------------------------------------------------------------------------

    def begin(self) -> None:
        handles = self.free_handles(self.rng.randrange(1, self.spec.max_txn_keys + 1))
        if not handles:
            return
        txn = _Txn(self.tso(), record_key(TABLE_ID, handles[0]), {})
        by_region: dict[int, list[Row]] = {}
        for h in handles:
            key = record_key(TABLE_ID, h)
            op, value = self.mutation(h)
            txn.mutations[key] = (op, value)
            self.locked.add(key)
            by_region.setdefault(self.region_of(h).id, []).append(
                Row(type=Row.PREWRITE, op=op, start_ts=txn.start_ts, key=key, value=value,
                    primary=txn.primary, ttl=3000, txn_size=len(handles))
            )
        self.txns.append(txn)
        self.emit_rows(by_region)

    def finish_txn(self, txn: _Txn, commit: bool) -> None:
        self.txns.remove(txn)
        commit_ts = self.tso() if commit else 0
        by_region: dict[int, list[Row]] = {}
        # the primary is committed first, as Percolator does
        keys = [txn.primary] + [k for k in txn.mutations if k != txn.primary]
        for key in keys:
            self.locked.discard(key)
            handle = parse_record_key(key)[1]
            if commit:
                row = Row(type=Row.COMMIT, start_ts=txn.start_ts, commit_ts=commit_ts, key=key)
                op, value = txn.mutations[key]
                if op != binlog_pb2.LOCK:
                    self.record_truth(key, commit_ts, txn.start_ts, op, value)
            else:
                row = Row(type=Row.ROLLBACK, start_ts=txn.start_ts, key=key)
            by_region.setdefault(self.region_of(handle).id, []).append(row)
        self.emit_rows(by_region)

    def one_pc(self) -> None:
        live = [r for r in self.regions]
        region = self.rng.choice(live)
        handles = self.free_handles(self.rng.randrange(1, self.spec.max_txn_keys + 1), region)
        if not handles:
            return
        start_ts = self.tso()
        commit_ts = self.tso()
        rows = []
        for h in handles:
            key = record_key(TABLE_ID, h)
            op, value = self.mutation(h)
            if op == binlog_pb2.LOCK:
                op, value = binlog_pb2.DELETE, b""
            rows.append(Row(type=Row.COMMITTED, op=op, start_ts=start_ts, commit_ts=commit_ts, key=key, value=value))
            self.record_truth(key, commit_ts, start_ts, op, value)
        self.emit(region, entries=self.entries(rows))

    def split(self) -> None:
        if len(self.regions) >= self.spec.max_regions:
            return
        candidates = [r for r in self.regions if not r.removed and (self.spec.admin_while_lagging or not r.lagging)]
        self.rng.shuffle(candidates)
        for region in candidates:
            lo = 0 if region.start is None else region.start
            hi = self.spec.keys if region.end is None else region.end
            if hi - lo < 2:
                continue
            at = self.rng.randrange(lo + 1, hi)
            if self.rng.random() < 0.7:
                # TiKV's default right-derive: the original id keeps the right part, a new id the left
                new = _UpRegion(self.next_region_id, region.start, at, region.version + 1, RAFT_INIT_LOG_INDEX)
                region.start = at
                pieces = [new, region]
            else:
                new = _UpRegion(self.next_region_id, at, region.end, region.version + 1, RAFT_INIT_LOG_INDEX)
                region.end = at
                pieces = [region, new]
            self.next_region_id += 1
            region.version += 1
            # a lagging region's replica misses the split: both pieces are caught up by snapshots
            new.lagging = region.lagging
            self.emit(region, admin=binlog_pb2.Admin(split=binlog_pb2.Split(regions=[p.proto() for p in pieces])))
            self.regions.append(new)
            self.regions.sort(key=lambda r: -1 if r.start is None else r.start)
            return

    def merge(self) -> None:
        pairs = [
            (a, b) for a, b in zip(self.regions, self.regions[1:])
            if not (a.removed or b.removed) and (self.spec.admin_while_lagging or not (a.lagging or b.lagging))
        ]
        if not pairs:
            return
        left, right = self.rng.choice(pairs)
        source, target = (left, right) if self.rng.random() < 0.5 else (right, left)
        # A replica behind on either side misses the merge (or would hold stale rows of the source
        # under an up-to-date target): the merged region is caught up by a snapshot. Its replica
        # then still lists the source, until that snapshot's range covers it.
        target.lagging = source.lagging or target.lagging
        source_proto = source.proto()
        target.start, target.end = left.start, right.end
        target.version = max(source.version, target.version) + 1
        self.regions.remove(source)
        self.emit(target, admin=binlog_pb2.Admin(merge=binlog_pb2.Merge(source=source_proto, target=target.proto())))

    def lag(self) -> None:
        candidates = [r for r in self.regions if not (r.lagging or r.removed)]
        if len(candidates) > 1:
            self.rng.choice(candidates).lagging = True

    def remove(self) -> None:
        candidates = [r for r in self.regions if not (r.lagging or r.removed)]
        if len(candidates) > 1:
            region = self.rng.choice(candidates)
            self.emit(region, admin=binlog_pb2.Admin(removed=binlog_pb2.RegionRemoved()))
            region.removed = True

    def snapshot(self, region: _UpRegion) -> None:
        """Catch a lagging or removed region up: its full contents at its current index."""
        Lock, Write = self.codec.Lock, self.codec.Write
        region.lagging = region.removed = False
        writes = []
        for key in sorted(self.truth):
            if not region.contains(parse_record_key(key)[1]):
                continue
            for commit_ts, start_ts, op, value in self.truth[key]:
                wt = "P" if op == binlog_pb2.PUT else "D"
                short = len(value) <= 64 and self.rng.random() < 0.5
                write = Write(write_type=wt, start_ts=start_ts, short_value=value if short and value else None)
                writes.append(binlog_pb2.SnapshotWrite(
                    key=key, commit_ts=commit_ts, write=write.to_bytes(), value=b"" if short else value))
        locks = []
        for txn in self.txns:
            for key, (op, value) in txn.mutations.items():
                if not region.contains(parse_record_key(key)[1]):
                    continue
                lt = {binlog_pb2.PUT: "P", binlog_pb2.DELETE: "D", binlog_pb2.LOCK: "L"}[op]
                lock = Lock(lock_type=lt, primary=txn.primary, start_ts=txn.start_ts, ttl=3000,
                            short_value=value if value else None, txn_size=len(txn.mutations))
                locks.append(binlog_pb2.SnapshotLock(key=key, lock=lock.to_bytes(), value=b""))
        region.index += 1
        self.events.append(binlog_pb2.Event(
            region_id=region.id, index=region.index,
            epoch=binlog_pb2.RegionEpoch(version=region.version, conf_version=1),
            snapshot=binlog_pb2.RegionSnapshot(region=region.proto(), writes=writes, locks=locks),
        ))

    def resolved_ts(self) -> None:
        region = self.rng.choice(self.regions)
        open_starts = [t.start_ts for t in self.txns if any(region.contains(parse_record_key(k)[1]) for k in t.mutations)]
        self.emit(region, resolved_ts=(min(open_starts) - 1) if open_starts else self.ts)

    # -- the stream -----------------------------------------------------------------------------

    def generate(self) -> EventStream:
        first = _UpRegion(1, None, None, 1, RAFT_INIT_LOG_INDEX)
        self.regions.append(first)
        self.snapshot(first)  # the replica starts with an (empty) snapshot of the only region
        spec = self.spec
        actions = [
            (self.begin, 0.35),
            (lambda: self.finish_txn(self.rng.choice(self.txns), self.rng.random() >= spec.rollback_ratio)
             if self.txns else None, 0.35),
            (self.one_pc, spec.one_pc_weight),
            (self.split, spec.split_weight),
            (self.merge, spec.merge_weight),
            (self.lag, spec.lag_weight),
            (self.remove, spec.remove_weight),
            (lambda: self._catch_up_one(), spec.snapshot_weight),
            (self.resolved_ts, 0.05),
        ]
        funcs, weights = zip(*actions)
        for _ in range(spec.steps):
            self.rng.choices(funcs, weights)[0]()
        if spec.finish:
            while self.txns:
                self.finish_txn(self.txns[0], self.rng.random() >= spec.rollback_ratio)
            for region in list(self.regions):
                if region.lagging or region.removed:
                    self.snapshot(region)
        return EventStream(self.events, self.values, self.table, BASE_TS, self.ts, sorted(self.commit_ts))

    def _catch_up_one(self) -> None:
        behind = [r for r in self.regions if r.lagging or r.removed]
        if behind:
            self.snapshot(self.rng.choice(behind))


def generate_stream(seed: int, spec: StreamSpec | None = None) -> EventStream:
    """A valid binlog event stream (several regions, interleaved 2PC across regions, 1PC rows,
    rollbacks, deletes, locks, splits, merges, lagging and removed regions caught up by
    snapshots, resolved ts), deterministic for a seed."""
    return StreamGenerator(seed, spec).generate()


def batches(events: Sequence[binlog_pb2.Event], rng: random.Random, max_size: int = 8) -> list[tuple[int, int]]:
    """Cut a stream into consecutive [start, end) event index ranges of random sizes."""
    out, i = [], 0
    while i < len(events):
        n = rng.randrange(1, max_size + 1)
        out.append((i, min(len(events), i + n)))
        i += n
    return out


def future_commit_floor(events: Sequence[binlog_pb2.Event]) -> list[int]:
    """``floor[i]``: the smallest commit_ts that events[i:] still commit (COMMIT/COMMITTED rows),
    or 2**64 when none; a GC safe point below ``floor[i]`` is one upstream could have given
    after events[:i] (no later commit lands at or below it)."""
    floor = [2**64] * (len(events) + 1)
    for i in range(len(events) - 1, -1, -1):
        low = floor[i + 1]
        event = events[i]
        if event.WhichOneof("payload") == "entries":
            for row in iter_rows(event.entries):
                if row.type in (Row.COMMIT, Row.COMMITTED):
                    low = min(low, row.commit_ts)
        floor[i] = low
    return floor
