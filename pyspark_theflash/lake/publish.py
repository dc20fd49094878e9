"""Publication rounds: every replicated table of a store as a Delta table whose version v is the
replica at one resolved ts, every table of a round at the same ts (docs/delta.md).

A round picks ts (by default the store's resolved ts: the smallest of its tables', so every
commit at or below it is applied), holds a read lease at ts so that no part it names is deleted
while it works, and for each live table whose files changed commits one version: ``add`` for
each logical file (a part, or its converted copy, with its deletion vector at ts) that is new,
``remove`` for each that went (a part compacted away, or the same file with the older vector).
A table with nothing new since its last version gets no version in that round: the version
before still holds the replica at ts (``TableLog.version_at``). Each committed version is
followed by its version checksum (``<version>.crc``, ``lake.checksum``), computed from the log
replayed up to it.

A partition whose parts, their tombstones and its bounds are those of the last round, and none
of whose rows is newer than that round's ts, keeps its files and vectors as they were: a
round's cost follows the partitions that changed, not the table.

A partitioned TiDB table is one Delta table at its logical id over every partition's parts (the
partitions of its schema at ts: partition DDL adds and removes files like any change). A table
TRUNCATE TABLE gave a new id continues in the Delta table it had (``tables/<its first id>``):
the truncate's round removes the old rows' files and adds the new id's, and time travel before it
reads the old rows; only a DROP TABLE ends a Delta table (a last version without files).

The tables are written in the store's directory (``tables/<id>``, parts named in place), or,
given ``to`` (a directory or a URI such as ``s3://bucket/prefix``: ``lake.location``), under
``<to>/tables/<id>`` with the same relative paths, the parts a version names copied there.
"""
from __future__ import annotations

import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import pyarrow as pa

from pyspark_theflash.lake import delta_log
from pyspark_theflash.lake.checkpoint import write_checkpoint
from pyspark_theflash.lake.checksum import write_checksum
from pyspark_theflash.lake.cleanup import clean
from pyspark_theflash.lake.deletion_vectors import VectorFileWriter, vector_for
from pyspark_theflash.lake.delta_log import APP_ID, READER_VERSION, WRITER_VERSION, DataFile, TableLog
from pyspark_theflash.lake.errors import LakeError, LakeLocationError, PublishTsError
from pyspark_theflash.lake.files import PartVisibility, PlannedFile, plan_partition, schema_tag
from pyspark_theflash.lake.location import FileStamps, LakeDir, lake_dir
from pyspark_theflash.lake.types import (
    COLUMN_MAPPING_MODE,
    COLUMN_MAPPING_MODE_KEY,
    MAX_COLUMN_ID,
    file_schema,
    needs_timestamp_ntz,
    schema_string,
)
from pyspark_theflash.scan.resolved import table_resolved_ts
from pyspark_theflash.schema import arrow_schema
from pyspark_theflash.schema.arrow import select_columns
from pyspark_theflash.schema.partitioning import physical_ids_of
from pyspark_theflash.store import Store, remote
from pyspark_theflash.store.part_ref import PartRef

if TYPE_CHECKING:
    from pyspark_theflash.schema.table_info import TableInfo
    from pyspark_theflash.store.views import StoreView
    from pyspark_theflash.store.keyspace import HandleRange

LEASE_TTL_S = 300.0
# How long a published version stays readable: each round that commits keeps its read lease this
# long, so no file its versions name is deleted before (store invariant 7: a lease at manifest
# version M pins every file removed after M). It holds GC back as far (docs/delta.md, retention).
# A classic checkpoint every this many versions (delta-spark's own default interval).
DEFAULT_CHECKPOINT_INTERVAL = 10
DEFAULT_RETENTION_S = 600.0  # TiDB's default GC life time: the time travel its own stale reads have


