"""Entries events of many regions (binlog/region_runs.py, format version 3) mean exactly the
single-region events of their runs: split by message, decoded at once by the writer's batch
decoder, applied by a store, read with a region filter, dumped; a malformed one is refused."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyspark_theflash.binlog import SegmentReader, SegmentWriter, region_runs
from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.binlog.errors import BinlogCorruptError
from pyspark_theflash.binlog.event_batch import decode_events
from pyspark_theflash.binlog.segment import FORMAT_VERSION, encode_header, segment_format_version, segment_path
from pyspark_theflash.proto import binlog_pb2

from test_binlog_event_batch import assert_same_as_parsed, entries_events, other_events

Row = binlog_pb2.Row


def joined(singles: list[binlog_pb2.Event]) -> binlog_pb2.Event:
    """Single-region columnar events (no async-commit fields) as one event of many regions."""
    cols = binlog_rows.join_columns([binlog_rows.columns(e.entries) for e in singles])
    event = binlog_pb2.Event()
    rows = cols.rows
    binlog_rows.pack_columns(types=rows.types, ops=rows.ops, start_ts=rows.start_ts, commit_ts=rows.commit_ts,
                             ttl=rows.ttl, txn_size=rows.txn_size, keys=rows.keys, values=rows.values,
                             primaries=rows.primaries, out=event.entries.batch)
    region_runs.pack_runs(np.array([e.region_id for e in singles]), np.array([e.index for e in singles]),
                          np.array([e.epoch.version for e in singles]),
                          np.array([e.epoch.conf_version for e in singles]), cols.starts, out=event.entries.runs)
    return event


def normal(e: binlog_pb2.Event) -> binlog_pb2.Event:
    """``e`` as ``split`` writes it: its rows' optional all-zero columns left empty."""
    cols = binlog_rows.columns(e.entries)
    out = binlog_pb2.Event(region_id=e.region_id, index=e.index)
    if e.epoch.version or e.epoch.conf_version:
        out.epoch.CopyFrom(e.epoch)
    binlog_rows.pack_columns(types=cols.types, ops=cols.ops, start_ts=cols.start_ts, commit_ts=cols.commit_ts,
                             ttl=cols.ttl, txn_size=cols.txn_size, keys=cols.keys, values=cols.values,
                             primaries=cols.primaries, out=out.entries.batch)
    return out


@st.composite
def region_events(draw: st.DrawFn) -> binlog_pb2.Event:
    e = draw(entries_events())
    e.entries.batch.ClearField("min_commit_ts")
    e.region_id, e.index = draw(st.integers(1, 40)), draw(st.integers(1, 1 << 40))
    return e


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(region_events(), min_size=1, max_size=8),
       st.lists(st.one_of(other_events(), region_events()), max_size=4))
def test_an_event_of_many_regions_splits_and_decodes_into_its_runs(singles: list[binlog_pb2.Event],
                                                                    around: list[binlog_pb2.Event]) -> None:
    many = joined(singles)
    assert [normal(e) for e in region_runs.split(many)] == [normal(e) for e in singles]
    # the batch decoder: the runs as events of their own, between the events around them
    events = [*around[:2], many, *around[2:]]
    expanded = [*around[:2], *region_runs.split(many), *around[2:]]
    batch = decode_events([e.SerializeToString() for e in events])
    reference = decode_events([e.SerializeToString() for e in expanded])
    assert len(batch) == len(reference)
    for name in ("region_ids", "indexes", "epoch_versions", "conf_versions", "columnar", "row_starts"):
        assert np.array_equal(getattr(batch, name), getattr(reference, name)), name
    assert [batch[i] for i in range(len(batch))] == [reference[i] for i in range(len(reference))]
    assert batch.sources.tolist() == [0, 1][:len(around[:2])] + [len(around[:2])] * len(singles) + \
        list(range(len(around[:2]) + 1, len(events)))
    columnar = np.flatnonzero(batch.columnar).tolist()
    if columnar:
        mine, theirs = batch.run(columnar), reference.run(columnar)
        assert mine is not None and theirs is not None
        assert mine.rows.keys.equals(theirs.rows.keys) and np.array_equal(mine.starts, theirs.starts)
    assert_same_as_parsed([e.SerializeToString() for e in expanded], reference)
    assert region_runs.expand(events) == [*around[:2], *region_runs.split(many), *around[2:]]


