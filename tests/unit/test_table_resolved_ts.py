"""A table's resolved ts over a store view's regions as columns (bisection over the keys, one
run per key range, gaps where a region ends short of the next one's start) is the walk over
every region, region for region: the ts, the regions it covers (in key order) and the gaps."""
from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

from hypothesis import given, settings, strategies as st

from pyspark_theflash.scan import resolved
from pyspark_theflash.store.views import RegionColumns, RegionState, region_columns_of


def key(n: int) -> bytes:
    return b"t" + n.to_bytes(2, "big")


class Regions:
    """What ``table_resolved_ts`` asks of a view: its live regions, and them as columns."""

    def __init__(self, regions: list[RegionState]) -> None:
        self._regions = sorted(regions, key=lambda r: r.start_key)

    def regions(self) -> list[RegionState]:
        return list(self._regions)

    def region_columns(self) -> RegionColumns:
        return region_columns_of([r.id for r in self._regions], [r.start_key for r in self._regions],
                                 [r.end_key for r in self._regions], [r.resolved_ts for r in self._regions])


def describe(lo: bytes, hi: bytes, _info: object, _table: str) -> str:
    return f"[{lo.hex()}, {hi.hex()})"  # (the test's keys are not a table's: no handles to name)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[RegionState], list[tuple[bytes, bytes]]]:
    """Disjoint regions in key order with some pieces missing, random resolved ts (0: none yet);
    and the table's key ranges (a partitioned table has several)."""
    cuts = sorted(set(draw(st.lists(st.integers(0, 60), min_size=1, max_size=14))))
    regions = []
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:] + [None])):
        if draw(st.booleans()) or draw(st.booleans()):
            start = b"" if lo == cuts[0] and draw(st.booleans()) else key(lo)
            regions.append(RegionState(i + 1, start, b"" if hi is None else key(hi), 1, 1, 5,
                                       draw(st.integers(0, 50)), "normal", 5))
    ranges = sorted((key(lo), key(lo + length)) for lo, length in
                    draw(st.lists(st.tuples(st.integers(0, 70), st.integers(1, 20)), min_size=1, max_size=3)))
    # disjoint ranges, as a partitioned table's are
    ranges = [r for i, r in enumerate(ranges) if all(r[0] >= p[1] for p in ranges[:i])]
    return regions, ranges


@settings(max_examples=500, deadline=None)
@given(layouts())
def test_the_columnar_resolved_ts_is_the_walks(layout: tuple[list[RegionState], list[tuple[bytes, bytes]]]) -> None:
    regions, ranges = layout
    info = SimpleNamespace(id=1, is_common_handle=False)
    with mock.patch.object(resolved, "physical_key_ranges", lambda _info: ranges), \
            mock.patch.object(resolved, "_describe_gap", describe):
        got = resolved.table_resolved_ts(Regions(regions), info, "db.t")  # type: ignore[arg-type]
        want = resolved._walked_resolved_ts(regions, info, "db.t")
    assert got == want


def test_overlapping_regions_are_read_by_the_walk() -> None:
    regions = [RegionState(1, key(0), key(10), 1, 1, 5, 7, "normal", 5),
               RegionState(2, key(5), key(20), 1, 1, 5, 9, "normal", 5)]
    view = Regions(regions)
    assert not view.region_columns().disjoint
    with mock.patch.object(resolved, "physical_key_ranges", lambda _info: [(key(0), key(30))]), \
            mock.patch.object(resolved, "_describe_gap", describe):
        got = resolved.table_resolved_ts(view, SimpleNamespace(id=1, is_common_handle=False), "db.t")  # type: ignore[arg-type]
    assert (got.ts, got.regions, got.gaps) == (7, (1, 2), (f"[{key(20).hex()}, {key(30).hex()})",))
