"""A table's regions as columns (``store.views._table_region_columns``: the run of the key-ordered
regions over the table's records by bisection, the boundaries that are record keys decoded at
once by ``keyspace.record_key_handles``) are the walk over every region, region for region
(``_walked_table_regions``, what ``StoreView.table_regions`` did): the same regions in the same
order with the same handle ranges."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from pyspark_theflash.codec.keys import encode_record_key, encode_region_key, index_prefix, record_prefix
from pyspark_theflash.store.keyspace import decode_region_boundary, record_key_handles, region_handle_range
from pyspark_theflash.store.views import RegionState, TableRegionColumns, _table_region_columns, region_columns_of

TABLE = 100
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


@st.composite
def raw_keys(draw: st.DrawFn) -> bytes:
    """A raw key of any kind a region boundary can be near the table's records."""
    extremes = st.sampled_from([INT64_MIN, INT64_MIN + 1, INT64_MAX - 1, INT64_MAX])
    handle = draw(st.one_of(st.integers(-40, 40), extremes))
    table = draw(st.sampled_from([TABLE - 1, TABLE, TABLE, TABLE, TABLE + 1]))
    record = encode_record_key(table, handle)
    return draw(st.sampled_from([
        record, record, record,
        record + draw(st.binary(min_size=1, max_size=3)),  # bytes after a record key
        record[:draw(st.integers(11, 18))],  # a prefix of one
        record_prefix(table)[:-2], index_prefix(table, 1), record_prefix(table)[:-1] + b"s",
        b"u",  # past every table
    ]))


def _walked_table_regions(regions: list[RegionState], table_id: int) -> list[tuple[int, tuple[object, object]]]:
    """``StoreView.table_regions`` as it was: each region's handle range in turn, in handle order."""
    got = []
    for r in regions:
        rng = region_handle_range(r.start_key, r.end_key, table_id, False)
        if rng is not None:
            got.append((r, rng))
    got.sort(key=lambda item: (item[1][0] is not None, item[1][0] or 0))
    return [(r.id, rng) for r, rng in got]


@st.composite
def layouts(draw: st.DrawFn) -> list[RegionState]:
    """Disjoint regions in key order over boundaries of every kind, some pieces missing, the
    first from -inf or not and the last to +inf or not."""
    cuts = sorted({encode_region_key(k) for k in draw(st.lists(raw_keys(), min_size=1, max_size=24))})
    bounds = ([b""] if draw(st.booleans()) else []) + cuts + ([b""] if draw(st.booleans()) else [])
    return [RegionState(i + 1, lo, hi, 1, 1, 5, 7, "normal", 5) for i, (lo, hi) in enumerate(zip(bounds, bounds[1:]))
            if draw(st.integers(0, 3))]  # about a quarter of the pieces missing


def columns_as_pairs(regions: list[RegionState], got: TableRegionColumns) -> list[tuple[int, tuple[object, object]]]:
    assert [regions[i].id for i in got.at.tolist()] == got.ids.tolist()
    return list(zip(got.ids.tolist(), got.handle_ranges()))


@settings(max_examples=600, deadline=None)
@given(layouts())
def test_the_table_regions_as_columns_are_the_walks(regions: list[RegionState]) -> None:
    cols = region_columns_of([r.id for r in regions], [r.start_key for r in regions], [r.end_key for r in regions],
                             [r.resolved_ts for r in regions])
    assert cols.disjoint
    for table in (TABLE - 1, TABLE, TABLE + 1):
        assert columns_as_pairs(regions, _table_region_columns(cols, table)) == _walked_table_regions(regions, table)


@settings(max_examples=300, deadline=None)
@given(st.lists(raw_keys(), max_size=20), st.booleans())
def test_the_record_keys_among_boundaries_are_decoded_at_once(raws: list[bytes], with_empty: bool) -> None:
    keys = [encode_region_key(k) for k in raws] + ([b""] if with_empty else [])
    exact, handles = record_key_handles(keys, TABLE)
    prefix = record_prefix(TABLE)
    for k, is_record, handle in zip(keys, exact.tolist(), handles.tolist()):
        raw = decode_region_boundary(k)
        assert is_record == (len(raw) == len(prefix) + 8 and raw.startswith(prefix))
        if is_record:
            assert handle == int.from_bytes(raw[len(prefix):], "big") - (1 << 63)
