"""delta-spark reads a column-mapped replica table (mode ``id``: it resolves each data file's
columns by their Parquet field ids) through RENAME COLUMN, DROP COLUMN and a re-add of the
dropped column's name, with the stable part written before the changes named in place at every
version: each version by ``versionAsOf`` equals TheFlash's read at its ts; and so does each
version of a table published before column mapping that turned it on at its next version (the
rounds of tests/support/delta_column_mapping_rounds.py; delta-rs and DuckDB read them in
tests/integration/test_delta_column_mapping.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from delta_column_mapping_rounds import publish_across_turning_column_mapping_on, publish_through_column_changes
from delta_ddl_rounds import read_with_delta_spark
from delta_readers import delta_spark_checksums

pytestmark = pytest.mark.spark


def test_delta_spark_reads_each_version_through_rename_drop_re_add_and_turning_column_mapping_on(
        tmp_path: Path, delta_spark: Any) -> None:
    published = publish_through_column_changes(tmp_path / "s")
    assert all(published.stable_path in parts for parts in published.store_parts[:4])
    turned_on = publish_across_turning_column_mapping_on(tmp_path / "before")
    expected = [(str(p.root), version, columns, want) for p in (published, turned_on)
                for version, columns, want in p.versions]
    reads = [(root, "versionAsOf", str(version), columns) for root, version, columns, _ in expected]
    got = delta_spark.call(read_with_delta_spark, reads, timeout=600)  # (the run's delta-spark session)
    # delta-spark finds each version's checksum right; the version 0 rewritten as the code before
    # column mapping wrote it has none, as that code wrote none
    versions = [(root, version) for root, version, _, _ in expected]
    assert delta_spark.call(delta_spark_checksums, versions, timeout=600) == [(str(turned_on.root), 0)]
    for (root, version, columns, want), rows in zip(expected, got):
        assert rows == sorted(want), f"delta-spark at version {version} of {root} ({columns})"
