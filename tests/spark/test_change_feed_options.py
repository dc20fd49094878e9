"""Delta's change data feed names (issue 41, item 3): ``readChangeFeed`` with
``startingVersion``/``startingTimestamp`` and ``endingVersion``/``endingTimestamp`` read the
same changes as ``changes_from``/``snapshot_ts`` (a version is a commit TSO, both ends inclusive;
a timestamp a time), through the Python source and the connector jar, batch and stream; a
contradiction is refused naming the options, in both connectors alike."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import pyarrow as pa
import pytest

from change_reference import changes_as_tuples, upstream_changes
from churn import churn_rig
from flash_rig import FlashRig, wait_for
from jvm_spark import JvmSpark
from pyspark_theflash.codec.tso import compose_ts
from pyspark_theflash.scan.change_stream import ChangeStream
from pyspark_theflash.scan.errors import ScanOptionError
from pyspark_theflash.scan.options import ScanOptions, change_feed_options
from pyspark_theflash.service import serve

TABLE = "cf.items"
COLUMNS = ["id", "name", "qty"]
KIND_ORDER = {"delete": 0, "update_preimage": 1, "update_postimage": 2, "insert": 3}
BASE = {"store": "/nowhere", "table": TABLE}


def _key(change: tuple[Any, int, str, dict[str, Any]]) -> tuple[Any, ...]:
    return (change[1], KIND_ORDER[change[2]], change[0])


# -- the mapping, exactly Delta's --------------------------------------------------------------
def test_versions_map_to_changes_from_and_snapshot_ts_both_inclusive() -> None:
    o = ScanOptions.from_mapping({**BASE, "readChangeFeed": "true", "startingVersion": "1000", "endingVersion": "2000"})
    assert (o.changes_from, o.snapshot_ts) == (999, 2000)


def test_timestamps_map_to_the_first_and_last_tso_of_their_millisecond() -> None:
    ms = int(dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.timezone.utc).timestamp() * 1000)
    o = ScanOptions.from_mapping({**BASE, "readchangefeed": "TRUE", "startingTimestamp": "2026-11-21 06:00:00",
                                  "endingTimestamp": "2026-11-21T06:00:00.005Z"})
    assert o.changes_from == compose_ts(ms, 0) - 1
    assert o.snapshot_ts == compose_ts(ms + 5, (1 << 18) - 1)
    o = ScanOptions.from_mapping({**BASE, "readChangeFeed": "true", "startingTimestamp": str(ms / 1000),
                                  "endingTimestamp": "2026-11-21 14:00:00+08:00"})
    assert (o.changes_from, o.snapshot_ts) == (compose_ts(ms, 0) - 1, compose_ts(ms, (1 << 18) - 1))


def test_without_an_end_a_batch_ends_at_its_planned_ts_and_a_stream_starts_there() -> None:
    o = ScanOptions.from_mapping({**BASE, "readChangeFeed": "true", "startingVersion": "1000"})
    assert (o.changes_from, o.snapshot_ts) == (999, None)
    assert change_feed_options({"readchangefeed": "true", "startingversion": "1000"}, stream=True) == {
        "starting_ts": "999"}


@pytest.mark.parametrize("options, says", [
    ({"readChangeFeed": "true", "endingVersion": "5"}, "readChangeFeed=true needs where the changes start"),
    ({"startingVersion": "1000"}, "add readChangeFeed=true"),
    ({"readChangeFeed": "yes", "startingVersion": "1000"}, "readChangeFeed='yes': use true or false"),
    ({"readChangeFeed": "true", "startingVersion": "1000", "changes_from": "7"}, "option changes_from does not go with readChangeFeed"),
    ({"readChangeFeed": "true", "startingVersion": "1000", "versionAsOf": "2000"}, "snapshot_ts (versionAsOf) does not go"),
    ({"readChangeFeed": "true", "startingVersion": "1000", "timestampAsOf": "2026-01-01"}, "as_of (timestampAsOf) does not go"),
    ({"readChangeFeed": "true", "startingVersion": "1000", "starting_ts": "latest"}, "starting_ts does not go"),
    ({"readChangeFeed": "true", "startingVersion": "1000", "startingTimestamp": "2026-01-01"}, "startingVersion or startingTimestamp, not both"),
    ({"readChangeFeed": "true", "startingVersion": "1000", "endingVersion": "3000", "endingTimestamp": "2026-01-01"}, "endingVersion or endingTimestamp, not both"),
    ({"readChangeFeed": "true", "startingVersion": "3000", "endingVersion": "2000"}, "startingVersion='3000' is after endingVersion='2000'"),
    ({"readChangeFeed": "true", "startingVersion": "v3"}, "startingVersion='v3' is not a version"),
    ({"readChangeFeed": "true", "startingTimestamp": "yesterday"}, "startingTimestamp='yesterday' is not a time"),
    ({"readChangeFeed": "true", "startingVersion": "1000", "snapshot": "resolved"}, "drop snapshot"),
])
def test_contradictions_are_refused_naming_the_options(options: dict[str, str], says: str) -> None:
    with pytest.raises(ScanOptionError, match=None) as err:
        ScanOptions.from_mapping({**BASE, **options})
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_stream_with_an_end_is_refused() -> None:
    with pytest.raises(ScanOptionError, match="option endingVersion ends a batch change read"):
        change_feed_options({"readchangefeed": "true", "startingversion": "1000", "endingversion": "2000"}, stream=True)


# -- real reads ----------------------------------------------------------------------------------
class Served:
    def __init__(self, rig: FlashRig, http_url: str) -> None:
        self.rig, self.http_url = rig, http_url


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with churn_rig(tmp_path_factory.mktemp("change-feed"), TABLE) as rig, serve(rig.store, port=0) as running:
        yield Served(rig, running.http_url)


@pytest.fixture(scope="module")
def commits(served: Served) -> tuple[int, int, list[Any]]:
    rig, c = served.rig, served.rig.cluster
    t0 = c.get_ts()
    with c.txn() as t:
        t.insert(TABLE, {"id": 1000, "name": "a", "qty": 1})
    with c.txn() as t:
        t.update(TABLE, {"id": 1000, "qty": 2})
        t.update(TABLE, {"id": 3, "qty": 33})
    with c.txn() as t:
        t.delete(TABLE, 4)
    t1 = c.get_ts()
    wait_for(lambda: ChangeStream(rig.store, TABLE, {"upstream": rig.upstream}).resolved_ts() >= t1, 60,
             "the store to resolve the commits")
    return t0, t1, sorted(upstream_changes(c, TABLE, t0, t1), key=_key)


def jvm_feed(spark: Any, server: str, options: dict[str, str]) -> pa.Table:
    return spark.read.format("theflash").option("server", server).options(**options).load(TABLE).toArrow()


def jvm_feed_error(spark: Any, server: str, options: dict[str, str]) -> str:
    try:
        spark.read.format("theflash").option("server", server).options(**options).load(TABLE).toArrow()
    except Exception as exc:  # noqa: BLE001 - the message is what is checked
        return str(exc)
    return "no error"


@pytest.mark.spark
def test_the_jar_reads_delta_names_as_changes_from_and_snapshot_ts(jvm_spark: JvmSpark, served: Served,
                                                                    commits: tuple[int, int, list[Any]]) -> None:
    t0, t1, want = commits
    first, last = want[0][1], want[-1][1]
    # inclusive both ends: startingVersion = the first commit, endingVersion = the last
    got = jvm_spark.call(jvm_feed, served.http_url, {"readChangeFeed": "true", "startingVersion": str(first),
                                                     "endingVersion": str(last)})
    assert got.column_names == [*COLUMNS, "_change_type", "_commit_ts", "_commit_timestamp", "_tidb_rowid"]
    assert sorted(changes_as_tuples(got, COLUMNS), key=_key) == want
    # a later start leaves the first commit out; no end reads to the latest (a fresh ts at planning)
    later = jvm_spark.call(jvm_feed, served.http_url, {"readChangeFeed": "true", "startingVersion": str(first + 1)})
    assert sorted(changes_as_tuples(later, COLUMNS), key=_key) == [c for c in want if c[1] > first]
    refused = jvm_spark.call(jvm_feed_error, served.http_url, {"readChangeFeed": "true", "startingVersion": str(first),
                                                               "changes_from": str(t0)})
    assert "option changes_from does not go with readChangeFeed" in refused
    refused = jvm_spark.call(jvm_feed_error, served.http_url, {"readChangeFeed": "true", "endingVersion": str(t1)})
    assert "readChangeFeed=true needs where the changes start" in refused


@pytest.mark.spark
def test_the_python_source_reads_delta_names_as_changes_from_and_snapshot_ts(
        spark: Any, served: Served, commits: tuple[int, int, list[Any]]) -> None:
    t0, t1, want = commits
    rig = served.rig
    first, last = want[0][1], want[-1][1]

    def read(**options: str) -> pa.Table:
        return (spark.read.format("theflash").options(store=rig.store, upstream=rig.upstream, **options)
                .load(TABLE).toArrow())

    got = read(readChangeFeed="true", startingVersion=str(first), endingVersion=str(last))
    assert sorted(changes_as_tuples(got, COLUMNS), key=_key) == want
    latest = read(readChangeFeed="true", startingVersion=str(first + 1))
    assert sorted(changes_as_tuples(latest, COLUMNS), key=_key) == [c for c in want if c[1] > first]
