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

from typing import Any, NamedTuple

from pyspark_theflash.capture.key_ranges import DisjointRanges
from pyspark_theflash.codec import encode_region_key


class Claim(NamedTuple):
    region_id: int
    start: bytes  # PD-encoded
    end: bytes    # PD-encoded; b"" = +inf
    version: int


def ranges_overlap(a_start: bytes, a_end: bytes, b_start: bytes, b_end: bytes) -> bool:
    return (not a_end or b_start < a_end) and (not b_end or a_start < b_end)


class RangeClaims:
    """Per key, the claim of the highest version made over it (TiCDC's range lock keeps the same),
    as disjoint pieces in key order (capture/key_ranges.py): a query costs a bisection and the
    pieces it meets, whatever the number of regions."""

    def __init__(self, saved: list[list[Any]] | None = None) -> None:
        self._pieces: DisjointRanges[tuple[int, int]] = DisjointRanges()  # (region id, version)
        for r, s, e, v in (saved or ()):  # (an older release kept overlapping claims: claimed in turn)
            self.claim(int(r), bytes.fromhex(s), bytes.fromhex(e), int(v))

    def state(self) -> list[list[Any]]:
        return [[rid, s.hex(), e.hex(), v] for s, e, (rid, v) in self._pieces]

    def newer(self, region_id: int, start: bytes, end: bytes, version: int) -> list[Claim]:
        """The claims of other regions over [start, end) with a higher version (each the part of
        its range where it is the newest)."""
        return [Claim(rid, s, e, v) for s, e, (rid, v) in self._pieces.overlapping(start, end)
                if rid != region_id and v > version]

    def claim(self, region_id: int, start: bytes, end: bytes, version: int) -> None:
        """``region_id`` at ``version`` speaks for [start, end) from now on, except where a claim of
        a higher version was made (that one goes on speaking there)."""
        higher = [p for p in self._pieces.overlapping(start, end) if p[2][1] > version]
        self._pieces.assign(start, end, (region_id, version))
        for s, e, value in higher:  # back, over their parts inside [start, end)
            lo = max(s, start)
            hi = end if not e else (e if not end else min(e, end))
            self._pieces.assign(lo, hi, value)

    @staticmethod
    def covers_key(claims: list[Claim], raw_key: bytes) -> bool:
        pd_key = bytes(encode_region_key(raw_key))
        return any(c.start <= pd_key and (not c.end or pd_key < c.end) for c in claims)
