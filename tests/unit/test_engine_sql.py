"""An engine that computes no SQL itself says so by type (``Engine.runs_sql``), and asked
anyway refuses with ``SqlUnsupportedError`` naming what to do; the service checks
``runs_sql`` first (tests/integration/test_flight_sql.py, the HTTP /v1/sql tests)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyspark_theflash.engine import open_engine
from pyspark_theflash.engine.interface import SqlUnsupportedError
from pyspark_theflash.store import Store


def test_the_native_engine_runs_no_sql_and_refuses_a_query_by_name(tmp_path: Path) -> None:
    Store.open(str(tmp_path / "store")).close()  # an empty native store
    with open_engine(str(tmp_path / "store"), readonly=True) as engine:
        assert engine.runs_sql is False
        with pytest.raises(SqlUnsupportedError, match="engine computes no SQL of its own: queries over its store "
                                                      "run in Spark"):
            engine.run_sql("SELECT 1")
