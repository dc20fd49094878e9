"""binlog/packed.py: a resolved-ts event built from an array is byte for byte the one protobuf's
own API builds from the same ids, and reads back as the same array."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pyspark_theflash.binlog.packed import packed_uvarints, resolved_event, resolved_regions
from pyspark_theflash.proto import binlog_pb2

_EDGES = [0, 1, 127, 128, 16383, 16384, (1 << 21) - 1, 1 << 21, (1 << 56) - 1, 1 << 56, (1 << 63) - 1]


def _reference(ts: int, ids: list[int]) -> binlog_pb2.Event:
    event = binlog_pb2.Event()
    event.resolved.ts = ts
    event.resolved.regions.extend(ids)
    return event


@given(st.lists(st.integers(0, (1 << 63) - 1) | st.sampled_from(_EDGES), max_size=300),
       st.integers(0, (1 << 64) - 1))
def test_a_resolved_event_from_an_array_is_the_bytes_protobuf_builds_and_reads_back(ids: list[int], ts: int) -> None:
    got = resolved_event(ts, np.array(ids, dtype=np.int64))
    assert got.SerializeToString() == _reference(ts, ids).SerializeToString()
    back = resolved_regions(binlog_pb2.Event.FromString(got.SerializeToString()).resolved)
    assert back.dtype == np.int64 and back.tolist() == ids


def test_varints_of_every_length_up_to_ten_bytes_match_protobufs() -> None:
    values = np.array([0, 1, 127, 128] + [(1 << (7 * k)) - 1 for k in range(2, 10)] + [1 << (7 * k) for k in range(2, 10)]
                      + [(1 << 64) - 1], dtype=np.uint64)
    want = binlog_pb2.ResolvedTs(regions=[int(v) for v in values]).SerializeToString()
    payload = packed_uvarints(values)
    assert want == bytes([0x0A, len(payload)]) + payload  # field 1, packed, its length in one byte
    assert max(len(packed_uvarints(np.array([v], np.uint64))) for v in values) == 10


def test_no_regions_write_no_field() -> None:
    assert resolved_event(7, np.array([], np.int64)).SerializeToString() == _reference(7, []).SerializeToString()
