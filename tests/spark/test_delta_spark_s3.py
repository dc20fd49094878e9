"""The rounds of tests/spark/test_delta_spark.py published to a real S3-compatible server on
loopback (SeaweedFS: tests/support/s3_server.py): delta-spark reads ``s3a://`` through
hadoop-aws, delta-rs and DuckDB read ``s3://``, the keys in the environment; each equal to
TheFlash's own read at the round's ts. (A file of its own: the two run on both test workers.)"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from delta_bank_rounds import ROUNDS, SLOW_ROUNDS, bank_rounds_read_by_every_reader

pytestmark = pytest.mark.spark

# the slow run publishes and reads one more round (a second checkpoint)
ROUND_COUNTS = pytest.mark.parametrize("rounds", [ROUNDS, pytest.param(SLOW_ROUNDS, marks=pytest.mark.slow)])


@ROUND_COUNTS
def test_the_same_rounds_published_to_s3_read_the_same_through_s3a_and_s3(tmp_path: Path, rounds: int, s3_bucket: str,
                                                                          delta_spark: Any) -> None:
    bank_rounds_read_by_every_reader(tmp_path, delta_spark, to=f"s3://{s3_bucket}/replica", rounds=rounds)
