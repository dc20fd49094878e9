"""The jar-less source's journal of read plannings (spark/plan_journal.py): plannings that
overlap in time at different ts are one query reading two snapshots, said once per application."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyspark_theflash.spark.plan_journal import JOURNAL, WARNED, record_planning


def test_plannings_that_overlap_at_different_ts_warn_once_and_name_each_table_at_its_ts(tmp_path: Path) -> None:
    assert record_planning("shop.orders", 100, started=10.0, ended=12.0, directory=tmp_path) is None  # alone so far
    said = record_planning("shop.order_items", 101, started=10.5, ended=11.0, directory=tmp_path)
    assert said is not None and "shop.order_items at 101" in said and "shop.orders at 100" in said
    assert (tmp_path / WARNED).read_text().strip() == said
    assert record_planning("shop.customers", 102, started=11.0, ended=13.0, directory=tmp_path) is None  # once


def test_plannings_at_one_ts_or_apart_in_time_say_nothing(tmp_path: Path) -> None:
    assert record_planning("bank.checking", 7, started=10.0, ended=11.0, directory=tmp_path) is None
    assert record_planning("bank.savings", 7, started=10.2, ended=11.5, directory=tmp_path) is None  # one snapshot_ts
    # begun after both ended (an action ran between them): another query
    assert record_planning("bank.savings", 8, started=12.0, ended=12.5, directory=tmp_path) is None
    assert not (tmp_path / WARNED).exists()


def test_a_planning_outside_spark_has_no_journal_and_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPARK_LOCAL_DIRS", raising=False)
    assert record_planning("shop.orders", 1, started=0.0) is None


def test_torn_or_foreign_lines_in_the_journal_are_passed_over(tmp_path: Path) -> None:
    (tmp_path / JOURNAL).write_text('["shop.orders", 100, 10.0\n7\n{"a": 1}\n["t", "x", 1, 2]\nnot json\n')
    assert record_planning("shop.orders", 100, started=10.0, ended=12.0, directory=tmp_path) is None
    said = record_planning("shop.order_items", 101, started=10.5, ended=11.0, directory=tmp_path)
    assert said is not None and "shop.orders at 100" in said and "shop.order_items at 101" in said