def _same_place(lake: LakeDir, where: str) -> bool:
    """Whether ``lake`` is the directory ``where`` (a local path or a URI) names."""
    other = lake_dir(where)
    if lake.local and other.local:
        return Path(lake.path).resolve() == Path(other.path).resolve()
    return lake.uri.rstrip("/") == other.uri.rstrip("/")


def table_root(store: str | os.PathLike[str], table_id: int) -> Path:
    """Where a table's Delta table lives: its directory in the store (``tables/<id>``), so the
    log names the store's part files by relative paths (``p<partition>/stable-….parquet``)."""
    return Path(store) / "tables" / str(table_id)


@dataclass(frozen=True)
class TablePublication:
    """What a round did to one table: the version it committed (None: none), or why it skipped it."""

    table: str
    table_id: int
    root: str
    version: int | None
    files: int = 0
    converted: int = 0
    deleted_rows: int = 0
    parts_read: int = 0        # parts whose rows this round read (the rest carried the last round's vectors)
    skipped: str | None = None


@dataclass(frozen=True)
class Round:
    ts: int
    tables: tuple[TablePublication, ...]
    seconds: float

    @property
    def committed(self) -> list[TablePublication]:
        return [t for t in self.tables if t.version is not None]


@dataclass
class _Published:
    """A table's files of its last round, by part, the signature of each partition then, and
    what the round learned of each part (its vector, its handles) for the next round."""

    by_part: dict[int, DataFile] = field(default_factory=dict)
    signatures: dict[tuple[int, int], tuple[object, ...]] = field(default_factory=dict)   # by (table id, partition)
    seen: dict[int, tuple[tuple[HandleRange, ...], PartVisibility]] = field(default_factory=dict)   # part -> (its tombstones, visibility)
    stamps: FileStamps = field(default_factory=FileStamps)   # of the files its version names (no HEAD again)


