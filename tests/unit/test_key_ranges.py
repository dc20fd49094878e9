"""codec/key_ranges.DisjointRanges and the RangeClaims built on it, against a brute force that
keeps a value per key of a small alphabet."""
from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pyspark_theflash.codec.key_ranges import DisjointRanges
from pyspark_theflash.capture.range_claims import RangeClaims

KEYS = [bytes([c]) for c in range(1, 14)]
bound = st.sampled_from([b""] + KEYS)


def _inside(key: bytes, start: bytes, end: bytes) -> bool:
    return start <= key and (not end or key < end)


def _ranges() -> Any:
    return st.tuples(bound, bound).filter(lambda r: not r[1] or r[0] < r[1])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["assign", "cut"]), _ranges(), st.integers(0, 5)), max_size=12),
       _ranges())
def test_disjoint_ranges_hold_the_value_last_given_to_each_key(ops: list[Any], query: tuple[bytes, bytes]) -> None:
    ranges: DisjointRanges[int] = DisjointRanges()
    model: dict[bytes, int] = {}
    for op, (s, e), v in ops:
        if op == "assign":
            ranges.assign(s, e, v)
        else:
            ranges.cut(s, e)
        for key in [b"", *KEYS]:
            if _inside(key, s, e):
                if op == "assign":
                    model[key] = v
                else:
                    model.pop(key, None)
    pieces = list(ranges)
    for (s1, e1, _), (s2, _, _) in zip(pieces, pieces[1:]):
        assert e1 and e1 <= s2  # disjoint, in key order
    for key in [b"", *KEYS]:
        held = ranges.at(key)
        assert (held[2] if held else None) == model.get(key), key
    got = ranges.overlapping(*query)
    assert got == [p for p in pieces if (not query[1] or p[0] < query[1]) and (not p[1] or query[0] < p[1])]


class _ClaimList:
    """The reference: every claim in a list, walked (what RangeClaims did before its index)."""

    def __init__(self) -> None:
        self.claims: list[tuple[int, bytes, bytes, int]] = []

    def claim(self, r: int, s: bytes, e: bytes, v: int) -> None:
        def covered(c: tuple[int, bytes, bytes, int]) -> bool:
            return s <= c[1] and (not e or (bool(c[2]) and c[2] <= e))

        self.claims = [c for c in self.claims if not (c[3] <= v and covered(c))] + [(r, s, e, v)]

    def newer(self, r: int, s: bytes, e: bytes, v: int) -> list[tuple[int, bytes, bytes, int]]:
        return [c for c in self.claims if c[0] != r and c[3] > v and (not c[2] or s < c[2]) and (not e or c[1] < e)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), _ranges(), st.integers(1, 6)), max_size=10),
       st.integers(1, 4), _ranges(), st.integers(0, 6))
def test_claims_found_by_range_are_the_claims_a_walk_finds(
        claims_made: list[Any], rid: int, query: tuple[bytes, bytes], version: int) -> None:
    claims, reference = RangeClaims(), _ClaimList()
    for r, (s, e), v in claims_made:
        claims.claim(r, s, e, v)
        reference.claim(r, s, e, v)
    got = [tuple(c) for c in claims.newer(rid, query[0], query[1], version)]
    assert sorted(got) == sorted(reference.newer(rid, query[0], query[1], version))
    assert len(set(got)) == len(got)  # each claim once
    # every claim kept is one the walk keeps, each once, and the state restores them all
    assert sorted(tuple(c) for c in claims.state()) == sorted((r, s.hex(), e.hex(), v) for r, s, e, v in reference.claims)
    assert sorted(map(tuple, RangeClaims(claims.state()).state())) == sorted(map(tuple, claims.state()))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "discard"]), st.integers(0, 5), _ranges()), max_size=14), _ranges())
def test_range_members_find_every_member_over_a_range(ops: list[Any], query: tuple[bytes, bytes]) -> None:
    from pyspark_theflash.codec.key_ranges import RangeMembers

    members = RangeMembers()
    model: dict[int, tuple[bytes, bytes]] = {}
    for op, member, (s, e) in ops:
        if op == "add":
            members.add(member, s, e)
            model[member] = (s, e)
        else:
            members.discard(member)
            model.pop(member, None)
    want = {m for m, (s, e) in model.items() if (not e or query[0] < e) and (not query[1] or s < query[1])}
    assert members.overlapping(*query) == want
    assert len(members) == len(model)
    # every member listed once, in key order of where its range starts (then by the order given)
    listed = list(members.members(lambda m: m))
    assert sorted(listed) == sorted(model)
    assert listed == sorted(model, key=lambda m: (model[m][0], m))
    for key in [b"", *KEYS]:  # every key some member covers is in a span, and no other
        if _inside(key, *query):
            covered = any(_inside(key, s, e) for s, e in model.values())
            assert covered == any(_inside(key, s, e) for s, e in members.spans(*query)), key
