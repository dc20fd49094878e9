"""Issue 51's differential with schema changes (tests/support/delta_ddl_rounds.py: the bank with
splits, merges and dying transactions, ``shop.items`` through ADD COLUMN with a default, RENAME,
a widening MODIFY, DROP and the dropped name added again, the orders workload, compaction, the
upstream's GC, the writer publishing on its own) read by delta-spark in a plain Spark session
besides delta-rs and DuckDB, on local disk (tests/spark/test_delta_spark_ddl_s3.py: the same on
S3). Each read equals TheFlash's own read at the round's ts, with that ts's schema; orders and
order items read by one ``timestampAsOf`` have 0 orphans. The slow run goes 35 rounds (20
after the last schema change) and delta-spark reads more of them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from delta_ddl_rounds import COUNTS, Counts, check_with_delta_rs_and_duckdb, check_with_delta_spark, run_ddl_rounds

pytestmark = pytest.mark.spark


@COUNTS
def test_delta_spark_reads_the_schema_changes_rounds_as_theflash(tmp_path: Path, counts: Counts, delta_spark: Any) -> None:
    rig, published = run_ddl_rounds(tmp_path, counts=counts)
    try:
        check_with_delta_rs_and_duckdb(published, on_s3=False)
        check_with_delta_spark(published, delta_spark, last=counts.last)
    finally:
        rig.close()