class Publisher:
    """Publishes a store's tables round by round. One per store at a time (the writer's, or a
    ``theflash delta publish``): a second one racing it fails on the log's put-if-absent
    (``VersionTakenError``: a link locally, a conditional PUT on S3), never overwriting a version."""

    def __init__(self, store: str | os.PathLike[str] | Store, retention_s: float = DEFAULT_RETENTION_S,
                 checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL, to: str | os.PathLike[str] | None = None
                 ) -> None:
        # the store it reads: handed in open (the writer's own: the process opens it once), or
        # opened read-only at the first round and kept until ``close``
        self._opened: Store | None = store if isinstance(store, Store) else None
        self._owns_store = self._opened is None
        self.store = Path(store.root if isinstance(store, Store) else store)
        self.retention_s = retention_s
        self.checkpoint_interval = max(1, checkpoint_interval)
        # where the tables go: the store's directory (parts named in place), the directory its
        # parts live in on shared storage (store.remote: named in place there), or ``to``
        # (parts copied)
        parts = store.remote if isinstance(store, Store) else remote.of_store(self.store)
        self.lake: LakeDir = lake_dir(to if to is not None else parts.uri if parts is not None else self.store)
        self.copies_parts = not (_same_place(self.lake, parts.uri) if parts is not None
                                 else to is None or _same_place(self.lake, str(self.store)))
        if parts is not None and self.lake.local and _same_place(self.lake, str(self.store)):
            # the local files are a cache there: a version must not name what eviction deletes
            raise LakeLocationError(f"{self.store}: its stable parts live in {parts.uri} and its local disk only "
                                    f"caches them; publish to {parts.uri} (the default) or another location")
        self._logs: dict[int, TableLog] = {}             # by the id of the table's root
        self._published: dict[int, _Published] = {}      # by the id of the table's root
        self._truncated: dict[int, int] = {}             # TRUNCATE TABLE: old id -> new id
        self._first_id: dict[int, int] = {}              # an id of such a chain -> its first (the root's)

    def _open(self) -> Store:
        if self._opened is None:
            self._opened = Store.open(self.store, readonly=True)
        return self._opened

    def close(self) -> None:
        """Closes the store the publisher opened itself (one handed in stays its owner's)."""
        if self._owns_store and self._opened is not None:
            self._opened.close()
            self._opened = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the ts --------------------------------------------------------------------------------
    def resolved_ts(self) -> int:
        """The newest ts a round can publish: every live table's resolved ts is at or above it."""
        with self._open().snapshot() as view:
            return _resolved(view)[0]

    def publish(self, ts: int | None = None) -> Round:
        started = time.monotonic()
        # before any upload: a location where a version could be overwritten is refused
        self.lake.require_put_if_absent()
        store = self._open()
        with store.snapshot() as view:
            resolved, lowest = _resolved(view)
            safe_point = view.gc_safe_point()
        if ts is None:
            ts = resolved
        elif ts > resolved:
            raise PublishTsError(f"ts {ts} is not resolved in {self.store}: table {lowest} is resolved to "
                                 f"{resolved}; wait for the writer, or publish without --ts (the resolved ts)")
        if ts < safe_point:
            raise PublishTsError(f"ts {ts} is below the GC safe point {safe_point} of {self.store}: the "
                                 "versions it reads are collected; publish a ts at or above it")
        # twice the retention: a version stays the one holding a time until the next version
        # of its table, up to a round's cadence later, and is kept a retention after that
        lease = store.leases.acquire(ts, max(LEASE_TTL_S, 2 * self.retention_s), holder=f"delta versions at ts {ts}")
        done: list[TablePublication] = []
        try:
            with store.snapshot() as view:
                self._truncated = view.truncations()
                self._first_id = _first_ids(self._truncated)
                for info in view.tables():
                    done.append(self._publish_table(view, info, ts))
                for table_id, name, retired_ts, reason in view.retired_tables():
                    if retired_ts <= ts and delta_log.log_versions(self._root(table_id)):
                        done.append(self._retire_table(table_id, name, retired_ts, reason, ts))
        finally:
            # the lease outlives the round by the retention when a version names its files,
            # also when a later table of the round failed (another publisher's version)
            if not any(t.version is not None for t in done):
                store.leases.release(lease.id)
        return Round(ts, tuple(done), time.monotonic() - started)

    # --- one table -----------------------------------------------------------------------------
    def _retire_table(self, table_id: int, name: str, retired_ts: int, reason: str, ts: int) -> TablePublication:
        """A table dropped (or truncated: its rows live on under a new table id, a new Delta
        table) at or before ts: its last version removes every file, and its commitInfo says
        why and when. Versions before it still read the old rows while retained."""
        root = self._root(table_id)
        if table_id in self._truncated:
            # the id TRUNCATE gave the name continues this Delta table: its versions say so
            return TablePublication(name, table_id, root.uri, None,
                                    skipped=f"{reason} at ts {retired_ts}; continued by table {self._truncated[table_id]}")
        log = self._log(table_id)
        if log.version < 0 or not log.files or log.ts >= ts:
            return TablePublication(name, table_id, root.uri, None, skipped=f"{reason or 'retired'} at ts {retired_ts}")
        ict = delta_log.in_commit_ms(ts, log.in_commit_ms)
        actions: list[Mapping[str, object]] = [{"commitInfo": {
            "timestamp": ict, "inCommitTimestamp": ict, "operation": "THEFLASH RETIRE",
            "operationParameters": {"ts": str(ts), "reason": reason or "dropped", "retiredTs": str(retired_ts)},
            "theflashTs": ts, "isBlindAppend": False, "engineInfo": "theflash"}},
            {"txn": {"appId": APP_ID, "version": ts, "lastUpdated": ict}}]
        actions += [f.remove_action(ict) for f in log.files.values()]
        version = delta_log.commit(log, actions, name)
        self._logs[self._root_id(table_id)] = log = delta_log.replay(root, log)
        self._write_checksum(log, version)
        self._published.pop(self._root_id(table_id), None)
        return TablePublication(name, table_id, root.uri, version)

    @staticmethod
    def _write_checksum(log: TableLog, version: int) -> None:
        """The version checksum of the version just committed (``lake.checksum``), after its
        commit, from the state replayed up to it: only when that state is exactly the version's
        (a version another publisher committed after it would make it another's)."""
        if log.version == version:
            write_checksum(log)

    def _root_id(self, table_id: int) -> int:
        """The id a table's Delta table is named by: its own, or a truncated table's first."""
        return self._first_id.get(table_id, table_id)

    def _root(self, table_id: int) -> LakeDir:
        """Where a table's Delta table is: ``tables/<root id>`` under the store or ``to``."""
        return self.lake / f"tables/{self._root_id(table_id)}"

    def _log(self, table_id: int) -> TableLog:
        root_id = self._root_id(table_id)
        log = self._logs.get(root_id)
        self._logs[root_id] = log = delta_log.replay(self._root(table_id), log)
        return log

    def _publish_table(self, view: StoreView, current: TableInfo, ts: int) -> TablePublication:
        root = self._root(current.id)
        # the schema in force at ts, not the newest the writer has applied: a DDL committed
        # after ts (its event comes before the rows after it, while ts may still be below it)
        # must not reach a version of ts (a RENAME read under the new name, an ADD COLUMN's
        # default in a version from before the column existed)
        history = view.histories().get(current.id)
        if history is not None and not history.lives_at(ts):
            return TablePublication(f"{current.db}.{current.name}", current.id, root.uri, None,
                                    skipped=f"created after ts {ts}")
        info = history.at(ts) if history is not None else current
        name = f"{info.db}.{info.name}"
        # a partitioned table: one Delta table over its partitions' parts (their ids at ts)
        physical = physical_ids_of(info)
        log = self._log(info.id)
        if log.version >= 0 and ts <= log.ts:
            if ts == log.ts:
                return TablePublication(name, info.id, root.uri, None, skipped=f"already published at ts {ts}")
            raise PublishTsError(f"table {name} is published up to ts {log.ts} ({root}/_delta_log), after ts {ts}; "
                                 "a version is only ever added at a newer ts: publish a ts above it")
        store_schema = arrow_schema(info)
        column_ids = [c.id for c in select_columns(info, None)]   # store_schema's, in order
        target = file_schema(store_schema, column_ids)
        parts = [p for table_id in physical for p in view.parts(table_id)]
        if any(p.in_engine for p in parts):
            return TablePublication(name, info.id, root.uri, None,
                                    skipped="its rows are kept by the ClickHouse engine (no part files)")
        root_id = self._root_id(info.id)
        published = self._published.get(root_id) if log.version >= 0 else None
        stamps = published.stamps if published is not None else FileStamps()
        tag = schema_tag(target, info)
        # the store's partitions (handle ranges) of each physical table
        by_partition: dict[tuple[int, int], list[PartRef]] = defaultdict(list)
        for p in parts:
            by_partition[(p.table_id, p.partition_id)].append(p)
        planned: list[tuple[int, PlannedFile | DataFile]] = []   # (part id, its file), partition by partition
        signatures: dict[tuple[int, int], tuple[object, ...]] = {}
        seen: dict[int, tuple[tuple[HandleRange, ...], PartVisibility]] = {}
        parts_read = 0
        for pid, ps in by_partition.items():
            ps.sort(key=lambda p: p.part_id)
            signature = (tag, ps[0].partition_lo, ps[0].partition_hi, tuple((p.part_id, p.tombstones) for p in ps))
            signatures[pid] = signature
            same_bounds = published is not None and published.signatures.get(pid, ())[:3] == signature[:3]
            if (published is not None and published.signatures.get(pid) == signature
                    and all(p.max_commit_ts is None or p.max_commit_ts <= log.ts for p in ps)
                    and all(p.part_id in published.by_part for p in ps)):
                planned.extend((p.part_id, published.by_part[p.part_id]) for p in ps)
                seen.update((p.part_id, published.seen[p.part_id]) for p in ps if p.part_id in published.seen)
                continue
            settled = _settled(published, ps, log.ts) if published is not None and same_bounds else []
            fresh = [p for p in ps if all(p is not q for q, _ in settled)]
            parts_read += len(fresh)
            for part, vis in plan_partition(self.store, root, info, ts, fresh, target, settled, self.copies_parts,
                                            root_id, stamps):
                last = published.seen.get(part.part_id) if published is not None else None
                kept = published.by_part.get(part.part_id) if published is not None else None
                if last is not None and vis is last[1] and kept is not None:
                    # a settled part none of whose handles the new rows touch: the same logical
                    # file as the last version's (no vector encoded again, no remove and add)
                    planned.append((part.part_id, kept))
                else:
                    planned.append((part.part_id, part))
                seen[part.part_id] = (next(p.tombstones for p in ps if p.part_id == part.part_id), vis)
        vectors = VectorFileWriter()
        files: dict[str, DataFile] = {}
        by_part: dict[int, DataFile] = {}
        deleted = converted = 0
        for part_id, item in planned:
            if isinstance(item, DataFile):
                data = item
            else:
                stamp = stamps.of(root, item.path)
                if stamp is None:
                    raise FileNotFoundError(root.where(item.path))
                data = DataFile(item.path, item.size, item.rows, stamp.mtime_ms, vector_for(item.deleted, vectors))
                converted += item.converted
            deleted += 0 if data.dv is None else data.dv.cardinality
            files[data.path] = data
            by_part[part_id] = data
        schema_json = schema_string(store_schema, column_ids)
        configuration = _configuration(column_ids, log)
        features = _features(store_schema)
        old = {f.key: f for f in log.files.values()}
        new = {f.key: f for f in files.values()}
        metadata_changed = schema_json != log.schema_string or configuration != log.metadata.get("configuration")
        if log.version >= 0 and old.keys() == new.keys() and not metadata_changed and features == log.features:
            self._published[root_id] = _Published(by_part, signatures, seen, stamps.keep(set(files)))
            return TablePublication(name, info.id, root.uri, None, len(files), converted, deleted, parts_read,
                                    skipped="unchanged since its last version")
        ict = delta_log.in_commit_ms(ts, log.in_commit_ms)
        actions: list[Mapping[str, object]] = [{"commitInfo": {
            "timestamp": ict, "inCommitTimestamp": ict, "operation": "THEFLASH PUBLISH",
            "operationParameters": {"ts": str(ts)}, "theflashTs": ts, "isBlindAppend": False,
            "engineInfo": "theflash"}}]
        if features != log.features:
            actions.append({"protocol": {"minReaderVersion": READER_VERSION, "minWriterVersion": WRITER_VERSION,
                                         "readerFeatures": list(features[0]), "writerFeatures": list(features[1])}})
        if metadata_changed:
            actions.append({"metaData": {
                "id": log.table_uuid or str(uuid.uuid4()), "name": name,
                "format": {"provider": "parquet", "options": {}}, "schemaString": schema_json,
                "partitionColumns": [], "createdTime": ict, "configuration": configuration}})
        actions.append({"txn": {"appId": APP_ID, "version": ts, "lastUpdated": ict}})
        actions += [f.remove_action(ict) for k, f in old.items() if k not in new]
        actions += [f.add_action() for k, f in new.items() if k not in old]
        if not vectors.empty:
            vectors.write(root)
        version = delta_log.commit(log, actions, name)
        self._logs[root_id] = log = delta_log.replay(root, log)
        self._write_checksum(log, version)
        if version % self.checkpoint_interval == 0 and version > 0:
            write_checkpoint(log)
            clean(log, int(self.retention_s * 1000), owns_parts=self.copies_parts)
        self._published[root_id] = _Published(by_part, signatures, seen, stamps.keep(set(files)))
        return TablePublication(name, info.id, root.uri, version, len(files), converted, deleted, parts_read)


