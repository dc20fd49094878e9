"""tests/spark/test_delta_spark_ddl.py's differential with the store's files on a real
S3-compatible server on loopback (SeaweedFS): the writer keeps its stable parts there
(``--parts-to``, its local disk caching none) and publishes the tables there, naming its own
objects in place; TheFlash's own reads fetch the parts from there, delta-spark reads ``s3a://``
through hadoop-aws, delta-rs and DuckDB read ``s3://``. (A file of its own: the two run on both
test workers.) tests/integration/test_delta_s3.py covers publishing a local store to S3 (copies)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from delta_ddl_rounds import COUNTS, Counts, check_with_delta_rs_and_duckdb, check_with_delta_spark, run_ddl_rounds

pytestmark = pytest.mark.spark


@COUNTS
def test_delta_spark_reads_the_schema_changes_rounds_from_s3_through_s3a(tmp_path: Path, counts: Counts, s3_bucket: str,
                                                                       delta_spark: Any) -> None:
    rig, published = run_ddl_rounds(tmp_path, parts_to=f"s3://{s3_bucket}/replica", counts=counts)
    try:
        check_with_delta_rs_and_duckdb(published, on_s3=True)
        check_with_delta_spark(published, delta_spark, last=counts.last)
    finally:
        rig.close()
