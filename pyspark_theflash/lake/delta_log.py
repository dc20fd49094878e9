"""A table's Delta log (``<table root>/_delta_log/<version>.json``, PROTOCOL.md "Delta Log
Entries"): the actions one publication commits, and the table's state replayed from the log.

Each version is one JSON file of newline-separated actions, ``commitInfo`` first (the
``inCommitTimestamp`` feature requires it): it carries ``inCommitTimestamp`` (the ts's physical
time in ms, or one ms after the previous version's) and the TSO itself (``theflashTs``); a
``txn`` action (appId ``theflash``, version = the ts) says the same to any Delta client. A
version is created only if its name is free (``LakeDir.create``: on a local file system
written under a temporary name, fsynced and *linked* to its final name, which fails if the name
exists; on S3 a conditional PUT, ``If-None-Match: *``, which S3 refuses when the key exists), so
a version is never overwritten (PROTOCOL.md, "Creation of New Log Entries"), and of two
publishers racing for a version exactly one commits it; the other gets ``VersionTakenError``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, NotRequired, Sequence, TypedDict

from pyspark_theflash.lake.deletion_vectors import DeletionVector, DeletionVectorJson
from pyspark_theflash.lake.errors import LakeDamagedError, VersionTakenError
from pyspark_theflash.lake.location import LakeDir, Where, lake_dir

LOG_DIR = "_delta_log"
APP_ID = "theflash"
READER_VERSION, WRITER_VERSION = 3, 7


def log_name(version: int) -> str:
    return f"{version:020d}.json"


class AddAction(TypedDict, total=False):
    """An ``add`` action (PROTOCOL.md, "Add File and Remove File"): ``partitionValues`` is a map,
    which a checkpoint's Parquet writes as (key, value) pairs."""

    path: str
    partitionValues: dict[str, str] | list[tuple[str, str]]
    size: int
    modificationTime: int
    dataChange: bool
    stats: str
    deletionVector: DeletionVectorJson


class RemoveAction(TypedDict, total=False):
    """A ``remove`` action (PROTOCOL.md, "Add File and Remove File")."""

    path: str
    deletionTimestamp: int
    dataChange: bool
    extendedFileMetadata: bool
    partitionValues: dict[str, str]
    size: int
    deletionVector: DeletionVectorJson


class FormatJson(TypedDict):
    """A ``metaData`` action's ``format``: the data files' provider and its options."""

    provider: str
    options: dict[str, str]


class MetadataAction(TypedDict, total=False):
    """A ``metaData`` action (PROTOCOL.md, "Change Metadata"), as written (a log written by another
    writer may carry more fields); a checkpoint's row has every field, an absent one null."""

    id: str
    name: str | None
    description: str | None
    format: FormatJson
    schemaString: str
    partitionColumns: list[str]
    configuration: dict[str, str]
    createdTime: int | None


class ProtocolAction(TypedDict, total=False):
    """A ``protocol`` action (PROTOCOL.md, "Protocol Evolution"); the feature lists only from
    reader version 3 and writer version 7."""

    minReaderVersion: int
    minWriterVersion: int
    readerFeatures: list[str]
    writerFeatures: list[str]


class TxnAction(TypedDict):
    """A ``txn`` action (PROTOCOL.md, "Transaction Identifiers"): the version an application
    committed last."""

    appId: str
    version: int
    lastUpdated: NotRequired[int]


def txn_action(body: Mapping[str, Any]) -> TxnAction:
    """A ``txn`` action read from a log version or a checkpoint's row (``lastUpdated`` optional)."""
    txn: TxnAction = {"appId": str(body["appId"]), "version": int(body["version"])}
    if body.get("lastUpdated") is not None:
        txn["lastUpdated"] = int(body["lastUpdated"])
    return txn


@dataclass(frozen=True)
class DataFile:
    """A logical file of a version: a data file (relative path) and its deletion vector."""

    path: str
    size: int
    rows: int                      # numRecords: the file's physical rows (PROTOCOL.md: with a DV, exact)
    modification_ms: int
    dv: DeletionVector | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        """The logical file's primary key in the table state: (path, DV unique id)."""
        return self.path, None if self.dv is None else self.dv.unique_id

    def add_action(self) -> dict[str, AddAction]:
        add: AddAction = {"path": self.path, "partitionValues": {}, "size": self.size,
                               "modificationTime": self.modification_ms, "dataChange": True,
                               "stats": json.dumps({"numRecords": self.rows, "tightBounds": False})}
        if self.dv is not None:
            add["deletionVector"] = self.dv.to_json()
        return {"add": add}

    def remove_action(self, when_ms: int) -> dict[str, RemoveAction]:
        remove: RemoveAction = {"path": self.path, "deletionTimestamp": when_ms, "dataChange": True,
                                  "extendedFileMetadata": True, "partitionValues": {}, "size": self.size}
        if self.dv is not None:
            remove["deletionVector"] = self.dv.to_json()
        return {"remove": remove}


