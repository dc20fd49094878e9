"""``keyspace.split_record_keys`` picks record keys out of any keys and decodes their table ids
and int handles at once; it must agree with decoding each key on its own."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pyspark_theflash.codec import encode_record_key
from pyspark_theflash.store.keyspace import INT_RECORD_KEY_LEN, split_record_keys

int64s = st.integers(-(2**63), 2**63 - 1)
record_keys = st.builds(encode_record_key, st.sampled_from([-5, 7, 8, 2**40]), int64s)
other_keys = st.binary(max_size=24) | st.builds(lambda k, tail: k + tail, record_keys, st.binary(min_size=1, max_size=9))


def _one_by_one(key: bytes) -> tuple[int, int] | None:
    if len(key) <= 11 or key[:1] != b"t" or key[9:11] != b"_r":
        return None
    table_id = int.from_bytes(key[1:9], "big") - (1 << 63)
    handle = int.from_bytes(key[11:19], "big") - (1 << 63) if len(key) == INT_RECORD_KEY_LEN else 0
    return table_id, handle


@settings(max_examples=200, deadline=None)
@given(st.lists(record_keys, max_size=20) | st.lists(record_keys | other_keys, max_size=20), st.booleans())
def test_split_record_keys_decodes_each_key_as_alone(keys: list[bytes], as_arrow: bool) -> None:
    got = split_record_keys(pa.array(keys, pa.binary()) if as_arrow else keys)
    want = [(i, d) for i, d in ((i, _one_by_one(k)) for i, k in enumerate(keys)) if d is not None]
    assert got.index.tolist() == [i for i, _ in want]
    assert got.table_ids.tolist() == [d[0] for _, d in want]
    assert got.int_handles.tolist() == [d[1] for _, d in want]
    assert got.keys.to_pylist() == [keys[i] for i, _ in want]


def test_keys_sliced_out_of_a_larger_array_decode_in_place() -> None:
    keys = [encode_record_key(9, h) for h in (-(2**63), -1, 0, 1, 2**63 - 1)]
    got = split_record_keys(pa.array([b"x"] + keys, pa.binary()).slice(1))
    assert got.int_handles.tolist() == [-(2**63), -1, 0, 1, 2**63 - 1]
    assert np.all(got.table_ids == 9)
