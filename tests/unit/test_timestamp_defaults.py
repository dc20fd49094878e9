"""TIMESTAMP origin defaults follow the column's ``version``, as TiDB's ``getColDefaultValue``
does: a column of version >= 1 keeps its default text in UTC; a column of version 0 (made by
TiDB before 2.1, still found in upgraded clusters) keeps it in the TiDB server's system time
zone, which TheFlash takes from ``THEFLASH_TIDB_SYSTEM_TIME_ZONE`` (and refuses to guess)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import store_events as se
from engine_stores import ENGINES, open_store
from pyspark_theflash.binlog.position import Position
from pyspark_theflash.schema import ColumnInfo, SchemaError, builder, origin_default_value

UTC = dt.timezone.utc
TEXT = "2024-01-01 08:00:00"


def ts_column(version: int) -> ColumnInfo:
    return builder.column("t", "TIMESTAMP", default=TEXT, version=version)


def test_version_1_and_later_read_the_default_as_utc_and_version_0_in_the_system_zone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THEFLASH_TIDB_SYSTEM_TIME_ZONE", "Asia/Shanghai")
    assert origin_default_value(ts_column(2)) == dt.datetime(2024, 1, 1, 8, tzinfo=UTC)
    assert origin_default_value(ts_column(1)) == dt.datetime(2024, 1, 1, 8, tzinfo=UTC)
    assert origin_default_value(ts_column(0)) == dt.datetime(2024, 1, 1, 0, tzinfo=UTC)  # 08:00 at +08:00
    # the version travels in TiDB's JSON; a table info without it is today's
    assert ColumnInfo.from_json(ts_column(0).to_json()).version == 0
    raw = ts_column(1).to_json()
    raw.pop("version")
    assert ColumnInfo.from_json(raw).version == 2


def test_a_version_0_default_without_the_system_zone_is_refused_with_what_to_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THEFLASH_TIDB_SYSTEM_TIME_ZONE", raising=False)
    with pytest.raises(SchemaError, match="THEFLASH_TIDB_SYSTEM_TIME_ZONE.*@@system_time_zone"):
        origin_default_value(ts_column(0))
    zero = builder.column("t", "TIMESTAMP", default="0000-00-00 00:00:00", version=0)
    assert origin_default_value(zero) is None  # no zone needed for the zero date


@pytest.mark.parametrize("engine", ENGINES)
def test_rows_older_than_an_added_version_0_timestamp_column_read_its_default_in_the_system_zone(
        tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THEFLASH_TIDB_SYSTEM_TIME_ZONE", "America/New_York")
    v1 = se.items_table()
    v2 = se.items_table(schema_version=2, extra=[builder.column("t0", "TIMESTAMP", default=TEXT, version=0),
                                                 builder.column("t1", "TIMESTAMP", default=TEXT, version=1)])
    with open_store(tmp_path / engine, engine) as store:
        store.put_schema(se.DB, v1.to_json(), commit_ts=50)
        events = [se.snapshot_event(1, 5, se.region(1)),
                  se.event(1, 6, [se.committed(se.key(v1, 1), se.row(v1, id=1, name="old"), 100)])]
        store.write(events, Position(0, 2))
        store.flush()
        store.put_schema(se.DB, v2.to_json(), commit_ts=200)
        later = dt.datetime(2025, 5, 5, tzinfo=UTC)
        store.write([se.event(1, 7, [se.committed(se.key(v2, 2), se.row(v2, id=2, name="new", t0=later, t1=later), 300)])],
                    Position(0, 3))
        store.flush()
        got = sorted(store.scan_table(f"{se.DB}.items", 400).to_pylist(), key=lambda r: r["id"])
    assert [(r["t0"], r["t1"]) for r in got] == [
        (dt.datetime(2024, 1, 1, 13, tzinfo=UTC), dt.datetime(2024, 1, 1, 8, tzinfo=UTC)),  # 08:00 EST is 13:00 UTC
        (later, later)]
