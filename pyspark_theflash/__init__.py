"""TheFlash for Spark: a columnar, transaction-consistent replica of TiDB/TiKV, read from Spark.

``spark.read.format("theflash")`` finds this package without registration: Spark looks for
importable packages named ``pyspark_*`` that expose ``DefaultSource``. The data source is
imported lazily so that the CLI, the writer and the codec never pay for importing PySpark.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["DefaultSource", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "DefaultSource":
        from pyspark_theflash.spark.datasource import TheFlashDataSource

        return TheFlashDataSource
    raise AttributeError(f"module 'pyspark_theflash' has no attribute {name!r}")
