"""``spark.readStream.format("theflash")`` without the connector jar (spark/stream.py): a streaming
query with a checkpoint writes every change to a Parquet sink while transactions commit; the
query and the writer are stopped and restarted several times; replaying the sink onto its first
batch (the snapshot at the start) gives the upstream's rows at the last committed offset, and no
change is in the sink twice. The stream's lease and its failure past lease_ttl are checked on
the ``ChangeStream`` itself."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from change_reference import apply_changes, upstream_snapshot
from churn import Churn, create_churn_table
from flash_rig import FlashRig, wait_for
from pyspark_theflash.latch import connect as connect_latch
from pyspark_theflash.scan.change_stream import ChangeStream, StreamExpiredError, StreamOffset
from pyspark_theflash.store import Store

TABLE = "cs.items"
COLUMNS = ["id", "name", "qty"]


@pytest.fixture()
def rig(tmp_path: Path) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path)
    create_churn_table(r.cluster, TABLE)
    r.start_writer(interval_s=0.05)
    r.wait_replicated(TABLE)
    yield r
    r.close()


def _resolved_past(rig: FlashRig, ts: int) -> bool:
    return ChangeStream(rig.store, TABLE, {"upstream": rig.upstream}).resolved_ts() >= ts


def test_a_checkpointed_stream_restarted_several_times_writes_each_change_once(
        spark: Any, rig: FlashRig, tmp_path: Path) -> None:
    sink, checkpoint = str(tmp_path / "sink"), str(tmp_path / "checkpoint")

    def start() -> Any:
        df = (spark.readStream.format("theflash")
              .options(store=rig.store, upstream=rig.upstream, starting_ts="latest", max_rows_per_trigger="400",
                       lease_ttl="60s").load(TABLE))
        return (df.writeStream.format("parquet").option("path", sink).option("checkpointLocation", checkpoint)
                .trigger(processingTime="300 milliseconds").start())

    with Churn(rig, TABLE, rate=20.0) as churn:
        for round_ in range(3):
            query = start()
            # until two batches with rows are done (a loaded machine starts Python workers slowly)
            wait_for(lambda: query.exception() is not None or
                     len([p for p in query.recentProgress if p["numInputRows"]]) >= 2, 240, "two batches of changes")
            assert query.exception() is None, query.exception()
            time.sleep(0.2)
            query.stop()  # mid-batch, as a kill would: the sink's log keeps whole batches only
            if round_ == 1:  # the writer goes too, and comes back
                rig.stop_writer()
                time.sleep(0.5)
                rig.start_writer(interval_s=0.05)
        assert churn.commits > 100
    last_commit = rig.cluster.get_ts()
    wait_for(lambda: _resolved_past(rig, last_commit), 60, "the store to resolve past the last commit")
    query = start()
    try:
        query.processAllAvailable()
        end = StreamOffset.from_dict(json.loads(query.lastProgress["sources"][0]["endOffset"]))
    finally:
        query.stop()
    assert end.ts >= last_commit

    rows = spark.read.parquet(sink).toArrow().to_pylist()
    keys = [(r["_tidb_rowid"], r["_commit_ts"], r["_change_type"]) for r in rows]
    assert len(keys) == len(set(keys)), "a change is in the sink twice"
    changes = [(r["_tidb_rowid"], r["_commit_ts"], r["_change_type"], {c: r[c] for c in COLUMNS}) for r in rows]
    assert {k for _, _, k, _ in changes} == {"insert", "update_preimage", "update_postimage", "delete"}
    assert apply_changes({}, changes) == upstream_snapshot(rig.cluster, TABLE, end.ts, end.ts)


def test_a_stream_holds_its_lease_at_the_committed_offset_and_fails_clearly_once_it_lapsed(rig: FlashRig) -> None:
    stream = ChangeStream(rig.store, TABLE, {"upstream": rig.upstream, "lease_ttl": "60s"})
    start = stream.initial_offset()
    assert start.snapshot
    first = stream.latest_offset(start)
    assert first == StreamOffset(start.ts) and stream.batch_options(start, first)["changes_from"] == "0"
    with rig.cluster.txn() as t:
        t.update(TABLE, {"id": 1, "qty": 100})
    commit = rig.cluster.get_ts()
    wait_for(lambda: _resolved_past(rig, commit), 30, "the store to resolve the update")
    stream.commit(first)
    nxt = stream.latest_offset(first)
    assert nxt.ts >= commit and stream.batch_options(first, nxt) == {**stream.read_options, "snapshot_ts": str(nxt.ts),
                                                                      "changes_from": str(first.ts),
                                                                      "schema": "current"}
    assert 0 <= stream.lag_ms(nxt) < 60_000
    latch = connect_latch(rig.store)
    held = [lease for lease in latch.leases() if lease.holder == stream.holder]
    assert [int(lease.ts) for lease in held] == [first.ts]
    # a restart (a new object) within lease_ttl adopts the lease at the checkpointed offset
    restarted = ChangeStream(rig.store, TABLE, {"upstream": rig.upstream, "lease_ttl": "60s"})
    restarted.latest_offset(first)
    assert [lease.lease_id for lease in latch.leases() if lease.holder == stream.holder] == [held[0].lease_id]
    # past lease_ttl the lease is gone and GC passes the offset: the stream fails, naming why
    latch.release_lease(held[0].lease_id)
    rig.stop_writer()
    with Store.open(rig.store) as store:
        store.gc(nxt.ts)
    rig.start_writer(interval_s=0.05)
    with pytest.raises(StreamExpiredError, match="lease_ttl"):
        ChangeStream(rig.store, TABLE, {"upstream": rig.upstream, "lease_ttl": "60s"}).latest_offset(first)
