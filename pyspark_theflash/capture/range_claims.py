"""Which registration speaks for a key range: the one of the newest region epoch, as TiCDC's
region range lock decides it (tiflow ``cdc/kv/regionlock/region_range_lock.go``).

A split gives both halves a higher epoch ``version`` than the region had; a merge gives the
target one above both. So along a key's history the regions holding it have ever higher
versions. Two registrations can still overlap in what reaches capture: the streams of two
stores are not ordered with each other, so a registration that began before a split or merge
may deliver its snapshot after the region that holds those keys now (with a higher version)
has delivered its own, and newer commits. Written in that order, the older snapshot would
replace newer versions in the replica. Capture therefore writes a snapshot only if no region
of a higher version has claimed an overlapping range, and drops a row whose key a region of a
higher version has claimed since (that region's snapshot holds it).
"""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Sequence

from pyspark_theflash.codec.key_ranges import HasRange, RangeMembers
from pyspark_theflash.codec.keys import encode_region_key


class Claim(NamedTuple):
    region_id: int
    start: bytes  # PD-encoded
    end: bytes    # PD-encoded; b"" = +inf
    version: int


def _claim_order(c: Claim) -> tuple[int, int, bytes, bytes]:
    return c.version, c.region_id, c.start, c.end


def ranges_overlap(a_start: bytes, a_end: bytes, b_start: bytes, b_end: bytes) -> bool:
    return (not a_end or b_start < a_end) and (not b_end or a_start < b_end)


class RangeClaims:
    """The claims made, found by key range (codec/key_ranges.RangeMembers: a bisection and
    the pieces met, whatever the number of regions). A claim gives way only to one of an equal
    or higher version that covers it whole; one covered in part still guards the rest. The
    index holds the claims themselves (a claim is its own identity: two equal claims are one),
    with no serial or dict beside it: one claim per followed region, ~75 bytes a region less."""

    def __init__(self, saved: list[list[Any]] | None = None) -> None:
        self._by_range: RangeMembers[Claim] = RangeMembers()
        self.changes = 0  # claims made so far: an answer of ``newer`` holds until it moves
        for r, s, e, v in (saved or ()):
            self._add(Claim(int(r), bytes.fromhex(s), bytes.fromhex(e), int(v)))

    def _add(self, claim: Claim) -> Claim:
        self.changes += 1
        self._by_range.insert(claim, claim.start, claim.end)  # (the claim keeps its range)
        return claim

    def _over(self, start: bytes, end: bytes) -> list[Claim]:
        # (in a fixed order: by version, region and range; the answer names the first)
        return sorted(self._by_range.overlapping(start, end), key=_claim_order)

    def state(self) -> list[list[Any]]:
        return list(self.state_items())

    def state_items(self) -> Iterator[list[Any]]:
        """``state``'s items as of this call, in key order, made one at a time as iterated
        (capture/state_json.py: the state file is written from another thread)."""
        return ([c.region_id, c.start.hex(), c.end.hex(), c.version] for c in self._by_range.members(_claim_order))

    def of(self, region_id: int, rng: HasRange) -> Claim | None:
        """The claim of ``region_id`` over exactly ``rng``'s range, if one holds."""
        return next((c for c in self._by_range.overlapping(rng.start, rng.end)
                     if c.region_id == region_id and c.start == rng.start and c.end == rng.end), None)

    def newer(self, region_id: int, start: bytes, end: bytes, version: int) -> list[Claim]:
        """The claims of other regions over [start, end) with a higher version."""
        return [c for c in self._over(start, end) if c.region_id != region_id and c.version > version]

    def claim(self, region_id: int, start: bytes, end: bytes, version: int) -> Claim:
        """``region_id`` at ``version`` speaks for [start, end) from now on; the claims of no
        higher version it covers whole give way (one it covers in part still guards the rest).
        Returns the claim (it holds the range: capture's other indexes of the region keep it)."""
        def covered(c: Claim) -> bool:
            return start <= c.start and (not end or (bool(c.end) and c.end <= end))

        for c in self._over(start, end):
            if c.version <= version and covered(c):
                self._by_range.remove(c, c.start, c.end)
        return self._add(Claim(region_id, start, end, version))

    @staticmethod
    def covers_key(claims: Sequence[Claim], raw_key: bytes) -> bool:
        pd_key = bytes(encode_region_key(raw_key))
        return any(c.start <= pd_key and (not c.end or pd_key < c.end) for c in claims)
