"""The ``theflash`` program never imports pandas (pyspark_theflash/pandas_probe.py): pyarrow
imports it on its first conversion of Python objects, 0.45 CPU s and about 34 MiB of a process
that never uses it, and capture and the writer are the processes started most often. Checked from
outside, on processes doing their real work: capture to ``--until-ts`` and the writer to
``--until-caught-up`` over a mini cluster, their imports listed by ``-X importtime``; the replica
is read back. tests/integration/test_capture_without_pandas.py checks capture's own code paths."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from capture_rig import TABLES, assert_equal_at, run_workloads
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.workloads import Faults

THEFLASH = [sys.executable, "-m", "pyspark_theflash"]


def imported(stderr: str) -> set[str]:
    """The modules a process imported, from what ``-X importtime`` wrote to its stderr."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MiniCluster]:
    c = MiniCluster(tmp_path / "up", tmp_path / "upstream-log", resolved_ts_interval=0.05, region_split_keys=25)
    c.serve(stores=2)
    yield c
    c.close()


def test_pyarrow_imports_pandas_on_its_first_conversion_where_nothing_stops_it() -> None:
    """The premise: pandas is installed here, and a plain process converting a list imports it."""
    code = "import sys, pyarrow as pa; pa.array([1, 2]); print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_capture_and_the_writer_replicate_without_importing_pandas(cluster: MiniCluster, tmp_path: Path) -> None:
    bank, orders = run_workloads(cluster, Faults(split_merge=0.1), count=120, rate=0)
    bank.start()
    orders.start()
    bank.join()
    orders.join()
    final = cluster.get_ts()
    binlog, store = tmp_path / "binlog", tmp_path / "store"
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    capture = subprocess.run(THEFLASH + ["capture", "--pd", cluster.pd_address.removeprefix("pd://"),
                                         "--tidb", f"http://{cluster.status_address}", "--binlog", str(binlog),
                                         "--until-ts", str(final)], capture_output=True, text=True, timeout=120, env=env)
    writer = subprocess.run(THEFLASH + ["writer", "run", "--binlog", f"file://{binlog}", "--store", str(store),
                                        "--until-caught-up"], capture_output=True, text=True, timeout=120, env=env)

    for name, done in (("capture", capture), ("writer", writer)):
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
        modules = imported(done.stderr)
        assert {"pyarrow", "pyarrow.lib"} <= modules, f"{name} converted nothing with pyarrow"
        # (``pandas`` itself may be listed: the probe's import, refused; pandas loads its
        # subpackages first thing when it is imported)
        assert not {m for m in modules if m.startswith("pandas.")}, f"{name} imported pandas"
    assert assert_equal_at(cluster, store, TABLES, final) > 0


def test_a_process_that_uses_pandas_after_the_probe_still_gets_it() -> None:
    """The probe answered without pandas, pyarrow converts Python objects without importing it;
    ``to_pandas()`` then imports it, and from there pyarrow reads pandas objects as pandas (a NaN
    of a float Series is a null, as ``from_pandas`` says)."""
    code = """
import json, sys
from pyspark_theflash.pandas_probe import skip_pandas_probe_when_pyarrow_loads
skip_pandas_probe_when_pyarrow_loads()
import pyarrow as pa
table = pa.table({"a": [1, None, 3], "b": ["x", "y", None]})
before = "pandas" in sys.modules
frame = table.to_pandas()
import pandas as pd
series = pa.array(pd.Series([1.5, float("nan")]))
print(json.dumps([before, "pandas" in sys.modules, frame["b"].tolist(), series.null_count]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '[false, true, ["x", "y", null], 1]'
