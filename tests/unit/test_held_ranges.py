"""capture/held_ranges.gaps: the keys of a span no registration or pending lookup follows,
against a brute force over every key of a small alphabet."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pyspark_theflash.capture.held_ranges import describe, gaps

KEYS = [bytes([c]) for c in range(1, 12)]  # the keys of the brute force; b"" is -inf / +inf
bound = st.sampled_from([b""] + KEYS)


def _inside(key: bytes, start: bytes, end: bytes) -> bool:
    return start <= key and (not end or key < end)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(bound, bound), max_size=6), bound, bound)
def test_gaps_are_exactly_the_keys_no_span_covers(spans: list[tuple[bytes, bytes]], start: bytes, end: bytes) -> None:
    spans = [(s, e) for s, e in spans if not e or s < e]  # a range is never empty
    if end and start >= end:
        return
    found = gaps(spans, start, end)
    for key in [start, *KEYS]:
        if not _inside(key, start, end):
            continue
        uncovered = not any(_inside(key, s, e) for s, e in spans)
        assert uncovered == any(_inside(key, s, e) for s, e in found), (key, spans, start, end, found)
    # in key order, apart from each other, inside [start, end), none empty
    for (s1, e1), (s2, _) in zip(found, found[1:]):
        assert e1 and e1 < s2
    for s, e in found:
        assert _inside(s, start, end) and (not e or s < e) and (not end or (e and e <= end))
    # spans given in order of their starts only (ties in any order), as a generator: the same
    by_start = sorted(spans, key=lambda sp: sp[0])
    assert gaps((sp for sp in by_start), start, end, ordered=True) == found
    assert gaps((sp for sp in reversed(sorted(spans))), start, end) == found


def test_a_span_tiled_exactly_has_no_gap_and_an_open_end_is_named() -> None:
    assert gaps([(b"", b"c"), (b"c", b"f"), (b"f", b"")], b"a", b"") == []
    assert gaps([(b"a", b"c"), (b"d", b"")], b"a", b"") == [(b"c", b"d")]
    assert gaps([(b"a", b"c")], b"a", b"") == [(b"c", b"")]
    assert describe(b"c", b"") == "[63, +inf)" and describe(b"", b"\x01") == "[-inf, 01)"
