"""A Spark session started in a process that serves gRPC (issue 55): the mini cluster's
servers in-process (``MiniCluster(...).serve(binlog_port=None)``), then
``theflash_session(master="local[2]")`` and a count through it, in a fresh process with one
core kept busy. PySpark forks its JVM with a ``preexec_fn``; gRPC's fork handlers aborted that
child about one run in seven (JAVA_GATEWAY_EXITED, after "Epoll1Poller ... epoll_wait error:
Bad file descriptor") until the package turned gRPC's fork support off
(``pyspark_theflash/grpc_fork.py``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from served_process_child import run_fresh


def test_a_spark_session_starts_in_a_process_serving_grpc(tmp_path: Path) -> None:
    results = run_fresh(tmp_path, 2, "--spark", "--forks", "50")
    assert [r["count"] for r in results] == [3, 3]
    assert all(r["died"] == [] for r in results)


@pytest.mark.slow
def test_a_spark_session_starts_in_a_process_serving_grpc_50_times(tmp_path: Path) -> None:
    results = run_fresh(tmp_path, 50, "--spark")
    assert [r["count"] for r in results] == [3] * 50
