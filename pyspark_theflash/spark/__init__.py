"""The ``theflash`` Spark data source and its session helpers (only translation: planning
lives in ``scan/``, bytes in ``codec/``, MVCC in ``store/``)."""
from __future__ import annotations

from pyspark_theflash.spark.pin import pinned_snapshot
from pyspark_theflash.spark.session import theflash_session

__all__ = ["pinned_snapshot", "theflash_session"]
