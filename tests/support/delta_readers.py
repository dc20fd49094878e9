"""Independent Delta readers of the published tables, as the tests use them: delta-rs
(``deltalake``: DataFusion's scan, which applies deletion vectors) and DuckDB's ``delta``
extension loaded from the duckdb-extension-delta wheel (no network)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest


def duckdb_with_delta() -> Any:
    import duckdb
    import duckdb_extension_delta

    ext = (Path(duckdb_extension_delta.__file__).parent / "extensions" / f"v{duckdb.__version__}"
           / "delta.duckdb_extension")
    if not ext.is_file():
        pytest.fail(f"{ext} is missing: duckdb-extension-delta must match duckdb {duckdb.__version__} (pyproject.toml)")
    con = duckdb.connect()
    con.load_extension(str(ext))
    return con


def delta_rs_rows(root: Path, version: int, columns: list[str]) -> list[tuple[Any, ...]]:
    """The table's rows at ``version`` ordered by id (DeltaTable.to_pyarrow_table refuses the
    deletionVectors feature; the QueryBuilder's scan reads it)."""
    import deltalake

    table = deltalake.DeltaTable(str(root), version=version)
    reader = deltalake.QueryBuilder().register("t", table).execute(f"select {', '.join(columns)} from t order by id")
    return [tuple(r.values()) for r in pa.table(reader.read_all()).to_pylist()]


def duckdb_rows(con: Any, root: Path, version: int, columns: list[str]) -> list[tuple[Any, ...]]:
    return con.sql(f"select {', '.join(columns)} from delta_scan('{root}', version => {version}) order by id").fetchall()
