"""Events decoded at once with array operations (binlog/event_batch.py) are exactly what the
protobuf parser and ``rows.run_columns`` make of them, one by one: on random events of every
kind, on malformed RowBatches, and on damaged bytes (a columnar event is always one the parser
reads the same way; anything else is left to the parser)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.binlog.event_batch import EventBatch, decode_events
from pyspark_theflash.proto import binlog_pb2

Row = binlog_pb2.Row


def _binary(draw: st.DrawFn, n: int, max_size: int) -> list[bytes]:
    return [draw(st.binary(max_size=max_size)) for _ in range(n)]


@st.composite
def entries_events(draw: st.DrawFn) -> binlog_pb2.Event:
    """An Entries event in the columnar form, some optional fields empty, some rows empty."""
    n = draw(st.integers(0, 6))
    ints = st.integers(0, (1 << 64) - 1)
    cols: dict = dict(
        types=[draw(st.sampled_from([Row.PREWRITE, Row.COMMIT, Row.ROLLBACK, Row.COMMITTED])) for _ in range(n)],
        ops=[draw(st.sampled_from([binlog_pb2.PUT, binlog_pb2.DELETE, binlog_pb2.LOCK])) for _ in range(n)],
        keys=_binary(draw, n, 24), start_ts=[draw(ints) for _ in range(n)])
    if draw(st.booleans()):
        cols["commit_ts"] = [draw(ints) for _ in range(n)]
    if draw(st.booleans()):
        cols["ttl"] = [draw(ints) for _ in range(n)]
    if draw(st.booleans()):
        cols["txn_size"] = [draw(ints) for _ in range(n)]
    if draw(st.booleans()):
        cols["values"] = _binary(draw, n, 16)
    if draw(st.booleans()):
        cols["primaries"] = _binary(draw, n, 24)
    if n and draw(st.integers(0, 9)) == 0:  # async-commit fields: left to the parser
        cols["min_commit_ts"] = [draw(ints) for _ in range(n)]
    batch = binlog_rows.pack_columns(**{k: (np.array(v, dtype=np.uint64) if k in (
        "start_ts", "commit_ts", "ttl", "txn_size", "min_commit_ts") else np.array(v, dtype=np.uint8)
        if k in ("types", "ops") else v) for k, v in cols.items()})
    event = binlog_pb2.Event(region_id=draw(st.integers(0, (1 << 63) - 1)), index=draw(st.integers(0, 1 << 40)),
                             entries=binlog_pb2.Entries(batch=batch))
    if draw(st.booleans()):
        event.epoch.version = draw(st.integers(0, 1 << 33))
        event.epoch.conf_version = draw(st.integers(0, 300))
    return event


@st.composite
def other_events(draw: st.DrawFn) -> binlog_pb2.Event:
    """Events the array reader leaves to the parser."""
    kind = draw(st.sampled_from(["resolved_ts", "resolved", "ddl", "admin", "rows", "empty_entries"]))
    ev = binlog_pb2.Event(region_id=draw(st.integers(0, 99)), index=draw(st.integers(0, 999)))
    if kind == "resolved_ts":
        ev.resolved_ts = draw(st.integers(1, 1 << 62))
    elif kind == "resolved":
        ev.resolved.ts = 7
        ev.resolved.regions.extend([1, 2])
    elif kind == "ddl":
        ev.ddl.table_id = 3
        ev.ddl.table_info = b'{"id": 3}'
    elif kind == "admin":
        ev.admin.removed.SetInParent()
    elif kind == "rows":
        ev.entries.rows.add(type=Row.COMMITTED, key=b"k", value=b"v", commit_ts=5)
    else:
        ev.entries.SetInParent()
    return ev


def assert_same_as_parsed(payloads: list[bytes], batch: EventBatch) -> None:
    """Every event of ``batch`` is the parser's; its columnar events' rows are run_columns'."""
    assert len(batch) == len(payloads)
    parsed: list[binlog_pb2.Event | None] = []
    for i, payload in enumerate(payloads):
        try:
            expected = binlog_pb2.Event.FromString(payload)
        except DecodeError:
            assert not batch.columnar[i], f"event {i}: columnar, but the parser refuses it"
            with pytest.raises(DecodeError):
                batch[i]
            parsed.append(None)
            continue
        assert batch[i] == expected
        parsed.append(expected)
        if batch.columnar[i]:
            assert expected.WhichOneof("payload") == "entries" and expected.entries.HasField("batch")
            assert (batch.region_ids[i], batch.indexes[i]) == (expected.region_id, expected.index)
            assert (batch.epoch_versions[i], batch.conf_versions[i]) == (expected.epoch.version,
                                                                         expected.epoch.conf_version)
            assert not expected.entries.batch.min_commit_ts and not expected.entries.batch.secondaries_data
    columnar = np.flatnonzero(batch.columnar).tolist()
    if not columnar:
        assert batch.run(columnar) is None
        return
    mine = batch.run(columnar)
    reference = binlog_rows.run_columns([parsed[i].entries for i in columnar], [""] * len(columnar))  # type: ignore[union-attr]
    assert mine is not None and len(reference) == len(columnar), "a columnar event the store would refuse"
    assert np.array_equal(mine.starts, reference.starts)
    for name in binlog_rows._FIELDS:
        a, b = getattr(mine.rows, name), getattr(reference.rows, name)
        if isinstance(a, pa.Array):
            assert a.equals(b), name
        else:
            assert np.array_equal(a, b) and a.dtype == b.dtype, name
    # a subset (not consecutive) is taken row by row, the same rows
    some = columnar[::2]
    sub, ref_sub = batch.run(some), binlog_rows.run_columns([parsed[i].entries for i in some], [""] * len(some))  # type: ignore[union-attr]
    assert sub is not None and np.array_equal(sub.starts, ref_sub.starts)
    assert sub.rows.keys.equals(ref_sub.rows.keys) and sub.rows.values.equals(ref_sub.rows.values)
    assert np.array_equal(sub.rows.commit_ts, ref_sub.rows.commit_ts)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(entries_events(), entries_events(), other_events()), min_size=1, max_size=12))