def _settled(published: _Published, parts: list[PartRef], last_ts: int) -> list[tuple[PartRef, PartVisibility]]:
    """The parts of a changed partition whose vectors the last round's carry over to this one
    (``files.deleted_rows_after``): int-handle parts the last round saw with the same tombstones,
    all of whose rows are at or below its ts — provided every other part's rows are newer than
    all of theirs. Otherwise none (every part is read again)."""
    settled = [p for p in parts if p.part_id in published.seen and published.seen[p.part_id][0] == p.tombstones
               and published.seen[p.part_id][1].handles is not None
               and p.max_commit_ts is not None and p.max_commit_ts <= last_ts]
    fresh = [p for p in parts if p not in settled]
    if not settled or not fresh or any(p.min_commit_ts is None for p in fresh):
        return []
    if min(p.min_commit_ts or 0 for p in fresh) <= max(p.max_commit_ts or 0 for p in settled):
        return []
    return [(p, published.seen[p.part_id][1]) for p in settled]


def _first_ids(truncated: dict[int, int]) -> dict[int, int]:
    """Each id of a chain of TRUNCATE TABLEs (old id -> new id) -> the chain's first id."""
    before = {new: old for old, new in truncated.items()}
    out: dict[int, int] = {}
    for table_id in {*truncated, *before}:
        first, seen = table_id, {table_id}
        while first in before and before[first] not in seen:
            first = before[first]
            seen.add(first)
        out[table_id] = first
    return out


