"""The mini cluster's DDL history: each schema change as the finished job TiDB would list."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark_theflash.schema.ddl_jobs import DdlJob, job_of_ddl

if TYPE_CHECKING:
    from pyspark_theflash.proto import binlog_pb2
    from pyspark_theflash.upstream.tidb import Catalog


def ddl_history_job(ddl: binlog_pb2.Ddl, catalog: Catalog) -> DdlJob:
    """The job of a binlog ``Ddl``; its id is the schema version the change made (unique and
    growing, as TiDB's job ids are)."""
    schema_id = next((d.id for d in catalog.databases() if d.name == ddl.db), 0)
    return job_of_ddl(ddl, int(ddl.schema_version) or int(ddl.commit_ts), schema_id)
