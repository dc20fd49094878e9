"""CLI errors a user meets on day one (issue 41, item 8): one line naming what to do, a non-zero
exit, no traceback."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from pyspark_theflash.upstream.cluster import MiniCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MiniCluster]:
    c = MiniCluster(tmp_path / "up", tmp_path / "upstream-log", resolved_ts_interval=0.05, gc_run_interval_s=None)
    c.serve(stores=1)
    try:
        yield c
    finally:
        c.close()


def test_a_second_capture_on_the_same_binlog_says_so_in_one_line(cluster: MiniCluster, tmp_path: Path) -> None:
    capture = [sys.executable, "-m", "pyspark_theflash", "capture", "--pd", cluster.pd_address.removeprefix("pd://"),
               "--tidb", f"http://{cluster.status_address}", "--binlog", str(tmp_path / "binlog")]
    first = subprocess.Popen(capture, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert first.stdout is not None
        deadline = time.monotonic() + 60
        while not (tmp_path / "binlog").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        second = subprocess.run(capture, capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert "Traceback" not in second.stderr, second.stderr
        assert "another `theflash capture`" in second.stderr and "another --binlog" in second.stderr, second.stderr
        lines = [line for line in second.stderr.splitlines() if line.startswith("theflash capture:")]
        assert len(lines) == 1, second.stderr
    finally:
        first.terminate()
        first.wait(timeout=60)