def _many() -> binlog_pb2.Event:
    rows = [binlog_pb2.Event(region_id=r, index=i, entries=binlog_pb2.Entries(batch=binlog_rows.pack_columns(
        types=np.array([Row.COMMITTED], np.uint8), ops=np.zeros(1, np.uint8), keys=[b"k%d" % r],
        values=[b"v"], commit_ts=np.array([9], np.uint64)))) for r, i in ((3, 7), (5, 2))]
    return joined(rows)


@pytest.mark.parametrize("damage", [
    {"count": 3},                                               # arrays of 2 runs
    {"region_ids": np.array([3], "<u8").tobytes()},             # 1 of 2
    {"row_offsets": np.array([0, 2, 1], "<i4").tobytes()},      # decreasing
    {"row_offsets": np.array([0, 1, 3], "<i4").tobytes()},      # past the batch's 2 rows
    {"indexes": np.array([7, 0], "<u8").tobytes()},             # index 0
    {"region_ids": np.array([3, 1 << 63], "<u8").tobytes()},    # beyond int64
])
def test_malformed_runs_refuse_the_event_whole(damage: dict, tmp_path) -> None:
    event = _many()
    for name, value in damage.items():
        setattr(event.entries.runs, name, value)
    with pytest.raises(region_runs.MalformedRegionRunsError):
        region_runs.split(event)
    # read from a binlog: the events before it are given, then the read names its place
    with SegmentWriter(tmp_path) as writer:
        writer.append([_many(), event])
    reader = SegmentReader(tmp_path)
    got = reader.read_decoded(10, 0.1)
    assert got is not None and [int(r) for r in got[0].region_ids] == [3, 5]
    with pytest.raises(BinlogCorruptError, match="malformed RegionRuns"):
        reader.read_decoded(10, 0.1)


def test_a_region_filtered_read_gives_the_runs_of_its_regions_only(tmp_path) -> None:
    ddl = binlog_pb2.Event(ddl=binlog_pb2.Ddl(table_id=3, table_info=b'{"id": 3}'))
    with SegmentWriter(tmp_path) as writer:
        writer.append([_many(), ddl, _many()])
    got = SegmentReader(tmp_path).read_raw(10, 0.1, frozenset({5}))
    events = [binlog_pb2.Event.FromString(r.payload) for r in got]
    assert [(e.region_id, e.index) for e in events] == [(5, 2), (0, 0), (5, 2)]
    assert binlog_rows.columns(events[0].entries).keys.to_pylist() == [b"k5"]
    assert got[-1].next == SegmentReader(tmp_path).read_raw(10, 0.1)[-1].next


def test_a_writer_never_appends_the_new_form_to_an_older_segment(tmp_path) -> None:
    with SegmentWriter(tmp_path) as writer:
        writer.append([binlog_pb2.Event(region_id=1, index=1, resolved_ts=5)])
    path = segment_path(tmp_path, 1)
    data = bytearray(path.read_bytes())
    old = bytearray(encode_header(1))
    old[8:12] = (2).to_bytes(4, "little")  # a version 2 segment, as the previous release wrote
    import zlib
    old[20:24] = zlib.crc32(bytes(old[:20])).to_bytes(4, "little")
    data[:24] = old
    path.write_bytes(bytes(data))
    assert segment_format_version(tmp_path, 1) == 2
    with SegmentWriter(tmp_path) as writer:
        writer.append([_many()])
    assert segment_format_version(tmp_path, 2) == FORMAT_VERSION
    events = [e.event for e in SegmentReader(tmp_path).read(10, 0.1)]
    assert [e.WhichOneof("payload") for e in events] == ["resolved_ts", "entries"]
    assert region_runs.has_runs(events[1])