def _resolved(view: StoreView) -> tuple[int, str]:
    """(the smallest resolved ts of the view's live tables, the table that has it)."""
    lowest: tuple[int, str] | None = None
    for info in view.tables():
        name = f"{info.db}.{info.name}"
        r = table_resolved_ts(view, info, name)
        if not r.servable:
            why = f"has key ranges no region holds ({r.gaps[0]})" if r.gaps else "has no resolved ts yet"
            raise PublishTsError(f"table {name} {why}: the store cannot serve one ts for every table yet; "
                                 "wait for the writer to apply its regions, then publish again")
        if lowest is None or r.ts < lowest[0]:
            lowest = (r.ts, name)
    if lowest is None:
        raise PublishTsError("the store replicates no table yet: nothing to publish")
    return lowest


def _features(store_schema: pa.Schema) -> tuple[tuple[str, ...], tuple[str, ...]]:
    reader = ["columnMapping", "deletionVectors"] + (["timestampNtz"] if needs_timestamp_ntz(store_schema) else [])
    return tuple(reader), tuple(reader + ["inCommitTimestamp"])


def _configuration(column_ids: list[int], log: TableLog) -> dict[str, str]:
    """The table properties of a version: deletion vectors, in-commit timestamps, and column
    mapping by id (PROTOCOL.md, "Column Mapping") with ``delta.columnMapping.maxColumnId`` never
    lower than a version before had it (a DROP COLUMN of the highest id does not lower it; TiDB
    never gives an id twice, so a re-added column's is above it). A table published before
    column mapping turns it on at its next version, which names every file by id (the parts
    that named columns by TiDB name converted once)."""
    before = (log.metadata.get("configuration") or {}).get(MAX_COLUMN_ID)
    highest = max([*column_ids, int(before) if before is not None else 0])
    return {"delta.enableDeletionVectors": "true", "delta.enableInCommitTimestamps": "true",
            COLUMN_MAPPING_MODE_KEY: COLUMN_MAPPING_MODE, MAX_COLUMN_ID: str(highest)}


__all__ = ["LakeError", "Publisher", "Round", "TablePublication", "table_root"]
