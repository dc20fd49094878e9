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
