"""Issue 51's differential with schema changes (tests/support/delta_ddl_rounds.py: the bank with
splits, merges and dying transactions, ``shop.items`` through ADD COLUMN with a default, RENAME,
a widening MODIFY, DROP and the dropped name added again, the orders workload, compaction, the
upstream's GC, the writer publishing on its own) read by delta-spark in a plain Spark session
besides delta-rs and DuckDB, on local disk and on a real S3-compatible server on loopback
(SeaweedFS; delta-spark through S3A). Each read equals TheFlash's own read at the round's ts,
with that ts's schema; orders and order items read by one ``timestampAsOf`` have 0 orphans."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from delta_ddl_rounds import check_with_delta_rs_and_duckdb, check_with_delta_spark, run_ddl_rounds
from pyspark_theflash.lake.errors import LakeSetupError
from pyspark_theflash.lake.jars import delta_spark_jars, s3a_jars

pytestmark = pytest.mark.spark


def _jars(s3: bool) -> str:
    try:  # the set-up command fetched them: missing, this fails (it does not skip)
        return ",".join(str(j) for j in [*delta_spark_jars(), *(s3a_jars() if s3 else [])])
    except LakeSetupError as exc:
        pytest.fail(str(exc))


def test_delta_spark_reads_the_schema_changes_rounds_as_theflash(tmp_path: Path) -> None:
    rig, published = run_ddl_rounds(tmp_path)
    try:
        check_with_delta_rs_and_duckdb(published, on_s3=False)
        check_with_delta_spark(published, tmp_path, _jars(False))
    finally:
        rig.close()


def test_delta_spark_reads_the_schema_changes_rounds_from_s3_through_s3a(tmp_path: Path, s3_server: Any,
                                                                       s3_bucket: str) -> None:
    rig, published = run_ddl_rounds(tmp_path, to=f"s3://{s3_bucket}/replica")
    try:
        check_with_delta_rs_and_duckdb(published, on_s3=True)
        check_with_delta_spark(published, tmp_path, _jars(True), hadoop=s3_server.hadoop_conf())
    finally:
        rig.close()
