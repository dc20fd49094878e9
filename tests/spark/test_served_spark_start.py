"""A Spark session started in a process that serves gRPC (issue 55): the mini cluster's
servers in-process (``MiniCluster(...).serve(binlog_port=None)``), then
``theflash_session(master="local[2]")`` and a count through it, in a fresh process with one
core kept busy. PySpark forks its JVM with a ``preexec_fn``; gRPC's fork handlers aborted that
child about one run in seven (JAVA_GATEWAY_EXITED, after "Epoll1Poller ... epoll_wait error:
Bad file descriptor") until the package turned gRPC's fork support off
(``pyspark_theflash/grpc_fork.py``). Each run also starts the product's own children from that
process: the background writer (``writer.daemon``), and the catalog's service, which the JVM
starts (``theflash serve``, from ``spark.sql.catalog.theflash.pd`` and ``.store``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from served_process_child import run_fresh

# the writer, a Spark session, and the catalog's service (started by the session's JVM from PD)
EVERY_CHILD = ("--writer", "--spark", "--catalog")


def test_a_spark_session_starts_in_a_process_serving_grpc(tmp_path: Path) -> None:
    """One fresh process by default (each is a JVM start, with a core kept busy throughout: the
    second run was about 50 s of a loaded 2-core machine, issue 54), its 100 forks the two runs'
    forks before; the 50 runs are the slow test below."""
    results = run_fresh(tmp_path, 1, *EVERY_CHILD, "--forks", "100")
    assert [r["count"] for r in results] == [3]
    assert all(r["forked"] == 100 and r["died"] == [] and r["writer"] > 0 and r["namespaces"] == [] for r in results)


@pytest.mark.slow
def test_a_spark_session_starts_in_a_process_serving_grpc_50_times(tmp_path: Path) -> None:
    results = run_fresh(tmp_path, 50, *EVERY_CHILD)
    assert [r["count"] for r in results] == [3] * 50
    assert all(r["writer"] > 0 and r["namespaces"] == [] for r in results)