def test_events_decoded_at_once_are_the_parsers(events: list[binlog_pb2.Event]) -> None:
    payloads = [e.SerializeToString() for e in events]
    batch = decode_events(payloads)
    assert_same_as_parsed(payloads, batch)
    for i, e in enumerate(events):  # the array reader takes every columnar entries event it can
        plain = (e.WhichOneof("payload") == "entries" and e.entries.HasField("batch")
                 and not e.entries.batch.min_commit_ts)
        assert bool(batch.columnar[i]) == plain, i


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries_events(), min_size=1, max_size=6), st.data())
def test_damaged_bytes_are_never_taken_for_a_different_event(events: list[binlog_pb2.Event], data: st.DataObject) -> None:
    payloads = [e.SerializeToString() for e in events]
    for _ in range(data.draw(st.integers(1, 4))):
        k = data.draw(st.integers(0, len(payloads) - 1))
        p = bytearray(payloads[k])
        how = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(0, len(p) - 1)))
        if how == "flip" and p:
            p[at] ^= data.draw(st.integers(1, 255))
        elif how == "cut":
            del p[at:]
        else:
            p[at:at] = data.draw(st.binary(min_size=1, max_size=3))
        payloads[k] = bytes(p)
    assert_same_as_parsed(payloads, decode_events(payloads))


def _batch_event(**fields: bytes | int) -> bytes:
    good = binlog_rows.pack_columns(types=np.array([Row.COMMITTED] * 2, np.uint8), ops=np.zeros(2, np.uint8),
                                    keys=[b"k1", b"k2"], values=[b"v1", b"v2"], commit_ts=np.array([5, 6], np.uint64))
    for name, value in fields.items():
        setattr(good, name, value)
    return binlog_pb2.Event(region_id=1, index=2, entries=binlog_pb2.Entries(batch=good)).SerializeToString()


@pytest.mark.parametrize("fields", [
    {"count": 3},                                           # arrays of 2 rows
    {"types": b"\x03\x09"},                                 # not a Row.Type
    {"ops": b"\x00\x07"},                                   # not an OpType
    {"start_ts": b"\x00" * 8},                              # 1 of 2
    {"commit_ts": b"\x00" * 8},                             # 1 of 2 (optional: 0 or all)
    {"key_offsets": np.array([0, 3, 2, 4], "<i4").tobytes()},   # 3 offsets for 2 rows
    {"key_offsets": np.array([0, 3, 2], "<i4").tobytes(), "key_data": b"abcd"[:2]},  # decreasing
    {"value_offsets": np.array([1, 2, 4], "<i4").tobytes()},    # not from 0
    {"value_data": b"v1v2x"},                               # last offset short of the data
])
def test_a_malformed_row_batch_is_left_to_the_parser_which_names_it(fields: dict) -> None:
    payloads = [_batch_event(), _batch_event(**fields), _batch_event()]
    batch = decode_events(payloads)
    assert batch.columnar.tolist() == [True, False, True]
    with pytest.raises(binlog_rows.MalformedRowBatchError):
        binlog_rows.columns(batch[1].entries)
    assert_same_as_parsed(payloads, batch)
