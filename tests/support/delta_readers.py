"""Independent Delta readers of the published tables, as the tests use them: delta-rs
(``deltalake``: DataFusion's scan, which applies deletion vectors) and DuckDB's ``delta``
extension loaded from the duckdb-extension-delta wheel (no network).

A table on S3 is read by its ``s3://`` URI: delta-rs takes the endpoint and keys from the
environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``..., object_store's ``from_env``);
DuckDB from an S3 secret (httpfs, loaded from its wheel too) made of the same variables."""
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


def duckdb_with_delta_on_s3() -> Any:
    """DuckDB with ``delta`` and ``httpfs`` loaded from their wheels and an S3 secret from the
    environment (the endpoint, the keys, the region): ``delta_scan('s3://...')``."""
    import os
    from urllib.parse import urlparse

    import duckdb
    import duckdb_extension_httpfs

    con = duckdb_with_delta()
    ext = (Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}"
           / "httpfs.duckdb_extension")
    if not ext.is_file():
        pytest.fail(f"{ext} is missing: duckdb-extension-httpfs must match duckdb {duckdb.__version__} (pyproject.toml)")
    con.load_extension(str(ext))
    endpoint = urlparse(os.environ["AWS_ENDPOINT_URL"])
    con.execute("CREATE SECRET theflash_s3 (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, "
                "URL_STYLE 'path', USE_SSL ?)",
                [os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_REGION"],
                 endpoint.netloc, endpoint.scheme == "https"])
    return con


def delta_rs_rows(root: Path | str, version: int, columns: list[str]) -> list[tuple[Any, ...]]:
    """The table's rows at ``version`` ordered by id (DeltaTable.to_pyarrow_table refuses the
    deletionVectors feature; the QueryBuilder's scan reads it)."""
    import deltalake

    table = deltalake.DeltaTable(str(root), version=version)
    reader = deltalake.QueryBuilder().register("t", table).execute(f"select {', '.join(columns)} from t order by id")
    return [tuple(r.values()) for r in pa.table(reader.read_all()).to_pylist()]


def duckdb_rows(con: Any, root: Path | str, version: int, columns: list[str]) -> list[tuple[Any, ...]]:
    return con.sql(f"select {', '.join(columns)} from delta_scan('{root}', version => {version}) order by id").fetchall()


def delta_spark_checksums(spark: Any, versions: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """delta-spark's own check of each (path, version)'s version checksum (``<v>.crc``) against
    its state reconstruction of that version (``Snapshot.validateChecksum``: with
    ``spark.databricks.delta.checksum.mismatch.fatal``, the tests' setting and delta-spark's
    default, a mismatch raises ``DeltaIllegalStateException`` naming the fields). Runs in the
    ``delta_spark`` fixture's worker (``spark.call``); returns the versions delta-spark found no
    checksum for. A read never runs this check (delta-spark validates before a write or a
    checkpoint), so the tests ask for it. ``DeltaLog.forTable``, ``getSnapshotAt`` and
    ``validateChecksum`` are delta-spark's Scala API, called through py4j: a signature that
    moves fails here, loudly, not in the product."""
    jvm = spark._jvm
    none = jvm.scala.Option.empty()
    context = jvm.org.apache.spark.api.python.PythonUtils.toScalaMap(jvm.java.util.HashMap())
    missing = []
    for path, version in versions:
        log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
        snapshot = log.getSnapshotAt(version, none, none, False)
        if not snapshot.checksumOpt().isDefined():
            missing.append((path, version))
        elif not snapshot.validateChecksum(context):   # only when the mismatch is not fatal
            raise AssertionError(f"delta-spark finds the checksum of {path} version {version} wrong")
    return missing
