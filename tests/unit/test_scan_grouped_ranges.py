"""scan/partitions.py over spans as columns: a read's handle ranges cut the regions' ranges
(``region_spans``) as the planner's ``_restricted`` cuts each region's, and the grouped ranges
(``grouped_range_scans``) are ``merge_group`` of ``group_ranges``' groups over a ``RangeScan`` per
kept span (``_walked_range_scans``, what the planner built region by region)."""
from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings, strategies as st

from pyspark_theflash.engine.partition import RangeScan
from pyspark_theflash.scan.partitions import (
    Spans,
    TableSpans,
    group_ranges,
    grouped_range_scans,
    merge_group,
    parts_by_range,
    region_spans,
    span_parts,
)
from pyspark_theflash.scan.planner import _restricted
from pyspark_theflash.store.part_ref import PartRef
from pyspark_theflash.store.views import TableRegionColumns

Bound = Any  # int or None


def part(i: int, lo: int | None, hi: int | None, size: int) -> PartRef:
    return PartRef(i, 1, 0, None, None, "delta", f"p{i}", 10, size, lo, hi, 1, 2, False, 0, 1, ())


@st.composite
def region_ranges(draw: st.DrawFn) -> list[tuple[Bound, Bound]]:
    """Disjoint handle ranges in handle order, some adjacent, some apart; the first may be
    unbounded below and the last above."""
    cuts = sorted(set(draw(st.lists(st.integers(-100, 100), min_size=1, max_size=16))))
    bounds: list[Bound] = ([None] if draw(st.booleans()) else []) + cuts + ([None] if draw(st.booleans()) else [])
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if draw(st.integers(0, 3))]


def table_regions(ranges: list[tuple[Bound, Bound]]) -> TableRegionColumns:
    n = len(ranges)
    return TableRegionColumns(np.arange(n, dtype=np.int64), np.arange(1, n + 1, dtype=np.int64),
                              np.array([0 if lo is None else lo for lo, _ in ranges], np.int64),
                              np.array([0 if hi is None else hi for _, hi in ranges], np.int64),
                              np.array([lo is None for lo, _ in ranges], bool),
                              np.array([hi is None for _, hi in ranges], bool))


allowed_ranges = st.one_of(st.none(), st.lists(st.tuples(st.one_of(st.none(), st.integers(-120, 120)),
                                                         st.one_of(st.none(), st.integers(-120, 120))), max_size=4))


@settings(max_examples=500, deadline=None)
@given(region_ranges(), allowed_ranges)
def test_the_spans_are_the_regions_ranges_cut_one_by_one(ranges: list[tuple[Bound, Bound]],
                                                        allowed: list[tuple[Bound, Bound]] | None) -> None:
    spans = region_spans(table_regions(ranges), allowed)
    assert spans is not None
    want = [(rid, piece) for rid, rng in enumerate(ranges, 1) for piece in _restricted(rng, allowed)]
    assert [(rid, spans.bound(k)) for k, rid in enumerate(spans.region_ids.tolist())] == want


@st.composite
def tables(draw: st.DrawFn) -> list[tuple[int | None, list[tuple[Bound, Bound]], list[PartRef], list[bool]]]:
    """One to three physical tables, each with its spans, its parts and the spans a filter keeps."""
    out = []
    for t in range(draw(st.integers(1, 3))):
        ranges = draw(region_ranges())
        parts = []
        for i in range(draw(st.integers(0, 5))):
            a, b = sorted(draw(st.tuples(st.integers(-110, 110), st.integers(-110, 110))))
            parts.append(part(10 * t + i, a, b, draw(st.integers(0, 5000))))
        keep = [draw(st.integers(0, 4)) > 0 for _ in ranges]
        out.append((None if t == 0 else 500 + t, ranges, parts, keep))
    return out


def _walked_range_scans(tables: list[tuple[int | None, list[tuple[Bound, Bound]], list[PartRef], list[bool]]],
                        target: int) -> list[RangeScan]:
    ranges = []
    for table_id, spans, parts, keep in tables:
        found = parts_by_range(parts, spans)
        assert found is not None
        for rid, ((lo, hi), (met, size), kept) in enumerate(zip(spans, found, keep), 1):
            if kept:
                ranges.append(RangeScan((rid,), lo, hi, met, size, table_id))
    return [merge_group(group) for group in group_ranges(ranges, target)]


@settings(max_examples=500, deadline=None)
@given(tables(), st.sampled_from([1, 100, 2000, 10_000, 1 << 40]))
def test_the_ranges_grouped_as_columns_are_the_walks(
        tables: list[tuple[int | None, list[tuple[Bound, Bound]], list[PartRef], list[bool]]], target: int) -> None:
    spans = []
    for table_id, ranges, parts, keep in tables:
        regions = table_regions(ranges)
        found = span_parts(parts, Spans(regions.ids, regions.lo, regions.hi, regions.lo_open, regions.hi_open))
        assert found is not None
        spans.append(TableSpans(table_id, Spans(regions.ids, regions.lo, regions.hi, regions.lo_open, regions.hi_open),
                                parts, found, np.array(keep, bool)))
    assert grouped_range_scans(spans, target) == _walked_range_scans(tables, target)


def test_ranges_of_two_tables_never_group_though_their_handles_meet() -> None:
    layout = [(None, [(0, 10)], [part(1, 0, 20, 100)], [True]), (501, [(10, 20)], [part(2, 0, 20, 100)], [True])]
    spans = []
    for table_id, ranges, parts, keep in layout:
        regions = table_regions(ranges)
        cut = Spans(regions.ids, regions.lo, regions.hi, regions.lo_open, regions.hi_open)
        found = span_parts(parts, cut)
        assert found is not None
        spans.append(TableSpans(table_id, cut, parts, found, np.array(keep, bool)))
    got = grouped_range_scans(spans, 1 << 40)
    assert got == _walked_range_scans(layout, 1 << 40)
    assert [(r.table_id, r.lo, r.hi) for r in got] == [(None, 0, 10), (501, 10, 20)]
