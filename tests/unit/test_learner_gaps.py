"""The learner's gap check over a store view's live regions as columns: by bisection when they
are disjoint in key order (``gap_in_disjoint``), the same answer as the walk over every region
(``_first_gap`` of the regions over each range); None when they overlap."""
from __future__ import annotations

from bisect import bisect_right

from hypothesis import given, settings, strategies as st

from pyspark_theflash.scan.learner import _first_gap, gap_in_disjoint, ranges_overlap
from pyspark_theflash.store.views import RegionColumns, RegionState, region_columns_of


def key(n: int) -> bytes:
    return b"t" + n.to_bytes(2, "big")


def region(rid: int, start: int, end: int | None) -> RegionState:
    return RegionState(rid, key(start), b"" if end is None else key(end), 1, 1, 5, 100, "normal", 5)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[RegionState], list[tuple[bytes, bytes]]]:
    """Disjoint regions in key order, some key ranges missing; and the ranges asked about (some
    reaching past every key; none empty, as no table's is)."""
    cuts = sorted(set(draw(st.lists(st.integers(0, 60), min_size=1, max_size=12))))
    regions = []
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:] + [None])):
        if draw(st.booleans()) or draw(st.booleans()):  # about a quarter of the pieces missing
            regions.append(region(i + 1, lo, hi))
    asked = []
    for lo, length, to_inf in draw(st.lists(st.tuples(st.integers(0, 70), st.integers(1, 20), st.booleans()),
                                            min_size=1, max_size=3)):
        asked.append((key(lo), b"" if to_inf else key(lo + length)))
    return regions, asked


def columns(live: list[RegionState]) -> RegionColumns:
    return region_columns_of([r.id for r in live], [r.start_key for r in live], [r.end_key for r in live],
                             [r.resolved_ts for r in live])


def stepped(live: list[RegionState], ranges: list[tuple[bytes, bytes]]) -> bool | None:
    """The check as it was: a Python step per region of the run."""
    starts = [bytes(r.start_key) for r in live]
    ends = [bytes(r.end_key) for r in live]
    if not all(e and e <= s for e, s in zip(ends, starts[1:])):
        return None
    for start, end in ranges:
        i = max(0, bisect_right(starts, start) - 1)
        at = start
        while True:
            if i >= len(live) or starts[i] > at:
                return True
            if not ends[i]:
                break
            at = max(at, ends[i])
            if end and at >= end:
                break
            i += 1
    return False


def walked(live: list[RegionState], ranges: list[tuple[bytes, bytes]]) -> bool:
    return any(_first_gap([r for r in live if ranges_overlap(r.start_key, r.end_key, *rng)], *rng) is not None
               for rng in ranges)


@settings(max_examples=400, deadline=None)
@given(layouts())
def test_the_bisection_finds_a_gap_exactly_when_the_walk_does(layout: tuple[list[RegionState], list[tuple[bytes, bytes]]]) -> None:
    live, ranges = layout
    got = gap_in_disjoint(columns(live), ranges)
    assert got == stepped(live, ranges) == walked(live, ranges)


def test_overlapping_regions_are_left_to_the_walk() -> None:
    assert gap_in_disjoint(columns([region(1, 0, 10), region(2, 5, 20)]), [(key(0), key(20))]) is None
    assert gap_in_disjoint(columns([region(1, 0, 10), region(2, 10, None)]), [(key(3), b"")]) is False
    assert gap_in_disjoint(columns([region(1, 0, 10), region(2, 11, None)]), [(key(3), key(12))]) is True
    assert gap_in_disjoint(columns([region(1, 0, 10), region(2, 10, 20)]), [(key(3), b"")]) is True
    assert gap_in_disjoint(columns([]), [(key(3), key(4))]) is True
