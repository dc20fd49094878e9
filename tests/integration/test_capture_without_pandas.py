"""Capture never imports pandas: ``pa.array`` (and ``pa.scalar``, a bool array's ``to_numpy``)
import it on their first call, about 34 MiB of a process that never uses it — the largest
single part of an idle capture's memory (docs/capture.md, "Memory per region"). Checked in a
child process: this one has pandas loaded already."""
from __future__ import annotations

import subprocess
import sys


def test_capture_makes_snapshots_and_takes_rows_without_importing_pandas() -> None:
    code = """
import sys
import numpy as np
import pyarrow as pa
from pyspark_theflash.capture import capture, feed_columns
from pyspark_theflash.binlog import snapshot_batch
from pyspark_theflash.capture.region_feed import RegionFeed
snapshot_batch.empty_snapshot()
RegionFeed(1, b"", b"", 1, 1, 1, 1).snapshot_columns()
keys = pa.BinaryArray.from_buffers(pa.binary(), 3, [None,
    pa.py_buffer(np.array([0, 1, 3, 4], np.int32)), pa.py_buffer(b"abba")])
feed_columns.first_versions(keys, np.array([1, 2, 3], np.uint64))
print("pandas" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
