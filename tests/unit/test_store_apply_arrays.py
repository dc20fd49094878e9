"""The store's array steps over many regions' events equal the per-region walk they replace."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pyspark_theflash.store.apply import _above_running_max


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 8).flatmap(lambda g: st.tuples(
    st.just(g), st.lists(st.tuples(st.integers(0, g - 1), st.integers(0, 1 << 62)), max_size=40),
    st.lists(st.integers(0, 1 << 62), min_size=g, max_size=g))))
def test_events_taken_above_the_running_index_of_their_region(case: tuple) -> None:
    """``_columnar_prefix``: an event is taken when its index is above its region's applied
    index and every earlier index of its region in the batch."""
    g, items, bases = case
    group = np.array([r for r, _ in items], np.int64)
    values = np.array([v for _, v in items], np.int64)
    take, top = _above_running_max(group, values, np.array(bases, np.int64))
    expected, running = [], list(bases)
    for r, v in items:
        expected.append(v > running[r])
        running[r] = max(running[r], v)
    assert take.tolist() == expected
    assert top.tolist() == running
