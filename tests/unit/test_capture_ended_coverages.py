"""capture/coverage.py ``EndedCoverages``: found by key range, it answers what a list walked in
full answers (the coverages over a range, in the order they ended), through adds and removes."""
from __future__ import annotations

import random

import pytest

from pyspark_theflash.capture.coverage import Coverage, EndedCoverages
from pyspark_theflash.capture.range_claims import ranges_overlap


def key(i: int) -> bytes:
    return b"" if i < 0 else b"k%03d" % i


@pytest.mark.parametrize("seed", range(20))
def test_overlapping_equals_a_walk_of_the_list(seed: int) -> None:
    rng = random.Random(seed)
    kept: list[Coverage] = []
    ended = EndedCoverages()
    for _ in range(150):
        if kept and rng.random() < 0.3:
            gone = rng.choice(kept)
            kept.remove(gone)
            ended.remove(gone)
        else:
            a, b = sorted(rng.sample(range(0, 60), 2))
            c = Coverage([(key(a), key(b) if rng.random() < 0.9 else b"", rng.randint(0, 9))])
            kept.append(c)
            ended.add(c)
            ended.add(c)  # a second add of the same coverage is nothing
        lo, hi = sorted(rng.sample(range(-1, 61), 2))
        start, end = key(lo), key(hi) if hi < 60 else b""
        want = [c for c in kept if ranges_overlap(c.start, c.end, start, end)]
        assert ended.overlapping(start, end) == want
        assert len(ended) == len(kept) and list(ended) == kept
