"""``keyspace.latest_cover`` finds, for every handle at once, the greatest seq of the range
tombstones that hold it: it must agree with asking each range of each handle on its own (the
writer's rule: a row staged before a tombstone over its handle is deleted by it)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pyspark_theflash.store import keyspace

small_ints = st.integers(-40, 40) | st.sampled_from([-(2**63), 2**63 - 1])
small_bytes = st.binary(max_size=3)


def _one_by_one(handle: object, ranges: list[keyspace.HandleRange], seqs: list[int]) -> int:
    held = [s for (lo, hi), s in zip(ranges, seqs)
            if (lo is None or lo <= handle) and (hi is None or handle < hi)]  # type: ignore[operator]
    return max(held, default=-1)


def _ranges(values: st.SearchStrategy[object]) -> st.SearchStrategy[list[keyspace.HandleRange]]:
    return st.lists(st.tuples(st.none() | values, st.none() | values), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(small_ints, max_size=30), _ranges(small_ints), st.data())
def test_int_handles_take_the_greatest_seq_of_the_ranges_holding_them(handles: list[int], ranges: list[
        keyspace.HandleRange], data: st.DataObject) -> None:
    seqs = data.draw(st.lists(st.integers(0, 1000), min_size=len(ranges), max_size=len(ranges)))
    got = keyspace.latest_cover(pa.array(handles, pa.int64()), ranges, seqs)
    assert got.dtype == np.int64
    assert got.tolist() == [_one_by_one(h, ranges, seqs) for h in handles]


@settings(max_examples=200, deadline=None)
@given(st.lists(small_bytes, max_size=30), _ranges(small_bytes), st.data())
def test_common_handles_take_the_greatest_seq_of_the_ranges_holding_them(handles: list[bytes], ranges: list[
        keyspace.HandleRange], data: st.DataObject) -> None:
    seqs = data.draw(st.lists(st.integers(0, 1000), min_size=len(ranges), max_size=len(ranges)))
    chunked = pa.chunked_array([pa.array(handles[:3], pa.binary()), pa.array(handles[3:], pa.binary())])
    got = keyspace.latest_cover(chunked, ranges, seqs)
    assert got.tolist() == [_one_by_one(h, ranges, seqs) for h in handles]


def test_heavily_overlapping_ranges_paint_the_greatest_seq_last() -> None:
    # nested ranges whose segments sum past the vectorised path's budget: the painting path
    n = 3000
    ranges: list[keyspace.HandleRange] = [(-i, i + 1) for i in range(n)]
    seqs = list(np.random.default_rng(5).permutation(n).tolist())
    handles = list(range(-n - 1, n + 2, 7))
    got = keyspace.latest_cover(pa.array(handles, pa.int64()), ranges, seqs)
    assert got.tolist() == [_one_by_one(h, ranges, seqs) for h in handles]
