"""A region is introduced to the store only by its snapshot or by the split that created it.
An event of a region the store has never been introduced to (a split that raced the writer's
bootstrap: the parent's snapshot already holds the split, so the replayed log skips it) must
never make the store guess the region's range — guessing "the whole key space" made a region
overlap every other one, and reads returned rows twice while others were missing."""
from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pyspark_theflash.codec import encode_region_key
from pyspark_theflash.store import Store
from pyspark_theflash.store.errors import UnknownRegionError
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column, record_key
from pyspark_theflash.writer.loop import Writer
from pyspark_theflash.writer.options import WriterOptions
from store_events import (
    DB,
    boundary,
    committed,
    event,
    items_table,
    key,
    region,
    resolved_ts,
    row,
    snapshot_event,
    snapshot_write,
)

TABLE = "bank.accounts"


def test_an_event_of_a_region_no_snapshot_or_split_introduced_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    t = items_table()
    store = Store.open(str(tmp_path / "store"))
    store.put_schema(DB, t.to_json())
    left = region(1, b"", boundary(t, 50))  # the parent, snapshotted after it split at handle 50
    store.write([snapshot_event(1, 8, left, [snapshot_write(key(t, h), 100 + h, 99, row(t, id=h, name=f"r{h}"))
                                             for h in range(50)])])
    store.write([resolved_ts(2, 5, 500)])  # the right half's resolved ts: nothing to apply it to
    with pytest.raises(UnknownRegionError, match="region 2 .*never seen"):
        store.write([event(1, 9, [committed(key(t, 10), row(t, id=10, name="new"), 300)]),
                     event(2, 6, [committed(key(t, 60), row(t, id=60, name="x"), 301)])])
    store.flush()
    with store.snapshot() as view:
        assert [(r.id, r.applied_index) for r in view.regions(include_gone=True)] == [(1, 8)]
    rows = store.scan_table("shop.items", 1000).to_pylist()
    assert sorted(r["id"] for r in rows) == list(range(50))  # nothing of the refused batch
    assert {r["name"] for r in rows if r["id"] == 10} == {"r10"}
    store.close()


class SplitDuringBootstrap:
    """The upstream as the writer sees it, with the race made certain: the region splits right
    after the writer listed the regions and before it takes the first snapshot. With
    ``stale_listing`` every later listing returns the first one (a PD client with a stale
    region cache), so only the log's events can reveal the new region."""

    def __init__(self, client: Any, cluster: MiniCluster, split_key: bytes, stale_listing: bool) -> None:
        self._client = client
        self._cluster = cluster
        self._split_key = split_key
        self._stale = stale_listing
        self._listing: list[Any] | None = None
        self._split = threading.Event()

    def regions(self) -> list[Any]:
        if self._stale and self._listing is not None:
            return self._listing
        self._listing = self._client.regions()
        return self._listing

    def region_snapshot(self, region_id: int) -> Any:
        if not self._split.is_set():
            self._split.set()
            assert self._cluster.split_at(self._split_key)
        return self._client.region_snapshot(region_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class RacingWriter(Writer):
    race: dict[str, Any] = {}

    def _connect_upstream(self) -> None:
        super()._connect_upstream()
        self.upstream = SplitDuringBootstrap(self.upstream, **self.race)


@pytest.mark.parametrize("listing", ["listed again", "stale listing"])
def test_a_split_racing_the_writers_bootstrap_loses_and_doubles_no_row(tmp_path: Path, listing: str) -> None:
    binlog = tmp_path / "binlog"
    with MiniCluster(tmp_path / "cluster", binlog_dir=binlog, resolved_ts_interval=0) as up:
        address = up.serve(binlog_port=None)["upstream"]
        table = up.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")],
                                primary_key=["id"])
        up.run_txn(lambda t: [t.insert(TABLE, {"id": i, "balance": i}) for i in range(100)])
        RacingWriter.race = {"cluster": up, "split_key": record_key(table, 50),
                             "stale_listing": listing == "stale listing"}
        options = WriterOptions(binlog=binlog.as_uri(), store=str(tmp_path / "store"), upstream=address,
                                interval_s=0.01, until_caught_up=True)
        RacingWriter(replace(options, bootstrap_snapshot=True)).run()  # seeds the empty store from snapshots
        up.run_txn(lambda t: t.insert(TABLE, {"id": 100, "balance": 100}))  # into the split-off region
        up.run_txn(lambda t: t.update(TABLE, {"id": 60, "balance": -60}))
        up.advance_resolved_ts()
        Writer(options).run()
        ts = up.get_ts()
        expected = {r["id"]: r["balance"] for r in up.scan_table(TABLE, ts)}
    with Store.open(str(tmp_path / "store"), readonly=True) as s:
        got = [(r["id"], r["balance"]) for r in s.scan_table(TABLE, ts).to_pylist()]
        with s.snapshot() as view:
            ranges = sorted((r.start_key, r.end_key) for r in view.regions())
    assert len(got) == len(dict(got)) == 101  # used to be 101 rows of only 51 distinct ids
    assert dict(got) == expected
    # the regions tile the key space: side by side, none overlapping another, none missing
    assert ranges[0][0] == b"" and ranges[-1][1] == b""
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:])), ranges
    assert encode_region_key(record_key(table, 50)) in {end for _start, end in ranges}  # the racing split