@dataclass
class TableLog:
    """The state of a table's log after its newest version: what the next commit builds on."""

    root: LakeDir
    version: int = -1                     # -1: no version yet
    ts: int = 0                           # the TSO of the newest version
    in_commit_ms: int = 0
    table_uuid: str | None = None
    name: str | None = None               # db.table, as the newest metaData names it
    metadata: MetadataAction = field(default_factory=MetadataAction)  # the newest metaData action, as written
    protocol: ProtocolAction = field(default_factory=ProtocolAction)  # the newest protocol action, as written
    schema_string: str | None = None
    features: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    files: dict[str, DataFile] = field(default_factory=dict)   # by path (one logical file per path)
    history: list[tuple[int, int, int]] = field(default_factory=list)  # (version, ts, inCommitTimestamp)
    txns: dict[str, TxnAction] = field(default_factory=dict)  # the live txn action of each appId
    # False once the log held something ``files`` cannot count as PROTOCOL.md's Action
    # Reconciliation does (two live logical files under one path, a domainMetadata action):
    # the state still serves publication, but no version checksum is written from it
    reconciled: bool = True

    @property
    def log_dir(self) -> LakeDir:
        return self.root / LOG_DIR

    def version_at(self, ts: int) -> int | None:
        """The newest version whose ts is at or below ``ts`` (None: the table was first published after it)."""
        found = None
        for version, vts, _ in self.history:
            if vts <= ts:
                found = version
        return found


def actions_of(log_dir: Where, name: str) -> Iterator[dict[str, Any]]:
    """The actions of the log file ``name`` in ``log_dir``."""
    where = lake_dir(log_dir)
    path = where.where(name)
    try:
        text = where.read_bytes(name).decode()
    except UnicodeDecodeError as exc:
        raise LakeDamagedError(str(path), "not UTF-8 text") from exc
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            action = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LakeDamagedError(str(path), f"line {n} is not JSON ({exc.msg})") from exc
        if not isinstance(action, dict) or len(action) != 1:
            raise LakeDamagedError(str(path), f"line {n} is not one action")
        yield action


def log_versions(root: Where) -> list[int]:
    """The versions of the JSON log files in a table's ``_delta_log``, ascending."""
    names = lake_dir(root).names(LOG_DIR)
    return sorted(int(n[:20]) for n in names if n.endswith(".json") and n[:20].isdigit() and len(n) == 25)


def replay(root: Where, after: TableLog | None = None, upto: int | None = None) -> TableLog:
    """The table's state from its log, continuing ``after`` (a state already replayed) when
    given, up to version ``upto`` (default: the newest). ``LakeDamagedError`` names a log file
    that does not parse or a version missing."""
    root = lake_dir(root)
    state = after if after is not None else TableLog(root)
    log_dir = root / LOG_DIR
    versions = log_versions(root)
    if state.version < 0 and versions and versions[0] > 0:
        # the versions before the oldest kept one were cleaned up: start from its checkpoint
        state = from_checkpoint(root, versions[0])
    for version in (v for v in versions if v > state.version and (upto is None or v <= upto)):
        path = log_dir.where(log_name(version))
        if version != state.version + 1:
            raise LakeDamagedError(log_dir.where(log_name(state.version + 1)), "this version of the log is missing")
        ts = ict = None
        for action in actions_of(log_dir, log_name(version)):
            (kind, body), = action.items()
            try:
                if kind == "commitInfo":
                    ts, ict = int(body["theflashTs"]), int(body["inCommitTimestamp"])
                elif kind == "metaData":
                    state.table_uuid, state.schema_string = str(body["id"]), str(body["schemaString"])
                    state.name = body.get("name")
                    state.metadata = body
                elif kind == "protocol":
                    state.features = (tuple(body.get("readerFeatures", ())), tuple(body.get("writerFeatures", ())))
                    state.protocol = body
                elif kind == "add":
                    dv = body.get("deletionVector")
                    added = DataFile(body["path"], int(body["size"]), int(json.loads(body["stats"])["numRecords"]),
                                     int(body["modificationTime"]), None if dv is None else DeletionVector.from_json(dv))
                    live = state.files.get(added.path)
                    if live is not None and live.key != added.key:
                        state.reconciled = False   # the protocol keeps both (path, DV) files live
                    state.files[added.path] = added
                elif kind == "remove":
                    old = state.files.get(body["path"])
                    dv = body.get("deletionVector")
                    if old is not None and old.key == (body["path"], None if dv is None else DeletionVector.from_json(dv).unique_id):
                        del state.files[body["path"]]
                elif kind == "txn":
                    txn = txn_action(body)
                    state.txns[txn["appId"]] = txn
                elif kind == "domainMetadata":
                    state.reconciled = False   # never written by TheFlash; not kept in this state
            except (KeyError, TypeError, ValueError) as exc:
                raise LakeDamagedError(str(path), f"a {kind} action lacks or mistypes a field ({exc})") from exc
        if ts is None or ict is None:
            raise LakeDamagedError(str(path), "no commitInfo with theflashTs and inCommitTimestamp")
        state.version, state.ts, state.in_commit_ms = version, ts, ict
        state.history.append((version, ts, ict))
    return state


