"""scan/partitions.py ``parts_by_range``: every range's parts and bytes at once, as arrays,
equal to asking range by range (``PartRef.overlaps`` and ``estimate_bytes``), which is what
the planner did per region."""
from __future__ import annotations

import random

import pytest

from pyspark_theflash.scan.partitions import estimate_bytes, parts_by_range
from pyspark_theflash.store.part_ref import PartRef

BIG = (1 << 63) - 1


def part(i: int, lo: int | bytes | None, hi: int | bytes | None, size: int) -> PartRef:
    return PartRef(i, 1, 0, None, None, "delta", f"p{i}", 10, size, lo, hi, 1, 2, False, 0, 1, ())


def handle(rng: random.Random) -> int:
    return rng.choice([rng.randint(-50, 150), -(1 << 63), BIG, rng.randint(-BIG, BIG)])


@pytest.mark.parametrize("seed", range(40))
def test_all_ranges_at_once_equal_each_range_asked_alone(seed: int) -> None:
    rng = random.Random(seed)
    parts = []
    for i in range(rng.randint(0, 12)):
        a, b = sorted((handle(rng), handle(rng)))
        if rng.random() < 0.1:
            a = b = None  # a part without rows: overlaps nothing
        elif rng.random() < 0.15:
            b = a  # one handle: counted whole
        parts.append(part(i, a, b, rng.randint(0, 10_000_000)))
    ranges: list[tuple[int | None, int | None]] = []
    for _ in range(rng.randint(0, 30)):
        a, b = sorted((handle(rng), handle(rng)))
        ranges.append((None if rng.random() < 0.15 else a, None if rng.random() < 0.15 else b))
    got = parts_by_range(parts, ranges)
    assert got is not None and len(got) == len(ranges)
    for (lo, hi), (found, size) in zip(ranges, got):
        alone = tuple(p for p in parts if p.overlaps(lo, hi))
        assert found == alone
        want = estimate_bytes(alone, lo, hi)
        assert abs(size - want) <= max(1, want * 1e-9), (lo, hi, size, want)


def test_key_bytes_handles_are_left_to_the_caller() -> None:
    """A clustered table's handles are key bytes: no arrays, the planner asks per range."""
    assert parts_by_range([part(1, b"a", b"c", 10)], [(b"a", b"b")]) is None
    assert parts_by_range([part(1, 1, 5, 10)], [(None, 1 << 64)]) is None  # not an int64
    assert parts_by_range([], [(1, 2), (None, None)]) == [((), 0), ((), 0)]
