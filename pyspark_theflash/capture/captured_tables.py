"""Which tables capture follows, through their schema changes: ``theflash capture --tables``.

Without ``--tables`` every record key is captured. With it, capture keeps the ids of the tables
named, follows them through DDL (a rename out of the selection drops a table, a TRUNCATE gives
it a new id, a DROP forgets it) and maps each partition's physical id to its table
(capture/partition_map.py), so that the rows of a partitioned table, written under each
partition's id, are kept. A row is judged when it is written, not when it arrived: a table may
leave the selection while its rows wait for the DDL frontier.
"""
from __future__ import annotations

import json
from typing import Iterable, Mapping, Sequence, TypedDict

import numpy as np

from pyspark_theflash.binlog.snapshot_batch import SnapshotColumns
from pyspark_theflash.capture import feed_columns
from pyspark_theflash.capture.errors import CaptureError
from pyspark_theflash.capture.partition_map import PartitionMap
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.schema.info_json import TableInfoJson

Ddl = binlog_pb2.Ddl
_NOT_A_RECORD = np.iinfo(np.int64).min  # feed_columns.record_table_ids for a key of no table's rows


def record_table_id(key: bytes) -> int | None:
    """The table id of a record key (t{id}_r...), None for any other key."""
    if len(key) >= 19 and key[:1] == b"t" and key[9:11] == b"_r":
        return int.from_bytes(key[1:9], "big") - (1 << 63)
    return None


def _table_name(info: TableInfoJson) -> str:
    name = info["name"]
    return str(name["O"] if isinstance(name, dict) else name)


class CapturedTablesState(TypedDict):
    """What capture's state file keeps of the captured tables."""

    table_ids: list[int]
    partitions: dict[str, int]  # a partition's physical id (as text) -> its table's id


class CapturedTables:
    """The selection (``--tables``, lowercased ``db.table``; None: every table), the ids of the
    selected tables as of the DDL capture has written, and their partitions."""

    def __init__(self, tables: Sequence[str] | None) -> None:
        self.selected: set[str] | None = {t.lower() for t in tables} if tables else None
        self.ids: set[int] = set()
        self.partitions = PartitionMap()  # a partition's physical id -> its table's id

    def load(self, ids: Iterable[int], partitions: Mapping[str, int] | None) -> None:
        """As capture's state file has them."""
        self.ids = {int(t) for t in ids}
        self.partitions = PartitionMap(partitions)

    def state(self) -> CapturedTablesState:
        return {"table_ids": sorted(self.ids), "partitions": self.partitions.state()}

    def selection(self) -> list[str] | None:
        """The selection as the binlog's resume points record it (sorted; None: every table)."""
        return sorted(self.selected) if self.selected is not None else None

    @property
    def filters(self) -> bool:
        """Whether rows are left out by table at all (with no selection, every record key is kept)."""
        return self.selected is not None

    def follow(self, ddl: binlog_pb2.Ddl) -> bool:
        """Track the selected tables' ids through a DDL; whether the DDL is of a selected table."""
        info = json.loads(ddl.table_info)
        name = info.get("name")
        name = name.get("O") if isinstance(name, dict) else name
        qualified = f"{ddl.db}.{name}".lower()
        tid = int(ddl.table_id)
        if not (self.selected is None or qualified in self.selected or tid in self.ids):
            return False
        if ddl.type == Ddl.DROP_TABLE:
            self.ids.discard(tid)
            self.partitions.forget(tid)
        else:
            self.partitions.learn(info)  # its partitions' ids as of this change
            if self.selected is None or qualified in self.selected:
                self.ids.add(tid)
            else:
                self.ids.discard(tid)  # renamed out of the selection
        if ddl.old_table_id:
            self.ids.discard(int(ddl.old_table_id))
        return True

    def check(self, listed: list[tuple[str, TableInfoJson]], url: str) -> None:
        """Every table the selection names is one of TiDB's user tables (``listed``: (db, table
        info) as the status port at ``url`` serves them); their partitions' ids are learned."""
        names = {f"{db}.{_table_name(t)}".lower() for db, t in listed}
        missing = sorted(self.selected - names) if self.selected else []
        if missing:
            raise CaptureError(f"--tables names {', '.join(missing)}, which TiDB at {url} does not have "
                               f"(it has {', '.join(sorted(names)) or 'no user table'})")
        for _, t in listed:
            if t.get("partition"):
                self.partitions.learn(t)

    def creations_missing(self, listed: list[tuple[str, TableInfoJson]]) -> list[binlog_pb2.Event]:
        """For a fresh binlog: a CREATE TABLE event, in force from ts 0, for every selected table
        whose creation capture has not written (TiDB's DDL history keeps the newest 2048 jobs),
        with its current table info. Rows older than it decode with it: a column added since
        reads its origin default, as TiDB reads such rows."""
        events = []
        for db, info in listed:
            name = _table_name(info)
            if int(info["id"]) in self.ids or (self.selected is not None and f"{db}.{name}".lower() not in self.selected):
                continue
            info = info.copy()
            info.setdefault("schema_version", 0)
            self.ids.add(int(info["id"]))
            self.partitions.learn(info)
            events.append(binlog_pb2.Event(ddl=Ddl(
                type=Ddl.CREATE_TABLE, commit_ts=0, schema_version=int(info["schema_version"]), db=db,
                table_id=int(info["id"]), table_info=json.dumps(info).encode(),
                query=f"-- {db}.{name} as TiDB's status port serves it (its CREATE is not in the DDL history)")))
        return events

    def captured(self, table_ids: np.ndarray) -> np.ndarray:
        """Per row, whether its table id (``feed_columns.record_table_ids``) is a selected table's
        (or one of its partitions')."""
        record: np.ndarray = table_ids != _NOT_A_RECORD
        if self.selected is None:
            return record
        unique = np.unique(table_ids[record])
        ours = [t for t in unique.tolist() if self.partitions.logical(t) in self.ids]
        captured: np.ndarray = record & np.isin(table_ids, np.array(ours, np.int64))
        return captured

    def filter_snapshot(self, snap: SnapshotColumns) -> SnapshotColumns:
        """A region's snapshot with the versions and locks of the selected tables only."""
        if self.selected is None or not len(snap):
            return snap
        return snap.where(self.captured(feed_columns.record_table_ids(snap.versions.keys)),
                          self.captured(feed_columns.record_table_ids(snap.locks.keys)))