def checkpoint_name(version: int) -> str:
    return f"{version:020d}.checkpoint.parquet"


def from_checkpoint(root: Where, version: int) -> TableLog:
    """The state after ``version`` from its classic checkpoint, as if replayed up to the version
    before it: replaying ``version``'s own JSON file on top changes nothing but records its ts."""
    import pyarrow.parquet as pq

    root = lake_dir(root)
    path = (root / LOG_DIR).where(checkpoint_name(version))
    try:
        with (root / LOG_DIR).input_file(checkpoint_name(version)) as f:
            rows = pq.read_table(f).to_pylist()
    except FileNotFoundError as exc:
        raise LakeDamagedError(str(path), f"missing: the log starts at version {version} and needs its checkpoint") from exc
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise LakeDamagedError(str(path), f"the checkpoint does not read ({exc})") from exc
    state = TableLog(root, version=version - 1)
    for row in rows:
        if row.get("metaData"):
            md = row["metaData"]  # the checkpoint's struct: its maps as (key, value) pairs
            m: MetadataAction = {
                "id": md["id"], "name": md.get("name"), "description": md.get("description"),
                "format": {"provider": md["format"]["provider"], "options": dict(md["format"].get("options") or [])},
                "schemaString": md["schemaString"], "partitionColumns": md.get("partitionColumns"),
                "configuration": dict(md.get("configuration") or []), "createdTime": md.get("createdTime")}
            state.metadata, state.table_uuid, state.schema_string, state.name = m, m["id"], m["schemaString"], m.get("name")
        elif row.get("protocol"):
            state.protocol = row["protocol"]
            state.features = (tuple(row["protocol"].get("readerFeatures") or ()),
                              tuple(row["protocol"].get("writerFeatures") or ()))
        elif row.get("txn"):
            txn = txn_action(row["txn"])
            state.txns[txn["appId"]] = txn
        elif row.get("add"):
            add = row["add"]
            dv = add.get("deletionVector")
            if add["path"] in state.files:
                state.reconciled = False   # two logical files of one path: the protocol keeps both
            state.files[add["path"]] = DataFile(
                add["path"], int(add["size"]), int(json.loads(add["stats"])["numRecords"]), int(add["modificationTime"]),
                None if dv is None else DeletionVector.from_json({k: v for k, v in dv.items() if v is not None}))
    return state


def in_commit_ms(ts: int, previous_ms: int) -> int:
    """The version's ``inCommitTimestamp``: the TSO's physical part (ms since the epoch: the
    high 46 bits), or one ms after the previous version's, whichever is larger (PROTOCOL.md,
    "Writer Requirements for In-Commit Timestamps")."""
    return max(ts >> 18, previous_ms + 1)


def commit(state: TableLog, actions: Sequence[Mapping[str, object]], table: str | None = None) -> int:
    """Write ``actions`` as the version after ``state``'s; returns it. ``VersionTakenError``
    (naming ``table``, by default as the log names it) when that version exists already or is
    being written by another publisher: nothing is overwritten, nothing retried."""
    version = state.version + 1
    text = "".join(json.dumps(a, separators=(",", ":")) + "\n" for a in actions)
    try:
        state.log_dir.create(log_name(version), text.encode())
    except FileExistsError as exc:
        raise VersionTakenError(table or state.name or str(state.root), version,
                                state.log_dir.where(log_name(version))) from exc
    return version
