"""A SparkSession set up for TheFlash: workers run this interpreter and Arrow batches are
passed through."""
from __future__ import annotations

import os
import sys
from typing import Any


def theflash_session(master: str | None = None, app_name: str = "theflash", **conf: Any):
    """Return (or create) a SparkSession configured for ``format("theflash")``.

    Python filter pushdown (``spark.sql.python.filterPushdown.enabled``) is left as it is:
    the theflash source takes no pushed filters (see ``spark/datasource.py``), and with it on
    Spark would re-plan a reused DataFrame for every filtered query.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    local = master is None or master.startswith("local")
    if local:
        # A local session serves nothing beyond this machine: bind the driver to loopback
        # (also silences Spark's "hostname resolves to a loopback address" warning).
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    settings = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.memory": "2g",
        "spark.python.worker.reuse": "true",
    }
    if local:
        settings.update({"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"})
    settings.update({k: str(v) for k, v in conf.items()})
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    # Lets spark.conf.set("theflash.snapshot_ts", ts) reach theflash reads (spark/pin.py) and
    # Spark's Parquet reader read the compacted parts (spark/native.py).
    from pyspark_theflash.spark.hook import install_reader_hook

    install_reader_hook()
    return session
