"""The ClickHouse engine (chdb, in-process): ``ClickHouseEngine``. See engine.py."""
from __future__ import annotations

from pyspark_theflash.engine.clickhouse.engine import ClickHouseEngine

__all__ = ["ClickHouseEngine"]
