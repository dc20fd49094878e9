"""TPC-H at SF 0.01, differential: the 22 queries over ``format("theflash")`` views give exactly
the rows Spark gives over ``spark.read.parquet`` of the same snapshot (tests/tpch_rig.py).

Both read paths are checked, the native hybrid (compacted parts read by Spark's own Parquet
reader) and the Python data source alone (``native_read=false``). Each side's DataFrames are
loaded once and reused, as views, by all 22 queries: a filter pushed while planning one query
must not narrow what a later query reads from the same DataFrame.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

import pytest

import tpch_rig
from tpch_rig import TABLES, TpchDeployment

pytestmark = pytest.mark.spark

SF = 0.01


@pytest.fixture(scope="module")
def tpch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TpchDeployment]:
    deployment = tpch_rig.deploy(tmp_path_factory.mktemp("tpch"), SF)
    yield deployment
    deployment.close()


@pytest.fixture(scope="module")
def queries() -> dict[int, str]:
    got = tpch_rig.queries()
    assert sorted(got) == list(range(1, 23))
    return got


@pytest.fixture(scope="module")
def expected(spark: Any, tpch: TpchDeployment, queries: dict[int, str]) -> dict[int, list[tuple[Any, ...]]]:
    """Spark's answers over the Parquet copy of the snapshot."""
    tpch_rig.register_views(tpch_rig.parquet_frames(spark, tpch))
    answers = {n: tpch_rig.run_query(spark, n, q).rows for n, q in queries.items()}
    # TPC-H at SF 0.01 answers every query with rows (Q17's one row is NULL there), so an empty
    # answer on the theflash side cannot pass as equal by accident
    assert all(answers.values()), [n for n, rows in answers.items() if not rows]
    return answers


def differences(spark: Any, queries: dict[int, str], expected: dict[int, list[tuple[Any, ...]]]) -> dict[int, str]:
    """Run the 22 queries in order over the registered views; how each wrong answer differs."""
    out = {}
    for n, text in queries.items():
        got = tpch_rig.run_query(spark, n, text).rows
        if got != expected[n]:
            out[n] = tpch_rig.describe_difference(got, expected[n])
    return out


def local_paths(files: list[str]) -> set[str]:
    """Spark's ``inputFiles()`` (file: URIs) as resolved local paths."""
    return {str(Path(unquote(urlparse(f).path)).resolve()) for f in files}


def stable_parts(tpch: TpchDeployment) -> dict[str, set[str]]:
    """The live stable part files of each TPC-H table."""
    from pyspark_theflash.store import Store

    root = Path(tpch.rig.store)
    with Store.open(tpch.rig.store, readonly=True) as store, store.snapshot() as view:
        return {name: {str((root / p.path).resolve()) for p in view.parts(view.table(tpch.qualified(name)).id)
                       if p.kind == "stable"} for name in TABLES}


def test_the_22_queries_on_reused_views_read_natively_equal_spark_on_parquet(
        spark: Any, tpch: TpchDeployment, queries: dict[int, str], expected: dict[int, list[tuple[Any, ...]]]) -> None:
    frames = tpch_rig.theflash_frames(spark, tpch)
    assert any(frames[name].inputFiles() for name in TABLES), "no table is read by Spark's Parquet reader"
    tpch_rig.register_views(frames)

    wrong = differences(spark, queries, expected)

    assert not wrong, f"{len(wrong)}/22 TPC-H queries differ from Parquet: {wrong}"
    # the same DataFrames, after 22 queries' filters were pushed through them, still hold everything
    assert {name: frames[name].count() for name in TABLES} == tpch.rows
    assert {name: spark.table(name).count() for name in TABLES} == tpch.rows


def test_the_22_queries_on_reused_views_through_the_python_source_equal_spark_on_parquet(
        spark: Any, tpch: TpchDeployment, queries: dict[int, str], expected: dict[int, list[tuple[Any, ...]]]) -> None:
    frames = tpch_rig.theflash_frames(spark, tpch, native_read="false")
    assert not any(frames[name].inputFiles() for name in TABLES), "native_read=false read Parquet files"
    tpch_rig.register_views(frames)

    wrong = differences(spark, queries, expected)

    assert not wrong, f"{len(wrong)}/22 TPC-H queries differ from Parquet: {wrong}"
    assert {name: frames[name].count() for name in TABLES} == tpch.rows


def test_every_compacted_part_of_the_tpch_tables_is_read_by_sparks_parquet_reader(
        spark: Any, tpch: TpchDeployment) -> None:
    frames = tpch_rig.theflash_frames(spark, tpch)
    parts = stable_parts(tpch)
    assert all(parts.values()), {name: len(p) for name, p in parts.items()}  # compaction made stable parts
    not_native = {name: sorted(Path(p).name for p in parts[name] - local_paths(frames[name].inputFiles()))
                  for name in TABLES}
    assert not any(not_native.values()), f"stable parts read through the Python source: {not_native}"
