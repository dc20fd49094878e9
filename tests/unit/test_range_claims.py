"""capture/range_claims.py: the registration of the newest region epoch speaks for a key range."""
from __future__ import annotations

from pyspark_theflash.capture.range_claims import RangeClaims
from pyspark_theflash.codec import encode_region_key


def k(raw: bytes) -> bytes:
    return bytes(encode_region_key(raw))


def test_an_older_snapshot_over_a_newer_regions_keys_is_stale_and_a_newer_one_takes_over() -> None:
    claims = RangeClaims()
    claims.claim(1, b"", b"", 1)  # the bootstrap region
    claims.claim(1, b"", k(b"m"), 2)  # it split at m: [.., m) keeps id 1, [m, ..) is region 2
    claims.claim(2, k(b"m"), b"", 2)
    # a registration of region 1 from before the split (version 1, the whole key space) is stale
    assert [c.region_id for c in claims.newer(1, b"", b"", 1)] == [2]
    # region 2 merged into 3 (version 3 over [m, ..)): region 2's own older snapshot is stale now
    claims.claim(3, k(b"m"), b"", 3)
    assert [c.region_id for c in claims.newer(2, k(b"m"), b"", 2)] == [3]
    assert claims.newer(1, b"", k(b"m"), 2) == []  # region 1's current shape is nobody's older
    # rows of region 2's stale registration: a key region 3 holds now is dropped, others kept
    newer = claims.newer(2, k(b"a"), b"", 2)
    assert RangeClaims.covers_key(newer, b"x") and not RangeClaims.covers_key(newer, b"c")
    # the state survives a restart
    again = RangeClaims(claims.state())
    assert again.state() == claims.state()
    assert [c.region_id for c in again.newer(2, k(b"m"), b"", 2)] == [3]
