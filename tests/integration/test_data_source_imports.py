"""What a Spark Python worker loads to run the data source: every planning and reading process of
a session without the jar imports ``pyspark_theflash.spark.datasource``, so that import loads only
the modules it uses (``lazy_exports``: the packages' names imported when first named). Checked in a
child process: this one has the whole package loaded already."""
from __future__ import annotations

import json
import subprocess
import sys

# What the data source's import chain (scan.options -> store.keyspace, scan.errors -> codec.tso)
# loaded with eager package __init__s, none of which it uses before a read is planned.
NOT_AT_IMPORT = ["grpc", "pyspark_theflash.store.compaction", "pyspark_theflash.store.store",
                 "pyspark_theflash.codec.batch", "pyspark_theflash.scan.planner", "pyspark_theflash.spark.session"]


def test_importing_the_data_source_loads_neither_the_planner_nor_the_store_nor_grpc() -> None:
    code = f"""
import json, sys
import pyspark.sql.datasource
import pyspark_theflash.spark.datasource
print(json.dumps([m for m in {NOT_AT_IMPORT!r} if m in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
