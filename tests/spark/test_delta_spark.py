"""The replica as Delta tables, read by a plain Spark session with delta-spark (no TheFlash jar):
the two-table bank runs through the mini cluster, capture and the writer while publication rounds
publish both tables at one resolved ts each. At every round, delta-spark's ``versionAsOf`` and
``timestampAsOf`` (the round's in-commit timestamp), delta-rs and DuckDB each return exactly
TheFlash's own read at the round's ts, row for row, and the total over both tables, read by
timestamp as one consistent snapshot, is the bank's constant. The same runs with the tables
published to a real S3-compatible server on loopback (SeaweedFS: tests/support/s3_server.py):
delta-spark reads ``s3a://`` through hadoop-aws, delta-rs and DuckDB read ``s3://``, the keys
in the environment."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from delta_bank_rounds import ROUNDS, SLOW_ROUNDS, bank_rounds_read_by_every_reader

pytestmark = pytest.mark.spark

# the slow run publishes and reads one more round (a second checkpoint)
ROUND_COUNTS = pytest.mark.parametrize("rounds", [ROUNDS, pytest.param(SLOW_ROUNDS, marks=pytest.mark.slow)])


@ROUND_COUNTS
def test_delta_spark_delta_rs_and_duckdb_read_each_round_as_theflash_at_its_ts(tmp_path: Path, rounds: int,
                                                                               delta_spark: Any) -> None:
    bank_rounds_read_by_every_reader(tmp_path, delta_spark, rounds=rounds)
