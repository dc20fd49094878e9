"""The writer's rows/s counts an initial copy's rows: a snapshot's versions (its RowBatch and
its row-by-row writes) as well as live rows. A copy of millions of rows showed "0 rows/s" in
the progress line, the status and /metrics until its first live row."""
from __future__ import annotations

from pyspark_theflash.binlog.event_batch import decode_events
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.writer.loop import _batch_progress


def _snapshot(region: int, index: int, batch_rows: int, writes: int) -> binlog_pb2.Event:
    event = binlog_pb2.Event(region_id=region, index=index)
    event.snapshot.batch.count = batch_rows
    event.snapshot.writes.extend(binlog_pb2.SnapshotWrite(key=b"t%d" % i, commit_ts=i + 1) for i in range(writes))
    return event


def _entries(region: int, index: int, rows: int) -> binlog_pb2.Event:
    event = binlog_pb2.Event(region_id=region, index=index)
    event.entries.rows.extend(binlog_pb2.Row(key=b"k%d" % i) for i in range(rows))
    return event


def test_a_batch_counts_its_snapshots_versions_apart_from_its_live_rows() -> None:
    events = [_snapshot(1, 1, 1000, 0), _snapshot(2, 1, 0, 3), _entries(1, 2, 7), _snapshot(3, 4, 20, 2)]
    assert _batch_progress(events) == (7, 1025, {1: 2, 2: 1, 3: 4})
    batch = decode_events([e.SerializeToString() for e in events])
    assert _batch_progress(batch) == (7, 1025, {1: 2, 2: 1, 3: 4})


def test_flushed_resolved_ts_reach_the_regions_progress_in_order_with_whole_rows() -> None:
    """A flush's resolved-ts-only regions are taken as arrays and reach each region's progress
    when read; a later flush's whole row of a region wins over an earlier resolved ts, a later
    resolved ts over an earlier row, and a region gone stays gone."""
    import numpy as np

    from pyspark_theflash.store.manifest import RegionRow
    from pyspark_theflash.store.manifest import RegionResolved
    from pyspark_theflash.writer.progress import Progress

    def row(rid: int, applied: int, resolved: int, state: str = "normal") -> RegionRow:
        return (rid, b"", b"", 1, 1, applied, resolved, state, 0, 0)

    progress = Progress()
    progress.note_flushed_regions([row(1, 5, 100), row(2, 6, 100), row(3, 7, 100)])
    progress.note_flushed_regions([], RegionResolved(np.array([1, 2, 3, 9]), np.array([200, 200, 200, 200])))
    progress.note_flushed_regions([row(2, 8, 150)])          # newer than the pending 200
    progress.note_flushed_regions([row(3, 7, 0, "tombstone")])  # merged away
    progress.note_flushed_regions([], RegionResolved(np.array([1]), np.array([300])))
    assert {rid: (r.applied_index, r.resolved_ts) for rid, r in progress.regions.items()} == {1: (5, 300), 2: (8, 150)}
    assert [r["resolved_ts"] for r in progress.to_status()["regions"]] == [300, 150]
