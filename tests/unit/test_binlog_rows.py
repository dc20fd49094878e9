"""The columnar form of an Entries event (RowBatch): packing, the columnar view, Row messages
back out of it, and refusing a malformed batch whole."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyspark_theflash.binlog.rows import (
    MalformedRowBatchError,
    columnar_entries,
    columns,
    iter_rows,
    join_columns,
    lock_columns,
    pack_columns,
    pack_rows,
    row_count,
    run_columns,
)
from pyspark_theflash.codec import encode_record_key
from pyspark_theflash.codec.txn import decode_secondaries
from pyspark_theflash.proto import binlog_pb2

Row = binlog_pb2.Row
U64 = st.integers(min_value=0, max_value=2**64 - 1)

rows_strategy = st.lists(st.builds(
    Row,
    type=st.sampled_from(list(Row.Type.values())),
    op=st.sampled_from(list(binlog_pb2.OpType.values())),
    start_ts=U64, commit_ts=U64, ttl=U64, txn_size=U64,
    key=st.binary(max_size=40), value=st.binary(max_size=60), primary=st.binary(max_size=30),
    min_commit_ts=U64, use_async_commit=st.booleans(), secondaries=st.lists(st.binary(max_size=20), max_size=3),
), max_size=40)


def sample_rows() -> list[binlog_pb2.Row]:
    k1, k2 = encode_record_key(45, 1), encode_record_key(45, 2)
    return [
        Row(type=Row.PREWRITE, op=binlog_pb2.PUT, start_ts=100, key=k1, value=b"\x80v1", primary=k1, ttl=3000,
            txn_size=2, min_commit_ts=101, use_async_commit=True, secondaries=[k2]),
        Row(type=Row.PREWRITE, op=binlog_pb2.DELETE, start_ts=100, key=k2, primary=k1, ttl=3000, txn_size=2,
            min_commit_ts=102, use_async_commit=True),
        Row(type=Row.COMMIT, start_ts=100, commit_ts=105, key=k1),
        Row(type=Row.ROLLBACK, start_ts=100, key=k2),
        Row(type=Row.COMMITTED, op=binlog_pb2.LOCK, start_ts=110, commit_ts=111, key=k2),
    ]


def test_packed_rows_read_back_as_the_same_messages_and_columns() -> None:
    rows = sample_rows()
    entries = columnar_entries(rows)
    assert entries.HasField("batch") and not entries.rows
    assert list(iter_rows(entries)) == rows
    assert row_count(entries) == 5
    c = columns(entries)
    assert c.types.tolist() == [Row.PREWRITE, Row.PREWRITE, Row.COMMIT, Row.ROLLBACK, Row.COMMITTED]
    assert c.ops.tolist() == [binlog_pb2.PUT, binlog_pb2.DELETE, binlog_pb2.PUT, binlog_pb2.PUT, binlog_pb2.LOCK]
    assert c.commit_ts.tolist() == [0, 0, 105, 0, 111]
    assert c.values.to_pylist() == [b"\x80v1", b"", b"", b"", b""]
    assert c.primaries.to_pylist() == [rows[0].key, rows[0].key, b"", b"", b""]
    assert c.ttl.tolist() == [3000, 3000, 0, 0, 0]


def test_the_batch_is_little_endian_arrays_in_arrows_binary_layout() -> None:
    k = encode_record_key(7, 9)
    batch = pack_rows([Row(type=Row.COMMITTED, op=binlog_pb2.PUT, start_ts=1, commit_ts=0x0102, key=k, value=b"ab"),
                       Row(type=Row.COMMITTED, op=binlog_pb2.DELETE, start_ts=2, commit_ts=3, key=k)])
    assert batch.count == 2
    assert batch.types == bytes([3, 3]) and batch.ops == bytes([0, 1])
    assert batch.start_ts == (1).to_bytes(8, "little") + (2).to_bytes(8, "little")
    assert batch.commit_ts == bytes([2, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0])
    assert batch.key_offsets == np.array([0, 19, 38], "<i4").tobytes() and batch.key_data == k + k
    assert batch.value_offsets == np.array([0, 2, 2], "<i4").tobytes() and batch.value_data == b"ab"
    # all-zero / all-empty columns are left empty, as the format allows
    assert batch.ttl == b"" and batch.txn_size == b"" and batch.primary_offsets == b"" and batch.primary_data == b""


def test_row_form_and_columnar_form_give_the_same_columns() -> None:
    rows = sample_rows()
    a, b = columns(binlog_pb2.Entries(rows=rows)), columns(columnar_entries(rows))
    for name in ("types", "ops", "start_ts", "commit_ts", "ttl", "txn_size"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    for name in ("keys", "values", "primaries"):
        assert getattr(a, name).equals(getattr(b, name)), name


def test_pack_columns_takes_numpy_key_matrices_arrow_binary_and_scalars() -> None:
    keys = np.frombuffer(encode_record_key(3, 1) + encode_record_key(3, 2), np.uint8).reshape(2, 19)
    batch = pack_columns(types=Row.COMMITTED, ops=np.array([0, 1]), start_ts=5, commit_ts=np.array([6, 7]),
                         keys=keys, values=pa.array([b"xyz", b""], pa.binary()).slice(0, 2))
    rows = list(iter_rows(binlog_pb2.Entries(batch=batch)))
    assert [(r.type, r.op, r.start_ts, r.commit_ts, r.key, r.value) for r in rows] == [
        (Row.COMMITTED, 0, 5, 6, encode_record_key(3, 1), b"xyz"),
        (Row.COMMITTED, 1, 5, 7, encode_record_key(3, 2), b""),
    ]
    with pytest.raises(ValueError, match="ops: 3 items for 2 rows"):
        pack_columns(types=Row.COMMITTED, ops=np.array([0, 1, 0]), keys=keys)


def test_a_sliced_arrow_column_packs_only_its_items() -> None:
    values = pa.array([b"skip", b"one", b"two"], pa.binary()).slice(1, 2)
    batch = pack_columns(types=Row.COMMITTED, ops=0, keys=[b"a", b"b"], values=values)
    assert columns(binlog_pb2.Entries(batch=batch)).values.to_pylist() == [b"one", b"two"]


@settings(max_examples=200, deadline=None)
@given(rows_strategy)
def test_any_rows_round_trip_through_the_columnar_form(rows: list[binlog_pb2.Row]) -> None:
    entries = columnar_entries(rows)
    parsed = binlog_pb2.Entries.FromString(entries.SerializeToString())  # as read from a segment
    assert list(iter_rows(parsed)) == rows
    assert row_count(parsed) == len(rows)
    c = columns(parsed)
    assert len(c) == len(rows)
    assert c.keys.to_pylist() == [r.key for r in rows]
    assert c.start_ts.tolist() == [r.start_ts for r in rows]


def test_prewrite_rows_carry_the_async_commit_lock_fields_in_both_forms() -> None:
    rows = sample_rows()
    batch = pack_rows(rows)
    assert np.frombuffer(batch.min_commit_ts, "<u8").tolist() == [101, 102, 0, 0, 0]
    assert list(batch.async_commit) == [1, 1, 0, 0, 0]
    lk = lock_columns(binlog_pb2.Entries(batch=batch))
    assert [decode_secondaries(s) if s else [] for s in lk.secondaries.to_pylist()] == [[rows[1].key], [], [], [], []]
    by_rows = lock_columns(binlog_pb2.Entries(rows=rows))
    assert by_rows.min_commit_ts.tolist() == lk.min_commit_ts.tolist()
    assert by_rows.use_async_commit.tolist() == lk.use_async_commit.tolist() == [True, True, False, False, False]
    assert by_rows.secondaries.to_pylist() == lk.secondaries.to_pylist()
    # an ordinary transaction's rows leave the three arrays empty
    plain = pack_rows([Row(type=Row.PREWRITE, start_ts=1, key=b"k", primary=b"k", ttl=1)])
    assert (plain.min_commit_ts, plain.async_commit, plain.secondaries_offsets, plain.secondaries_data) == (b"",) * 4


def test_an_empty_batch_has_no_rows() -> None:
    assert list(iter_rows(binlog_pb2.Entries(batch=binlog_pb2.RowBatch()))) == []
    assert len(columns(columnar_entries([]))) == 0


def corrupt(**fields: object) -> binlog_pb2.Entries:
    batch = pack_rows(sample_rows())
    for name, value in fields.items():
        setattr(batch, name, value)
    return binlog_pb2.Entries(batch=batch)


@pytest.mark.parametrize("fields, message", [
    ({"count": 6}, r"types holds 5 bytes, expected 1 x count 6 = 6"),
    ({"start_ts": b"\0" * 39}, r"start_ts holds 39 bytes, expected 8 x count 5 = 40"),
    ({"commit_ts": b"\0" * 8}, r"commit_ts holds 8 bytes, expected 8 x count 5 = 40 \(or empty"),
    ({"key_offsets": b"\0" * 20}, r"key_offsets holds 20 bytes, expected 4 x \(count 5 \+ 1\) = 24"),
    ({"key_data": b"short"}, r"key_offsets run from 0 to 95, expected 0 to the 5 bytes of key_data"),
    ({"value_offsets": np.array([0, 3, 1, 3, 3, 3], "<i4").tobytes()}, r"value_offsets decrease at row 1"),
    ({"value_offsets": b""}, r"value_offsets holds 0 bytes"),
    ({"types": bytes([0, 0, 1, 2, 9])}, r"row 4 has type 9, not a Row.Type"),
    ({"ops": bytes([0, 7, 0, 0, 2])}, r"row 1 has op 7, not an OpType"),
    ({"min_commit_ts": b"\0" * 8}, r"min_commit_ts holds 8 bytes, expected 8 x count 5 = 40 \(or empty"),
    ({"async_commit": bytes([1, 1, 0, 2, 0])}, r"row 3 has async_commit 2, not 0 or 1"),
    ({"secondaries_data": b"\x01"}, r"secondaries_offsets run from 0 to 21, expected 0 to the 1 bytes"),
])
def test_a_malformed_batch_is_refused_with_what_is_wrong(fields: dict, message: str) -> None:
    entries = corrupt(**fields)
    with pytest.raises(MalformedRowBatchError, match=message) as err:
        columns(entries, "region 3 index 9")
    assert "region 3 index 9" in str(err.value)
    with pytest.raises(MalformedRowBatchError):
        list(iter_rows(entries))


def test_an_event_with_both_forms_is_refused() -> None:
    entries = columnar_entries(sample_rows())
    entries.rows.add(type=Row.COMMITTED, key=b"k")
    with pytest.raises(MalformedRowBatchError, match="both 1 rows and a RowBatch"):
        columns(entries)


# --- runs: consecutive events joined into one set of arrays ------------------------------------

FIELDS = ("types", "ops", "start_ts", "commit_ts", "ttl", "txn_size", "keys", "values", "primaries")


def as_lists(c: object) -> dict[str, list]:
    return {f: getattr(c, f).tolist() if isinstance(getattr(c, f), np.ndarray) else getattr(c, f).to_pylist()
            for f in FIELDS}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(rows_strategy, st.booleans()), max_size=6))
def test_a_run_holds_each_events_rows_as_a_slice(events: list[tuple[list[binlog_pb2.Row], bool]]) -> None:
    """Events of either form (empty ones too) joined: every field equals the events' own
    columns one after the other, and event j of the run is exactly event j."""
    entries = [columnar_entries(rows) if columnar else binlog_pb2.Entries(rows=rows) for rows, columnar in events]
    entries = [binlog_pb2.Entries.FromString(e.SerializeToString()) for e in entries]  # as read from a segment
    run = run_columns(entries, [f"event {j}" for j in range(len(entries))])
    assert len(run) == len(entries)
    assert run.starts.tolist() == np.cumsum([0] + [len(rows) for rows, _ in events]).tolist()
    for j, e in enumerate(entries):
        assert as_lists(run.event(j)) == as_lists(columns(e))
    whole = as_lists(run.rows)
    for f in FIELDS:
        assert whole[f] == [x for e in entries for x in as_lists(columns(e))[f]], f
    assert run.all_committed.tolist() == [all(r.type == Row.COMMITTED for r in rows) for rows, _ in events]
    assert as_lists(join_columns([columns(e) for e in entries]).rows) == whole


@pytest.mark.parametrize("fields", [{"count": 6}, {"key_data": b"short"}, {"types": bytes([0, 0, 1, 2, 9])},
                                    {"value_offsets": np.array([0, 3, 1, 3, 3, 3], "<i4").tobytes()},
                                    {"min_commit_ts": b"\0" * 3}])
def test_a_run_stops_before_a_malformed_event(fields: dict) -> None:
    good = columnar_entries(sample_rows())
    entries = [good, good, corrupt(**fields), good]
    run = run_columns(entries, ["a", "b", "c", "d"])
    assert len(run) == 2  # the store applies these, then the bad one alone, which raises
    assert as_lists(run.event(1)) == as_lists(columns(good))
    assert len(run_columns(entries[2:], ["c", "d"])) == 0


def test_a_run_ends_where_its_bytes_would_overflow_int32_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Joined binary fields use int32 offsets: a run stops before an event that could pass
    2 GiB (here the limit is lowered to a few events' bytes) and the next run starts there;
    one event always makes a run."""
    good = columnar_entries(sample_rows())
    entries = [good] * 7
    for limit in (10, len(good.batch.key_data) + 1, 3 * good.ByteSize()):
        monkeypatch.setattr("pyspark_theflash.binlog.rows._INT32_MAX", limit)
        at, lengths = 0, []
        while at < len(entries):
            run = run_columns(entries[at:], ["e"] * (len(entries) - at))
            assert len(run) >= 1
            if len(run) > 1:
                assert all(len(getattr(run.rows, f).buffers()[2] or b"") <= limit for f in ("keys", "values"))
            for j in range(len(run)):
                assert as_lists(run.event(j)) == as_lists(columns(good))
            lengths.append(len(run))
            at += len(run)
        assert sum(lengths) == len(entries)
        assert (max(lengths) == 1) == (limit < 2 * len(good.batch.key_data)), (limit, lengths)
