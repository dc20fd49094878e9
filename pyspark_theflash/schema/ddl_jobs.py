"""TiDB's finished DDL jobs (``/ddl/history`` on the status port) and the binlog's ``Ddl``.

A job is TiDB's ``model.Job`` JSON: ``id``, ``type`` (an ``ActionType`` number), ``schema_id``,
``table_id``, ``schema_name``, ``table_name``, ``state`` (6 = synced, a finished job), ``query``,
and ``binlog``: ``SchemaVersion``, ``TableInfo`` (the table after the change; for TRUNCATE the
new table, whose id replaces ``table_id``), ``FinishedTS`` (the commit ts of the change).
The status port lists them newest first (TiDB's ``ScanHistoryDDLJobs``).
"""
from __future__ import annotations

import json
from typing import Mapping, TypedDict

from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.schema.info_json import TableInfoJson

Ddl = binlog_pb2.Ddl


class JobBinlog(TypedDict):
    """A finished job's ``binlog`` (TiDB's ``model.HistoryInfo``)."""

    SchemaVersion: int
    DBInfo: None
    TableInfo: TableInfoJson
    FinishedTS: int


class DdlJob(TypedDict):
    """A finished job as TiDB lists it (``model.Job`` JSON), the fields a replica reads."""

    id: int
    type: int
    schema_id: int
    table_id: int
    schema_name: str
    table_name: object  # the table info's name: {"O": ..., "L": ...}'s "O", or as the info spells it
    state: int
    query: str
    start_ts: int
    real_start_ts: int
    binlog: JobBinlog

# TiDB's ActionType (pkg/meta/model/job.go): the table-level changes a replica follows.
ACTION_CREATE_TABLE = 3
ACTION_DROP_TABLE = 4
ACTION_ADD_COLUMN = 5
ACTION_DROP_COLUMN = 6
ACTION_TRUNCATE_TABLE = 11
ACTION_MODIFY_COLUMN = 12
ACTION_RENAME_TABLE = 14
ACTION_ADD_TABLE_PARTITION = 19
ACTION_DROP_TABLE_PARTITION = 20
ACTION_TRUNCATE_TABLE_PARTITION = 23
ACTION_EXCHANGE_TABLE_PARTITION = 42
ACTION_REORGANIZE_PARTITION = 64
JOB_STATE_SYNCED = 6

# The binlog has no partition DDL types: a partition change is the table info after it (its
# partitions' ids), which a replica records like any other change of the table. The job
# TiDB lists for it has its own action, told here by the statement.
_PARTITION_ACTIONS = (
    (" ADD PARTITION", ACTION_ADD_TABLE_PARTITION), (" DROP PARTITION", ACTION_DROP_TABLE_PARTITION),
    (" TRUNCATE PARTITION", ACTION_TRUNCATE_TABLE_PARTITION),
    (" EXCHANGE PARTITION", ACTION_EXCHANGE_TABLE_PARTITION),
    (" REORGANIZE PARTITION", ACTION_REORGANIZE_PARTITION),
)
JOB_STATE_DONE = 4

_ACTION_OF_TYPE = {
    Ddl.CREATE_TABLE: ACTION_CREATE_TABLE, Ddl.DROP_TABLE: ACTION_DROP_TABLE, Ddl.ADD_COLUMN: ACTION_ADD_COLUMN,
    Ddl.DROP_COLUMN: ACTION_DROP_COLUMN, Ddl.TRUNCATE_TABLE: ACTION_TRUNCATE_TABLE,
    Ddl.MODIFY_COLUMN: ACTION_MODIFY_COLUMN, Ddl.RENAME_TABLE: ACTION_RENAME_TABLE,
}
_TYPE_OF_ACTION = {a: t for t, a in _ACTION_OF_TYPE.items()}


def job_of_ddl(ddl: binlog_pb2.Ddl, job_id: int, schema_id: int) -> DdlJob:
    """The finished TiDB job a binlog ``Ddl`` stands for."""
    info: TableInfoJson = json.loads(ddl.table_info)
    table_id = int(ddl.old_table_id) if ddl.type == Ddl.TRUNCATE_TABLE and ddl.old_table_id else int(ddl.table_id)
    name = info.get("name")
    action = _ACTION_OF_TYPE.get(ddl.type, 0)
    if ddl.type == Ddl.MODIFY_COLUMN:
        action = next((a for words, a in _PARTITION_ACTIONS if words in ddl.query.upper()), action)
    return {
        "id": job_id, "type": action, "schema_id": schema_id, "table_id": table_id,
        "schema_name": ddl.db, "table_name": name.get("O") if isinstance(name, dict) else name,
        "state": JOB_STATE_SYNCED, "query": ddl.query, "start_ts": int(ddl.commit_ts), "real_start_ts": int(ddl.commit_ts),
        "binlog": {"SchemaVersion": int(ddl.schema_version), "DBInfo": None, "TableInfo": info,
                   "FinishedTS": int(ddl.commit_ts)},
    }


def _int(value: object, what: str) -> int:
    """A JSON number (or numeric string) of a job as an int."""
    if isinstance(value, (int, float, str)):
        return int(value)
    raise TypeError(f"a DDL job's {what} is {value!r}, not a number")


def _object(value: object, what: str) -> Mapping[str, object]:
    """A JSON object of a job."""
    if isinstance(value, Mapping):
        return value
    raise TypeError(f"a DDL job's {what} is {value!r}, not an object")


def finished_ts(job: Mapping[str, object]) -> int | None:
    """The ts a job finished at (its ``binlog.FinishedTS``), read without converting the job;
    None when it has none or it is not a number (``ddl_of_job`` then says what is wrong)."""
    binlog = job.get("binlog")
    value = binlog.get("FinishedTS") if isinstance(binlog, Mapping) else None
    try:
        return int(value) if isinstance(value, (int, float, str)) else None
    except (ValueError, OverflowError):  # "soon", NaN, Infinity
        return None


def ddl_of_job(job: Mapping[str, object]) -> binlog_pb2.Ddl | None:
    """The binlog ``Ddl`` of a finished table-level job; None for what a replica does not follow
    (schemas, indexes, placement...: the table's rows do not change shape) or an unfinished job.
    ``job``: TiDB's JSON, as it came (its fields are checked as they are read)."""
    if job.get("state") not in (JOB_STATE_SYNCED, JOB_STATE_DONE):
        return None
    binlog = _object(job.get("binlog") or {}, "binlog")
    table_info = binlog.get("TableInfo")
    action = _int(job.get("type", 0), "type")
    if not table_info or not binlog.get("FinishedTS"):
        return None
    info = dict(_object(table_info, "binlog.TableInfo"))
    version = _int(binlog.get("SchemaVersion") or 0, "binlog.SchemaVersion")
    info.setdefault("schema_version", version)
    kind = _TYPE_OF_ACTION.get(action)
    if kind is None:
        # Any other change of a table (an index, a comment, a default): the same columns under
        # a new schema version, which a replica records like an in-place MODIFY COLUMN.
        kind = Ddl.MODIFY_COLUMN
    old = _int(job.get("table_id") or 0, "table_id") if kind == Ddl.TRUNCATE_TABLE else 0
    return Ddl(type=kind, commit_ts=_int(binlog["FinishedTS"], "binlog.FinishedTS"), schema_version=version,
               db=str(job.get("schema_name") or ""), table_id=_int(info["id"], "binlog.TableInfo.id"), old_table_id=old,
               table_info=json.dumps(info).encode(), query=str(job.get("query") or ""))
