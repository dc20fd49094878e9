"""What is parsed once and read many times (issue 54): the DDL jobs capture sees on every poll are
converted only when new (``finished_ts`` read without converting), and a manifest row's table
info is parsed once per process and shared by every view."""
from __future__ import annotations

import json

import pytest

from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.schema.ddl_jobs import ddl_of_job, finished_ts, job_of_ddl
from pyspark_theflash.store.errors import ManifestDamagedError
from pyspark_theflash.store.views import table_info_from_row

INFO = {"id": 41, "name": {"O": "t", "L": "t"}, "schema_version": 3, "pk_is_handle": True,
        "cols": [{"id": 1, "name": {"O": "id", "L": "id"}, "offset": 0, "state": 5,
                  "type": {"Tp": 8, "Flag": 3, "Flen": 20}}]}


def _job(commit_ts: int) -> dict[str, object]:
    ddl = binlog_pb2.Ddl(type=binlog_pb2.Ddl.ADD_COLUMN, commit_ts=commit_ts, schema_version=3, db="d", table_id=41,
                         table_info=json.dumps(INFO).encode(), query="ALTER TABLE t ADD COLUMN c INT")
    return dict(job_of_ddl(ddl, job_id=7, schema_id=2))


def test_finished_ts_is_the_commit_ts_ddl_of_job_converts_to() -> None:
    for ts in (1, 449_000_000_000_000_000, 2**63 + 5):
        job = _job(ts)
        converted = ddl_of_job(job)
        assert converted is not None and finished_ts(job) == converted.commit_ts == ts


@pytest.mark.parametrize("binlog", [None, {}, {"FinishedTS": None}, {"FinishedTS": "soon"}, {"FinishedTS": [1]},
                                    {"FinishedTS": float("inf")}, {"FinishedTS": float("nan")}, "x"])
def test_a_job_without_a_readable_finished_ts_has_none_and_is_left_to_ddl_of_job(binlog: object) -> None:
    """None sends the job to ``ddl_of_job``, which skips it or says what is wrong: never dropped
    unseen by the filter."""
    job = {**_job(5), "binlog": binlog}
    assert finished_ts(job) is None


def test_a_rows_table_info_is_parsed_once_and_the_same_object_serves_every_read() -> None:
    text = json.dumps({**INFO, "id": 9041})
    first = table_info_from_row(text, "d")
    again = table_info_from_row(str(text.encode().decode()), "d")  # an equal string, another object
    assert again is first and first.id == 9041 and first.db == "d" and [c.name for c in first.columns] == ["id"]
    other_db = table_info_from_row(text, "e")
    assert other_db is not first and other_db.db == "e"


def test_a_damaged_row_is_refused_every_time_not_remembered() -> None:
    for _ in range(2):
        with pytest.raises(ManifestDamagedError, match="does not parse"):
            table_info_from_row('{"id": 1, "name": "t", "cols": [', "d")
