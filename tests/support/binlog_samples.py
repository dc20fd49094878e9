"""Binlog events of every payload kind that the binlog's file, service and read-ahead tests
write and read back."""
from __future__ import annotations

from pyspark_theflash.binlog.rows import columnar_entries
from pyspark_theflash.proto import binlog_pb2


def record_key(table_id: int, handle: int) -> bytes:
    flip = lambda v: (v ^ (1 << 63)).to_bytes(8, "big")  # noqa: E731 - memcomparable int64
    return b"t" + flip(table_id) + b"_r" + flip(handle)


def sample_events(count: int, region_id: int = 1, columnar: bool = False) -> list[binlog_pb2.Event]:
    """Events of every payload kind, with distinct contents, in raft order (``columnar``: the
    entries in the RowBatch form the upstream writes)."""
    events = []
    for i in range(count):
        event = binlog_pb2.Event(region_id=region_id, index=i + 1, epoch=binlog_pb2.RegionEpoch(version=1))
        kind = i % 4
        if kind == 0:
            row = event.entries.rows.add(type=binlog_pb2.Row.PREWRITE, start_ts=100 + i, key=record_key(45, i))
            row.value, row.primary, row.ttl = b"v" * (i % 50), record_key(45, 0), 3000
        elif kind == 1:
            event.entries.rows.add(type=binlog_pb2.Row.COMMIT, start_ts=99 + i, commit_ts=200 + i, key=record_key(45, i))
        elif kind == 2:
            event.resolved_ts = (1_700_000_000_000 + i) << 18
        else:
            split = event.admin.split
            split.regions.add(id=region_id, start_key=b"", end_key=b"m%d" % i)
            split.regions.add(id=1000 + i, start_key=b"m%d" % i, end_key=b"")
        if columnar and event.WhichOneof("payload") == "entries":
            event.entries.CopyFrom(columnar_entries(list(event.entries.rows)))
        events.append(event)
    return events
